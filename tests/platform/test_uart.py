"""16550A UART: one behaviour per test."""
from __future__ import annotations

import pytest

from pyv86.platform.chardev import CallbackChardev

BASE = 0x3F8
THR = RBR = BASE
IER, IIR, FCR, LCR, MCR, LSR, MSR, SCR = (BASE + i for i in (1, 2, 2, 3, 4, 5, 6, 7))


@pytest.fixture
def serial(pc):
    out = bytearray()
    backend = CallbackChardev(out.extend)
    pc.uart.connect(backend)
    pc.out = out
    pc.backend = backend
    return pc


def test_thr_write_goes_to_backend(serial):
    serial.outb(THR, ord("A"))
    assert serial.out == b"A"


def test_lsr_idle_is_thre_and_temt(serial):
    assert serial.inb(LSR) == 0x60


def test_ier_upper_bits_read_zero(serial):
    serial.outb(IER, 0xFF)
    assert serial.inb(IER) == 0x0F


def test_iir_without_interrupt_is_one(serial):
    assert serial.inb(IIR) == 0x01


def test_fifo_enable_sets_iir_bits_7_6(serial):
    serial.outb(FCR, 0x01)
    assert serial.inb(IIR) == 0xC1


def test_loopback_msr_follows_mcr(serial):
    serial.outb(MCR, 0x10 | 0x0A)  # LOOP | OUT2 | RTS
    assert serial.inb(MSR) & 0xF0 == 0x90


def test_msr_not_in_loopback_reports_dcd_dsr_cts(serial):
    assert serial.inb(MSR) & 0xF0 == 0xB0


def test_msr_delta_bits_clear_on_read(serial):
    serial.outb(MCR, 0x10)  # loopback: all inputs drop
    first = serial.inb(MSR)
    assert first & 0x0F
    assert serial.inb(MSR) & 0x0F == 0


def test_loopback_transmit_arrives_in_rbr_not_backend(serial):
    serial.outb(MCR, 0x10)
    serial.outb(THR, 0x55)
    assert serial.out == b""
    assert serial.inb(LSR) & 0x01
    assert serial.inb(RBR) == 0x55


def test_scratch_register(serial):
    serial.outb(SCR, 0xA5)
    assert serial.inb(SCR) == 0xA5


def test_dlab_selects_divisor_latches(serial):
    serial.outb(LCR, 0x83)
    serial.outb(BASE, 0x01)
    serial.outb(BASE + 1, 0x02)
    assert serial.inb(BASE) == 0x01 and serial.inb(BASE + 1) == 0x02
    serial.outb(LCR, 0x03)
    assert serial.out == b""
    assert serial.inb(IER) == 0


def test_received_byte_sets_dr_and_is_read(serial):
    serial.uart.receive(b"x")
    assert serial.inb(LSR) & 0x01
    assert serial.inb(RBR) == ord("x")
    assert not serial.inb(LSR) & 0x01


def test_input_beyond_fifo_waits_in_backlog(serial):
    serial.outb(FCR, 0x01)
    data = bytes(range(40))
    serial.uart.receive(data)
    got = bytes(serial.inb(RBR) for _ in range(40))
    assert got == data


def test_thre_interrupt_immediately_on_ier_write(serial):
    serial.outb(MCR, 0x08)  # OUT2
    serial.outb(IER, 0x02)
    assert serial.inb(IIR) & 0x0F == 0x02
    assert serial.machine.irqs[4].level is False  # reading IIR cleared it


def test_thre_rearms_on_ier_rewrite(serial):
    serial.outb(IER, 0x02)
    serial.inb(IIR)
    serial.outb(IER, 0x00)
    serial.outb(IER, 0x02)
    assert serial.inb(IIR) & 0x0F == 0x02


def test_thre_pending_after_transmit(serial):
    serial.outb(IER, 0x02)
    serial.inb(IIR)
    serial.outb(THR, 0x41)
    assert serial.inb(IIR) & 0x0F == 0x02


def test_irq4_raised_only_with_out2(serial):
    serial.outb(IER, 0x01)
    serial.uart.receive(b"a")
    assert not serial.machine.irqs[4].level
    serial.outb(MCR, 0x08)
    assert serial.machine.irqs[4].level


def test_rx_interrupt_has_priority_over_thre(serial):
    serial.outb(IER, 0x03)
    serial.uart.receive(b"a")
    assert serial.inb(IIR) & 0x0F == 0x04


def test_line_status_interrupt_highest_priority(serial):
    serial.outb(IER, 0x07)
    serial.outb(MCR, 0x10)  # loopback, no FIFO: a second byte overruns
    serial.outb(THR, 1)
    serial.outb(THR, 2)
    assert serial.inb(IIR) & 0x0F == 0x06
    assert serial.inb(LSR) & 0x02
    assert not serial.inb(LSR) & 0x02  # LSR read clears OE


def test_fifo_trigger_level(serial):
    serial.outb(FCR, 0x81)  # trigger 8
    serial.outb(IER, 0x01)
    serial.uart.receive(b"1234567")
    assert serial.inb(IIR) & 0x0F == 0x01
    serial.uart.receive(b"8")
    assert serial.inb(IIR) & 0x0F == 0x04


def test_rx_timeout_interrupt_below_trigger(serial):
    serial.outb(FCR, 0xC1)  # trigger 14
    serial.outb(IER, 0x01)
    serial.uart.receive(b"ab")
    assert serial.inb(IIR) & 0x0F == 0x01
    serial.machine.run(until_ns=serial.machine.clock.now + 1_000_000)
    assert serial.inb(IIR) & 0x0F == 0x0C


def test_fcr_clear_rx_fifo(serial):
    serial.outb(FCR, 0x01)
    serial.uart.receive(b"abc")
    serial.outb(FCR, 0x03)
    assert not serial.inb(LSR) & 0x01


def test_modem_status_interrupt(serial):
    serial.outb(IER, 0x08)
    serial.outb(MCR, 0x10)
    assert serial.inb(IIR) & 0x0F == 0x00
    serial.inb(MSR)
    assert serial.inb(IIR) & 0x0F == 0x01


def test_irq4_reaches_pic(serial):
    serial.init_pics()
    serial.outb(MCR, 0x08)
    serial.outb(IER, 0x01)
    serial.uart.receive(b"z")
    assert serial.pic.acknowledge() == 0x34


def test_backend_input_arrives_through_machine_thread(serial):
    serial.backend.feed(b"hi")
    assert not serial.inb(LSR) & 0x01  # not yet: queued for the machine thread
    serial.machine.run(max_instructions=1)
    assert serial.inb(RBR) == ord("h")


def test_output_tap_sees_transmitted_bytes(serial):
    seen = bytearray()
    serial.uart.add_output_tap(seen.extend)
    serial.outb(THR, ord("Q"))
    assert seen == b"Q"


def test_state_roundtrip(serial, assert_state_roundtrip):
    serial.outb(FCR, 0x01)
    serial.outb(IER, 0x05)
    serial.uart.receive(b"xy")
    assert_state_roundtrip(serial.uart)
    assert serial.inb(RBR) == ord("x")


def test_config_rejects_non_loopback_tcp():
    from pyv86.platform.uart import UartConfig

    with pytest.raises(ValueError, match="loopback"):
        UartConfig(chardev="tcp:10.0.0.1:4000")
