"""A register window (pyv86.bus.window): byte ``in``/``out`` to the registers it lists are
served from the device's block in native code, on both tiers; everything else still reaches
the host, and the window is wiring that survives reset and restore."""
from __future__ import annotations

import ctypes
import struct

import pytest

from helpers import flat_cpu, load
from pyv86.bus.window import RegisterWindow

BASE = 0x300
OUT = 0x200000          # where the test programs store what they read
SYNC = {"sync": True, "threshold": 1, "verbose": False}
TIERS = [pytest.param(False, id="interpreter"), pytest.param(SYNC, id="jit")]


def mov_dx(port):
    return b"\x66\xba" + struct.pack("<H", port)


def mov_al(value):
    return bytes([0xB0, value])


IN_AL = b"\xec"
OUT_AL = b"\xee"
IN_AX = b"\x66\xed"
HLT = b"\xf4"


def store_al(slot):
    return b"\xa2" + struct.pack("<I", OUT + slot)


def window(block, **kw):
    """Bank = block[0] bits 7:6. A bank-select write is served when the old value has
    bits 1:0 = 10 and the new one bits 5:2,0 = 1000.0; it keeps the old bits 1:0."""
    return RegisterWindow(block, reads={(0, 1): 1, (0, 2): 2, (1, 1): 3, (0, 0): 0, (2, 0): 0},
                          writes={(0, 0): 0, (1, 0): 0, (0, 1): 1, (1, 3): 4, (2, 0): 0},
                          bank_offset=0, bank_shift=6, bank_mask=3, bank_write_new=(0x3D, 0x20),
                          bank_write_old=(0x03, 0x02), bank_write_keeps=0x03, **kw)


def run(code, jit, block=None, setup=None):
    cpu, mem, host = flat_cpu(ram=8 << 20)
    cpu.set_jit(jit)
    block = block if block is not None else (ctypes.c_uint8 * 8)()
    cpu.set_port_window(BASE, window(block))
    if setup:
        setup(cpu)
    load(cpu, mem, b"\xeb\x00" + code + HLT)    # jmp $+2: the code starts a block the JIT looks up
    n = 0
    while not cpu.halted and n < 1000:
        n += cpu.run(1000)
    assert cpu.halted
    if jit:   # the accesses ran in translated code, not in the interpreter
        assert cpu.jit.report()["jit_instructions"] >= len(code) // 4, cpu.jit.report()
    return host.log, bytes(block), mem.ram[OUT:OUT + 8].tobytes()


@pytest.mark.parametrize("jit", TIERS)
def test_listed_byte_registers_are_read_and_written_without_the_host(jit):
    block = (ctypes.c_uint8 * 8)(0x22, 0x5A, 0xA5, 0x33, 0, 0, 0, 0)
    code = (mov_dx(BASE + 1) + IN_AL + store_al(0) + mov_dx(BASE + 2) + IN_AL + store_al(1)
            + mov_dx(BASE + 1) + mov_al(0x77) + OUT_AL + IN_AL + store_al(2))
    log, after, out = run(code, jit, block)
    assert log == []
    assert out[:3] == bytes([0x5A, 0xA5, 0x77])
    assert after[1] == 0x77 and after[2] == 0xA5


@pytest.mark.parametrize("jit", TIERS)
def test_unlisted_ports_wider_accesses_and_ports_past_the_window_reach_the_host(jit):
    block = (ctypes.c_uint8 * 8)(0x22, 0x5A, 0, 0, 0, 0, 0, 0)
    code = (mov_dx(BASE + 5) + IN_AL + mov_dx(BASE + 2) + mov_al(9) + OUT_AL    # (0, 2) read-only
            + mov_dx(BASE + 1) + IN_AX + mov_dx(BASE + 0x10) + IN_AL + mov_dx(BASE - 1) + IN_AL)
    log, after, _ = run(code, jit, block)
    assert log == [("in", BASE + 5, 1), ("out", BASE + 2, 1, 9), ("in", BASE + 1, 2),
                   ("in", BASE + 0x10, 1), ("in", BASE - 1, 1)]
    assert after[2] == 0      # the host, not the window, had the write


@pytest.mark.parametrize("jit", TIERS)
def test_the_bank_select_byte_changes_banks_only_within_its_rule(jit):
    block = (ctypes.c_uint8 * 8)(0x22, 0x11, 0, 0x33, 0, 0, 0, 0)
    code = (mov_dx(BASE) + mov_al(0x62) + OUT_AL        # 0x22 -> 0x62: bank 1, served
            + mov_dx(BASE + 1) + IN_AL + store_al(0)     # (1, 1) -> byte 3
            + mov_dx(BASE + 3) + mov_al(0x44) + OUT_AL   # (1, 3) -> byte 4
            + mov_dx(BASE) + mov_al(0xA0) + OUT_AL       # bank 2, bits 1:0 kept from the old value
            + mov_dx(BASE) + IN_AL + store_al(1)
            + mov_al(0x4A) + OUT_AL)                     # a command (bits 5:2 = 0010): the host
    log, after, out = run(code, jit, block)
    assert log == [("out", BASE, 1, 0x4A)]
    assert out[0] == 0x33 and after[4] == 0x44 and out[1] == 0xA2
    assert after[0] == 0xA2   # the host decides what a command does to the register


