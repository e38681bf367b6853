"""System semantics (out-of-line helpers): paging and TLB, memory slow paths, exceptions and
interrupt delivery through the IDT, segment loads, far transfers, CRs, MSRs, CPUID.

Each helper is ``i32 name(i8* state, i8* ram, i32 args...)`` returning a status
(0 ok, 1 exception pending in state.exc_*, 2 leave run()).  Values are returned in
``state.scratch``.
"""
from __future__ import annotations

from . import state as S
from .dsl import (CB_MMIO_READ, CB_MMIO_WRITE, ST_EXIT, ST_FAULT, ST_OK, V)

HELPERS: dict[str, tuple[int, object]] = {}


def helper(name, nargs):
    def deco(fn):
        HELPERS[name] = (nargs, fn)
        return fn
    return deco


def args(e):
    return [V(e, a) for a in e.fn.args[2:]]


PG, WP, PE, TS, EM = 0x80000000, 0x10000, 1, 8, 4
CR4_PSE, CR4_PGE, CR4_TSD = 0x10, 0x80, 0x4

# ---------------------------------------------------------------------------- physical memory


def phys_read32(e, addr: V) -> V:
    """Read a page-table entry: RAM only, MMIO reads as 0 (not present)."""
    ok = (addr + 4).ule(e.sget("ram_size")) & addr.ult(0xFFFFFFFC)
    out = e.var(32, 0)
    with e.if_(ok):
        out.set(V(e, e.b.load(e.ram_ptr(addr, 32), align=4)))
    return out.get()


def phys_write32(e, addr: V, value: V):
    ok = (addr + 4).ule(e.sget("ram_size")) & addr.ult(0xFFFFFFFC)
    with e.if_(ok):
        e.b.store(value.v, e.ram_ptr(addr, 32), align=4)


# ---------------------------------------------------------------------------- TLB


@helper("tlb_flush", 1)
def h_tlb_flush(e):
    (all_,) = args(e)
    i = e.var(32, 0)

    def body():
        idx = i.get()
        with e.if_(all_.ne(0) | e.sget("tlb_global", idx).eq(0)):
            for k in range(S.TLB_KINDS):
                e.sset("tlb_tag", e.c(0), idx + k * S.TLB_SIZE)
        i.set(idx + 1)
    e.while_(lambda: i.get().ult(S.TLB_SIZE), body)
    e.b.ret(e.c(0).v)


def tlb_invalidate_page(e, lin: V):
    idx = (lin >> 12) & (S.TLB_SIZE - 1)
    for k in range(S.TLB_KINDS):
        e.sset("tlb_tag", e.c(0), idx + k * S.TLB_SIZE)


def page_fault(e, lin: V, kind: V, present: V):
    e.sset("cr", lin, 2)
    code = present.zx(32) | ((kind & 1) << 1) | ((kind >> 1) << 2)
    e.fault(14, code)


@helper("xlate", 2)
def h_xlate(e):
    """Translate linear ``lin`` for access ``kind`` (bit0 write, bit1 user).

    scratch[1] = physical address, scratch[2] = 1 if RAM.  Fills the TLB for RAM pages."""
    lin, kind = args(e)
    cr0 = e.sget("cr", 0)
    phys = e.var(32)
    idx = (lin >> 12) & (S.TLB_SIZE - 1)
    vpage = lin & ~0xFFF
    # tags to fill: bit k set = kind k allowed
    allow = e.var(32, 0)
    glob = e.var(32, 0)
    with e.if_else((cr0 & PG).eq(0)) as (then, other):
        with then:
            phys.set(lin)
            allow.set(e.c(0xF))
        with other:
            cr4 = e.sget("cr", 4)
            write = (kind & 1).ne(0)
            user = (kind & 2).ne(0)
            wp = (cr0 & WP).ne(0)
            pde_addr = (e.sget("cr", 3) & ~0xFFF) | ((lin >> 20) & 0xFFC)
            pde = phys_read32(e, pde_addr)
            with e.if_((pde & 1).eq(0), likely=False):
                page_fault(e, lin, kind, e.c(0, 1))
            # accessed bit in the PDE (set even if the walk faults later, like QEMU)
            with e.if_((pde & 0x20).eq(0)):
                phys_write32(e, pde_addr, pde | 0x20)
            big = (pde & 0x80).ne(0) & (cr4 & CR4_PSE).ne(0)
            perm = e.var(32)
            leaf = e.var(32)
            leaf_addr = e.var(32)
            with e.if_else(big) as (t2, o2):
                with t2:
                    perm.set(pde)
                    leaf.set(pde)
                    leaf_addr.set(pde_addr)
                    phys.set((pde & 0xFFC00000) | (lin & 0x3FF000))
                with o2:
                    pte_addr = (pde & ~0xFFF) | ((lin >> 10) & 0xFFC)
                    pte = phys_read32(e, pte_addr)
                    with e.if_((pte & 1).eq(0), likely=False):
                        page_fault(e, lin, kind, e.c(0, 1))
                    perm.set(pde & pte | ~6)
                    leaf.set(pte)
                    leaf_addr.set(pte_addr)
                    phys.set(pte & ~0xFFF)
            p = perm.get()
            u_ok = (p & 4).ne(0)
            rw = (p & 2).ne(0)
            lf = leaf.get()
            denied = (user & ~u_ok) | (write & user & ~rw) | (write & ~user & wp & ~rw)
            with e.if_(denied, likely=False):
                page_fault(e, lin, kind, e.c(1, 1))
            newlf = lf | 0x20 | e.sel(write, e.c(0x40), e.c(0))
            with e.if_(newlf.ne(lf)):
                phys_write32(e, leaf_addr.get(), newlf)
            dirty = (newlf & 0x40).ne(0)
            sw = (rw | ~wp) & dirty
            uw = u_ok & rw & dirty
            allow.set(e.c(1) | (sw.zx(32) << 1) | (u_ok.zx(32) << 2) | (uw.zx(32) << 3))
            glob.set(((lf & 0x100).ne(0) & (cr4 & CR4_PGE).ne(0)).zx(32))
    ph = phys.get() | (lin & 0xFFF)
    e.sset("scratch", ph, 1)
    is_ram = (ph & ~0xFFF).ult(e.sget("ram_size"))
    e.sset("scratch", is_ram.zx(32), 2)
    with e.if_(is_ram):
        e.sset("tlb_delta", (ph & ~0xFFF) - vpage, idx)
        e.sset("tlb_global", glob.get().tr(8), idx)
        a = allow.get()
        # pages holding translated code get no write tags: writes take mem_slow (see below)
        a = e.sel(is_code_page(e, ph), a & 0x5, a)
        for k in range(S.TLB_KINDS):
            e.sset("tlb_tag", e.sel((a >> k) & 1, vpage | 1, e.c(0)), idx + k * S.TLB_SIZE)
    e.b.ret(e.c(0).v)


def xlate(e, lin, kind):
    """Call xlate; returns (phys, is_ram:i1)."""
    e.call("xlate", lin, kind, sync=False)
    return e.sget("scratch", 1), e.sget("scratch", 2).ne(0)


def _ram_access(e, phys: V, nbytes: V, write: bool, value: V | None = None) -> V:
    out = e.var(32, 0)
    cases = {}
    for n, bits in ((1, 8), (2, 16), (4, 32)):
        def mk(bits=bits):
            def f():
                p = e.ram_ptr(phys, bits)
                if write:
                    e.b.store(value.tr(bits).v, p, align=1)
                else:
                    out.set(V(e, e.b.load(p, align=1)).zx(32))
            return f
        cases[n] = mk()
    e.switch(nbytes, cases)
    return out.get()


def _code_lines_ptr(e, phys: V):
    import llvmlite.ir as ir
    p = e.sget("jit_code_pages") + (phys >> 12).zx(64) * 8
    return e.b.inttoptr(p.v, ir.IntType(64).as_pointer())


def code_lines(e, phys: V) -> V:
    """i64: which 64-byte lines of RAM page ``phys`` hold translated code (0 without the JIT)."""
    out = e.var(64, 0)
    with e.if_(e.sget("jit_on").ne(0)):
        out.set(V(e, e.b.load(_code_lines_ptr(e, phys))))
    return out.get()


