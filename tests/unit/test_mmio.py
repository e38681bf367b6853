"""The MMIO bus: regions above RAM, split and unassigned accesses, conflicts."""
from __future__ import annotations

import logging

import pytest

from pyv86.bus.mmio import MmioBus, MmioConflictError


class Regs:
    def __init__(self) -> None:
        self.mem = bytearray(range(256)) * 16
        self.log: list[tuple] = []

    def read(self, offset: int, size: int) -> int:
        self.log.append(("r", offset, size))
        return int.from_bytes(self.mem[offset:offset + size], "little")

    def write(self, offset: int, size: int, value: int) -> None:
        self.log.append(("w", offset, size, value))
        self.mem[offset:offset + size] = value.to_bytes(size, "little")


@pytest.fixture
def bus() -> MmioBus:
    return MmioBus()


def test_reads_and_writes_reach_the_region_with_relative_offsets(bus):
    regs = Regs()
    bus.map(0xFEC00000, 0x1000, regs.read, regs.write, regs, name="ioapic")
    assert bus.read(0xFEC00010, 4) == 0x13121110
    bus.write(0xFEC00020, 2, 0xBEEF)
    assert regs.log == [("r", 0x10, 4), ("w", 0x20, 2, 0xBEEF)]
    assert bus.read(0xFEC00020, 2) == 0xBEEF


def test_unassigned_addresses_read_all_ones_and_log_once_per_page(bus, caplog):
    caplog.set_level(logging.DEBUG, logger="pyv86.bus.mmio")
    assert bus.read(0xF0000000, 4) == 0xFFFFFFFF
    assert bus.read(0xF0000004, 1) == 0xFF
    bus.write(0xF0000008, 4, 0)
    bus.read(0xF0001000, 1)
    assert len(caplog.records) == 2


def test_regions_are_found_among_many(bus):
    regions = [Regs() for _ in range(5)]
    for i, r in enumerate(regions):
        bus.map(0xE0000000 + i * 0x10000, 0x1000, r.read, r.write, r, name=f"r{i}")
    assert bus.read(0xE0030005, 1) == 5
    assert regions[3].log == [("r", 5, 1)]
    assert bus.read(0xE0031000, 1) == 0xFF  # the hole after r3
    assert [r.name for r in bus.regions()] == ["r0", "r1", "r2", "r3", "r4"]


def test_dword_read_only_region_serves_byte_reads(bus):
    regs = Regs()
    bus.map(0xE0000000, 0x100, regs.read, regs.write, regs, sizes=(4,))
    assert bus.read(0xE0000006, 1) == 6
    assert regs.log == [("r", 4, 4)]
    bus.read(0xE0000006, 2)  # unaligned word: two byte reads of the enclosing dword
    assert regs.log[1:] == [("r", 4, 4), ("r", 4, 4)]


def test_access_straddling_the_end_of_a_region_is_split(bus):
    regs = Regs()
    bus.map(0xE0000000, 0x10, regs.read, regs.write, regs)
    assert bus.read(0xE000000E, 4) == 0xFFFF0000 | 0x0F0E


def test_overlapping_regions_are_refused(bus):
    bus.map(0xE0000000, 0x1000, None, None, "a", name="a")
    with pytest.raises(MmioConflictError, match=r"b \[0xe0000800-0xe00017ff\] overlaps a"):
        bus.map(0xE0000800, 0x1000, None, None, "b", name="b")


def test_ranges_beyond_4gib_are_refused(bus):
    with pytest.raises(ValueError, match="outside the 32-bit space"):
        bus.map(0xFFFFF000, 0x2000, None, None, "x")


def test_unmap_owner(bus):
    regs = Regs()
    bus.map(0xE0000000, 0x10, regs.read, regs.write, regs)
    bus.map(0xE0001000, 0x10, regs.read, regs.write, regs)
    bus.unmap_owner(regs)
    assert bus.regions() == []
    assert bus.read(0xE0000000, 1) == 0xFF
