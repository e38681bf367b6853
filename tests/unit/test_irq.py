"""IRQ lines: level sources are wired-OR, edges are pulses, the sink sees only changes."""
from __future__ import annotations

import pytest

from pyv86.irq import IrqLines


class Sink:
    def __init__(self) -> None:
        self.events: list[tuple[int, bool]] = []

    def set_irq(self, line: int, level: bool) -> None:
        self.events.append((line, level))


@pytest.fixture
def lines() -> IrqLines:
    return IrqLines()


@pytest.fixture
def sink(lines) -> Sink:
    s = Sink()
    lines.attach_sink(s)
    return s


def test_level_source_raises_and_lowers_its_line(lines, sink):
    src = lines[5].source("uart")
    src.set(True)
    src.set(True)  # no change, no event
    src.set(False)
    assert sink.events == [(5, True), (5, False)]


def test_shared_level_line_is_the_or_of_its_sources(lines, sink):
    a, b, c = (lines[11].source(n) for n in "abc")
    a.set(True)
    b.set(True)
    a.set(False)
    assert lines[11].level is True
    assert sink.events == [(11, True)]  # still held by b
    b.set(False)
    assert sink.events == [(11, True), (11, False)]
    c.set(True)
    assert sink.events[-1] == (11, True)


def test_pulse_is_a_rising_then_falling_edge(lines, sink):
    pit = lines[0].source("pit")
    pit.pulse()
    pit.pulse()
    assert sink.events == [(0, True), (0, False), (0, True), (0, False)]
    assert pit.level is False


def test_pulse_on_a_line_held_high_by_another_source_is_invisible(lines, sink):
    held = lines[9].source("held")
    edge = lines[9].source("edge")
    held.set(True)
    edge.pulse()
    assert sink.events == [(9, True)]


def test_lines_are_independent(lines, sink):
    lines[3].source("a").set(True)
    lines[4].source("b").set(True)
    assert sink.events == [(3, True), (4, True)]
    assert [line.level for line in lines.lines[:6]] == [False, False, False, True, True, False]


def test_levels_set_before_the_sink_attaches_are_replayed(lines):
    lines[14].source("ide").set(True)
    late = Sink()
    lines.attach_sink(late)
    assert late.events == [(14, True)]


def test_releasing_a_source_drops_its_contribution(lines, sink):
    a = lines[10].source("a")
    a.set(True)
    lines[10].release(a)
    assert sink.events == [(10, True), (10, False)]
    assert lines[10].sources == []


def test_unknown_line_is_a_clear_error(lines):
    with pytest.raises(ValueError, match="IRQ 16 does not exist"):
        lines[16]
