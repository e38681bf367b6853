"""Guest RAM: contents, little-endian helpers, and bounds checks at every edge."""
from __future__ import annotations

import pytest

from pyv86.errors import ConfigError
from pyv86.memory import GuestMemory, GuestMemoryError


@pytest.fixture
def mem() -> GuestMemory:
    return GuestMemory(64 * 1024)


def test_new_memory_is_zeroed(mem):
    assert mem.read(0, 16) == bytes(16)
    assert mem.ram.nbytes == 64 * 1024


def test_write_then_read(mem):
    mem.write(0x100, b"pyv86")
    assert mem.read(0x100, 5) == b"pyv86"
    mem.write(0x200, bytearray(b"\x01\x02"))
    mem.write(0x202, memoryview(b"\x03"))
    assert mem.read(0x200, 3) == b"\x01\x02\x03"


def test_little_endian_helpers(mem):
    mem.write_u32(0x10, 0x11223344)
    assert mem.read(0x10, 4) == b"\x44\x33\x22\x11"
    assert mem.read_u16(0x10) == 0x3344
    assert mem.read_u8(0x13) == 0x11
    mem.write_u16(0x20, 0x1FFFF)  # truncated to 16 bits
    assert mem.read_u32(0x20) == 0xFFFF
    mem.write_u8(0x30, 0x1AB)
    assert mem.read_u8(0x30) == 0xAB


def test_fill_and_clear(mem):
    mem.fill(0x40, 8, 0xCC)
    assert mem.read(0x3F, 10) == b"\0" + b"\xcc" * 8 + b"\0"
    mem.clear()
    assert not mem.ram.any()


@pytest.mark.parametrize("addr, length", [
    (64 * 1024, 1), (64 * 1024 - 1, 2), (-1, 1), (0, 64 * 1024 + 1), (0x10, -1),
])
def test_accesses_outside_ram_are_refused(mem, addr, length):
    with pytest.raises(GuestMemoryError, match="outside RAM"):
        mem.read(addr, length)


def test_writes_outside_ram_are_refused_and_change_nothing(mem):
    with pytest.raises(GuestMemoryError):
        mem.write(64 * 1024 - 2, b"abcd")
    with pytest.raises(GuestMemoryError):
        mem.write_u32(64 * 1024 - 2, 0)
    with pytest.raises(GuestMemoryError):
        mem.fill(64 * 1024 - 1, 2)
    with pytest.raises(GuestMemoryError):
        mem.write_u8(64 * 1024, 1)
    assert not mem.ram.any()


def test_last_byte_is_reachable(mem):
    mem.write_u8(64 * 1024 - 1, 9)
    assert mem.read(64 * 1024 - 1, 1) == b"\x09"


@pytest.mark.parametrize("size", [0, -4096, 4095, 4097])
def test_sizes_that_are_not_whole_pages_are_refused(size):
    with pytest.raises(ConfigError, match="multiple of 4096"):
        GuestMemory(size)
