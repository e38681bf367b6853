"""Time holds still for devices during a CPU slice, in both clock modes."""
from __future__ import annotations

from pyv86.clock import Clock, Scheduler


class ScriptedHost:
    def __init__(self, step: int) -> None:
        self.t = 5_000_000
        self.step = step

    def __call__(self) -> int:
        self.t += self.step
        return self.t


def test_realtime_clock_holds_the_slice_start_until_the_slice_ends():
    host = ScriptedHost(step=1_000)
    clock = Clock("realtime", host_ns=host)
    before = clock.now
    start = clock.start_slice()
    assert start > before
    assert clock.in_slice
    assert clock.now == clock.now == start
    clock.advance_insns(100)
    assert not clock.in_slice
    assert clock.now > start


def test_realtime_clock_follows_the_host_outside_slices():
    host = ScriptedHost(step=0)
    clock = Clock("realtime", host_ns=host)
    a = clock.now
    host.t += 3_000
    assert clock.now == a + 3_000


def test_follow_host_ends_a_hold_left_by_an_aborted_slice():
    host = ScriptedHost(step=0)
    clock = Clock("realtime", host_ns=host)
    start = clock.start_slice()
    host.t += 7_000
    assert clock.now == start  # the slice raised: no advance_insns
    clock.follow_host()
    assert clock.now == start + 7_000


def test_timers_armed_in_a_slice_count_from_its_start():
    host = ScriptedHost(step=0)
    clock = Clock("realtime", host_ns=host)
    scheduler = Scheduler(clock)
    start = clock.start_slice()
    host.t += 50_000
    timer = scheduler.timer("t", lambda: None)
    timer.arm_in(10_000)
    assert timer.deadline == start + 10_000


def test_realtime_clock_never_goes_backwards_across_slices():
    host = ScriptedHost(step=0)
    clock = Clock("realtime", host_ns=host)
    seen = [clock.now]
    for _ in range(5):
        seen.append(clock.start_slice())
        host.t += 1_000
        clock.advance_insns(10)
        seen.append(clock.now)
    assert seen == sorted(seen)


def test_virtual_clock_ignores_slice_starts():
    clock = Clock("virtual")
    clock.advance_to(40)
    assert clock.start_slice() == 40
    clock.advance_insns(10)
    assert clock.now == 50
    assert not clock.in_slice
