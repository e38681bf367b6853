"""The receive side: address filters, the ring, wraparound, BNRY/CURR edges, overflow and back-pressure."""
from __future__ import annotations

import random
import zlib

import pytest

from pyv86.net.frame import multicast_filter, multicast_hash_index
from pyv86.net.port import RxResult

from ne2k_testlib import MAC, OTHER, Regs, frame_to, ring_read

BCAST = b"\xff" * 6



# -- storing a frame -----------------------------------------------------------------------------
def test_short_arp_broadcast_is_padded_to_60(regs, nic):
    regs.start_receiver()
    arp = BCAST + OTHER + b"\x08\x06" + bytes(range(28))
    assert len(arp) == 42
    nic.port.inject(arp)
    (status, nxt, count), data = ring_read(regs, 0x4C)
    assert (status, nxt, count) == (0x21, 0x4D, 64)  # PHY: group address
    assert data == arp + bytes(18)
    assert regs.rd(1, 0x07) == 0x4D
    assert regs.inb(0x07) & 0x01


def test_unicast_status_is_0x01(regs, nic):
    regs.start_receiver()
    nic.port.inject(frame_to(MAC, 100))
    (status, nxt, count), data = ring_read(regs, 0x4C)
    assert (status, count) == (0x01, 104)
    assert data == frame_to(MAC, 100)


@pytest.mark.parametrize("length", [60, 251, 252, 253, 508, 1514, 1518])
def test_next_pointer_matches_linux_expectation(regs, nic, length):
    regs.start_receiver()
    nic.port.inject(frame_to(MAC, length))
    (status, nxt, count), data = ring_read(regs, 0x4C)
    assert count == length + 4
    assert nxt == 0x4C + 1 + (count >> 8)  # lib8390 accepts n or n+1; we give n
    assert data == frame_to(MAC, length)


def test_frame_crossing_pstop_wraps_and_reads_back_exactly(regs, nic):
    regs.start_receiver()
    regs.outb(0x03, 0x7D)  # BNRY
    regs.wr(1, 0x07, 0x7E)  # CURR two pages before PSTOP
    frame = frame_to(MAC, 600)
    assert nic.port.inject(frame) is None
    (status, nxt, count), data = ring_read(regs, 0x7E)
    assert nxt == 0x7E + 1 + (604 >> 8) - (0x80 - 0x4C)  # wrapped: 0x4D
    assert nxt == 0x4D
    assert data == frame
    assert regs.rd(1, 0x07) == 0x4D


def test_header_never_wraps_but_data_can_start_at_the_last_page(regs, nic):
    regs.start_receiver()
    regs.outb(0x03, 0x7E)
    regs.wr(1, 0x07, 0x7F)
    frame = frame_to(MAC, 1000)
    nic.port.inject(frame)
    (_status, nxt, _count), data = ring_read(regs, 0x7F)
    assert data == frame and nxt == 0x4C + 3


# -- address filters -------------------------------------------------------------------------------
def test_broadcast_needs_ab(regs, nic):
    regs.start_receiver(rcr=0x00)
    assert nic.chip.receive(frame_to(BCAST)) == RxResult.FILTERED
    regs.outb(0x0C, 0x04)
    assert nic.chip.receive(frame_to(BCAST)) == RxResult.STORED


def test_unicast_compares_against_par_not_prom(regs, nic):
    regs.start_receiver(par=OTHER)
    assert nic.chip.receive(frame_to(MAC)) == RxResult.FILTERED
    assert nic.chip.receive(frame_to(OTHER)) == RxResult.STORED


def test_foreign_unicast_dropped_without_pro(regs, nic):
    regs.start_receiver(rcr=0x0C)
    assert nic.chip.receive(frame_to(bytes.fromhex("0a0b0c0d0e0f"))) == RxResult.FILTERED


def test_promiscuous_accepts_everything(regs, nic):
    regs.start_receiver(rcr=0x1C)
    regs.wr(1, 0x08, 0)  # even with an empty hash table
    for dst in (bytes.fromhex("0a0b0c0d0e0f"), BCAST, bytes.fromhex("333300000001"), MAC):
        assert nic.chip.receive(frame_to(dst)) == RxResult.STORED


def program_mar(regs: Regs, mar: bytes) -> None:
    for i, b in enumerate(mar):
        regs.wr(1, 0x08 + i, b)


def test_multicast_accepted_only_when_its_hash_bit_is_set(regs, nic):
    group = bytes.fromhex("3333ffaabbcc")  # solicited-node address for ...:aabbcc
    regs.start_receiver(rcr=0x0C)
    program_mar(regs, bytes(8))
    assert nic.chip.receive(frame_to(group)) == RxResult.FILTERED
    program_mar(regs, multicast_filter([group]))
    assert nic.chip.receive(frame_to(group)) == RxResult.STORED
    regs.outb(0x0C, 0x04)  # AM off
    assert nic.chip.receive(frame_to(group)) == RxResult.FILTERED


