"""The per-frame trace line: tcpdump-like summaries, never an exception, only at -vvv."""
from __future__ import annotations

import logging
import random
import struct

from pyv86.cli import setup_logging
from pyv86.net.port import NicPort, RxResult
from pyv86.net.trace import describe, trace_log

A = bytes.fromhex("020000000001")
B = bytes.fromhex("020000000002")


def ip4(proto: int, payload: bytes, src=b"\x0a\x00\x00\x01", dst=b"\x0a\x00\x00\x02") -> bytes:
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64, proto, 0, src, dst) + payload


def test_arp_request_and_reply():
    req = b"\xff" * 6 + A + b"\x08\x06" + bytes.fromhex("0001080006040001") + A + bytes([10, 0, 0, 1]) + bytes(6) + bytes([10, 0, 0, 2])
    assert describe(req) == ("02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: "
                             "ARP, Request who-has 10.0.0.2 tell 10.0.0.1")
    rep = B + A + b"\x08\x06" + bytes.fromhex("0001080006040002") + A + bytes([10, 0, 0, 1]) + B + bytes([10, 0, 0, 2])
    assert describe(rep).endswith("ARP, Reply 10.0.0.1 is-at 02:00:00:00:00:01")


def test_icmp_udp_tcp():
    icmp = B + A + b"\x08\x00" + ip4(1, bytes([8, 0, 0, 0]) + struct.pack("!HH", 7, 3) + bytes(56))
    assert "IP 10.0.0.1 > 10.0.0.2: ttl 64, ICMP echo request, id 7, seq 3, length 64" in describe(icmp)
    udp = B + A + b"\x08\x00" + ip4(17, struct.pack("!HHHH", 68, 67, 8 + 300, 0) + bytes(300))
    assert "UDP 68 > 67, length 300" in describe(udp)
    tcp = B + A + b"\x08\x00" + ip4(6, struct.pack("!HHIIHHHH", 40000, 80, 1, 2, (5 << 12) | 0x18, 512, 0, 0) + b"GET /")
    assert "TCP 40000 > 80, flags [PA], seq 1, ack 2, win 512, length 5" in describe(tcp)


def test_ipv6_neighbour_solicitation():
    target = bytes.fromhex("fe800000000000000000000000000002")
    icmp6 = bytes([135, 0, 0, 0]) + bytes(4) + target
    ip6 = struct.pack("!IHBB", 0x60000000, len(icmp6), 58, 255) + bytes.fromhex("fe80" + "00" * 13 + "01") + \
        bytes.fromhex("ff0200000000000000000001ff000002")
    frame = bytes.fromhex("3333ff000002") + A + b"\x86\xdd" + ip6 + icmp6
    assert describe(frame).endswith("IP6 fe80::1 > ff02::1:ff00:2: hlim 255, ICMP6, neighbor solicitation, "
                                    "who has fe80::2, length 24")


def test_vlan_and_unknown_ethertypes():
    frame = B + A + b"\x81\x00\x00\x05\x88\xb5" + bytes(46)
    assert "vlan 5, ethertype unknown (0x88b5)" in describe(frame)


def test_garbage_never_raises():
    rng = random.Random(5)
    assert describe(b"") == "[runt frame, length 0]"
    for _ in range(3000):
        n = rng.randrange(0, 200)
        head = B + A + rng.choice([b"\x08\x00", b"\x08\x06", b"\x86\xdd", b"\x81\x00"])
        line = describe((head + rng.randbytes(n))[: rng.randrange(0, 14 + n + 1)])
        assert isinstance(line, str) and "\n" not in line


def test_trace_only_at_vvv(caplog):
    port = NicPort("net0", lambda f: RxResult.STORED)
    frame = B + A + b"\x88\xb5" + bytes(46)
    old = trace_log.level
    parent = logging.getLogger("pyv86.trace")   # setup_logging sets it; later tests must not trace
    old_parent, old_root = parent.level, logging.getLogger().level
    try:
        setup_logging(2, [])
        with caplog.at_level(logging.DEBUG):
            port.transmit(frame)
        assert not [r for r in caplog.records if r.name == "pyv86.trace.net"]
        setup_logging(3, [])
        with caplog.at_level(logging.DEBUG):
            port.transmit(frame)
            port.inject(frame)
        lines = [r.getMessage() for r in caplog.records if r.name == "pyv86.trace.net"]
        assert lines == [f"net0 tx {describe(frame)}", f"net0 rx {describe(frame)}"]
    finally:
        trace_log.setLevel(old)
        parent.setLevel(old_parent)
        logging.getLogger().setLevel(old_root)
