"""Lossless back-pressure: NicPort -> Handoff -> a threaded backend that stops reading.

The port tells a backend with ``rx_resume`` to hold frames once the NIC is full and
resumes it when the NIC took everything that waited; a :class:`Handoff` keeps frames in
order while paused, drops when full in non-blocking mode, and makes a reader thread wait
in blocking mode (so nothing is lost however slow the NIC is).
"""
from __future__ import annotations

import threading
import time

from pyv86.net.handoff import Handoff
from pyv86.net.port import NicPort, RxResult

F = bytes.fromhex("020000000002020000000001" "0800") + bytes(46)


def frame(i: int) -> bytes:
    return F[:-4] + i.to_bytes(4, "big")


class SlowNic:
    """A NIC with a ring of ``room`` frames that the test empties by hand."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.got: list[bytes] = []
        self.port: NicPort | None = None

    def receive(self, f: bytes) -> RxResult:
        if self.room <= 0:
            return RxResult.NO_ROOM
        self.room -= 1
        self.got.append(f)
        return RxResult.STORED

    def guest_reads(self, n: int) -> None:
        self.room += n
        assert self.port is not None
        self.port.rx_space()


class FlowBackend:
    """A backend with a Handoff and ``rx_resume``, like passt's."""

    def __init__(self, machine: object | None = None, limit: int = 8) -> None:
        self.handoff = Handoff(machine, limit=limit)  # type: ignore[arg-type]
        self.sent: list[bytes] = []

    def send(self, f: bytes) -> None:
        self.sent.append(f)

    def set_receiver(self, cb) -> None:
        self.handoff.set_receiver(cb)

    def rx_resume(self) -> None:
        self.handoff.resume()

    def close(self) -> None:
        pass


class PlainBackend:
    """A backend without ``rx_resume``: it ignores back-pressure (a third-party backend)."""

    def __init__(self) -> None:
        self.receiver = None

    def send(self, f: bytes) -> None:
        pass

    def set_receiver(self, cb) -> None:
        self.receiver = cb

    def close(self) -> None:
        pass


def wire(room: int, queue: int = 4, limit: int = 8) -> tuple[NicPort, SlowNic, FlowBackend]:
    nic = SlowNic(room)
    port = NicPort("t", nic.receive, queue_frames=queue)
    nic.port = port
    backend = FlowBackend(limit=limit)
    port.attach(backend)
    return port, nic, backend


def test_port_pauses_a_flow_controlled_backend_and_resumes_it_in_order():
    port, nic, backend = wire(room=2, queue=4, limit=8)
    backend.handoff.deliver_many([frame(i) for i in range(10)])
    # two in the ring, one waits in the port, seven held by the backend: nothing dropped
    assert [f[-1] for f in nic.got] == [0, 1]
    assert port.queued == 1 and backend.handoff.paused and backend.handoff.pending == 7
    assert port.counters.rx_pauses == 1 and port.counters.rx_queue_drops == 0
    for _ in range(20):
        nic.guest_reads(1)
    assert [f[-1] for f in nic.got] == list(range(10))
    assert not backend.handoff.paused and port.queued == 0
    assert backend.handoff.dropped == 0 and port.counters.rx_queue_drops == 0


def test_a_paused_handoff_drops_beyond_its_limit_when_not_blocking():
    port, nic, backend = wire(room=0, queue=4, limit=3)
    backend.handoff.deliver_many([frame(i) for i in range(6)])
    assert port.queued == 1 and backend.handoff.pending == 3 and backend.handoff.dropped == 2
    assert port.counters.rx_queue_drops == 0


def test_flushing_or_detaching_the_port_resumes_the_backend():
    port, nic, backend = wire(room=0)
    backend.handoff.deliver_many([frame(i) for i in range(3)])
    assert backend.handoff.paused
    port.clear_queue()                      # NIC reset: the waiting frame is gone
    assert port.queued == 1 and backend.handoff.paused  # the next one waits again
    port.detach()
    assert not backend.handoff.paused and backend.handoff.pending == 0
    assert backend.handoff.undelivered == 1


def test_backends_without_rx_resume_keep_the_drop_when_full_queue():
    nic = SlowNic(0)
    port = NicPort("t", nic.receive, queue_frames=2)
    backend = PlainBackend()
    port.attach(backend)
    results = [backend.receiver(frame(i)) for i in range(5)]
    assert results == [True] * 5            # told to go on: nobody could resume it
    assert port.queued == 2 and port.counters.rx_queue_drops == 3 and port.counters.rx_pauses == 0


class ThreadMachine:
    """Just enough of a Machine: a thread that runs call_soon_threadsafe callbacks."""

    def __init__(self) -> None:
        self.calls: list = []
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def call_soon_threadsafe(self, fn, cut_slice: bool = True) -> None:
        with self.lock:
            self.calls.append(fn)

    def run_pending(self) -> None:
        with self.lock:
            calls, self.calls = self.calls, []
        for fn in calls:
            fn()


def test_a_blocking_reader_waits_for_a_slow_nic_and_loses_nothing():
    machine = ThreadMachine()
    machine.thread = threading.current_thread()
    nic = SlowNic(0)
    port = NicPort("t", nic.receive, queue_frames=4)
    nic.port = port
    backend = FlowBackend(machine, limit=5)
    port.attach(backend)
    total = 200
    cancel = threading.Event()

    def reader() -> None:  # a socket reader: batches of 7 frames, as fast as it can
        for start in range(0, total, 7):
            backend.handoff.deliver_many([frame(i) for i in range(start, min(total, start + 7))],
                                         block=True, cancel=cancel)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    deadline = time.monotonic() + 20
    try:
        while len(nic.got) < total:
            assert time.monotonic() < deadline, f"stuck after {len(nic.got)} frames"
            machine.run_pending()
            assert backend.handoff.pending <= 5 and port.queued <= 1
            nic.guest_reads(3)              # the slow guest frees 3 slots now and then
            time.sleep(0.001)
    finally:
        cancel.set()
        t.join(5)
    assert [int.from_bytes(f[-4:], "big") for f in nic.got] == list(range(total))
    assert backend.handoff.dropped == 0 and port.counters.rx_queue_drops == 0
    assert port.counters.rx_pauses > 0
