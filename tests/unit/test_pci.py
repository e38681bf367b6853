"""PCI: configuration mechanism #1, identity registers, BAR sizing and relocation,
command-register decode, interrupt pin/line, multifunction devices."""
from __future__ import annotations

import pytest

from pyv86.bus import MmioBus, PortBus
from pyv86.irq import IrqLines
from pyv86.pci import (
    BAR0, CMD_INTX_DISABLE, CMD_IO, CMD_MEMORY, COMMAND, HEADER_TYPE, INTERRUPT_LINE,
    INTERRUPT_PIN, PciBus, PciFunction,
)


class Regs:
    """A device's registers behind a BAR: remembers writes, answers reads."""

    def __init__(self) -> None:
        self.writes: list[tuple[int, int, int]] = []

    def read(self, offset: int, size: int) -> int:
        return 0xA0 + offset

    def write(self, offset: int, size: int, value: int) -> None:
        self.writes.append((offset, size, value))


@pytest.fixture
def bus() -> PciBus:
    return PciBus(PortBus(), MmioBus(), IrqLines())


@pytest.fixture
def regs() -> Regs:
    return Regs()


def nic(regs: Regs, pin: int = 1) -> PciFunction:
    f = PciFunction("nic", 0x10EC, 0x8029, 0x020000, revision=2, subsystem_vendor_id=0x1AF4,
                    subsystem_id=0x1100, interrupt_pin=pin)
    f.add_io_bar(0, 32, regs.read, regs.write)
    return f


def conf1(bus: PciBus, slot: int, fn: int, reg: int) -> int:
    """What a guest does: select with a dword at 0xCF8, read a dword at 0xCFC."""
    bus.ports.outl(0xCF8, 0x80000000 | slot << 11 | fn << 8 | reg)
    return bus.ports.inl(0xCFC)


# -- identity and mechanism #1 ----------------------------------------------------------

def test_identity_registers_read_through_conf1(bus, regs):
    bus.attach(nic(regs), 5)
    assert conf1(bus, 5, 0, 0x00) == 0x8029_10EC
    assert conf1(bus, 5, 0, 0x08) == 0x0200_0002  # class 02.00.00, revision 2
    assert conf1(bus, 5, 0, 0x2C) == 0x1100_1AF4
    assert bus.config_read(5, 0, INTERRUPT_PIN, 1) == 1


def test_byte_and_word_reads_pick_lanes_of_the_dword(bus, regs):
    bus.attach(nic(regs), 5)
    bus.ports.outl(0xCF8, 0x80000000 | 5 << 11)
    assert bus.ports.inw(0xCFE) == 0x8029
    assert bus.ports.inb(0xCFD) == 0x10
    assert bus.ports.inb(0xCFF) == 0x80


def test_absent_function_and_other_buses_read_all_ones(bus, regs):
    bus.attach(nic(regs), 5)
    assert conf1(bus, 6, 0, 0) == 0xFFFFFFFF
    assert conf1(bus, 5, 1, 0) == 0xFFFFFFFF
    bus.ports.outl(0xCF8, 0x80000000 | 1 << 16 | 5 << 11)  # bus 1, slot 5
    assert bus.ports.inl(0xCFC) == 0xFFFFFFFF
    assert bus.ports.inw(0xCFC) == 0xFFFF


def test_config_space_is_off_while_the_enable_bit_is_clear(bus, regs):
    bus.attach(nic(regs), 0)
    bus.ports.outl(0xCF8, 0x00000000)  # slot 0 reg 0, enable bit clear
    assert bus.ports.inl(0xCFC) == 0xFFFFFFFF


def test_writes_to_absent_functions_are_ignored(bus):
    bus.config_write(9, 0, COMMAND, 0xFFFF)
    assert bus.config_read(9, 0, 0) == 0xFFFFFFFF


