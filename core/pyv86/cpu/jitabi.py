"""What the interpreter and translated blocks agree on (kept apart from the translator so that
changing the translator does not change the interpreter's build key).

* helpers are exported as ``pyv86_<name>``; blocks call them by that symbol;
* a block is ``i32 blk(i8* state, i8* ram, i32 budget, i32 done)`` returning ``done`` plus the
  instructions it retired (a block may tail-call the next block with its own count added to
  ``done``), with ``state.jit_status`` 0 (continue), :data:`JIT_FAULT` or :data:`JIT_EXIT`;
* :func:`emit_lookup` finds the translation for a branch target (both tiers emit it);
* after the control transfers in :data:`BRANCHES` the interpreter looks for a translation of
  the target.
"""
from __future__ import annotations

from types import SimpleNamespace

import llvmlite.ir as ir

from . import state as S

HELPER_PREFIX = "pyv86_"
BLOCK_TYPE = ir.FunctionType(ir.IntType(32), [ir.IntType(8).as_pointer()] * 2 + [ir.IntType(32)] * 2)
JIT_FAULT, JIT_EXIT = 1, 2
JIT_SYNC = 3     # (the dispatcher only) sync mode: leave run() so Python translates now

# control transfers (one-byte map 0x00-0xFF, 0F map 0x100-0x1FF)
BRANCHES = (set(range(0x70, 0x80)) | set(range(0x180, 0x190)) | set(range(0xE0, 0xE4))
            | {0xE8, 0xE9, 0xEA, 0xEB, 0x9A, 0xC2, 0xC3, 0xCA, 0xCB, 0xCC, 0xCD, 0xCE, 0xCF,
               0xF1, 0xFF, 0x134, 0x135})


def helper_symbol(name: str) -> str:
    return HELPER_PREFIX + name


def code_slot(e, lin):
    """The code page test for linear address ``lin``: returns the i1 "its page is in the TLB"
    and ``locate()``, which (emitted where that holds) gives the physical address, the table
    slot (the first of its set's :data:`~pyv86.cpu.state.JIT_WAYS` entries), that entry's
    address and the pointer to the set's hit counter."""
    from .dsl import I32
    idx = (lin >> 12) & (S.TLB_SIZE - 1)
    tag = e.sget("tlb_tag", (e.cpl_kind() << S.TLB_BITS) + idx)

    def locate():
        phys = lin + e.sget("tlb_delta", idx)      # a RAM page (the TLB holds no others)
        slot = (phys ^ (phys >> S.JIT_TABLE_BITS)) & (S.JIT_TABLE_SIZE - S.JIT_WAYS)
        ent = e.sget("jit_table") + slot.zx(64) * S.JIT_ENTRY_SIZE
        hot_ptr = e.b.inttoptr((e.sget("jit_hot") + slot.zx(64) * 4).v, I32.as_pointer())
        return phys, slot, ent, hot_ptr
    return tag.eq((lin & ~0xFFF) | 1), locate


def entry_field(e, ent, off, bits=32):
    """(pointer, loaded value) of the field at byte ``off`` of the table entry at ``ent``."""
    from .dsl import V
    p = e.b.inttoptr((ent + off).v, ir.IntType(bits).as_pointer())
    return p, V(e, e.b.load(p))


FN_OFFSET = 24
"""Where a table entry keeps the block's address (0: no translation)."""


def emit_lookup(e, eip, on_current, on_other=None):
    """Emit the translation-table lookup for the code at ``eip`` (emitter ``e``, in run() or a
    block).  ``on_current(t)`` is emitted where a current translation exists, ``on_other(t)``
    where none does (or a stale one); ``t`` has ``phys``, ``slot``, ``fn`` (the block's
    address), ``ninsn``, ``match`` (an entry for this address, maybe stale) and the pointers
    ``fn_ptr`` and ``hot_ptr`` (of the way that matched).  Returns the i1 "the code page is in
    the TLB" (nothing is looked up otherwise)."""
    from .dsl import I32, V
    lin = e.sget("seg_base", S.CS) + eip     # (the state is synced wherever this runs)
    in_tlb, locate = code_slot(e, lin)
    with e.if_(in_tlb):
        phys, slot, ent, hot_ptr = locate()
        gen = V(e, e.b.load(e.b.inttoptr((e.sget("jit_page_gen") + (phys >> 12).zx(64) * 4).v,
                                         I32.as_pointer())))
        code32 = e.sget("code32")

        def way(w):
            """(an entry for this address?, current?, fn pointer, fn, instruction count)."""
            at = ent + w * S.JIT_ENTRY_SIZE
            fn_ptr, fn = entry_field(e, at, FN_OFFSET, 64)
            match = (entry_field(e, at, 4)[1].eq(phys) & entry_field(e, at, 0)[1].eq(eip)
                     & entry_field(e, at, 8)[1].eq(code32) & fn.ne(0))
            current = match & entry_field(e, at, 12)[1].eq(gen)
            return match, current, fn_ptr, fn, entry_field(e, at, 16)[1]
        ways = [way(w) for w in range(S.JIT_WAYS)]
        # the first current way wins (fields of the last way where none is: not used then)
        _m, _c, fn_ptr, fn, ninsn = ways[-1]
        for m, c, p, f, n in reversed(ways[:-1]):
            fn, ninsn = e.sel(c, f, fn), e.sel(c, n, ninsn)
            fn_ptr = e.b.select(m.v, p, fn_ptr)
        match = current = e.c(0, 1)
        for m, c, _p, _f, _n in ways:
            match, current = match | m, current | c
        t = SimpleNamespace(phys=phys, slot=slot, fn=fn, ninsn=ninsn, match=match,
                            fn_ptr=fn_ptr, hot_ptr=hot_ptr)
        with e.if_else(current, likely=True) as (cur, other):
            with cur:
                on_current(t)
            with other:
                if on_other is not None:
                    on_other(t)
    return in_tlb


def count_miss(e, eip, t):
    """Count a hit for ``eip``, which has no current translation (``t`` from
    :func:`emit_lookup`; a stale entry for it is forgotten), and file a translation request
    when the count reaches the threshold. Emitted by the dispatcher, and by a block that ends
    where no translation continues it: the interpreter counts only the targets of the
    branches it executes itself, so without the block's count the code after a side exit or
    after a block's last instruction would never become hot."""
    from .dsl import I32, I64, V
    with e.if_(t.match):   # its page was written since: forget it
        e.b.store(ir.Constant(I64, 0), t.fn_ptr)
        e.b.store(ir.Constant(I32, 0), t.hot_ptr)
    count = V(e, e.b.load(t.hot_ptr)) + 1
    e.b.store(count.v, t.hot_ptr)
    with e.if_(count.eq(e.sget("jit_threshold"))):
        nreq = e.sget("jit_nreq")
        with e.if_(nreq.ult(e.sget("jit_req_cap"))):
            req = e.sget("jit_req") + nreq.zx(64) * 16
            for off, v in ((0, eip), (4, t.phys), (8, e.sget("code32")), (12, t.slot)):
                e.b.store(v.v, e.b.inttoptr((req + off).v, I32.as_pointer()))
            e.sset("jit_nreq", nreq + 1)
            with e.if_(e.sget("jit_sync").ne(0)):
                e.sset("exit_reason", e.c(S.EXIT_JIT))
                e.sset("jit_status", e.c(JIT_SYNC))
