"""Test helpers for the TAP backend: ARP/ICMP exchanges with a peer and a frame collector.
Stand-in machines come from :mod:`pyv86.testing.net`, namespaces from
:mod:`pyv86.testing.netns`, frames from :mod:`pyv86.testing.frames`."""
from __future__ import annotations

import queue
import time
from typing import Callable

from pyv86.testing.frames import (BROADCAST, ETH_ARP, ETH_IP, ICMP_ECHO_REPLY, PROTO_ICMP, arp_request,
                                  ethernet, icmp_echo, ipv4, mac, parse_arp, parse_eth,
                                  parse_icmp_echo, parse_ipv4)
from pyv86.testing.net import DirectMachine, SlicingMachine

WHO = "relay_tap tests"
BCAST = BROADCAST

__all__ = ["BCAST", "WHO", "Collector", "DirectMachine", "SlicingMachine", "arp_request", "echo_request",
           "is_echo_reply", "mac", "parse_arp_reply"]


def parse_arp_reply(frame: bytes, asked_ip: str) -> bytes | None:
    """The MAC in an ARP reply for ``asked_ip``, else None."""
    if len(frame) < 42 or parse_eth(frame).type != ETH_ARP:
        return None
    arp = parse_arp(frame[14:])
    return arp.sender_mac if arp.op == 2 and arp.sender_ip == asked_ip else None


def echo_request(src_mac: bytes, dst_mac: bytes, src_ip: str, dst_ip: str, ident: int, seq: int,
                 payload: bytes) -> bytes:
    """An ICMP echo request in an Ethernet frame."""
    return ethernet(dst_mac, src_mac, ETH_IP, ipv4(src_ip, dst_ip, PROTO_ICMP, icmp_echo(ident, seq, payload)))


def is_echo_reply(frame: bytes, ident: int, seq: int, payload: bytes) -> bool:
    if len(frame) < 42 or parse_eth(frame).type != ETH_IP:
        return False
    ip = parse_ipv4(frame[14:])
    echo = parse_icmp_echo(ip.payload) if ip is not None and ip.proto == PROTO_ICMP else None
    return echo is not None and echo[:3] == (ICMP_ECHO_REPLY, ident, seq) and echo[3][:len(payload)] == payload


class Collector:
    """A receiver that keeps frames and finds the first one a predicate accepts."""

    def __init__(self) -> None:
        self.q: queue.Queue[bytes] = queue.Queue()

    def __call__(self, frame: bytes) -> None:
        self.q.put(frame)

    def wait(self, predicate: Callable[[bytes], object], timeout: float = 5.0,
             resend: Callable[[], None] | None = None) -> bytes:
        deadline = time.monotonic() + timeout
        next_send = 0.0
        while True:
            now = time.monotonic()
            if resend is not None and now >= next_send:
                resend()
                next_send = now + 0.5
            if now >= deadline:
                raise TimeoutError("the expected frame did not arrive")
            try:
                frame = self.q.get(timeout=min(0.1, deadline - now))
            except queue.Empty:
                continue
            if predicate(frame):
                return frame
