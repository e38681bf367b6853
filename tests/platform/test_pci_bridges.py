"""i440FX host bridge and PIIX3 ISA bridge with its PIRQ router."""
from __future__ import annotations

from pyv86.pci import PciFunction


def test_host_bridge_identity(pc):
    assert pc.machine.pci.config_read(0, 0, 0x00) == 0x12378086
    assert pc.machine.pci.config_read(0, 0, 0x08) >> 8 == 0x060000


def test_isa_bridge_identity_and_multifunction_header(pc):
    assert pc.machine.pci.config_read(1, 0, 0x00) == 0x70008086
    assert pc.machine.pci.config_read(1, 0, 0x08) >> 8 == 0x060100
    assert pc.machine.pci.config_read(1, 0, 0x0E, 1) == 0x80


def test_conf1_probe_reads_back_enable_bit(pc):
    pc.ports.outl(0xCF8, 0x80000000)
    assert pc.ports.inl(0xCF8) == 0x80000000


def test_missing_function_reads_all_ones(pc):
    assert pc.machine.pci.config_read(1, 1, 0x00) == 0xFFFFFFFF


def test_pirq_routes_default_to_10_10_11_11(pc):
    assert pc.machine.pci.config_read(1, 0, 0x60) == 0x0B0B0A0A


def test_route_irq_follows_pirq_registers(pc):
    route = pc.machine.pci.route_irq
    assert route(5, 1) == 10  # 00:05.0 INTA -> PIRQA
    assert route(6, 1) == 10
    assert route(7, 1) == 11
    pc.machine.pci.config_write(1, 0, 0x60, 0x05, size=1)
    assert route(5, 1) == 5


def test_disabled_route_reports_not_connected(pc):
    pc.machine.pci.config_write(1, 0, 0x60, 0x80, size=1)
    assert pc.machine.pci.route_irq(5, 1) == 0xFF


def test_nic_slot5_gets_interrupt_line_10_and_wire_10(make_pc):
    pc = make_pc()
    fn = PciFunction("nic", 0x10EC, 0x8029, 0x020000, interrupt_pin=1)
    fn.add_io_bar(0, 256, lambda o, s: 0, lambda o, s, v: None)
    pc.machine.pci.attach(fn, 5)
    pc.machine.reset()
    assert pc.machine.pci.config_read(5, 0, 0x3C, 1) == 10
    pc.init_pics()
    fn.set_irq(True)
    assert pc.pic.acknowledge() == 0x3A


def test_rerouting_pirq_moves_the_device_interrupt(make_pc):
    pc = make_pc()
    fn = PciFunction("nic", 0x10EC, 0x8029, 0x020000, interrupt_pin=1)
    pc.machine.pci.attach(fn, 5)
    pc.init_pics()
    pc.machine.pci.config_write(1, 0, 0x60, 0x0B, size=1)
    fn.set_irq(True)
    assert pc.machine.irqs[11].level and not pc.machine.irqs[10].level
    assert pc.pic.acknowledge() == 0x3B


def test_linux_piix3_quirk_writes_are_accepted(pc):
    pc.machine.pci.config_write(1, 0, 0x82, 0x02, size=1)
    assert pc.machine.pci.config_read(1, 0, 0x82, 1) == 0x02


def test_reset_restores_default_routes(pc):
    pc.machine.pci.config_write(1, 0, 0x60, 0x05, size=1)
    pc.machine.reset()
    assert pc.machine.pci.config_read(1, 0, 0x60, 1) == 0x0A


def test_state_roundtrip(pc, assert_state_roundtrip):
    pc.machine.pci.config_write(1, 0, 0x61, 0x09, size=1)
    assert_state_roundtrip(pc.machine.devices["piix3"])
    assert pc.machine.pci.route_irq(6, 1) == 9
    assert_state_roundtrip(pc.machine.devices["i440fx"])