def is_code_page(e, phys: V) -> V:
    """i1: the JIT has translations from RAM page ``phys`` (RAM addresses only)."""
    return code_lines(e, phys).ne(0)


def invalidate_code(e, phys: V, nbytes: V, value: V):
    """Before a write of ``nbytes`` at RAM address ``phys``: if it changes bytes of a 64-byte
    line that translated code came from, make the page's translations stale (bump its
    generation) and set state.smc so a running block stops after this instruction.  Writes
    elsewhere in the page, or of the bytes already there, leave them alone."""
    import llvmlite.ir as ir
    lines = code_lines(e, phys)
    with e.if_(lines.ne(0), likely=False):
        first = (phys >> 6) & 63
        last = ((phys + nbytes - 1) >> 6) & 63
        hit = ((lines >> first.zx(64)) | (lines >> last.zx(64))) & 1
        same = _ram_access(e, phys, nbytes, False).eq(value & (e.sel(nbytes.eq(4), e.c(0xFFFFFFFF), (e.c(1) << (nbytes << 3)) - 1)))
        with e.if_(hit.ne(0) & ~same):
            e.b.store(ir.Constant(ir.IntType(64), 0), _code_lines_ptr(e, phys))
            gp = e.b.inttoptr((e.sget("jit_page_gen") + (phys >> 12).zx(64) * 4).v,
                              ir.IntType(32).as_pointer())
            e.b.store((V(e, e.b.load(gp)) + 1).v, gp)
            e.sset("smc", e.c(1))


def _phys_access(e, phys, is_ram, nbytes, write, value=None):
    out = e.var(32, 0)
    with e.if_else(is_ram) as (then, other):
        with then:
            if write:
                invalidate_code(e, phys, nbytes, value)
            out.set(_ram_access(e, phys, nbytes, write, value))
        with other:
            if write:
                e.callback(CB_MMIO_WRITE, phys, nbytes, value)
            else:
                out.set(e.callback(CB_MMIO_READ, phys, nbytes).tr(32))
    return out.get()


@helper("mem_slow", 4)
def h_mem_slow(e):
    """Access nbytes (1/2/4) at linear lin; kind bit0 = write; value for writes.
    Read results go to scratch[0]."""
    lin, nbytes, kind, value = args(e)
    last = lin + nbytes - 1
    crossing = ((lin ^ last) & ~0xFFF).ne(0)
    write = kind & 1
    with e.if_else(crossing) as (then, other):
        with then:
            xlate(e, lin, kind)
            xlate(e, last & ~0xFFF, kind)
            i = e.var(32, 0)
            acc = e.var(32, 0)

            def body():
                k = i.get()
                ph, ram = xlate(e, lin + k, kind)
                with e.if_else(write.ne(0)) as (t2, o2):
                    with t2:
                        _phys_access(e, ph, ram, e.c(1), True, (value >> (k << 3)) & 0xFF)
                    with o2:
                        b = _phys_access(e, ph, ram, e.c(1), False)
                        acc.set(acc.get() | ((b & 0xFF) << (k << 3)))
                i.set(k + 1)
            e.while_(lambda: i.get().ult(nbytes), body)
            e.sset("scratch", acc.get(), 0)
        with other:
            ph, ram = xlate(e, lin, kind)
            with e.if_else(write.ne(0)) as (t2, o2):
                with t2:
                    _phys_access(e, ph, ram, nbytes, True, value)
                with o2:
                    e.sset("scratch", _phys_access(e, ph, ram, nbytes, False), 0)
    e.b.ret(e.c(0).v)


@helper("mem_probe", 3)
def h_mem_probe(e):
    lin, nbytes, kind = args(e)
    last = lin + nbytes - 1
    xlate(e, lin, kind)
    with e.if_(((lin ^ last) & ~0xFFF).ne(0)):
        xlate(e, last & ~0xFFF, kind)
    e.b.ret(e.c(0).v)


@helper("fetch_slow", 2)
def h_fetch_slow(e):
    """Fetch nbytes at linear lin (code).  Fills state cp_* for the fast fetch path."""
    lin, nbytes = args(e)
    kind = e.cpl_kind()
    e.call("mem_slow", lin, nbytes, kind, e.c(0), sync=False)
    e.b.ret(e.c(0).v)


# ---------------------------------------------------------------------------- descriptors


def desc_base(e, lo, hi):
    return (lo >> 16) | ((hi & 0xFF) << 16) | (hi & 0xFF000000)


def desc_limit(e, lo, hi):
    lim = (lo & 0xFFFF) | (hi & 0xF0000)
    return e.sel((hi & 0x800000).ne(0), (lim << 12) | 0xFFF, lim)


def desc_flags(e, hi):
    return (hi >> 8) & 0xF0FF


def read_desc(e, sel: V, vec=13):
    """Read the descriptor for sel; faults vec(sel & ~3) beyond the table limit.
    Returns (lo, hi, addr)."""
    ti = (sel & 4).ne(0)
    base = e.sel(ti, e.sget("seg_base", S.LDTR), e.sget("gdtr_base"))
    limit = e.sel(ti, e.sget("seg_limit", S.LDTR), e.sget("gdtr_limit"))
    e.fault_if((sel | 7).ugt(limit), vec, sel & 0xFFFC)
    addr = base + (sel & ~7)
    lo = e.read_lin(addr, 32, e.c(0))
    hi = e.read_lin(addr + 4, 32, e.c(0))
    return lo, hi, addr


def set_accessed(e, hi, addr):
    with e.if_((hi & 0x100).eq(0)):
        e.write_lin(addr + 4, 32, hi | 0x100, e.c(0))


def push_far_return(e, wide: V, cs: V, ret: V):
    """Far call: push the caller's CS and return offset as two dwords or two words, after
    probing that both fit (no partial push on a fault)."""
    with e.if_else(wide) as (t, o):
        with t:
            e.push_probe(8)
            e.push(cs, 32)
            e.push(ret, 32)
        with o:
            e.push_probe(4)
            e.push(cs.tr(16), 16)
            e.push(ret.tr(16), 16)


def set_seg(e, seg: int, sel: V, base: V, limit: V, flags: V):
    """Load a segment register's selector and descriptor cache (protected-mode form)."""
    e.sset("seg_sel", sel & 0xFFFF, seg)
    e.sset("seg_base", base, seg)
    e.sset("seg_limit", limit, seg)
    e.sset("seg_flags", flags, seg)
    if seg == S.CS:
        e.sset("code32", (flags >> 14) & 1)
    elif seg == S.SS:
        e.sset("stack32", (flags >> 14) & 1)
    if seg <= S.GS:
        r_chk, w_chk = seg_chk_of(e, limit, flags)
        e.sset("seg_chk", r_chk, seg)
        e.sset("seg_chk", w_chk, seg + 8)


def seg_chk_of(e, limit: V, flags: V):
    """state.seg_chk values (read, write) for a descriptor cache: 0 lets the TLB fast path
    serve the access, 2 sends every access through ``seg_slow`` (null/unusable segment,
    limit below 4 GiB, expand-down, not readable / not writable)."""
    present = (flags & 0x80).ne(0)
    data = (flags & 0x18).eq(0x10)
    code = (flags & 0x18).eq(0x18)
    flat = present & limit.eq(0xFFFFFFFF) & ~(data & (flags & 4).ne(0))
    r_ok = flat & (data | (code & (flags & 2).ne(0)))
    w_ok = flat & data & (flags & 2).ne(0)
    return e.sel(r_ok, e.c(0), e.c(2)), e.sel(w_ok, e.c(0), e.c(2))


def set_seg_real(e, seg, sel: V):
    """Real-mode segment load: base = sel << 4; limit and attributes stay cached (unreal
    mode) and are not checked in real mode."""
    sel = sel & 0xFFFF
    e.sset("seg_sel", sel, seg)
    e.sset("seg_base", sel << 4, seg)
    e.sset("seg_chk", e.c(0), seg)
    e.sset("seg_chk", e.c(0), seg + 8)


