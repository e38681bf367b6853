"""The slave 8259's mask register as a register window: whatever the CPU serves itself
(``PicPair.slave_window``) must be exactly what the Python handler does, in any state, with
no change of INTR and nothing else touched; everything else reaches the handler."""
from __future__ import annotations

import ctypes
import random

import pytest

from pyv86.platform.pic import IMR, SLAVE


def block(pc) -> bytes:
    return bytes(pc.pic.state.block)


def random_state(pc, rng: random.Random) -> None:
    """Linux's initialisation, then random lines, acknowledgements and masks."""
    pc.init_pics()
    for _ in range(rng.randrange(6)):
        line = rng.choice([0, 1, 3, 4, 10, 11, 12, 14])
        pc.machine.irqs[line].source("t").set(rng.random() < 0.5)
        if rng.random() < 0.3 and pc.pic.intr:
            pc.machine.interrupt_ack()
    pc.outb(0xA1, rng.getrandbits(8))
    pc.outb(0x21, rng.getrandbits(8) & ~0x04)
    if rng.random() < 0.1:
        pc.outb(0xA0, 0x0C)      # OCW3 poll: the next read is an acknowledgement (mode 1)


@pytest.mark.parametrize("seed", range(60))
def test_served_mask_accesses_are_what_the_pic_does(make_pc, seed):
    rng = random.Random(seed)
    pc = make_pc()
    random_state(pc, rng)
    window = pc.pic.slave_window
    intr, served = [], 0
    pc.machine.set_intr = lambda level: intr.append(level)   # any change of INTR is recorded
    for _ in range(20):
        bank = pc.pic.state.mode[SLAVE]
        before = block(pc)
        if rng.random() < 0.3:
            byte = window.reads.get((bank, 1))
            if byte is None:
                assert bank == 1
                break
            assert pc.inb(0xA1) == before[byte]
            assert block(pc) == before and intr == []
            continue
        value = rng.getrandbits(8)
        byte = window.writes.get((bank, 1))
        stored = None if byte is None else window.served_write(before, byte, value)
        if stored is None:
            pc.outb(0xA1, value)     # the handler's business (it may move INTR)
            intr.clear()
            continue
        expect = bytearray(before)
        expect[byte] = stored
        pc.outb(0xA1, value)
        assert block(pc) == bytes(expect) and intr == [], (seed, value)
        served += 1
    assert served or pc.pic.state.mode[SLAVE] or pc.pic.state.irr[SLAVE]


def test_mask_writes_are_served_only_while_nothing_unmasked_is_pending(pc):
    pc.init_pics()
    window, imr = pc.pic.slave_window, IMR + SLAVE
    assert window.served_write(block(pc), imr, 0x04) == 0x04         # nothing pending
    pc.machine.irqs[10].source("nic").set(True)                        # slave input 2 pending
    assert window.served_write(block(pc), imr, 0x01) is None          # it stays unmasked: not idle
    assert window.served_write(block(pc), imr, 0x04) is None          # masking it moves the output
    pc.outb(0xA1, 0xFF)
    assert window.served_write(block(pc), imr, 0xFE) == 0xFE          # input 2 stays masked
    assert window.served_write(block(pc), imr, 0xFB) is None          # unmasking it raises INTR


def test_initialisation_and_poll_mode_leave_the_mask_port_to_the_pic(pc):
    window = pc.pic.slave_window
    pc.outb(0xA0, 0x11)                      # ICW1: the next writes to 0xA1 are ICW2-4
    assert pc.pic.state.mode[SLAVE] == 1 and (1, 1) not in window.writes
    for value in (0x38, 0x02, 0x01):
        pc.outb(0xA1, value)
    assert pc.pic.state.mode[SLAVE] == 0
    pc.outb(0xA0, 0x0C)                      # poll
    assert pc.pic.state.mode[SLAVE] == 1 and (1, 1) not in window.reads
    pc.inb(0xA0)
    assert pc.pic.state.mode[SLAVE] == 0


def test_save_and_restore_keep_the_block_and_check_the_image(pc):
    pc.init_pics()
    address = ctypes.addressof(pc.pic.state.block)
    saved = pc.pic.save()
    assert saved.imr == [0, 0] and saved is not pc.pic.save()
    saved.imr = [0x12, 0x34]
    pc.pic.restore(saved)
    assert ctypes.addressof(pc.pic.state.block) == address and pc.inb(0xA1) == 0x34
    from pyv86.errors import StateError
    with pytest.raises(ValueError, match="irr must be two bytes"):
        saved.irr = [300, 0]          # what reading a state image checks, before restoring
    saved.irr[0] = 300                # (changed in place: past the field check)
    saved.imr = [0x56, 0x78]
    with pytest.raises(StateError, match="irr must be two bytes"):
        pc.pic.restore(saved)
    assert pc.inb(0xA1) == 0x34       # nothing of the bad state was installed
