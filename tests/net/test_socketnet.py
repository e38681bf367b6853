"""``stream:`` and ``dgram:``: QEMU's socket netdev wire formats, against peers written here
from the format (a length-prefixed TCP/UNIX stream; one frame per UDP datagram)."""
from __future__ import annotations

import os
import socket
import struct
import threading
import time

import pytest

from pyv86.errors import ConfigError
from pyv86.net.socketnet import (DgramBackend, StreamBackend, parse_dgram_url, parse_stream_url)
from pyv86.testing.net import DirectMachine

A, B = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")


def frame(i: int, size: int = 60) -> bytes:
    return B + A + b"\x88\xb5" + struct.pack("!I", i) + bytes([i & 0xFF]) * (size - 18)


def wait_for(cond, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.005)


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Collector:
    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.lock = threading.Lock()

    def __call__(self, f: bytes) -> None:
        with self.lock:
            self.frames.append(f)


def read_framed(sock: socket.socket, n: int, timeout: float = 5.0) -> list[bytes]:
    """Read ``n`` length-prefixed frames (QEMU's stream format)."""
    sock.settimeout(timeout)
    buf, out = b"", []
    while len(out) < n:
        while len(buf) >= 4 and len(buf) >= 4 + struct.unpack("!I", buf[:4])[0]:
            length = struct.unpack("!I", buf[:4])[0]
            out.append(buf[4:4 + length])
            buf = buf[4 + length:]
        if len(out) >= n:
            break
        chunk = sock.recv(65536)
        assert chunk, f"peer closed after {len(out)} of {n} frames"
        buf += chunk
    return out


def framed(f: bytes) -> bytes:
    return struct.pack("!I", len(f)) + f


# ---------------------------------------------------------------------------- URLs


@pytest.mark.parametrize("url, expect", [
    ("stream:127.0.0.1:5555", ("127.0.0.1:5555", False)),
    ("stream://127.0.0.1:5555?server=on", ("127.0.0.1:5555", True)),
    ("stream:[::1]:5555?server=off", ("[::1]:5555", False)),
    ("stream:unix:/tmp/x.sock?server=on", ("unix:/tmp/x.sock", True)),
])
def test_stream_urls(url, expect):
    address, server = parse_stream_url(url)
    assert (str(address), server) == expect


def test_dgram_urls():
    spec = parse_dgram_url("dgram:127.0.0.1:6000?remote=127.0.0.1:6001")
    assert (str(spec.local), str(spec.remote), spec.group) == ("127.0.0.1:6000", "127.0.0.1:6001", False)
    spec = parse_dgram_url("dgram:230.0.0.1:1234?ttl=4&ifaddr=10.0.0.1")
    assert (str(spec.remote), spec.group, spec.ttl, spec.ifaddr) == ("230.0.0.1:1234", True, 4, "10.0.0.1")


@pytest.mark.parametrize("url, words", [
    ("stream:", "no address"),
    ("stream:127.0.0.1", "HOST:PORT"),
    ("stream:127.0.0.1:0", "1 to 65535"),
    ("stream:127.0.0.1:99999", "1 to 65535"),
    ("stream:127.0.0.1:5555?server=maybe", "server=on"),
    ("stream:127.0.0.1:5555?color=red", "unknown option 'color'"),
    ("stream:unix:", "socket path"),
    ("dgram:127.0.0.1:5555", "remote="),
    ("dgram:127.0.0.1:5555?remote=[::1]:5556", "both be IPv4"),
    ("dgram:230.0.0.1:1234?ttl=300", "0..255"),
    ("dgram:230.0.0.1:1234?ifaddr=eth0", "not an IPv4 address"),
    ("dgram:127.0.0.1:5555?remote=127.0.0.1:5556&ttl=2", "multicast group"),
])
def test_bad_urls_are_one_line_errors(url, words):
    parse = parse_dgram_url if url.startswith("dgram") else parse_stream_url
    with pytest.raises(ValueError) as err:
        parse(url)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_a_busy_port_is_a_config_error_naming_the_netdev():
    from pyv86.config import NetdevSpec
    from pyv86.net.attach import open_netdev
    from pyv86.plugins.manager import create_plugin_manager

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        spec = NetdevSpec(id="lan", url=f"stream:127.0.0.1:{port}?server=on")
        with pytest.raises(ConfigError) as err:
            open_netdev(spec, DirectMachine(), create_plugin_manager(autoload=False))
    msg = str(err.value)
    assert msg.startswith("netdev.lan.url: ") and f"cannot listen on 127.0.0.1:{port}" in msg


