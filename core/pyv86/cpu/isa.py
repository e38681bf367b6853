"""The i686 integer instruction set: decode attributes and semantics, written once.

``OPS[opcode]`` (0x000-0x0FF one-byte map, 0x100-0x1FF the 0F map) holds an :class:`OpDef`
with the decode attributes the generic decoder needs (ModRM present, immediate kind) and the
semantics function ``fn(I)`` that emits the instruction body through the DSL.  ``I`` is the
decoded instruction (see ``codegen.Insn``): ``I.e`` the emitter, ``I.osize`` the operand size
(16/32, a Python constant: every handler is instantiated once per operand size), ``I.reg``,
``I.rm``, ``I.is_mem``, ``I.ea``, ``I.seg`` (ModRM), ``I.imm``, ``I.a32``, ``I.rep``,
``I.dseg`` (DS or the segment override) and ``I.fetch(bits)`` for extra immediates.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from . import state as S
from .dsl import CB_PORT_READ_STR, CB_PORT_WRITE_STR, MASK, SIGN, V, cc_code
from .flags import flags_adc_sbb, szp

IMM_NONE, IMM_B, IMM_W, IMM_Z, IMM_MOFFS = range(5)


@dataclass
class OpDef:
    code: int
    name: str
    modrm: bool
    imm: int
    fn: object
    group: dict = field(default_factory=dict)   # reg field -> mnemonic (documentation)


OPS: dict[int, OpDef] = {}


def op(codes, name, modrm=False, imm=IMM_NONE):
    if isinstance(codes, int):
        codes = [codes]

    def deco(fn):
        for c in codes:
            OPS[c] = OpDef(c, name, modrm, imm, fn)
        return fn
    return deco


def defop(code, name, fn, modrm=False, imm=IMM_NONE):
    OPS[code] = OpDef(code, name, modrm, imm, fn)


# ============================================================================ operands


def rm_read(I, size) -> V:
    e = I.e
    out = e.var(size)
    with e.if_else(I.is_mem) as (m, r):
        with m:
            out.set(e.read(I.seg, I.ea, size))
        with r:
            out.set(e.reg(I.rm, size))
    return out.get()


def rm_write(I, size, v):
    e = I.e
    with e.if_else(I.is_mem) as (m, r):
        with m:
            e.write(I.seg, I.ea, size, v)
        with r:
            e.set_reg(I.rm, v, size)


def rm_probe(I, size):
    with I.e.if_(I.is_mem):
        I.e.probe_write(I.seg, I.ea, size)


def mem_only(I):
    I.e.fault_if(~I.is_mem, 6)


def reg_only(I):
    I.e.fault_if(I.is_mem, 6)


def imm_sx(I, bits_from, size):
    return I.imm.tr(bits_from).sx(size) if bits_from < size else I.imm.tr(size)


def jump(I, target: V):
    e = I.e
    e.lset("eip", target if I.osize == 32 else target & 0xFFFF)


def check_cpl0(I):
    I.e.gp_if(I.e.sget("cpl").ne(0), 0)


def iopl_ok(e) -> V:
    """True when CPL <= IOPL (or real mode)."""
    pe = (e.sget("cr", 0) & 1).ne(0)
    iopl = (e.lget("eflags") >> 12) & 3
    return ~pe | e.sget("cpl").ule(iopl)


# ============================================================================ ALU


ALU_NAMES = ("add", "or", "adc", "sbb", "and", "sub", "xor", "cmp")


def alu(e, n, size, a: V, b: V):
    """ALU op n on a, b (size bits); sets flags; returns the result (also for cmp)."""
    if n == 0:
        r = a + b
        e.set_cc("ADD", size, r, a, b)
    elif n in (1, 4, 6):
        r = a | b if n == 1 else (a & b if n == 4 else a ^ b)
        e.set_cc("LOGIC", size, r, 0, 0)
    elif n in (5, 7):
        r = a - b
        e.set_cc("SUB", size, r, a, b)
    else:
        cin = e.get_cf().zx(size)
        r = a + b + cin if n == 2 else a - b - cin
        e.set_arith_flags(flags_adc_sbb(e, n == 3, size, a.zx(32), b.zx(32), cin.zx(32), r.zx(32)))
    return r


def alu_form(I, n, size, form):
    """form: 'EG' (Eb,Gb / Ev,Gv), 'GE', 'AI' (acc, imm), 'EI' (group 1)."""
    e = I.e
    if form == "EG":
        a = rm_read(I, size)
        if n != 7:
            rm_probe(I, size)
        r = alu(e, n, size, a, e.reg(I.reg, size))
        if n != 7:
            rm_write(I, size, r)
    elif form == "GE":
        b = rm_read(I, size)
        r = alu(e, n, size, e.reg(I.reg, size), b)
        if n != 7:
            e.set_reg(I.reg, r, size)
    elif form == "AI":
        r = alu(e, n, size, e.reg(0, size), I.imm.tr(size))
        if n != 7:
            e.set_reg(0, r, size)


for _n in range(8):
    for _k, (_form, _sz, _imm) in enumerate((("EG", 8, 0), ("EG", 0, 0), ("GE", 8, 0), ("GE", 0, 0),
                                             ("AI", 8, IMM_B), ("AI", 0, IMM_Z))):
        def _mk(n=_n, form=_form, sz=_sz):
            return lambda I: alu_form(I, n, sz or I.osize, form)
        defop(_n * 8 + _k, ALU_NAMES[_n], _mk(), modrm=_form != "AI", imm=_imm)


def grp1(I, size, immbits):
    e = I.e
    b = imm_sx(I, immbits, size)
    a = rm_read(I, size)
    with e.if_(I.reg.ne(7)):
        rm_probe(I, size)
    res = e.var(size)
    cases = {n: (lambda n=n: res.set(alu(e, n, size, a, b))) for n in range(8)}
    e.switch(I.reg, cases)
    with e.if_(I.reg.ne(7)):
        rm_write(I, size, res.get())


defop(0x80, "grp1 Eb,Ib", lambda I: grp1(I, 8, 8), True, IMM_B)
defop(0x82, "grp1 Eb,Ib", lambda I: grp1(I, 8, 8), True, IMM_B)
defop(0x81, "grp1 Ev,Iz", lambda I: grp1(I, I.osize, I.osize), True, IMM_Z)
defop(0x83, "grp1 Ev,Ib", lambda I: grp1(I, I.osize, 8), True, IMM_B)


@op([0x84, 0x85], "test Ev,Gv", modrm=True)
def _test(I):
    size = 8 if I.op == 0x84 else I.osize
    r = rm_read(I, size) & I.e.reg(I.reg, size)
    I.e.set_cc("LOGIC", size, r, 0, 0)


@op([0xA8, 0xA9], "test acc,imm")
def _test_ai(I):
    size = 8 if I.op == 0xA8 else I.osize
    r = I.e.reg(0, size) & I.imm.tr(size)
    I.e.set_cc("LOGIC", size, r, 0, 0)


OPS[0xA8].imm = IMM_B
OPS[0xA9].imm = IMM_Z


def incdec(e, size, a, dec):
    cf = e.get_cf().zx(32)
    r = a - 1 if dec else a + 1
    e.set_cc("DEC" if dec else "INC", size, r, a, cf.tr(size))
    return r


for _r in range(8):
    defop(0x40 + _r, "inc r", lambda I, r=_r: I.e.set_reg(r, incdec(I.e, I.osize, I.e.reg(r, I.osize), False), I.osize))
    defop(0x48 + _r, "dec r", lambda I, r=_r: I.e.set_reg(r, incdec(I.e, I.osize, I.e.reg(r, I.osize), True), I.osize))


# ============================================================================ moves


@op([0x88, 0x89], "mov Ev,Gv", modrm=True)
def _mov_eg(I):
    size = 8 if I.op == 0x88 else I.osize
    rm_write(I, size, I.e.reg(I.reg, size))


@op([0x8A, 0x8B], "mov Gv,Ev", modrm=True)
def _mov_ge(I):
    size = 8 if I.op == 0x8A else I.osize
    I.e.set_reg(I.reg, rm_read(I, size), size)


@op([0xC6, 0xC7], "mov Ev,Iz", modrm=True)
def _mov_ei(I):
    size = 8 if I.op == 0xC6 else I.osize
    I.e.fault_if(I.reg.ne(0), 6)
    rm_write(I, size, I.imm.tr(size))


OPS[0xC6].imm = IMM_B
OPS[0xC7].imm = IMM_Z

for _r in range(8):
    defop(0xB0 + _r, "mov r8,ib", lambda I, r=_r: I.e.set_reg(r, I.imm.tr(8), 8), imm=IMM_B)
    defop(0xB8 + _r, "mov r,iz", lambda I, r=_r: I.e.set_reg(r, I.imm.tr(I.osize), I.osize), imm=IMM_Z)


@op([0xA0, 0xA1, 0xA2, 0xA3], "mov moffs", imm=IMM_MOFFS)
def _mov_moffs(I):
    e = I.e
    size = 8 if I.op in (0xA0, 0xA2) else I.osize
    if I.op <= 0xA1:
        e.set_reg(0, e.read(I.dseg, I.imm, size), size)
    else:
        e.write(I.dseg, I.imm, size, e.reg(0, size))


@op(0x8D, "lea", modrm=True)
def _lea(I):
    reg_only_inv = I.is_mem
    I.e.fault_if(~reg_only_inv, 6)
    I.e.set_reg(I.reg, I.ea.tr(I.osize), I.osize)


@op([0x86, 0x87], "xchg Ev,Gv", modrm=True)
def _xchg(I):
    e = I.e
    size = 8 if I.op == 0x86 else I.osize
    a = rm_read(I, size)
    rm_probe(I, size)
    b = e.reg(I.reg, size)
    rm_write(I, size, b)
    e.set_reg(I.reg, a, size)


for _r in range(1, 8):
    def _xchg_a(I, r=_r):
        a, b = I.e.reg(0, I.osize), I.e.reg(r, I.osize)
        I.e.set_reg(0, b, I.osize)
        I.e.set_reg(r, a, I.osize)
    defop(0x90 + _r, "xchg eax,r", _xchg_a)
defop(0x90, "nop", lambda I: None)


@op([0x1B6, 0x1B7, 0x1BE, 0x1BF], "movzx/movsx", modrm=True)
def _movx(I):
    src = 8 if I.op in (0x1B6, 0x1BE) else 16
    v = rm_read(I, src)
    v = v.sx(I.osize) if I.op >= 0x1BE else v.zx(I.osize)
    I.e.set_reg(I.reg, v, I.osize)


for _c in range(16):
    def _cmov(I, c=_c):
        e = I.e
        v = rm_read(I, I.osize)      # the source is always read (may fault)
        cond = e.cond(c)
        with e.if_(cond):
            e.set_reg(I.reg, v, I.osize)
    defop(0x140 + _c, "cmovcc", _cmov, modrm=True)

    def _setcc(I, c=_c):
        rm_write(I, 8, I.e.cond(c).zx(8))
    defop(0x190 + _c, "setcc", _setcc, modrm=True)

    def _jcc8(I, c=_c):
        e = I.e
        t = e.lget("eip") + I.imm.tr(8).sx(32)
        with e.if_(e.cond(c)):
            jump(I, t)
    defop(0x70 + _c, "jcc rel8", _jcc8, imm=IMM_B)

    def _jcc32(I, c=_c):
        e = I.e
        t = e.lget("eip") + (I.imm if I.osize == 32 else I.imm.tr(16).sx(32))
        with e.if_(e.cond(c)):
            jump(I, t)
    defop(0x180 + _c, "jcc rel", _jcc32, imm=IMM_Z)


@op(0x98, "cbw/cwde")
def _cbw(I):
    e = I.e
    if I.osize == 32:
        e.set_reg(0, e.reg(0, 16).sx(32))
    else:
        e.set_reg(0, e.reg(0, 8).sx(16), 16)


@op(0x99, "cwd/cdq")
def _cwd(I):
    e = I.e
    s = I.osize
    e.set_reg(2, e.reg(0, s).sar(s - 1), s)


for _r in range(8):
    def _bswap(I, r=_r):
        e = I.e
        v = e.reg(r)
        v = ((v & 0xFF) << 24) | ((v & 0xFF00) << 8) | ((v >> 8) & 0xFF00) | (v >> 24)
        if I.osize == 32:
            e.set_reg(r, v)
        else:
            e.set_reg(r, e.c(0), 16)   # undefined; matches QEMU (zero)
    defop(0x1C8 + _r, "bswap", _bswap)


# ============================================================================ stack


for _r in range(8):
    def _push_r(I, r=_r):
        e = I.e
        e.push(e.reg(r, I.osize), I.osize)
    defop(0x50 + _r, "push r", _push_r)

    def _pop_r(I, r=_r):
        e = I.e
        v = e.pop_peek(I.osize)
        e.pop_commit(I.osize // 8)
        e.set_reg(r, v, I.osize)
    defop(0x58 + _r, "pop r", _pop_r)


@op(0x68, "push iz", imm=IMM_Z)
def _push_iz(I):
    I.e.push(I.imm.tr(I.osize), I.osize)


@op(0x6A, "push ib", imm=IMM_B)
def _push_ib(I):
    I.e.push(I.imm.tr(8).sx(I.osize), I.osize)


@op(0x8F, "pop Ev", modrm=True)
def _pop_ev(I):
    e = I.e
    v = e.pop_peek(I.osize)
    # an ESP-based destination address uses the incremented ESP (like hardware and QEMU)
    I.ea = I.ea + e.sel(I.esp_base, e.c(I.osize // 8), e.c(0))
    rm_probe(I, I.osize)       # precise: a faulting store leaves esp unchanged
    e.pop_commit(I.osize // 8)
    rm_write(I, I.osize, v)


@op(0x60, "pusha")
def _pusha(I):
    e = I.e
    s = I.osize
    e.push_probe(8 * s // 8)
    sp = e.reg(4)
    vals = [e.reg(r, s) for r in range(8)]
    vals[4] = sp.tr(s)
    for v in vals:
        e.push(v, s)


@op(0x61, "popa")
def _popa(I):
    e = I.e
    s = I.osize
    n = s // 8
    vals = [e.pop_peek(s, i * n) for i in range(8)]
    e.pop_commit(8 * n)
    for i, r in enumerate((7, 6, 5, 4, 3, 2, 1, 0)):
        if r != 4:
            e.set_reg(r, vals[i], s)


@op(0xC8, "enter", imm=IMM_W)
def _enter(I):
    """All memory accesses happen before ESP/EBP are committed (precise faults)."""
    e = I.e
    s = I.osize
    n = s // 8
    size = I.imm.tr(16).zx(32)
    level = I.fetch(8).zx(32) & 31
    ebp = e.reg(5)
    sp = e.var(32, e.reg(4))

    def push_(v):
        nsp = e.sp_add(sp.get(), -n)
        e.write(S.SS, e.sp_eff(nsp), s, v)
        sp.set(nsp)
    push_(ebp.tr(s))
    frame = sp.get()
    i = e.var(32, 1)
    bp = e.var(32, ebp)

    def body():
        newbp = e.sp_add(bp.get(), -n)
        bp.set(newbp)
        push_(e.read(S.SS, e.sp_eff(newbp), s))
        i.set(i.get() + 1)
    with e.if_(level.ugt(0)):
        e.while_(lambda: i.get().ult(level), body)
        push_(frame.tr(s))
    final = sp.get()
    newsp = final - size
    if s == 32:
        e.set_reg(5, frame)
    else:
        e.set_reg(5, frame, 16)
    e.set_reg(4, e.sel(e.stack32(), newsp, (final & 0xFFFF0000) | (newsp & 0xFFFF)))


@op(0xC9, "leave")
def _leave(I):
    e = I.e
    s = I.osize
    ebp = e.reg(5)
    sp = e.sel(e.stack32(), ebp, (e.reg(4) & 0xFFFF0000) | (ebp & 0xFFFF))
    v = e.read(S.SS, e.sp_eff(sp), s)
    e.set_reg(4, e.sp_add(sp, s // 8))
    e.set_reg(5, v, s)


def push_seg(I, seg):
    e = I.e
    e.push(e.sget("seg_sel", seg).tr(I.osize), I.osize)


def pop_seg(I, seg):
    e = I.e
    v = e.pop_peek(I.osize)
    e.call("load_seg", e.c(seg), v.zx(32) & 0xFFFF)
    e.pop_commit(I.osize // 8)
    if seg == S.SS:
        I.shadow()


for _c, _s in ((0x06, S.ES), (0x0E, S.CS), (0x16, S.SS), (0x1E, S.DS), (0x1A0, S.FS), (0x1A8, S.GS)):
    defop(_c, "push sreg", lambda I, s=_s: push_seg(I, s))
for _c, _s in ((0x07, S.ES), (0x17, S.SS), (0x1F, S.DS), (0x1A1, S.FS), (0x1A9, S.GS)):
    defop(_c, "pop sreg", lambda I, s=_s: pop_seg(I, s))


@op(0x9C, "pushf")
def _pushf(I):
    e = I.e
    f = e.flags() & ~(S.VM | S.RF)
    e.push(f.tr(I.osize), I.osize)


@op(0x9D, "popf")
def _popf(I):
    e = I.e
    v = e.pop_peek(I.osize).zx(32)
    old = e.flags()
    pe = (e.sget("cr", 0) & 1).ne(0)
    cpl = e.sget("cpl")
    iopl = (old >> 12) & 3
    mask = e.c(S.CF | S.PF | S.AF | S.ZF | S.SF | S.TF | S.DF | S.OF | S.NT | S.AC | S.ID)
    mask = mask | e.sel(~pe | cpl.eq(0), e.c(S.IOPL), e.c(0))
    mask = mask | e.sel(~pe | cpl.ule(iopl), e.c(S.IF), e.c(0))
    if I.osize == 16:
        mask = mask & 0xFFFF
    e.pop_commit(I.osize // 8)
    e.set_flags_word((old & ~mask) | (v & mask))


@op(0x9E, "sahf")
def _sahf(I):
    e = I.e
    ah = e.reg(4, 8).zx(32)
    f = e.flags()
    m = S.CF | S.PF | S.AF | S.ZF | S.SF
    e.set_flags_word((f & ~m) | (ah & m))


@op(0x9F, "lahf")
def _lahf(I):
    e = I.e
    e.set_reg(4, (e.flags() & 0xD7 | 2).tr(8), 8)


# ============================================================================ control flow


@op(0xEB, "jmp rel8", imm=IMM_B)
def _jmp8(I):
    jump(I, I.e.lget("eip") + I.imm.tr(8).sx(32))


@op(0xE9, "jmp rel", imm=IMM_Z)
def _jmp(I):
    jump(I, I.e.lget("eip") + (I.imm if I.osize == 32 else I.imm.tr(16).sx(32)))


@op(0xE8, "call rel", imm=IMM_Z)
def _call(I):
    e = I.e
    nxt = e.lget("eip")
    e.push(nxt.tr(I.osize), I.osize)
    jump(I, nxt + (I.imm if I.osize == 32 else I.imm.tr(16).sx(32)))


@op([0xC2, 0xC3], "ret")
def _ret(I):
    e = I.e
    t = e.pop_peek(I.osize).zx(32)
    extra = I.imm.tr(16).zx(32) if I.op == 0xC2 else e.c(0)
    sp = e.sp_add(e.reg(4), I.osize // 8)
    e.set_reg(4, e.sel(e.stack32(), sp + extra, (sp & 0xFFFF0000) | ((sp + extra) & 0xFFFF)))
    jump(I, t)


OPS[0xC2].imm = IMM_W


@op([0xCA, 0xCB], "retf")
def _retf(I):
    e = I.e
    imm = I.imm.tr(16).zx(32) if I.op == 0xCA else e.c(0)
    e.call("ret_far", e.c(1 if I.osize == 32 else 0), imm, e.c(0))


OPS[0xCA].imm = IMM_W


@op(0xCF, "iret")
def _iret(I):
    e = I.e
    e.call("ret_far", e.c(1 if I.osize == 32 else 0), e.c(0), e.c(1))


@op(0xEA, "jmp far", imm=IMM_Z)
def _jmpf(I):
    sel = I.fetch(16).zx(32)
    I.e.call("jmp_far", sel, I.imm.tr(I.osize).zx(32), I.e.c(1 if I.osize == 32 else 0))


@op(0x9A, "call far", imm=IMM_Z)
def _callf(I):
    sel = I.fetch(16).zx(32)
    I.e.call("jmp_far", sel, I.imm.tr(I.osize).zx(32), I.e.c(3 if I.osize == 32 else 2))


def _loop(I, kind):
    e = I.e
    t = e.lget("eip") + I.imm.tr(8).sx(32)
    cnt = e.var(32)
    with e.if_else(I.a32) as (a, b):
        with a:
            if kind == 3:
                cnt.set(e.reg(1))
            else:
                c = e.reg(1) - 1
                e.set_reg(1, c)
                cnt.set(c)
        with b:
            if kind == 3:
                cnt.set(e.reg(1, 16).zx(32))
            else:
                c = e.reg(1, 16) - 1
                e.set_reg(1, c, 16)
                cnt.set(c.zx(32))
    c = cnt.get()
    if kind == 3:
        take = c.eq(0)
    elif kind == 2:
        take = c.ne(0)
    elif kind == 1:
        take = c.ne(0) & e.cond(4)
    else:
        take = c.ne(0) & e.cond(5)
    with e.if_(take):
        jump(I, t)


for _i, _nm in enumerate(("loopnz", "loopz", "loop", "jcxz")):
    defop(0xE0 + _i, _nm, lambda I, k=_i: _loop(I, k), imm=IMM_B)


@op(0xCC, "int3")
def _int3(I):
    I.e.call("soft_int", I.e.c(3), I.e.c(1))


@op(0xCD, "int ib", imm=IMM_B)
def _int(I):
    I.e.call("soft_int", I.imm & 0xFF, I.e.c(1))


@op(0xCE, "into")
def _into(I):
    e = I.e
    with e.if_(e.cond(0)):
        e.call("soft_int", e.c(4), e.c(1))


@op(0xF1, "int1")
def _int1(I):
    I.e.call("soft_int", I.e.c(1), I.e.c(1))


@op(0xF4, "hlt")
def _hlt(I):
    e = I.e
    check_cpl0(I)
    e.sset("halted", e.c(1))
    I.leave_run(S.EXIT_HALT)


@op(0x1A2, "cpuid")
def _cpuid(I):
    I.e.call("cpuid")


@op(0x131, "rdtsc")
def _rdtsc(I):
    e = I.e
    e.gp_if((e.sget("cr", 4) & 4).ne(0) & e.sget("cpl").ne(0), 0)
    t = I.tsc_now()
    e.set_reg(0, t.tr(32))
    e.set_reg(2, (t >> 32).tr(32))


@op(0x130, "wrmsr")
def _wrmsr(I):
    I.sync_tsc_out()
    I.e.call("msr", I.e.c(1))
    I.sync_tsc_in()


@op(0x132, "rdmsr")
def _rdmsr(I):
    I.sync_tsc_out()
    I.e.call("msr", I.e.c(0))


@op(0x134, "sysenter")
def _sysenter(I):
    I.e.call("sysenter", I.e.c(0))


@op(0x135, "sysexit")
def _sysexit(I):
    I.e.call("sysenter", I.e.c(1))


# ============================================================================ flags ops


def _flagop(I, clear, setm, toggle=0):
    e = I.e
    f = e.flags()
    e.set_flags_word(((f & ~clear) | setm) ^ toggle)


defop(0xF5, "cmc", lambda I: _flagop(I, 0, 0, S.CF))
defop(0xF8, "clc", lambda I: _flagop(I, S.CF, 0))
defop(0xF9, "stc", lambda I: _flagop(I, 0, S.CF))
defop(0xFC, "cld", lambda I: I.e.lset("eflags", I.e.lget("eflags") & ~S.DF))
defop(0xFD, "std", lambda I: I.e.lset("eflags", I.e.lget("eflags") | S.DF))


@op(0xFA, "cli")
def _cli(I):
    e = I.e
    e.gp_if(~iopl_ok(e), 0)
    e.lset("eflags", e.lget("eflags") & ~S.IF)


@op(0xFB, "sti")
def _sti(I):
    e = I.e
    e.gp_if(~iopl_ok(e), 0)
    ef = e.lget("eflags")
    with e.if_((ef & S.IF).eq(0)):
        I.shadow()
    e.lset("eflags", ef | S.IF)


@op(0x9B, "fwait")
def _fwait(I):
    e = I.e
    cr0 = e.sget("cr", 0)
    e.fault_if((cr0 & 0xA).eq(0xA), 7)   # TS and MP


# ============================================================================ shifts / rotates


def shift(e, n, size, a: V, cnt: V):
    """Group 2 op n (rol ror rcl rcr shl shr sal sar) of a by cnt (i32, already & 0x1F).
    Returns the result; flags updated; a no-op when cnt == 0."""
    out = e.var(size)
    out.set(a)
    sb = SIGN[size]
    with e.if_(cnt.ne(0)):
        a32 = a.zx(32)
        if n in (4, 6):   # shl
            r64 = a32.zx(64) << cnt.zx(64)
            r = r64.tr(size)
            cf = (r64 >> size).tr(32) & 1
            e.set_cc("SHL", size, r, a, cf.tr(size))
            out.set(r)
        elif n == 5:
            r = (a32 >> cnt).tr(size)
            cf = (a32 >> (cnt - 1)) & 1
            e.set_cc("SHR", size, r, a, cf.tr(size))
            out.set(r)
        elif n == 7:
            s64 = a.sx(64)
            r = s64.sar(cnt.zx(64)).tr(size)
            cf = s64.sar((cnt - 1).zx(64)).tr(32) & 1
            e.set_cc("SAR", size, r, a, cf.tr(size))
            out.set(r)
        elif n in (0, 1):
            c = cnt & (size - 1)
            c64 = c.zx(64)
            w = a32.zx(64)
            if n == 0:
                r = ((w << c64) | (w >> (size - c64))).tr(size)
                cf = r.zx(32) & 1
                of = ((r.zx(32) >> (size - 1)) & 1) ^ cf
            else:
                r = ((w >> c64) | (w << (size - c64))).tr(size)
                cf = (r.zx(32) >> (size - 1)) & 1
                of = cf ^ ((r.zx(32) >> (size - 2)) & 1)
            f = e.flags()
            e.set_flags_word((f & ~(S.CF | S.OF)) | cf | (of << 11))
            out.set(r)
        else:
            mod = {8: 9, 16: 17, 32: 33}[size]
            c = cnt.urem(mod) if size < 32 else cnt
            with e.if_(c.ne(0)):
                f = e.flags()
                cin = f & 1
                w = a32.zx(64) | (cin.zx(64) << size)
                m = (1 << (size + 1)) - 1
                c64 = c.zx(64)
                if n == 2:
                    w2 = ((w << c64) | (w >> (size + 1 - c64))) & m
                else:
                    w2 = ((w >> c64) | (w << (size + 1 - c64))) & m
                r = w2.tr(size)
                cf = (w2 >> size).tr(32) & 1
                rz = r.zx(32)
                if n == 2:
                    of = ((rz >> (size - 1)) & 1) ^ cf
                else:
                    of = ((rz >> (size - 1)) ^ (rz >> (size - 2))) & 1
                e.set_flags_word((f & ~(S.CF | S.OF)) | cf | (of << 11))
                out.set(r)
    _ = sb
    return out.get()


def grp2(I, size, count_kind):
    e = I.e
    if count_kind == "1":
        cnt = e.c(1)
    elif count_kind == "cl":
        cnt = e.reg(1, 8).zx(32) & 0x1F
    else:
        cnt = I.imm & 0x1F
    a = rm_read(I, size)
    rm_probe(I, size)
    res = e.var(size)
    cases = {n: (lambda n=n: res.set(shift(e, n, size, a, cnt))) for n in range(8)}
    e.switch(I.reg, cases)
    rm_write(I, size, res.get())


defop(0xC0, "grp2 Eb,Ib", lambda I: grp2(I, 8, "ib"), True, IMM_B)
defop(0xC1, "grp2 Ev,Ib", lambda I: grp2(I, I.osize, "ib"), True, IMM_B)
defop(0xD0, "grp2 Eb,1", lambda I: grp2(I, 8, "1"), True)
defop(0xD1, "grp2 Ev,1", lambda I: grp2(I, I.osize, "1"), True)
defop(0xD2, "grp2 Eb,CL", lambda I: grp2(I, 8, "cl"), True)
defop(0xD3, "grp2 Ev,CL", lambda I: grp2(I, I.osize, "cl"), True)


def shld_shrd(I, right, cnt):
    e = I.e
    size = I.osize
    cnt = cnt & 0x1F
    a = rm_read(I, size)
    rm_probe(I, size)
    b = e.reg(I.reg, size)
    with e.if_(cnt.ne(0)):
        c64 = cnt.zx(64)
        if size == 32:
            if not right:
                w2 = ((a.zx(64) << 32) | b.zx(64)) << c64
                r = (w2 >> 32).tr(32)
                cf = (a.zx(64) >> (32 - c64)).tr(32) & 1
            else:
                w = (b.zx(64) << 32) | a.zx(64)
                r = (w >> c64).tr(32)
                cf = (w >> (c64 - 1)).tr(32) & 1
        else:
            # 16-bit with counts up to 31: shift the 48-bit value a:b:a (shld) / a:b:a from the
            # low end (shrd), as the hardware and QEMU do
            if not right:
                w = (a.zx(64) << 32) | (b.zx(64) << 16) | a.zx(64)
                w2 = w << c64
                r = (w2 >> 32).tr(16)
                cf = (w2 >> 48).tr(32) & 1
            else:
                w = a.zx(64) | (b.zx(64) << 16) | (a.zx(64) << 32)
                r = (w >> c64).tr(16)
                cf = (w >> (c64 - 1)).tr(32) & 1
        rz = r.zx(32)
        of = ((rz ^ a.zx(32)) >> (size - 1)) & 1
        f = e.flags()
        e.set_flags_word((f & ~S.ARITH) | szp(e, rz, size) | cf | (of << 11))
        rm_write(I, size, r)


defop(0x1A4, "shld Ib", lambda I: shld_shrd(I, False, I.imm), True, IMM_B)
defop(0x1A5, "shld CL", lambda I: shld_shrd(I, False, I.e.reg(1, 8).zx(32)), True)
defop(0x1AC, "shrd Ib", lambda I: shld_shrd(I, True, I.imm), True, IMM_B)
defop(0x1AD, "shrd CL", lambda I: shld_shrd(I, True, I.e.reg(1, 8).zx(32)), True)


# ============================================================================ group 3 / mul / div


def mul_flags(e, size, lo: V, over: V):
    f = e.flags()
    e.set_flags_word((f & ~S.ARITH) | szp(e, lo.zx(32), size) | over.zx(32) | (over.zx(32) << 11))


def grp3(I, size):
    e = I.e
    cases = {}

    def test_():
        imm = I.fetch(size)
        r = rm_read(I, size) & imm
        e.set_cc("LOGIC", size, r, 0, 0)

    def not_():
        a = rm_read(I, size)
        rm_probe(I, size)
        rm_write(I, size, ~a)

    def neg_():
        a = rm_read(I, size)
        rm_probe(I, size)
        r = e.c(0, size) - a
        e.set_cc("SUB", size, r, 0, a)
        rm_write(I, size, r)

    def mul_(signed):
        def f():
            b = rm_read(I, size)
            a = e.reg(0, size)
            ext = (lambda v: v.sx(2 * size)) if signed else (lambda v: v.zx(2 * size))
            p = ext(a) * ext(b)
            lo = p.tr(size)
            hi = (p >> size).tr(size)
            if signed:
                over = p.ne(lo.sx(2 * size))
            else:
                over = hi.ne(0)
            if size == 8:
                e.set_reg(0, p.tr(16), 16)
            else:
                e.set_reg(0, lo, size)
                e.set_reg(2, hi, size)
            mul_flags(e, size, lo, over)
        return f

    def div_(signed):
        def f():
            b = rm_read(I, size)
            if size == 8:
                dividend = e.reg(0, 16)
            else:
                dividend = (e.reg(2, size).zx(2 * size) << size) | e.reg(0, size).zx(2 * size)
            w = 2 * size
            e.fault_if(b.eq(0), 0)
            if signed:
                bd = b.sx(w)
                # guard the host: MIN / -1 overflows the host's idiv
                e.fault_if(bd.eq(MASK[w]) & dividend.eq(SIGN[w]), 0)
                q = dividend.sdiv(bd)
                r = dividend.srem(bd)
                e.fault_if(q.ne(q.tr(size).sx(w)), 0)
            else:
                bd = b.zx(w)
                q = dividend.udiv(bd)
                r = dividend.urem(bd)
                e.fault_if((q >> size).ne(0), 0)
            if size == 8:
                e.set_reg(0, q.tr(8), 8)
                e.set_reg(4, r.tr(8), 8)
            else:
                e.set_reg(0, q.tr(size), size)
                e.set_reg(2, r.tr(size), size)
        return f

    cases = {0: test_, 1: test_, 2: not_, 3: neg_, 4: mul_(False), 5: mul_(True),
             6: div_(False), 7: div_(True)}
    e.switch(I.reg, cases)


defop(0xF6, "grp3 Eb", lambda I: grp3(I, 8), True)
defop(0xF7, "grp3 Ev", lambda I: grp3(I, I.osize), True)


def imul3(I, b: V):
    e = I.e
    size = I.osize
    a = rm_read(I, size)
    p = a.sx(2 * size) * b.sx(2 * size)
    lo = p.tr(size)
    mul_flags(e, size, lo, p.ne(lo.sx(2 * size)))
    e.set_reg(I.reg, lo, size)


defop(0x69, "imul Gv,Ev,Iz", lambda I: imul3(I, I.imm.tr(I.osize)), True, IMM_Z)
defop(0x6B, "imul Gv,Ev,Ib", lambda I: imul3(I, I.imm.tr(8).sx(I.osize)), True, IMM_B)


@op(0x1AF, "imul Gv,Ev", modrm=True)
def _imul2(I):
    e = I.e
    size = I.osize
    b = rm_read(I, size)
    a = e.reg(I.reg, size)
    p = a.sx(2 * size) * b.sx(2 * size)
    lo = p.tr(size)
    mul_flags(e, size, lo, p.ne(lo.sx(2 * size)))
    e.set_reg(I.reg, lo, size)


def grp45(I, size):
    e = I.e
    cases = {}

    def incdec_(dec):
        def f():
            a = rm_read(I, size)
            rm_probe(I, size)
            rm_write(I, size, incdec(e, size, a, dec))
        return f
    cases[0] = incdec_(False)
    cases[1] = incdec_(True)
    if size != 8:
        def call_near():
            t = rm_read(I, size).zx(32)
            e.push(e.lget("eip").tr(size), size)
            jump(I, t)

        def jmp_near():
            jump(I, rm_read(I, size).zx(32))

        def far(call):
            def f():
                mem_only(I)
                off = e.read(I.seg, I.ea, size).zx(32)
                sel = e.read(I.seg, I.ea + size // 8, 16).zx(32)
                e.call("jmp_far", sel, off, e.c((1 if size == 32 else 0) | (2 if call else 0)))
            return f

        def push_():
            e.push(rm_read(I, size), size)
        cases.update({2: call_near, 3: far(True), 4: jmp_near, 5: far(False), 6: push_})
    e.switch(I.reg, cases, lambda: e.ud())


defop(0xFE, "grp4", lambda I: grp45(I, 8), True)
defop(0xFF, "grp5", lambda I: grp45(I, I.osize), True)


# ============================================================================ bit ops


def bt_op(I, n, reg_offset: bool):
    """n: 0 bt, 1 bts, 2 btr, 3 btc."""
    e = I.e
    size = I.osize
    if reg_offset:
        off = e.reg(I.reg, size)
    else:
        off = I.imm.tr(8).zx(size)
    bit = off.zx(32) & (size - 1)
    val = e.var(size)
    addr = e.var(32)
    with e.if_else(I.is_mem) as (m, r):
        with m:
            if reg_offset:
                disp = off.sx(32).sar(3 if size == 8 else (4 if size == 16 else 5)) * (size // 8)
            else:
                disp = e.c(0)
            a = I.ea + disp
            a = e.sel(I.a32, a, a & 0xFFFF)
            addr.set(a)
            val.set(e.read(I.seg, a, size))
            if n != 0:
                e.probe_write(I.seg, a, size)
        with r:
            val.set(e.reg(I.rm, size))
    v = val.get()
    mask = e.c(1, size) << bit.tr(size)
    cf = (v & mask).ne(0)
    if n:
        nv = v | mask if n == 1 else (v & ~mask if n == 2 else v ^ mask)
        with e.if_else(I.is_mem) as (m, r):
            with m:
                e.write(I.seg, addr.get(), size, nv)
            with r:
                e.set_reg(I.rm, nv, size)
    f = e.flags()
    e.set_flags_word((f & ~S.CF) | cf.zx(32))


for _i, _c in enumerate((0x1A3, 0x1AB, 0x1B3, 0x1BB)):
    defop(_c, ("bt", "bts", "btr", "btc")[_i], lambda I, n=_i: bt_op(I, n, True), True)


@op(0x1BA, "grp8 bt Ev,Ib", modrm=True, imm=IMM_B)
def _grp8(I):
    e = I.e
    cases = {}
    for n in range(4):
        cases[4 + n] = (lambda n=n: bt_op(I, n, False))
    e.switch(I.reg, cases, lambda: e.ud())


@op([0x1BC, 0x1BD], "bsf/bsr", modrm=True)
def _bsf(I):
    e = I.e
    size = I.osize
    v = rm_read(I, size)
    f = e.flags()
    zero = v.eq(0)
    import llvmlite.ir as ir
    nm = ("llvm.cttz" if I.op == 0x1BC else "llvm.ctlz") + f".i{size}"
    intr = e.module.globals.get(nm) or ir.Function(
        e.module, ir.FunctionType(v.v.type, [v.v.type, ir.IntType(1)]), name=nm)
    cnt = V(e, e.b.call(intr, [v.v, ir.Constant(ir.IntType(1), 0)]))
    idx = cnt if I.op == 0x1BC else (e.c(size - 1, size) - cnt)
    with e.if_(~zero):
        e.set_reg(I.reg, idx, size)
    e.set_flags_word((f & ~S.ZF) | e.sel(zero, e.c(S.ZF), e.c(0)))


# ============================================================================ atomics


@op([0x1B0, 0x1B1], "cmpxchg", modrm=True)
def _cmpxchg(I):
    e = I.e
    size = 8 if I.op == 0x1B0 else I.osize
    d = rm_read(I, size)
    rm_probe(I, size)
    acc = e.reg(0, size)
    r = acc - d
    e.set_cc("SUB", size, r, acc, d)
    eq = acc.eq(d)
    with e.if_else(eq) as (t, o):
        with t:
            rm_write(I, size, e.reg(I.reg, size))
        with o:
            with e.if_(I.is_mem):
                e.write(I.seg, I.ea, size, d)
            e.set_reg(0, d, size)


@op([0x1C0, 0x1C1], "xadd", modrm=True)
def _xadd(I):
    e = I.e
    size = 8 if I.op == 0x1C0 else I.osize
    d = rm_read(I, size)
    rm_probe(I, size)
    s = e.reg(I.reg, size)
    r = d + s
    e.set_cc("ADD", size, r, d, s)
    e.set_reg(I.reg, d, size)
    rm_write(I, size, r)


@op(0x1C7, "cmpxchg8b", modrm=True)
def _cmpxchg8b(I):
    e = I.e
    e.fault_if(~I.is_mem | I.reg.ne(1), 6)
    lo = e.read(I.seg, I.ea, 32)
    hi = e.read(I.seg, I.ea + 4, 32)
    e.probe_write(I.seg, I.ea, 32)
    e.probe_write(I.seg, I.ea + 4, 32)
    eq = lo.eq(e.reg(0)) & hi.eq(e.reg(2))
    f = e.flags()
    with e.if_else(eq) as (t, o):
        with t:
            e.write(I.seg, I.ea, 32, e.reg(3))
            e.write(I.seg, I.ea + 4, 32, e.reg(1))
        with o:
            e.write(I.seg, I.ea, 32, lo)
            e.write(I.seg, I.ea + 4, 32, hi)
            e.set_reg(0, lo)
            e.set_reg(2, hi)
    e.set_flags_word((f & ~S.ZF) | e.sel(eq, e.c(S.ZF), e.c(0)))


# ============================================================================ BCD


@op(0x27, "daa")
def _daa(I):
    _daa_das(I, False)


@op(0x2F, "das")
def _das(I):
    _daa_das(I, True)


def _daa_das(I, sub):
    e = I.e
    f = e.flags()
    al = e.reg(0, 8).zx(32)
    cf = f & 1
    af = (f & S.AF).ne(0)
    adj_lo = af | (al & 0xF).ugt(9)
    a1 = e.sel(adj_lo, (al - 6 if sub else al + 6) & 0xFF, al)
    af_n = e.sel(adj_lo, e.c(S.AF), e.c(0))
    adj_hi = (cf.ne(0)) | al.ugt(0x99)
    a2 = e.sel(adj_hi, (a1 - 0x60 if sub else a1 + 0x60) & 0xFF, a1)
    cf_n = e.sel(adj_hi, e.c(1), e.c(0))
    if sub:
        # DAS: CF also set if the low adjust borrowed
        cf_n = cf_n | e.sel(adj_lo & al.ult(6), e.c(1), e.c(0))
    else:
        cf_n = cf_n | e.sel(adj_lo & (al + 6).ugt(0xFF), e.c(1), e.c(0))
    e.set_reg(0, a2.tr(8), 8)
    e.set_flags_word((f & ~S.ARITH) | szp(e, a2, 8) | af_n | cf_n)


def _aaa_aas(I, sub):
    e = I.e
    f = e.flags()
    ax = e.reg(0, 16).zx(32)
    al = ax & 0xFF
    adj = (f & S.AF).ne(0) | (al & 0xF).ugt(9)
    if sub:
        t = ax - 6
        nax = e.sel(adj, (t & 0xFF) | ((((t >> 8) - 1) & 0xFF) << 8), ax)
    else:
        nax = e.sel(adj, ax + 0x106, ax)
    nax = nax & 0xFF0F
    e.set_reg(0, nax.tr(16), 16)
    fl = e.sel(adj, e.c(S.AF | S.CF), e.c(0))
    e.set_flags_word((f & ~S.ARITH) | fl | szp(e, nax & 0xFF, 8))


defop(0x37, "aaa", lambda I: _aaa_aas(I, False))
defop(0x3F, "aas", lambda I: _aaa_aas(I, True))


@op(0xD4, "aam", imm=IMM_B)
def _aam(I):
    e = I.e
    base = I.imm & 0xFF
    e.fault_if(base.eq(0), 0)
    al = e.reg(0, 8).zx(32)
    ah = al.udiv(base)
    nal = al.urem(base)
    e.set_reg(0, ((ah << 8) | nal).tr(16), 16)
    f = e.flags()
    e.set_flags_word((f & ~S.ARITH) | szp(e, nal, 8))


@op(0xD5, "aad", imm=IMM_B)
def _aad(I):
    e = I.e
    base = I.imm & 0xFF
    al = e.reg(0, 8).zx(32)
    ah = e.reg(4, 8).zx(32)
    nal = (al + ah * base) & 0xFF
    e.set_reg(0, nal.tr(16), 16)
    f = e.flags()
    e.set_flags_word((f & ~S.ARITH) | szp(e, nal, 8))


@op(0xD7, "xlat")
def _xlat(I):
    e = I.e
    al = e.reg(0, 8).zx(32)
    a = e.sel(I.a32, e.reg(3) + al, (e.reg(3) + al) & 0xFFFF)
    e.set_reg(0, e.read(I.dseg, a, 8), 8)


@op(0x62, "bound", modrm=True)
def _bound(I):
    e = I.e
    mem_only(I)
    s = I.osize
    lo = e.read(I.seg, I.ea, s)
    hi = e.read(I.seg, I.ea + s // 8, s)
    idx = e.reg(I.reg, s)
    e.fault_if(idx.slt(lo) | idx.sgt(hi), 5)


@op(0x63, "arpl", modrm=True)
def _arpl(I):
    e = I.e
    e.fault_if((e.sget("cr", 0) & 1).eq(0), 6)
    d = rm_read(I, 16)
    rm_probe(I, 16)
    s = e.reg(I.reg, 16)
    adj = (d & 3).ult(s & 3)
    f = e.flags()
    with e.if_(adj):
        rm_write(I, 16, (d & ~3) | (s & 3))
    e.set_flags_word((f & ~S.ZF) | e.sel(adj, e.c(S.ZF), e.c(0)))


# ============================================================================ segment registers


@op(0x8C, "mov Ev,Sw", modrm=True)
def _mov_from_sreg(I):
    e = I.e
    e.fault_if(I.reg.ugt(5), 6)
    v = e.sget("seg_sel", I.reg)
    with e.if_else(I.is_mem) as (m, r):
        with m:
            e.write(I.seg, I.ea, 16, v.tr(16))
        with r:
            e.set_reg(I.rm, v.tr(I.osize), I.osize)


@op(0x8E, "mov Sw,Ew", modrm=True)
def _mov_to_sreg(I):
    e = I.e
    e.fault_if(I.reg.ugt(5) | I.reg.eq(1), 6)
    v = rm_read(I, 16).zx(32)
    e.call("load_seg", I.reg, v)
    with e.if_(I.reg.eq(S.SS)):
        I.shadow()


def load_far_ptr(I, seg):
    e = I.e
    mem_only(I)
    s = I.osize
    off = e.read(I.seg, I.ea, s)
    sel = e.read(I.seg, I.ea + s // 8, 16).zx(32)
    e.call("load_seg", e.c(seg), sel)
    e.set_reg(I.reg, off, s)
    if seg == S.SS:
        I.shadow()


for _c, _s in ((0xC4, S.ES), (0xC5, S.DS), (0x1B2, S.SS), (0x1B4, S.FS), (0x1B5, S.GS)):
    defop(_c, "lxs", lambda I, s=_s: load_far_ptr(I, s), True)


# ============================================================================ strings


STR_KINDS = {0xA4: "movs", 0xA5: "movs", 0xA6: "cmps", 0xA7: "cmps", 0xAA: "stos", 0xAB: "stos",
             0xAC: "lods", 0xAD: "lods", 0xAE: "scas", 0xAF: "scas", 0x6C: "ins", 0x6D: "ins",
             0x6E: "outs", 0x6F: "outs"}
REP_CAP = 1 << 16


def io_check(e, port: V, nbytes: int):
    """I/O permission: CPL <= IOPL, or else the TSS I/O permission bitmap (system.io_perm)."""
    with e.if_(~iopl_ok(e), likely=False):
        e.call("io_perm", port, e.c(nbytes))


def string_op(I):
    e = I.e
    kind = STR_KINDS[I.op]
    size = 8 if I.op in (0xA4, 0xA6, 0xAA, 0xAC, 0xAE, 0x6C, 0x6E) else I.osize
    nb = size // 8
    if kind in ("ins", "outs"):
        io_check(e, e.reg(2, 16).zx(32), nb)
    for a32 in (True, False):
        cond = I.a32 if a32 else ~I.a32
        with e.if_(cond):
            _string_body(I, kind, size, nb, a32)


def _string_body(I, kind, size, nb, a32):
    e = I.e
    asz = 32 if a32 else 16
    step = e.sel((e.lget("eflags") & S.DF).ne(0), e.c(-nb), e.c(nb))

    def idx(r):
        return e.reg(r, asz).zx(32)

    def adv(r):
        e.set_reg(r, (e.reg(r, asz).zx(32) + step).tr(asz), asz)

    def one():
        """One element; returns nothing. Faults happen before any register commit."""
        if kind == "movs":
            v = e.read(I.dseg, idx(6), size)
            e.write(S.ES, idx(7), size, v)
            adv(6)
            adv(7)
        elif kind == "stos":
            e.write(S.ES, idx(7), size, e.reg(0, size))
            adv(7)
        elif kind == "lods":
            v = e.read(I.dseg, idx(6), size)
            e.set_reg(0, v, size)
            adv(6)
        elif kind == "cmps":
            b = e.read(S.ES, idx(7), size)      # ES:EDI first (the fault order QEMU uses)
            a = e.read(I.dseg, idx(6), size)
            e.set_cc("SUB", size, a - b, a, b)
            adv(6)
            adv(7)
        elif kind == "scas":
            a = e.reg(0, size)
            b = e.read(S.ES, idx(7), size)
            e.set_cc("SUB", size, a - b, a, b)
            adv(7)
        elif kind == "ins":
            port = e.reg(2, 16).zx(32)
            e.probe_write(S.ES, idx(7), size)
            v = e.port_in(port, nb).tr(size)
            e.write(S.ES, idx(7), size, v)
            adv(7)
        elif kind == "outs":
            port = e.reg(2, 16).zx(32)
            v = e.read(I.dseg, idx(6), size)
            e.port_out(port, nb, v.zx(32))
            adv(6)

    rep = I.rep
    with e.if_else(rep.eq(0)) as (norep, withrep):
        with norep:
            one()
        with withrep:
            it = e.var(32, 0)
            stop = e.var(1, 0)

            def cnt():
                return e.reg(1, asz).zx(32)

            def body():
                if kind in ("ins", "outs") and a32:
                    _io_chunk(I, kind, size, nb, one, it)
                elif kind in ("movs", "stos") and a32:
                    _mem_chunk(I, kind, size, nb, one)
                else:
                    one()
                    e.set_reg(1, (cnt() - 1).tr(asz), asz)
                it.set(it.get() + 1)
                if kind in ("cmps", "scas"):
                    z = e.cond(4)
                    stop.set(e.sel(rep.eq(3), ~z, z))
            e.while_(lambda: cnt().ne(0) & it.get().ult(REP_CAP) & ~stop.get(), body)
            # iteration cap reached: restart the instruction (interruptible like hardware)
            with e.if_(cnt().ne(0) & ~stop.get()):
                e.lset("eip", I.insn_start())


def _within_page(e, lin, nb, count):
    """``count``, or fewer: the ``nb``-byte elements from ``lin`` up to its page's end
    (0 when the first element straddles it)."""
    room = (e.c(4096) - (lin & 0xFFF)).udiv(nb)
    return e.sel(count.ult(room), count, room)


def _io_chunk(I, kind, size, nb, one, it):
    """rep ins/outs: move a whole page-bounded chunk with ONE host call when possible."""
    e = I.e
    import llvmlite.ir as ir
    cnt = e.reg(1)
    df = (e.lget("eflags") & S.DF).ne(0)
    r = 7 if kind == "ins" else 6
    seg = S.ES if kind == "ins" else I.dseg
    lin = e.lin(seg, e.reg(r))
    k = _within_page(e, lin, nb, cnt)
    # a segment needing checks (null, limit, type: state.seg_chk) goes element by element
    chk = e.sget("seg_chk", seg + 8 if kind == "ins" else seg)
    fast = ~df & k.ugt(1) & chk.eq(0)
    with e.if_else(fast) as (t, o):
        with t:
            kind_w = e.cpl_kind() | (1 if kind == "ins" else 0)
            e.call("xlate", lin, kind_w, sync=False)
            phys = e.sget("scratch", 1)
            is_ram = e.sget("scratch", 2).ne(0)
            with e.if_else(is_ram) as (t2, o2):
                with t2:
                    port = e.reg(2, 16).zx(32)
                    ptr = e.b.gep(e.ram, [phys.zx(64).v], inbounds=True)
                    pint = V(e, e.b.ptrtoint(ptr, ir.IntType(64)))
                    # a register window's data port streams device memory natively; a page
                    # holding translated code has no write entry in the TLB, so an ins into
                    # it goes to the host, which tells the JIT
                    writable = e._tlb_hit(lin, 8, kind_w)[0] if kind == "ins" else None
                    served, where = e.data_port(port, nb, k, allowed=writable)
                    with e.if_else(served, likely=True) as (stream, host):
                        with stream:
                            device = e.b.inttoptr(where.v, ptr.type)
                            dst, src = (ptr, device) if kind == "ins" else (device, ptr)
                            move = e.b.module.declare_intrinsic(
                                "llvm.memmove", [dst.type, src.type, ir.IntType(64)])
                            e.b.call(move, [dst, src, (k * nb).zx(64).v, ir.Constant(ir.IntType(1), 0)])
                        with host:
                            e.callback(CB_PORT_READ_STR if kind == "ins" else CB_PORT_WRITE_STR,
                                       port, nb, k, pint)
                    e.set_reg(r, e.reg(r) + k * nb)
                    e.set_reg(1, cnt - k)
                with o2:
                    one()
                    e.set_reg(1, e.reg(1) - 1)
        with o:
            one()
            e.set_reg(1, e.reg(1) - 1)


def _mem_chunk(I, kind, size, nb, one):
    """rep movs/stos with 32-bit addresses: copy or fill up to the next page boundary of
    source and destination at once, when both pages are in the TLB for this access (so they
    are RAM, accessible, dirty where written, and hold no translated code: such pages have no
    write tags) and the segments need no checks.  Element by element otherwise: the first
    element of a page, page-straddling elements, DF=1, and a destination that starts inside
    the source (a forward copy there repeats a pattern, which memmove would not)."""
    e = I.e
    import llvmlite.ir as ir
    cnt = e.reg(1)
    df = (e.lget("eflags") & S.DF).ne(0)
    kind_r = e.cpl_kind()
    dst = e.lin(S.ES, e.reg(7))
    n = _within_page(e, dst, nb, cnt)
    hit_d, idx_d = e._tlb_hit(dst, 8, kind_r | 1, e.sget("seg_chk", S.ES + 8))
    pd = dst + e.sget("tlb_delta", idx_d)      # (used only when the TLB hit)
    ok = ~df & hit_d
    if kind == "movs":
        src = e.lin(I.dseg, e.reg(6))
        n = _within_page(e, src, nb, n)
        hit_s, idx_s = e._tlb_hit(src, 8, kind_r, e.sget("seg_chk", I.dseg))
        ps = src + e.sget("tlb_delta", idx_s)
        repeats = pd.ugt(ps) & pd.ult(ps + n * nb)
        ok = ok & hit_s & ~repeats
    nbytes = n * nb
    with e.if_else(ok & n.ugt(1)) as (fast, slow):
        with fast:
            dptr = e.b.gep(e.ram, [pd.zx(64).v], inbounds=True)
            i64 = ir.IntType(64)
            if kind == "movs":
                sptr = e.b.gep(e.ram, [ps.zx(64).v], inbounds=True)
                move = e.b.module.declare_intrinsic("llvm.memmove", [dptr.type, sptr.type, i64])
                e.b.call(move, [dptr, sptr, nbytes.zx(64).v, ir.Constant(ir.IntType(1), 0)])
                e.set_reg(6, e.reg(6) + nbytes)
            else:
                value = e.reg(0, size)
                if nb == 1:
                    byte = value
                    uniform = e.c(1, 1)
                else:
                    byte = value.tr(8)
                    uniform = value.eq(byte.zx(size) * (0x01010101 & ((1 << size) - 1)))
                with e.if_else(uniform) as (fill, loop):
                    with fill:
                        fill_fn = e.b.module.declare_intrinsic("llvm.memset", [dptr.type, i64])
                        e.b.call(fill_fn, [dptr, byte.v, nbytes.zx(64).v, ir.Constant(ir.IntType(1), 0)])
                    with loop:
                        j = e.var(32, 0)

                        def store():
                            at = pd + j.get() * nb
                            e.b.store(value.v, e.ram_ptr(at, size), align=1)
                            j.set(j.get() + 1)
                        e.while_(lambda: j.get().ult(n), store)
            e.set_reg(7, e.reg(7) + nbytes)
            e.set_reg(1, cnt - n)
        with slow:
            one()
            e.set_reg(1, cnt - 1)


for _c in STR_KINDS:
    defop(_c, STR_KINDS[_c], string_op)


# ============================================================================ port I/O


def _in(I, size, port):
    e = I.e
    io_check(e, port, size // 8)
    v = e.port_in(port, size // 8)
    e.set_reg(0, v.tr(size), size)


def _out(I, size, port):
    e = I.e
    io_check(e, port, size // 8)
    e.port_out(port, size // 8, e.reg(0, size).zx(32))


defop(0xE4, "in al,ib", lambda I: _in(I, 8, I.imm & 0xFF), imm=IMM_B)
defop(0xE5, "in eax,ib", lambda I: _in(I, I.osize, I.imm & 0xFF), imm=IMM_B)
defop(0xE6, "out ib,al", lambda I: _out(I, 8, I.imm & 0xFF), imm=IMM_B)
defop(0xE7, "out ib,eax", lambda I: _out(I, I.osize, I.imm & 0xFF), imm=IMM_B)
defop(0xEC, "in al,dx", lambda I: _in(I, 8, I.e.reg(2, 16).zx(32)))
defop(0xED, "in eax,dx", lambda I: _in(I, I.osize, I.e.reg(2, 16).zx(32)))
defop(0xEE, "out dx,al", lambda I: _out(I, 8, I.e.reg(2, 16).zx(32)))
defop(0xEF, "out dx,eax", lambda I: _out(I, I.osize, I.e.reg(2, 16).zx(32)))


# ============================================================================ 0F system


@op(0x100, "grp6", modrm=True)
def _grp6(I):
    e = I.e
    pe = (e.sget("cr", 0) & 1).ne(0)
    e.fault_if(~pe, 6)

    def store_sel(seg):
        def f():
            v = e.sget("seg_sel", seg)
            with e.if_else(I.is_mem) as (m, r):
                with m:
                    e.write(I.seg, I.ea, 16, v.tr(16))
                with r:
                    e.set_reg(I.rm, v.tr(I.osize), I.osize)
        return f

    def lxx(which):
        def f():
            sel = rm_read(I, 16).zx(32)
            e.call("lldt_ltr", e.c(which), sel)
        return f

    def ver(which):
        def f():
            sel = rm_read(I, 16).zx(32)
            e.call("lar_lsl", e.c(which), sel)
        return f
    e.switch(I.reg, {0: store_sel(S.LDTR), 1: store_sel(S.TR), 2: lxx(0), 3: lxx(1),
                     4: ver(2), 5: ver(3)}, lambda: e.ud())


@op(0x101, "grp7", modrm=True)
def _grp7(I):
    e = I.e

    def sdt(idt):
        def f():
            mem_only(I)
            lim = e.sget("idtr_limit" if idt else "gdtr_limit")
            base = e.sget("idtr_base" if idt else "gdtr_base")
            e.probe_write(I.seg, I.ea, 16)
            e.probe_write(I.seg, I.ea + 2, 32)
            e.write(I.seg, I.ea, 16, lim.tr(16))
            e.write(I.seg, I.ea + 2, 32, base if I.osize == 32 else base & 0xFFFFFF)
        return f

    def ldt(idt):
        def f():
            mem_only(I)
            check_cpl0(I)
            lim = e.read(I.seg, I.ea, 16).zx(32)
            base = e.read(I.seg, I.ea + 2, 32)
            if I.osize == 16:
                base = base & 0xFFFFFF
            e.sset("idtr_limit" if idt else "gdtr_limit", lim)
            e.sset("idtr_base" if idt else "gdtr_base", base)
        return f

    def smsw():
        v = e.sget("cr", 0)
        with e.if_else(I.is_mem) as (m, r):
            with m:
                e.write(I.seg, I.ea, 16, v.tr(16))
            with r:
                e.set_reg(I.rm, v.tr(I.osize), I.osize)

    def lmsw():
        check_cpl0(I)
        v = rm_read(I, 16).zx(32)
        cr0 = e.sget("cr", 0)
        # lmsw can set PE but not clear it; only the low 4 bits change
        nv = (cr0 & ~0xE) | (v & 0xE) | ((cr0 | v) & 1)
        e.call("mov_cr", e.c(0), nv)

    def invlpg():
        mem_only(I)
        e.call("invlpg", e.lin(I.seg, I.ea))
    e.switch(I.reg, {0: sdt(False), 1: sdt(True), 2: ldt(False), 3: ldt(True), 4: smsw,
                     6: lmsw, 7: invlpg}, lambda: e.ud())


@op([0x102, 0x103], "lar/lsl", modrm=True)
def _lar(I):
    e = I.e
    e.fault_if((e.sget("cr", 0) & 1).eq(0), 6)
    sel = rm_read(I, 16).zx(32)
    e.call("lar_lsl", e.c(I.op - 0x102), sel)
    with e.if_(e.sget("scratch", 1).ne(0)):
        e.set_reg(I.reg, e.sget("scratch", 0).tr(I.osize), I.osize)


@op(0x106, "clts")
def _clts(I):
    check_cpl0(I)
    I.e.sset("cr", I.e.sget("cr", 0) & ~8, 0)


defop(0x108, "invd", lambda I: check_cpl0(I))
defop(0x109, "wbinvd", lambda I: check_cpl0(I))
defop(0x10B, "ud2", lambda I: I.e.ud())
for _c in range(0x118, 0x120):
    defop(_c, "nop Ev", lambda I: None, True)


@op([0x120, 0x121, 0x122, 0x123], "mov cr/dr", modrm=True)
def _mov_crdr(I):
    # mod is ignored: always register operands
    e = I.e
    check_cpl0(I)
    n = I.reg
    if I.op == 0x120:
        e.fault_if(n.eq(1) | n.ugt(4), 6)
        e.set_reg(I.rm, e.sget("cr", n))
    elif I.op == 0x122:
        e.fault_if(n.eq(1) | n.ugt(4), 6)
        e.call("mov_cr", n, e.reg(I.rm))
    elif I.op == 0x121:
        v = e.sget("dr", n)
        e.set_reg(I.rm, v)
    else:
        e.sset("dr", e.reg(I.rm), n)


# handlers whose code does not depend on the operand size: emitted once for o16 and o32
UNSIZED = ({_n * 8 + _k for _n in range(8) for _k in (0, 2, 4)}
           | {0x80, 0x82, 0x84, 0x86, 0x88, 0x8A, 0xA8, 0xC0, 0xC6, 0xD0, 0xD2, 0xF6, 0xFE,
              0x1B0, 0x1C0, 0xA4, 0xA6, 0xAA, 0xAC, 0xAE, 0x6C, 0x6E, 0xE4, 0xE6, 0xEC, 0xEE,
              0xF5, 0xF8, 0xF9, 0xFA, 0xFB, 0xFC, 0xFD, 0x9E, 0x9F, 0xD4, 0xD5, 0xD7, 0x27, 0x2F,
              0x37, 0x3F, 0xF4, 0xCC, 0xCD, 0xCE, 0xF1, 0x90, 0x9B, 0x1A2, 0x131, 0x130, 0x132,
              0x134, 0x135, 0x106, 0x108, 0x109, 0x10B, 0x8E, 0x1C7, 0x122, 0x123}
           | set(range(0xB0, 0xB8)) | set(range(0x190, 0x1A0)))


def all_opcodes():
    return sorted(OPS)


__all__ = ["OPS", "OpDef", "IMM_NONE", "IMM_B", "IMM_W", "IMM_Z", "IMM_MOFFS", "cc_code"]