def seg_access_check(e, seg: V, off: V, nbytes: V, write: V):
    """Protected-mode checks of a data access through segment register ``seg``: unusable
    (null) segment, type (read of execute-only code, write to code or read-only data) and
    limit (expand-up and expand-down).  #SS(0) for SS, #GP(0) otherwise."""
    fl = e.sget("seg_flags", seg)
    limit = e.sget("seg_limit", seg)
    vec = e.sel(seg.eq(S.SS), e.c(12), e.c(13))
    e.fault_if((fl & 0x80).eq(0), vec, 0)
    data = (fl & 0x18).eq(0x10)
    code = (fl & 0x18).eq(0x18)
    writable = data & (fl & 2).ne(0)
    readable = data | (code & (fl & 2).ne(0))
    e.fault_if(e.sel(write, ~writable, ~readable), vec, 0)
    last = off + nbytes - 1
    wrap = last.ult(off)
    down = data & (fl & 4).ne(0)
    upper = e.sel((fl & 0x4000).ne(0), e.c(0xFFFFFFFF), e.c(0xFFFF))
    bad_up = wrap | last.ugt(limit)
    bad_down = wrap | off.ule(limit) | last.ugt(upper)
    e.fault_if(e.sel(down, bad_down, bad_up), vec, 0)


@helper("seg_slow", 5)
def h_seg_slow(e):
    """Slow path of a segment-relative access (TLB miss, or a segment with seg_chk set):
    args seg, offset, nbytes, kind (bit0 write), value; read result in scratch[0]."""
    seg, off, nbytes, kind, value = args(e)
    write = kind & 1
    with e.if_(e.sget("seg_chk", seg + (write << 3)).ne(0), likely=False):
        seg_access_check(e, seg, off, nbytes, write.ne(0))
    e.call("mem_slow", e.sget("seg_base", seg) + off, nbytes, kind, value, sync=False)
    e.b.ret(e.c(0).v)


@helper("seg_probe", 4)
def h_seg_probe(e):
    """Write probe through a segment: args seg, offset, nbytes, kind."""
    seg, off, nbytes, kind = args(e)
    with e.if_(e.sget("seg_chk", seg + 8).ne(0), likely=False):
        seg_access_check(e, seg, off, nbytes, e.c(1, 1))
    e.call("mem_probe", e.sget("seg_base", seg) + off, nbytes, kind | 1, sync=False)
    e.b.ret(e.c(0).v)


def protected(e) -> V:
    return (e.sget("cr", 0) & PE).ne(0)


def load_cs(e, sel, lo, hi, cpl: V):
    set_seg(e, S.CS, (sel & 0xFFFC) | cpl, desc_base(e, lo, hi), desc_limit(e, lo, hi), desc_flags(e, hi))
    e.sset("cpl", cpl)


@helper("load_seg", 2)
def h_load_seg(e):
    """Load data/stack segment register ``seg`` (runtime index) with selector ``sel``."""
    seg, sel = args(e)
    sel = sel & 0xFFFF
    with e.if_else(protected(e)) as (then, other):
        with other:
            for s in (0, 2, 3, 4, 5):
                with e.if_(seg.eq(s)):
                    set_seg_real(e, s, sel)
            with e.if_(seg.eq(S.SS)):
                pass
        with then:
            cpl = e.sget("cpl")
            rpl = sel & 3
            is_ss = seg.eq(S.SS)
            null = (sel & 0xFFFC).eq(0)
            with e.if_(null):
                e.gp_if(is_ss, 0)
                for s in (0, 3, 4, 5):
                    with e.if_(seg.eq(s)):
                        set_seg(e, s, sel, e.c(0), e.c(0), e.c(0))
                e.b.ret(e.c(0).v)
                e.dead()
            lo, hi, addr = read_desc(e, sel)
            typ = (hi >> 8) & 0x1F  # S + type
            dpl = (hi >> 13) & 3
            present = (hi & 0x8000).ne(0)
            is_data = (typ & 0x18).eq(0x10)
            writable = is_data & (typ & 2).ne(0)
            is_code = (typ & 0x18).eq(0x18)
            readable_code = is_code & (typ & 2).ne(0)
            conforming = is_code & (typ & 4).ne(0)
            with e.if_else(is_ss) as (t2, o2):
                with t2:
                    e.gp_if(rpl.ne(cpl) | dpl.ne(cpl) | ~writable, sel & 0xFFFC)
                    e.fault_if(~present, 12, sel & 0xFFFC)
                with o2:
                    e.gp_if(~(is_data | readable_code), sel & 0xFFFC)
                    maxp = e.sel(rpl.ugt(cpl), rpl, cpl)
                    e.gp_if(~conforming & dpl.ult(maxp), sel & 0xFFFC)
                    e.fault_if(~present, 11, sel & 0xFFFC)
            set_accessed(e, hi, addr)
            hi = hi | 0x100
            for s in (0, 2, 3, 4, 5):
                with e.if_(seg.eq(s)):
                    set_seg(e, s, sel, desc_base(e, lo, hi), desc_limit(e, lo, hi), desc_flags(e, hi))
    e.b.ret(e.c(0).v)


def check_code_desc(e, sel, lo, hi, cpl_target: V, jump: bool):
    """Checks for a far jmp/call target code segment. Returns new CPL."""
    typ = (hi >> 8) & 0x1F
    dpl = (hi >> 13) & 3
    rpl = sel & 3
    e.gp_if((sel & 0xFFFC).eq(0), 0)
    is_code = (typ & 0x18).eq(0x18)
    e.gp_if(~is_code, sel & 0xFFFC)
    conforming = (typ & 4).ne(0)
    cpl = e.sget("cpl")
    bad = e.sel(conforming, dpl.ugt(cpl), rpl.ugt(cpl) | dpl.ne(cpl))
    e.gp_if(bad, sel & 0xFFFC)
    e.fault_if((hi & 0x8000).eq(0), 11, sel & 0xFFFC)
    return cpl


@helper("jmp_far", 3)
def h_jmp_far(e):
    """far jmp/call: sel, offset, flags (bit0 o32, bit1 call)."""
    sel, off, fl = args(e)
    o32 = (fl & 1).ne(0)
    call = (fl & 2).ne(0)
    sel = sel & 0xFFFF
    old_cs = e.sget("seg_sel", S.CS)
    ret = e.lget("eip")
    with e.if_else(protected(e)) as (then, other):
        with other:
            with e.if_(call):
                push_far_return(e, o32, old_cs, ret)
            set_seg_real(e, S.CS, sel)
            e.lset("eip", off)
        with then:
            e.gp_if((sel & 0xFFFC).eq(0), 0)
            lo, hi, addr = read_desc(e, sel)
            typ = (hi >> 8) & 0x1F
            with e.if_((typ & 0x10).eq(0)):     # system descriptor: call gate, TSS, task gate
                is_cg = typ.eq(0xC) | typ.eq(0x4)
                e.gp_if(~is_cg & typ.ne(0x9) & typ.ne(0x1) & typ.ne(0x5), sel & 0xFFFC)
                with e.if_else(is_cg) as (cg, task):
                    with cg:
                        _call_gate(e, sel, lo, hi, call, ret)
                    with task:
                        cpl = e.sget("cpl")
                        dpl = (hi >> 13) & 3
                        e.gp_if(dpl.ult(cpl) | dpl.ult(sel & 3), sel & 0xFFFC)
                        e.fault_if((hi & 0x8000).eq(0), 11, sel & 0xFFFC)
                        tss = e.sel(typ.eq(5), lo >> 16, sel)
                        e.call("task_switch", tss, e.sel(call, e.c(TS_CALL), e.c(TS_JMP)), e.c(0), e.c(0),
                               sync=False)
                e.b.ret(e.c(0).v)
                e.dead()
            cpl = check_code_desc(e, sel, lo, hi, None, True)
            with e.if_(call):
                push_far_return(e, o32, old_cs, ret)
            set_accessed(e, hi, addr)
            load_cs(e, sel, lo, hi | 0x100, cpl)
            e.lset("eip", e.sel(o32, off, off & 0xFFFF))
    e.b.ret(e.c(0).v)


