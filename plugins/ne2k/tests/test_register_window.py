"""The registers the CPU serves without calling the chip (``Dp8390.window``): for each one,
what the chip's own handler does must be exactly "return the stored byte" or "store the
byte", in any state, with no interrupt change, no transmit and no receive side effect.
And the window follows BAR0 wherever the guest maps it."""
from __future__ import annotations

import ctypes
import random
from collections import Counter

import pytest

from ne2k_testlib import MAC, Regs
from pyv86_ne2k.dp8390 import (CR, CR_PAGE_ONLY, CR_STARTED, DATA_PORT, ISR, RAM_START, WINDOW_READS,
                               WINDOW_WRITES, Dp8390, LiveRegisters)

WORDS = {"tbcr", "rsar", "rbcr", "clda"}


class Chip:
    """A chip in a random state, recording every side effect it has."""

    def __init__(self, rng: random.Random) -> None:
        self.events: list[object] = []
        self.chip = Dp8390("t", MAC, set_irq=lambda level: self.events.append(("irq", level)),
                           transmit=lambda frame: self.events.append(("tx", frame)),
                           rx_space=lambda: self.events.append("rx_space"),
                           rx_flush=lambda: self.events.append("rx_flush"))
        s = self.chip.state
        for name, _ctype in LiveRegisters._fields_:
            setattr(s, name, rng.getrandbits(16 if name in WORDS else 8))
        s.pstart, s.pstop = sorted(rng.sample(range(0x40, 0x81), 2))
        s.cr = rng.getrandbits(8) & ~CR.TXP     # TXP is never stored
        if s.cr & CR.STP:      # the chip's invariant: RST reads 1 exactly while stopped
            s.isr |= ISR.RST
        else:
            s.isr &= ~ISR.RST
        s.ram[:] = rng.randbytes(len(s.ram))
        self.chip._update_irq(force=True)
        self.events.clear()

    def block(self) -> bytes:
        s = self.chip.state
        return ctypes.string_at(ctypes.addressof(s), ctypes.sizeof(s))

    def others(self) -> tuple[bytes, ...]:
        s = self.chip.state
        return (s.par, s.mar, s.prom_mac, s.wire_mac, bytes(s.ram), self.chip.irq_level)

    def select(self, page: int) -> None:
        s = self.chip.state
        s.cr = s.cr & 0x3F | page << 6


@pytest.mark.parametrize("seed", range(40))
def test_every_served_read_is_the_stored_byte_and_changes_nothing(seed):
    rng = random.Random(seed)
    for (page, offset), byte in WINDOW_READS.items():
        c = Chip(rng)
        c.select(page)
        block, others = c.block(), c.others()
        assert c.chip.io_read(offset, 1) == block[byte], (page, offset)
        assert (c.block(), c.others(), c.events) == (block, others, []), (page, offset)


@pytest.mark.parametrize("seed", range(40))
def test_every_served_write_stores_what_the_cpu_would_and_does_nothing_else(seed):
    rng = random.Random(seed)
    served = Counter()
    for (page, offset), byte in WINDOW_WRITES.items():
        for _ in range(8):
            c = Chip(rng)
            c.select(page)
            value = rng.getrandbits(8)
            if offset == 0 and rng.random() < 0.7:   # mostly inside CR's rule: started, page only
                (new_mask, new_value), (old_mask, old_value) = CR_PAGE_ONLY, CR_STARTED
                c.chip.state.cr = c.chip.state.cr & ~old_mask | old_value
                c.chip.state.isr &= ~ISR.RST     # started: RST is clear
                value = value & ~new_mask | new_value
            if offset == 0x07 and rng.random() < 0.5:   # mostly acknowledgements without PRX/OVW
                value &= ~(ISR.PRX | ISR.OVW)
            stored = c.chip.window.served_write(c.block(), byte, value)
            if stored is None:
                continue   # the CPU leaves this one to the chip
            served[page, offset] += 1
            block, others = bytearray(c.block()), c.others()
            block[byte] = stored
            c.chip.io_write(offset, 1, value)
            assert (c.block(), c.others(), c.events) == (bytes(block), others, []), (page, offset, value)
    assert set(served) == set(WINDOW_WRITES)   # every listed write was served in some state


@pytest.mark.parametrize("seed", range(30))
def test_every_data_transfer_the_cpu_serves_is_what_the_chip_does(seed):
    rng = random.Random(seed)
    served = Counter()
    for _ in range(40):
        c = Chip(rng)
        s, window = c.chip.state, c.chip.window
        size, units, write = rng.choice([1, 2, 4]), rng.choice([1, 3, 16, 378]), rng.random() < 0.5
        n = size * units
        if rng.random() < 0.8:   # mostly inside the rule: in RAM below PSTOP, within RBCR
            s.pstop = rng.randrange(0x50, 0x81)
            s.rsar = rng.randrange(RAM_START, max(RAM_START + 1, (s.pstop << 8) - n))
            s.rbcr = rng.choice([n, n + rng.randrange(1, 600)])
            s.dcr &= ~1 if size == 1 and rng.random() < 0.7 else 0xFF
        predicted = bytearray(c.block())
        where = window.data_port.served_transfer(predicted, window.interrupt, size, units)
        if where is None:
            continue
        served[size, units > 1, write] += 1
        ram = bytearray(s.ram)
        if write:
            data = rng.randbytes(n)
            if units == 1:
                c.chip.io_write(DATA_PORT, size, int.from_bytes(data, "little"))
            else:
                c.chip.io_write_string(DATA_PORT, size, data)
            ram[where:where + n] = data
        else:
            got = (c.chip.io_read(DATA_PORT, size).to_bytes(size, "little") if units == 1
                   else c.chip.io_read_string(DATA_PORT, size, units))
            assert got == ram[where:where + n]
        assert c.block() == bytes(predicted) and bytes(s.ram) == bytes(ram) and c.events == [], (size, units)
    assert len(served) >= 6, served


