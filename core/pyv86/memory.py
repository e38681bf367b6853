"""Guest physical memory: one numpy byte array, bounds-checked at every Python edge.

Physical addresses below ``size`` are RAM; the CPU reaches them directly (with its own
bounds checks), devices through :meth:`GuestMemory.read` / :meth:`GuestMemory.write`
(DMA). Addresses at or above ``size`` belong to MMIO regions (see :mod:`pyv86.bus.mmio`).
"""
from __future__ import annotations

import numpy as np

from pyv86.errors import ConfigError

PAGE_SIZE = 4096


class GuestMemoryError(IndexError):
    """A device or loader touched an address outside guest RAM."""


class GuestMemory:
    """Guest RAM as a contiguous ``uint8`` numpy array of ``size`` bytes."""

    def __init__(self, size: int) -> None:
        if size <= 0 or size % PAGE_SIZE:
            raise ConfigError(f"memory size {size} is not a positive multiple of {PAGE_SIZE}")
        self.size = size
        self.ram = np.zeros(size, dtype=np.uint8)
        self._write_hooks: list = []

    def add_write_hook(self, hook) -> None:
        """Call ``hook(addr, length)`` after every host-side write (the CPU's JIT drops
        translations of code that a device or loader overwrote)."""
        self._write_hooks.append(hook)

    def remove_write_hook(self, hook) -> None:
        if hook in self._write_hooks:
            self._write_hooks.remove(hook)

    def _wrote(self, addr: int, length: int) -> None:
        for hook in self._write_hooks:
            hook(addr, length)

    def _check(self, addr: int, length: int) -> None:
        if addr < 0 or length < 0 or addr + length > self.size:
            raise GuestMemoryError(
                f"guest physical range {addr:#x}+{length:#x} is outside RAM (0..{self.size:#x})"
            )

    def read(self, addr: int, length: int) -> bytes:
        """Copy ``length`` bytes of guest RAM starting at physical ``addr``."""
        self._check(addr, length)
        return self.ram[addr : addr + length].tobytes()

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        """Copy ``data`` into guest RAM at physical ``addr``."""
        self._check(addr, len(data))
        self.ram[addr : addr + len(data)] = np.frombuffer(bytes(data), dtype=np.uint8)
        if self._write_hooks:
            self._wrote(addr, len(data))

    def read_u8(self, addr: int) -> int:
        self._check(addr, 1)
        return int(self.ram[addr])

    def read_u16(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 2), "little")

    def read_u32(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 4), "little")

    def write_u8(self, addr: int, value: int) -> None:
        self._check(addr, 1)
        self.ram[addr] = value & 0xFF
        if self._write_hooks:
            self._wrote(addr, 1)

    def write_u16(self, addr: int, value: int) -> None:
        self.write(addr, (value & 0xFFFF).to_bytes(2, "little"))

    def write_u32(self, addr: int, value: int) -> None:
        self.write(addr, (value & 0xFFFFFFFF).to_bytes(4, "little"))

    def fill(self, addr: int, length: int, value: int = 0) -> None:
        self._check(addr, length)
        self.ram[addr : addr + length] = value & 0xFF
        if self._write_hooks:
            self._wrote(addr, length)

    def clear(self) -> None:
        self.ram[:] = 0
        if self._write_hooks:
            self._wrote(0, self.size)
