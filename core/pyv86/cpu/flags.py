"""EFLAGS semantics, written once: used for lazy materialisation and eager flag updates."""
from __future__ import annotations

import llvmlite.ir as ir

from . import state as S
from .dsl import CC_BASES, MASK, SIGN, V, cc_code, I8


def parity(e, res: V) -> V:
    """PF bit (as i32 0/4) of the low byte of res."""
    fn = e.module.declare_intrinsic("llvm.ctpop", [I8])
    cnt = V(e, e.b.call(fn, [res.tr(8).v]))
    return ((cnt & 1) ^ 1).zx(32) << 2


def szp(e, res: V, size: int) -> V:
    """ZF, SF and PF of a result (i32 with only those bits)."""
    r = res.zx(32) & MASK[size]
    zf = r.eq(0).zx(32) << 6
    sf = ((r >> (size - 1)) & 1) << 7
    return zf | sf | parity(e, r)


def flags_of(e, base: str, size: int, res: V, s1: V, s2: V) -> V:
    """Arithmetic flag bits for the lazy operation ``base`` (all values i32, zero-extended)."""
    m, sb = MASK[size], SIGN[size]
    f = szp(e, res, size)
    if base == "ADD":
        cf = res.ult(s1).zx(32)
        of = (((s1 ^ ~s2) & (s1 ^ res)) & sb).ne(0).zx(32)
        af = (s1 ^ s2 ^ res) & 0x10
    elif base == "SUB":
        cf = s1.ult(s2).zx(32)
        of = (((s1 ^ s2) & (s1 ^ res)) & sb).ne(0).zx(32)
        af = (s1 ^ s2 ^ res) & 0x10
    elif base == "LOGIC":
        return f
    elif base == "INC":
        cf = s2 & 1
        of = res.eq(sb).zx(32)
        af = (s1 ^ 1 ^ res) & 0x10
    elif base == "DEC":
        cf = s2 & 1
        of = res.eq(sb - 1).zx(32)
        af = (s1 ^ 1 ^ res) & 0x10
    elif base == "SHL":
        cf = s2 & 1
        of = cf ^ ((res >> (size - 1)) & 1)
        af = e.c(0)
    elif base == "SHR":
        cf = s2 & 1
        of = (s1 >> (size - 1)) & 1
        af = e.c(0)
    elif base == "SAR":
        cf = s2 & 1
        of = e.c(0)
        af = e.c(0)
    else:
        raise ValueError(base)
    _ = m
    return f | cf | (of << 11) | af


def flags_adc_sbb(e, sub: bool, size: int, a: V, b: V, cin: V, res: V) -> V:
    """Flags of ADC/SBB; a, b, res are size-bit values zero-extended to 32, cin is i32 0/1."""
    sb = SIGN[size]
    a64, b64 = a.zx(64), b.zx(64)
    if sub:
        cf = a64.ult(b64 + cin.zx(64)).zx(32)
        of = (((a ^ b) & (a ^ res)) & sb).ne(0).zx(32)
    else:
        cf = ((a64 + b64 + cin.zx(64)) >> size).ne(0).zx(32)
        of = (((a ^ ~b) & (a ^ res)) & sb).ne(0).zx(32)
    af = (a ^ b ^ res) & 0x10
    return szp(e, res, size) | cf | (of << 11) | af


def emit_cc_compute(e):
    """Body of the ``cc_compute(op, res, src1, src2)`` helper: a switch over every lazy op."""
    op, res, s1, s2 = (V(e, a) for a in e.fn.args[2:6])
    out = e.var(32, 0)
    cases = {}
    for base in CC_BASES:
        for size in (8, 16, 32):
            def mk(base=base, size=size):
                return lambda: out.set(flags_of(e, base, size, res, s1, s2))
            cases[cc_code(base, size)] = mk()
    e.switch(op, cases)
    e.b.ret(out.get().v)


__all__ = ["flags_of", "flags_adc_sbb", "szp", "parity", "emit_cc_compute", "S", "ir"]
