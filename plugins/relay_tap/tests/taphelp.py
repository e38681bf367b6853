"""Test helpers for the TAP backend: throw-away namespaces and ARP/ICMP frames."""
from __future__ import annotations

import os
import queue
import shutil
import struct
import subprocess
import time
import uuid
from typing import Callable

import pytest


def mac(i: int) -> bytes:
    return bytes((0x02, 0x00, 0x00, 0x00, (i >> 8) & 0xFF, i & 0xFF))


BCAST = b"\xff" * 6


def ip4(text: str) -> bytes:
    return bytes(int(x) for x in text.split("."))


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def arp_request(src_mac: bytes, src_ip: str, dst_ip: str) -> bytes:
    body = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + src_mac + ip4(src_ip) + bytes(6) + ip4(dst_ip)
    return BCAST + src_mac + b"\x08\x06" + body + bytes(18)


def parse_arp_reply(frame: bytes, asked_ip: str) -> bytes | None:
    """The MAC in an ARP reply for ``asked_ip``, else None."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x06":
        return None
    if struct.unpack("!H", frame[20:22])[0] != 2 or frame[28:32] != ip4(asked_ip):
        return None
    return frame[22:28]


def icmp_echo(src_mac: bytes, dst_mac: bytes, src_ip: str, dst_ip: str, ident: int, seq: int,
              payload: bytes) -> bytes:
    icmp = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + payload
    icmp = icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 1, 0x4000, 64, 1, 0, ip4(src_ip), ip4(dst_ip))
    hdr = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
    return dst_mac + src_mac + b"\x08\x00" + hdr + icmp


def is_echo_reply(frame: bytes, ident: int, seq: int, payload: bytes) -> bool:
    if len(frame) < 42 or frame[12:14] != b"\x08\x00" or frame[23] != 1:
        return False
    ihl = (frame[14] & 0x0F) * 4
    icmp = frame[14 + ihl:]
    return icmp[0] == 0 and struct.unpack("!HH", icmp[4:8]) == (ident, seq) and icmp[8:8 + len(payload)] == payload


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


class DirectMachine:
    thread = None

    def call_soon_threadsafe(self, fn: Callable[[], None]) -> None:
        fn()


def require_netns() -> None:
    if os.geteuid() != 0:
        pytest.fail("this test creates network namespaces and TAP devices: run it as root")
    if shutil.which("ip") is None:
        pytest.fail("this test needs iproute2 (`ip`): apt-get install iproute2")


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(cmd), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


class Namespaces:
    """Uniquely named namespaces and interface names; everything removed on cleanup."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:6]
        self.names: list[str] = []

    def ifname(self, base: str) -> str:
        name = f"{base}{self.tag}"
        assert len(name) < 16
        return name

    def add(self, base: str) -> str:
        name = f"p7{base}-{self.tag}"
        sh("ip", "netns", "add", name)
        self.names.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def ip(self, ns: str, *args: str) -> None:
        sh("ip", "-n", ns, *args)

    def cleanup(self) -> None:
        for name in self.names:
            sh("ip", "netns", "del", name, check=False)
