"""The virtual clock and the scheduler: same timers, same order and times, every run;
realtime mode follows the host clock."""
from __future__ import annotations

import threading
import time

import pytest

from pyv86.clock import Clock, Scheduler
from pyv86.machine import Machine


def scenario(machine: Machine) -> list[tuple[str, int]]:
    """Three periodic timers with colliding deadlines plus one cancelled and one re-armed."""
    log: list[tuple[str, int]] = []
    sched = machine.scheduler

    def periodic(name: str, period: int):
        timer = sched.timer(name, lambda: None)

        def fire() -> None:
            log.append((name, machine.clock.now))
            timer.arm_in(period)

        timer.callback = fire
        timer.arm_in(period)
        return timer

    periodic("a", 300)
    periodic("b", 200)
    periodic("c", 600)  # collides with a and b at 600: c was armed first, so it fires first
    doomed = sched.timer("doomed", lambda: log.append(("doomed", machine.clock.now)))
    doomed.arm(500)
    doomed.cancel()
    moved = sched.timer("moved", lambda: log.append(("moved", machine.clock.now)))
    moved.arm(100)
    moved.arm(650)  # re-arming replaces the first deadline
    assert machine.run(until_ns=1800) == "until"
    return log


def test_same_timers_fire_in_the_same_order_at_the_same_times_in_two_runs():
    first = scenario(Machine(memory=1 << 20))
    second = scenario(Machine(memory=1 << 20))
    assert first == second
    assert ("doomed", 500) not in first
    assert first[:9] == [("b", 200), ("a", 300), ("b", 400), ("c", 600), ("a", 600), ("b", 600),
                         ("moved", 650), ("b", 800), ("a", 900)]
    times = [t for _, t in first]
    assert times == sorted(times)


def test_timers_due_at_the_same_instant_fire_in_arming_order():
    clock = Clock("virtual")
    sched = Scheduler(clock)
    order: list[str] = []
    for name in "zyxw":
        sched.timer(name, lambda n=name: order.append(n)).arm(10)
    clock.advance_to(10)
    assert sched.run_due() == 4
    assert order == ["z", "y", "x", "w"]


def test_next_deadline_skips_cancelled_timers():
    sched = Scheduler(Clock("virtual"))
    t1 = sched.timer("t1", lambda: None)
    t2 = sched.timer("t2", lambda: None)
    t1.arm(5)
    t2.arm(9)
    t1.cancel()
    assert sched.next_deadline() == 9
    assert not t1.armed and t2.armed


def test_virtual_time_counts_instructions():
    clock = Clock("virtual", ns_per_insn=2.5)
    clock.advance_insns(3)
    assert clock.now == 7
    clock.advance_insns(1)  # the half nanosecond is carried
    assert clock.now == 10
    assert clock.insns_until(20, cap=1000) == 5
    assert clock.insns_until(None, cap=1000) == 1000
    assert clock.insns_until(5, cap=1000) == 1


def test_virtual_time_never_goes_backwards():
    clock = Clock("virtual")
    clock.advance_to(100)
    clock.advance_to(50)
    assert clock.now == 100


def test_clock_save_and_restore():
    clock = Clock("virtual")
    clock.advance_to(12345)
    other = Clock("virtual")
    other.restore(clock.save())
    assert other.now == 12345


def test_unknown_clock_mode_is_refused():
    with pytest.raises(ValueError, match="'virtual' or 'realtime'"):
        Clock("sundial")


def test_machine_without_events_stops_idle_in_virtual_mode():
    assert Machine(memory=1 << 20).run() == "idle"


def test_realtime_mode_fires_timers_after_host_time_passes():
    machine = Machine(memory=1 << 20, clock_mode="realtime")
    fired: list[tuple[int, float]] = []
    start = time.monotonic()
    timer = machine.scheduler.timer("rt", lambda: fired.append((machine.clock.now, time.monotonic())))
    timer.arm_in(20_000_000)  # 20 ms
    reason = machine.run(until_ns=60_000_000, timeout_s=5)
    assert reason == "until"
    assert len(fired) == 1
    guest_ns, host_t = fired[0]
    assert guest_ns >= 20_000_000
    assert host_t - start >= 0.019
    assert time.monotonic() - start >= 0.059


def test_realtime_machine_wakes_for_work_handed_over_by_another_thread():
    machine = Machine(memory=1 << 20, clock_mode="realtime")
    seen: list[str] = []

    def from_backend_thread() -> None:
        time.sleep(0.02)
        machine.call_soon_threadsafe(lambda: (seen.append(threading.current_thread().name),
                                              machine.stop("done")))

    worker = threading.Thread(target=from_backend_thread, name="backend")
    worker.start()
    start = time.monotonic()
    assert machine.run(timeout_s=5) == "done"
    worker.join()
    assert seen == [threading.main_thread().name]  # ran on the machine thread
    assert time.monotonic() - start < 2
