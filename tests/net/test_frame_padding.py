"""Recovering a frame's real length from its network header (padding to 60, relay 1518)."""
from __future__ import annotations

import struct

from pyv86.net.frame import real_length, strip_padding

MACS = bytes(range(12))


def ipv4_tcp_ack() -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 1, 0, 64, 6, 0, bytes([10, 0, 2, 15]), bytes([10, 0, 2, 2]))
    tcp = struct.pack("!HHIIBBHHH", 1234, 80, 1, 2, 0x50, 0x10, 512, 0, 0)
    return MACS + b"\x08\x00" + ip + tcp  # 54 bytes


def test_ipv4_ack_padded_to_60_bytes_is_cut_back_to_54():
    frame = ipv4_tcp_ack()
    padded = frame + bytes(6)
    assert real_length(padded) == 54
    assert strip_padding(padded) == frame


def test_ipv6_and_arp_lengths_come_from_their_headers():
    ipv6 = MACS + b"\x86\xdd" + struct.pack("!IHBB", 0x60000000, 8, 17, 64) + bytes(32) + bytes(8)
    assert real_length(ipv6 + bytes(10)) == len(ipv6)
    arp = MACS + b"\x08\x06" + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + bytes(20)
    assert strip_padding(arp + bytes(18)) == arp


def test_frames_without_a_length_or_claiming_more_than_they_hold_are_left_alone():
    unknown = MACS + b"\x88\xb5" + bytes(46)
    assert strip_padding(unknown) == unknown
    short = ipv4_tcp_ack()[:40]  # header claims 40 bytes of IP, frame holds fewer
    assert strip_padding(short) == short
    assert real_length(b"\x00" * 13) is None
