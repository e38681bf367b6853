"""The port-I/O bus: 65,536 byte ports, handlers of 8/16/32 bits.

A device maps a range with :meth:`PortBus.map` and receives ``read(offset, size)`` /
``write(offset, size, value)`` calls with ``offset`` relative to its base. An access of a
size the handler does not take (``sizes``), or one that crosses the end of a region, is
split into byte accesses, little endian. Unassigned ports read as all ones and ignore
writes; each is logged once at DEBUG level. Overlapping maps are an error.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable

from pyv86.bus._region import (MASKS, ReadHandler, ReadStringHandler, Region, WriteHandler,
                               WriteStringHandler, owner_name)

if TYPE_CHECKING:
    from pyv86.bus.window import RegisterWindow

log = logging.getLogger(__name__)

PORT_COUNT = 0x10000


class PortConflictError(ValueError):
    """Two devices claimed the same port."""


class PortBus:
    """Dispatches guest ``in``/``out`` to device handlers."""

    def __init__(self) -> None:
        self._table: list[Region | None] = [None] * PORT_COUNT
        self._regions: list[Region] = []
        self._logged_unassigned: set[tuple[str, int]] = set()
        self._trace: Callable[[str, int, int, int], None] | None = None
        self._window_sink: Callable[[list[tuple[int, RegisterWindow]]], None] | None = None
        self._window_limit = 0

    @property
    def trace(self) -> Callable[[str, int, int, int], None] | None:
        """Optional ``trace(kind, port, size, value)`` called for every access (which
        turns the CPU's register window off, so that it sees them all)."""
        return self._trace

    @trace.setter
    def trace(self, fn: Callable[[str, int, int, int], None] | None) -> None:
        self._trace = fn
        self._window_changed()

    # -- register windows ---------------------------------------------------------
    def serve_windows(self, sink: Callable[[list[tuple[int, RegisterWindow]]], None] | None,
                      limit: int) -> None:
        """Tell ``sink(windows)`` (the CPU's ``set_port_windows``) which register windows to
        serve, as ``(base, window)`` pairs, now and whenever a region with one is mapped or
        unmapped: the ``limit`` lowest-addressed ones (none while a trace is set)."""
        self._window_sink = sink
        self._window_limit = limit
        self._window_changed()

    def _window_changed(self) -> None:
        if self._window_sink is None:
            return
        windows = [] if self._trace is not None else [
            (region.base, region.window) for region in self.regions() if region.window is not None]
        self._window_sink(windows[: self._window_limit])

    # -- mapping -----------------------------------------------------------------
    def map(
        self,
        base: int,
        length: int,
        read: ReadHandler | None,
        write: WriteHandler | None,
        owner: object,
        *,
        name: str | None = None,
        sizes: tuple[int, ...] | frozenset[int] = (1, 2, 4),
        read_string: ReadStringHandler | None = None,
        write_string: WriteStringHandler | None = None,
        window: RegisterWindow | None = None,
    ) -> Region:
        """Claim ports ``base .. base+length-1`` for ``owner``; returns the region handle.

        ``read_string``/``write_string`` optionally serve a whole ``rep ins``/``rep outs``
        in one call (a NIC's data port); without them a string access is a loop of
        ordinary accesses. ``window`` lists byte registers at the start of the region
        that the CPU may serve without calling ``read``/``write``, and perhaps a data port
        it may stream itself (:mod:`pyv86.bus.window`).
        """
        if window is not None and window.length > length:
            raise ValueError(f"{name or owner_name(owner)}: register window of {window.length} ports "
                             f"is longer than the region ({length})")
        if window is not None and window.data_port is not None and window.data_port.offset + 4 > length:
            raise ValueError(f"{name or owner_name(owner)}: data port at offset {window.data_port.offset:#x} "
                             f"(accesses up to 4 bytes) is outside the region ({length} ports)")
        if length <= 0 or base < 0 or base + length > PORT_COUNT:
            raise ValueError(f"port range {base:#x}+{length:#x} is outside 0..0xffff")
        for port in range(base, base + length):
            other = self._table[port]
            if other is not None:
                raise PortConflictError(
                    f"port {port:#x}: {name or owner_name(owner)} overlaps {other.describe()}"
                )
        region = Region(base, length, read, write, owner, name or owner_name(owner), frozenset(sizes),
                        read_string, write_string, window)
        for port in range(base, base + length):
            self._table[port] = region
        self._regions.append(region)
        if window is not None:
            self._window_changed()
        return region

    def unmap(self, region: Region) -> None:
        """Release a region returned by :meth:`map`."""
        if region not in self._regions:
            return
        self._regions.remove(region)
        for port in range(region.base, region.end):
            if self._table[port] is region:
                self._table[port] = None
        if region.window is not None:
            self._window_changed()

    def unmap_owner(self, owner: object) -> None:
        for region in [r for r in self._regions if r.owner is owner]:
            self.unmap(region)

    def regions(self) -> list[Region]:
        return sorted(self._regions, key=lambda r: r.base)

    def lookup(self, port: int) -> Region | None:
        return self._table[port & 0xFFFF]

    # -- access ------------------------------------------------------------------
    def read(self, port: int, size: int) -> int:
        """Perform a guest ``in`` of ``size`` bytes (1, 2 or 4) at ``port``."""
        port &= 0xFFFF
        region = self._table[port]
        if region is not None and size in region.sizes and port + size <= region.end and region.read:
            value = region.read(port - region.base, size) & MASKS[size]
        else:
            value = 0
            for i in range(size):
                value |= self._read_byte((port + i) & 0xFFFF) << (8 * i)
        if self._trace is not None:
            self._trace("in", port, size, value)
        return value

    def write(self, port: int, size: int, value: int) -> None:
        """Perform a guest ``out`` of ``size`` bytes (1, 2 or 4) at ``port``."""
        port &= 0xFFFF
        value &= MASKS[size]
        if self._trace is not None:
            self._trace("out", port, size, value)
        region = self._table[port]
        if region is not None and size in region.sizes and port + size <= region.end and region.write:
            region.write(port - region.base, size, value)
            return
        for i in range(size):
            self._write_byte((port + i) & 0xFFFF, (value >> (8 * i)) & 0xFF)

    def read_string(self, port: int, size: int, count: int) -> bytes:
        """A guest ``rep ins``: ``count`` reads of ``size`` bytes at ``port``, as bytes."""
        port &= 0xFFFF
        region = self._table[port]
        if (region is not None and region.read_string is not None and self._trace is None
                and size in region.sizes and port + size <= region.end):
            return region.read_string(port - region.base, size, count)
        read = self.read
        return b"".join(read(port, size).to_bytes(size, "little") for _ in range(count))

    def write_string(self, port: int, size: int, data: bytes) -> None:
        """A guest ``rep outs``: ``len(data) // size`` writes of ``size`` bytes at ``port``."""
        port &= 0xFFFF
        region = self._table[port]
        usable = len(data) - len(data) % size
        if (region is not None and region.write_string is not None and self._trace is None
                and size in region.sizes and port + size <= region.end):
            region.write_string(port - region.base, size, bytes(data[:usable]))
            return
        write = self.write
        for i in range(0, usable, size):
            write(port, size, int.from_bytes(data[i : i + size], "little"))

    def _read_byte(self, port: int) -> int:
        region = self._table[port]
        if region is None or region.read is None:
            self._log_unassigned("read", port)
            return 0xFF
        if 1 in region.sizes:
            return region.read(port - region.base, 1) & 0xFF
        # the handler only takes wider accesses: read the aligned unit and pick the byte
        width = min(region.sizes)
        offset = port - region.base
        aligned = offset - offset % width
        return (region.read(aligned, width) >> (8 * (offset - aligned))) & 0xFF

    def _write_byte(self, port: int, value: int) -> None:
        region = self._table[port]
        if region is None or region.write is None:
            self._log_unassigned("write", port)
            return
        if 1 in region.sizes:
            region.write(port - region.base, 1, value)
        else:
            log.debug("%s: byte write to port %#x ignored (handler takes %s-byte accesses)",
                      region.name, port, sorted(region.sizes))

    def _log_unassigned(self, kind: str, port: int) -> None:
        key = (kind, port)
        if key not in self._logged_unassigned:
            self._logged_unassigned.add(key)
            log.debug("unassigned port %#06x: %s ignored%s", port, kind,
                      " (reads as all ones)" if kind == "read" else "")

    # convenience for tests and plugin authors
    def inb(self, port: int) -> int:
        return self.read(port, 1)

    def inw(self, port: int) -> int:
        return self.read(port, 2)

    def inl(self, port: int) -> int:
        return self.read(port, 4)

    def outb(self, port: int, value: int) -> None:
        self.write(port, 1, value)

    def outw(self, port: int, value: int) -> None:
        self.write(port, 2, value)

    def outl(self, port: int, value: int) -> None:
        self.write(port, 4, value)