def test_multicast_with_all_ones_mar_accepts_any_group(regs, nic):
    regs.start_receiver(rcr=0x0C)
    program_mar(regs, b"\xff" * 8)
    rng = random.Random(3)
    for _ in range(20):
        group = bytes([rng.randrange(256) | 1]) + rng.randbytes(5)
        if group == BCAST:
            continue
        assert nic.chip.receive(frame_to(group)) == RxResult.STORED


def reference_crc_be(data: bytes) -> int:
    """The big-endian Ethernet CRC as a bit-serial shift register (MSB first, data LSB first).

    Written independently of pyv86.net.frame (which derives it from zlib) to cross-check it.
    """
    crc = 0xFFFFFFFF
    for byte in data:
        for _ in range(8):
            carry = ((crc >> 31) & 1) ^ (byte & 1)
            crc = (crc << 1) & 0xFFFFFFFF
            byte >>= 1
            if carry:
                crc ^= 0x04C11DB7
    return crc


def test_multicast_hash_matches_an_independent_crc():
    rng = random.Random(7)
    macs = [bytes.fromhex(m) for m in ("333300000001", "01005e000001", "3333ff123456", "ffffffffffff")]
    macs += [rng.randbytes(6) for _ in range(200)]
    for mac in macs:
        assert multicast_hash_index(mac) == reference_crc_be(mac) >> 26


def test_multicast_hash_uses_the_reflected_crc_relationship():
    # the zlib CRC of the address, uninverted and bit-reversed, is the big-endian CRC
    mac = bytes.fromhex("01005e7f0001")
    raw = zlib.crc32(mac) ^ 0xFFFFFFFF
    assert int(f"{raw:032b}"[::-1], 2) == reference_crc_be(mac)


def test_ipv6_nd_multicast_reaches_a_linux_configured_nic(regs, nic):
    """With the groups an IPv6-enabled Linux joins, a neighbour solicitation gets in."""
    groups = [bytes.fromhex("333300000001"), bytes.fromhex("3333ff" + MAC[3:].hex()),
              bytes.fromhex("01005e000001")]
    regs.start_receiver(rcr=0x0C)
    program_mar(regs, multicast_filter(groups))
    ns = bytes.fromhex("3333ff" + MAC[3:].hex()) + OTHER + b"\x86\xdd" + bytes(72)
    assert nic.chip.receive(ns) == RxResult.STORED


def test_monitor_mode_counts_but_does_not_store(regs, nic):
    regs.start_receiver(rcr=0x24)
    assert nic.chip.receive(frame_to(BCAST)) == RxResult.DROPPED
    assert regs.rd(1, 0x07) == 0x4C
    assert regs.inb(0x0F) == 1  # CNTR2
    assert regs.inb(0x0C) & 0x10  # RSR.MPA


# -- lengths -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("length", [0, 5, 13, 1519, 9000, 65535])
def test_impossible_lengths_never_reach_the_ring(regs, nic, length):
    regs.start_receiver(rcr=0x1C)
    nic.port.inject(bytes(length) if length < 6 else frame_to(MAC, length))
    assert regs.rd(1, 0x07) == 0x4C
    assert nic.port.counters.rx_bad_length == 1


def test_vlan_tagged_maximum_frame_is_stored(regs, nic):
    regs.start_receiver()
    frame = MAC + OTHER + b"\x81\x00\x00\x05\x08\x00" + bytes(1500)
    assert len(frame) == 1518
    nic.port.inject(frame)
    assert ring_read(regs, 0x4C)[1] == frame


# -- BNRY/CURR edges ---------------------------------------------------------------------------------
def test_bnry_equal_curr_counts_as_empty(regs, nic):
    regs.start_receiver()
    regs.outb(0x03, 0x4C)
    assert nic.chip.receive(frame_to(MAC)) == RxResult.STORED


def test_bnry_just_before_pstart_is_linux_wrapped_boundary(regs, nic):
    """lib8390 writes BNRY = next-1 without wrapping, so BNRY = PSTART-1 (i.e. PSTOP-1) after a wrap."""
    regs.start_receiver()
    regs.outb(0x03, 0x4B)
    regs.wr(1, 0x07, 0x7C)
    assert nic.chip.receive(frame_to(MAC)) == RxResult.STORED  # page 0x7C
    assert nic.chip.receive(frame_to(MAC)) == RxResult.STORED  # page 0x7D
    assert nic.chip.receive(frame_to(MAC)) == RxResult.NO_ROOM  # would reach 0x7F == BNRY
    assert regs.rd(1, 0x07) == 0x7E