def test_address_register_reads_back_and_drops_reserved_bits(bus):
    bus.ports.outl(0xCF8, 0x80001003)
    assert bus.ports.inl(0xCF8) == 0x80001000


def test_byte_write_to_0xcfb_does_not_change_the_address(bus):
    """Linux's conf1 probe: outb(0x01, 0xCFB), then checks that 0xCF8 holds a dword."""
    bus.ports.outl(0xCF8, 0x80002810)
    bus.ports.outb(0xCFB, 0x01)
    assert bus.ports.inl(0xCF8) == 0x80002810
    bus.ports.outw(0xCF8, 0x1234)
    assert bus.ports.inl(0xCF8) == 0x80002810
    bus.ports.outl(0xCF8, 0x80000000)
    assert bus.ports.inl(0xCF8) == 0x80000000


def test_identity_registers_are_read_only(bus, regs):
    bus.attach(nic(regs), 5)
    bus.config_write(5, 0, 0x00, 0xFFFFFFFF)
    bus.config_write(5, 0, 0x08, 0xFFFFFFFF)
    assert bus.config_read(5, 0, 0x00) == 0x8029_10EC
    assert bus.config_read(5, 0, 0x08) == 0x0200_0002


def test_attaching_twice_to_one_slot_is_an_error(bus, regs):
    bus.attach(nic(regs), 5)
    with pytest.raises(ValueError, match="00:05.0 is taken by nic"):
        bus.attach(PciFunction("other", 1, 2, 0), 5)


def test_multifunction_device_sets_header_type_bit_7_of_function_0(bus, regs):
    f0 = PciFunction("f0", 0x8086, 0x7000, 0x060100)
    f1 = PciFunction("f1", 0x8086, 0x7010, 0x010180)
    bus.attach(f0, 1, 0)
    assert bus.config_read(1, 0, HEADER_TYPE, 1) & 0x80 == 0  # single function so far
    bus.attach(f1, 1, 1)
    assert bus.config_read(1, 0, HEADER_TYPE, 1) & 0x80 == 0x80
    assert bus.config_read(1, 1, 0) == 0x7010_8086
    assert bus.config_read(1, 2, 0) == 0xFFFFFFFF


# -- BARs ---------------------------------------------------------------------------------

def test_io_bar_sizing_reads_back_the_size_mask_and_type_bit(bus, regs):
    bus.attach(nic(regs), 5)
    bus.config_write(5, 0, BAR0, 0xFFFFFFFF)
    assert bus.config_read(5, 0, BAR0) == 0xFFFFFFE1  # 32 bytes, I/O
    bus.config_write(5, 0, BAR0, 0)
    assert bus.config_read(5, 0, BAR0) == 0x00000001


def test_memory_bar_sizing_reads_back_the_size_mask(bus, regs):
    f = PciFunction("gpu", 0x1234, 0x1111, 0x030000)
    f.add_mem_bar(1, 0x1000, regs.read, regs.write)
    bus.attach(f, 2)
    bus.config_write(2, 0, COMMAND, 0)  # decode off while sizing, as Linux does
    bus.config_write(2, 0, BAR0 + 4, 0xFFFFFFFF)
    assert bus.config_read(2, 0, BAR0 + 4) == 0xFFFFF000  # 4 KiB, memory, 32-bit
    # unimplemented BARs read zero and stay zero
    bus.config_write(2, 0, BAR0, 0xFFFFFFFF)
    assert bus.config_read(2, 0, BAR0) == 0


def test_bad_bar_sizes_are_refused():
    f = PciFunction("x", 1, 2, 0)
    with pytest.raises(ValueError, match="not a power of two"):
        f.add_io_bar(0, 24, None, None)
    with pytest.raises(ValueError, match="BAR index 6"):
        f.add_io_bar(6, 16, None, None)


