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
    slot, its entry's address and the pointer to its hit counter."""
    from .dsl import I32
    idx = (lin >> 12) & (S.TLB_SIZE - 1)
    tag = e.sget("tlb_tag", (e.cpl_kind() << S.TLB_BITS) + idx)

    def locate():
        phys = lin + e.sget("tlb_delta", idx)      # a RAM page (the TLB holds no others)
        slot = (phys ^ (phys >> S.JIT_TABLE_BITS)) & (S.JIT_TABLE_SIZE - 1)
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
    ``fn_ptr`` and ``hot_ptr``.  Returns the i1 "the code page is in the TLB" (nothing is
    looked up otherwise)."""
    from .dsl import I32, V
    lin = e.sget("seg_base", S.CS) + eip     # (the state is synced wherever this runs)
    in_tlb, locate = code_slot(e, lin)
    with e.if_(in_tlb):
        phys, slot, ent, hot_ptr = locate()

        def field(off, bits=32):
            return entry_field(e, ent, off, bits)
        fn_ptr, fn = field(FN_OFFSET, 64)
        gen = V(e, e.b.load(e.b.inttoptr((e.sget("jit_page_gen") + (phys >> 12).zx(64) * 4).v,
                                         I32.as_pointer())))
        match = (field(4)[1].eq(phys) & field(0)[1].eq(eip) & field(8)[1].eq(e.sget("code32"))
                 & fn.ne(0))
        t = SimpleNamespace(phys=phys, slot=slot, fn=fn, ninsn=field(16)[1], match=match,
                            fn_ptr=fn_ptr, hot_ptr=hot_ptr)
        with e.if_else(match & field(12)[1].eq(gen), likely=True) as (cur, other):
            with cur:
                on_current(t)
            with other:
                if on_other is not None:
                    on_other(t)
    return in_tlb
