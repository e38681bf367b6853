"""x87 FPU semantics (opcodes D8-DF), written once as one out-of-line helper.

Model: the eight physical registers hold IEEE double precision values (not 80-bit extended;
documented deviation: results are rounded to 53-bit mantissas, the precision-control field is
ignored).  Memory formats m32/m64/m80 and the FNSAVE/FRSTOR/FNSTENV/FLDENV images use the real
layouts (32-bit protected-mode format).  Floating-point exceptions are always treated as
masked (the status word records IE/ZE for invalid operations and division by zero).
"""
from __future__ import annotations

import llvmlite.ir as ir

from . import isa
from . import state as S
from .dsl import F64, I1, I32, I64, V
from .system import helper, args

NAN_INDEF = 0xFFF8000000000000


# --------------------------------------------------------------------------- small helpers
def fconst(e, x: float) -> V:
    return V(e, ir.Constant(F64, x))


def bits2f(e, v: V) -> V:
    return V(e, e.b.bitcast(v.v, F64))


def f2bits(e, f: V) -> V:
    return V(e, e.b.bitcast(f.v, I64))


def fop(e, name, a: V, b: V) -> V:
    return V(e, getattr(e.b, name)(a.v, b.v))


def fcmp(e, op, a: V, b: V) -> V:
    return V(e, e.b.fcmp_unordered(op, a.v, b.v)) if op == "uno" else V(e, e.b.fcmp_ordered(op, a.v, b.v))


def intrinsic(e, name, *vals: V) -> V:
    full = f"llvm.{name}.f64"
    fn = e.module.globals.get(full) or ir.Function(e.module, ir.FunctionType(F64, [F64] * len(vals)), name=full)
    return V(e, e.b.call(fn, [v.v for v in vals]))


def libm(e, name, *vals: V) -> V:
    fn = e.module.globals.get(name) or ir.Function(e.module, ir.FunctionType(F64, [F64] * len(vals)), name=name)
    return V(e, e.b.call(fn, [v.v for v in vals]))


def fsel(e, c: V, a: V, b: V) -> V:
    return V(e, e.b.select(c.bool().v, a.v, b.v))


def top(e) -> V:
    return e.sget("fpu_top") & 7


def st_idx(e, i) -> V:
    return (top(e) + i) & 7


def st_get(e, i) -> V:
    return e.sget("fpr", st_idx(e, i))


def st_set(e, i, val: V):
    idx = st_idx(e, i)
    e.sset("fpr", val, idx)
    e.sset("fpu_tag", e.sget("fpu_tag") & ~(e.c(1) << idx))


def push(e, val: V):
    t = (top(e) - 1) & 7
    e.sset("fpu_top", t)
    e.sset("fpr", val, t)
    e.sset("fpu_tag", e.sget("fpu_tag") & ~(e.c(1) << t))


def pop(e):
    t = top(e)
    e.sset("fpu_tag", e.sget("fpu_tag") | (e.c(1) << t))
    e.sset("fpu_top", (t + 1) & 7)


def set_cc(e, c0, c2, c3, c1=None):
    sw = e.sget("fpu_sw") & ~0x4700
    sw = sw | (c0.zx(32) << 8) | (c2.zx(32) << 10) | (c3.zx(32) << 14)
    if c1 is not None:
        sw = sw | (c1.zx(32) << 9)
    e.sset("fpu_sw", sw)


def flag_sw(e, cond: V, bits):
    e.sset("fpu_sw", e.sget("fpu_sw") | e.sel(cond, e.c(bits), e.c(0)))


def round_cw(e, x: V) -> V:
    """Round to an integral double per the control word rounding field."""
    rc = (e.sget("fpu_cw") >> 10) & 3
    near = intrinsic(e, "rint", x)
    return fsel(e, rc.eq(0), near, fsel(e, rc.eq(1), intrinsic(e, "floor", x),
                                        fsel(e, rc.eq(2), intrinsic(e, "ceil", x), intrinsic(e, "trunc", x))))


def f_to_int(e, x: V, bits) -> V:
    """Convert with rounding; out of range or NaN gives the integer indefinite (masked IE)."""
    r = round_cw(e, x)
    lim = float(1 << (bits - 1))
    ok = fcmp(e, ">=", r, fconst(e, -lim)) & fcmp(e, "<", r, fconst(e, lim))
    iv = V(e, e.b.fptosi(fsel(e, ok, r, fconst(e, 0.0)).v, I64))
    flag_sw(e, ~ok, 1)
    return e.sel(ok, iv, e.c(1 << 63, 64) if bits == 64 else e.c(1 << (bits - 1), 64))


