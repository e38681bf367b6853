"""CPU speed: pyv86's native interpreter and its block JIT vs unicorn (QEMU TCG JIT), same
guest code.

    python benchmarks/cpu_mips.py [--insns 50000000] [--json]

The JIT column is steady state: the program first runs a few iterations with the JIT in
``sync`` mode (its loop is translated then), and the measured run starts again from the top
on the same CPU, so translation time is not counted (it is printed separately).

Programs (32-bit flat protected mode; pyv86 also runs them with paging on):
  regloop  add/xor/sub/cmp/inc/dec/jnz on registers (7 instructions per iteration)
  memloop  the same with 3 of 8 instructions touching memory through ModRM+disp8
  strcopy  rep movsd of 16 KiB per iteration (MIPS counts a whole rep as one instruction;
           MB/s is printed too)
"""
from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "core"))

CODE = 0x100000
RAM = 8 << 20


def programs(n_iter):
    # the loop count is in a register the host sets (ecx; ebp for strcopy): the same code
    # runs a short warm-up and then the measured run
    # regloop: ecx = n_iter
    reg = (b"\x01\xd8"                            # add eax, ebx
           + b"\x31\xc2"                            # xor edx, eax
           + b"\x29\xde"                            # sub esi, ebx
           + b"\x39\xc8"                            # cmp eax, ecx
           + b"\x47"                                # inc edi
           + b"\x49"                                # dec ecx
           + b"\x75\xf4"                            # jnz -12
           + b"\xf4")
    mem = (b"\xbd\x00\x00\x20\x00"               # mov ebp,0x200000
           + b"\x01\x5d\x04"                        # add [ebp+4], ebx
           + b"\x8b\x45\x04"                        # mov eax, [ebp+4]
           + b"\x89\x45\x08"                        # mov [ebp+8], eax
           + b"\x31\xc2"                            # xor edx, eax
           + b"\x29\xde"                            # sub esi, ebx
           + b"\x47\x49"                            # inc edi; dec ecx
           + b"\x75\xef"                            # jnz -17
           + b"\xf4")
    nstr = max(1, n_iter // 64)
    strc = (b"\xbe\x00\x00\x30\x00"               # mov esi, 0x300000
            + b"\xbf\x00\x00\x40\x00"               # mov edi, 0x400000
            + b"\xb9\x00\x10\x00\x00"               # mov ecx, 4096
            + b"\xf3\xa5"                           # rep movsd
            + b"\x4d"                               # dec ebp
            + b"\x75\xec"                           # jnz -20
            + b"\xf4")
    return {
        "regloop": (reg, 7 * n_iter, 0, "ecx", n_iter),
        "memloop": (mem, 1 + 8 * n_iter, 0, "ecx", n_iter),
        "strcopy": (strc, 5 * nstr, 16384 * nstr, "ebp", nstr),
    }


def bench_pyv86(code, paging, counter, count, jit=False):
    from pyv86.cpu import CPU
    from pyv86.memory import GuestMemory
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "cpu"))
    from helpers import flat_cpu
    cpu, mem, host = flat_cpu(RAM)
    cpu.set_jit({"sync": True, "threshold": 2, "verbose": False} if jit else False)
    _ = (CPU, GuestMemory)
    mem.write(CODE, code)
    if paging:   # identity map the first 8 MiB with 4 KiB pages
        pd, pt = 0x10000, 0x11000
        for i in range(2):
            mem.write_u32(pd + 4 * i, (pt + 0x1000 * i) | 7)
        for i in range(2048):
            mem.write_u32(pt + 4 * i, (i << 12) | 7)
        cpu.set_reg("cr3", pd)
        cpu.set_reg("cr0", 0x80000011)
    warm = 0.0
    if jit:   # warm-up: a few iterations get the loop translated
        t0 = time.perf_counter()
        cpu.set_reg("eip", CODE)
        cpu.set_reg(counter, 64)
        while not cpu.halted:
            cpu.run(1 << 30)
        warm = time.perf_counter() - t0
        cpu.halted = False
    cpu.set_reg("eip", CODE)
    cpu.set_reg(counter, count)
    t0 = time.perf_counter()
    c0 = time.process_time()
    n = 0
    while not cpu.halted:
        n += cpu.run(1 << 30)
    return n, time.perf_counter() - t0, time.process_time() - c0, warm


