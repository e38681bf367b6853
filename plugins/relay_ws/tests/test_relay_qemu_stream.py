"""``pyv86 relay serve --qemu-stream``: QEMU VMs (``-netdev stream,server=off``) as switch
ports beside WebSocket clients, driven here by raw sockets speaking QEMU's stream format
(each frame behind a 4-byte big-endian length) and by pyv86's own ``stream:`` backend."""
from __future__ import annotations

import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pyv86.net.socketnet import StreamBackend
from pyv86.testing.net import DirectMachine
from pyv86_relay_ws.server import RelayLimits, RelayServer
from relayhelp import BCAST, RawClient, eth, mac, wait_for

PYV86 = str(Path(sys.executable).with_name("pyv86"))


class QemuPeer:
    """A QEMU stream netdev as seen from the relay: length-prefixed frames on TCP."""

    def __init__(self, server: RelayServer) -> None:
        assert server.qemu_stream is not None
        self.sock = socket.create_connection(server.qemu_stream, timeout=5)
        self.buf = b""

    def send(self, frame: bytes) -> None:
        self.sock.sendall(struct.pack("!I", len(frame)) + frame)

    def frames(self, timeout: float = 0.3) -> list[bytes]:
        out: list[bytes] = []
        deadline = time.monotonic() + timeout
        while True:
            while len(self.buf) >= 4 and len(self.buf) >= 4 + struct.unpack("!I", self.buf[:4])[0]:
                n = struct.unpack("!I", self.buf[:4])[0]
                out.append(self.buf[4:4 + n])
                self.buf = self.buf[4 + n:]
            left = deadline - time.monotonic()
            if left <= 0:
                return out
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return out
            if not chunk:
                return out
            self.buf += chunk

    def closed_by_peer(self, timeout: float = 3.0) -> bool:
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(65536):
                pass
        except (TimeoutError, ConnectionResetError):
            return False
        return True

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def relay_with_qemu(relay):
    return relay(qemu_stream="127.0.0.1:0")


def test_qemu_vms_and_websocket_clients_share_the_switch(relay_with_qemu):
    server = relay_with_qemu
    q1, q2 = QemuPeer(server), QemuPeer(server)
    ws = RawClient(server.port)
    assert wait_for(lambda: server.client_count == 3)
    q1.send(eth(BCAST, mac(1), payload=b"from-qemu"))
    assert q2.frames() == [eth(BCAST, mac(1), payload=b"from-qemu")]
    assert ws.frames() == [eth(BCAST, mac(1), payload=b"from-qemu")]
    assert q1.frames() == []  # no echo
    ws.send(eth(mac(1), mac(3), payload=b"to-qemu-1"))
    assert q1.frames() == [eth(mac(1), mac(3), payload=b"to-qemu-1")]
    assert q2.frames() == []  # learned unicast reaches its owner only
    q2.send(eth(BCAST, mac(2), payload=b"x"))  # now the switch knows mac(2) too
    assert len(ws.frames()) == 1 and len(q1.frames()) == 1
    q1.send(eth(mac(2), mac(1), payload=b"qemu-to-qemu"))
    assert q2.frames() == [eth(mac(2), mac(1), payload=b"qemu-to-qemu")]
    ports = {p["name"]: p for p in server.stats["ports"]}
    assert sorted(p["wire"] for p in ports.values()) == ["qemu-stream", "qemu-stream", "ws"]
    assert server.stats["unicast"] == 2


def test_a_bad_qemu_stream_is_counted_or_closed_and_never_reaches_others(relay_with_qemu):
    server = relay_with_qemu
    q, other = QemuPeer(server), QemuPeer(server)
    assert wait_for(lambda: server.client_count == 2)
    q.sock.sendall(struct.pack("!I", 5) + b"short")  # a runt: dropped, counted
    q.send(eth(BCAST, mac(1), payload=b"ok"))
    assert other.frames() == [eth(BCAST, mac(1), payload=b"ok")]
    assert wait_for(lambda: server.stats["totals"]["drop_malformed"] == 1)
    # frames split across writes are put back together
    frame = eth(BCAST, mac(1), payload=b"in pieces")
    wire = struct.pack("!I", len(frame)) + frame
    for i in range(0, len(wire), 7):
        q.sock.sendall(wire[i:i + 7])
        time.sleep(0.01)
    assert other.frames() == [frame]
    # a length no Ethernet frame has: this peer does not speak the format; it is closed
    q.sock.sendall(struct.pack("!I", 1 << 24) + b"\x00" * 64)
    assert q.closed_by_peer()
    assert wait_for(lambda: server.client_count == 1)
    assert other.frames() == []


def test_quiet_qemu_peers_are_not_closed_by_the_idle_timeout(relay):
    server = relay(qemu_stream="127.0.0.1:0", limits=RelayLimits(idle_timeout=0.3))
    q = QemuPeer(server)
    ws = RawClient(server.port)
    assert wait_for(lambda: server.client_count == 2)
    # the raw WebSocket client never answers the relay's pings and is closed; QEMU cannot
    # answer them either, but it stays
    assert wait_for(lambda: server.client_count == 1, timeout=5)
    time.sleep(0.6)
    assert [p["wire"] for p in server.stats["ports"]] == ["qemu-stream"]
    q.send(eth(BCAST, mac(1), payload=b"still here"))
    assert wait_for(lambda: server.stats["totals"]["rx_frames"] >= 1)
    q.close()
    ws.sock.close()


def test_pyv86_stream_backend_joins_the_relay_like_qemu(relay_with_qemu):
    server = relay_with_qemu
    got: list[bytes] = []
    be = StreamBackend("stream:%s:%d" % server.qemu_stream, DirectMachine())
    be.set_receiver(got.append)
    try:
        ws = RawClient(server.port)
        assert wait_for(lambda: server.client_count == 2 and be.connected)
        be.send(eth(BCAST, mac(5), payload=b"pyv86 over stream"))
        assert ws.frames() == [eth(BCAST, mac(5), payload=b"pyv86 over stream")]
        ws.send(eth(mac(5), mac(6), payload=b"back"))
        assert wait_for(lambda: got == [eth(mac(5), mac(6), payload=b"back")])
    finally:
        be.close()


def test_cli_rejects_a_malformed_qemu_stream_address():
    proc = subprocess.run([PYV86, "relay", "serve", "--port", "0", "--qemu-stream", "nowhere"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines and "--qemu-stream 'nowhere'" in lines[-1] and "HOST:PORT" in lines[-1], proc.stderr


def test_qemu_peers_count_against_max_clients(relay):
    server = relay(qemu_stream="127.0.0.1:0", limits=RelayLimits(max_clients=2))
    a, b = QemuPeer(server), RawClient(server.port)
    assert wait_for(lambda: server.client_count == 2)
    c = QemuPeer(server)
    assert c.closed_by_peer(), "a third peer was let in beyond --max-clients 2"
    assert server.client_count == 2 and server.stats["rejected"] == 1
    a.close()
    b.sock.close()
    c.close()
