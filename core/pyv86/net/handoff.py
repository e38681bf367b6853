"""Handing frames from backend threads to the machine thread, through a bounded inbox.

Devices run on the machine thread only. A backend whose frames arrive on another thread
(a socket reader, an asyncio loop, another machine's thread on a shared hub) calls
:meth:`Handoff.deliver`; the frame goes straight to the receiver when the caller already
is the machine thread, and otherwise waits in an inbox of at most ``limit`` frames that
one ``machine.call_soon_threadsafe`` callback drains. A full inbox drops the frame and
counts it in :attr:`Handoff.dropped`, so a fast peer can never grow host memory.
"""
from __future__ import annotations

import collections
import threading
from typing import TYPE_CHECKING

from pyv86.net.base import FrameCallback

if TYPE_CHECKING:
    from pyv86.machine import Machine

DEFAULT_INBOX = 256


class Handoff:
    """Thread-safe, bounded delivery of frames to a receiver that lives on the machine thread."""

    def __init__(self, machine: Machine | None, limit: int = DEFAULT_INBOX) -> None:
        self.machine = machine
        self.limit = limit
        self.receiver: FrameCallback | None = None
        self.dropped = 0
        """Frames lost because the inbox was full."""
        self.undelivered = 0
        """Frames that arrived while no receiver was installed."""
        self._inbox: collections.deque[bytes] = collections.deque()
        self._lock = threading.Lock()
        self._scheduled = False
        self._creator = threading.current_thread()

    def set_receiver(self, callback: FrameCallback | None) -> None:
        self.receiver = callback

    def _on_owner_thread(self) -> bool:
        machine = self.machine
        if machine is None:
            return True
        owner = machine.thread or self._creator
        return threading.current_thread() is owner

    def deliver(self, frame: bytes) -> None:
        """Pass ``frame`` to the receiver on the machine thread (from any thread)."""
        if self._on_owner_thread():
            if self._inbox:
                self._drain()
            receiver = self.receiver
            if receiver is None:
                self.undelivered += 1
            else:
                receiver(frame)
            return
        with self._lock:
            if len(self._inbox) >= self.limit:
                self.dropped += 1
                return
            self._inbox.append(frame)
            if self._scheduled:
                return
            self._scheduled = True
        assert self.machine is not None
        self.machine.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self._lock:
            frames = list(self._inbox)
            self._inbox.clear()
            self._scheduled = False
        receiver = self.receiver
        for frame in frames:
            if receiver is None:
                self.undelivered += 1
            else:
                receiver(frame)

    @property
    def pending(self) -> int:
        return len(self._inbox)
