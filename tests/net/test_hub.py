"""``hub:NAME``: the learning switch, in one process and across processes through its UNIX socket."""
from __future__ import annotations

import itertools
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pyv86.machine import Machine
from pyv86.net.hub import MAGIC, MAC_TABLE_SIZE, get_hub, open_hub, parse_hub_url, socket_address
from pyv86.testing.realmode import start_real_mode

HERE = Path(__file__).parent
_n = itertools.count()


def name() -> str:
    return f"hubtest{os.getpid()}x{next(_n)}"


A, B, C = (bytes.fromhex(x) for x in ("020000000001", "020000000002", "020000000003"))
BCAST = b"\xff" * 6


def frame(dst: bytes, src: bytes, payload: bytes = b"x" * 46) -> bytes:
    return dst + src + b"\x88\xb5" + payload


def wait_for(cond, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.005)


class Collector:
    def __init__(self, port) -> None:
        self.frames: list[bytes] = []
        self.lock = threading.Lock()
        port.set_receiver(self.add)

    def add(self, f: bytes) -> None:
        with self.lock:
            self.frames.append(f)

    def take(self) -> list[bytes]:
        with self.lock:
            out, self.frames = self.frames, []
            return out


@pytest.mark.parametrize("url, expect", [("hub:lan", ("lan", True)), ("hub://lan", ("lan", True)),
                                         ("hub:a.b-c_1?scope=process", ("a.b-c_1", False))])
def test_hub_urls(url, expect):
    assert parse_hub_url(url) == expect


@pytest.mark.parametrize("url", ["hub:", "hub:has space", "hub:x?color=red", "hub:" + "n" * 65, "hub:../x"])
def test_bad_hub_urls_are_one_line_errors(url):
    with pytest.raises(ValueError) as err:
        parse_hub_url(url)
    assert "\n" not in str(err.value)


def test_in_process_switch_floods_learns_and_never_echoes():
    hub = f"{name()}?scope=process"
    pa, pb, pc = (open_hub(f"hub:{hub}") for _ in range(3))
    ca, cb, cc = Collector(pa), Collector(pb), Collector(pc)
    try:
        pa.send(frame(B, A))  # unknown destination: flooded
        assert cb.take() == [frame(B, A)] and cc.take() == [frame(B, A)] and ca.take() == []
        pb.send(frame(A, B))  # A was learned on pa: only pa gets it
        assert ca.take() == [frame(A, B)] and cc.take() == [] and cb.take() == []
        pa.send(frame(B, A))  # B learned now
        assert cb.take() == [frame(B, A)] and cc.take() == []
        pc.send(frame(BCAST, C))
        assert ca.take() == [frame(BCAST, C)] and cb.take() == [frame(BCAST, C)] and cc.take() == []
        mcast = bytes.fromhex("333300000001")
        pa.send(frame(mcast, A))
        assert cb.take() and cc.take() and not ca.take()
        pa.send(frame(A, A))  # to itself: dropped, not echoed
        assert not ca.take() and not cb.take() and not cc.take()
    finally:
        for p in (pa, pb, pc):
            p.close()


def test_bad_frames_are_counted_not_forwarded():
    pa = open_hub(f"hub:{name()}?scope=process")
    pb = get_hub(pa.hub.name, False).add_port()
    cb = Collector(pb)
    try:
        pa.send(b"short")
        pa.send(bytes(70000))
        assert cb.take() == []
        assert pa.hub.bad_frames == 2
    finally:
        pa.close()
        pb.close()


def test_mac_table_is_bounded():
    pa = open_hub(f"hub:{name()}?scope=process")
    pb = get_hub(pa.hub.name, False).add_port()
    Collector(pb)
    try:
        for i in range(MAC_TABLE_SIZE * 3):
            pa.send(frame(BCAST, b"\x02" + i.to_bytes(5, "big")))
        assert len(pa.hub.mac_table()) == MAC_TABLE_SIZE
    finally:
        pa.close()
        pb.close()


def test_last_port_closing_releases_the_hub():
    hub_name = name()
    p = open_hub(f"hub:{hub_name}")
    assert p.hub.role == "host"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(socket_address(hub_name))
    s.close()
    p.close()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with pytest.raises(ConnectionRefusedError):
        s.connect(socket_address(hub_name))
    s.close()