def int_to_f(e, v: V) -> V:
    return V(e, e.b.sitofp(v.sx(64).v, F64))


def f80_to_f64(e, lo: V, hi16: V) -> V:
    sign = (hi16 >> 15).zx(64) & 1
    exp = hi16.zx(64) & 0x7FFF
    mant = lo
    dexp = exp - 16383 + 1023
    frac = (mant << 1) >> 12
    normal = (sign << 63) | (dexp << 52) | frac
    special = (sign << 63) | (0x7FF << 52) | frac
    zero = sign << 63
    inf = (sign << 63) | (0x7FF << 52)
    out = e.sel(exp.eq(0x7FFF), special,
                e.sel(mant.eq(0) | exp.eq(0), zero,
                      e.sel(dexp.sle(0), zero, e.sel(dexp.sge(0x7FF), inf, normal))))
    return bits2f(e, out)


def f64_to_f80(e, f: V):
    b = f2bits(e, f)
    sign = (b >> 63).tr(32)
    dexp = ((b >> 52) & 0x7FF).tr(32)
    frac = b & ((1 << 52) - 1)
    is_zero = dexp.eq(0)
    is_spec = dexp.eq(0x7FF)
    exp = e.sel(is_zero, e.c(0), e.sel(is_spec, e.c(0x7FFF), dexp - 1023 + 16383))
    mant = e.sel(is_zero, e.c(0, 64), (frac << 11) | (1 << 63))
    return mant, ((sign << 15) | exp).tr(16)


def tag_word(e) -> V:
    """Full 16-bit tag word from the values (00 valid, 01 zero, 10 special, 11 empty)."""
    tw = e.c(0)
    empty = e.sget("fpu_tag")
    for i in range(8):
        v = e.sget("fpr", i)
        bits = f2bits(e, v)
        ex = (bits >> 52) & 0x7FF
        t = e.sel((empty >> i) & 1, e.c(3),
                  e.sel((bits << 1).eq(0), e.c(1), e.sel(ex.eq(0x7FF) | ex.eq(0), e.c(2), e.c(0))))
        tw = tw | (t << (2 * i))
    return tw


def status_word(e) -> V:
    return (e.sget("fpu_sw") & ~0x3800) | (top(e) << 11)


# --------------------------------------------------------------------------- memory operands
def rd(e, lin: V, bits) -> V:
    if bits == 64:
        lo = e.read_lin(lin, 32)
        hi = e.read_lin(lin + 4, 32)
        return lo.zx(64) | (hi.zx(64) << 32)
    return e.read_lin(lin, bits)


def wr(e, lin: V, bits, v: V):
    if bits == 64:
        e.write_lin(lin, 32, v.tr(32))
        e.write_lin(lin + 4, 32, (v >> 32).tr(32))
    else:
        e.write_lin(lin, bits, v.tr(bits))


def probe(e, lin: V, nbytes):
    e.probe_write_lin(lin, 8)
    e.probe_write_lin(lin + (nbytes - 1), 8)


def load_m80(e, lin) -> V:
    lo = rd(e, lin, 64)
    hi = e.read_lin(lin + 8, 16)
    return f80_to_f64(e, lo, hi)


def store_m80(e, lin, f: V):
    mant, se = f64_to_f80(e, f)
    wr(e, lin, 64, mant)
    e.write_lin(lin + 8, 16, se)


# --------------------------------------------------------------------------- arithmetic
ARITH_OPS = ("fadd", "fmul", "fcom", "fcomp", "fsub", "fsubr", "fdiv", "fdivr")


def arith(e, n, a: V, b: V) -> V:
    """dest = a op b for ARITH_OPS n (not for compares)."""
    if n == 0:
        return fop(e, "fadd", a, b)
    if n == 1:
        return fop(e, "fmul", a, b)
    if n == 4:
        return fop(e, "fsub", a, b)
    if n == 5:
        return fop(e, "fsub", b, a)
    if n in (6, 7):
        num, den = (a, b) if n == 6 else (b, a)
        zero = fcmp(e, "==", den, fconst(e, 0.0))
        flag_sw(e, zero & ~fcmp(e, "uno", num, num), 4)
        return fop(e, "fdiv", num, den)
    raise ValueError(n)


