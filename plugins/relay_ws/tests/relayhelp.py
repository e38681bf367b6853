"""Test helpers: a raw WebSocket client that can also misbehave, DHCP exchanges at frame level
and the relay's DHCP LAN. Frames come from :mod:`pyv86.testing.frames`, namespaces from
:mod:`pyv86.testing.netns`."""
from __future__ import annotations

import base64
import os
import select
import socket
import struct
import time
from pathlib import Path
from typing import Any

import pytest

from pyv86.testing import frames
from pyv86.testing import netns as _netns
from pyv86.testing.frames import mac  # noqa: F401 - re-exported: the relay tests build MACs with it
from pyv86.testing.netns import Lan, Namespaces

WHO = "relay_ws tests"


BCAST = frames.BROADCAST


def eth(dst: bytes, src: bytes, ethertype: int = 0x88B5, payload: bytes = b"") -> bytes:
    """An Ethernet frame; ``payload`` is padded to the 60-byte minimum."""
    return frames.ethernet(dst, src, ethertype, payload, padded=True)


class RawClient:
    """A WebSocket client on a plain socket: sends exactly the bytes a test asks for."""

    def __init__(self, port: int, path: str = "/", headers: dict[str, str] | None = None,
                 host: str = "127.0.0.1", expect: int | None = 101, rcvbuf: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect((host, port))
        key = base64.b64encode(os.urandom(16)).decode()
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           f"Sec-WebSocket-Version: 13\r\n{extra}\r\n").encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            buf += chunk
        head, _, self.buf = buf.partition(b"\r\n\r\n")
        self.pos = 0
        self.status = int(head.split(b" ")[1]) if head else 0
        self.head = head.decode("latin-1")
        if expect is not None:
            assert self.status == expect, f"expected HTTP {expect}, got {self.head!r}"

    # sending -------------------------------------------------------------------------
    @staticmethod
    def encode(payload: bytes, opcode: int = 0x2, fin: bool = True, masked: bool = True) -> bytes:
        n = len(payload)
        b0 = (0x80 if fin else 0) | opcode
        mbit = 0x80 if masked else 0
        if n < 126:
            header = bytes((b0, mbit | n))
        elif n < 65536:
            header = struct.pack("!BBH", b0, mbit | 126, n)
        else:
            header = struct.pack("!BBQ", b0, mbit | 127, n)
        if not masked:
            return header + payload
        mask = os.urandom(4)
        body = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
        return header + mask + body

    def send(self, payload: bytes, opcode: int = 0x2, **kw: bool) -> None:
        self.sock.sendall(self.encode(payload, opcode, **kw))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    # receiving -----------------------------------------------------------------------
    def _parse_one(self) -> tuple[int, bytes] | None:
        buf, pos = self.buf, self.pos
        avail = len(buf) - pos
        if avail < 2:
            return None
        n = buf[pos + 1] & 0x7F
        hdr = 2
        if n == 126:
            if avail < 4:
                return None
            n = struct.unpack_from("!H", buf, pos + 2)[0]
            hdr = 4
        elif n == 127:
            if avail < 10:
                return None
            n = struct.unpack_from("!Q", buf, pos + 2)[0]
            hdr = 10
        assert not buf[pos + 1] & 0x80, "server frames must not be masked"
        if avail < hdr + n:
            return None
        msg = (buf[pos] & 0x0F, bytes(buf[pos + hdr:pos + hdr + n]))
        pos += hdr + n
        if pos == len(buf):
            self.buf, self.pos = b"", 0
        elif pos > 1 << 16:
            self.buf, self.pos = buf[pos:], 0
        else:
            self.pos = pos
        return msg

    def recv_all(self, timeout: float = 0.3) -> list[tuple[int, bytes]]:
        """Every message that arrives until ``timeout`` passes with nothing new."""
        out = []
        while True:
            msg = self._parse_one()
            if msg is not None:
                out.append(msg)
                continue
            ready, _, _ = select.select([self.sock], [], [], timeout)
            if not ready:
                return out
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                return out
            self.buf += chunk

    def frames(self, timeout: float = 0.3) -> list[bytes]:
        return [p for op, p in self.recv_all(timeout) if op == 0x2]

    def recv_frame(self, timeout: float = 3.0) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            msg = self._parse_one()
            if msg is not None:
                if msg[0] == 0x2:
                    return msg[1]
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no frame arrived")
            ready, _, _ = select.select([self.sock], [], [], left)
            if ready:
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    raise ConnectionError("relay closed the connection")
                self.buf += chunk

    def closed_by_peer(self, timeout: float = 2.0) -> int | None:
        """Wait for the server to close: returns its close code (or -1 for a bare close)."""
        deadline = time.monotonic() + timeout
        code = None
        while time.monotonic() < deadline:
            msg = self._parse_one()
            if msg is not None:
                if msg[0] == 0x8:
                    code = struct.unpack("!H", msg[1][:2])[0] if len(msg[1]) >= 2 else 1005
                continue
            ready, _, _ = select.select([self.sock], [], [], 0.1)
            if ready:
                try:
                    chunk = self.sock.recv(65536)
                except ConnectionResetError:
                    return code if code is not None else -1
                if not chunk:
                    return code if code is not None else -1
                self.buf += chunk
        return None

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def http_get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode())
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body.decode()


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.02) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


