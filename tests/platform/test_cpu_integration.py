"""The platform with the real CPU: a halted CPU wakes on the PIT tick; TSC follows the clock."""
from __future__ import annotations

import time

import pytest

from pyv86.machine import Machine
from pyv86.platform.pc import add_pc_platform

# real-mode program at 0x1000: PIC vectors at 0x08, unmask IRQ0, PIT ch0 mode 2 at 1 kHz,
# then `sti; hlt; jmp $-3`. The IRQ0 handler at 0x1100 counts ticks in word [0x2000].
PROGRAM = bytes([
    0xB0, 0x11, 0xE6, 0x20, 0xB0, 0x08, 0xE6, 0x21, 0xB0, 0x04, 0xE6, 0x21, 0xB0, 0x01, 0xE6, 0x21,
    0xB0, 0xFE, 0xE6, 0x21,
    0xB0, 0x34, 0xE6, 0x43, 0xB0, 0xA9, 0xE6, 0x40, 0xB0, 0x04, 0xE6, 0x40,
    0xFB, 0xF4, 0xEB, 0xFD,
])
HANDLER = bytes([0xFF, 0x06, 0x00, 0x20, 0xB0, 0x20, 0xE6, 0x20, 0xCF])


def make(clock_mode: str) -> Machine:
    machine = Machine(4 << 20, clock_mode=clock_mode)
    machine.attach_cpu()
    add_pc_platform(machine)
    machine.realize()

    def boot(m: Machine) -> None:
        m.memory.write(0x1000, PROGRAM)
        m.memory.write(0x1100, HANDLER)
        m.memory.write(0x08 * 4, (0x1100).to_bytes(2, "little") + (0).to_bytes(2, "little"))
        m.memory.write_u16(0x2000, 0)
        cpu = m.cpu
        for seg in ("cs", "ds", "es", "ss"):
            cpu.set_segment(seg, 0, 0, 0xFFFF, 0x9B if seg == "cs" else 0x93)
        cpu.set_reg("esp", 0x8000)
        cpu.set_reg("eip", 0x1000)

    machine.boot_hooks.append(boot)
    machine.reset()
    return machine


@pytest.mark.slow
def test_halted_cpu_wakes_on_pit_ticks_in_virtual_mode():
    machine = make("virtual")
    machine.run(until_ns=20_000_000)
    ticks = machine.memory.read_u16(0x2000)
    assert 19 <= ticks <= 20
    assert machine.cpu.instructions < 2000  # it slept between ticks instead of spinning


@pytest.mark.slow
def test_tsc_counts_guest_nanoseconds_across_idle():
    machine = make("virtual")
    machine.run(until_ns=5_000_000)
    assert machine.clock.now - 10_000 <= machine.cpu.tsc <= machine.clock.now + 10_000


@pytest.mark.slow
def test_halted_cpu_wakes_on_pit_ticks_in_realtime_mode():
    machine = make("realtime")
    start = time.monotonic()
    machine.run(until_ns=machine.clock.now + 50_000_000, timeout_s=5)
    elapsed = time.monotonic() - start
    ticks = machine.memory.read_u16(0x2000)
    assert elapsed >= 0.045
    assert 10 <= ticks <= 51
