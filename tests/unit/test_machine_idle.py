"""Idle time in virtual-clock machines: jumps when isolated, real time when connected."""
from __future__ import annotations

import threading
import time

from pyv86.machine import Machine


class ExternalBackend:
    """A backend whose frames can come from outside the machine at any time."""

    external = True

    def send(self, frame: bytes) -> None:
        pass

    def set_receiver(self, callback) -> None:
        pass

    def close(self) -> None:
        pass


def _machine_with_timer(delay_ns: int, external: bool) -> tuple[Machine, list[int]]:
    machine = Machine(memory=1 << 20, clock_mode="virtual")
    if external:
        machine.netdevs["lan"] = ExternalBackend()
    fired: list[int] = []
    timer = machine.scheduler.timer("t", lambda: (fired.append(machine.clock.now), machine.stop("done")))
    timer.arm(delay_ns)
    return machine, fired


def test_isolated_virtual_machine_jumps_over_idle_time():
    machine, fired = _machine_with_timer(5_000_000_000, external=False)  # 5 s of guest time
    start = time.monotonic()
    assert machine.run(timeout_s=10) == "done"
    assert time.monotonic() - start < 1.0
    assert fired == [5_000_000_000]


def test_connected_virtual_machine_idles_in_real_time():
    machine, fired = _machine_with_timer(300_000_000, external=True)  # 0.3 s
    start = time.monotonic()
    assert machine.run(timeout_s=10) == "done"
    assert time.monotonic() - start >= 0.28
    assert fired == [300_000_000]


def test_work_from_another_thread_ends_the_idle_wait_early():
    machine, fired = _machine_with_timer(5_000_000_000, external=True)
    seen: list[int] = []

    def deliver() -> None:
        time.sleep(0.1)
        machine.call_soon_threadsafe(lambda: (seen.append(machine.clock.now), machine.stop("frame")))

    threading.Thread(target=deliver).start()
    start = time.monotonic()
    assert machine.run(timeout_s=10) == "frame"
    assert time.monotonic() - start < 2.0
    assert fired == []
    # guest time moved by about the wall time that passed, not to the timer's deadline
    assert 50_000_000 <= seen[0] < 2_000_000_000
