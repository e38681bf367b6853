"""Differential test against unicorn: random instruction sequences per opcode group, in
protected mode with paging and in real mode."""
from __future__ import annotations

import pytest

from pyv86.cpu import difftest

CASES_PER_GROUP = 800
GROUPS = sorted(difftest.GROUPS)


@pytest.mark.parametrize("mode", ["pm", "real"])
@pytest.mark.parametrize("group", GROUPS)
def test_random_cases_match_unicorn(group, mode):
    seed = 1000 + GROUPS.index(group) + (500 if mode == "real" else 0)
    r = difftest.run(CASES_PER_GROUP, seed=seed, groups=[group], mode=mode)
    assert r["cases"] == CASES_PER_GROUP
    assert r["mismatches"] == 0, "\n".join(
        f"{d} | code {c} | regs {rg} flags {fl}\n    " + "\n    ".join(df)
        for _g, c, d, rg, fl, df in r["failures"])


def test_harness_detects_a_wrong_result():
    """The comparison must be able to fail: corrupt pyv86's result and expect a mismatch."""
    h = difftest.Harness(5)
    code = bytes.fromhex("01d8")       # add eax, ebx
    regs = [1, 2, 3, 4, difftest.STACK_TOP, 6, 7, 8]
    assert h.compare(code, regs, 2, 0) == []
    orig = h.run_case

    def corrupted(*a):
        res = orig(*a)
        h.cpu.state["regs"][0] ^= 1
        return res
    h.run_case = corrupted
    assert any("eax" in d for d in h.compare(code, regs, 2, 0))
