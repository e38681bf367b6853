"""The MMIO bus: physical address ranges above guest RAM handled by devices.

Regions are kept sorted and found by bisection. ``read(offset, size)`` and
``write(offset, size, value)`` receive offsets relative to the region base. Accesses
that hit no region read as all ones and are ignored on write (logged once per page at
DEBUG level). Accesses that straddle a region's end are split into bytes.
"""
from __future__ import annotations

import bisect
import logging

from pyv86.bus._region import MASKS, ReadHandler, Region, WriteHandler, owner_name

log = logging.getLogger(__name__)


class MmioConflictError(ValueError):
    """Two devices claimed overlapping MMIO ranges."""


class MmioBus:
    """Dispatches guest physical accesses that fall outside RAM."""

    def __init__(self) -> None:
        self._regions: list[Region] = []
        self._bases: list[int] = []
        self._logged: set[int] = set()

    def map(self, base: int, length: int, read: ReadHandler | None, write: WriteHandler | None,
            owner: object, *, name: str | None = None,
            sizes: tuple[int, ...] | frozenset[int] = (1, 2, 4)) -> Region:
        if length <= 0 or base < 0 or base + length > 1 << 32:
            raise ValueError(f"MMIO range {base:#x}+{length:#x} is outside the 32-bit space")
        region = Region(base, length, read, write, owner, name or owner_name(owner), frozenset(sizes))
        for other in self._regions:
            if base < other.end and other.base < region.end:
                raise MmioConflictError(f"MMIO {region.describe()} overlaps {other.describe()}")
        index = bisect.bisect(self._bases, base)
        self._regions.insert(index, region)
        self._bases.insert(index, base)
        return region

    def unmap(self, region: Region) -> None:
        if region in self._regions:
            index = self._regions.index(region)
            del self._regions[index]
            del self._bases[index]

    def unmap_owner(self, owner: object) -> None:
        for region in [r for r in self._regions if r.owner is owner]:
            self.unmap(region)

    def regions(self) -> list[Region]:
        return list(self._regions)

    def lookup(self, addr: int) -> Region | None:
        index = bisect.bisect(self._bases, addr) - 1
        if index >= 0:
            region = self._regions[index]
            if addr < region.end:
                return region
        return None

    def read(self, addr: int, size: int) -> int:
        region = self.lookup(addr)
        if region is not None and addr + size <= region.end and size in region.sizes and region.read:
            return region.read(addr - region.base, size) & MASKS[size]
        if size == 1:
            if region is None or region.read is None:
                self._log(addr)
                return 0xFF
            width = min(region.sizes)
            offset = addr - region.base
            aligned = offset - offset % width
            return (region.read(aligned, width) >> (8 * (offset - aligned))) & 0xFF
        value = 0
        for i in range(size):
            value |= self.read(addr + i, 1) << (8 * i)
        return value

    def write(self, addr: int, size: int, value: int) -> None:
        value &= MASKS[size]
        region = self.lookup(addr)
        if region is not None and addr + size <= region.end and size in region.sizes and region.write:
            region.write(addr - region.base, size, value)
            return
        if size == 1:
            if region is None or region.write is None:
                self._log(addr)
            else:
                log.debug("%s: byte write at %#x ignored (handler takes %s-byte accesses)",
                          region.name, addr, sorted(region.sizes))
            return
        for i in range(size):
            self.write(addr + i, 1, (value >> (8 * i)) & 0xFF)

    def _log(self, addr: int) -> None:
        page = addr >> 12
        if page not in self._logged:
            self._logged.add(page)
            log.debug("unassigned MMIO at %#010x (page logged once)", addr)
