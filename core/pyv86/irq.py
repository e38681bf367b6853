"""Interrupt request lines between devices and the interrupt controller.

A machine has 16 ISA lines (:class:`IrqLines`). A device takes an :class:`IrqSource` on a
line and drives it: ``set(level)`` for level-triggered sources (shared level lines are a
wired-OR of all their sources), ``pulse()`` for an edge. The interrupt controller (the
8259 pair, a plugin like any other device) attaches itself as the *sink* and is told
whenever a line's combined level changes; before a sink attaches, levels are kept and
replayed on attach.
"""
from __future__ import annotations

from typing import Protocol


class IrqSink(Protocol):
    def set_irq(self, line: int, level: bool) -> None:
        """The combined level of ``line`` changed to ``level``."""


class IrqSource:
    """One device's output onto a shared line."""

    __slots__ = ("line", "name", "level")

    def __init__(self, line: IrqLine, name: str) -> None:
        self.line = line
        self.name = name
        self.level = False

    def set(self, level: bool) -> None:
        level = bool(level)
        if level != self.level:
            self.level = level
            self.line._update()

    def raise_(self) -> None:
        self.set(True)

    def lower(self) -> None:
        self.set(False)

    def pulse(self) -> None:
        """An edge: rise then fall (for edge-triggered inputs)."""
        self.set(True)
        self.set(False)

    def __repr__(self) -> str:
        return f"<IrqSource {self.name} on IRQ {self.line.number} level={int(self.level)}>"


class IrqLine:
    """An interrupt controller input; its level is the OR of its sources."""

    def __init__(self, number: int, lines: IrqLines) -> None:
        self.number = number
        self._lines = lines
        self.sources: list[IrqSource] = []
        self.level = False

    def source(self, name: str) -> IrqSource:
        src = IrqSource(self, name)
        self.sources.append(src)
        return src

    def release(self, source: IrqSource) -> None:
        if source in self.sources:
            source.set(False)
            self.sources.remove(source)

    def _update(self) -> None:
        # a loop, not any(<generator>): this runs on every change of a device's interrupt
        # output, several times per network frame
        level = False
        for source in self.sources:
            if source.level:
                level = True
                break
        # (a second rising edge from another source on an already-high line is invisible,
        # exactly as on a wired-OR bus)
        if level != self.level:
            self.level = level
            sink = self._lines.sink
            if sink is not None:
                sink.set_irq(self.number, level)


class IrqLines:
    """The machine's ISA interrupt lines 0..15 (and more if a platform wants them)."""

    def __init__(self, count: int = 16) -> None:
        self.sink: IrqSink | None = None
        self.lines = [IrqLine(n, self) for n in range(count)]

    def __getitem__(self, number: int) -> IrqLine:
        if not 0 <= number < len(self.lines):
            raise ValueError(f"IRQ {number} does not exist (0..{len(self.lines) - 1})")
        return self.lines[number]

    def attach_sink(self, sink: IrqSink) -> None:
        self.sink = sink
        for line in self.lines:
            if line.level:
                sink.set_irq(line.number, True)
