"""The block JIT's translator: guest basic blocks -> LLVM IR -> native code.

A block is the straight-line run of instructions :func:`blockdecode.decode_block` finds at
one guest physical address.  Its body is emitted by the **same** semantics functions the
interpreter is generated from (``isa.OPS[op].fn``); only the decoded operands differ: here
they are constants known at translation time (registers, ModRM fields, immediates,
displacements), so LLVM folds the operand decoding away.  The interpreter's out-of-line
helpers (paging, exceptions, far transfers, x87) are called by name: ``build.load`` exports
their addresses to the JIT's linker.

A block function is ``i32 blk(i8* state, i8* ram, i32 budget)``; ``budget`` (at least the
block's length) bounds the instructions it may retire.  A conditional branch inside a block is
a side exit; a branch back to the block's first instruction loops inside the function while
the budget allows and nothing needs attention.  It runs with the interpreter's state
layout: on entry it loads EIP, EFLAGS and the lazy-flag fields from the state (the
interpreter stored them), and ``state.tsc`` is the TSC at the block's first instruction.
It returns the number of instructions retired and sets ``state.jit_status``:

* 0: ran to its end, or stopped early after an instruction that called out to the host
  (an interrupt became deliverable, a stop was requested, or code was modified);
* 1: an exception is pending (``state.exc_*``; EIP is the faulting instruction);
* 2: leave ``run()`` (HLT, or a helper asked to exit).

Interrupts are only ever taken between instructions at the places the interpreter takes
them, and a block never runs past the budget (the interpreter checks the block's length
first), so both tiers retire exactly the same instruction stream.
"""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager

import llvmlite.ir as ir

from . import isa, system
from . import state as S
from .blockdecode import Decoded, decode_block
from .dsl import I1, I8P, I32, Emitter, V, Var
from .jitabi import BLOCK_TYPE, JIT_EXIT, JIT_FAULT, count_miss, emit_lookup, helper_symbol

MAX_BLOCK_INSNS = 48


# ---------------------------------------------------------------------------- constant folding

_MASKS = {}


def _mask(bits):
    m = _MASKS.get(bits)
    if m is None:
        m = _MASKS[bits] = (1 << bits) - 1
    return m


def _const_int(v):
    if isinstance(v, ir.Constant) and isinstance(v.type, ir.IntType) and isinstance(v.constant, int):
        return v.constant & _mask(v.type.width)
    return None


def _signed(x, bits):
    return x - (1 << bits) if x >> (bits - 1) else x


