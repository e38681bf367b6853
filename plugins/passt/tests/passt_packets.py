"""Test-only packet building and parsing: Ethernet, ARP, IPv4, UDP, DHCP and a few TCP segments.

Just enough to play a guest at frame level against passt; not part of the product
(pyv86 writes no TCP/IP stack: passt is the stack).
"""
from __future__ import annotations

import ipaddress
import struct
from typing import NamedTuple

BROADCAST = b"\xff" * 6
ETH_IP = 0x0800
ETH_ARP = 0x0806
PROTO_TCP = 6
PROTO_UDP = 17
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def ip4(text: str) -> bytes:
    return ipaddress.IPv4Address(text).packed


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ethernet(dst: bytes, src: bytes, ethertype: int, payload: bytes) -> bytes:
    return dst + src + struct.pack("!H", ethertype) + payload


def ipv4(src: bytes, dst: bytes, proto: int, payload: bytes, ident: int = 1) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0x4000, 64, proto,
                         0, src, dst)
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    return header + payload


def _pseudo(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    return src + dst + struct.pack("!BBH", 0, proto, length)


def udp(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> bytes:
    seg = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    csum = checksum(_pseudo(src, dst, PROTO_UDP, len(seg)) + seg) or 0xFFFF
    return seg[:6] + struct.pack("!H", csum) + seg[8:]


def tcp(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int,
        payload: bytes = b"", window: int = 65535, options: bytes = b"") -> bytes:
    if len(options) % 4:
        options += b"\0" * (4 - len(options) % 4)
    offset = (20 + len(options)) // 4
    seg = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                      offset << 4, flags, window, 0, 0) + options + payload
    csum = checksum(_pseudo(src, dst, PROTO_TCP, len(seg)) + seg)
    return seg[:16] + struct.pack("!H", csum) + seg[18:]


def arp_request(src_mac: bytes, src_ip: bytes, target_ip: bytes) -> bytes:
    body = struct.pack("!HHBBH6s4s6s4s", 1, ETH_IP, 6, 4, 1, src_mac, src_ip, b"\0" * 6, target_ip)
    return ethernet(BROADCAST, src_mac, ETH_ARP, body)


def dhcp_message(client_mac: bytes, xid: int, msg_type: int, extra: bytes = b"") -> bytes:
    bootp = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, 0, 0x8000, b"\0" * 4,
                        b"\0" * 4, b"\0" * 4, b"\0" * 4, client_mac + b"\0" * 10, b"", b"")
    options = b"\x63\x82\x53\x63" + bytes([53, 1, msg_type]) + extra + b"\xff"
    zero, bcast = b"\0" * 4, b"\xff" * 4
    return ethernet(BROADCAST, client_mac, ETH_IP,
                    ipv4(zero, bcast, PROTO_UDP, udp(zero, bcast, 68, 67, bootp + options)))


def dhcp_discover(client_mac: bytes, xid: int) -> bytes:
    return dhcp_message(client_mac, xid, 1, bytes([55, 3, 1, 3, 6]))


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
    return Eth(frame[0:6], frame[6:12], struct.unpack("!H", frame[12:14])[0], frame[14:])


def parse_ipv4(data: bytes) -> Ip | None:
    if len(data) < 20 or data[0] >> 4 != 4:
        return None
    ihl = (data[0] & 0x0F) * 4
    total = struct.unpack("!H", data[2:4])[0]
    return Ip(str(ipaddress.IPv4Address(data[12:16])), str(ipaddress.IPv4Address(data[16:20])),
              data[9], data[ihl:total])


def parse_tcp(data: bytes) -> Tcp:
    sport, dport, seq, ack, off, flags, window = struct.unpack("!HHIIBBH", data[:16])
    return Tcp(sport, dport, seq, ack, flags, window, data[(off >> 4) * 4 :])


def parse_udp(data: bytes) -> tuple[int, int, bytes]:
    sport, dport, length = struct.unpack("!HHH", data[:6])
    return sport, dport, data[8:length]


def parse_dhcp(data: bytes) -> Dhcp:
    op, _htype, _hlen, _hops, xid = struct.unpack("!BBBBI", data[:8])
    yiaddr = str(ipaddress.IPv4Address(data[16:20]))
    chaddr = data[28:34]
    if data[236:240] != b"\x63\x82\x53\x63":
        raise ValueError("no DHCP magic cookie")
    options: dict[int, bytes] = {}
    i = 240
    while i < len(data):
        code = data[i]
        if code == 255:
            break
        if code == 0:
            i += 1
            continue
        length = data[i + 1]
        options[code] = data[i + 2 : i + 2 + length]
        i += 2 + length
    return Dhcp(op, xid, yiaddr, chaddr, options)


def parse_arp(data: bytes) -> Arp:
    _htype, _ptype, _hlen, _plen, op, smac, sip, tmac, tip = struct.unpack("!HHBBH6s4s6s4s", data[:28])
    return Arp(op, smac, str(ipaddress.IPv4Address(sip)), tmac, str(ipaddress.IPv4Address(tip)))
