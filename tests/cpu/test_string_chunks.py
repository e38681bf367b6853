"""``rep movs`` / ``rep stos`` with 32-bit addresses move whole page chunks at once
(isa._mem_chunk); these tests hold them to the element-by-element semantics: overlap that
repeats a pattern, DF=1, page-straddling elements, faults part-way, MMIO, and code pages."""
from __future__ import annotations

import random

import pytest

from helpers import Host, flat_cpu, load

pytestmark = pytest.mark.timeout(900)

CODE = 0x100000
AREA = 0x20000          # the test data lives in AREA .. AREA + 5 pages
SPAN = 5 * 4096
OPCODES = {("movs", 1): "a4", ("movs", 2): "66a5", ("movs", 4): "a5",
           ("stos", 1): "aa", ("stos", 2): "66ab", ("stos", 4): "ab"}


def reference(mem: bytearray, kind, nb, esi, edi, ecx, eax, down):
    """Element by element, as the manual describes rep movs/stos (flat segments)."""
    step = -nb if down else nb
    while ecx:
        if kind == "movs":
            mem[edi:edi + nb] = mem[esi:esi + nb]
            esi += step
        else:
            mem[edi:edi + nb] = (eax & ((1 << (8 * nb)) - 1)).to_bytes(nb, "little")
        edi += step
        ecx -= 1
    return esi, edi


def run_rep(kind, nb, esi, edi, ecx, eax, down, image):
    cpu, mem, _ = flat_cpu()
    mem.write(AREA, bytes(image))
    code = ("fd" if down else "fc") + "f3" + OPCODES[kind, nb] + "f4"
    load(cpu, mem, bytes.fromhex(code))
    for reg, value in (("esi", esi), ("edi", edi), ("ecx", ecx), ("eax", eax)):
        cpu.set_reg(reg, value)
    cpu.run(100)
    assert cpu.halted
    return cpu, mem


@pytest.mark.parametrize("seed", range(6))
def test_random_rep_movs_and_stos_match_the_element_by_element_model(seed):
    rng = random.Random(seed)
    for _ in range(40):
        kind = rng.choice(["movs", "stos"])
        nb = rng.choice([1, 2, 4])
        down = rng.random() < 0.2
        ecx = rng.choice([0, 1, 2, rng.randint(3, 64), rng.randint(64, 5000 // nb)])
        length = ecx * nb
        lo, hi = (length, SPAN - nb) if down else (0, SPAN - max(length, nb))
        edi = rng.randint(lo, hi)
        if kind == "movs" and rng.random() < 0.5:    # overlapping: source just before/after
            esi = min(max(edi + rng.choice([-1, 1]) * rng.randint(1, 9), lo), hi)
        else:
            esi = rng.randint(lo, hi)
        eax = rng.choice([0, 0xFFFFFFFF, 0x41414141, rng.getrandbits(32)])
        image = bytearray(rng.randbytes(SPAN))
        want = bytearray(image)
        want_esi, want_edi = reference(want, kind, nb, esi, edi, ecx, eax, down)
        cpu, mem = run_rep(kind, nb, AREA + esi, AREA + edi, ecx, eax, down, image)
        case = f"{kind}{nb} esi={esi:#x} edi={edi:#x} ecx={ecx} eax={eax:#x} df={int(down)}"
        assert mem.read(AREA, SPAN) == bytes(want), case
        assert cpu.get_reg("ecx") == 0, case
        assert cpu.get_reg("edi") == AREA + want_edi, case
        if kind == "movs":
            assert cpu.get_reg("esi") == AREA + want_esi, case


def test_copy_into_its_own_tail_repeats_the_pattern_like_hardware():
    image = bytearray(SPAN)
    image[:3] = b"abc"
    cpu, mem = run_rep("movs", 1, AREA, AREA + 3, 9000, 0, False, image)
    assert mem.read(AREA, 9003) == b"abc" * 3001


def test_page_fault_part_way_leaves_registers_at_the_faulting_element():
    """Destination page 2 is not present: pages 0-1 are copied, the registers point at the
    first element of page 2, and CR2 names it."""
    cpu, mem, _ = flat_cpu()
    pd, pt = 0x10000, 0x11000
    mem.write_u32(pd, pt | 3)
    for i in range(1024):
        mem.write_u32(pt + 4 * i, (i << 12) | 3)
    mem.write_u32(pt + 4 * 0x42, 0)                        # 0x42000 not present
    cpu.set_reg("cr3", pd)
    cpu.set_reg("cr0", 0x80000011)
    cpu.state["exc_exit"] = 1
    mem.write(0x30000, bytes(range(256)) * 48)             # 12 KiB source
    load(cpu, mem, bytes.fromhex("f3a5" "f4"))             # rep movsd
    cpu.set_reg("esi", 0x30000)
    cpu.set_reg("edi", 0x40000)
    cpu.set_reg("ecx", 3072)
    cpu.run(100)
    assert cpu.get_reg("edi") == 0x42000 and cpu.get_reg("esi") == 0x32000
    assert cpu.get_reg("ecx") == 1024
    assert cpu.get_reg("cr2") == 0x42000
    assert mem.read(0x40000, 8192) == mem.read(0x30000, 8192)


def test_rep_stos_into_mmio_is_one_device_write_per_element():
    host = Host()
    cpu, mem, _ = flat_cpu(host=host)
    load(cpu, mem, bytes.fromhex("bf00005000" "b906000000" "b878563412" "f3ab" "f4"))
    cpu.run(100)
    writes = [x for x in host.log if x[0] == "mw"]
    assert writes == [("mw", 0x500000 + 4 * i, 4, 0x12345678) for i in range(6)]
