"""One tcpdump-like line per frame, for ``pyv86 -vvv`` (logger ``pyv86.trace.net``).

:func:`describe` never raises: a truncated or nonsensical frame yields a line that says
so. The summary covers Ethernet (with one 802.1Q tag), ARP, IPv4, IPv6, ICMP, ICMPv6
(echo and neighbour discovery), UDP and TCP.
"""
from __future__ import annotations

import ipaddress
import logging
import struct

from pyv86.net.frame import mac_str

trace_log = logging.getLogger("pyv86.trace.net")
"""Enabled by ``-vvv`` (or ``--log pyv86.trace.net=DEBUG``); silent otherwise."""

ETHERTYPES = {0x0800: "IPv4", 0x0806: "ARP", 0x86DD: "IPv6", 0x8100: "802.1Q", 0x88CC: "LLDP",
              0x8035: "RARP", 0x88A8: "802.1ad"}
ICMP_TYPES = {0: "echo reply", 3: "unreachable", 5: "redirect", 8: "echo request", 11: "time exceeded"}
ICMP6_TYPES = {1: "destination unreachable", 2: "packet too big", 3: "time exceeded",
               128: "echo request", 129: "echo reply", 133: "router solicitation",
               134: "router advertisement", 135: "neighbor solicitation",
               136: "neighbor advertisement", 137: "redirect", 143: "multicast listener report v2"}
TCP_FLAGS = "FSRPAUEC"


def trace_frame(port: str, direction: str, frame: bytes) -> None:
    trace_log.debug("%s %s %s", port, direction, describe(frame))


def describe(frame: bytes | bytearray | memoryview) -> str:
    """``src > dst, ethertype X (0x....), length N: <protocol summary>``."""
    frame = bytes(frame)
    n = len(frame)
    if n < 14:
        return f"[runt frame, length {n}]"
    dst, src = mac_str(frame[0:6]), mac_str(frame[6:12])
    etype = struct.unpack_from("!H", frame, 12)[0]
    offset = 14
    vlan = ""
    if etype == 0x8100 and n >= 18:
        tci, etype = struct.unpack_from("!HH", frame, 14)
        vlan = f"vlan {tci & 0xFFF}, "
        offset = 18
    if etype < 0x0600:
        head = f"{src} > {dst}, 802.3, length {n}"
        return head + f": {vlan}LLC, {etype} bytes"
    head = f"{src} > {dst}, {vlan}ethertype {ETHERTYPES.get(etype, 'unknown')} ({etype:#06x}), length {n}"
    try:
        body = _payload(etype, frame, offset)
    except (struct.error, ValueError, IndexError):
        body = "[truncated]"
    return f"{head}: {body}" if body else head


def _payload(etype: int, frame: bytes, off: int) -> str:
    if etype == 0x0806:
        return _arp(frame, off)
    if etype == 0x0800:
        return _ipv4(frame, off)
    if etype == 0x86DD:
        return _ipv6(frame, off)
    return ""


def _arp(f: bytes, off: int) -> str:
    htype, ptype, hlen, plen, op = struct.unpack_from("!HHBBH", f, off)
    if htype != 1 or ptype != 0x0800 or hlen != 6 or plen != 4:
        return f"ARP, hardware {htype} protocol {ptype:#06x}, op {op}"
    sha = mac_str(f[off + 8 : off + 14])
    spa = ipaddress.IPv4Address(f[off + 14 : off + 18])
    tpa = ipaddress.IPv4Address(f[off + 24 : off + 28])
    if len(f) < off + 28:
        raise ValueError("short ARP")
    if op == 1:
        return f"ARP, Request who-has {tpa} tell {spa}"
    if op == 2:
        return f"ARP, Reply {spa} is-at {sha}"
    return f"ARP, op {op} {spa} > {tpa}"


def _ipv4(f: bytes, off: int) -> str:
    vihl, _tos, total, _ident, frag, ttl, proto = struct.unpack_from("!BBHHHBB", f, off)
    if vihl >> 4 != 4:
        return f"IP version {vihl >> 4}?"
    ihl = (vihl & 0xF) * 4
    src = ipaddress.IPv4Address(f[off + 12 : off + 16])
    dst = ipaddress.IPv4Address(f[off + 16 : off + 20])
    l4 = off + ihl
    end = min(len(f), off + total) if total >= ihl else len(f)
    fragment = frag & 0x1FFF
    extra = f", frag offset {fragment * 8}" if fragment or frag & 0x2000 else ""
    prefix = f"IP {src} > {dst}: ttl {ttl}{extra}, "
    if fragment:
        return prefix + f"proto {proto}, length {end - l4}"
    return prefix + _l4(proto, f, l4, end, icmp6=False)


def _ipv6(f: bytes, off: int) -> str:
    _vtf, plen, nxt, hlim = struct.unpack_from("!IHBB", f, off)
    src = ipaddress.IPv6Address(f[off + 8 : off + 24])
    dst = ipaddress.IPv6Address(f[off + 24 : off + 40])
    l4 = off + 40
    end = min(len(f), l4 + plen)
    hops = 0
    while nxt in (0, 43, 60) and hops < 4:  # hop-by-hop, routing, destination options
        nxt, hlen = f[l4], (f[l4 + 1] + 1) * 8
        l4 += hlen
        hops += 1
    return f"IP6 {src} > {dst}: hlim {hlim}, " + _l4(nxt, f, l4, end, icmp6=True)


def _l4(proto: int, f: bytes, off: int, end: int, icmp6: bool) -> str:
    if proto == 17:
        sport, dport, ulen = struct.unpack_from("!HHH", f, off)
        return f"UDP {sport} > {dport}, length {max(0, ulen - 8)}"
    if proto == 6:
        sport, dport, seq, ack, doff_flags, win = struct.unpack_from("!HHIIHH", f, off)
        flags = "".join(c for i, c in enumerate(TCP_FLAGS) if doff_flags & (1 << i)) or "."
        hlen = (doff_flags >> 12) * 4
        data = max(0, end - off - hlen)
        text = f"TCP {sport} > {dport}, flags [{flags}], seq {seq}"
        if doff_flags & 0x10:
            text += f", ack {ack}"
        return text + f", win {win}, length {data}"
    if proto == 1 and not icmp6:
        typ, code = f[off], f[off + 1]
        name = ICMP_TYPES.get(typ, f"type {typ}")
        if typ in (0, 8):
            ident, seq = struct.unpack_from("!HH", f, off + 4)
            return f"ICMP {name}, id {ident}, seq {seq}, length {end - off}"
        return f"ICMP {name}, code {code}, length {end - off}"
    if proto == 58 and icmp6:
        typ, code = f[off], f[off + 1]
        name = ICMP6_TYPES.get(typ, f"type {typ}")
        if typ in (135, 136, 137) and end - off >= 24:
            target = ipaddress.IPv6Address(f[off + 8 : off + 24])
            return f"ICMP6, {name}, {'who has ' if typ == 135 else 'tgt is '}{target}, length {end - off}"
        if typ in (128, 129):
            ident, seq = struct.unpack_from("!HH", f, off + 4)
            return f"ICMP6, {name}, id {ident}, seq {seq}, length {end - off}"
        return f"ICMP6, {name}, code {code}, length {end - off}"
    return f"proto {proto}, length {max(0, end - off)}"