class FoldingBuilder(ir.IRBuilder):
    """An IRBuilder that folds integer operations on constants in Python.

    Block translation hands the semantics constant operands; folding here keeps the IR the
    optimiser sees (and the time it takes) proportional to what the block really does.
    While ``dead`` is non-zero (emitting a path the constants rule out) new blocks are
    detached from the function, so nothing of that path reaches LLVM."""

    dead = 0

    def append_basic_block(self, name=""):
        if self.dead:
            return ir.Block(parent=self.function, name="dead")
        return ir.IRBuilder.append_basic_block(self, name)

    def _fold2(self, name, a, b, fn):
        x, y = _const_int(a), _const_int(b)
        if x is not None and y is not None:
            r = fn(x, y, a.type.width)
            if r is not None:
                return ir.Constant(a.type, r & _mask(a.type.width))
        return getattr(ir.IRBuilder, name)(self, a, b)

    def add(self, a, b, name="", flags=()):
        return self._fold2("add", a, b, lambda x, y, w: x + y)

    def sub(self, a, b, name="", flags=()):
        return self._fold2("sub", a, b, lambda x, y, w: x - y)

    def mul(self, a, b, name="", flags=()):
        return self._fold2("mul", a, b, lambda x, y, w: x * y)

    def and_(self, a, b, name="", flags=()):
        return self._fold2("and_", a, b, lambda x, y, w: x & y)

    def or_(self, a, b, name="", flags=()):
        return self._fold2("or_", a, b, lambda x, y, w: x | y)

    def xor(self, a, b, name="", flags=()):
        return self._fold2("xor", a, b, lambda x, y, w: x ^ y)

    def shl(self, a, b, name="", flags=()):
        return self._fold2("shl", a, b, lambda x, y, w: x << y if y < w else None)

    def lshr(self, a, b, name="", flags=()):
        return self._fold2("lshr", a, b, lambda x, y, w: x >> y if y < w else None)

    def ashr(self, a, b, name="", flags=()):
        return self._fold2("ashr", a, b, lambda x, y, w: _signed(x, w) >> y if y < w else None)

    def not_(self, value, name=""):
        return self.xor(value, ir.Constant(value.type, -1))

    def neg(self, value, name=""):
        return self.sub(ir.Constant(value.type, 0), value)

    _UCMP = {"==": lambda x, y: x == y, "!=": lambda x, y: x != y, "<": lambda x, y: x < y,
             "<=": lambda x, y: x <= y, ">": lambda x, y: x > y, ">=": lambda x, y: x >= y}

    def icmp_unsigned(self, cmpop, lhs, rhs, name=""):
        x, y = _const_int(lhs), _const_int(rhs)
        if x is not None and y is not None:
            return ir.Constant(I1, int(self._UCMP[cmpop](x, y)))
        return ir.IRBuilder.icmp_unsigned(self, cmpop, lhs, rhs, name)

    def icmp_signed(self, cmpop, lhs, rhs, name=""):
        x, y = _const_int(lhs), _const_int(rhs)
        if x is not None and y is not None:
            w = lhs.type.width
            return ir.Constant(I1, int(self._UCMP[cmpop](_signed(x, w), _signed(y, w))))
        return ir.IRBuilder.icmp_signed(self, cmpop, lhs, rhs, name)

    def zext(self, value, typ, name=""):
        x = _const_int(value)
        if x is not None:
            return ir.Constant(typ, x)
        return ir.IRBuilder.zext(self, value, typ, name)

    def sext(self, value, typ, name=""):
        x = _const_int(value)
        if x is not None:
            return ir.Constant(typ, _signed(x, value.type.width) & _mask(typ.width))
        return ir.IRBuilder.sext(self, value, typ, name)

    def trunc(self, value, typ, name=""):
        x = _const_int(value)
        if x is not None:
            return ir.Constant(typ, x & _mask(typ.width))
        return ir.IRBuilder.trunc(self, value, typ, name)

    def select(self, cond, lhs, rhs, name="", flags=()):
        c = _const_int(cond)
        if c is not None:
            return lhs if c else rhs
        return ir.IRBuilder.select(self, cond, lhs, rhs, name)


# ---------------------------------------------------------------------------- one block


# state fields that stay the same through a block unless the block itself changes them: they
# are loaded once, at the block's entry, instead of at every memory access
MEMO_FIELDS = frozenset({"seg_base", "seg_chk", "cpl"})
# helpers that never change them (memory slow paths, TLB fills; a fault leaves the block)
KEEPS_MEMO_FIELDS = frozenset({"mem_slow", "mem_probe", "seg_slow", "seg_probe", "xlate",
                               "fetch_slow", "io_perm", "cpuid", "lar_lsl", "invlpg"})


