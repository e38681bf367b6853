"""Frames for tests that play a guest or a peer at the Ethernet level: build and parse them.

This module owns the test suites' packet code (the relay_tap, relay_ws and passt tests build
on it): the Internet checksum, Ethernet, ARP, IPv4, UDP, TCP, ICMP echo and DHCP client
messages, and parsers for what comes back. It is test tooling, not part of the product
(pyv86 has no TCP/IP stack); it builds well-formed frames only and does no validation
beyond what a parser needs to say "not this kind of frame".

Addresses are ``bytes``; the IPv4 helpers also take dotted text (``"10.0.0.1"``).
Nothing runs at import time; only the standard library is used.
"""
from __future__ import annotations

import ipaddress
import struct
from typing import NamedTuple

BROADCAST = b"\xff" * 6
MIN_FRAME = 60  # Ethernet minimum without the FCS
ETH_IP = 0x0800
ETH_ARP = 0x0806
PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST = 0, 8
DHCP_MAGIC = b"\x63\x82\x53\x63"
DHCP_DISCOVER, DHCP_OFFER, DHCP_REQUEST, DHCP_ACK = 1, 2, 3, 5


# -- addresses and the checksum -----------------------------------------------------------------
def mac(i: int) -> bytes:
    """Test MAC number ``i`` (0..65535): ``02:00:00:00:hi:lo``, locally administered unicast."""
    return bytes((0x02, 0x00, 0x00, 0x00, (i >> 8) & 0xFF, i & 0xFF))


def ip4(addr: str | bytes) -> bytes:
    """An IPv4 address as 4 bytes, from dotted text or 4 bytes."""
    return ipaddress.IPv4Address(addr).packed


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``: ones' complement of the ones' complement sum."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


# -- building -----------------------------------------------------------------------------------
def pad(frame: bytes) -> bytes:
    """``frame`` padded with zeros to the 60-byte Ethernet minimum."""
    return frame + bytes(max(0, MIN_FRAME - len(frame)))


def ethernet(dst: bytes, src: bytes, ethertype: int, payload: bytes, *, padded: bool = False) -> bytes:
    """An Ethernet frame; with ``padded``, zero-padded to 60 bytes."""
    frame = dst + src + struct.pack("!H", ethertype) + payload
    return pad(frame) if padded else frame


def ipv4(src: str | bytes, dst: str | bytes, proto: int, payload: bytes, ident: int = 1) -> bytes:
    """An IPv4 packet (no options, don't fragment, TTL 64) with its header checksum."""
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0x4000, 64, proto,
                         0, ip4(src), ip4(dst))
    return header[:10] + struct.pack("!H", checksum(header)) + header[12:] + payload


def _pseudo(src: str | bytes, dst: str | bytes, proto: int, length: int) -> bytes:
    return ip4(src) + ip4(dst) + struct.pack("!BBH", 0, proto, length)


def udp(src: str | bytes, dst: str | bytes, sport: int, dport: int, payload: bytes) -> bytes:
    """A UDP datagram from ``src`` to ``dst`` with its checksum (0 is sent as 0xFFFF)."""
    seg = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    csum = checksum(_pseudo(src, dst, PROTO_UDP, len(seg)) + seg) or 0xFFFF
    return seg[:6] + struct.pack("!H", csum) + seg[8:]


def tcp(src: str | bytes, dst: str | bytes, sport: int, dport: int, seq: int, ack: int, flags: int,
        payload: bytes = b"", window: int = 65535, options: bytes = b"") -> bytes:
    """A TCP segment with its checksum; ``options`` are zero-padded to a multiple of 4."""
    if len(options) % 4:
        options += b"\0" * (4 - len(options) % 4)
    offset = (20 + len(options)) // 4
    seg = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                      offset << 4, flags, window, 0, 0) + options + payload
    csum = checksum(_pseudo(src, dst, PROTO_TCP, len(seg)) + seg)
    return seg[:16] + struct.pack("!H", csum) + seg[18:]


def icmp_echo(ident: int, seq: int, payload: bytes, kind: int = ICMP_ECHO_REQUEST) -> bytes:
    """An ICMP echo request (or reply, with ``kind=0``) message with its checksum."""
    msg = struct.pack("!BBHHH", kind, 0, 0, ident, seq) + payload
    return msg[:2] + struct.pack("!H", checksum(msg)) + msg[4:]


def arp_request(src_mac: bytes, src_ip: str | bytes, target_ip: str | bytes, *, padded: bool = False) -> bytes:
    """A broadcast ARP request from ``src_mac``/``src_ip`` asking who has ``target_ip``."""
    body = struct.pack("!HHBBH6s4s6s4s", 1, ETH_IP, 6, 4, 1, src_mac, ip4(src_ip), bytes(6), ip4(target_ip))
    return ethernet(BROADCAST, src_mac, ETH_ARP, body, padded=padded)


def dhcp_message(client_mac: bytes, xid: int, msg_type: int, options: bytes = b"") -> bytes:
    """A DHCP client message (option 53 = ``msg_type``, then ``options``) broadcast from
    ``client_mac`` at 0.0.0.0:68 to 255.255.255.255:67, asking for a broadcast reply."""
    bootp = (struct.pack("!BBBBIHH", 1, 1, 6, 0, xid, 0, 0x8000) + bytes(16) + client_mac + bytes(10)
             + bytes(64 + 128) + DHCP_MAGIC + bytes((53, 1, msg_type)) + options + b"\xff")
    zero, bcast = bytes(4), b"\xff" * 4
    return ethernet(BROADCAST, client_mac, ETH_IP, ipv4(zero, bcast, PROTO_UDP, udp(zero, bcast, 68, 67, bootp)))