@pytest.mark.parametrize("jit", TIERS)
def test_a_bank_select_write_from_an_old_value_outside_the_rule_goes_to_the_host(jit):
    block = (ctypes.c_uint8 * 8)(0x21, 0, 0, 0, 0, 0, 0, 0)   # "stopped": bits 1:0 = 01
    log, after, _ = run(mov_dx(BASE) + mov_al(0x22) + OUT_AL, jit, block)
    assert log == [("out", BASE, 1, 0x22)] and after[0] == 0x21


@pytest.mark.parametrize("jit", TIERS)
def test_the_immediate_port_forms_use_the_window_too(jit):
    block = (ctypes.c_uint8 * 8)(0x22, 0x5A, 0, 0, 0, 0, 0, 0)

    def at_e0(cpu):
        cpu.set_port_window(0xE0, window(block))
    code = b"\xe4\xe1" + store_al(0) + mov_al(0x99) + b"\xe6\xe1" + b"\xe4\xe5"
    log, after, out = run(code, jit, block, setup=at_e0)
    assert log == [("in", 0xE5, 1)]
    assert out[0] == 0x5A and after[1] == 0x99


def test_no_window_sends_everything_to_the_host_and_the_window_survives_reset_and_restore():
    block = (ctypes.c_uint8 * 8)(0x22, 0x5A, 0, 0, 0, 0, 0, 0)
    code = mov_dx(BASE + 1) + IN_AL + store_al(0)
    log, _, _ = run(code, False, block, setup=lambda cpu: cpu.set_port_window(None))
    assert log == [("in", BASE + 1, 1)]

    cpu, mem, host = flat_cpu(ram=8 << 20)
    cpu.set_port_window(BASE, window(block))
    saved = cpu.save()
    assert not any(key.startswith("pwin_") for key in saved)   # wiring, not guest state
    cpu.reset()
    cpu.restore(saved)
    load(cpu, mem, code + HLT)
    cpu.run(100)
    assert cpu.halted and host.log == [] and mem.ram[OUT] == 0x5A


def test_a_window_that_points_outside_its_block_or_banks_is_refused():
    block = (ctypes.c_uint8 * 4)()
    with pytest.raises(ValueError, match="outside the 4-byte block"):
        RegisterWindow(block, reads={(0, 1): 4}, writes={})
    with pytest.raises(ValueError, match="outside the window"):
        RegisterWindow(block, reads={(1, 1): 0}, writes={})          # one bank only
    with pytest.raises(ValueError, match="outside the window"):
        RegisterWindow(block, reads={}, writes={(0, 16): 0})
    with pytest.raises(ValueError, match="bank-select byte"):
        RegisterWindow(block, reads={}, writes={}, bank_offset=9, bank_mask=1)
    with pytest.raises(ValueError, match="not a \\(mask, value\\) pair"):
        RegisterWindow(block, reads={}, writes={}, bank_write_new=(0x0F, 0x10))
    with pytest.raises(ValueError, match="1..16 ports"):
        RegisterWindow(block, reads={}, writes={}, length=17)


def irq_window(block):
    """Banks as in ``window``; byte 5 = status (write 1 to clear bits 6:0, bit 0 a write goes
    to the host), byte 6 = enable (7 bits), interrupt while status & enable & 0x7F."""
    from pyv86.bus.window import InterruptPair
    return RegisterWindow(block, reads={(0, 5): 5, (0, 6): 6},
                          writes={(0, 0): 0, (1, 0): 0, (2, 0): 0, (0, 1): 1, (1, 3): 4,
                                  (0, 5): 5, (0, 6): 6, (1, 5): 6},
                          bank_offset=0, bank_shift=6, bank_mask=3, bank_write_new=(0x3D, 0x20),
                          bank_write_old=(0x03, 0x02), bank_write_keeps=0x03,
                          interrupt=InterruptPair(status=5, enable=6, bits=0x7F, clear_bits=0x7F,
                                                  status_exits=0x01, enable_bits=0x7F))