class _BlockEmitter(Emitter):
    """The interpreter's emitter with the eight GPRs held in locals (promoted to host
    registers by LLVM), written back to the state around every out-of-line call and on exit.
    ``called`` is an i1 local set on the paths that called out of line (after folding it is a
    constant false for instructions whose calls are all on paths that cannot run)."""

    def __init__(self, *args, **kw):
        self.regs = None
        self._sptrs = {}
        self._memo = {}
        self.clobbered = False    # something in the block may change a field in MEMO_FIELDS
        # lazy_regs: a GPR is loaded (in the entry block) only if the block reads it, and
        # written back only if it sets it. Blocks that loop back to their start keep loading
        # and storing all eight: a register set late in one trip is live early in the next.
        self.lazy_regs = False
        self._loaded: set[int] = set()
        self._dirty: set[int] = set()
        self._entry_depth = 0
        super().__init__(*args, **kw)
        self.called = self.var(1, 0)
        self.regs = [Var(self, I32, name=f"r{i}") for i in range(8)]

    def _clobber(self):
        self.clobbered = True
        self._memo.clear()

    def sget(self, name, idx=0) -> V:
        if name in MEMO_FIELDS and not self.clobbered:
            k = idx if isinstance(idx, int) else _const_int(idx.v)
            if k is not None:
                v = self._memo.get((name, k))
                if v is None:     # loaded once, in the entry block (it dominates every use)
                    ptr = self.sptr(name, k)
                    with self._in_entry():
                        v = self._memo[(name, k)] = V(self, self.b.load(ptr))
                return v
        if name == "regs" and self.regs is not None:
            k = idx if isinstance(idx, int) else _const_int(idx.v)
            if k is not None:
                return self._reg(k)
            self._regs_out()                    # a register chosen at run time: go through the state
            return super().sget(name, idx)
        return super().sget(name, idx)

    def sset(self, name, value, idx=0):
        if name in MEMO_FIELDS:
            self._clobber()
        if name == "regs" and self.regs is not None:
            k = idx if isinstance(idx, int) else _const_int(idx.v)
            if k is not None:
                self.regs[k].set(self.v(value))
                self._dirty.add(k)
                return
            self._regs_out()
            super().sset(name, value, idx)
            self._regs_in()
            return
        super().sset(name, value, idx)

    # ---- decode-time constants: emit only the paths they leave alive
    def block(self, name=""):
        if self.b.dead:
            return ir.Block(parent=self.fn, name="dead")
        return super().block(name)

    @contextmanager
    def _dead_arm(self):
        back = self.b.block
        self.b.dead += 1
        self.b.position_at_end(ir.Block(parent=self.fn, name="dead"))
        try:
            yield
        finally:
            self.b.dead -= 1
            self.b.position_at_end(back)

    @contextmanager
    def _live_arm(self):
        yield

    @contextmanager
    def if_(self, cond: V, likely=None):
        c = _const_int(cond.bool().v)
        if c is None:
            with super().if_(cond, likely):
                yield
        elif c:
            yield
        else:
            with self._dead_arm():
                yield

    @contextmanager
    def if_else(self, cond: V, likely=None):
        c = _const_int(cond.bool().v)
        if c is None:
            with super().if_else(cond, likely) as arms:
                yield arms
        elif c:
            yield self._live_arm(), self._dead_arm()
        else:
            yield self._dead_arm(), self._live_arm()

    def switch(self, value: V, cases: dict, default_fn=None):
        c = _const_int(value.v)
        if c is None:
            return super().switch(value, cases, default_fn)
        fn = cases.get(c, default_fn)
        if fn is not None:
            fn()

    def sptr(self, name, idx=0, typ=None):
        k = idx if isinstance(idx, int) else _const_int(idx.v)
        if k is None:
            return super().sptr(name, idx, typ)
        key = (name, k, typ)
        p = self._sptrs.get(key)
        if p is None:
            with self._in_entry():
                p = self._sptrs[key] = super().sptr(name, k, typ)
        return p

    @contextmanager
    def _in_entry(self):
        """Emit into the entry block (before its branch, once it has one), then come back:
        what is emitted there dominates the whole block."""
        if self._entry_depth:      # already there (nested: a pointer made for an entry load)
            yield
            return
        back, entry = self.b.block, self.entry_block
        if entry.is_terminated:
            self.b.position_before(entry.terminator)
        else:
            self.b.position_at_end(entry)
        self._entry_depth += 1
        try:
            yield
        finally:
            self._entry_depth -= 1
            self.b.position_at_end(back)

    def _reg(self, k: int) -> V:
        """GPR ``k``'s current value; the first use makes the entry block load it (every
        path through the block then starts from the state's value)."""
        if k not in self._loaded:
            self._loaded.add(k)
            with self._in_entry():
                self.regs[k].set(Emitter.sget(self, "regs", k))
        return self.regs[k].get()

    def _regs_out(self):
        """Write the GPRs back: with ``lazy_regs`` only those the block has set so far (the
        others still hold the state's value on every path here)."""
        for i in range(8):
            if not self.lazy_regs or i in self._dirty:
                Emitter.sset(self, "regs", self._reg(i), i)

    def _regs_in(self):
        for i, r in enumerate(self.regs):
            r.set(Emitter.sget(self, "regs", i))
        if not self.lazy_regs:
            self._loaded.update(range(8))

    def enter(self):
        """The block's prologue: the state's locals, and the GPRs unless they load lazily."""
        Emitter.sync_in(self)
        if not self.lazy_regs:
            self._regs_in()

    def sync_out(self):
        super().sync_out()
        if self.regs is not None:
            self._regs_out()

    def sync_in(self):
        super().sync_in()
        if self.regs is not None:
            self._regs_in()

    def call(self, name, *args, sync=True, check=True) -> V:
        # sync=False helpers (TLB fill, memory slow paths) do not touch the GPRs; a fault they
        # raise goes through fault_bb, which writes everything back
        if name not in KEEPS_MEMO_FIELDS:
            self._clobber()
        st = super().call(name, *args, sync=sync, check=False)
        self.called.set(self.c(1, 1))
        if check:
            self.check_status(st)
        return st

    def callback(self, *args, **kw) -> V:
        self._clobber()
        r = super().callback(*args, **kw)
        self.called.set(self.c(1, 1))
        return r