def tss_stack(e, dpl: V):
    """(esp, ss) for privilege level ``dpl`` from the current TSS (32- or 16-bit);
    #TS(TR selector) when the TSS is too short."""
    base = e.sget("seg_base", S.TR)
    t32 = (e.sget("seg_flags", S.TR) & 8).ne(0)
    last = e.sel(t32, dpl * 8 + 11, dpl * 4 + 5)
    e.fault_if(last.ugt(e.sget("seg_limit", S.TR)), 10, e.sget("seg_sel", S.TR) & 0xFFFC)
    esp = e.var(32)
    with e.if_else(t32) as (t, o):
        with t:
            esp.set(e.read_lin(base + 4 + dpl * 8, 32, e.c(0)))
        with o:
            esp.set(e.read_lin(base + 2 + dpl * 4, 16, e.c(0)).zx(32))
    ss = e.read_lin(base + e.sel(t32, dpl * 8 + 8, dpl * 4 + 4), 16, e.c(0)).zx(32)
    return esp.get(), ss


def load_inner_ss(e, ss: V, dpl: V):
    """Checks of the inner stack segment taken from the TSS (#TS / #SS); returns its
    descriptor (lo, hi, addr)."""
    e.fault_if((ss & 0xFFFC).eq(0), 10, 0)
    slo, shi, saddr = read_desc(e, ss, 10)
    styp = (shi >> 8) & 0x1F
    sdpl = (shi >> 13) & 3
    e.fault_if((ss & 3).ne(dpl) | sdpl.ne(dpl) | ~(styp & 0x1A).eq(0x12), 10, ss & 0xFFFC)
    e.fault_if((shi & 0x8000).eq(0), 12, ss & 0xFFFC)
    return slo, shi, saddr


def _call_gate(e, gsel, glo, ghi, call: V, ret: V):
    """Far jmp/call through a call gate (16- or 32-bit): same privilege, or a call to an
    inner privilege level with the TSS stack switch and the gate's parameter copy."""
    cpl = e.sget("cpl")
    gdpl = (ghi >> 13) & 3
    e.gp_if(gdpl.ult(cpl) | gdpl.ult(gsel & 3), gsel & 0xFFFC)
    e.fault_if((ghi & 0x8000).eq(0), 11, gsel & 0xFFFC)
    g32 = (ghi & 0x800).ne(0)
    sel = glo >> 16
    off = e.sel(g32, (glo & 0xFFFF) | (ghi & 0xFFFF0000), glo & 0xFFFF)
    e.gp_if((sel & 0xFFFC).eq(0), 0)
    lo, hi, addr = read_desc(e, sel)
    typ = (hi >> 8) & 0x1F
    dpl = (hi >> 13) & 3
    conforming = (typ & 4).ne(0)
    bad = ~(typ & 0x18).eq(0x18) | dpl.ugt(cpl) | (~call & ~conforming & dpl.ne(cpl))
    e.gp_if(bad, sel & 0xFFFC)
    e.fault_if((hi & 0x8000).eq(0), 11, sel & 0xFFFC)
    old_cs = e.sget("seg_sel", S.CS)
    inner = call & ~conforming & dpl.ult(cpl)
    with e.if_else(inner) as (t_in, t_same):
        with t_in:
            new_esp, new_ss = tss_stack(e, dpl)
            slo, shi, saddr = load_inner_ss(e, new_ss, dpl)
            sbase = desc_base(e, slo, shi)
            s32 = (shi & 0x400000).ne(0)
            count = ghi & 0x1F
            old_ss = e.sget("seg_sel", S.SS)
            old_esp = e.reg(4)
            old_base = e.sget("seg_base", S.SS)
            old_s32 = e.stack32()
            nsp = e.var(32)
            for g in (True, False):
                with e.if_(g32 if g else ~g32):
                    sz = 32 if g else 16
                    n = sz // 8

                    def at(sp):
                        return sbase + e.sel(s32, sp, sp & 0xFFFF)
                    low = new_esp - (count + 4) * n
                    e.probe_write_lin(at(low), 8, e.c(0))
                    e.probe_write_lin(at(new_esp - 1), 8, e.c(0))
                    e.write_lin(at(new_esp - n), sz, old_ss.tr(sz), e.c(0))
                    e.write_lin(at(new_esp - 2 * n), sz, old_esp.tr(sz), e.c(0))
                    dst = new_esp - (count + 2) * n
                    i = e.var(32, 0)

                    def copy():
                        k = i.get()
                        src = old_esp + k * n
                        v = e.read_lin(old_base + e.sel(old_s32, src, src & 0xFFFF), sz)
                        e.write_lin(at(dst + k * n), sz, v, e.c(0))
                        i.set(k + 1)
                    e.while_(lambda: i.get().ult(count), copy)
                    e.write_lin(at(dst - n), sz, old_cs.tr(sz), e.c(0))
                    e.write_lin(at(dst - 2 * n), sz, ret.tr(sz), e.c(0))
                    nsp.set(dst - 2 * n)
            set_accessed(e, hi, addr)
            set_accessed(e, shi, saddr)
            shi = shi | 0x100
            set_seg(e, S.SS, new_ss, sbase, desc_limit(e, slo, shi), desc_flags(e, shi))
            e.set_reg(4, e.sel(s32, nsp.get(), (new_esp & 0xFFFF0000) | (nsp.get() & 0xFFFF)))
            load_cs(e, sel, lo, hi | 0x100, dpl)
        with t_same:
            with e.if_(call):
                push_far_return(e, g32, old_cs, ret)
            set_accessed(e, hi, addr)
            load_cs(e, sel, lo, hi | 0x100, cpl)
    e.lset("eip", off)


@helper("io_perm", 2)
def h_io_perm(e):
    """I/O with CPL > IOPL: allowed when the ``nbytes`` bits for ``port`` in the TSS I/O
    permission bitmap are all clear (32-bit TSS only), else #GP(0)."""
    port, nbytes = args(e)
    fl = e.sget("seg_flags", S.TR)
    limit = e.sget("seg_limit", S.TR)
    base = e.sget("seg_base", S.TR)
    e.gp_if(((fl & 0x1D).ne(0x9)) | limit.ult(0x67), 0)
    at = e.read_lin(base + 0x66, 16, e.c(0)).zx(32) + (port >> 3)
    e.gp_if((at + 1).ugt(limit), 0)
    bits = e.read_lin(base + at, 16, e.c(0)).zx(32)
    mask = ((e.c(1) << nbytes) - 1) << (port & 7)
    e.gp_if((bits & mask).ne(0), 0)
    e.b.ret(e.c(0).v)


def _null_outer_segs(e, cpl: V):
    for s in (S.ES, S.DS, S.FS, S.GS):
        fl = e.sget("seg_flags", s)
        dpl = (fl >> 5) & 3
        is_data_or_nc = ((fl & 0x18).eq(0x10)) | ((fl & 0x1C).eq(0x18))
        with e.if_(is_data_or_nc & dpl.ult(cpl) & (e.sget("seg_sel", s) & 0xFFFC).ne(0)):
            set_seg(e, s, e.c(0), e.c(0), e.c(0), e.c(0))


def _load_outer_ss(e, ss_sel, new_cpl):
    lo, hi, addr = read_desc(e, ss_sel)
    typ = (hi >> 8) & 0x1F
    dpl = (hi >> 13) & 3
    e.gp_if((ss_sel & 0xFFFC).eq(0), 0)
    e.gp_if((ss_sel & 3).ne(new_cpl) | dpl.ne(new_cpl) | ~(typ & 0x1A).eq(0x12), ss_sel & 0xFFFC)
    e.fault_if((hi & 0x8000).eq(0), 12, ss_sel & 0xFFFC)
    return lo, hi, addr


@helper("ret_far", 3)
def h_ret_far(e):
    """retf [imm] (kind=0) or iret (kind=1). args: o32, imm, kind"""
    o32v, imm, kind = args(e)
    iret = kind.ne(0)
    for o32 in (True, False):
        with e.if_(o32v.ne(0) if o32 else o32v.eq(0)):
            _ret_far(e, o32, imm, iret)
    e.b.ret(e.c(0).v)