def test_remote_dma_commands_are_served_only_while_rbcr_is_not_zero():
    c = Chip(random.Random(5))
    s, window = c.chip.state, c.chip.window
    cr = WINDOW_WRITES[0, 0x00]
    for value in (0x0A, 0x12, 0x08, 0x50, 0x8A):   # remote read / write, any page, STA or not
        s.cr, s.isr, s.rbcr = 0x22, s.isr & ~ISR.RST, 0x5EA
        stored = window.served_write(c.block(), cr, value)
        assert stored == value | CR.STA, hex(value)
        block, others = bytearray(c.block()), c.others()
        block[cr] = stored
        c.chip.io_write(0, 1, value)
        assert (c.block(), c.others(), c.events) == (bytes(block), others, []), hex(value)
        s.cr, s.rbcr = 0x22, 0
        assert window.served_write(c.block(), cr, value) is None   # the chip sets RDC at once
    s.cr, s.rbcr = 0x22, 0x10
    assert window.served_write(c.block(), cr, 0x1A) is None        # send packet: reads the header
    assert window.served_write(c.block(), cr, 0x0E) is None        # with TXP


def test_the_window_leaves_side_effects_to_the_chip():
    served = set(WINDOW_READS) | set(WINDOW_WRITES)
    # counters clear on read, BNRY/CURR writes take frames in, RCR/TCR/DCR writes are masked
    for page, offset in [(0, 0x0D), (0, 0x0E), (0, 0x0F)]:
        assert (page, offset) not in WINDOW_READS
    for page, offset in [(0, 0x03), (1, 0x07), (0, 0x0C), (0, 0x0D), (0, 0x0E)]:
        assert (page, offset) not in WINDOW_WRITES
    assert all(offset < 0x10 for _page, offset in served)    # never the data or reset port


def test_isr_and_imr_writes_are_served_only_while_the_interrupt_stays_put():
    c = Chip(random.Random(1))
    s, window = c.chip.state, c.chip.window
    isr, imr = WINDOW_WRITES[0, 0x07], WINDOW_WRITES[0, 0x0F]
    s.cr, s.isr, s.imr = 0x22, ISR.PTX | ISR.RDC, 0x3F            # interrupt asserted (PTX)
    assert window.served_write(c.block(), isr, ISR.RDC) == ISR.PTX   # RDC is not enabled
    assert window.served_write(c.block(), isr, ISR.PTX) is None      # would drop the line
    assert window.served_write(c.block(), isr, ISR.PRX) is None      # PRX takes frames in
    assert window.served_write(c.block(), imr, 0x00) is None         # masking drops the line
    assert window.served_write(c.block(), imr, 0x03) == 0x03         # PTX stays enabled
    assert window.served_write(c.block(), imr, 0xBF) is None         # IMR keeps 7 bits
    s.isr = ISR.PTX
    s.imr = 0
    assert window.served_write(c.block(), imr, 0x3F) is None         # would raise the line


def test_the_cpu_is_given_the_window_at_bar0_and_follows_it(machine, nic, regs: Regs):
    seen: list[list] = []
    machine.ports.serve_windows(lambda windows: seen.append(dict((w, b) for b, w in windows)), limit=4)
    mine = nic.chip.window
    assert seen[-1][mine] == nic.io_base
    fn = nic.function
    fn.set_bar_address(0, 0xD000)
    assert seen[-1][mine] == 0xD000 and nic.io_base == 0xD000
    fn.config_write(0x04, 2, fn.command & ~1)     # I/O decoding off: no window
    assert mine not in seen[-1]
    machine.ports.trace = lambda *access: None     # a trace sees every access: no window
    fn.config_write(0x04, 2, fn.command | 1)
    assert seen[-1] == {}
    machine.ports.trace = None
    assert seen[-1][mine] == 0xD000


def test_power_on_and_restore_fill_the_same_block(nic):
    block, ram = ctypes.addressof(nic.chip.state), ctypes.addressof(nic.chip.state.ram_block)
    assert nic.chip.window.data_port.memory_address == ram
    saved = nic.save()
    nic.chip.state.rsar = 0x1234
    nic.reset()
    assert nic.chip.state.rsar == 0 and ctypes.addressof(nic.chip.state) == block
    saved.rsar, saved.cr, saved.isr = 0x4321, 0x22, 0x80 | ISR.PTX   # started, with a stale RST
    nic.restore(saved)
    assert ctypes.addressof(nic.chip.state) == block
    assert nic.chip.state.rsar == 0x4321
    assert nic.chip.state.isr == ISR.PTX      # RST only while stopped
    assert nic.save().rsar == 0x4321 and nic.save() is not nic.save()
    saved.ram = bytearray(b"\x5a" * len(saved.ram))
    nic.restore(saved)      # the RAM the CPU streams into is filled in place too
    assert ctypes.addressof(nic.chip.state.ram_block) == ram and nic.chip.state.ram_block[7] == 0x5A
