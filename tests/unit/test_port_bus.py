"""The port-I/O bus: mapping, split accesses, unassigned ports, conflicts."""
from __future__ import annotations

import logging

import pytest

from pyv86.bus.ports import PortBus, PortConflictError


class Dev:
    def __init__(self, name: str = "dev") -> None:
        self.name = name
        self.log: list[tuple] = []

    def read(self, offset: int, size: int) -> int:
        self.log.append(("r", offset, size))
        return {1: 0x11, 2: 0x2222, 4: 0x44444444}[size] + offset

    def write(self, offset: int, size: int, value: int) -> None:
        self.log.append(("w", offset, size, value))


def test_unassigned_ports_read_all_ones_and_ignore_writes(port_bus):
    assert port_bus.inb(0x1234) == 0xFF
    assert port_bus.inw(0x1234) == 0xFFFF
    assert port_bus.inl(0x1234) == 0xFFFFFFFF
    port_bus.outl(0x1234, 0)  # nothing happens, nothing raises


def test_unassigned_port_is_logged_once_per_direction(port_bus, caplog):
    caplog.set_level(logging.DEBUG, logger="pyv86.bus.ports")
    for _ in range(3):
        port_bus.inb(0x2F8)
        port_bus.outb(0x2F8, 1)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["unassigned port 0x02f8: read ignored (reads as all ones)",
                        "unassigned port 0x02f8: write ignored"]
    assert all(r.levelno == logging.DEBUG for r in caplog.records)


def test_handlers_get_offsets_relative_to_the_base(port_bus):
    dev = Dev()
    port_bus.map(0x300, 0x20, dev.read, dev.write, dev)
    assert port_bus.inb(0x305) == 0x16
    assert port_bus.inw(0x310) == 0x2232
    port_bus.outl(0x31C, 0xCAFEBABE)
    assert dev.log == [("r", 5, 1), ("r", 0x10, 2), ("w", 0x1C, 4, 0xCAFEBABE)]


def test_word_access_on_a_byte_only_device_is_split_little_endian(port_bus):
    dev = Dev()
    port_bus.map(0x60, 2, dev.read, dev.write, dev, sizes=(1,))
    assert port_bus.inw(0x60) == (0x12 << 8) | 0x11
    port_bus.outw(0x60, 0xBBAA)
    assert dev.log[-2:] == [("w", 0, 1, 0xAA), ("w", 1, 1, 0xBB)]


def test_access_crossing_the_end_of_a_region_is_split(port_bus):
    dev = Dev()
    port_bus.map(0x70, 2, dev.read, dev.write, dev)
    # 0x70-0x71 are the device's, 0x72-0x73 are unassigned
    assert port_bus.inl(0x70) == 0xFFFF0000 | (0x12 << 8) | 0x11
    port_bus.outl(0x71, 0xDDCCBBAA)
    assert dev.log[-1] == ("w", 1, 1, 0xAA)


def test_byte_read_of_a_word_only_device_picks_the_byte(port_bus):
    dev = Dev()
    port_bus.map(0x1F0, 2, dev.read, dev.write, dev, sizes=(2,))
    assert port_bus.inb(0x1F1) == 0x22
    assert dev.log == [("r", 0, 2)]
    port_bus.outb(0x1F0, 5)  # cannot be delivered: dropped, not widened
    assert len(dev.log) == 1


def test_write_only_region_reads_all_ones(port_bus):
    dev = Dev()
    port_bus.map(0x501, 2, None, dev.write, dev)
    assert port_bus.inw(0x501) == 0xFFFF
    port_bus.outw(0x501, 7)
    assert dev.log == [("w", 0, 2, 7)]


def test_overlapping_maps_are_refused_naming_both(port_bus):
    port_bus.map(0x3F8, 8, None, None, Dev("uart0"), name="uart0")
    with pytest.raises(PortConflictError, match=r"port 0x3fc: uart1 overlaps uart0 \[0x3f8-0x3ff\]"):
        port_bus.map(0x3FC, 8, None, None, Dev("uart1"), name="uart1")
    assert port_bus.lookup(0x400) is None  # the refused map left nothing behind


@pytest.mark.parametrize("base, length", [(-1, 1), (0xFFFF, 2), (0, 0)])
def test_ranges_outside_the_port_space_are_refused(port_bus, base, length):
    with pytest.raises(ValueError, match="outside 0..0xffff"):
        port_bus.map(base, length, None, None, Dev())


def test_unmap_frees_the_ports(port_bus):
    dev = Dev()
    region = port_bus.map(0x80, 1, dev.read, dev.write, dev)
    port_bus.unmap(region)
    assert port_bus.inb(0x80) == 0xFF
    port_bus.map(0x80, 1, dev.read, dev.write, dev)  # free again
    port_bus.unmap_owner(dev)
    assert port_bus.regions() == []


def test_port_numbers_wrap_at_64k(port_bus):
    dev = Dev()
    port_bus.map(0, 1, dev.read, dev.write, dev, sizes=(1,))
    assert port_bus.inw(0xFFFF) == 0x1100 | 0xFF


def test_trace_sees_every_access(port_bus):
    seen = []
    port_bus.trace = lambda *a: seen.append(a)
    port_bus.outb(0x80, 0x42)
    port_bus.inb(0x80)
    assert seen == [("out", 0x80, 1, 0x42), ("in", 0x80, 1, 0xFF)]


def test_the_cpu_is_told_the_lowest_register_windows_as_regions_come_and_go():
    import ctypes

    from pyv86.bus.window import RegisterWindow

    bus = PortBus()
    seen: list[list] = []
    windows = [RegisterWindow((ctypes.c_uint8 * 2)(), reads={(0, 0): 0}, writes={}) for _ in range(3)]
    bus.serve_windows(seen.append, limit=2)
    assert seen == [[]]
    dev = Dev()
    high = bus.map(0x300, 0x20, dev.read, dev.write, dev, window=windows[0])
    assert seen[-1] == [(0x300, windows[0])]
    bus.map(0x100, 0x10, dev.read, dev.write, dev)               # no window: nothing to tell
    assert len(seen) == 2
    low = bus.map(0x200, 0x20, dev.read, dev.write, dev, window=windows[1])
    assert seen[-1] == [(0x200, windows[1]), (0x300, windows[0])]
    lowest = bus.map(0x20, 2, dev.read, dev.write, dev, window=RegisterWindow(
        (ctypes.c_uint8 * 2)(), reads={}, writes={}, length=2))
    assert [base for base, _ in seen[-1]] == [0x20, 0x200]         # at most two, the lowest
    bus.unmap(lowest)
    bus.unmap(low)
    assert seen[-1] == [(0x300, windows[0])]
    bus.trace = lambda *access: None                             # a trace sees every access
    assert seen[-1] == []
    bus.trace = None
    bus.unmap(high)
    assert seen[-1] == []
    with pytest.raises(ValueError, match="register window of 16 ports is longer than the region"):
        bus.map(0x400, 8, dev.read, dev.write, dev, name="short", window=windows[2])