# -- network namespaces (pyv86.testing.netns); conftest's ``netns`` fixture --------------------
def require_netns() -> None:
    _netns.require_netns(WHO)


# -- DHCP at frame level (built and parsed by pyv86.testing.frames) ----------------------------
def dhcp_frame(client_mac: bytes, xid: int, msg_type: int, extra: dict[int, bytes] | None = None) -> bytes:
    """A DHCP client message (DISCOVER=1, REQUEST=3) broadcast from ``client_mac``, with the
    options in ``extra`` and a parameter request for mask, router and DNS."""
    options = b"".join(bytes((code, len(value))) + value for code, value in (extra or {}).items())
    return frames.dhcp_message(client_mac, xid, msg_type, options + bytes((55, 3, 1, 3, 6)))


def parse_dhcp_reply(frame: bytes, xid: int) -> dict[str, object] | None:
    """``{"type": n, "yiaddr": "a.b.c.d", "server": "a.b.c.d"}`` for a server reply to ``xid``."""
    dhcp = frames.dhcp_from_server(frame)
    if dhcp is None or dhcp.op != 2 or dhcp.xid != xid:
        return None
    out: dict[str, object] = {"yiaddr": dhcp.yiaddr}
    if 53 in dhcp.options:
        out["type"] = dhcp.options[53][0]
    if 54 in dhcp.options:
        out["server"] = ".".join(map(str, dhcp.options[54]))
    return out


# -- a LAN with DHCP inside a namespace: bridge + dnsmasq + a relay uplinked to a TAP -------------
class DhcpLan(Lan):
    """In a fresh namespace of ``netns``: a bridge at 10.78.0.1/24 with dnsmasq handing out
    10.78.0.50-99, and ``pyv86 relay serve --port 8086 --tap ... --bridge ...``.
    Clients inside the namespace reach the relay at ws://127.0.0.1:8086/."""

    URL = "ws://127.0.0.1:8086/"

    def __init__(self, netns: Namespaces, tmp: str) -> None:
        try:
            import pyv86_relay_tap  # noqa: F401
        except ImportError:
            pytest.fail("this test needs the pyv86-relay-tap plugin: pip install -e plugins/relay_tap")
        super().__init__(netns.nsname("dh"), Path(tmp) / "dnsmasq", subnet="10.78.0",
                         bridge=netns.ifname("t7br"), who=WHO)
        netns.adopt(self)
        self.ns = self.name
        relay = self.start_relay(netns.ifname("t7up"), port=8086)
        self.relay, self.announce, self._relay = relay.proc, relay.announce, relay

    def stats(self) -> dict[str, Any]:
        return self._relay.stats()
