"""DP8390 registers one behaviour at a time, through the I/O ports (reference §7, tests 2-12, 17, 18)."""
from __future__ import annotations

import pytest

from ne2k_testlib import MAC, OTHER, Regs, frame_to, transmit, upload


# -- power-up, probe-time behaviour ---------------------------------------------------------
def test_power_up_cr_is_not_all_ones(regs):
    assert regs.inb(0x00) == 0x21


def test_power_up_isr_has_rst_and_irq_is_low(regs, nic):
    assert regs.inb(0x07) == 0x80
    assert not nic.irq_level


def test_counters_clear_on_read_probe_sequence(regs, nic):
    regs.outb(0x00, 0x61)
    regs.inb(0x0D)
    regs.outb(0x0D, 0xFF)
    regs.outb(0x00, 0x20)
    nic.chip.state.cntr0 = 5  # as if frames with alignment errors had been counted
    assert regs.inb(0x0D) == 5
    assert regs.inb(0x0D) == 0


@pytest.mark.parametrize("reg, field", [(0x0D, "cntr0"), (0x0E, "cntr1"), (0x0F, "cntr2")])
def test_each_counter_clears_on_read(regs, nic, reg, field):
    setattr(nic.chip.state, field, 0x42)
    assert regs.inb(reg) == 0x42
    assert regs.inb(reg) == 0


def test_cr_0x20_keeps_a_stopped_nic_stopped(regs, nic):
    regs.outb(0x00, 0x61)
    regs.outb(0x00, 0x20)
    assert regs.inb(0x00) & 0x03 == 0x01


def test_reset_port_read_sets_rst_within_the_access(regs, nic):
    regs.start_receiver()
    regs.outb(0x0F, 0x3F)
    assert not regs.inb(0x07) & 0x80
    regs.inb(0x1F)
    assert regs.inb(0x07) == 0x80
    assert regs.inb(0x00) & 0x03 == 0x01  # stopped
    assert regs.rd(2, 0x0F) == 0  # IMR cleared
    assert not nic.irq_level


def test_reset_port_write_is_a_noop(regs):
    regs.start_receiver()
    regs.outb(0x1F, 0x00)
    assert regs.inb(0x00) & 0x03 == 0x02


def test_isr_write_cannot_clear_rst_but_start_does(regs):
    regs.inb(0x1F)
    regs.outb(0x07, 0xFF)
    assert regs.inb(0x07) & 0x80
    regs.outb(0x00, 0x22)
    assert not regs.inb(0x07) & 0x80


def test_stop_command_sets_rst(regs):
    regs.start_receiver()
    regs.outb(0x00, 0x21)
    assert regs.inb(0x07) & 0x80


def test_reset_pulse_keeps_ring_pointers_par_mar_and_prom(regs, nic):
    regs.start_receiver(par=OTHER)
    regs.wr(1, 0x08, 0x5A)
    regs.inb(0x1F)
    assert regs.rd(2, 0x01) == 0x4C and regs.rd(2, 0x02) == 0x80
    assert regs.rd(1, 0x07) == 0x4C
    assert bytes(regs.rd(1, 1 + i) for i in range(6)) == OTHER
    assert regs.rd(1, 0x08) == 0x5A
    assert nic.chip.state.prom_mac == MAC


# -- PROM ----------------------------------------------------------------------------------
def linux_prom_sequence(regs: Regs, dcr: int) -> bytes:
    for reg, value in ((0x00, 0x21), (0x0E, dcr), (0x0A, 0), (0x0B, 0), (0x0F, 0), (0x07, 0xFF),
                       (0x0C, 0x20), (0x0D, 0x02), (0x0A, 32), (0x0B, 0), (0x08, 0), (0x09, 0),
                       (0x00, 0x0A)):
        regs.outb(reg, value)
    return bytes(regs.inb(0x10) for _ in range(32))


def test_prom_read_in_word_mode_gives_the_mac_and_signature(regs):
    prom = linux_prom_sequence(regs, 0x49)
    assert prom[:6] == MAC
    assert prom[6:14] == bytes(8)
    assert prom[14:16] == b"\x57\x57"
    assert prom[16:] == bytes(16)
    assert regs.inb(0x07) & 0x40  # RDC
    assert regs.inb(0x0A) == 0x50  # ID, not RBCR (page 0 reads)
    assert regs.nic.chip.state.rbcr == 0  # saturated, never negative