def _ret_far(e, o32, imm, iret):
    sz = 32 if o32 else 16
    n = sz // 8
    with e.if_(iret & protected(e) & (e.flags() & S.NT).ne(0)):    # return to the previous task
        link = e.read_lin(e.sget("seg_base", S.TR) + TSS_LINK, 16, e.c(0)).zx(32)
        e.call("task_switch", link, e.c(TS_IRET), e.c(0), e.c(0), sync=False)
        e.b.ret(e.c(0).v)
        e.dead()
    new_eip = e.pop_peek(sz, 0).zx(32)
    new_cs = e.pop_peek(sz, n).zx(32) & 0xFFFF
    new_fl = e.var(32, 0)
    with e.if_(iret):
        new_fl.set(e.pop_peek(sz, 2 * n).zx(32))
    frame = e.sel(iret, e.c(3 * n), e.c(2 * n))
    cpl = e.sget("cpl")
    old_fl = e.flags()

    def apply_flags(cpl_for_rules):
        nf = new_fl.get()
        iopl = (old_fl >> 12) & 3
        mask = e.c(S.CF | S.PF | S.AF | S.ZF | S.SF | S.TF | S.DF | S.OF | S.NT | S.AC | S.ID)
        mask = mask | e.sel(cpl_for_rules.eq(0), e.c(S.IOPL), e.c(0))
        mask = mask | e.sel(cpl_for_rules.ule(iopl), e.c(S.IF), e.c(0))
        if not o32:
            mask = mask & 0xFFFF
        with e.if_(iret):
            e.set_flags_word((old_fl & ~mask) | (nf & mask))

    with e.if_else(protected(e)) as (then, other):
        with other:
            e.pop_commit(frame)
            with e.if_(~iret):
                e.pop_commit(imm)
            set_seg_real(e, S.CS, new_cs)
            e.lset("eip", new_eip)
            nf = new_fl.get()
            with e.if_(iret):
                m = 0x257FD5 if o32 else 0x7FD5
                e.set_flags_word((old_fl & ~m) | (nf & m))
        with then:
            with e.if_(iret):
                if o32:
                    e.gp_if((new_fl.get() & S.VM).ne(0), 0)  # no virtual-8086 mode
            lo, hi, addr = read_desc(e, new_cs)
            typ = (hi >> 8) & 0x1F
            dpl = (hi >> 13) & 3
            rpl = new_cs & 3
            e.gp_if((new_cs & 0xFFFC).eq(0), 0)
            e.gp_if(~(typ & 0x18).eq(0x18) | rpl.ult(cpl), new_cs & 0xFFFC)
            conforming = (typ & 4).ne(0)
            e.gp_if(e.sel(conforming, dpl.ugt(rpl), dpl.ne(rpl)), new_cs & 0xFFFC)
            e.fault_if((hi & 0x8000).eq(0), 11, new_cs & 0xFFFC)
            with e.if_else(rpl.eq(cpl)) as (same, outer):
                with same:
                    set_accessed(e, hi, addr)
                    e.pop_commit(frame)
                    with e.if_(~iret):
                        e.pop_commit(imm)
                    load_cs(e, new_cs, lo, hi | 0x100, rpl)
                    apply_flags(cpl)
                    e.lset("eip", new_eip if o32 else new_eip & 0xFFFF)
                with outer:
                    extra = e.sel(iret, e.c(0), imm)
                    new_esp = e.pop_peek(sz, frame + extra).zx(32)
                    new_ss = e.pop_peek(sz, frame + extra + n).zx(32) & 0xFFFF
                    slo, shi, saddr = _load_outer_ss(e, new_ss, rpl)
                    set_accessed(e, hi, addr)
                    set_accessed(e, shi, saddr)
                    load_cs(e, new_cs, lo, hi | 0x100, rpl)
                    apply_flags(cpl)
                    shi = shi | 0x100
                    set_seg(e, S.SS, new_ss, desc_base(e, slo, shi), desc_limit(e, slo, shi), desc_flags(e, shi))
                    new_esp_v = new_esp + e.sel(iret, e.c(0), imm)
                    if o32:
                        e.set_reg(4, new_esp_v)
                    else:
                        e.set_reg(4, new_esp_v & 0xFFFF, 16)
                    e.lset("eip", new_eip if o32 else new_eip & 0xFFFF)
                    _null_outer_segs(e, rpl)


# ---------------------------------------------------------------------------- interrupts


@helper("deliver", 4)
def h_deliver(e):
    """Deliver vector through the IVT/IDT.  kind: 0 exception, 1 software int, 2 external.
    Return address is state.eip."""
    vec, kind, err, has_err = args(e)
    fl = e.flags()
    eip = e.lget("eip")
    ext = kind.eq(2).zx(32) | kind.eq(0).zx(32)
    with e.if_else(protected(e)) as (then, other):
        with other:
            e.gp_if((vec * 4 + 3).ugt(e.sget("idtr_limit")), vec * 8 + 2)
            ent = e.read_lin(e.sget("idtr_base") + vec * 4, 32, e.c(0))
            e.push_probe(6)
            e.push(fl.tr(16), 16)
            e.push(e.sget("seg_sel", S.CS).tr(16), 16)
            e.push(eip.tr(16), 16)
            e.set_flags_word(fl & ~(S.IF | S.TF | S.AC | S.RF))
            set_seg_real(e, S.CS, ent >> 16)
            e.lset("eip", ent & 0xFFFF)
        with then:
            idt_err = vec * 8 + 2 + ext
            e.gp_if((vec * 8 + 7).ugt(e.sget("idtr_limit")), idt_err)
            base = e.sget("idtr_base") + vec * 8
            lo = e.read_lin(base, 32, e.c(0))
            hi = e.read_lin(base + 4, 32, e.c(0))
            gtype = (hi >> 8) & 0x1F
            gate32 = (gtype & 8).ne(0)
            is_int = gtype.eq(0xE) | gtype.eq(0x6)
            ok = gtype.eq(0xE) | gtype.eq(0xF) | gtype.eq(0x6) | gtype.eq(0x7) | gtype.eq(0x5)
            e.gp_if(~ok, idt_err)
            cpl = e.sget("cpl")
            gdpl = (hi >> 13) & 3
            e.gp_if(kind.eq(1) & gdpl.ult(cpl), idt_err)
            e.fault_if((hi & 0x8000).eq(0), 11, idt_err)
            with e.if_(gtype.eq(0x5)):      # task gate: switch to the TSS it names
                e.call("task_switch", lo >> 16, e.c(TS_INT), err, has_err, sync=False)
                e.sset("last_exc", vec)
                e.sset("last_exc_code", err)
                e.b.ret(e.c(0).v)
                e.dead()
            sel = lo >> 16
            off = e.sel(gate32, (lo & 0xFFFF) | (hi & 0xFFFF0000), lo & 0xFFFF)
            e.gp_if((sel & 0xFFFC).eq(0), ext)
            clo, chi, caddr = read_desc(e, sel)
            ctyp = (chi >> 8) & 0x1F
            dpl = (chi >> 13) & 3
            e.gp_if(~(ctyp & 0x18).eq(0x18) | dpl.ugt(cpl), (sel & 0xFFFC) | ext)
            e.fault_if((chi & 0x8000).eq(0), 11, (sel & 0xFFFC) | ext)
            conforming = (ctyp & 4).ne(0)
            inner = ~conforming & dpl.ult(cpl)
            old_ss = e.sget("seg_sel", S.SS)
            old_esp = e.reg(4)
            cs_sel = e.sget("seg_sel", S.CS)
            newfl = fl & ~(S.TF | S.NT | S.RF | S.VM)
            newfl = e.sel(is_int, newfl & ~S.IF, newfl)

            def push_frame(g32, ssbase, sp, stack32, with_ss):
                sz = 32 if g32 else 16
                n = sz // 8
                vals = []
                if with_ss:
                    vals += [old_ss, old_esp]
                vals += [fl, cs_sel, eip]
                cur = e.var(32)
                cur.set(sp)
                total = len(vals) * n

                def wr(off_, v):
                    a = cur.get() - off_
                    a = e.sel(stack32, a, a & 0xFFFF)
                    e.write_lin(ssbase + a, sz, v.tr(sz), e.c(0))
                # probe lowest and highest address first (precise)
                lowest = sp - (total + n)
                e.probe_write_lin(ssbase + e.sel(stack32, lowest, lowest & 0xFFFF), 8, e.c(0))
                for i, v in enumerate(vals):
                    wr((i + 1) * n, v)
                with e.if_(has_err.ne(0)):
                    wr(total + n, err)
                newsp = sp - total - e.sel(has_err.ne(0), e.c(n), e.c(0))
                return newsp

            with e.if_else(inner) as (t2, o2):
                with t2:
                    new_esp, new_ss = tss_stack(e, dpl)
                    slo, shi, saddr = load_inner_ss(e, new_ss, dpl)     # #TS / #SS
                    sbase = desc_base(e, slo, shi)
                    s32 = (shi & 0x400000).ne(0)
                    nsp = e.var(32)
                    with e.if_else(gate32) as (g1, g2):
                        with g1:
                            nsp.set(push_frame(True, sbase, new_esp, s32, True))
                        with g2:
                            nsp.set(push_frame(False, sbase, new_esp, s32, True))
                    set_accessed(e, shi, saddr)
                    shi = shi | 0x100
                    set_seg(e, S.SS, new_ss, sbase, desc_limit(e, slo, shi), desc_flags(e, shi))
                    e.set_reg(4, e.sel(s32, nsp.get(), (new_esp & 0xFFFF0000) | (nsp.get() & 0xFFFF)))
                    load_cs(e, sel, clo, chi | 0x100, dpl)
                    _null_outer_segs(e, dpl)
                with o2:
                    s32 = e.stack32()
                    ssb = e.sget("seg_base", S.SS)
                    nsp = e.var(32)
                    with e.if_else(gate32) as (g1, g2):
                        with g1:
                            nsp.set(push_frame(True, ssb, old_esp, s32, False))
                        with g2:
                            nsp.set(push_frame(False, ssb, old_esp, s32, False))
                    e.set_reg(4, e.sel(s32, nsp.get(), (old_esp & 0xFFFF0000) | (nsp.get() & 0xFFFF)))
                    load_cs(e, sel, clo, chi | 0x100, e.sel(conforming, cpl, dpl))
            e.set_flags_word(newfl)
            e.lset("eip", off)
    e.sset("last_exc", vec)
    e.sset("last_exc_code", err)
    e.b.ret(e.c(0).v)


