"""A register window's data port (pyv86.bus.window.DataPort): ``rep ins``/``rep outs`` and
single ``in``/``out`` there move device memory in native code, on both tiers, exactly as
``DataPort.served_transfer`` says, and every access outside that rule reaches the host
with nothing changed."""
from __future__ import annotations

import ctypes
import random
import struct

import pytest

from helpers import flat_cpu, load
from pyv86.bus.window import DataPort, InterruptPair, RegisterWindow

BASE = 0x300
PORT = BASE + 0x10
SRC, DST = 0x200000, 0x210000     # guest buffers
MEM_START = 0x100                 # the device address of its memory's first byte
SYNC = {"sync": True, "threshold": 1, "verbose": False}
TIERS = [pytest.param(False, id="interpreter"), pytest.param(SYNC, id="jit")]
DONE = 0x40


class Regs(ctypes.Structure):
    _fields_ = [("cmd", ctypes.c_uint8), ("status", ctypes.c_uint8), ("enable", ctypes.c_uint8),
                ("mode", ctypes.c_uint8), ("end", ctypes.c_uint8), ("pad", ctypes.c_uint8),
                ("address", ctypes.c_uint16), ("count", ctypes.c_uint16)]


def off(name):
    return getattr(Regs, name).offset


IRQ = InterruptPair(status=off("status"), enable=off("enable"), bits=0x7F, clear_bits=0x7F)


def device(regs, memory):
    port = DataPort(memory=memory, offset=0x10, memory_start=MEM_START, address=off("address"),
                    count=off("count"), end_page=off("end"), done_bit=DONE, word_mode=(off("mode"), 1),
                    start_commands=((0x3D, 0x08), (0x3D, 0x10)))
    return RegisterWindow(regs, reads={(0, 1): off("status")}, writes={(0, 0): off("cmd")},
                          bank_offset=off("cmd"), bank_shift=6, bank_mask=3, bank_write_new=(0x3D, 0x20),
                          bank_write_old=(0x03, 0x02), bank_write_keeps=0x03, interrupt=IRQ, data_port=port)


def mov(reg, value):   # mov r32, imm32 (eax 0, ecx 1, edx 2, esi 6, edi 7)
    return bytes([0xB8 + reg]) + struct.pack("<I", value)


REP_OUTSD, REP_INSD, REP_INSW = b"\xf3\x6f", b"\xf3\x6d", b"\xf3\x66\x6d"
IN_EAX, OUT_EAX, IN_AX, IN_AL, OUT_AL = b"\xed", b"\xef", b"\x66\xed", b"\xec", b"\xee"
STORE_EAX = b"\xa3" + struct.pack("<I", DST + 0x800)
HLT = b"\xf4"


def run(code, jit, regs, memory, guest=b""):
    cpu, mem, host = flat_cpu(ram=8 << 20)
    cpu.set_jit(jit)
    cpu.set_port_window(BASE, device(regs, memory))
    mem.write(SRC, guest)
    load(cpu, mem, b"\xeb\x00" + mov(2, PORT) + code + HLT)
    n = 0
    while not cpu.halted and n < 1000:
        n += cpu.run(1000)
    assert cpu.halted
    return cpu, mem, host


def state(address=0x110, count=0x40, end=0x02, status=0, enable=0, mode=0, cmd=0x22):
    regs = Regs(cmd=cmd, status=status, enable=enable, mode=mode, end=end, address=address, count=count)
    memory = (ctypes.c_uint8 * 0x100)(*random.Random(7).randbytes(0x100))
    return regs, memory


@pytest.mark.parametrize("jit", TIERS)
def test_rep_outs_and_ins_move_device_memory_without_the_host(jit):
    regs, memory = state(count=0x20)
    data = bytes(range(0x10, 0x20))
    cpu, mem, host = run(mov(6, SRC) + mov(1, 4) + REP_OUTSD, jit, regs, memory, data)
    assert host.log == [] and bytes(memory[0x10:0x20]) == data
    assert (regs.address, regs.count, regs.status) == (0x120, 0x10, 0)
    assert cpu.get_reg("esi") == SRC + 16 and cpu.get_reg("ecx") == 0

    regs.address, regs.count = 0x110, 0x10            # read it back: the count ends at 0
    cpu, mem, host = run(mov(7, DST) + mov(1, 4) + REP_INSD, jit, regs, memory)
    assert host.log == [] and mem.read(DST, 16) == data
    assert (regs.address, regs.count, regs.status) == (0x120, 0, DONE)   # done, not enabled