def test_prom_read_in_byte_mode_shows_the_doubled_layout(regs):
    prom = linux_prom_sequence(regs, 0x48)
    assert prom[:12] == bytes(b for m in MAC for b in (m, m))
    assert prom[28:32] == b"\x57" * 4
    assert prom[12:28] == bytes(16)


def test_prom_is_read_only(regs):
    regs.outb(0x0E, 0x48)
    regs.write_mem(0x0000, b"\x11\x22\x33\x44")
    assert regs.read_mem(0x0000, 4) == bytes((MAC[0], MAC[0], MAC[1], MAC[1]))


def test_memory_outside_prom_and_ram_reads_zero_and_ignores_writes(regs):
    regs.outb(0x0E, 0x48)
    regs.write_mem(0x2000, b"\x99" * 4)
    assert regs.read_mem(0x2000, 4) == bytes(4)
    regs.write_mem(0x9000, b"\x99" * 4)
    assert regs.read_mem(0x9000, 4) == bytes(4)


# -- pages 1, 2, 3 ----------------------------------------------------------------------------
def test_page1_par_curr_mar_read_back(regs):
    regs.outb(0x00, 0x61)
    values = {off: 0x10 + off for off in range(1, 16)}
    for off, value in values.items():
        regs.outb(off, value)
    assert {off: regs.inb(off) for off in range(1, 16)} == values
    assert regs.inb(0x00) == 0x61


def test_page2_reads_back_page0_settings(regs):
    regs.outb(0x00, 0x21)
    for reg, value in ((0x01, 0x46), (0x02, 0x7A), (0x03, 0x55), (0x04, 0x41), (0x0C, 0x0C),
                       (0x0D, 0x02), (0x0E, 0x49), (0x0F, 0x1F)):
        regs.outb(reg, value)
    regs.outb(0x00, 0xA1)
    assert [regs.inb(r) for r in (0x01, 0x02, 0x03, 0x04, 0x0C, 0x0D, 0x0E, 0x0F)] == \
        [0x46, 0x7A, 0x55, 0x41, 0x0C, 0x02, 0x49, 0x1F]


def test_page2_writes_change_nothing(regs):
    regs.outb(0x00, 0x21)
    regs.outb(0x01, 0x4C)
    regs.outb(0x00, 0xA1)
    regs.outb(0x01, 0x60)
    assert regs.inb(0x01) == 0x4C


def test_page0_id_bytes(regs):
    assert (regs.inb(0x0A), regs.inb(0x0B)) == (0x50, 0x43)


def test_page0_ncr_and_fifo_read_zero(regs):
    assert regs.inb(0x05) == 0 and regs.inb(0x06) == 0


def test_page3_config_registers_and_fdx_sequence(regs):
    regs.outb(0x00, 0xE1)
    assert regs.inb(0x05) == 0x40  # CONFIG2
    regs.outb(0x06, 0x00)  # locked: ignored
    assert regs.inb(0x06) == 0x40
    regs.outb(0x01, 0xC0)  # set_realtek_fdx: unlock, write CONFIG3, lock
    regs.outb(0x06, 0x40 | 0x02)
    regs.outb(0x01, 0x00)
    assert regs.inb(0x06) == 0x42
    assert regs.inb(0x01) == 0x00
    regs.outb(0x00, 0x21)
    assert regs.inb(0x0A) == 0x50


def test_rcr_tcr_dcr_imr_reserved_bits_are_masked(regs):
    regs.outb(0x0C, 0xFF)
    regs.outb(0x0D, 0xFF)
    regs.outb(0x0E, 0xFF)
    regs.outb(0x0F, 0xFF)
    assert [regs.rd(2, r) for r in (0x0C, 0x0D, 0x0E, 0x0F)] == [0x3F, 0x1F, 0x7F, 0x7F]


def test_tsr_rsr_and_clda_crda_registers(regs, nic):
    regs.start_receiver()
    nic.port.inject(frame_to(MAC, 100))
    assert regs.inb(0x0C) == 0x01  # RSR: received intact, unicast
    clda = regs.inb(0x01) | regs.inb(0x02) << 8
    assert clda == (0x4C << 8) + 4 + 100
    regs.remote(0x4C00, 4, 0x0A)
    regs.inl(0x10)
    assert regs.inb(0x08) | regs.inb(0x09) << 8 == 0x4C04  # CRDA: the running address


