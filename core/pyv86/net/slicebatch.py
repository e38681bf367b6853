"""Frames a NIC sends during one CPU slice, handed on together when the slice ends.

A backend that pays per send (a system call, a thread wake-up, a peer's wake-up) keeps a
:class:`SliceBatch` and offers it each frame: during a slice on the machine thread the frame
is held and the batch registers itself with ``machine.after_slice``; when the slice ends the
backend's ``flush`` gets every held frame, in order. Outside a slice (a test or tool driving
the NIC without a running CPU, or a machine-like object without ``after_slice``), and for
a frame that follows a quiet spell of :data:`~pyv86.net.handoff.QUIET_S` (a ping's answer,
a keystroke's echo: latency matters more than batching there), :meth:`SliceBatch.add`
returns False and the backend sends the frame at once.

The guest sees no delay: the NIC signals transmit completion at once, and a slice is at most
``DEFAULT_SLICE`` instructions (200 µs of virtual guest time).
"""
from __future__ import annotations

import time
from typing import Any, Callable

from pyv86.net import handoff

MAX_FRAMES = 64
"""Held frames are handed on early once this many wait."""


class SliceBatch:
    """Holds frames until the running CPU slice ends, then passes them to ``flush``."""

    def __init__(self, machine: Any, flush: Callable[[list[bytes]], None],
                 max_frames: int = MAX_FRAMES) -> None:
        self._after_slice = getattr(machine, "after_slice", None)
        self._flush = flush
        self.max_frames = max_frames
        self._frames: list[bytes] | None = None
        self._last = -1e9

    def add(self, frame: bytes) -> bool:
        """Hold ``frame`` for the end of the running slice; False when there is none, or
        when the frame comes after a quiet spell (the caller sends it now)."""
        now = time.monotonic()
        quiet, self._last = now - self._last > handoff.QUIET_S, now
        frames = self._frames
        if quiet:      # a lone frame (a ping's answer, a keystroke) goes at once, after any
            self.flush()                  # that still wait (a long slice's earlier ones)
            return False
        if frames is not None:
            frames.append(frame)
            if len(frames) >= self.max_frames:
                self.flush()
            return True
        if self._after_slice is not None and self._after_slice(self.flush):
            self._frames = [frame]
            return True
        return False

    def flush(self) -> None:
        """Pass the held frames on now (the slice's end calls this)."""
        frames, self._frames = self._frames, None
        if frames:
            self._flush(frames)