def test_ring_full_never_overwrites_unread_frames(regs, nic):
    regs.start_receiver()
    frames = [frame_to(MAC, 1514, fill=i) for i in range(20)]
    stored = [f for f in frames if nic.chip.receive(f) == RxResult.STORED]
    assert 0 < len(stored) < len(frames)
    page, got = 0x4C, []
    curr = regs.rd(1, 0x07)
    while page != curr:
        (_s, nxt, _c), data = ring_read(regs, page)
        got.append(data)
        page = nxt
    assert got == stored


def test_frame_that_would_make_curr_reach_bnry_is_not_stored(regs, nic):
    regs.start_receiver()
    regs.outb(0x03, 0x4E)  # two free pages; a 400-byte frame needs two
    assert nic.chip.receive(frame_to(MAC, 400)) == RxResult.NO_ROOM
    assert regs.rd(1, 0x07) == 0x4C
    regs.outb(0x03, 0x4F)
    assert nic.chip.receive(frame_to(MAC, 400)) == RxResult.STORED
    assert regs.rd(1, 0x07) == 0x4E


def test_frames_wait_in_the_port_and_arrive_after_bnry_advances(regs, nic):
    regs.start_receiver()
    frames = [frame_to(MAC, 1514, fill=i) for i in range(12)]
    for f in frames:
        nic.port.inject(f)
    assert nic.port.queued > 0
    assert nic.port.counters.rx_queue_drops == 0
    received: list[bytes] = []
    page = 0x4C
    for _ in range(40):
        curr = regs.rd(1, 0x07)
        if page == curr and not nic.port.queued:
            break
        while page != curr:
            (_s, nxt, _c), data = ring_read(regs, page)
            received.append(data)
            page = nxt
        regs.outb(0x03, page - 1 if page > 0x4C else 0x7F)  # BNRY write: the port retries
    assert received == frames
    assert regs.inb(0x0F) == 0  # nothing missed


def test_queue_overflow_counts_missed_frames_with_ovw(regs, nic):
    regs.start_receiver()
    regs.outb(0x0F, 0x3F)
    regs.outb(0x03, 0x4D)  # almost no room
    n = nic.port.queue_frames + 10
    for i in range(n):
        nic.port.inject(frame_to(MAC, 100, fill=i))
    assert nic.port.counters.rx_queue_drops == 10
    assert nic.port.queued == nic.port.queue_frames
    assert regs.inb(0x07) & 0x10  # OVW
    assert regs.inb(0x0C) & 0x10  # RSR.MPA
    assert regs.inb(0x0F) == nic.port.counters.rx_queue_drops  # CNTR2
    assert nic.irq_level


def test_cntr2_msb_raises_cnt(regs, nic):
    regs.start_receiver(rcr=0x24)
    regs.outb(0x0F, 0x20)
    for _ in range(127):
        nic.chip.receive(frame_to(BCAST))
    assert not regs.inb(0x07) & 0x20
    nic.chip.receive(frame_to(BCAST))
    assert regs.inb(0x07) & 0x20 and nic.irq_level


def test_counter_saturates(regs, nic):
    regs.start_receiver(rcr=0x24)
    for _ in range(400):
        nic.chip.receive(frame_to(BCAST))
    assert regs.inb(0x0F) == 0xFF


@pytest.mark.parametrize("pstart, pstop", [(0x80, 0x40), (0x50, 0x50), (0x00, 0x20), (0x40, 0xFF), (0x7F, 0x90)])
def test_nonsense_ring_registers_store_nothing(regs, nic, pstart, pstop):
    regs.start_receiver()
    regs.outb(0x00, 0x21)
    regs.outb(0x01, pstart)
    regs.outb(0x02, pstop)
    regs.outb(0x00, 0x22)
    ram = bytes(nic.chip.state.ram)
    assert nic.chip.receive(frame_to(MAC)) == RxResult.NO_ROOM
    assert bytes(nic.chip.state.ram) == ram


@pytest.mark.parametrize("curr", [0x00, 0x4B, 0x80, 0xFF])
def test_curr_outside_the_ring_stores_nothing(regs, nic, curr):
    regs.start_receiver()
    regs.wr(1, 0x07, curr)
    assert nic.chip.receive(frame_to(MAC)) == RxResult.NO_ROOM


@pytest.mark.parametrize("bnry", [0x00, 0x30, 0x80, 0xFF])
def test_bnry_outside_the_ring_means_empty(regs, nic, bnry):
    regs.start_receiver()
    regs.outb(0x03, bnry)
    assert nic.chip.receive(frame_to(MAC)) == RxResult.STORED


def test_small_ring_at_the_top_of_ram(regs, nic):
    regs.start_receiver(pstart=0x7C, pstop=0x80)
    frames = [frame_to(MAC, 300, fill=i) for i in range(3)]
    page, got = 0x7C, []
    for f in frames:
        nic.port.inject(f)
        while page != regs.rd(1, 0x07):
            (_s, nxt, _c), data = ring_read(regs, page)
            got.append(data)
            page = nxt
        regs.outb(0x03, page - 1 if page > 0x7C else 0x7F)
    assert got == frames
