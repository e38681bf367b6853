"""Guest-controlled fuzz: random bytes as code under random page tables.

Checks that nothing a guest does crashes or hangs the host process: every run() returns
within its budget (or raises TripleFault, after which the machine is reset and re-randomised).

    python -m pyv86.cpu.fuzz --insns 1000000 --seed 1
"""
from __future__ import annotations

import argparse
import random
import struct
import sys
import time

import numpy as np

from .difftest import _Mem, _NullHost, _desc

RAM = 2 << 20


def randomize(cpu, mem, rng: random.Random):
    mem.ram[:] = np.frombuffer(rng.randbytes(RAM), np.uint8)
    cpu.reset()
    mode = rng.randrange(4)
    # GDT with flat ring 0/3 code+data and a TSS, IDT with random gates
    gdt = 0x1000
    descs = [0, _desc(0, 0xFFFFF, 0x9B), _desc(0, 0xFFFFF, 0x93), _desc(0, 0xFFFFF, 0xFB),
             _desc(0, 0xFFFFF, 0xF3), _desc(0x3000, 0x67, 0x89, 0)]
    for i, d in enumerate(descs):
        mem.ram[gdt + 8 * i:gdt + 8 * i + 8] = np.frombuffer(struct.pack("<Q", d), np.uint8)
    cpu.set_gdtr(gdt, 8 * len(descs) - 1)
    cpu.set_idtr(0x2000, rng.choice([0x7FF, 0xFF, rng.randrange(0x800)]))
    for v in range(256):
        if rng.random() < 0.8:
            off = rng.randrange(RAM)
            gate = (off & 0xFFFF) | (0x08 << 16) | ((0x8E00 | rng.choice([0, 0x100, 0x6000])) << 32) \
                | ((off >> 16) << 48)
            mem.ram[0x2000 + 8 * v:0x2008 + 8 * v] = np.frombuffer(struct.pack("<Q", gate), np.uint8)
    mem.ram[0x3004:0x3008] = np.frombuffer(struct.pack("<I", rng.randrange(RAM)), np.uint8)
    mem.ram[0x3008:0x300C] = np.frombuffer(struct.pack("<I", 0x10), np.uint8)
    if mode == 0:       # real mode
        cpu.set_segment("cs", 0x1000, 0x10000, 0xFFFF, 0x9B)
        cpu.set_reg("eip", rng.randrange(0x10000))
        return
    cpu.set_reg("cr0", 0x11)
    cpu.state["seg_sel"][7] = 0x28
    cpu.state["seg_base"][7] = 0x3000
    cpu.state["seg_limit"][7] = 0x67
    cpu.state["seg_flags"][7] = 0x8B
    ring3 = mode == 3
    cpu.set_segment("cs", 0x1B if ring3 else 0x08, 0, 0xFFFFFFFF, 0xC0FB if ring3 else 0xC09B)
    for s in ("ds", "es", "ss", "fs", "gs"):
        cpu.set_segment(s, 0x23 if ring3 else 0x10, 0, 0xFFFFFFFF, 0xC0F3 if ring3 else 0xC093)
    if mode >= 2:       # random page tables over random memory
        pd = 0x4000
        cpu.set_reg("cr3", pd | rng.randrange(0x1000))
        cpu.set_reg("cr4", rng.choice([0, 0x10, 0x90]))
        cpu.set_reg("cr0", 0x80000011 | rng.choice([0, 0x10000]))
        for i in range(1024):
            if rng.random() < 0.5:
                e = (rng.randrange(RAM // 4096) << 12) | rng.getrandbits(9)
                mem.ram[pd + 4 * i:pd + 4 * i + 4] = np.frombuffer(struct.pack("<I", e), np.uint8)
    cpu.set_reg("eip", rng.randrange(RAM))
    cpu.set_reg("esp", rng.getrandbits(32))
    cpu.set_reg("eflags", rng.getrandbits(32) & 0xCD5 | 2)


def run(insns, seed, slice_=20000, out=sys.stdout):
    from .cpu import CPU, TripleFault
    rng = random.Random(seed)
    mem = _Mem(RAM)
    cpu = CPU(mem, _NullHost())
    done = 0
    triples = 0
    resets = 0
    t0 = time.time()
    randomize(cpu, mem, rng)
    while done < insns:
        before = cpu.state["exc_count"]
        try:
            n = cpu.run(slice_)
        except TripleFault:
            triples += 1
            n = 0
        done += max(n, 1)
        if cpu.halted or n == 0 or rng.random() < 0.05 or cpu.state["exc_count"] - before > slice_ // 2:
            randomize(cpu, mem, rng)
            resets += 1
    dt = time.time() - t0
    return {"instructions": done, "triple_faults": triples, "resets": resets, "seconds": dt}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--insns", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    r = run(a.insns, a.seed)
    print(f"fuzz: {r['instructions']} instructions, {r['resets']} re-randomisations, "
          f"{r['triple_faults']} triple faults, {r['seconds']:.1f} s, host OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
