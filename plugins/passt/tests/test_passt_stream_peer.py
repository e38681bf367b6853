"""The backend against a fake passt (a UNIX socket server in the test): bad frames, a stalled peer."""
from __future__ import annotations

import logging
import socket
import threading
import time

import pytest

from pyv86_passt.framing import FrameDecoder, encode

GOOD = bytes.fromhex("525400123456") + bytes.fromhex("0200000000fe") + b"\x08\x00" + bytes(46)


class FakePasst:
    """Accepts one client; the test scripts what it sends and reads what it gets."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(1)
        self.listener.settimeout(5)
        self.conn: socket.socket | None = None
        self._accepted = threading.Thread(target=self._accept, daemon=True)
        self._accepted.start()

    def _accept(self) -> None:
        self.conn, _ = self.listener.accept()

    def client(self) -> socket.socket:
        self._accepted.join(5)
        assert self.conn is not None, "the backend never connected"
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.listener.close()


@pytest.fixture
def fake_passt(tmp_path):
    fake = FakePasst(str(tmp_path / "fake.socket"))
    yield fake
    fake.close()


def _collect(run, n: int, timeout: float = 5.0) -> list[bytes]:
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        try:
            out.append(run.frames.get(timeout=0.1))
        except Exception:  # noqa: BLE001 - queue.Empty
            pass
    return out


def test_runts_and_giants_from_passt_are_dropped_counted_and_logged(url_machine, fake_passt, caplog):
    caplog.set_level(logging.WARNING, logger="pyv86_passt")
    run = url_machine(f"passt:{fake_passt.path}")
    peer = fake_passt.client()
    giant = 70000
    peer.sendall(encode(GOOD[:13]) + encode(GOOD) + encode(bytes(giant)) + encode(GOOD[:40] + b"x" * 20))
    frames = _collect(run, 2)
    assert frames == [GOOD, GOOD[:40] + b"x" * 20]
    c = run.backend.counters
    assert (c.rx_runts, c.rx_giants, c.rx_frames) == (1, 1, 2)
    text = caplog.text
    assert "dropped a frame of 13 bytes from passt (frames must be 14..65535 bytes)" in text
    assert f"dropped a frame of {giant} bytes from passt" in text


def test_frames_above_1514_bytes_are_delivered_and_logged(url_machine, fake_passt, caplog):
    caplog.set_level(logging.WARNING, logger="pyv86_passt")
    run = url_machine(f"passt:{fake_passt.path}")
    big = GOOD + bytes(9000 - len(GOOD))
    fake_passt.client().sendall(encode(big))
    assert _collect(run, 1) == [big]
    assert run.backend.counters.rx_oversize == 1
    assert "passt sent a 9000-byte frame, larger than Ethernet's 1514" in caplog.text


def test_frames_sent_by_the_nic_arrive_framed(url_machine, fake_passt):
    run = url_machine(f"passt:{fake_passt.path}")
    peer = fake_passt.client()
    sent = [GOOD[:14 + i] + bytes([i]) for i in range(1, 40)]
    for f in sent:
        run.send(f)
    run.send(b"short")                       # never leaves: not an Ethernet frame
    d = FrameDecoder()
    got: list[bytes] = []
    peer.settimeout(5)
    while len(got) < len(sent):
        got += d.feed(peer.recv(65536))
    assert got == sent
    deadline = time.monotonic() + 2
    c = run.backend.counters
    while (c.tx_invalid, c.tx_frames) != (1, len(sent)) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert run.backend.counters.tx_invalid == 1
    assert run.backend.counters.tx_frames == len(sent)


def test_a_peer_that_stops_reading_costs_dropped_frames_not_a_stuck_machine(url_machine, fake_passt):
    run = url_machine(f"passt:{fake_passt.path}")
    fake_passt.client()                      # connected, but never reads
    frame = GOOD + bytes(1514 - len(GOOD))
    done = threading.Event()

    def flood() -> None:
        for _ in range(4000):                # ~6 MB: more than socket buffers plus the queue
            run.backend.send(frame)
        done.set()

    t0 = time.monotonic()
    run.machine.call_soon_threadsafe(flood)
    assert done.wait(5), "send() blocked the machine thread"
    assert time.monotonic() - t0 < 5
    c = run.backend.counters
    assert c.tx_dropped > 0
    assert c.tx_frames + c.tx_dropped + run.backend._txq.qsize() <= 4000 + 1
    assert run.thread.is_alive()


class _SlowNic:
    """A NIC ring of a few frames that the 'guest' empties only when the test says so."""

    def __init__(self) -> None:
        from pyv86.net.port import NicPort

        self.room = 4
        self.got: list[bytes] = []
        self.port = NicPort("slow", self.receive, queue_frames=4)

    def receive(self, frame: bytes):
        from pyv86.net.port import RxResult

        if self.room <= 0:
            return RxResult.NO_ROOM
        self.room -= 1
        self.got.append(frame)
        return RxResult.STORED

    def guest_reads(self, n: int) -> None:  # machine thread
        self.room += n
        self.port.rx_space()


def test_a_slow_nic_holds_passt_back_and_no_frame_is_lost(url_machine, fake_passt):
    run = url_machine(f"passt:{fake_passt.path}")
    nic = _SlowNic()
    done = threading.Event()
    run.machine.call_soon_threadsafe(lambda: (nic.port.attach(run.backend), done.set()))
    assert done.wait(5)
    peer = fake_passt.client()
    total = 4000                          # ~6 MB: more than every buffer on the way holds
    frames = [GOOD[:-4] + i.to_bytes(4, "big") + bytes(1400) for i in range(total)]

    def flood() -> None:
        for i in range(0, total, 100):
            peer.sendall(b"".join(encode(f) for f in frames[i:i + 100]))

    sender = threading.Thread(target=flood, daemon=True)
    sender.start()
    deadline = time.monotonic() + 30
    most_waiting = 0
    while len(nic.got) < total:
        assert time.monotonic() < deadline, f"only {len(nic.got)} of {total} frames arrived"
        most_waiting = max(most_waiting, run.backend.rx_waiting)
        run.machine.call_soon_threadsafe(lambda: nic.guest_reads(16))
        time.sleep(0.0005)
    sender.join(5)
    assert nic.got == frames
    c = nic.port.counters
    assert (c.rx_queue_drops, c.rx_nic_drops, run.backend.counters.rx_frames) == (0, 0, total)
    assert c.rx_pauses > 0 and most_waiting <= run.backend.rx_limit
    assert nic.port.queued == 0 and run.backend.rx_waiting == 0


def test_close_does_not_hang_while_the_nic_holds_passt_back(url_machine, fake_passt):
    run = url_machine(f"passt:{fake_passt.path}")
    nic = _SlowNic()
    nic.room = 0                          # the guest never reads
    done = threading.Event()
    run.machine.call_soon_threadsafe(lambda: (nic.port.attach(run.backend), done.set()))
    assert done.wait(5)
    peer = fake_passt.client()
    peer.settimeout(0.2)
    frame = encode(GOOD + bytes(1400))
    deadline = time.monotonic() + 10
    while run.backend.rx_waiting < run.backend.rx_limit:   # the reader is now waiting
        assert time.monotonic() < deadline, f"only {run.backend.rx_waiting} frames wait"
        try:
            peer.sendall(frame * 50)
        except OSError:  # socket.timeout: our side stopped reading, as it should
            pass
    t0 = time.monotonic()
    run.backend.close()
    assert time.monotonic() - t0 < 5, "close() hung on a reader held back by the NIC"
    assert nic.port.counters.rx_queue_drops == 0