def _exc_class(e, vec: V) -> V:
    """0 benign, 1 contributory, 2 page fault."""
    contrib = vec.eq(0) | vec.eq(10) | vec.eq(11) | vec.eq(12) | vec.eq(13)
    return e.sel(vec.eq(14), e.c(2), e.sel(contrib, e.c(1), e.c(0)))


@helper("raise_exc", 0)
def h_raise_exc(e):
    """Deliver the pending exception in state.exc_*; escalates to #DF and triple fault."""
    e.sset("exc_count", e.sget("exc_count") + 1)
    with e.if_(e.sget("exc_exit").ne(0)):
        e.sset("exit_reason", S.EXIT_EXCEPTION)
        e.b.ret(e.c(ST_EXIT).v)
        e.dead()
    v1 = e.sget("exc_vector")
    st = e.call("deliver", v1, e.c(0), e.sget("exc_code"), e.sget("exc_has_code"), check=False)
    with e.if_(st.eq(ST_OK)):
        e.b.ret(e.c(ST_OK).v)
        e.dead()
    with e.if_(st.eq(ST_EXIT) | v1.eq(8)):
        e.sset("exit_reason", S.EXIT_TRIPLE)
        e.b.ret(e.c(ST_EXIT).v)
        e.dead()
    v2 = e.sget("exc_vector")
    c1, c2 = _exc_class(e, v1), _exc_class(e, v2)
    df = (c1.eq(1) & c2.eq(1)) | (c1.eq(2) & c2.ne(0))
    vec = e.sel(df, e.c(8), v2)
    code = e.sel(df, e.c(0), e.sget("exc_code"))
    has = e.sel(df, e.c(1), e.sget("exc_has_code"))
    st2 = e.call("deliver", vec, e.c(0), code, has, check=False)
    with e.if_(st2.eq(ST_OK)):
        e.b.ret(e.c(ST_OK).v)
        e.dead()
    with e.if_(~df):
        v3 = e.sget("exc_vector")
        st3 = e.call("deliver", e.c(8), e.c(0), e.c(0), e.c(1), check=False)
        _ = v3
        with e.if_(st3.eq(ST_OK)):
            e.b.ret(e.c(ST_OK).v)
            e.dead()
    e.sset("exit_reason", S.EXIT_TRIPLE)
    e.b.ret(e.c(ST_EXIT).v)


@helper("soft_int", 2)
def h_soft_int(e):
    """INT n / INT3 / INTO: eip already points after the instruction. kind arg: 1 = INT n
    (gate DPL checked), 0 = exception-class (INT3/INTO also check DPL)."""
    vec, kind = args(e)
    e.call("deliver", vec, e.c(1), e.c(0), e.c(0))
    e.b.ret(e.c(0).v)


# ---------------------------------------------------------------------------- control registers


@helper("mov_cr", 2)
def h_mov_cr(e):
    n, val = args(e)
    e.gp_if(e.sget("cpl").ne(0), 0)
    with e.if_(n.eq(0)):
        old = e.sget("cr", 0)
        v = (val | 0x10) & 0xE005003F
        e.gp_if(((v & PG).ne(0) & (v & PE).eq(0)), 0)
        e.sset("cr", v, 0)
        with e.if_(((old ^ v) & (PG | WP | PE)).ne(0)):
            e.call("tlb_flush", e.c(1), sync=False)
    with e.if_(n.eq(2)):
        e.sset("cr", val, 2)
    with e.if_(n.eq(3)):
        e.sset("cr", val, 3)
        e.call("tlb_flush", e.c(0), sync=False)
    with e.if_(n.eq(4)):
        e.gp_if((val & ~0x6BF).ne(0), 0)   # VME PVI TSD DE PSE PGE PCE OSFXSR OSXMMEXCPT
        e.sset("cr", val, 4)
        e.call("tlb_flush", e.c(1), sync=False)
    e.b.ret(e.c(0).v)


@helper("invlpg", 1)
def h_invlpg(e):
    (lin,) = args(e)
    e.gp_if(e.sget("cpl").ne(0), 0)
    tlb_invalidate_page(e, lin)
    e.b.ret(e.c(0).v)


@helper("cpuid", 0)
def h_cpuid(e):
    from .cpuid import emit_cpuid
    emit_cpuid(e)
    e.b.ret(e.c(0).v)


MSR_READ_ZERO = (0x17, 0x8B, 0x1B0)


@helper("msr", 1)
def h_msr(e):
    """rdmsr (arg 0) / wrmsr (arg 1) on ecx."""
    (wr,) = args(e)
    e.gp_if(e.sget("cpl").ne(0), 0)
    ecx = e.reg(1)
    eax, edx = e.reg(0), e.reg(2)
    known = ecx.eq(0x10) | ecx.eq(0x174) | ecx.eq(0x175) | ecx.eq(0x176)
    for m in MSR_READ_ZERO:
        known = known | ecx.eq(m)
    e.gp_if(~known, 0)
    with e.if_else(wr.ne(0)) as (w, r):
        with w:
            with e.if_(ecx.eq(0x10)):
                e.sset("tsc", eax.zx(64) | (edx.zx(64) << 32))
            with e.if_(ecx.eq(0x174)):
                e.sset("sysenter_cs", eax & 0xFFFF)
            with e.if_(ecx.eq(0x175)):
                e.sset("sysenter_esp", eax)
            with e.if_(ecx.eq(0x176)):
                e.sset("sysenter_eip", eax)
        with r:
            lo = e.var(32, 0)
            hi = e.var(32, 0)
            with e.if_(ecx.eq(0x174)):
                lo.set(e.sget("sysenter_cs"))
            with e.if_(ecx.eq(0x175)):
                lo.set(e.sget("sysenter_esp"))
            with e.if_(ecx.eq(0x176)):
                lo.set(e.sget("sysenter_eip"))
            with e.if_(ecx.eq(0x10)):
                t = e.sget("tsc")
                lo.set(t.tr(32))
                hi.set((t >> 32).tr(32))
            e.set_reg(0, lo.get())
            e.set_reg(2, hi.get())
    e.b.ret(e.c(0).v)