@pytest.mark.parametrize("jit", TIERS)
def test_single_in_and_out_stream_too(jit):
    regs, memory = state()
    cpu, mem, host = run(mov(0, 0x44332211) + OUT_EAX + IN_EAX + STORE_EAX, jit, regs, memory)
    assert host.log == []
    assert bytes(memory[0x10:0x14]) == bytes.fromhex("11223344")
    assert mem.read(DST + 0x800, 4) == bytes(memory[0x14:0x18])
    assert (regs.address, regs.count) == (0x118, 0x38)


@pytest.mark.parametrize("jit", TIERS)
def test_accesses_outside_the_rule_reach_the_host_and_change_nothing(jit):
    cases = [
        (state(count=8), mov(7, DST) + mov(1, 4) + REP_INSD, ("ins", PORT, 4, 4)),        # past the count
        (state(count=0), IN_EAX, ("in", PORT, 4)),                                     # no count
        (state(address=0x1FC, end=0x02), IN_EAX, ("in", PORT, 4)),                     # reaches the end page
        (state(address=0x0FE), IN_EAX, ("in", PORT, 4)),                               # below the memory
        (state(end=0x09, count=0x100), mov(7, DST) + mov(1, 0x40) + REP_INSD, ("ins", PORT, 4, 0x40)),
        (state(mode=1), IN_AL, ("in", PORT, 1)),                                        # a byte in word mode
        (state(count=4, enable=DONE), IN_EAX, ("in", PORT, 4)),                         # done would interrupt
        (state(count=4, enable=DONE), mov(0, 1) + OUT_EAX, ("out", PORT, 4, 1)),
    ]
    for (regs, memory), code, access in cases:
        before, contents = bytes(regs), bytes(memory)
        cpu, mem, host = run(code, jit, regs, memory)
        assert host.log == [access], code.hex()
        assert bytes(regs) == before and bytes(memory) == contents, code.hex()


@pytest.mark.parametrize("jit", TIERS)
def test_word_mode_aligns_the_address_and_byte_mode_streams_bytes(jit):
    regs, memory = state(address=0x111, mode=1)
    cpu, mem, host = run(IN_AX + STORE_EAX, jit, regs, memory)
    assert host.log == [] and regs.address == 0x112 and regs.count == 0x3E
    assert mem.read(DST + 0x800, 2) == bytes(memory[0x10:0x12])
    regs, memory = state(address=0x111)
    cpu, mem, host = run(IN_AL + STORE_EAX + IN_AL, jit, regs, memory)
    assert host.log == [] and regs.address == 0x113 and mem.read(DST + 0x800, 1) == bytes(memory[0x11:0x12])


@pytest.mark.parametrize("jit", TIERS)
def test_start_commands_are_stored_only_while_the_count_is_not_zero(jit):
    code = b"\xb0\x0a" + b"\x66\xba" + struct.pack("<H", BASE) + OUT_AL   # mov al, 0x0a; mov dx, BASE; out
    regs, memory = state(count=4)
    cpu, mem, host = run(code, jit, regs, memory)
    assert host.log == [] and regs.cmd == 0x0A
    regs, memory = state(count=0)
    cpu, mem, host = run(code, jit, regs, memory)
    assert host.log == [("out", BASE, 1, 0x0A)] and regs.cmd == 0x22


def test_the_cpu_follows_served_transfer_in_random_states():
    rng = random.Random(3)
    served = 0
    for _ in range(120):
        regs, memory = state(address=rng.choice([0x0F8, 0x100, 0x111, 0x1C1, 0x1E0, 0x1F0, rng.randrange(0x10000)]),
                             count=rng.choice([0, 2, 0x10, 0x20, 0x40, rng.randrange(0x10000)]),
                             end=rng.choice([0, 0x01, 0x02, 0x02, 0x03, 0xFF]), status=rng.getrandbits(8),
                             enable=rng.choice([0, DONE, rng.getrandbits(8)]), mode=rng.getrandbits(1))
        units = rng.choice([1, 4, 8])
        size = rng.choice([1, 2, 4])
        ins = {1: b"\xf3\x6c", 2: REP_INSW, 4: REP_INSD}[size]
        window = device(regs, memory)
        predicted = bytearray(bytes(regs))
        where = window.data_port.served_transfer(predicted, IRQ, size, units)
        before, contents = bytes(regs), bytes(memory)
        cpu, mem, host = run(mov(7, DST) + mov(1, units) + ins, False, regs, memory)
        if where is None:   # the host had it: as one string, or (one unit) one access
            assert host.log == [("ins", PORT, size, units) if units > 1 else ("in", PORT, size)]
            assert bytes(regs) == before and bytes(memory) == contents
            continue
        served += 1
        assert host.log == [] and bytes(regs) == bytes(predicted)
        assert mem.read(DST, size * units) == contents[where:where + size * units]
    assert served >= 20
