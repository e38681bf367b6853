"""The RTL8029's PCI function: identity, BAR0 sizing and relocation, INTA, machine-file options."""
from __future__ import annotations

import pytest

from pyv86.errors import ConfigError
from pyv86.testing.net import LoopbackNet

from ne2k_testlib import NIC_TEXT, Regs, build_machine, make_plugins


def cfg(machine, reg: int, size: int = 4, slot: int = 5) -> int:
    return machine.pci.config_read(slot, 0, reg, size)


def test_identity_at_00_05_0(machine):
    assert cfg(machine, 0x00, 2) == 0x10EC
    assert cfg(machine, 0x02, 2) == 0x8029
    assert cfg(machine, 0x08) >> 8 == 0x020000  # class: Ethernet controller
    assert cfg(machine, 0x0E, 1) == 0x00  # header type 0, single function
    assert cfg(machine, 0x3D, 1) == 1  # INTA#
    assert cfg(machine, 0x30) == 0  # no expansion ROM (v86's leftover value is not copied)


def test_bar0_is_io_and_enabled_by_firmware(machine, nic):
    bar0 = cfg(machine, 0x10)
    assert bar0 & 1 == 1
    assert bar0 & ~3 == nic.io_base
    assert cfg(machine, 0x04, 2) & 1  # I/O decode on
    assert 3 <= cfg(machine, 0x3C, 1) <= 15  # interrupt line written


def test_bar0_sizing_reads_back_size_mask(machine):
    saved = cfg(machine, 0x10)
    machine.pci.config_write(5, 0, 0x10, 0xFFFFFFFF)
    assert cfg(machine, 0x10) == (~(32 - 1) & 0xFFFFFFFF) | 1
    machine.pci.config_write(5, 0, 0x10, saved)
    assert cfg(machine, 0x10) == saved


def test_moving_bar0_moves_every_port(machine, nic, regs):
    old = nic.io_base
    assert machine.ports.read(old + 0x0A, 1) == 0x50
    machine.pci.config_write(5, 0, 0x10, 0xD000 | 1)
    assert nic.io_base == 0xD000
    assert machine.ports.read(0xD000 + 0x0A, 1) == 0x50
    assert machine.ports.read(0xD000 + 0x0B, 1) == 0x43
    assert machine.ports.read(old + 0x0A, 1) == 0xFF  # nothing left at the old place
    machine.ports.read(0xD000 + 0x1F, 1)  # the reset port moved too
    assert machine.ports.read(0xD000 + 0x07, 1) & 0x80


def test_io_decode_off_unmaps_ports(machine, nic):
    base = nic.io_base
    cmd = cfg(machine, 0x04, 2)
    machine.pci.config_write(5, 0, 0x04, cmd & ~1, 2)
    assert machine.ports.read(base, 1) == 0xFF
    machine.pci.config_write(5, 0, 0x04, cmd, 2)
    assert machine.ports.read(base, 1) != 0xFF


def test_unassigned_offsets_in_the_bar_read_all_ones(regs):
    for off in range(0x11, 0x1F):
        assert regs.inb(off) == 0xFF


def test_irq_reaches_the_routed_line(machine, nic, regs):
    line = cfg(machine, 0x3C, 1)
    regs.start_receiver()
    regs.outb(0x0F, 0x3F)
    assert not machine.irqs[line].level
    nic.port.inject(b"\xff" * 6 + bytes(6) + b"\x08\x06" + bytes(28))
    assert machine.irqs[line].level
    regs.outb(0x03, 0x4C)  # the driver consumed the frame (BNRY = CURR - 1)
    regs.outb(0x07, 0x01)
    assert not machine.irqs[line].level


def test_intx_disable_masks_the_line(machine, nic, regs):
    line = cfg(machine, 0x3C, 1)
    regs.start_receiver()
    regs.outb(0x0F, 0x3F)
    cmd = cfg(machine, 0x04, 2)
    machine.pci.config_write(5, 0, 0x04, cmd | 0x400, 2)
    nic.port.inject(b"\xff" * 6 + bytes(6) + b"\x08\x06" + bytes(28))
    assert nic.irq_level and not machine.irqs[line].level
    machine.pci.config_write(5, 0, 0x04, cmd, 2)
    assert machine.irqs[line].level


def test_slot_and_io_size_options():
    wire = LoopbackNet()
    m = build_machine(NIC_TEXT.format(name="m", url="loopback:", options="slot = 8\nio_size = 256"),
                      make_plugins(wire))
    try:
        assert m.pci.config_read(8, 0, 0, 2) == 0x10EC
        m.pci.config_write(8, 0, 0x10, 0xFFFFFFFF)
        assert m.pci.config_read(8, 0, 0x10) == 0xFFFFFF01
        assert m.pci.config_read(5, 0, 0, 2) == 0xFFFF
    finally:
        m.shutdown("test")


def test_two_nics_get_their_own_ports_and_macs():
    wire = LoopbackNet()
    text = NIC_TEXT.format(name="m", url="loopback:a", options="") + """
[netdev.lan2]
url = "loopback:b"
[device.net1]
type = "ne2k-pci"
netdev = "lan2"
slot = 8
"""
    m = build_machine(text, make_plugins(wire))
    try:
        a, b = m.devices["net0"], m.devices["net1"]
        assert a.io_base != b.io_base
        assert a.wire_mac != b.wire_mac
        assert a.wire_mac[:3] == b.wire_mac[:3] == b"\x00\x22\x15"
        ra, rb = Regs(m, a), Regs(m, b)
        ra.wr(1, 0x01, 0x12)
        assert rb.rd(1, 0x01) == b.wire_mac[0]
    finally:
        m.shutdown("test")


@pytest.mark.parametrize("options, message", [
    ('mac = "00:22:15:zz:00:01"', "device.net0.mac: mac '00:22:15:zz:00:01' is not a MAC address"),
    ('mac = "01:22:15:00:00:01"', "device.net0.mac: mac '01:22:15:00:00:01' is a multicast address"),
    ('mac = "00:22:15:00:00"', "device.net0.mac: mac '00:22:15:00:00' is not a MAC address"),
    ("slot = 0", "device.net0.slot: slot 0 is not a PCI device number"),
    ("slot = 32", "device.net0.slot: slot 32 is not a PCI device number"),
    ("io_size = 48", "device.net0.io_size: io_size 48 must be 32"),
    ("rx_queue = -1", "device.net0.rx_queue: rx_queue -1 must be 0..4096"),
    ('colour = "red"', "device.net0.colour: unknown key for device type 'ne2k-pci'"),
])
def test_bad_options_are_one_line_errors(options, message):
    with pytest.raises(ConfigError) as err:
        build_machine(NIC_TEXT.format(name="m", url="null:", options=options), make_plugins())
    text = str(err.value)
    assert message in text, text
    assert "\n" not in text


def test_slot_collision_is_a_config_error():
    text = NIC_TEXT.format(name="m", url="null:", options="") + """
[device.net1]
type = "ne2k-pci"
slot = 5
"""
    with pytest.raises(ConfigError, match="slot 00:05.0 is taken"):
        build_machine(text, make_plugins())


def test_configured_mac_goes_to_prom_par_and_wire(nic, regs):
    assert nic.wire_mac == bytes.fromhex("002215aabbcc")
    assert [regs.rd(1, 1 + i) for i in range(6)] == list(nic.wire_mac)