@helper("sysenter", 1)
def h_sysenter(e):
    """sysenter (arg 0) / sysexit (arg 1)."""
    (ex,) = args(e)
    cs = e.sget("sysenter_cs")
    e.gp_if(~protected(e) | (cs & 0xFFFC).eq(0), 0)
    with e.if_else(ex.eq(0)) as (enter, exit_):
        with enter:
            f = e.flags()
            e.set_flags_word(f & ~(S.IF | S.VM | S.RF))
            set_seg(e, S.CS, cs & 0xFFFC, e.c(0), e.c(0xFFFFFFFF), e.c(0xC09B))
            e.sset("cpl", e.c(0))
            set_seg(e, S.SS, (cs + 8) & 0xFFFC, e.c(0), e.c(0xFFFFFFFF), e.c(0xC093))
            e.set_reg(4, e.sget("sysenter_esp"))
            e.lset("eip", e.sget("sysenter_eip"))
        with exit_:
            e.gp_if(e.sget("cpl").ne(0), 0)
            set_seg(e, S.CS, (cs + 16) | 3, e.c(0), e.c(0xFFFFFFFF), e.c(0xC0FB))
            e.sset("cpl", e.c(3))
            set_seg(e, S.SS, (cs + 24) | 3, e.c(0), e.c(0xFFFFFFFF), e.c(0xC0F3))
            e.set_reg(4, e.reg(1))
            e.lset("eip", e.reg(2))
    e.b.ret(e.c(0).v)


@helper("lldt_ltr", 2)
def h_lldt_ltr(e):
    """lldt (arg0=0) / ltr (arg0=1) with selector."""
    which, sel = args(e)
    sel = sel & 0xFFFF
    e.gp_if(~protected(e), 0)   # #UD in real mode really; close enough
    e.gp_if(e.sget("cpl").ne(0), 0)
    with e.if_((sel & 0xFFFC).eq(0)):
        e.gp_if(which.ne(0), 0)
        set_seg(e, S.LDTR, sel, e.c(0), e.c(0), e.c(0))
        e.b.ret(e.c(0).v)
        e.dead()
    e.gp_if((sel & 4).ne(0), sel & 0xFFFC)
    lo, hi, addr = read_desc(e, sel)
    typ = (hi >> 8) & 0x1F
    with e.if_else(which.eq(0)) as (ldt, tr):
        with ldt:
            e.gp_if(typ.ne(2), sel & 0xFFFC)
            e.fault_if((hi & 0x8000).eq(0), 11, sel & 0xFFFC)
            set_seg(e, S.LDTR, sel, desc_base(e, lo, hi), desc_limit(e, lo, hi), desc_flags(e, hi))
        with tr:
            e.gp_if(typ.ne(9) & typ.ne(1), sel & 0xFFFC)
            e.fault_if((hi & 0x8000).eq(0), 11, sel & 0xFFFC)
            e.write_lin(addr + 4, 32, hi | 0x200, e.c(0))   # mark busy
            hi2 = hi | 0x200
            set_seg(e, S.TR, sel, desc_base(e, lo, hi2), desc_limit(e, lo, hi2), desc_flags(e, hi2))
    e.b.ret(e.c(0).v)


@helper("lar_lsl", 2)
def h_lar_lsl(e):
    """lar (0) / lsl (1) / verr (2) / verw (3) of sel: sets ZF; value in scratch[0]."""
    which, sel = args(e)
    sel = sel & 0xFFFF
    ok = e.var(1, 0)
    val = e.var(32, 0)
    ti = (sel & 4).ne(0)
    limit = e.sel(ti, e.sget("seg_limit", S.LDTR), e.sget("gdtr_limit"))
    with e.if_((sel & 0xFFFC).ne(0) & (sel | 7).ule(limit)):
        lo, hi, _ = read_desc(e, sel)
        typ = (hi >> 8) & 0x1F
        dpl = (hi >> 13) & 3
        cpl = e.sget("cpl")
        rpl = sel & 3
        is_seg = (typ & 0x10).ne(0)
        conforming_code = (typ & 0x1C).eq(0x1C)
        priv_ok = conforming_code | (dpl.uge(cpl) & dpl.uge(rpl))
        sys_ok_lar = typ.eq(1) | typ.eq(2) | typ.eq(3) | typ.eq(4) | typ.eq(5) | typ.eq(9) | typ.eq(0xB) | typ.eq(0xC)
        sys_ok_lsl = typ.eq(1) | typ.eq(2) | typ.eq(3) | typ.eq(9) | typ.eq(0xB)
        with e.if_(which.eq(0)):
            ok.set(priv_ok & (is_seg | sys_ok_lar))
            val.set(hi & 0x00F0FF00)
        with e.if_(which.eq(1)):
            ok.set(priv_ok & (is_seg | sys_ok_lsl))
            val.set(desc_limit(e, lo, hi))
        with e.if_(which.eq(2)):
            readable = (typ & 0x18).eq(0x10) | (typ & 0x1A).eq(0x1A)
            ok.set(readable & (conforming_code | (dpl.uge(cpl) & dpl.uge(rpl))))
        with e.if_(which.eq(3)):
            ok.set((typ & 0x1A).eq(0x12) & dpl.uge(cpl) & dpl.uge(rpl))
    f = e.flags()
    e.set_flags_word(e.sel(ok.get(), f | S.ZF, f & ~S.ZF))
    e.sset("scratch", val.get(), 0)
    e.sset("scratch", ok.get().zx(32), 1)
    e.b.ret(e.c(0).v)


# ---------------------------------------------------------------------------- task switches

TS_JMP, TS_CALL, TS_IRET, TS_INT = 0, 1, 2, 3
# 32-bit TSS layout
TSS_LINK, TSS_CR3, TSS_EIP, TSS_EFLAGS, TSS_REGS, TSS_SEGS, TSS_LDT = 0, 0x1C, 0x20, 0x24, 0x28, 0x48, 0x60
TASK_NEST_MAX = 4


def _ts_load_seg(e, s: int, sel: V, cpl: V):
    """Load segment register ``s`` from a new task's TSS image (#TS / #NP / #SS)."""
    null = (sel & 0xFFFC).eq(0)
    if s == S.LDTR:
        with e.if_else(null) as (n, o):
            with n:
                set_seg(e, S.LDTR, sel, e.c(0), e.c(0), e.c(0))
            with o:
                e.fault_if((sel & 4).ne(0), 10, sel & 0xFFFC)
                lo, hi, _ = read_desc(e, sel, 10)
                e.fault_if(((hi >> 8) & 0x1F).ne(2) | (hi & 0x8000).eq(0), 10, sel & 0xFFFC)
                set_seg(e, S.LDTR, sel, desc_base(e, lo, hi), desc_limit(e, lo, hi), desc_flags(e, hi))
        return
    if s in (S.CS, S.SS):
        e.fault_if(null, 10, sel & 0xFFFC)
    with e.if_else(null) as (n, o):
        with n:
            set_seg(e, s, sel, e.c(0), e.c(0), e.c(0))
        with o:
            lo, hi, addr = read_desc(e, sel, 10)
            typ = (hi >> 8) & 0x1F
            dpl = (hi >> 13) & 3
            rpl = sel & 3
            code = (typ & 0x18).eq(0x18)
            conforming = code & (typ & 4).ne(0)
            present = (hi & 0x8000).ne(0)
            if s == S.CS:
                e.fault_if(~code | e.sel(conforming, dpl.ugt(rpl), dpl.ne(rpl)), 10, sel & 0xFFFC)
                e.fault_if(~present, 11, sel & 0xFFFC)
            elif s == S.SS:
                e.fault_if(~(typ & 0x1A).eq(0x12) | rpl.ne(cpl) | dpl.ne(cpl), 10, sel & 0xFFFC)
                e.fault_if(~present, 12, sel & 0xFFFC)
            else:
                ok_type = (typ & 0x18).eq(0x10) | (code & (typ & 2).ne(0))
                e.fault_if(~ok_type | (~conforming & (dpl.ult(cpl) | dpl.ult(rpl))), 10, sel & 0xFFFC)
                e.fault_if(~present, 11, sel & 0xFFFC)
            set_accessed(e, hi, addr)
            hi = hi | 0x100
            set_seg(e, s, sel, desc_base(e, lo, hi), desc_limit(e, lo, hi), desc_flags(e, hi))


