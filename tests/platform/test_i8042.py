"""Minimal i8042: one behaviour per test."""
from __future__ import annotations


def test_status_idle_has_no_output(pc):
    assert not pc.inb(0x64) & 0x01


def test_self_test_answers_0x55_and_sets_sys(pc):
    pc.outb(0x64, 0xAA)
    assert pc.inb(0x64) & 0x05 == 0x05
    assert pc.inb(0x60) == 0x55
    assert not pc.inb(0x64) & 0x01


def test_read_and_write_config_byte(pc):
    pc.outb(0x64, 0x60)
    pc.outb(0x60, 0x65)
    pc.outb(0x64, 0x20)
    assert pc.inb(0x60) == 0x65


def test_interface_tests_pass(pc):
    pc.outb(0x64, 0xAB)
    assert pc.inb(0x60) == 0x00
    pc.outb(0x64, 0xA9)
    assert pc.inb(0x60) == 0x00


def test_disable_aux_sets_config_bit(pc):
    pc.outb(0x64, 0xA7)
    pc.outb(0x64, 0x20)
    assert pc.inb(0x60) & 0x20


def test_aux_loopback_write_sets_auxdata(pc):
    pc.outb(0x64, 0xD3)
    pc.outb(0x60, 0x5A)
    assert pc.inb(0x64) & 0x21 == 0x21
    assert pc.inb(0x60) == 0x5A


def test_keyboard_reset_answers_ack_and_bat(pc):
    pc.outb(0x60, 0xFF)
    assert pc.inb(0x60) == 0xFA
    assert pc.inb(0x60) == 0xAA


def test_keyboard_identify(pc):
    pc.outb(0x60, 0xF2)
    assert [pc.inb(0x60) for _ in range(3)] == [0xFA, 0xAB, 0x83]


def test_keyboard_command_with_argument_acks_twice(pc):
    pc.outb(0x60, 0xED)
    assert pc.inb(0x60) == 0xFA
    pc.outb(0x60, 0x07)
    assert pc.inb(0x60) == 0xFA


def test_keyboard_data_raises_irq1_when_enabled(pc):
    pc.outb(0x64, 0x60)
    pc.outb(0x60, 0x01)
    pc.outb(0x60, 0xF4)
    assert pc.machine.irqs[1].level
    pc.inb(0x60)
    assert not pc.machine.irqs[1].level


def test_pulse_reset_requests_machine_reset(pc):
    reasons = []
    pc.machine.request_reset = reasons.append
    pc.outb(0x64, 0xFE)
    assert reasons == ["guest"]


def test_output_port_write_with_bit0_clear_resets(pc):
    reasons = []
    pc.machine.request_reset = reasons.append
    pc.outb(0x64, 0xD1)
    pc.outb(0x60, 0x02)
    assert reasons == ["guest"]


def test_state_roundtrip(pc, assert_state_roundtrip):
    pc.outb(0x60, 0xF2)
    assert_state_roundtrip(pc.i8042)
    assert pc.inb(0x60) == 0xFA