def test_multibyte_register_access_splits_into_bytes(regs):
    assert regs.inw(0x0A) == 0x4350
    regs.outw(0x01, 0x7A46)  # PSTART, PSTOP
    assert regs.rd(2, 0x01) == 0x46 and regs.rd(2, 0x02) == 0x7A


# -- remote DMA --------------------------------------------------------------------------------
def test_remote_write_then_read_roundtrip_with_dword_and_word(regs):
    regs.outb(0x0E, 0x49)
    regs.remote(0x4000, 6, 0x12)
    regs.outl(0x10, 0x44332211)
    regs.outw(0x10, 0x6655)
    assert regs.inb(0x07) & 0x40
    regs.outb(0x07, 0x40)
    regs.remote(0x4000, 6, 0x0A)
    assert regs.inl(0x10) == 0x44332211
    assert regs.inw(0x10) == 0x6655
    assert regs.inb(0x07) & 0x40


def test_word_mode_odd_count_rdc_fires_once(regs, nic):
    regs.outb(0x0E, 0x49)
    regs.remote(0x4100, 6, 0x12)
    regs.outl(0x10, 0x04030201)
    regs.outw(0x10, 0x0605)
    regs.outb(0x07, 0x40)
    regs.remote(0x4100, 5, 0x0A)
    assert regs.inl(0x10) == 0x04030201
    assert not regs.inb(0x07) & 0x40
    assert regs.inb(0x10) == 0x05  # the tail byte: a word moves, the low byte returns
    assert regs.inb(0x07) & 0x40
    assert nic.chip.state.rbcr == 0
    regs.outb(0x07, 0x40)
    regs.inw(0x10)  # reading past the count: no second RDC, RBCR stays 0
    assert not regs.inb(0x07) & 0x40
    assert nic.chip.state.rbcr == 0


def test_byte_mode_moves_one_byte_per_inb(regs):
    regs.outb(0x0E, 0x48)
    regs.write_mem(0x4200, bytes(range(1, 8)))
    regs.remote(0x4200, 7, 0x0A)
    assert [regs.inb(0x10) for _ in range(7)] == list(range(1, 8))
    assert regs.inb(0x07) & 0x40


def test_word_mode_aligns_odd_addresses_down(regs):
    regs.outb(0x0E, 0x48)
    regs.write_mem(0x4300, b"\xaa\xbb\xcc\xdd")
    regs.outb(0x0E, 0x49)
    regs.remote(0x4301, 2, 0x0A)
    assert regs.inw(0x10) == 0xBBAA


def test_word_mode_byte_write_fills_the_low_lane_and_moves_a_word(regs):
    regs.outb(0x0E, 0x48)
    regs.write_mem(0x4400, b"\x11\x22\x33\x44")
    regs.outb(0x0E, 0x49)
    regs.remote(0x4400, 4, 0x12)
    regs.outb(0x10, 0x99)
    regs.outb(0x10, 0x88)
    assert regs.read_mem(0x4400, 4) == b"\x99\x22\x88\x44"


def test_writes_after_count_exhausted_are_ignored(regs, nic):
    regs.outb(0x0E, 0x48)
    regs.write_mem(0x4500, b"\x00\x00\x00\x00")
    regs.remote(0x4500, 2, 0x12)
    for b in b"\x01\x02\x03\x04":
        regs.outb(0x10, b)
    assert regs.read_mem(0x4500, 4) == b"\x01\x02\x00\x00"
    assert nic.chip.stats.dma_writes_ignored == 2


def test_remote_read_wraps_from_pstop_to_pstart(regs):
    regs.start_receiver(pstart=0x4C, pstop=0x80)
    regs.outb(0x0E, 0x48)
    regs.write_mem(0x7FFE, b"\xe1\xe2")
    regs.write_mem(0x4C00, b"\xf1\xf2")
    regs.remote(0x7FFE, 4, 0x0A)
    assert bytes(regs.inb(0x10) for _ in range(4)) == b"\xe1\xe2\xf1\xf2"


def test_remote_write_wraps_from_pstop_to_pstart(regs):
    regs.start_receiver(pstart=0x50, pstop=0x60)
    regs.outb(0x0E, 0x49)
    regs.remote(0x5FFC, 8, 0x12)
    regs.outl(0x10, 0x44434241)
    regs.outl(0x10, 0x48474645)
    assert regs.read_mem(0x5FFC, 4) == b"ABCD"
    assert regs.read_mem(0x5000, 4) == b"EFGH"


