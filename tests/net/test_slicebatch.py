"""SliceBatch: frames sent during a CPU slice are handed on together, in order, when it ends."""
from __future__ import annotations

from pyv86.net.slicebatch import SliceBatch
from pyv86.testing.net import DirectMachine, SlicingMachine


def test_frames_of_a_slice_go_on_together_when_it_ends():
    machine, out = SlicingMachine(), []
    batch = SliceBatch(machine, out.append)
    machine.in_slice = True
    assert all(batch.add(bytes([i])) for i in range(5))
    assert out == []
    machine.end_slice()
    assert out == [[bytes([i]) for i in range(5)]]


def test_outside_a_slice_the_caller_sends_at_once():
    out: list[list[bytes]] = []
    assert not SliceBatch(SlicingMachine(), out.append).add(b"a")   # not in a slice
    assert not SliceBatch(DirectMachine(), out.append).add(b"b")    # no after_slice at all
    assert not SliceBatch(None, out.append).add(b"c")
    assert out == []


def test_a_full_batch_goes_on_early_and_the_rest_at_the_end():
    machine, out = SlicingMachine(), []
    batch = SliceBatch(machine, out.append, max_frames=3)
    machine.in_slice = True
    for i in range(7):
        batch.add(bytes([i]))
    assert out == [[b"\x00", b"\x01", b"\x02"], [b"\x03", b"\x04", b"\x05"]]
    machine.end_slice()
    assert out[2:] == [[b"\x06"]]
    assert sum(len(b) for b in out) == 7