# ---------------------------------------------------------------------------- stream


@pytest.fixture
def client_and_listener():
    """A ``stream:`` client backend (frames it receives go to ``got``) and the listening
    socket it connects to, playing QEMU's ``-netdev stream,server=on``."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        got = Collector()
        be = StreamBackend(f"stream:127.0.0.1:{listener.getsockname()[1]}", DirectMachine())
        be.set_receiver(got)
        try:
            yield be, got, listener
        finally:
            be.close()


def test_client_exchanges_length_prefixed_frames_with_a_listening_peer(client_and_listener):
    be, got, listener = client_and_listener
    peer, _ = listener.accept()
    with peer:
        wait_for(lambda: be.connected)
        sent = [frame(i, 60 + i * 7) for i in range(200)]
        for f in sent:
            be.send(f)
        assert read_framed(peer, 200) == sent
        mine = [frame(1000 + i, 1514 - i) for i in range(100)]
        peer.sendall(b"".join(framed(f) for f in mine))
        wait_for(lambda: len(got.frames) == 100)
        assert got.frames == mine
        st = be.stats
        assert (st["tx_frames"], st["rx_frames"], st["connected"]) == (200, 100, True)


def test_runts_and_oversize_frames_are_counted_and_a_bad_length_closes_the_stream(client_and_listener):
    be, got, listener = client_and_listener
    peer, _ = listener.accept()
    with peer:
        peer.sendall(framed(b"\x01" * 13) + framed(frame(1, 1515)) + framed(frame(2)))
        wait_for(lambda: len(got.frames) == 1)
        assert got.frames == [frame(2)]
        st = be.stats
        assert (st["rx_runt"], st["rx_oversize"]) == (1, 1)
        # a length no Ethernet frame has: the peer is not speaking this format
        peer.sendall(struct.pack("!I", 1 << 20) + frame(3))
        wait_for(lambda: not be.connected)
    # ... and the client connects again by itself
    again, _ = listener.accept()
    with again:
        wait_for(lambda: be.connected)
        again.sendall(framed(frame(4)))
        wait_for(lambda: len(got.frames) == 2)
        assert got.frames[-1] == frame(4)
        assert be.stats["connections"] == 2


def test_frames_sent_while_no_peer_is_connected_are_dropped_and_counted():
    be = StreamBackend(f"stream:127.0.0.1:{free_port()}", DirectMachine())
    try:
        for i in range(5):
            be.send(frame(i))
        assert be.stats["tx_no_peer"] == 5 and be.stats["tx_frames"] == 0
    finally:
        be.close()


def test_server_takes_a_peer_and_a_new_one_replaces_it():
    port = free_port()
    got = Collector()
    be = StreamBackend(f"stream:127.0.0.1:{port}?server=on", DirectMachine())
    be.set_receiver(got)
    try:
        first = socket.create_connection(("127.0.0.1", port))
        wait_for(lambda: be.connected)
        first.sendall(framed(frame(1)))
        wait_for(lambda: len(got.frames) == 1)
        second = socket.create_connection(("127.0.0.1", port))
        wait_for(lambda: be.stats["connections"] == 2)
        first.settimeout(5)
        assert first.recv(100) == b"", "the replaced peer was not disconnected"
        be.send(frame(2))
        assert read_framed(second, 1) == [frame(2)]
        second.close()
        first.close()
    finally:
        be.close()


@pytest.mark.parametrize("family", ["tcp", "unix"])
def test_two_backends_join_as_server_and_client(tmp_path, family):
    where = f"unix:{tmp_path / 'vm.sock'}" if family == "unix" else f"127.0.0.1:{free_port()}"
    left, right = Collector(), Collector()
    server = StreamBackend(f"stream:{where}?server=on", DirectMachine())
    client = StreamBackend(f"stream:{where}", DirectMachine())
    server.set_receiver(left)
    client.set_receiver(right)
    try:
        wait_for(lambda: server.connected and client.connected)
        for i in range(300):
            client.send(frame(i, 60 + i))
            server.send(frame(5000 + i, 1514 - i))
        wait_for(lambda: len(left.frames) == 300 and len(right.frames) == 300)
        assert left.frames == [frame(i, 60 + i) for i in range(300)]
        assert right.frames == [frame(5000 + i, 1514 - i) for i in range(300)]
    finally:
        client.close()
        server.close()


def test_the_client_comes_back_after_the_server_restarts():
    port = free_port()
    got = Collector()
    client = StreamBackend(f"stream:127.0.0.1:{port}", DirectMachine())
    client.set_receiver(got)
    try:
        server = StreamBackend(f"stream:127.0.0.1:{port}?server=on", DirectMachine())
        wait_for(lambda: client.connected and server.connected)
        server.send(frame(1))
        wait_for(lambda: len(got.frames) == 1)
        server.close()
        wait_for(lambda: not client.connected)
        server = StreamBackend(f"stream:127.0.0.1:{port}?server=on", DirectMachine())
        wait_for(lambda: client.connected and server.connected, timeout=10)
        server.send(frame(2))
        wait_for(lambda: len(got.frames) == 2)
        assert got.frames == [frame(1), frame(2)]
        server.close()
    finally:
        client.close()


def test_a_full_nic_slows_the_stream_down_instead_of_losing_frames():
    """The receiver says "full" (as a NIC port does); frames wait, the reader stops reading,
    and after ``rx_resume`` every frame arrives, in order."""
    port = free_port()
    got: list[bytes] = []
    full = threading.Event()
    full.set()
    machine = DirectMachine()

    def nic(f: bytes):
        got.append(f)
        return False if full.is_set() else None

    server = StreamBackend(f"stream:127.0.0.1:{port}?server=on", machine)
    client = StreamBackend(f"stream:127.0.0.1:{port}", DirectMachine())
    server.set_receiver(nic)
    try:
        wait_for(lambda: server.connected and client.connected)
        total = 3000
        for i in range(total):
            client.send(frame(i, 1514))
        time.sleep(0.3)
        assert len(got) == 1, "frames were handed over while the NIC was full"
        full.clear()
        server.rx_resume()
        wait_for(lambda: len(got) + client.stats["tx_dropped_queue"] == total, timeout=20)
        assert server.stats["rx_dropped_backlog"] == 0
        seqs = [struct.unpack("!I", f[14:18])[0] for f in got]
        assert seqs == sorted(set(seqs))
    finally:
        client.close()
        server.close()


# ---------------------------------------------------------------------------- dgram


def test_dgram_pair_exchanges_one_frame_per_datagram_and_ignores_strangers():
    pa, pb = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_DGRAM)
    got_a, got_b = Collector(), Collector()
    a = DgramBackend(f"dgram:127.0.0.1:{pa}?remote=127.0.0.1:{pb}", DirectMachine())
    b = DgramBackend(f"dgram:127.0.0.1:{pb}?remote=127.0.0.1:{pa}", DirectMachine())
    a.set_receiver(got_a)
    b.set_receiver(got_b)
    try:
        a.send(frame(1))
        b.send(frame(2, 1514))
        wait_for(lambda: got_a.frames and got_b.frames)
        assert (got_b.frames, got_a.frames) == ([frame(1)], [frame(2, 1514)])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
            stranger.sendto(frame(3), ("127.0.0.1", pa))
            wait_for(lambda: a.stats["rx_foreign"] == 1)
        # runts and oversize datagrams from the remote itself are counted, not delivered
        b.sock.sendto(b"\x00" * 10, ("127.0.0.1", pa))
        b.sock.sendto(frame(4, 2000), ("127.0.0.1", pa))
        wait_for(lambda: a.stats["rx_runt"] == 1 and a.stats["rx_oversize"] == 1)
        assert got_a.frames == [frame(2, 1514)]
    finally:
        a.close()
        b.close()


def test_dgram_to_nobody_counts_and_keeps_going():
    pa = free_port(socket.SOCK_DGRAM)
    a = DgramBackend(f"dgram:127.0.0.1:{pa}?remote=127.0.0.1:{free_port(socket.SOCK_DGRAM)}",
                     DirectMachine())
    try:
        for i in range(20):
            a.send(frame(i))
        st = a.stats
        assert st["tx_frames"] + st["tx_no_peer"] == 20
        assert a._thread.is_alive()
    finally:
        a.close()
    assert not a._thread.is_alive()


def test_no_thread_is_left_behind():
    before = threading.active_count()
    port = free_port()
    for _ in range(3):
        s = StreamBackend(f"stream:127.0.0.1:{port}?server=on", DirectMachine())
        c = StreamBackend(f"stream:127.0.0.1:{port}", DirectMachine())
        wait_for(lambda: s.connected and c.connected)
        c.close()
        s.close()
    wait_for(lambda: threading.active_count() <= before, timeout=5)


def test_garbage_from_a_stream_peer_never_reaches_the_nic_as_a_bad_frame(client_and_listener):
    """Random bytes and random length prefixes, in random pieces, over several connections:
    every frame handed to the NIC is 14..1514 bytes, the good frames that open each session
    all arrive, and the client survives each session and connects again."""
    import random

    be, got, listener = client_and_listener
    rng = random.Random(86)
    openers: list[bytes] = []
    for session in range(12):
        peer, _ = listener.accept()
        with peer:
            wait_for(lambda: be.connected)
            first = [frame(session * 100 + i, rng.randint(18, 1514)) for i in range(3)]
            openers += first
            wire = bytearray(b"".join(framed(f) for f in first))
            for i in range(40):
                kind = rng.random()
                if kind < 0.4:      # a good frame
                    wire += framed(frame(session * 100 + 10 + i, rng.randint(18, 1514)))
                elif kind < 0.7:    # a well-framed runt or giant
                    n = rng.choice([0, 1, 13, 1515, 9000, 65535])
                    wire += struct.pack("!I", n) + rng.randbytes(n)
                else:               # raw garbage (may announce any length)
                    wire += rng.randbytes(rng.randint(1, 300))
            at = 0
            try:
                while at < len(wire):
                    step = rng.randint(1, 4000)
                    peer.sendall(wire[at:at + step])
                    at += step
            except OSError:
                pass  # the client closed a stream that stopped making sense
        wait_for(lambda: not be.connected)
    time.sleep(0.2)
    with got.lock:
        frames_in = list(got.frames)
    assert all(14 <= len(f) <= 1514 for f in frames_in)
    missing = [f[14:18].hex() for f in openers if f not in frames_in]
    assert not missing, f"good frames sent before any garbage were lost: {missing}"
    assert be._thread.is_alive(), "the connect loop died"


@pytest.mark.netns
def test_vms_on_a_multicast_group_hear_each_other_but_not_themselves():
    """Three members of one group in a namespace this test makes (multicast routed on its
    loopback): two ``dgram:`` backends and a plain socket doing what QEMU's ``-netdev
    socket,mcast=`` does. Every frame reaches the other members, none comes back to its
    sender."""
    from pyv86.testing.netns import Netns, require_netns

    require_netns("multicast dgram test")
    ns = Netns(f"p7mc-{os.getpid()}")
    try:
        ns.ip("link", "set", "lo", "multicast", "on")
        ns.ip("route", "add", "224.0.0.0/4", "dev", "lo")
        group, port = "230.0.0.86", 18600
        url = f"dgram:{group}:{port}"
        a, b = (ns.run_in(lambda: DgramBackend(url, DirectMachine())) for _ in range(2))

        def qemu_like() -> socket.socket:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind((group, port))
            s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                         socket.inet_aton(group) + socket.inet_aton("0.0.0.0"))
            s.settimeout(3)
            return s

        q = ns.run_in(qemu_like)
        got_a, got_b = Collector(), Collector()
        a.set_receiver(got_a)
        b.set_receiver(got_b)
        try:
            fa, fb, fq = frame(1), frame(2, 1514), frame(3, 100)
            a.send(fa)
            b.send(fb)
            q.sendto(fq, (group, port))
            wait_for(lambda: len(got_a.frames) == 2 and len(got_b.frames) == 2)
            assert sorted(got_a.frames) == sorted([fb, fq])
            assert sorted(got_b.frames) == sorted([fa, fq])
            heard = set()
            while len(heard) < 3:
                heard.add(q.recv(2000))
            assert heard == {fa, fb, fq}  # the plain socket hears its own too, as QEMU does
            time.sleep(0.2)
            assert a.stats["rx_own"] == 1 and b.stats["rx_own"] == 1
            assert len(got_a.frames) == 2 and len(got_b.frames) == 2
        finally:
            q.close()
            a.close()
            b.close()
    finally:
        ns.close()