class BlockInsn:
    """The decoded instruction handed to the semantics (``codegen.Insn``'s interface), with
    every decode field a constant."""

    def __init__(self, bt: "BlockTranslator", d: Decoded, start_eip: int):
        e = self.e = bt.e
        self.bt = bt
        self.op = d.opcode
        self.o32 = d.handler_o32
        self.osize = 32 if self.o32 else 16
        self.mod, self.reg, self.rm = e.c(d.mod), e.c(d.reg), e.c(d.rm)
        self.is_mem = e.c(int(d.is_mem), 1)
        self.ea = bt.effective_address(d) if d.is_mem else e.c(0)
        self.seg = e.c(d.seg if d.is_mem else S.DS)
        self.imm = e.c(d.imm)
        self.a32 = e.c(int(d.a32), 1)
        self.rep = e.c(d.rep)
        self.dseg = e.c(S.DS if d.segovr == -1 else d.segovr)
        self.esp_base = e.c(int(d.esp_base), 1)
        self.in_run = True
        self._start = start_eip
        self._extra = list(d.extra)

    def fetch(self, bits) -> V:
        # each instruction fetches at most one extra immediate; semantics also emit the paths
        # the decoded ModRM rules out (they fold away), where a fetch of another size is dead
        for have, value in self._extra:
            if have == bits:
                return self.e.c(value, bits)
        return self.e.c(0, bits)

    def shadow(self):
        self.e.sset("shadow", self.e.c(1))

    def insn_start(self) -> V:
        return self.e.c(self._start)

    def leave_run(self, reason):
        e = self.e
        e.sset("exit_reason", e.c(reason))
        self.bt.k.set(self.bt.retired(self.bt.index + 1))
        e.b.branch(e.exit_bb)
        e.dead()

    def tsc_now(self) -> V:
        return self.bt.tsc_at(self.bt.index)

    def sync_tsc_out(self):
        self.e.sset("tsc", self.tsc_now())

    def sync_tsc_in(self):
        e = self.e
        k = self.bt.retired(self.bt.index).zx(64)
        self.bt.tsc_base.set(e.sget("tsc") - k * e.sget("tsc_per_insn").zx(64))


