"""Virtual time and the event scheduler.

Time is counted in nanoseconds of guest time. In **virtual** mode (the default for tests)
guest time advances only with executed instructions (``ns_per_insn``) and jumps ahead to
the next event while the CPU halts, so a run replays exactly. In **realtime** mode guest
time follows the host's monotonic clock, which is what a guest talking to real peers
(DHCP servers, relays) expects.

Events are ordered by (deadline, sequence number): two timers due at the same instant
fire in the order they were armed, every time.
"""
from __future__ import annotations

import heapq
import itertools
import time
from typing import Callable

NS_PER_S = 1_000_000_000


class Clock:
    """Guest time in nanoseconds."""

    def __init__(self, mode: str = "virtual", ns_per_insn: float = 1.0) -> None:
        if mode not in ("virtual", "realtime"):
            raise ValueError(f"clock mode must be 'virtual' or 'realtime', not {mode!r}")
        self.mode = mode
        self.ns_per_insn = ns_per_insn
        self._virtual_ns = 0
        self._insn_remainder = 0.0
        self._wall_start = time.monotonic_ns()
        self._wall_offset = 0

    @property
    def now(self) -> int:
        if self.mode == "realtime":
            return max(self._virtual_ns, time.monotonic_ns() - self._wall_start + self._wall_offset)
        return self._virtual_ns

    def advance_insns(self, count: int) -> None:
        """Account for ``count`` executed instructions."""
        if self.mode == "virtual":
            total = count * self.ns_per_insn + self._insn_remainder
            whole = int(total)
            self._insn_remainder = total - whole
            self._virtual_ns += whole
        else:
            self._virtual_ns = self.now

    def advance_to(self, ns: int) -> None:
        """Jump forward to ``ns`` (never backwards)."""
        if ns > self._virtual_ns:
            self._virtual_ns = ns

    def insns_until(self, deadline: int | None, cap: int) -> int:
        """How many instructions to run before ``deadline`` (at least 1, at most ``cap``)."""
        if deadline is None:
            return cap
        delta = deadline - self.now
        if delta <= 0:
            return 1
        return max(1, min(cap, int(delta / self.ns_per_insn) + 1))

    def save(self) -> dict:
        return {"now": self.now}

    def restore(self, saved: dict) -> None:
        self._virtual_ns = int(saved["now"])
        self._insn_remainder = 0.0
        self._wall_start = time.monotonic_ns()
        self._wall_offset = self._virtual_ns


class Timer:
    """A one-shot timer; re-arm it from its callback for periodic behaviour."""

    __slots__ = ("scheduler", "name", "callback", "deadline", "_entry")

    def __init__(self, scheduler: Scheduler, name: str, callback: Callable[[], None]) -> None:
        self.scheduler = scheduler
        self.name = name
        self.callback = callback
        self.deadline: int | None = None
        self._entry: list | None = None

    @property
    def armed(self) -> bool:
        return self.deadline is not None

    def arm(self, deadline_ns: int) -> None:
        """Fire at guest time ``deadline_ns`` (replacing any earlier arming)."""
        self.cancel()
        self.deadline = int(deadline_ns)
        self._entry = self.scheduler._push(self)

    def arm_in(self, delay_ns: int) -> None:
        self.arm(self.scheduler.clock.now + max(0, int(delay_ns)))

    def cancel(self) -> None:
        if self._entry is not None:
            self._entry[2] = None  # tombstone; popped lazily
            self._entry = None
        self.deadline = None


class Scheduler:
    """Deterministic timer queue on a :class:`Clock`."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._heap: list[list] = []
        self._seq = itertools.count()

    def timer(self, name: str, callback: Callable[[], None]) -> Timer:
        return Timer(self, name, callback)

    def _push(self, timer: Timer) -> list:
        entry = [timer.deadline, next(self._seq), timer]
        heapq.heappush(self._heap, entry)
        return entry

    def next_deadline(self) -> int | None:
        heap = self._heap
        while heap and heap[0][2] is None:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def run_due(self) -> int:
        """Fire every timer whose deadline has passed, in order; returns how many fired."""
        fired = 0
        now = self.clock.now
        heap = self._heap
        while heap:
            deadline, _seq, timer = heap[0]
            if timer is None:
                heapq.heappop(heap)
                continue
            if deadline > now:
                break
            heapq.heappop(heap)
            timer._entry = None
            timer.deadline = None
            timer.callback()
            fired += 1
        return fired