def compare(e, a: V, b: V):
    unord = fcmp(e, "uno", a, b)
    lt = fcmp(e, "<", a, b)
    eq = fcmp(e, "==", a, b)
    set_cc(e, lt | unord, unord, eq | unord, e.c(0, 1))
    return lt, eq, unord


def set_eflags_cmp(e, lt, eq, unord):
    f = e.flags() & ~(S.ZF | S.PF | S.CF | S.OF | S.SF | S.AF)
    f = f | e.sel(eq | unord, e.c(S.ZF), e.c(0)) | e.sel(unord, e.c(S.PF), e.c(0)) \
        | e.sel(lt | unord, e.c(S.CF), e.c(0))
    e.set_flags_word(f)


def fpu_reg_form(e, op, reg: V, i: V):
    """mod == 3 forms: op = opcode - 0xD8, i = rm (dynamic)."""
    sti = st_get(e, i)
    st0 = st_get(e, 0)
    cases = {}
    if op in (0, 4, 6):   # D8: st0 = st0 op st(i); DC: st(i) = st(i) op st0; DE: ... and pop
        for n in range(8):
            def mk(n=n):
                def f():
                    if n in (2, 3):
                        if op == 0 or (op == 6 and n == 3) or op == 4:
                            compare(e, st0, sti)
                            if n == 3 or op == 6:
                                pop(e)
                                if op == 6:
                                    pop(e)
                        return
                    if op == 0:
                        st_set(e, 0, arith(e, n, st0, sti))
                    else:
                        # DC/DE: reversed sub/div roles (fsubr <-> fsub encodings swap)
                        m = {4: 5, 5: 4, 6: 7, 7: 6}.get(n, n)
                        st_set(e, i, arith(e, m, sti, st0))
                        if op == 6:
                            pop(e)
                return f
            cases[n] = mk()
        e.switch(reg, cases, lambda: e.ud())
        return
    if op == 1:   # D9
        def fld():
            push(e, sti)

        def fxch():
            st_set(e, i, st0)
            st_set(e, 0, sti)

        def fnop():
            with e.if_(i.ne(0)):
                e.ud()

        def fstp1():   # D9 D8+i: undocumented fstp alias
            st_set(e, i, st0)
            pop(e)

        def grp4():
            def chs():
                st_set(e, 0, V(e, e.b.fneg(st0.v)))

            def fabs():
                st_set(e, 0, intrinsic(e, "fabs", st0))

            def ftst():
                compare(e, st0, fconst(e, 0.0))

            def fxam():
                bits = f2bits(e, st0)
                ex = (bits >> 52) & 0x7FF
                fr = bits & ((1 << 52) - 1)
                empty = ((e.sget("fpu_tag") >> st_idx(e, 0)) & 1).ne(0)
                sign = (bits >> 63).ne(0)
                nan = ex.eq(0x7FF) & fr.ne(0)
                inf = ex.eq(0x7FF) & fr.eq(0)
                zero = (bits << 1).eq(0)
                den = ex.eq(0) & ~zero
                # C3 C2 C0: empty 101, nan 001, inf 011, zero 100, denormal 110, normal 010
                c0 = empty | nan | inf
                c2 = ~empty & ~nan & ~zero | den
                c2 = e.sel(empty | nan | zero, e.c(0, 1), e.c(1, 1)) | den
                c3 = empty | zero | den
                set_cc(e, c0, c2, c3, sign)
            return {0: chs, 1: fabs, 4: ftst, 5: fxam}

        def consts():
            import math
            vals = {0: 1.0, 1: math.log2(10), 2: math.log2(math.e), 3: math.pi, 4: math.log10(2),
                    5: math.log(2), 6: 0.0}
            return {k: (lambda v=v: push(e, fconst(e, v))) for k, v in vals.items()}

        def transc():
            def f2xm1():
                st_set(e, 0, fop(e, "fsub", libm(e, "exp2", st0), fconst(e, 1.0)))

            def fyl2x():
                st1 = st_get(e, 1)
                st_set(e, 1, fop(e, "fmul", st1, libm(e, "log2", st0)))
                pop(e)

            def fptan():
                st_set(e, 0, libm(e, "tan", st0))
                push(e, fconst(e, 1.0))
                set_cc(e, e.c(0, 1), e.c(0, 1), e.c(0, 1))

            def fpatan():
                st1 = st_get(e, 1)
                st_set(e, 1, libm(e, "atan2", st1, st0))
                pop(e)

            def fxtract():
                ex = libm(e, "logb", st0)
                sig = fop(e, "fdiv", st0, libm(e, "exp2", ex))
                st_set(e, 0, ex)
                push(e, sig)

            def fprem(ieee):
                def f():
                    st1 = st_get(e, 1)
                    q = fop(e, "fdiv", st0, st1)
                    qi = intrinsic(e, "rint", q) if ieee else intrinsic(e, "trunc", q)
                    r = fop(e, "fsub", st0, fop(e, "fmul", qi, st1))
                    r = libm(e, "remainder", st0, st1) if ieee else libm(e, "fmod", st0, st1)
                    qn = V(e, e.b.fptosi(intrinsic(e, "fabs", qi).v, I64))
                    st_set(e, 0, r)
                    set_cc(e, ((qn >> 2) & 1).ne(0), e.c(0, 1), ((qn >> 1) & 1).ne(0), (qn & 1).ne(0))
                return f

            def fdecstp():
                e.sset("fpu_top", (top(e) - 1) & 7)

            def fincstp():
                e.sset("fpu_top", (top(e) + 1) & 7)

            def fyl2xp1():
                st1 = st_get(e, 1)
                st_set(e, 1, fop(e, "fmul", st1, libm(e, "log2", fop(e, "fadd", st0, fconst(e, 1.0)))))
                pop(e)

            def fsqrt():
                st_set(e, 0, intrinsic(e, "sqrt", st0))

            def fsincos():
                s_ = libm(e, "sin", st0)
                c_ = libm(e, "cos", st0)
                st_set(e, 0, s_)
                push(e, c_)
                set_cc(e, e.c(0, 1), e.c(0, 1), e.c(0, 1))

            def frndint():
                st_set(e, 0, round_cw(e, st0))

            def fscale():
                st1 = st_get(e, 1)
                st_set(e, 0, fop(e, "fmul", st0, libm(e, "exp2", intrinsic(e, "trunc", st1))))

            def fsin():
                st_set(e, 0, libm(e, "sin", st0))
                set_cc(e, e.c(0, 1), e.c(0, 1), e.c(0, 1))

            def fcos():
                st_set(e, 0, libm(e, "cos", st0))
                set_cc(e, e.c(0, 1), e.c(0, 1), e.c(0, 1))
            return {0: f2xm1, 1: fyl2x, 2: fptan, 3: fpatan, 4: fxtract, 5: fprem(True),
                    6: fdecstp, 7: fincstp, 8: fprem(False), 9: fyl2xp1, 10: fsqrt, 11: fsincos,
                    12: frndint, 13: fscale, 14: fsin, 15: fcos}

        e.switch(reg, {
            0: fld, 1: fxch, 2: fnop, 3: fstp1,
            4: lambda: e.switch(i, grp4(), lambda: e.ud()),
            5: lambda: e.switch(i, consts(), lambda: e.ud()),
            6: lambda: e.switch(i, {k: v for k, v in transc().items() if k < 8}, lambda: e.ud()),
            7: lambda: e.switch(i, {k - 8: v for k, v in transc().items() if k >= 8}, lambda: e.ud()),
        })
        return
    if op in (2, 3):   # DA: fcmovb/e/be/u, fucompp ; DB: fcmovnb..., fnclex, fninit, fucomi, fcomi
        conds = {0: 2, 1: 4, 2: 6, 3: 10}   # B, E, BE, P (x86 condition codes)

        def fcmov(n):
            def f():
                c = e.cond(conds[n])
                if op == 3:
                    c = ~c
                with e.if_(c):
                    st_set(e, 0, sti)
            return f
        cases = {n: fcmov(n) for n in range(4)}
        if op == 2:
            def fucompp():
                with e.if_else(i.eq(1)) as (t, o):
                    with t:
                        compare(e, st0, st_get(e, 1))
                        pop(e)
                        pop(e)
                    with o:
                        e.ud()
            cases[5] = fucompp
        else:
            def misc():
                def fnclex():
                    e.sset("fpu_sw", e.sget("fpu_sw") & 0x7F00)

                def fninit():
                    fninit_(e)
                e.switch(i, {0: lambda: None, 1: lambda: None, 2: fnclex, 3: fninit, 4: lambda: None},
                         lambda: e.ud())

            def fcomi():
                set_eflags_cmp(e, *compare(e, st0, sti))
            cases[4] = misc
            cases[5] = fcomi
            cases[6] = fcomi
        e.switch(reg, cases, lambda: e.ud())
        return
    if op == 5:   # DD: ffree, fst, fstp, fucom, fucomp
        def ffree():
            e.sset("fpu_tag", e.sget("fpu_tag") | (e.c(1) << st_idx(e, i)))

        def fst(p):
            def f():
                st_set(e, i, st0)
                if p:
                    pop(e)
            return f

        def fucom(p):
            def f():
                compare(e, st0, sti)
                if p:
                    pop(e)
            return f
        e.switch(reg, {0: ffree, 1: fxch_alias(e, i, st0, sti), 2: fst(False), 3: fst(True),
                       4: fucom(False), 5: fucom(True)}, lambda: e.ud())
        return
    if op == 7:   # DF: fnstsw ax, fucomip, fcomip, ffreep
        def fnstsw_ax():
            with e.if_else(i.eq(0)) as (t, o):
                with t:
                    e.set_reg(0, status_word(e).tr(16), 16)
                with o:
                    e.ud()

        def fcomip():
            set_eflags_cmp(e, *compare(e, st0, sti))
            pop(e)

        def ffreep():
            e.sset("fpu_tag", e.sget("fpu_tag") | (e.c(1) << st_idx(e, i)))
            pop(e)
        e.switch(reg, {0: ffreep, 1: fxch_alias(e, i, st0, sti), 4: fnstsw_ax, 5: fcomip,
                       6: fcomip}, lambda: e.ud())
        return


