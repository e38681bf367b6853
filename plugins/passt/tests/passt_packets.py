"""The passt tests' packet helpers: :mod:`pyv86.testing.frames` (which owns the building and
parsing of Ethernet, ARP, IPv4, UDP, TCP and DHCP) under the name ``pk``, plus :func:`mac`
for the MAC addresses the tests write out as text.
"""
from __future__ import annotations

from pyv86.net.frame import parse_mac as mac
from pyv86.testing.frames import (ACK, BROADCAST, ETH_ARP, ETH_IP, FIN, PROTO_TCP, PROTO_UDP, PSH, RST, SYN,
                                  Arp, Dhcp, Eth, Ip, Tcp, arp_request, checksum, dhcp_discover,
                                  dhcp_message, ethernet, ip4, ipv4, parse_arp, parse_dhcp, parse_eth,
                                  parse_ipv4, parse_tcp, parse_udp, tcp, udp)

__all__ = [
    "ACK", "BROADCAST", "ETH_ARP", "ETH_IP", "FIN", "PROTO_TCP", "PROTO_UDP", "PSH", "RST", "SYN", "Arp",
    "Dhcp", "Eth", "Ip", "Tcp", "arp_request", "checksum", "dhcp_discover", "dhcp_message", "ethernet",
    "ip4", "ipv4", "mac", "parse_arp", "parse_dhcp", "parse_eth", "parse_ipv4", "parse_tcp", "parse_udp",
    "tcp", "udp",
]