class BlockTranslator:
    """Emits block functions into one module (a batch compiled together)."""

    def __init__(self, name="pyv86_blocks"):
        self.module = ir.Module(name=name)
        self.helpers = {}
        for hname, (nargs, _) in system.HELPERS.items():
            ft = ir.FunctionType(I32, [I8P, I8P] + [I32] * nargs)
            self.helpers[hname] = ir.Function(self.module, ft, name=helper_symbol(hname))
        ft = ir.FunctionType(I32, [I8P, I8P] + [I32] * 4)
        self.helpers["cc_compute"] = ir.Function(self.module, ft, name=helper_symbol("cc_compute"))
        self.count = 0
        # symbols are unique across batches: every object is linked into one shared engine
        # (see load_object), where two batches' "blk0_<eip>" would name the same symbol
        self.tag = os.urandom(6).hex()

    def retired(self, index: int) -> V:
        """Instructions retired by this call before instruction ``index`` of the block."""
        return self.base.get() + index

    def tsc_at(self, index: int) -> V:
        e = self.e
        return self.tsc_base.get() + self.retired(index).zx(64) * e.sget("tsc_per_insn").zx(64)

    def effective_address(self, d: Decoded) -> V:
        e = self.e
        if d.a32:
            v = e.c(d.disp)
            if d.base >= 0:
                v = e.reg(d.base) + v
            if d.index >= 0:
                v = v + (e.reg(d.index) << d.scale)
            return v
        v = e.reg(d.base, 16).zx(32) if d.base >= 0 else e.c(0)
        if d.index >= 0:
            v = v + e.reg(d.index, 16).zx(32)
        return (v + d.disp) & 0xFFFF

    def add_block(self, code: bytes, offset: int, eip: int, code32: bool,
                  max_insns: int = MAX_BLOCK_INSNS) -> tuple[str, int] | None:
        """Translate the block at ``code[offset:]`` (guest EIP ``eip``); returns (function
        name, instruction count) or None if the first instruction is not translatable."""
        insns = decode_block(code, offset, eip, code32, max_insns)
        if not insns:
            return None
        name = f"blk{self.count}_{eip:08x}_{self.tag}"
        self.count += 1
        fn = ir.Function(self.module, BLOCK_TYPE, name=name)
        fn.attributes.add("nounwind")   # no unwind tables: less for the linker to register
        fn.args[0].add_attribute("noalias")
        fn.args[1].add_attribute("noalias")
        self._emit(fn, insns, offset, eip)
        return name, len(insns)

    def _emit(self, fn, insns: list[Decoded], offset: int, eip: int):
        e = self.e = _BlockEmitter(self.module, fn, self.helpers, in_run=True)
        e.b = FoldingBuilder(e.entry_block)
        budget = V(e, fn.args[2])
        self.k = e.var(32, 0)
        self.base = e.var(32, 0)    # instructions retired in earlier trips round the loop
        self.tsc_base = e.var(64)
        self.index = 0
        e.tsc_out = lambda: e.sset("tsc", self.tsc_at(self.index))
        e.exit_bb = e.block("exit")
        e.fault_bb = e.block("fault")
        done = e.block("done")
        insn_start = e.var(32)
        e.lazy_regs = not any(d.branch_target(eip + (d.offset - offset) + d.length) == eip
                              for d in insns)
        e.enter()
        self.tsc_base.set(e.sget("tsc"))
        e.sset("shadow", e.c(0))
        first = e.block("i0")
        e.b.branch(first)
        e.b.position_at_end(first)
        ninsn = len(insns)

        def attention() -> V:
            return (e.sget("stop") | e.sget("smc")).ne(0) | (
                e.sget("intr").ne(0) & (e.lget("eflags") & S.IF).ne(0))

        status = e.var(32, 0)
        out = e.block("out")

        def leave(bb, code, eip_from=None):
            e.b.position_at_end(bb)
            if eip_from is not None:
                e.lset("eip", eip_from.get())
            status.set(e.c(code))
            e.b.branch(out)

        for i, d in enumerate(insns):
            self.index = i
            start = eip + (d.offset - offset)
            after = start + d.length
            self.k.set(self.retired(i))
            insn_start.set(e.c(start))
            e.lset("eip", e.c(after))
            e.called.set(e.c(0, 1))
            isa.OPS[d.opcode].fn(BlockInsn(self, d, start))
            if e.b.block.is_terminated:
                e.dead()
                continue
            done_here = self.retired(i + 1)
            self.k.set(done_here)
            target = d.branch_target(after)
            last = i == ninsn - 1
            if target is not None:
                now = e.lget("eip")
                if target == eip and not e.clobbered:   # (else entry-loaded fields go stale)
                    # a loop: go round again inside this call if the budget and nothing else
                    # stops it (the same checks the interpreter makes between instructions)
                    with e.if_(now.eq(eip)):
                        again = (done_here + ninsn).ule(budget) & ~attention()
                        with e.if_(again):
                            self.base.set(done_here)
                            e.b.branch(first)
                            e.dead()
                        e.b.branch(done)
                        e.dead()
                if not last:
                    nxt = e.block(f"i{i + 1}")
                    e.b.cbranch(now.eq(after).v, nxt, done)
                    e.b.position_at_end(nxt)
            if last:
                e.b.branch(done)
            else:
                # after a call out of line: the host may have raised INTR, asked to stop, or
                # code may have been written
                # (tested only on the paths that called: the fast paths load nothing)
                with e.if_(e.called.get(), likely=False):
                    with e.if_(attention()):
                        e.b.branch(done)
                        e.dead()
        if not e.b.block.is_terminated:
            e.b.branch(done)
        leave(done, 0)
        leave(e.fault_bb, JIT_FAULT, insn_start)
        leave(e.exit_bb, JIT_EXIT)
        e.b.position_at_end(out)      # one epilogue: write everything back
        e.sync_out()
        k = self.k.get()
        e.sset("tsc", self.tsc_base.get() + k.zx(64) * e.sget("tsc_per_insn").zx(64))
        e.sset("jit_status", status.get())
        total = V(e, fn.args[3]) + k
        # chain: when nothing needs the interpreter, go straight on to the next translated
        # block (a tail call: the stack does not grow), else return to the interpreter
        free = status.get().eq(0) & ~attention() & e.sget("shadow").eq(0)
        with e.if_(free):
            left = budget - k

            def chain(t):
                with e.if_(t.ninsn.ule(left)):
                    fp = e.b.inttoptr(t.fn.v, BLOCK_TYPE.as_pointer())
                    r = e.b.call(fp, [e.state, e.ram, left.v, total.v], tail="musttail")
                    e.b.ret(r)
                    e.dead()
            nxt = e.lget("eip")
            emit_lookup(e, nxt, chain, lambda t: count_miss(e, nxt, t))
        e.b.ret(total.v)
        for bb in fn.blocks:
            if not bb.is_terminated:
                ir.IRBuilder(bb).unreachable()

    def ir_text(self) -> str:
        return str(self.module)


