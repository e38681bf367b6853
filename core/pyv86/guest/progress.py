"""Progress reporting on stderr for long guest-image steps (downloads, extraction, packing).

On a terminal one line is redrawn in place (``\\r``) with a bar; otherwise (CI logs, pipes)
a plain line is printed at most every few seconds and at the end of each step, so logs stay
short. ``Progress(stream=None)`` is silent (used by the Python API and tests).
"""
from __future__ import annotations

import sys
import time
from typing import TextIO

_BAR = 24


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


class Progress:
    """One step at a time: ``start(label, total)``, ``update(done)``, ``finish(note)``."""

    def __init__(self, stream: TextIO | None = sys.stderr, interval_s: float = 5.0) -> None:
        self.stream = stream
        self.tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())
        self.interval_s = interval_s if not self.tty else 0.1
        self._label = ""
        self._total: int | None = None
        self._unit_bytes = True
        self._last = 0.0
        self._started = 0.0
        self._open = False

    def message(self, text: str) -> None:
        if self.stream is None:
            return
        self._clear()
        print(f"pyv86 guest: {text}", file=self.stream, flush=True)

    def start(self, label: str, total: int | None = None, unit_bytes: bool = True) -> None:
        self._label, self._total, self._unit_bytes = label, total, unit_bytes
        self._started = time.monotonic()
        self._last = 0.0
        self._open = True
        self.update(0, force=self.tty)

    def update(self, done: int, force: bool = False) -> None:
        if self.stream is None or not self._open:
            return
        now = time.monotonic()
        if not force and now - self._last < self.interval_s:
            return
        self._last = now
        line = self._render(done)
        if self.tty:
            self.stream.write("\r" + line.ljust(79)[:79])
            self.stream.flush()
        else:
            print(line, file=self.stream, flush=True)

    def finish(self, note: str = "done") -> None:
        if not self._open:
            return
        self._open = False
        if self.stream is None:
            return
        elapsed = time.monotonic() - self._started
        self._clear()
        print(f"pyv86 guest: {self._label}: {note} ({elapsed:.1f} s)", file=self.stream, flush=True)

    def _clear(self) -> None:
        if self.tty and self._open and self.stream is not None:
            self.stream.write("\r" + " " * 79 + "\r")

    def _render(self, done: int) -> str:
        fmt = _human if self._unit_bytes else str
        if self._total:
            frac = max(0.0, min(1.0, done / self._total))
            bar = "#" * int(frac * _BAR)
            return (f"pyv86 guest: {self._label} [{bar:<{_BAR}}] {frac * 100:5.1f}% "
                    f"{fmt(done)}/{fmt(self._total)}")
        if not done:
            return f"pyv86 guest: {self._label} ..."
        return f"pyv86 guest: {self._label} ... {fmt(done)}"
