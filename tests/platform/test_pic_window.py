"""Each 8259's mask register and specific EOIs as a register window: whatever the CPU
serves itself (``PicPair.master_window``, ``PicPair.slave_window``) must be exactly what the
Python handler does, in any state, with no change of INTR and nothing else touched;
everything else reaches the handler."""
from __future__ import annotations

import ctypes
import random

import pytest

from pyv86.platform.pic import IMR, ISR, MASTER, OUT, SLAVE

PORTS = {MASTER: 0x20, SLAVE: 0xA0}


def block(pc) -> bytes:
    return bytes(pc.pic.state.block)


def random_state(pc, rng: random.Random) -> None:
    """Linux's initialisation, then random lines, acknowledgements, EOIs and masks."""
    pc.init_pics()
    for _ in range(rng.randrange(8)):
        line = rng.choice([0, 1, 3, 4, 10, 11, 12, 14])
        pc.machine.irqs[line].source("t").set(rng.random() < 0.5)
        if rng.random() < 0.4 and pc.pic.intr:
            pc.machine.interrupt_ack()
    pc.outb(0xA1, rng.getrandbits(8))
    pc.outb(0x21, rng.getrandbits(8) & ~0x04)
    if rng.random() < 0.1:
        pc.outb(rng.choice([0x20, 0xA0]), 0x0C)   # OCW3 poll: the next read is an acknowledgement (mode 1)
    if rng.random() < 0.1:
        pc.outb(rng.choice([0x20, 0xA0]), 0x68)   # OCW3: special mask mode (mode 1)


def write_value(rng: random.Random, offset: int) -> int:
    if offset == 1:
        return rng.getrandbits(8)
    return rng.choice([0x60 | rng.getrandbits(3)] * 3 + [0x20, 0xE0 | rng.getrandbits(3), 0x0A, 0x0B])


@pytest.mark.parametrize("seed", range(60))
def test_served_accesses_are_what_the_pic_does(make_pc, seed):
    rng = random.Random(seed)
    pc = make_pc()
    random_state(pc, rng)
    intr, served = [], {MASTER: 0, SLAVE: 0}
    pc.machine.set_intr = lambda level: intr.append(level)   # any change of INTR is recorded
    for _ in range(30):
        chip = rng.choice([MASTER, SLAVE])
        window, port = pc.pic.windows[chip], PORTS[chip]
        bank = pc.pic.state.mode[chip]
        before = block(pc)
        if rng.random() < 0.2:
            byte = window.reads.get((bank, 1))
            if byte is None:
                assert bank == 1
                continue
            assert pc.inb(port + 1) == before[byte]
            assert block(pc) == before and intr == []
            continue
        offset = rng.choice([0, 1])
        value = write_value(rng, offset)
        byte = window.writes.get((bank, offset))
        stored = None if byte is None else window.served_write(before, byte, value)
        pc.outb(port + offset, value)
        if stored is None:    # the handler's business (it may move INTR)
            intr.clear()
            continue
        expect = bytearray(before)
        expect[byte] = stored
        assert block(pc) == bytes(expect) and intr == [], (seed, chip, offset, hex(value))
        served[chip] += 1
    assert sum(served.values()) or any(pc.pic.state.mode)


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


def test_masking_more_is_served_while_in_service_holds_the_request_back(pc):
    """Linux's mask_and_ack: IRQ 10 is in service and still requesting (its line is a
    level), so the slave's output is low; masking it changes nothing a CPU could see."""
    pc.init_pics()
    nic = pc.machine.irqs[10].source("nic")
    nic.set(True)
    assert pc.machine.interrupt_ack() == 0x38 + 2
    s, window = pc.pic.state, pc.pic.slave_window
    assert s.isr[SLAVE] == 0x04 and s.irr[SLAVE] & 0x04 and s.regs[OUT + SLAVE] == 0
    assert window.served_write(block(pc), IMR + SLAVE, 0x04) == 0x04   # masks more: served
    assert window.served_write(block(pc), IMR + SLAVE, 0x00) == 0x00   # (the same mask: no change)
    pc.outb(0xA1, 0x04)
    assert window.served_write(block(pc), ISR + SLAVE, 0x62) == 0x00   # EOI: IRQ 10 masked, nothing pending
    pc.outb(0xA0, 0x62)
    pc.outb(0x20, 0x62)
    assert s.isr[SLAVE] == s.isr[MASTER] == 0 and not pc.pic.intr
    nic.set(False)
    pc.outb(0xA1, 0x00)
    nic.set(True)        # a new request, unmasked, not in service: the output is high
    assert s.regs[OUT + SLAVE] == 1
    assert window.served_write(block(pc), IMR + SLAVE, 0x04) is None   # masking would drop INTR


def test_specific_eois_are_served_only_while_nothing_unmasked_is_pending(pc):
    pc.init_pics()
    s = pc.pic.state
    pc.machine.irqs[0].source("pit").set(True)
    assert pc.machine.interrupt_ack() == 0x30
    pc.machine.irqs[0].source("pit").set(False)          # (edge: IRR cleared at INTA)
    master = pc.pic.master_window
    assert master.served_write(block(pc), ISR + MASTER, 0x60) == 0x00
    assert master.served_write(block(pc), ISR + MASTER, 0x20) is None   # non-specific: the PIC's
    assert master.served_write(block(pc), ISR + MASTER, 0xE0) is None   # rotating: the PIC's
    pc.machine.irqs[1].source("kbd").set(True)            # pending behind IR0 in service
    assert s.regs[OUT + MASTER] == 0
    assert master.served_write(block(pc), ISR + MASTER, 0x60) is None   # the EOI lets it through
    pc.outb(0x20, 0x60)
    assert s.isr[MASTER] == 0 and pc.pic.intr


def test_initialisation_poll_and_special_mask_modes_leave_the_ports_to_the_pic(pc):
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
    pc.outb(0xA0, 0x68)                      # special mask mode: masks decide in-service priority
    assert pc.pic.state.mode[SLAVE] == 1 and (1, 0) not in window.writes
    pc.outb(0xA0, 0x48)
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