def bench_unicorn(code, counter, count):
    from unicorn import Uc, UC_ARCH_X86, UC_MODE_32
    from unicorn import x86_const as X
    uc = Uc(UC_ARCH_X86, UC_MODE_32)
    uc.mem_map(0, RAM)
    uc.mem_write(CODE, code)
    uc.reg_write(getattr(X, f"UC_X86_REG_{counter.upper()}"), count)
    t0 = time.perf_counter()
    c0 = time.process_time()
    uc.emu_start(CODE, CODE + len(code) - 1)
    return time.perf_counter() - t0, time.process_time() - c0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--insns", type=int, default=30_000_000, help="approximate instructions per program")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    progs = programs(max(1, a.insns // 7))
    res = {}
    for name, (code, count, nbytes, counter, loops) in progs.items():
        n, t, ct, _ = bench_pyv86(code, False, counter, loops)
        _, tp, _, _ = bench_pyv86(code, True, counter, loops)
        nj, tj, _, warm = bench_pyv86(code, False, counter, loops, jit=True)
        tu, ctu = bench_unicorn(code, counter, loops)
        assert nj == n, (name, nj, n)
        res[name] = {"instructions": count, "pyv86_retired": n, "pyv86_mips": count / t / 1e6,
                     "pyv86_paging_mips": count / tp / 1e6, "unicorn_mips": count / tu / 1e6,
                     "pyv86_jit_mips": count / tj / 1e6, "jit_translate_s": warm,
                     "pyv86_cpu_time_mips": count / max(ct, 1e-9) / 1e6,
                     "unicorn_cpu_time_mips": count / max(ctu, 1e-9) / 1e6}
        if nbytes:
            res[name]["pyv86_MBps"] = nbytes / t / 1e6
            res[name]["unicorn_MBps"] = nbytes / tu / 1e6
    simple = res["regloop"]
    out = {"pyv86_mips": simple["pyv86_mips"], "unicorn_mips": simple["unicorn_mips"],
           "pyv86_jit_mips": simple["pyv86_jit_mips"],
           "ratio": simple["pyv86_mips"] / simple["unicorn_mips"],
           "jit_ratio": simple["pyv86_jit_mips"] / simple["unicorn_mips"],
           "pyv86_cpu_time_mips": simple["pyv86_cpu_time_mips"],
           "unicorn_cpu_time_mips": simple["unicorn_cpu_time_mips"], "programs": res}
    if a.json:
        print(json.dumps(out))
        return 0
    print(f"{'program':10s} {'pyv86':>10s} {'pyv86+pg':>10s} {'pyv86 JIT':>10s} {'unicorn':>10s} {'ratio':>7s}"
          f" {'pyv86 cpu':>10s} {'unicorn cpu':>11s}   (MIPS; 'cpu' = per CPU-second)")
    for name, r in res.items():
        print(f"{name:10s} {r['pyv86_mips']:10.1f} {r['pyv86_paging_mips']:10.1f} {r['pyv86_jit_mips']:10.1f} "
              f"{r['unicorn_mips']:10.1f} "
              f"{r['pyv86_mips'] / r['unicorn_mips']:7.2f} {r['pyv86_cpu_time_mips']:10.1f} "
              f"{r['unicorn_cpu_time_mips']:11.1f}"
              + (f"   copy: pyv86 {r['pyv86_MBps']:.0f} MB/s, unicorn {r['unicorn_MBps']:.0f} MB/s"
                 if "pyv86_MBps" in r else ""))
    _ = np
    return 0


if __name__ == "__main__":
    sys.exit(main())
