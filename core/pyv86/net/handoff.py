"""Handing frames from backend threads to the machine thread, through a bounded inbox.

Devices run on the machine thread only. A backend whose frames arrive on another thread
(a socket reader, an asyncio loop, another machine's thread on a shared hub) calls
:meth:`Handoff.deliver` (or :meth:`Handoff.deliver_many` for a batch); the frame goes
straight to the receiver when the caller already is the machine thread and nothing
waits, and otherwise waits in an inbox of at most ``limit`` frames that one
``machine.call_soon_threadsafe`` callback drains. Frames that follow each other closely (a
stream) wait for the end of the running CPU slice, which is not cut short for them (see
:meth:`pyv86.machine.Machine.call_soon_threadsafe`), so the guest takes them together; a
frame after a quiet spell of :data:`QUIET_S` (a ping, a keystroke) stops the slice and
reaches the guest at once.

Back-pressure: when the receiver (a :class:`pyv86.net.port.NicPort`) returns ``False``,
the NIC is full; the handoff stops delivering, keeps the rest of the inbox in order and
waits for :meth:`resume` (the backend's ``rx_resume``, which the port calls when the NIC
has room again). While it waits the inbox fills up. Then a full inbox either drops the
frame and counts it in :attr:`Handoff.dropped` (``deliver``: a fast peer can never grow
host memory), or, with ``deliver_many(..., block=True)`` from a reader thread, makes the
reader wait until there is room, so it stops reading its socket and the peer slows down
(no frame is lost between the peer and the guest).
"""
from __future__ import annotations

import collections
import threading
import time
from typing import TYPE_CHECKING, Callable, Iterable

if TYPE_CHECKING:
    from pyv86.machine import Machine

DEFAULT_INBOX = 256
QUIET_S = 0.005
"""A frame arriving this long after the previous one is handed over at once (the CPU's
slice is cut short); closer frames wait for the end of the running slice."""

Receiver = Callable[[bytes], "bool | None"]
"""``receiver(frame)``; returning ``False`` means "full: hold the next frames until resume()"."""


class Handoff:
    """Thread-safe, bounded, flow-controlled delivery to a receiver on the machine thread."""

    def __init__(self, machine: Machine | None, limit: int = DEFAULT_INBOX) -> None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        self.machine = machine
        self.limit = limit
        self.receiver: Receiver | None = None
        self.dropped = 0
        """Frames lost because the inbox was full."""
        self.undelivered = 0
        """Frames that arrived while no receiver was installed."""
        self.delivered = 0
        """Frames given to the receiver."""
        self._inbox: collections.deque[bytes] = collections.deque()
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._scheduled = False
        self._paused = False
        self._draining = False
        self._creator = threading.current_thread()
        self._last_arrival = -1e9

    def set_receiver(self, callback: Receiver | None) -> None:
        self.receiver = callback
        if callback is None and self._paused:   # nobody will resume us: drain to nowhere
            self.resume()

    def _on_owner_thread(self) -> bool:
        machine = self.machine
        if machine is None:
            return True
        owner = machine.thread or self._creator
        return threading.current_thread() is owner

    @property
    def paused(self) -> bool:
        """True while the receiver said it is full and has not resumed us yet."""
        return self._paused

    def deliver(self, frame: bytes) -> None:
        """Pass ``frame`` to the receiver on the machine thread (from any thread); never blocks."""
        self.deliver_many((frame,))

    def deliver_many(self, frames: Iterable[bytes], *, block: bool = False,
                     cancel: threading.Event | None = None) -> None:
        """Pass frames in order. ``block``: wait for room instead of dropping (not on the
        machine thread, where waiting could never end); ``cancel`` stops the waiting."""
        if self._on_owner_thread():
            self._deliver_here(frames)
            return
        schedule = False
        now = time.monotonic()
        with self._lock:
            # a frame after a quiet spell (a ping, a keystroke) stops the CPU's slice so the
            # guest sees it at once; frames of a stream wait for the slice's end, together
            urgent = now - self._last_arrival > QUIET_S
            self._last_arrival = now
            inbox = self._inbox
            for frame in frames:
                while block and len(inbox) >= self.limit and not (cancel is not None and cancel.is_set()):
                    if not self._scheduled and not self._paused:
                        self._scheduled = True      # let the machine thread make room
                        self._lock.release()
                        try:
                            self._schedule(urgent)
                        finally:
                            self._lock.acquire()
                        continue
                    self._room.wait(0.25)
                if len(inbox) >= self.limit:
                    self.dropped += 1
                    continue
                inbox.append(frame)
            if inbox and not self._paused and not self._scheduled:
                self._scheduled = True
                schedule = True
        if schedule:
            self._schedule(urgent)

    def _deliver_here(self, frames: Iterable[bytes]) -> None:
        """Machine thread: straight to the receiver while it has room, else into the inbox."""
        inbox = self._inbox
        for frame in frames:
            if inbox or self._paused or self._draining:
                with self._lock:
                    if len(inbox) >= self.limit:
                        self.dropped += 1
                    else:
                        inbox.append(frame)
                continue
            self._hand_over(frame)
        if inbox and not self._paused:
            self._drain()

    def _schedule(self, urgent: bool) -> None:
        assert self.machine is not None
        # a stream's frames: at the end of the running slice (see Machine.call_soon_threadsafe)
        self.machine.call_soon_threadsafe(self._scheduled_drain, cut_slice=urgent)

    def _scheduled_drain(self) -> None:
        with self._lock:
            self._scheduled = False
        self._drain()

    def _drain(self) -> None:
        """Machine thread: give waiting frames to the receiver until it is full."""
        if self._draining:
            return
        self._draining = True
        try:
            while True:
                with self._lock:
                    if self._paused or not self._inbox:
                        return
                    frame = self._inbox.popleft()
                    self._room.notify_all()
                self._hand_over(frame)
        finally:
            self._draining = False

    def _hand_over(self, frame: bytes) -> None:
        """Give one frame to the receiver; a receiver that answers False is full (pause)."""
        receiver = self.receiver
        if receiver is None:
            self.undelivered += 1
            return
        self.delivered += 1
        if receiver(frame) is False:
            with self._lock:
                self._paused = True

    def resume(self) -> None:
        """Machine thread: the receiver has room again; deliver what waits."""
        with self._lock:
            self._paused = False
        self._drain()

    @property
    def pending(self) -> int:
        return len(self._inbox)