@helper("task_switch", 4)
def h_task_switch(e):
    """Hardware task switch to the TSS ``sel`` (386 or 286 TSS).  source: 0 jmp, 1 call, 2 iret
    (back to the previous task), 3 interrupt/exception through a task gate (error code
    ``err`` pushed on the new task's stack when ``has_err``).  The old task's state goes to
    the current TSS with state.eip as its EIP; busy bits, NT and the back link follow the
    SDM.  Faults before the commit point are raised in the old task; faults while loading
    the new task's segments are delivered in the new task (from here, bounded nesting)."""
    sel, source, err, has_err = args(e)
    sel = sel & 0xFFFF
    iret = source.eq(TS_IRET)
    nested = source.eq(TS_CALL) | source.eq(TS_INT)
    vec = e.sel(iret, e.c(10), e.c(13))
    e.fault_if((sel & 4).ne(0) | (sel & 0xFFFC).eq(0), vec, sel & 0xFFFC)
    lo, hi, daddr = read_desc(e, sel, vec)
    typ = (hi >> 8) & 0x1F
    busy = (typ & 2).ne(0)
    n32 = (typ & 8).ne(0)
    # a TSS: 286 (1 available / 3 busy) or 386 (9 / 0xB)
    e.fault_if(((typ & 0x15).ne(1)) | e.sel(iret, ~busy, busy), vec, sel & 0xFFFC)
    e.fault_if((hi & 0x8000).eq(0), 11, sel & 0xFFFC)
    nbase = desc_base(e, lo, hi)
    nlimit = desc_limit(e, lo, hi)
    e.fault_if(nlimit.ult(e.sel(n32, e.c(0x67), e.c(0x2B))), 10, sel & 0xFFFC)
    old_sel = e.sget("seg_sel", S.TR)
    obase = e.sget("seg_base", S.TR)
    o32 = (e.sget("seg_flags", S.TR) & 8).ne(0)
    e.fault_if(e.sget("seg_limit", S.TR).ult(e.sel(o32, e.c(0x67), e.c(0x2B))), 10, old_sel & 0xFFFC)
    fl = e.flags()

    def rd(off, bits=32):
        return e.read_lin(nbase + off, bits, e.c(0))
    # read the whole new task image first (under the old CR3)
    n_eip, n_fl, n_ldt, n_cr3 = (e.var(32) for _ in range(4))
    n_regs = [e.var(32) for _ in range(8)]
    n_segs = [e.var(32) for _ in range(6)]
    with e.if_else(n32) as (t32, t16):
        with t32:
            n_eip.set(rd(TSS_EIP))
            n_fl.set(rd(TSS_EFLAGS))
            for i in range(8):
                n_regs[i].set(rd(TSS_REGS + 4 * i))
            for i in range(6):
                n_segs[i].set(rd(TSS_SEGS + 4 * i, 16).zx(32))
            n_ldt.set(rd(TSS_LDT, 16).zx(32))
            n_cr3.set(rd(TSS_CR3))
        with t16:   # 286 TSS: upper register halves read as ones (like QEMU), FS/GS null
            n_eip.set(rd(0xE, 16).zx(32))
            n_fl.set((fl & 0xFFFF0000) | rd(0x10, 16).zx(32))
            for i in range(8):
                n_regs[i].set(rd(0x12 + 2 * i, 16).zx(32) | 0xFFFF0000)
            for i, s_ in enumerate((S.ES, S.CS, S.SS, S.DS)):
                n_segs[s_].set(rd(0x22 + 2 * i, 16).zx(32))
            n_segs[S.FS].set(e.c(0))
            n_segs[S.GS].set(e.c(0))
            n_ldt.set(rd(0x2A, 16).zx(32))
            n_cr3.set(e.sget("cr", 3))
    n_eip, n_fl, n_ldt, n_cr3 = n_eip.get(), n_fl.get(), n_ldt.get(), n_cr3.get()
    n_regs = [v.get() for v in n_regs]
    n_segs = [v.get() for v in n_segs]
    e.fault_if((n_fl & S.VM).ne(0), 10, sel & 0xFFFC)   # no virtual-8086 mode
    # save the old task (dynamic fields) into the current TSS
    ofl = e.sel(iret, fl & ~S.NT, fl)
    with e.if_else(o32) as (s32, s16):
        with s32:
            e.write_lin(obase + TSS_EIP, 32, e.lget("eip"), e.c(0))
            e.write_lin(obase + TSS_EFLAGS, 32, ofl, e.c(0))
            for i in range(8):
                e.write_lin(obase + TSS_REGS + 4 * i, 32, e.reg(i), e.c(0))
            for i in range(6):
                e.write_lin(obase + TSS_SEGS + 4 * i, 16, e.sget("seg_sel", i).tr(16), e.c(0))
        with s16:
            e.write_lin(obase + 0xE, 16, e.lget("eip").tr(16), e.c(0))
            e.write_lin(obase + 0x10, 16, ofl.tr(16), e.c(0))
            for i in range(8):
                e.write_lin(obase + 0x12 + 2 * i, 16, e.reg(i, 16), e.c(0))
            for i, s_ in enumerate((S.ES, S.CS, S.SS, S.DS)):
                e.write_lin(obase + 0x22 + 2 * i, 16, e.sget("seg_sel", s_).tr(16), e.c(0))
    # busy bits and the back link
    with e.if_(~nested):    # jmp / iret: the old task is no longer busy
        oaddr = e.sget("gdtr_base") + (old_sel & ~7)
        ohi = e.read_lin(oaddr + 4, 32, e.c(0))
        e.write_lin(oaddr + 4, 32, ohi & ~0x200, e.c(0))
    with e.if_(nested):
        e.write_lin(nbase + TSS_LINK, 16, old_sel.tr(16), e.c(0))
    with e.if_(~iret):
        e.write_lin(daddr + 4, 32, hi | 0x200, e.c(0))
    # ---- commit: from here on the new task is current
    hi = hi | 0x200
    set_seg(e, S.TR, sel, nbase, nlimit, desc_flags(e, hi))
    e.sset("cr", e.sget("cr", 0) | TS, 0)
    with e.if_((e.sget("cr", 0) & PG).ne(0) & n32):
        e.sset("cr", n_cr3, 3)
        e.call("tlb_flush", e.c(0), sync=False)
    for i in range(8):
        e.set_reg(i, n_regs[i])
    e.set_flags_word(e.sel(nested, n_fl | S.NT, n_fl))
    e.lset("eip", n_eip)
    cpl = n_segs[S.CS] & 3
    e.sset("cpl", cpl)
    # selectors first, all unusable, so a fault below leaves the rest unusable
    for i in range(6):
        set_seg(e, i, n_segs[i], e.c(0), e.c(0), e.c(0))
    set_seg(e, S.CS, n_segs[S.CS], e.c(0), e.c(0xFFFFFFFF), e.c(0xC09B) | (cpl << 5))
    saved_fault = e.fault_bb
    post = e.block("ts_post_fault")
    with e.b.goto_block(post):
        depth = e.sget("task_nest")
        with e.if_(depth.uge(TASK_NEST_MAX)):
            e.sset("task_nest", e.c(0))
            e.sset("exit_reason", S.EXIT_TRIPLE)
            e.b.ret(e.c(ST_EXIT).v)
            e.dead()
        e.sset("task_nest", depth + 1)
        st = V(e, e.b.call(e.helpers["raise_exc"], [e.state, e.ram]))
        e.sset("task_nest", e.sget("task_nest") - 1)
        e.b.ret(st.v)
    e.fault_bb = post
    _ts_load_seg(e, S.LDTR, n_ldt, cpl)
    _ts_load_seg(e, S.CS, n_segs[S.CS], cpl)
    _ts_load_seg(e, S.SS, n_segs[S.SS], cpl)
    for s in (S.ES, S.DS, S.FS, S.GS):
        _ts_load_seg(e, s, n_segs[s], cpl)
    with e.if_(has_err.ne(0)):
        e.push(err, 32)
    e.fault_bb = saved_fault
    e.b.ret(e.c(0).v)