def test_frames_cross_threads_through_the_machine_thread():
    """A port of a running machine gets frames on the machine thread, through a bounded inbox."""
    hub = f"{name()}?scope=process"
    m = Machine(memory=1 << 20)
    got: list[tuple[bytes, str]] = []
    pm = open_hub(f"hub:{hub}", m)
    pm.set_receiver(lambda f: got.append((f, threading.current_thread().name)))
    other = open_hub(f"hub:{hub}")
    try:
        sender = threading.Thread(target=lambda: [other.send(frame(BCAST, B, bytes([i & 0xFF]) * 46)) for i in range(400)],
                                  name="sender")
        m.thread = threading.current_thread()  # as if the machine loop were running here
        sender.start()
        sender.join()
        assert got == []  # nothing delivered on the sender's thread
        m._drain_pending()
        assert len(got) + pm.dropped == 400
        assert pm.dropped == 400 - pm.handoff.limit
        assert {t for _f, t in got} == {threading.current_thread().name}
    finally:
        pm.close()
        other.close()


def start_peer(hub_name: str, mac: bytes) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, str(HERE / "hub_peer.py"), hub_name, mac.hex(":")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.startswith("ready"), (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc


@pytest.mark.parametrize("batched", [False, True], ids=["one-by-one", "batched"])
def test_two_processes_share_a_hub(batched):
    hub_name = name()
    port = open_hub(f"hub:{hub_name}")
    got = Collector(port)
    assert port.hub.role == "host"
    peer = start_peer(hub_name, B)
    try:
        wait_for(lambda: any(f[6:12] == B for f in got.frames))  # its hello broadcast arrived
        got.take()
        payloads = [b"ping%03d" % i + bytes(40 + (i * 97) % 1400) for i in range(50)]   # up to 1514 bytes
        if batched:    # what a port sends at the end of a CPU slice: one write to the socket
            port.hub.forward_many(port, [frame(B, A, p) for p in payloads])
        else:
            for p in payloads:
                port.send(frame(B, A, p))
        wait_for(lambda: len(got.frames) >= 50)
        replies = got.take()
        assert [r[14:] for r in replies] == [b"echo:" + p for p in payloads]
        assert all(r[0:6] == A and r[6:12] == B for r in replies)
        port.send(frame(B, A, b"bye"))
        assert peer.wait(10) == 0
    finally:
        if peer.poll() is None:
            peer.kill()
        port.close()


def test_members_reach_each_other_and_survive_the_host_leaving():
    hub_name = name()
    host = open_hub(f"hub:{hub_name}")
    Collector(host)
    peer_b = start_peer(hub_name, B)
    try:
        # a second member in this process is impossible (one switch per process), so use a raw
        # socket client speaking the hub protocol as member C
        def connect_member() -> socket.socket:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(5)
            s.connect(socket_address(hub_name))
            s.sendall(MAGIC)
            assert s.recv(len(MAGIC)) == MAGIC
            return s

        def send(s: socket.socket, f: bytes) -> None:
            s.sendall(struct.pack("!I", len(f)) + f)

        def recv(s: socket.socket) -> bytes:
            n = struct.unpack("!I", recvn(s, 4))[0]
            return recvn(s, n)

        def recvn(s: socket.socket, n: int) -> bytes:
            out = b""
            while len(out) < n:
                chunk = s.recv(n - len(out))
                assert chunk, "connection closed"
                out += chunk
            return out

        c = connect_member()
        send(c, frame(B, C, b"via-host" + bytes(40)))
        reply = recv(c)
        while reply[14:19] != b"echo:":  # skip broadcasts (hello) that may arrive first
            reply = recv(c)
        assert reply[0:6] == C and reply[14:] == b"echo:via-host" + bytes(40)
        # the host leaves: peer B takes over the socket name, C reconnects
        host.close()
        c.close()
        deadline = time.monotonic() + 10
        while True:
            try:
                c = connect_member()
                break
            except (ConnectionRefusedError, FileNotFoundError, AssertionError, OSError):
                assert time.monotonic() < deadline, "no process took over the hub"
                time.sleep(0.05)
        send(c, frame(B, C, b"after" + bytes(40)))
        reply = recv(c)
        while reply[14:19] != b"echo:":
            reply = recv(c)
        assert reply[14:] == b"echo:after" + bytes(40)
        send(c, frame(B, C, b"bye"))
        assert peer_b.wait(10) == 0
        c.close()
    finally:
        if peer_b.poll() is None:
            peer_b.kill()
        host.close()


def test_a_peer_sending_a_huge_length_is_disconnected_without_allocating():
    hub_name = name()
    host = open_hub(f"hub:{hub_name}")
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(socket_address(hub_name))
        s.sendall(MAGIC)
        assert s.recv(len(MAGIC)) == MAGIC
        wait_for(lambda: host.hub.links == 1)
        s.sendall(struct.pack("!I", 0x7FFFFFFF))
        wait_for(lambda: host.hub.links == 0)
        s.close()
    finally:
        host.close()


def test_a_foreign_protocol_is_refused():
    hub_name = name()
    host = open_hub(f"hub:{hub_name}")
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(6)
        s.connect(socket_address(hub_name))
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = s.recv(100)
        assert data == MAGIC  # the hub speaks first...
        try:
            rest = s.recv(100)
        except ConnectionResetError:
            rest = b""
        assert rest == b""  # ...then hangs up on a stranger
        assert host.hub.links == 0
        s.close()
    finally:
        host.close()


@pytest.mark.parametrize("batch", [1, 10], ids=["one-by-one", "batches-of-10"])
def test_a_slow_peer_fills_the_socket_then_frames_queue_in_order_or_are_counted(batch):
    """Frames go straight to the socket until it is full, then wait in the backlog, which is
    bounded in frames whether they came one by one or in a slice's batch."""
    from pyv86.net.hub import LINK_QUEUE_FRAMES, Hub

    hub_name = name()
    host, member = Hub(hub_name), Hub(hub_name)
    try:
        assert (host.role, member.role) == ("host", "member")
        pa, pb = host.add_port(), member.add_port()
        release = threading.Event()
        got: list[bytes] = []

        def slow(f: bytes) -> None:  # runs on the member's reader thread: blocking it stops reading
            release.wait(10)
            got.append(f)

        pb.set_receiver(slow)
        wait_for(lambda: host.links == 1)
        link = next(x for x in host._links if x is not pa).stream
        # a small send buffer and 9 KB frames (jumbo frames are allowed on a hub): a frame
        # then often goes out in part, and its tail must go next
        link.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        total, size = 1500, 9000
        frames = [frame(B, A, struct.pack("!I", i) + bytes([i & 0xFF]) * size) for i in range(total)]
        for i in range(0, total, batch):
            if batch == 1:
                pa.send(frames[i])
            else:
                host.forward_many(pa, frames[i:i + batch])
            assert link.queued_frames <= LINK_QUEUE_FRAMES
        assert link.dropped > 0, "the socket never filled: the backlog path was not exercised"
        assert link.dropped <= total - (LINK_QUEUE_FRAMES - batch)
        release.set()
        wait_for(lambda: len(got) + link.dropped == total, timeout=20)
        seqs = [struct.unpack("!I", f[14:18])[0] for f in got]
        assert seqs == sorted(set(seqs)), "frames were reordered or duplicated"
        assert all(f[18:] == bytes([s & 0xFF]) * size for s, f in zip(seqs, got)), "a frame was cut"
        assert link.sent_frames == total - link.dropped
    finally:
        member.close()
        host.close()


def test_frames_sent_during_a_cpu_slice_are_switched_together_when_it_ends(monkeypatch):
    """A running machine's port holds the frames that follow each other during a slice and
    switches them, in order, as the slice ends; a frame after a quiet spell, or sent
    without a running CPU, is switched at once."""
    from pyv86.net import handoff
    monkeypatch.setattr(handoff, "QUIET_S", 3600.0)   # only the very first frame is "after quiet"
    hub = f"{name()}?scope=process"
    m = Machine(memory=1 << 20)
    m.attach_cpu()
    port = open_hub(f"hub:{hub}", m)
    other = open_hub(f"hub:{hub}")
    got = Collector(other)
    seen_during_the_slice: list[int] = []

    def guest_out(_offset: int, _size: int, value: int) -> None:
        port.send(frame(B, A, bytes([value]) * 46))
        seen_during_the_slice.append(len(got.frames))
    m.ports.map(0x500, 1, None, guest_out, "test")
    # real mode: mov dx, 0x500; mov al, 7; out dx, al; inc al; out dx, al; inc al; out dx, al; hlt
    program = bytes([0xBA, 0x00, 0x05, 0xB0, 0x07, 0xEE, 0xFE, 0xC0, 0xEE, 0xFE, 0xC0, 0xEE, 0xF4])

    def boot(mm: Machine) -> None:
        mm.memory.write(0x1000, program)
        start_real_mode(mm.cpu)
    m.boot_hooks.append(boot)
    m.realize()
    m.reset()
    try:
        m.run(max_instructions=1000, timeout_s=10)
        assert seen_during_the_slice == [1, 1, 1]     # the first at once, the others held
        assert [f[14] for f in got.take()] == [7, 8, 9]
        port.send(frame(B, A, b"now" + bytes(43)))   # not in a slice: at once
        assert [f[14:17] for f in got.take()] == [b"now"]
        assert port.sent_frames == 4 and other.received_frames == 4
    finally:
        port.close()
        other.close()