def fxch_alias(e, i, st0, sti):
    def f():
        st_set(e, i, st0)
        st_set(e, 0, sti)
    return f


def fninit_(e):
    e.sset("fpu_cw", e.c(0x37F))
    e.sset("fpu_sw", e.c(0))
    e.sset("fpu_top", e.c(0))
    e.sset("fpu_tag", e.c(0xFF))
    e.sset("fpu_ip", e.c(0))
    e.sset("fpu_dp", e.c(0))
    e.sset("fpu_op", e.c(0))


def env_store(e, lin: V):
    probe(e, lin, 28)
    vals = [e.sget("fpu_cw") | 0xFFFF0000, status_word(e) | 0xFFFF0000, tag_word(e) | 0xFFFF0000,
            e.sget("fpu_ip"), e.sget("seg_sel", S.CS) | (e.sget("fpu_op") << 16), e.sget("fpu_dp"),
            e.sget("seg_sel", S.DS) | 0xFFFF0000]
    for k, v in enumerate(vals):
        e.write_lin(lin + 4 * k, 32, v)


def env_load(e, lin: V):
    cw = e.read_lin(lin, 32)
    sw = e.read_lin(lin + 4, 32)
    tw = e.read_lin(lin + 8, 32)
    ip = e.read_lin(lin + 12, 32)
    dp = e.read_lin(lin + 20, 32)
    e.sset("fpu_cw", cw & 0xFFFF)
    e.sset("fpu_sw", sw & 0xC7FF)
    e.sset("fpu_top", (sw >> 11) & 7)
    empty = e.c(0)
    for i in range(8):
        empty = empty | (((tw >> (2 * i)) & 3).eq(3).zx(32) << i)
    e.sset("fpu_tag", empty)
    e.sset("fpu_ip", ip)
    e.sset("fpu_dp", dp)


