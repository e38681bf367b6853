"""Ports 0x80 and 0x92."""
from __future__ import annotations


def test_port80_remembers_last_code(pc):
    pc.outb(0x80, 0x12)
    pc.outb(0x80, 0x34)
    dev = pc.machine.devices["port80"]
    assert dev.state.last_code == 0x34 and dev.state.writes == 2


def test_port80_reads_all_ones(pc):
    assert pc.inb(0x80) == 0xFF


def test_port92_a20_latch_reads_back(pc):
    assert pc.inb(0x92) == 0x02
    pc.outb(0x92, 0x00)
    assert pc.inb(0x92) == 0x00


def test_port92_bit0_resets_machine(pc):
    reasons = []
    pc.machine.request_reset = reasons.append
    pc.outb(0x92, 0x03)
    assert reasons == ["guest"]
    assert pc.inb(0x92) == 0x02


def test_guest_reset_through_port92_runs_the_machine_reset(pc):
    pc.outb(0x92, 0x01)
    resets = []
    pc.machine.boot_hooks.append(lambda m: resets.append(1))
    pc.machine.run(max_instructions=1)
    assert resets == [1]


def test_unassigned_platform_ports_read_all_ones(pc):
    for port in (0x2F9, 0x3E9, 0x2E, 0x87, 0x279):
        assert pc.inb(port) == 0xFF