def test_firmware_assignment_maps_io_bar_and_enables_decode(bus, regs):
    bus.attach(nic(regs), 5)
    bus.assign_resources()
    base = bus.config_read(5, 0, BAR0) & ~3
    assert base == 0xC000
    assert bus.config_read(5, 0, COMMAND, 2) & CMD_IO
    assert bus.ports.inb(base + 3) == 0xA3
    bus.ports.outb(base + 0x10, 0x5A)
    assert regs.writes == [(0x10, 1, 0x5A)]


def test_io_bar_relocation_moves_the_handlers(bus, regs):
    bus.attach(nic(regs), 5)
    bus.assign_resources()
    bus.config_write(5, 0, BAR0, 0xD101)  # low bits beyond the size are dropped
    assert bus.config_read(5, 0, BAR0) == 0xD101 & ~0x1F | 1
    assert bus.ports.inb(0xC000) == 0xFF  # old range unassigned
    assert bus.ports.inb(0xD100 + 2) == 0xA2


def test_memory_bar_relocation_moves_the_handlers(bus, regs):
    f = PciFunction("gpu", 0x1234, 0x1111, 0x030000)
    f.add_mem_bar(0, 0x1000, regs.read, regs.write)
    bus.attach(f, 2)
    bus.assign_resources()
    old = bus.config_read(2, 0, BAR0) & ~0xF
    assert old == 0xE0000000
    assert bus.mmio.read(old + 4, 1) == 0xA4
    bus.config_write(2, 0, BAR0, 0xF0000000)
    assert bus.mmio.read(old + 4, 1) == 0xFF
    assert bus.mmio.read(0xF0000004, 1) == 0xA4
    bus.mmio.write(0xF0000008, 4, 0xDEADBEEF)
    assert regs.writes == [(8, 4, 0xDEADBEEF)]


def test_command_register_turns_io_decode_off_and_on(bus, regs):
    bus.attach(nic(regs), 5)
    bus.assign_resources()
    cmd = bus.config_read(5, 0, COMMAND, 2)
    bus.config_write(5, 0, COMMAND, cmd & ~CMD_IO, size=2)
    assert bus.ports.inb(0xC000) == 0xFF
    bus.ports.outb(0xC000, 1)
    assert regs.writes == []
    bus.config_write(5, 0, COMMAND, cmd | CMD_IO, size=2)
    assert bus.ports.inb(0xC000) == 0xA0


def test_command_register_turns_memory_decode_off_and_on(bus, regs):
    f = PciFunction("gpu", 0x1234, 0x1111, 0x030000)
    f.add_mem_bar(0, 0x1000, regs.read, regs.write)
    bus.attach(f, 2)
    bus.assign_resources()
    bus.config_write(2, 0, COMMAND, 0, size=2)
    assert bus.mmio.read(0xE0000000, 4) == 0xFFFFFFFF
    bus.config_write(2, 0, COMMAND, CMD_MEMORY, size=2)
    assert bus.mmio.read(0xE0000000, 1) == 0xA0


def test_sizing_with_decode_on_does_not_leave_a_stale_mapping(bus, regs):
    bus.attach(nic(regs), 5)
    bus.assign_resources()
    bus.config_write(5, 0, BAR0, 0xFFFFFFFF)  # all-ones address: not decodable
    assert bus.ports.inb(0xC000) == 0xFF
    bus.config_write(5, 0, BAR0, 0xC001)
    assert bus.ports.inb(0xC000) == 0xA0


def test_bar_moved_onto_another_device_is_not_decoded(bus, regs, caplog):
    bus.ports.map(0xD000, 0x20, lambda o, s: 0x11, None, "other")
    bus.attach(nic(regs), 5)
    bus.assign_resources()
    bus.config_write(5, 0, BAR0, 0xD001)
    assert bus.ports.inb(0xD000) == 0x11
    assert "not decoded" in caplog.text


