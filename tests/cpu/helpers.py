"""Shared helpers for the CPU tests: a flat protected-mode machine and a tiny host."""
from __future__ import annotations

import struct

from pyv86.memory import GuestMemory

GDT = 0x6000


def desc(base, limit, access, flags=0xC):
    return ((limit & 0xFFFF) | ((base & 0xFFFF) << 16) | (((base >> 16) & 0xFF) << 32)
            | (access << 40) | (((limit >> 16) & 0xF) << 48) | (flags << 52) | ((base >> 24) << 56))


class Host:
    """Records port and MMIO traffic; serves canned data."""

    def __init__(self):
        self.log = []
        self.port_values = {}
        self.string_data = b""
        self.vectors = []
        self.mmio = {}

    def port_read(self, port, size):
        self.log.append(("in", port, size))
        return self.port_values.get(port, (1 << (8 * size)) - 1)

    def port_write(self, port, size, value):
        self.log.append(("out", port, size, value))

    def port_read_string(self, port, size, count):
        self.log.append(("ins", port, size, count))
        data, self.string_data = self.string_data[:size * count], self.string_data[size * count:]
        return data

    def port_write_string(self, port, size, data):
        self.log.append(("outs", port, size, bytes(data)))

    def mmio_read(self, addr, size):
        self.log.append(("mr", addr, size))
        return self.mmio.get(addr, (1 << (8 * size)) - 1)

    def mmio_write(self, addr, size, value):
        self.log.append(("mw", addr, size, value))
        self.mmio[addr] = value

    def interrupt_ack(self):
        return self.vectors.pop(0) if self.vectors else None


def flat_cpu(ram=4 << 20, host=None):
    """A CPU in flat 32-bit protected mode like the Linux loader leaves it."""
    from pyv86.cpu import CPU
    mem = GuestMemory(ram)
    host = host or Host()
    cpu = CPU(mem, host)
    gdt = [0, 0, desc(0, 0xFFFFF, 0x9B), desc(0, 0xFFFFF, 0x93),
           desc(0, 0xFFFFF, 0xFB), desc(0, 0xFFFFF, 0xF3), 0, 0]
    for i, d in enumerate(gdt):
        mem.write(GDT + 8 * i, struct.pack("<Q", d))
    cpu.set_gdtr(GDT, 8 * len(gdt) - 1)
    cpu.set_reg("cr0", 0x11)
    cpu.set_segment("cs", 0x10, 0, 0xFFFFFFFF, 0xC09B)
    for s in ("ds", "es", "ss", "fs", "gs"):
        cpu.set_segment(s, 0x18, 0, 0xFFFFFFFF, 0xC093)
    cpu.set_reg("eflags", 2)
    cpu.set_reg("esp", 0x90000)
    return cpu, mem, host


def load(cpu, mem, code: bytes, at=0x100000):
    mem.write(at, code)
    cpu.set_reg("eip", at)


def asm(*lines, ip=0x100000, bits=32) -> bytes:
    """Assemble with iced-x86's BlockEncoder from (Instruction) objects or raw bytes."""
    out = b""
    for ln in lines:
        out += ln
    return out
