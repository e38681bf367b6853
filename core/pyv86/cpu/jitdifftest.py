"""The differential test against unicorn, run on the block JIT's tier.

The same random cases as :mod:`pyv86.cpu.difftest`, with pyv86's CPU translating every case
before running it (``jit={"sync": True, "threshold": 1}``).  Each case is preceded by a
``jmp $+2`` (in both emulators): the interpreter executes it, which loads the code page into
the TLB, and at its target (the case) the JIT translates everything, so every instruction of
the case runs as translated code; the summary says how many instructions ran translated.

    python -m pyv86.cpu.jitdifftest --cases 20000 --seed 1 [--group alu] [--mode pm|real|both]
"""
from __future__ import annotations

import argparse
import sys

from . import difftest


class JitHarness(difftest.Harness):
    """A harness whose pyv86 CPU runs translated blocks only."""

    def __init__(self, seed=0, mode="pm"):
        super().__init__(seed, mode)
        from .cpu import CPU
        self.cpu = CPU(self.mem, difftest._NullHost(), jit={"sync": True, "threshold": 1,
                                                             "verbose": False})
        self.translated_insns = 0

    def run_case(self, code, regs, flags):
        before = self.cpu.jit.report()["jit_instructions"]
        out = super().run_case(b"\xeb\x00" + code, regs, flags)
        self.translated_insns += self.cpu.jit.report()["jit_instructions"] - before
        return out


def run(cases, seed, groups=None, verbose=False, max_report=10, out=sys.stdout, mode="pm"):
    made = []

    def make(seed_, mode_):
        made.append(JitHarness(seed_, mode_))
        return made[-1]
    r = difftest.run(cases, seed, groups, verbose, max_report, out, mode, harness_cls=make)
    r["translated_insns"] = made[0].translated_insns
    return r


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--group", action="append", choices=list(difftest.GROUPS))
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--mode", choices=["pm", "real", "both"], default="both")
    a = ap.parse_args(argv)
    modes = ["pm", "real"] if a.mode == "both" else [a.mode]
    cases = mism = translated = 0
    secs = 0.0
    for i, mode in enumerate(modes):
        r = run(a.cases // len(modes), a.seed + i, a.group, a.verbose, max_report=50, mode=mode)
        print(f"[{mode}, JIT tier]")
        for g, (n, bad) in r["groups"].items():
            print(f"  {g:14s} {n:8d} cases {bad:6d} mismatches")
        cases += r["cases"]
        mism += r["mismatches"]
        secs += r["seconds"]
        translated += r["translated_insns"]
    print(f"total {cases} cases on the JIT tier ({translated} instructions ran translated), "
          f"{mism} mismatches, {secs:.1f} s (seed {a.seed})")
    return 1 if mism else 0


if __name__ == "__main__":
    sys.exit(main())