def fpu_mem_form(e, op, reg: V, lin: V):
    cases = {}
    if op in (0, 2, 4, 6):   # arithmetic with m32fp / m32int / m64fp / m16int
        def load():
            if op == 0:
                return bits2f(e, V(e, e.b.bitcast(rd(e, lin, 32).v, ir.FloatType()))) if False else \
                    V(e, e.b.fpext(e.b.bitcast(rd(e, lin, 32).v, ir.FloatType()), F64))
            if op == 4:
                return bits2f(e, rd(e, lin, 64))
            if op == 2:
                return int_to_f(e, rd(e, lin, 32))
            return int_to_f(e, rd(e, lin, 16))
        for n in range(8):
            def mk(n=n):
                def f():
                    m = load()
                    st0 = st_get(e, 0)
                    if n in (2, 3):
                        compare(e, st0, m)
                        if n == 3:
                            pop(e)
                    else:
                        st_set(e, 0, arith(e, n, st0, m))
                return f
            cases[n] = mk()
        e.switch(reg, cases)
        return
    if op == 1:   # D9: fld m32, fst m32, fstp m32, fldenv, fldcw, fnstenv, fnstcw
        def fld():
            push(e, V(e, e.b.fpext(e.b.bitcast(rd(e, lin, 32).v, ir.FloatType()), F64)))

        def fst(p):
            def f():
                v = V(e, e.b.bitcast(e.b.fptrunc(st_get(e, 0).v, ir.FloatType()), I32))
                wr(e, lin, 32, v)
                if p:
                    pop(e)
            return f

        def fldcw():
            e.sset("fpu_cw", rd(e, lin, 16).zx(32))

        def fnstcw():
            wr(e, lin, 16, e.sget("fpu_cw"))
        cases = {0: fld, 2: fst(False), 3: fst(True), 4: lambda: env_load(e, lin), 5: fldcw,
                 6: lambda: env_store(e, lin), 7: fnstcw}
    elif op == 3:   # DB: fild m32, fisttp m32 (#UD), fist m32, fistp m32, fld m80, fstp m80
        def fild():
            push(e, int_to_f(e, rd(e, lin, 32)))

        def fist(p):
            def f():
                probe(e, lin, 4)
                wr(e, lin, 32, f_to_int(e, st_get(e, 0), 32).tr(32))
                if p:
                    pop(e)
            return f

        def fld80():
            push(e, load_m80(e, lin))

        def fstp80():
            probe(e, lin, 10)
            store_m80(e, lin, st_get(e, 0))
            pop(e)
        cases = {0: fild, 2: fist(False), 3: fist(True), 5: fld80, 7: fstp80}
    elif op == 5:   # DD: fld m64, fst m64, fstp m64, frstor, fnsave, fnstsw m16
        def fld():
            push(e, bits2f(e, rd(e, lin, 64)))

        def fst(p):
            def f():
                probe(e, lin, 8)
                wr(e, lin, 64, f2bits(e, st_get(e, 0)))
                if p:
                    pop(e)
            return f

        def frstor():
            env_load(e, lin)
            vals = [load_m80(e, lin + 28 + 10 * k) for k in range(8)]
            t = top(e)
            for k in range(8):
                e.sset("fpr", vals[k], (t + k) & 7)

        def fnsave():
            probe(e, lin, 108)
            env_store(e, lin)
            for k in range(8):
                store_m80(e, lin + 28 + 10 * k, st_get(e, k))
            fninit_(e)

        def fnstsw():
            wr(e, lin, 16, status_word(e))
        cases = {0: fld, 2: fst(False), 3: fst(True), 4: frstor, 6: fnsave, 7: fnstsw}
    elif op == 7:   # DF: fild m16, fist m16, fistp m16, fbld, fild m64, fbstp, fistp m64
        def fild16():
            push(e, int_to_f(e, rd(e, lin, 16)))

        def fild64():
            push(e, V(e, e.b.sitofp(rd(e, lin, 64).v, F64)))

        def fist(bits, p):
            def f():
                probe(e, lin, bits // 8)
                wr(e, lin, bits, f_to_int(e, st_get(e, 0), bits).tr(bits))
                if p:
                    pop(e)
            return f
        cases = {0: fild16, 2: fist(16, False), 3: fist(16, True), 5: fild64, 7: fist(64, True)}
    e.switch(reg, cases, lambda: e.ud())


@helper("fpu", 5)
def h_fpu(e):
    """x87 instruction: op (0-7 = D8-DF), modrm reg, modrm rm, is_mem, linear address."""
    op, reg, rm, is_mem, lin = args(e)
    cases = {}
    for o in range(8):
        def mk(o=o):
            def f():
                with e.if_else(is_mem.ne(0)) as (m, r):
                    with m:
                        fpu_mem_form(e, o, reg, lin)
                    with r:
                        fpu_reg_form(e, o, reg, rm)
            return f
        cases[o] = mk()
    e.switch(op, cases)
    e.b.ret(e.c(0).v)


def _x87(I):
    e = I.e
    cr0 = e.sget("cr", 0)
    e.fault_if((cr0 & 0xC).ne(0), 7)   # EM or TS: #NM
    lin = e.lin(I.seg, I.ea)
    e.sset("fpu_ip", I.insn_start())
    e.sset("fpu_op", ((I.op - 0xD8) << 8) | (I.mod << 6) | (I.reg << 3) | I.rm)
    with e.if_(I.is_mem):
        e.sset("fpu_dp", I.ea)
    e.call("fpu", e.c(I.op - 0xD8), I.reg, I.rm, I.is_mem.zx(32), lin)


for _op in range(0xD8, 0xE0):
    isa.defop(_op, "x87", _x87, modrm=True)
    isa.UNSIZED.add(_op)
