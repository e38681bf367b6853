"""The pc platform: registration through the public hooks, automatic assembly, state."""
from __future__ import annotations

from pyv86.platform.pc import PC_DEVICES, add_pc_platform

PC_KINDS = {"i8259", "i8254", "mc146818", "uart16550", "i8042", "port80", "port92", "i440fx", "piix3"}


def test_platform_devices_registered_by_builtin_plugin(pyv86_plugins):
    pyv86_plugins.collect()
    assert PC_KINDS <= set(pyv86_plugins.devices.kinds())
    assert {pyv86_plugins.devices.provider(k) for k in PC_KINDS} == {"pyv86.platform"}


def test_machine_without_cpu_gets_no_platform(make_machine):
    machine = make_machine("")
    assert "pic" not in machine.devices


def test_add_pc_platform_adds_every_chip(make_machine):
    machine = make_machine("")
    added = add_pc_platform(machine)
    assert [d.id for d in added] == [name for name, _ in PC_DEVICES]
    assert machine.interrupt_controller is machine.devices["pic"]


def test_machine_file_device_of_a_platform_kind_is_kept(make_machine):
    machine = make_machine('[device.clock]\ntype = "mc146818"\ntime = "2020-01-01T00:00:00"\n')
    add_pc_platform(machine)
    rtcs = [d for d in machine.devices.values() if d.kind == "mc146818"]
    assert [d.id for d in rtcs] == ["clock"]


def test_platform_id_clash_gets_a_suffix(make_machine):
    machine = make_machine('[device.pic]\ntype = "port80"\n')
    add_pc_platform(machine)
    assert machine.devices["pic"].kind == "port80"
    assert machine.devices["pic-1"].kind == "i8259"
    assert "port80" not in machine.devices  # the file's port80 device is kept


def test_every_platform_device_state_roundtrips(pc, assert_state_roundtrip):
    pc.init_pics()
    for device in pc.machine.devices.values():
        assert_state_roundtrip(device)


def test_uart_tcp_chardev_from_machine_file(make_machine):
    machine = make_machine('[device.com2]\ntype = "uart16550"\niobase = 0x2F8\nirq = 3\n'
                           'chardev = "tcp:127.0.0.1:0"\n')
    uart = machine.devices["com2"]
    assert uart.backend is not None and uart.backend.port > 0
