"""SliceBatch: frames sent close together during a CPU slice are handed on together, in
order, when it ends; a frame after a quiet spell, or outside a slice, goes at once."""
from __future__ import annotations

import time

import pytest

from pyv86.net import handoff
from pyv86.net.slicebatch import SliceBatch
from pyv86.testing.net import DirectMachine, SlicingMachine


@pytest.fixture
def stream(monkeypatch):
    """Frames never count as "after a quiet spell", except the very first one."""
    monkeypatch.setattr(handoff, "QUIET_S", 3600.0)


def test_frames_of_a_slice_go_on_together_when_it_ends(stream):
    machine, out = SlicingMachine(), []
    batch = SliceBatch(machine, out.append)
    machine.in_slice = True
    assert not batch.add(b"first")            # after the quiet spell before it: sent now
    assert all(batch.add(bytes([i])) for i in range(5))
    assert out == []
    machine.end_slice()
    assert out == [[bytes([i]) for i in range(5)]]


def test_outside_a_slice_the_caller_sends_at_once(stream):
    out: list[list[bytes]] = []
    for machine in (SlicingMachine(), DirectMachine(), None):   # not in a slice / no after_slice
        batch = SliceBatch(machine, out.append)
        assert not batch.add(b"a") and not batch.add(b"b")
    assert out == []


def test_a_frame_after_a_quiet_spell_goes_at_once(monkeypatch):
    monkeypatch.setattr(handoff, "QUIET_S", 0.02)
    machine, out = SlicingMachine(), []
    batch = SliceBatch(machine, out.append)
    machine.in_slice = True
    assert not batch.add(b"a")
    assert batch.add(b"b")                   # right behind it: held
    machine.end_slice()
    time.sleep(0.05)
    machine.in_slice = True
    assert not batch.add(b"c")               # after 50 ms of nothing: at once
    assert out == [[b"b"]]


def test_a_full_batch_goes_on_early_and_the_rest_at_the_end(stream):
    machine, out = SlicingMachine(), []
    batch = SliceBatch(machine, out.append, max_frames=3)
    machine.in_slice = True
    batch.add(b"first")
    for i in range(7):
        batch.add(bytes([i]))
    assert out == [[b"\x00", b"\x01", b"\x02"], [b"\x03", b"\x04", b"\x05"]]
    machine.end_slice()
    assert out[2:] == [[b"\x06"]]
    assert sum(len(b) for b in out) == 7


def test_a_frame_after_a_quiet_spell_in_a_long_slice_follows_the_held_ones_at_once(monkeypatch):
    monkeypatch.setattr(handoff, "QUIET_S", 0.02)
    machine, out = SlicingMachine(), []
    batch = SliceBatch(machine, out.append)
    machine.in_slice = True
    assert not batch.add(b"a")               # the first: at once
    assert batch.add(b"b") and batch.add(b"c")
    time.sleep(0.05)                         # the slice goes on; nothing sent for 50 ms
    assert not batch.add(b"d")               # held ones go first, then the caller sends d
    assert out == [[b"b", b"c"]]
    machine.end_slice()
    assert out == [[b"b", b"c"]]
