"""Virtual time and the event scheduler.

Time is counted in nanoseconds of guest time. In **virtual** mode (the default for tests)
guest time advances only with executed instructions (``ns_per_insn``) and jumps ahead to
the next event while the CPU halts, so a run replays exactly. In **realtime** mode guest
time follows the host's monotonic clock, which is what a guest talking to real peers
(DHCP servers, relays) expects.

In both modes the time devices see stands still while the CPU runs a slice: the machine
calls :meth:`Clock.start_slice` before :meth:`CPU.run` and :meth:`Clock.advance_insns`
after it. A virtual clock moves by the executed instructions at the slice's end; a
realtime clock takes one sample of the host clock at the slice's start and follows the host
again at its end (and whenever no slice runs: idle waits, code outside ``Machine.run``).
The CPU's TSC starts each slice at that same instant, so a device never sees a time later
than the guest's TSC, and two reads of ``now`` within one port access always agree.

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

    def __init__(self, mode: str = "virtual", ns_per_insn: float = 1.0,
                 host_ns: Callable[[], int] = time.monotonic_ns) -> None:
        if mode not in ("virtual", "realtime"):
            raise ValueError(f"clock mode must be 'virtual' or 'realtime', not {mode!r}")
        self.mode = mode
        self.ns_per_insn = ns_per_insn
        self._host_ns = host_ns  # the host's monotonic clock (tests pass a scripted one)
        self._virtual_ns = 0
        self._insn_remainder = 0.0
        self._wall_start = host_ns()
        self._wall_offset = 0
        self._held = False  # realtime: a slice runs, ``now`` is its start sample

    @property
    def now(self) -> int:
        if self.mode == "realtime" and not self._held:
            return max(self._virtual_ns, self._host_ns() - self._wall_start + self._wall_offset)
        return self._virtual_ns

    @property
    def in_slice(self) -> bool:
        """True between :meth:`start_slice` and the end of that slice (realtime mode)."""
        return self._held

    def start_slice(self) -> int:
        """A CPU slice starts: hold ``now`` at this instant until it ends; returns it."""
        if self.mode == "realtime":
            self._held = False
            self._virtual_ns = self.now
            self._held = True
        return self._virtual_ns

    def follow_host(self) -> None:
        """End a hold without a slice (realtime; a no-op in virtual mode)."""
        if self._held:
            self._held = False
            self._virtual_ns = self.now

    def advance_insns(self, count: int) -> None:
        """Account for ``count`` executed instructions (this ends the slice)."""
        if self.mode == "virtual":
            total = count * self.ns_per_insn + self._insn_remainder
            whole = int(total)
            self._insn_remainder = total - whole
            self._virtual_ns += whole
        else:
            self._held = False
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
        self._held = False
        self._wall_start = self._host_ns()
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