# ---------------------------------------------------------------------------- compile


def compile_object(ir_text: str) -> bytes:
    """Optimise and compile a module of blocks to relocatable object code (any process)."""
    from . import build
    llvm = build._llvm()
    mod = llvm.parse_assembly(ir_text)
    mod.triple = llvm.get_process_triple()
    # -O1 code generation (greedy register allocation). Level 0 (FastISel, fast register
    # allocation) compiles about twice as fast, but spills every guest register at each of a
    # block's many basic-block boundaries: its code ran busybox md5sum no faster than the
    # interpreter, and a memory loop at 300 against 780 MIPS (PYV86_JIT_CODEGEN_OPT=0 picks it)
    # static relocation, large code model: helpers are called through absolute addresses
    # (R_X86_64_64), with no GOT; objects that each bring a GOT crashed once several were
    # linked into one engine (see load_object)
    tm = build._tm(llvm, int(os.environ.get("PYV86_JIT_CODEGEN_OPT", "1")), reloc="static",
                   codemodel="large")
    build.light_passes(llvm, tm, mod, rounds=1)
    return tm.emit_object(mod)


_link_lock = threading.Lock()
_link_engine = None


def load_object(obj: bytes):
    """Link object code from :func:`compile_object` into this process (the interpreter's
    helpers must be loaded: ``build.load`` exports them).  Returns the engine that holds it;
    keep it alive while its code may run, and ask it for addresses with
    ``get_function_address``.

    Every object goes into one shared MCJIT engine (a new one after
    :func:`new_link_generation`): an engine per object cost about 0.75 ms of machine-thread
    time to create and finalise, against about 0.25 ms to add an object to a shared one, and
    a warm boot links hundreds of cached objects."""
    global _link_engine
    from . import build
    llvm = build._llvm()
    with _link_lock:
        if _link_engine is None:
            _link_engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), build._tm(llvm, 2))
        ee = _link_engine
        ee.add_object_file(llvm.ObjectFileRef.from_data(obj))
        ee.finalize_object()
        return ee


def new_link_generation() -> None:
    """Link later objects into a fresh engine (a runtime dropped its translations); the
    current engine lives on while anyone still holds it."""
    global _link_engine
    with _link_lock:
        _link_engine = None


def translate_batch(jobs: list[tuple[int, bool, bytes]]) -> tuple[bytes | None, list]:
    """Translate ``(eip, code32, code)`` jobs (``code`` runs from the block's first byte to
    the end of its page) into one object; returns (object or None, per job
    ``(symbol, instruction count)`` or None when not translatable)."""
    bt = BlockTranslator()
    out = [bt.add_block(code, 0, eip, code32) for eip, code32, code in jobs]
    if not any(out):
        return None, out
    return compile_object(bt.ir_text()), out