def test_string_io_matches_single_accesses(regs, machine):
    regs.outb(0x0E, 0x49)
    data = bytes(range(256)) * 4
    regs.remote(0x4000, len(data), 0x12)
    machine.port_write_string(regs.base + 0x10, 4, data)
    assert regs.inb(0x07) & 0x40
    regs.outb(0x07, 0x40)
    regs.remote(0x4000, len(data), 0x0A)
    assert machine.port_read_string(regs.base + 0x10, 4, len(data) // 4) == data
    assert regs.inb(0x07) & 0x40
    regs.remote(0x4000, 8, 0x0A)
    assert machine.port_read_string(regs.base + 0x10, 1, 4) == bytes((0, 2, 4, 6))  # word-mode inb


def test_string_write_running_past_rbcr_stops_at_the_count(regs, machine):
    regs.outb(0x0E, 0x48)
    regs.write_mem(0x4600, bytes(8))
    regs.outb(0x0E, 0x49)
    regs.remote(0x4600, 4, 0x12)
    machine.port_write_string(regs.base + 0x10, 2, b"\x01\x02\x03\x04\x05\x06\x07\x08")
    assert regs.read_mem(0x4600, 8) == b"\x01\x02\x03\x04" + bytes(4)


def test_remote_command_with_zero_count_completes_at_once(regs):
    regs.outb(0x07, 0x40)
    regs.remote(0x4000, 0, 0x0A)
    assert regs.inb(0x07) & 0x40


def test_send_packet_command_sets_up_a_read_of_the_packet_at_bnry(regs, nic):
    regs.start_receiver()
    frame = frame_to(MAC, 80)
    regs.outb(0x03, 0x4C)  # BNRY at the first frame (drivers that use "send packet")
    regs.wr(1, 0x07, 0x4C)
    nic.port.inject(frame)
    regs.outb(0x0E, 0x48)
    regs.outb(0x00, 0x1A)
    assert nic.chip.state.rbcr == 84 and nic.chip.state.rsar == 0x4C00
    data = bytes(regs.inb(0x10) for _ in range(84))
    assert data[4:] == frame
    assert regs.inb(0x07) & 0x40


# -- transmit -----------------------------------------------------------------------------------

def test_transmit_sends_exactly_tbcr_bytes(regs, wire):
    frame = frame_to(OTHER, 60, src=MAC)
    regs.start_receiver()
    upload(regs, frame)
    transmit(regs, 60)
    assert wire.take() == [frame]
    assert regs.inb(0x07) & 0x02
    assert regs.inb(0x04) == 0x01  # TSR.PTX
    assert not regs.inb(0x00) & 0x04  # TXP cleared


def test_transmit_from_second_slot_with_odd_length(regs, wire):
    frame = frame_to(OTHER, 1001, src=MAC)
    regs.start_receiver()
    upload(regs, frame, page=0x46)
    transmit(regs, 1001, page=0x46)
    assert wire.take() == [frame]


def test_transmit_while_stopped_does_nothing(regs, wire):
    upload(regs, frame_to(OTHER, 60))
    regs.outb(0x00, 0x21)
    regs.outb(0x05, 60)
    regs.outb(0x04, 0x40)
    regs.outb(0x00, 0x25)
    assert wire.take() == []
    assert not regs.inb(0x07) & 0x02


@pytest.mark.parametrize("length, page", [(0, 0x40), (1519, 0x40), (60, 0x20), (300, 0x7F)])
def test_impossible_transmit_aborts_with_txe(regs, wire, length, page):
    regs.start_receiver()
    transmit(regs, length, page)
    assert wire.take() == []
    assert regs.inb(0x07) & 0x08
    assert regs.inb(0x04) & 0x08  # TSR.ABT


def test_internal_loopback_does_not_reach_the_wire(regs, wire, nic):
    frame = frame_to(MAC, 60, src=MAC)
    regs.start_receiver()
    regs.outb(0x0D, 0x02)
    upload(regs, frame)
    transmit(regs, 60)
    assert wire.take() == []
    assert regs.inb(0x07) & 0x03 == 0x03  # sent, and received by ourselves
    assert nic.chip.stats.tx_loopback == 1


# -- interrupt line -------------------------------------------------------------------------------
def test_level_irq_follows_isr_and_imr(regs, nic):
    regs.start_receiver()
    regs.outb(0x0F, 0x00)
    upload(regs, frame_to(OTHER, 60, src=MAC))
    regs.outb(0x07, 0xFF)
    transmit(regs, 60)
    assert not nic.irq_level  # IMR = 0
    regs.outb(0x0F, 0x3F)
    assert nic.irq_level  # the pending PTX fires when unmasked
    regs.outb(0x07, 0x02)
    assert not nic.irq_level


def test_rst_never_interrupts(regs, nic):
    regs.inb(0x1F)
    regs.outb(0x0F, 0xFF)
    assert regs.inb(0x07) == 0x80
    assert not nic.irq_level


def test_irq_stays_high_while_any_enabled_bit_is_pending(regs, nic):
    regs.start_receiver()
    regs.outb(0x0F, 0x3F)
    nic.port.inject(frame_to(MAC))
    upload(regs, frame_to(OTHER, 60, src=MAC))
    transmit(regs, 60)
    regs.outb(0x03, 0x4C)  # frame consumed
    regs.outb(0x07, 0x01)
    assert nic.irq_level  # PTX still pending
    regs.outb(0x07, 0x02)
    assert not nic.irq_level


# -- start/stop ------------------------------------------------------------------------------------
def test_stopped_nic_stores_nothing_and_restart_keeps_pointers(regs, nic):
    regs.start_receiver()
    nic.port.inject(frame_to(MAC))
    curr = regs.rd(1, 0x07)
    regs.outb(0x00, 0x21)
    nic.port.inject(frame_to(MAC))
    assert regs.rd(1, 0x07) == curr
    regs.outb(0x00, 0x22)
    assert (regs.rd(2, 0x01), regs.rd(2, 0x02), regs.inb(0x03), regs.rd(1, 0x07)) == (0x4C, 0x80, 0x7F, curr)
    nic.port.inject(frame_to(MAC))
    assert regs.rd(1, 0x07) == curr + 1


@pytest.mark.parametrize("cr", [0x20, 0x60])
def test_commands_without_sta_or_stp_keep_the_nic_running(regs, nic, cr):
    regs.start_receiver()
    regs.outb(0x00, cr)
    nic.port.inject(frame_to(MAC))
    assert regs.rd(1, 0x07) == 0x4D


# -- machine reset ----------------------------------------------------------------------------------
def test_machine_reset_returns_to_power_on_state(machine, regs, nic):
    regs.start_receiver(par=OTHER)
    regs.outb(0x0F, 0x3F)
    nic.port.inject(frame_to(OTHER))
    assert nic.irq_level
    machine.reset("guest")
    assert regs.inb(0x00) == 0x21
    assert regs.inb(0x07) == 0x80
    assert regs.rd(2, 0x0F) == 0
    assert not nic.irq_level
    line = machine.pci.config_read(5, 0, 0x3C, 1)
    assert not machine.irqs[line].level
    assert linux_prom_sequence(regs, 0x49)[:6] == MAC
    assert bytes(regs.rd(1, 1 + i) for i in range(6)) == MAC  # PAR reloaded from the PROM


def test_machine_reset_forgets_frames_waiting_for_room(machine, regs, nic):
    regs.start_receiver()
    regs.outb(0x03, 0x4D)  # ring nearly full: BNRY right after CURR
    for _ in range(3):
        nic.port.inject(frame_to(MAC))
    assert nic.port.queued > 0
    machine.reset("guest")
    assert nic.port.queued == 0


def test_prx_stays_asserted_while_unread_frames_remain(regs, nic):
    """lib8390 acks PRX after at most 9 frames; the rest must not wait for the next arrival."""
    regs.start_receiver()
    regs.outb(0x0F, 0x3F)
    for _ in range(3):
        nic.port.inject(frame_to(MAC))
    regs.outb(0x03, 0x4C)  # read one of three
    regs.outb(0x07, 0x01)
    assert regs.inb(0x07) & 0x01 and nic.irq_level
    regs.outb(0x03, 0x4E)  # read the rest (Linux convention: BNRY + 1 == CURR)
    regs.outb(0x07, 0x01)
    assert not regs.inb(0x07) & 0x01 and not nic.irq_level


def test_prx_ack_with_bnry_equal_curr_convention_clears(regs, nic):
    regs.start_receiver()
    regs.outb(0x03, 0x4C)
    regs.wr(1, 0x07, 0x4C)
    nic.port.inject(frame_to(MAC))
    regs.outb(0x03, 0x4D)  # BNRY = next frame to read == CURR: empty
    regs.outb(0x07, 0x01)
    assert not regs.inb(0x07) & 0x01
