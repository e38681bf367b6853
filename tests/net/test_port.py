"""NicPort: length checks, back-pressure queue, filters in both directions, observers, counters."""
from __future__ import annotations

import pytest

from pyv86.net.port import NicPort, RxResult
from pyv86.testing.net import LoopbackNet

F = bytes.fromhex("020000000002020000000001" "0800") + bytes(46)


class FakeNic:
    def __init__(self, room: int = 1000) -> None:
        self.room = room
        self.got: list[bytes] = []
        self.missed = 0

    def receive(self, frame: bytes) -> RxResult:
        if frame[0] == 0x33:
            return RxResult.FILTERED
        if self.room <= 0:
            return RxResult.NO_ROOM
        self.room -= 1
        self.got.append(frame)
        return RxResult.STORED


def make(room: int = 1000, queue: int = 4) -> tuple[NicPort, FakeNic, LoopbackNet]:
    nic = FakeNic(room)
    port = NicPort("t", nic.receive, queue_frames=queue)
    port._on_missed = lambda: setattr(nic, "missed", nic.missed + 1)
    wire = LoopbackNet()
    port.attach(wire)
    return port, nic, wire


def test_frames_flow_both_ways_and_are_counted():
    port, nic, wire = make()
    wire.inject(F)
    port.transmit(F[::-1])
    assert nic.got == [F] and wire.sent == [F[::-1]]
    c = port.counters
    assert (c.rx_frames, c.rx_stored, c.tx_frames, c.tx_bytes) == (1, 1, 1, len(F))


def test_no_copy_on_the_way_in():
    port, nic, wire = make()
    wire.receiver(F)
    assert nic.got[0] is F


@pytest.mark.parametrize("n", [0, 13, 1519, 65535])
def test_bad_lengths_never_reach_the_nic(n):
    port, nic, wire = make()
    wire.inject(bytes(n))
    assert nic.got == [] and port.counters.rx_bad_length == 1


def test_back_pressure_queue_then_drop_and_tell_the_nic():
    port, nic, wire = make(room=0, queue=4)
    for i in range(6):
        wire.inject(F[:-1] + bytes([i]))
    assert port.queued == 4 and port.counters.rx_queue_drops == 2 and nic.missed == 2
    nic.room = 2
    port.rx_space()
    assert [f[-1] for f in nic.got] == [0, 1] and port.queued == 2
    nic.room = 10
    wire.inject(F[:-1] + bytes([9]))  # a new frame goes behind the queued ones
    assert [f[-1] for f in nic.got] == [0, 1, 2, 3, 9] and port.queued == 0


def test_filtered_frames_do_not_wait_in_the_queue():
    port, nic, wire = make(room=0)
    wire.inject(b"\x33" + F[1:])
    assert port.queued == 0 and port.counters.rx_not_for_us == 1


class Tag:
    def __init__(self, mark: bytes) -> None:
        self.mark = mark

    def to_wire(self, frame: bytes) -> bytes | None:
        return None if frame.endswith(b"DROP") else frame + self.mark

    def to_guest(self, frame: bytes) -> bytes | None:
        return frame[: -len(self.mark)] if frame.endswith(self.mark) else None


def test_filters_run_in_order_out_and_reverse_order_in():
    port, nic, wire = make()
    port.add_filter(Tag(b"1"))
    port.add_filter(Tag(b"2"))
    port.transmit(F)
    assert wire.take() == [F + b"12"]
    wire.inject(F + b"12")
    assert nic.got == [F]
    wire.inject(F + b"21")  # not a frame the chain produced: dropped by the outer filter
    assert port.counters.rx_filter_drops == 1
    port.transmit(F + b"DROP")
    assert wire.sent == [] and port.counters.tx_filter_drops == 1


def test_observers_see_wire_side_frames_and_inject_drives_the_nic():
    port, nic, wire = make()
    port.add_filter(Tag(b"!"))
    seen: list[tuple[str, bytes]] = []
    obs = port.add_observer(lambda d, f: seen.append((d, f)))
    port.transmit(F)
    port.inject(F + b"!")
    assert seen == [("tx", F + b"!"), ("rx", F + b"!")]
    assert nic.got == [F]
    port.remove_observer(obs)
    port.transmit(F)
    assert len(seen) == 2


def test_a_nic_without_backend_still_counts():
    nic = FakeNic()
    port = NicPort("t", nic.receive)
    port.transmit(F)
    port.inject(F)
    assert port.counters.tx_frames == 1 and nic.got == [F]


def test_a_failing_backend_does_not_propagate():
    port, nic, wire = make()
    wire.close()  # LoopbackNet raises on send after close
    port.transmit(F)
    assert port.counters.tx_frames == 1


def test_detach_releases_the_receiver():
    port, nic, wire = make()
    port.detach()
    assert wire.receiver is None and port.backend is None