def dhcp_discover(client_mac: bytes, xid: int) -> bytes:
    """A DHCPDISCOVER asking for subnet mask, router and DNS servers (option 55)."""
    return dhcp_message(client_mac, xid, DHCP_DISCOVER, bytes((55, 3, 1, 3, 6)))


# -- parsing ------------------------------------------------------------------------------------
class Eth(NamedTuple):
    dst: bytes
    src: bytes
    type: int
    payload: bytes


class Ip(NamedTuple):
    src: str
    dst: str
    proto: int
    payload: bytes


class Tcp(NamedTuple):
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    window: int
    payload: bytes


class Dhcp(NamedTuple):
    op: int
    xid: int
    yiaddr: str
    chaddr: bytes
    options: dict[int, bytes]


class Arp(NamedTuple):
    op: int
    sender_mac: bytes
    sender_ip: str
    target_mac: bytes
    target_ip: str


def parse_eth(frame: bytes) -> Eth:
    """Split an Ethernet frame (at least 14 bytes) into its header fields and payload."""
    return Eth(frame[0:6], frame[6:12], struct.unpack("!H", frame[12:14])[0], frame[14:])


def parse_ipv4(data: bytes) -> Ip | None:
    """An IPv4 packet's addresses, protocol and payload (cut at its total length); None if
    ``data`` is not IPv4."""
    if len(data) < 20 or data[0] >> 4 != 4:
        return None
    ihl = (data[0] & 0x0F) * 4
    total = struct.unpack("!H", data[2:4])[0]
    return Ip(str(ipaddress.IPv4Address(data[12:16])), str(ipaddress.IPv4Address(data[16:20])),
              data[9], data[ihl:total])


def parse_tcp(data: bytes) -> Tcp:
    sport, dport, seq, ack, off, flags, window = struct.unpack("!HHIIBBH", data[:16])
    return Tcp(sport, dport, seq, ack, flags, window, data[(off >> 4) * 4:])


def parse_udp(data: bytes) -> tuple[int, int, bytes]:
    """``(sport, dport, payload)`` of a UDP datagram."""
    sport, dport, length = struct.unpack("!HHH", data[:6])
    return sport, dport, data[8:length]


def parse_icmp_echo(data: bytes) -> tuple[int, int, int, bytes] | None:
    """``(type, ident, seq, payload)`` of an ICMP echo request or reply, else None."""
    if len(data) < 8 or data[0] not in (ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST):
        return None
    ident, seq = struct.unpack("!HH", data[4:8])
    return data[0], ident, seq, data[8:]


def parse_dhcp(data: bytes) -> Dhcp:
    """A BOOTP/DHCP message's fields and options; ValueError if it has no DHCP magic cookie."""
    if len(data) < 240 or data[236:240] != DHCP_MAGIC:
        raise ValueError("no DHCP magic cookie")
    op, _htype, _hlen, _hops, xid = struct.unpack("!BBBBI", data[:8])
    options: dict[int, bytes] = {}
    i = 240
    while i < len(data):
        code = data[i]
        if code == 255:
            break
        if code == 0:
            i += 1
            continue
        if i + 1 >= len(data):
            break
        length = data[i + 1]
        options[code] = data[i + 2:i + 2 + length]
        i += 2 + length
    return Dhcp(op, xid, str(ipaddress.IPv4Address(data[16:20])), data[28:34], options)


def dhcp_from_server(frame: bytes) -> Dhcp | None:
    """The DHCP message a server sent in Ethernet frame ``frame`` (IPv4, UDP 67 -> 68), else None."""
    if len(frame) < 14 or parse_eth(frame).type != ETH_IP:
        return None
    ip = parse_ipv4(frame[14:])
    if ip is None or ip.proto != PROTO_UDP or len(ip.payload) < 8:
        return None
    sport, dport, payload = parse_udp(ip.payload)
    if (sport, dport) != (67, 68):
        return None
    try:
        return parse_dhcp(payload)
    except ValueError:
        return None


def parse_arp(data: bytes) -> Arp:
    """An ARP packet for IPv4 over Ethernet (at least 28 bytes)."""
    _htype, _ptype, _hlen, _plen, op, smac, sip, tmac, tip = struct.unpack("!HHBBH6s4s6s4s", data[:28])
    return Arp(op, smac, str(ipaddress.IPv4Address(sip)), tmac, str(ipaddress.IPv4Address(tip)))


__all__ = [
    "ACK", "BROADCAST", "DHCP_ACK", "DHCP_DISCOVER", "DHCP_MAGIC", "DHCP_OFFER", "DHCP_REQUEST",
    "ETH_ARP", "ETH_IP", "FIN", "ICMP_ECHO_REPLY", "ICMP_ECHO_REQUEST", "MIN_FRAME", "PROTO_ICMP",
    "PROTO_TCP", "PROTO_UDP", "PSH", "RST", "SYN", "Arp", "Dhcp", "Eth", "Ip", "Tcp", "arp_request",
    "checksum", "dhcp_discover", "dhcp_from_server", "dhcp_message", "ethernet", "icmp_echo", "ip4", "ipv4", "mac", "pad",
    "parse_arp", "parse_dhcp", "parse_eth", "parse_icmp_echo", "parse_ipv4", "parse_tcp", "parse_udp",
    "tcp", "udp",
]