@pytest.mark.parametrize("jit", TIERS)
@pytest.mark.parametrize("seed", range(3))
def test_random_writes_do_what_the_window_model_says(jit, seed):
    """RegisterWindow.served_write is the specification of the native path: a random run of
    writes (bank switches, status acknowledgements, enable changes, commands) must leave
    the block as the model does and send exactly the refused writes to the host."""
    import random
    rng = random.Random(seed)
    start = bytes([0x22, 0, 0, 0, 0, rng.getrandbits(8), rng.getrandbits(8), 0])
    block = (ctypes.c_uint8 * 8)(*start)
    model = bytearray(start)
    spec = irq_window((ctypes.c_uint8 * 8)())   # the model: only its rules are used
    code, expect_host = b"", []
    for _ in range(150):
        offset = rng.choice([0, 0, 1, 3, 5, 5, 6, 6, 7])
        value = rng.choice([rng.getrandbits(8), 0x22, 0x62, 0xA2, 0x20, 0x60, 0x40, 0x02, 0x7F, 0x00])
        code += mov_dx(BASE + offset) + mov_al(value) + OUT_AL
        bank = model[0] >> 6 & 3
        byte = spec.writes.get((bank, offset))
        stored = None if byte is None else spec.served_write(bytes(model), byte, value)
        if stored is None:
            expect_host.append(("out", BASE + offset, 1, value))
        else:
            model[byte] = stored
    code += mov_dx(BASE) + HLT

    def install(cpu):
        cpu.set_port_window(BASE, irq_window(block))
    log, after, _ = run(code, jit, block, setup=install)
    assert log == expect_host
    assert after == bytes(model)
    assert 20 < len(expect_host) < 130        # both kinds happened


BASE2 = 0xA0


def mask_window(block):
    """An 8259-like window: byte 0 the mask (IMR), byte 1 the requests (IRR), byte 2 a mode
    byte used as the bank (1: reads and writes go to the host), byte 3 in-service (ISR),
    byte 4 the real output; mask writes are served only while no unmasked request is
    pending, before and after, or while the output is low and they mask more; specific
    EOIs (0x60-0x67 at offset 0) while nothing unmasked is pending."""
    from pyv86.bus.window import InterruptPair
    return RegisterWindow(block, reads={(0, 1): 0}, writes={(0, 1): 0, (0, 0): 3}, length=2,
                          bank_offset=2, bank_mask=1,
                          interrupt=InterruptPair(status=1, enable=0, clear_bits=0, enable_is_mask=True,
                                                  idle_only=True, true_output=4, in_service=3,
                                                  eoi=(0xF8, 0x60)))


@pytest.mark.parametrize("jit", TIERS)
@pytest.mark.parametrize("seed", range(3))
def test_two_windows_each_serve_their_own_ports_by_their_own_rules(jit, seed):
    import random
    rng = random.Random(100 + seed)
    first = bytes([0x22, 0, 0, 0, 0, rng.getrandbits(8), rng.getrandbits(8), 0])
    # mode 0; idle, or (seed 2) input 2 requesting, unmasked, but held back by in-service:
    # the output is low, so masking more is served until something unmasks it
    second = (bytes([0x00, 0x04, 0, 0x04, 0]) if seed == 2
              else bytes([rng.getrandbits(8) | 0x04, 0, 0, rng.getrandbits(8), 0]))
    blocks = ((ctypes.c_uint8 * 8)(*first), (ctypes.c_uint8 * 5)(*second))
    models = (bytearray(first), bytearray(second))
    specs = ((BASE, irq_window((ctypes.c_uint8 * 8)())), (BASE2, mask_window((ctypes.c_uint8 * 5)())))
    code, expect_host, served = b"", [], [0, 0]
    for _ in range(150):
        which = rng.randrange(2)
        base, spec = specs[which]
        offset = rng.choice([0, 1, 3, 5, 6]) if which == 0 else rng.choice([0, 1, 1, 1])
        value = rng.choice([rng.getrandbits(8), 0x22, 0x62, 0x02, 0x00, 0xFF, 0xFB, 0xBF,
                            0x60 | rng.getrandbits(3), 0x20])
        model = models[which]
        reading = which == 1 and rng.random() < 0.3
        if reading:
            code += mov_dx(base + offset) + IN_AL
            byte = spec.reads.get((model[spec.bank_offset] >> spec.bank_shift & spec.bank_mask, offset))
            if byte is None:
                expect_host.append(("in", base + offset, 1))
            continue
        code += mov_dx(base + offset) + mov_al(value) + OUT_AL
        byte = spec.writes.get((model[spec.bank_offset] >> spec.bank_shift & spec.bank_mask, offset))
        stored = None if byte is None else spec.served_write(bytes(model), byte, value)
        if stored is None:
            expect_host.append(("out", base + offset, 1, value))
        else:
            model[byte] = stored
            served[which] += 1

    def install(cpu):
        cpu.set_port_windows([(BASE, irq_window(blocks[0])), (BASE2, mask_window(blocks[1]))])
    log, _, _ = run(code, jit, blocks[0], setup=install)
    assert log == expect_host
    assert (bytes(blocks[0]), bytes(blocks[1])) == (bytes(models[0]), bytes(models[1]))
    assert any(port >= BASE2 and port < BASE2 + 2 for _kind, port, *_ in expect_host)
    assert min(served) > 3        # both windows served writes natively


def test_the_cpu_refuses_more_windows_than_it_has():
    from pyv86.cpu.state import PORT_WINDOWS
    cpu, _, _ = flat_cpu()
    block = (ctypes.c_uint8 * 8)()
    with pytest.raises(ValueError, match=f"at most {PORT_WINDOWS} register windows"):
        cpu.set_port_windows([(0x100 * i, window(block)) for i in range(PORT_WINDOWS + 1)])