def test_firmware_places_largest_bars_first_and_aligned(bus, regs):
    a = PciFunction("a", 1, 1, 0)
    a.add_io_bar(0, 16, regs.read, None)
    a.add_io_bar(1, 256, regs.read, None)
    bus.attach(a, 3)
    bus.assign_resources()
    assert bus.config_read(3, 0, BAR0 + 4) & ~3 == 0xC000
    assert bus.config_read(3, 0, BAR0) & ~3 == 0xC100


def test_config_space_round_trips_and_remaps(bus, regs):
    f = nic(regs)
    bus.attach(f, 5)
    bus.assign_resources()
    bus.config_write(5, 0, BAR0, 0xE001)
    saved = f.save()
    bus.config_write(5, 0, BAR0, 0xC001)
    f.restore(saved)
    assert bus.ports.inb(0xE000) == 0xA0
    assert bus.ports.inb(0xC000) == 0xFF
    with pytest.raises(ValueError, match="256 bytes"):
        f.restore(b"\0" * 10)


# -- interrupts -------------------------------------------------------------------------

class Pic:
    def __init__(self) -> None:
        self.events: list[tuple[int, bool]] = []

    def set_irq(self, line: int, level: bool) -> None:
        self.events.append((line, level))


def test_firmware_writes_interrupt_line_from_the_pirq_swizzle(bus, regs):
    bus.attach(nic(regs), 5)
    bus.attach(PciFunction("b", 1, 2, 0, interrupt_pin=2), 6)
    bus.assign_resources()
    # PIRQ[(slot + pin - 2) & 3], PIRQA..D -> IRQ 10, 10, 11, 11
    assert bus.config_read(5, 0, INTERRUPT_LINE, 1) == 10  # slot 5 INTA -> PIRQA
    assert bus.config_read(6, 0, INTERRUPT_LINE, 1) == 11  # slot 6 INTB -> PIRQC
    # the guest may rewrite Interrupt Line (it is a scratch register), not Interrupt Pin
    bus.config_write(5, 0, INTERRUPT_LINE, 0x0509, size=2)
    assert bus.config_read(5, 0, INTERRUPT_LINE, 2) == 0x0109


def test_intx_drives_the_routed_isa_line_and_honours_intx_disable(bus, regs):
    pic = Pic()
    bus.irqs.attach_sink(pic)
    f = nic(regs)
    bus.attach(f, 5)
    bus.assign_resources()
    f.set_irq(True)
    assert pic.events == [(10, True)]
    cmd = bus.config_read(5, 0, COMMAND, 2)
    bus.config_write(5, 0, COMMAND, cmd | CMD_INTX_DISABLE, size=2)
    assert pic.events[-1] == (10, False)
    bus.config_write(5, 0, COMMAND, cmd, size=2)
    assert pic.events[-1] == (10, True)
    f.set_irq(False)
    assert pic.events[-1] == (10, False)


def test_status_register_reports_a_pending_intx(bus, regs):
    f = nic(regs)
    bus.attach(f, 5)
    f.set_irq(True)
    assert bus.config_read(5, 0, 0x06, 2) & 0x08
    f.set_irq(False)
    assert not bus.config_read(5, 0, 0x06, 2) & 0x08


def test_detach_releases_bars_and_irq(bus, regs):
    pic = Pic()
    bus.irqs.attach_sink(pic)
    f = nic(regs)
    bus.attach(f, 5)
    bus.assign_resources()
    f.set_irq(True)
    bus.detach(f)
    assert bus.ports.inb(0xC000) == 0xFF
    assert pic.events[-1] == (10, False)
    assert conf1(bus, 5, 0, 0) == 0xFFFFFFFF


def test_restore_re_drives_the_saved_intx_level(bus, regs):
    pic = Pic()
    bus.irqs.attach_sink(pic)
    f = nic(regs)
    bus.attach(f, 5)
    f.set_irq(True)
    saved = f.save()
    f.set_irq(False)
    assert pic.events[-1] == (10, False)
    f.restore(saved)
    assert pic.events[-1] == (10, True)
