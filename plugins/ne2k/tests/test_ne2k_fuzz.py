"""Garbage from both sides: random frames from the backend, random port accesses from the guest.

Nothing may raise, hang or grow memory: frames are stored, dropped or counted; state keeps
its shape (16 KiB RAM, 6-byte PAR, 8-byte MAR, registers within range).
"""
from __future__ import annotations

import random
import time
import tracemalloc

from pyv86_ne2k.dp8390 import RAM_SIZE, check_state

from ne2k_testlib import MAC, Regs, frame_to


def random_frame(rng: random.Random) -> bytes:
    kind = rng.random()
    if kind < 0.3:
        length = rng.randrange(0, 65536)
    elif kind < 0.6:
        length = rng.randrange(0, 1600)
    else:
        length = rng.choice([0, 1, 13, 14, 59, 60, 61, 1514, 1518, 1519, 65535])
    head = rng.choice([MAC, b"\xff" * 6, bytes([rng.randrange(256)]) + rng.randbytes(5)])
    return (head + rng.randbytes(max(0, length - 6)))[:length]


def test_random_frames_from_the_backend_are_stored_or_counted(regs, nic, wire):
    rng = random.Random(1234)
    regs.start_receiver(rcr=0x1C)
    regs.outb(0x0F, 0x3F)
    sent = 0
    tracemalloc.start()
    try:
        base_mem = tracemalloc.get_traced_memory()[0]
        deadline = time.monotonic() + 20
        for i in range(3000):
            wire.inject(random_frame(rng))
            sent += 1
            if i % 5 == 0:  # the guest frees the ring now and then
                curr = regs.rd(1, 0x07)
                regs.outb(0x03, curr - 1 if curr > 0x4C else 0x7F)
                regs.outb(0x07, 0xFF)
            assert time.monotonic() < deadline, "fuzzing took too long (a hang?)"
        grown = tracemalloc.get_traced_memory()[0] - base_mem
    finally:
        tracemalloc.stop()
    c = nic.port.counters
    assert c.rx_frames == sent
    assert c.rx_bad_length + c.rx_stored + c.rx_not_for_us + c.rx_nic_drops + c.rx_queue_drops + nic.port.queued == sent
    assert c.rx_bad_length > 0 and c.rx_stored > 0
    assert nic.port.queued <= nic.port.queue_frames
    assert grown < 2 << 20, f"memory grew by {grown} bytes"
    check_state(nic.chip.state, "fuzz")


def test_random_guest_port_accesses_never_break_the_nic(machine, regs, nic, wire):
    rng = random.Random(99)
    tracemalloc.start()
    try:
        base_mem = tracemalloc.get_traced_memory()[0]
        deadline = time.monotonic() + 30
        for i in range(40_000):
            off = rng.choice([rng.randrange(0x20), 0x00, 0x10, 0x10, 0x07, 0x03, 0x1F])
            size = rng.choice([1, 1, 1, 2, 4])
            if off + size > 0x20:
                off = 0x20 - size
            if rng.random() < 0.5:
                regs.machine.ports.write(regs.base + off, size, rng.randrange(1 << (8 * size)))
            else:
                regs.machine.ports.read(regs.base + off, size)
            if i % 50 == 0:
                count = rng.choice([1, 7, 300, 5000])
                port = regs.base + 0x10
                if rng.random() < 0.5:
                    machine.port_read_string(port, rng.choice([1, 2, 4]), count)
                else:
                    machine.port_write_string(port, 4, rng.randbytes(4 * count))
            if i % 20 == 0:
                wire.inject(random_frame(rng) if rng.random() < 0.5 else frame_to(MAC, rng.randrange(14, 1519), fill=i & 0xFF))
            if i % 1000 == 0:
                check_state(nic.chip.state, "fuzz")
                assert len(nic.chip.state.ram) == RAM_SIZE
                assert nic.port.queued <= nic.port.queue_frames
            assert time.monotonic() < deadline, "fuzzing took too long (a hang?)"
        grown = tracemalloc.get_traced_memory()[0] - base_mem
    finally:
        tracemalloc.stop()
    assert grown < 2 << 20, f"memory grew by {grown} bytes"
    # after all that, a driver can still take the card over
    regs.inb(0x1F)
    regs.start_receiver()
    wire.take()
    nic.port.clear_queue()
    frame = frame_to(MAC, 200)
    wire.inject(frame)
    from ne2k_testlib import ring_read
    assert ring_read(Regs(machine, nic), 0x4C)[1] == frame
