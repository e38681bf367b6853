"""Turn the ISA description (isa.py, fpu.py, system.py) into one LLVM module.

Exported symbol: ``i64 pyv86_run(i8* state, i8* ram, i64 budget)``: runs up to ``budget``
instructions, returns how many retired; ``state.exit_reason`` says why it returned.
"""
from __future__ import annotations

import llvmlite.ir as ir

from . import state as S
from . import isa, system
from . import fpu  # noqa: F401  (registers the x87 opcodes in isa.OPS)
from .dsl import (CB_INTR_ACK, I8, I8P, I32, I64, Emitter, SVar, V, ST_EXIT)
from .flags import emit_cc_compute
from .jitabi import (BLOCK_TYPE, BRANCHES, FN_OFFSET, JIT_EXIT, JIT_FAULT, JIT_SYNC, code_slot,
                     count_miss, emit_lookup, entry_field, helper_symbol)

RUN_NAME = "pyv86_run"
REG_LOCALS = ("eip", "cc_op", "cc_res", "cc_src1")
"""The run locals a handler gets in registers; the others (EFLAGS' stored bits, the rarely
read second lazy-flag operand, the code-page cache) live in the state (dsl.STATE_LOCALS)."""
HANDLER_TYPE = ir.FunctionType(I64, [I8P, I8P, I32, I64] + [I32] * len(REG_LOCALS))
"""A handler: (state, ram, prefix word, instruction count, EIP, cc_op, cc_res, cc_src1) ->
the instructions retired when the run ends. GHC's calling convention passes all of them in
registers and ``musttail`` makes each call a jump."""

# the prefix word a handler receives: bit 0 operand size 32, bit 1 address size 32, bits 2-3
# rep (0, 2 = repne, 3 = rep/repe), bits 4-7 segment override (15 = none), bits 8-11 count
PFX_NONE = 0xF0


class PfxField:
    """One field of the prefix word, with the interface of a decode Var."""

    def __init__(self, gen, shift, bits, boolean=False, none=None):
        self.gen, self.shift, self.mask, self.boolean, self.none = gen, shift, (1 << bits) - 1, boolean, none

    def get(self) -> V:
        v = (self.gen.pfx.get() >> self.shift) & self.mask
        if self.boolean:
            return v.ne(0)
        if self.none is not None:
            return self.gen.e.sel(v.eq(self.none), self.gen.e.c(-1), v)
        return v

    def set(self, v):
        e = self.gen.e
        if not isinstance(v, V):
            v = e.c(int(v))
        v = v.zx(32) if v.bits == 1 else v
        p = self.gen.pfx.get()
        self.gen.pfx.set((p & ~(self.mask << self.shift)) | ((v & self.mask) << self.shift))


REG_ONLY_OPS = {0x120, 0x121, 0x122, 0x123}


class Insn:
    """The decoded instruction handed to semantics functions."""

    def __init__(self, gen, op, o32):
        self.gen = gen
        self.e = gen.e
        self.op = op
        self.o32 = o32
        self.osize = 32 if o32 else 16
        d = gen.dec
        self.mod = d["mod"].get()
        self.reg = d["reg"].get()
        self.rm = d["rm"].get()
        self.is_mem = d["is_mem"].get()
        self.ea = d["ea"].get()
        self.seg = d["seg"].get()
        self.imm = d["imm"].get()
        self.a32 = d["a32"].get()
        self.rep = d["rep"].get()
        self.dseg = d["dseg"].get()
        self.esp_base = d["esp_base"].get()
        self.in_run = True

    def fetch(self, bits) -> V:
        return self.gen.fetch(bits)

    def shadow(self):
        self.gen.shadow_n.set(self.gen.n.get() + 1)

    def insn_start(self) -> V:
        return self.gen.insn_start.get()

    def leave_run(self, reason):
        e = self.e
        e.sset("exit_reason", e.c(reason))
        self.gen.n.set(self.gen.n.get() + 1)
        e.b.branch(e.exit_bb)
        e.dead()

    def tsc_now(self) -> V:
        g = self.gen
        return g.tsc0.get() + g.n.get() * self.e.sget("tsc_per_insn").zx(64)

    def sync_tsc_out(self):
        self.e.sset("tsc", self.tsc_now())

    def sync_tsc_in(self):
        g = self.gen
        g.tsc0.set(self.e.sget("tsc") - g.n.get() * self.e.sget("tsc_per_insn").zx(64))


class Generator:
    def __init__(self):
        self.module = ir.Module(name="pyv86_cpu")
        self.helpers = {}

    # ------------------------------------------------------------ helpers
    def declare_helpers(self):
        # internal (direct calls from run()); exported wrappers for translated blocks are
        # emitted by emit_helper_exports
        for name, (nargs, _) in system.HELPERS.items():
            ft = ir.FunctionType(I32, [I8P, I8P] + [I32] * nargs)
            fn = self.helpers[name] = ir.Function(self.module, ft, name=name)
            fn.linkage = "internal"
        ft = ir.FunctionType(I32, [I8P, I8P] + [I32] * 4)
        fn = self.helpers["cc_compute"] = ir.Function(self.module, ft, name="cc_compute")
        fn.linkage = "internal"

    def emit_helper_exports(self):
        """``pyv86_<helper>``: exported entry points that translated blocks link against (the
        interpreter itself calls the internal functions directly, not through the GOT)."""
        for name, fn in self.helpers.items():
            ex = ir.Function(self.module, fn.function_type, name=helper_symbol(name))
            b = ir.IRBuilder(ex.append_basic_block())
            b.ret(b.call(fn, list(ex.args)))

    def emit_helpers(self):
        for name, (nargs, body) in system.HELPERS.items():
            fn = self.helpers[name]
            e = Emitter(self.module, fn, self.helpers, in_run=False)
            e.fault_bb = fn.append_basic_block("fault")
            e.exit_bb = fn.append_basic_block("exit")
            with e.b.goto_block(e.fault_bb):
                e.b.ret(ir.Constant(I32, 1))
            with e.b.goto_block(e.exit_bb):
                e.b.ret(ir.Constant(I32, 2))
            body(e)
            self._terminate(fn)
        fn = self.helpers["cc_compute"]
        e = Emitter(self.module, fn, self.helpers, in_run=False)
        emit_cc_compute(e)
        self._terminate(fn)

    @staticmethod
    def _terminate(fn):
        for bb in fn.blocks:
            if not bb.is_terminated:
                b = ir.IRBuilder(bb)
                b.unreachable()

    # ------------------------------------------------------------ run()
    def fetch(self, bits) -> V:
        e = self.e
        nb = bits // 8
        eip = e.lget("eip")
        lin = e.lget("cs_base") + eip
        hit = ((lin & ~0xFFF) | 1).eq(e.lget("cp_tag"))
        if nb > 1:
            hit = hit & (lin & 0xFFF).ule(4096 - nb)
        out = e.var(bits)
        with e.if_else(hit, likely=True) as (t, o):
            with t:
                phys = lin + e.lget("cp_delta")
                out.set(V(e, e.b.load(e.ram_ptr(phys, bits), align=1)))
            with o:
                e.call("fetch_slow", lin, e.c(nb), sync=False)
                out.set(e.sget("scratch", 0).tr(bits))
                # refill the code-page cache from the TLB
                kind = e.cpl_kind()
                idx = (lin >> 12) & (S.TLB_SIZE - 1)
                tag = e.sget("tlb_tag", (kind << S.TLB_BITS) + idx)
                ok = tag.eq((lin & ~0xFFF) | 1)
                e.lset("cp_tag", e.sel(ok, tag, e.c(0)))
                e.lset("cp_delta", e.sget("tlb_delta", idx))
        e.lset("eip", eip + nb)
        return out.get()

    # ------------------------------------------------------------ run(): the handlers
    def _handler(self, name, fn=None):
        """Start handler function ``name`` (or the declared ``fn``): its emitter, the locals
        from its arguments, and its exit and fault paths; returns (function, emitter) with
        the builder at the body."""
        if fn is None:
            fn = self._declare_handler(name)
        e = self.e = Emitter(self.module, fn, self.helpers, in_run=True, run_handler=True)
        self.n = e.var(64)
        self.n.set(V(e, fn.args[3]))
        self.pfx = e.var(32)
        self.pfx.set(V(e, fn.args[2]))
        for i, n in enumerate(REG_LOCALS):
            e.lset(n, V(e, fn.args[4 + i]))
        self._run_state(e)
        body = e.block("body")
        e.b.branch(body)
        self._exit_and_fault(e, lambda: self._tail_dispatch())
        e.b.position_at_end(body)
        return fn, e

    def _declare_handler(self, name):
        fn = ir.Function(self.module, HANDLER_TYPE, name=name)
        fn.calling_convention = "ghccc"
        fn.linkage = "internal"
        fn.args[0].add_attribute("noalias")
        fn.args[1].add_attribute("noalias")
        return fn

    def _run_state(self, e):
        """What a handler shares with the others through the state, and its decode values."""
        self.shadow_n = SVar(e, "run_shadow_n")
        self.insn_start = SVar(e, "run_insn_start")
        self.tsc0 = SVar(e, "run_tsc0")
        e.tsc_out = lambda: e.sset("tsc", self.tsc0.get() + self.n.get() * e.sget("tsc_per_insn").zx(64))
        dec = self.dec = {k: e.var(b) for k, b in (("mod", 32), ("reg", 32), ("rm", 32), ("is_mem", 1),
                                                    ("ea", 32), ("seg", 32), ("imm", 32),
                                                    ("dseg", 32), ("esp_base", 1))}
        dec["o32"] = PfxField(self, 0, 1, boolean=True)
        dec["a32"] = PfxField(self, 1, 1, boolean=True)
        dec["rep"] = PfxField(self, 2, 2)
        dec["segovr"] = PfxField(self, 4, 4, none=15)
        dec["npfx"] = PfxField(self, 8, 4)

    def _exit_and_fault(self, e, go_on):
        """The exit block (the run ends: flags, TSC and shadow written back, the count
        returned) and the fault block (deliver the exception, then ``go_on()``)."""
        e.exit_bb = e.block("exit")
        e.fault_bb = e.block("fault")
        e.b.position_at_end(e.exit_bb)
        e.materialize()
        e.sync_out()
        n = self.n.get()
        e.sset("tsc", self.tsc0.get() + n * e.sget("tsc_per_insn").zx(64))
        e.sset("shadow", self.shadow_n.get().eq(n).zx(32))
        e.b.ret(n.v)
        e.b.position_at_end(e.fault_bb)
        e.lset("eip", self.insn_start.get())
        e.sync_out()
        st = V(e, e.b.call(self.helpers["raise_exc"], [e.state, e.ram]))
        cont = e.block("fault_cont")
        e.b.cbranch(st.eq(ST_EXIT).v, e.exit_bb, cont)
        e.b.position_at_end(cont)
        e.sync_in()
        self.n.set(self.n.get() + 1)
        go_on()

    def _handler_args(self):
        e = self.e
        return [e.state, e.ram, self.pfx.get().v, self.n.get().v] + [e.lget(n).v for n in REG_LOCALS]

    def _tail_to(self, fp):
        """Jump to handler ``fp`` (a ``musttail`` call) with the current values."""
        e = self.e
        e.b.ret(e.b.call(fp, self._handler_args(), cconv="ghccc", tail="musttail"))
        e.dead()

    def _tail_dispatch(self, checks=True, reset=True):
        """The end of an instruction: the budget and attention checks, the prefix word, the
        next opcode, and the jump to its handler."""
        e = self.e
        if checks:
            with e.if_(self.n.get().uge(e.sget("run_budget")), likely=False):
                e.b.branch(e.exit_bb)
                e.dead()
            att = e.sget("intr") | e.sget("stop")
            with e.if_(att.ne(0), likely=False):
                self._tail_to(self.t_attn)
        if reset:
            self.insn_start.set(e.lget("eip"))
            self.pfx.set(e.sel(e.sget("code32").ne(0), e.c(PFX_NONE | 3), e.c(PFX_NONE)))
        b = self.fetch(8).zx(32)
        self._jump_table(0, (b << 1) | (self.pfx.get() & 1))

    def _jump_table(self, base, index):
        """Jump through entry ``base + index`` of the handler table. Its address comes from
        the state: a handler that reached it through the GOT would rebuild the GOT pointer
        on every entry (the large code model MCJIT needs)."""
        e = self.e
        table = e.b.inttoptr(e.sget("run_handlers").v, HANDLER_TYPE.as_pointer().as_pointer())
        ptr = e.b.gep(table, [(index + base).zx(64).v], inbounds=True)
        self._tail_to(e.b.load(ptr))

    def emit_run(self, only_ops=None):
        """One function per handler (opcode and operand size, a prefix, the 0F escape), each
        ending in its own copy of the dispatch: a ``musttail`` call of the next handler
        through one table, with the instruction count, the prefix word, EIP and the lazy
        flags in argument registers (GHC's calling convention)."""
        hp = HANDLER_TYPE.as_pointer()
        self.main_tab = ir.GlobalVariable(self.module, ir.ArrayType(hp, 1024), "pyv86_handlers")
        self.main_tab.global_constant = True
        self.main_tab.linkage = "internal"
        self.t_attn = self._declare_handler("t_attention")
        t_ud, e = self._handler("t_undefined")
        e.fault(6)
        self._terminate(t_ud)
        slots = [t_ud] * 1024          # 0-511: one-byte opcodes, 512-1023: 0F xx
        # ---- prefixes and the 0F escape
        code_flip = (lambda name: lambda e: self.dec[name].set(e.sget("code32").eq(0).zx(32)))
        prefixes = [(0x66, code_flip("o32")), (0x67, code_flip("a32"))]
        prefixes += [(v, (lambda sg: lambda e: self.dec["segovr"].set(e.c(sg)))(sg))
                     for v, sg in ((0x26, 0), (0x2E, 1), (0x36, 2), (0x3E, 3), (0x64, 4), (0x65, 5))]
        prefixes += [(0xF0, lambda e: None), (0xF2, lambda e: self.dec["rep"].set(e.c(2))),
                     (0xF3, lambda e: self.dec["rep"].set(e.c(3)))]
        for val, set_ in prefixes:
            fn, e = self._handler(f"t_pfx_{val:x}")
            slots[val << 1] = slots[(val << 1) | 1] = fn
            set_(e)
            np = self.dec["npfx"].get() + 1
            e.gp_if(np.ugt(14), 0)
            self.dec["npfx"].set(np)
            self._tail_dispatch(checks=False, reset=False)
            self._terminate(fn)
        fn, e = self._handler("t_esc_0f")
        slots[0x0F << 1] = slots[(0x0F << 1) | 1] = fn
        b2 = self.fetch(8).zx(32)
        self._jump_table(512, (b2 << 1) | (self.pfx.get() & 1))
        self._terminate(fn)
        # ---- the instructions
        ops = sorted(isa.OPS) if only_ops is None else sorted(only_ops)
        self.handler_count = 0
        for opcode in ops:
            if opcode in (0x0F, 0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65, 0x66, 0x67, 0xF0, 0xF2, 0xF3):
                continue
            d = isa.OPS[opcode]
            unsized = opcode in isa.UNSIZED
            base = (512 if opcode >= 0x100 else 0) + ((opcode & 0xFF) << 1)
            for o in ((True,) if unsized else (False, True)):
                fn, e = self._handler(f"t_op_{opcode:03x}_{32 if o else 16}")
                if unsized:
                    slots[base] = slots[base | 1] = fn
                else:
                    slots[base | int(o)] = fn
                self.decode_operands(d, o, unsized)
                d.fn(Insn(self, opcode, o))
                if not e.b.block.is_terminated:
                    self.n.set(self.n.get() + 1)
                    if opcode in BRANCHES:
                        # with the JIT on, look for a translated block at the target
                        with e.if_(e.sget("jit_on").ne(0), likely=False):
                            self.emit_jit_call(e.sget("run_budget"))
                    self._tail_dispatch()
                self._terminate(fn)
                self.handler_count += 1
        self.main_tab.initializer = ir.Constant(ir.ArrayType(hp, 1024), slots)
        # ---- attention: a stop request, or an interrupt to deliver
        fn, e = self._handler("t_attention", self.t_attn)
        with e.if_(e.sget("stop").ne(0)):
            e.sset("stop", e.c(0))
            e.sset("exit_reason", e.c(S.EXIT_STOP))
            e.b.branch(e.exit_bb)
            e.dead()
        can = (e.sget("intr").ne(0) & (e.lget("eflags") & S.IF).ne(0)
               & self.shadow_n.get().ne(self.n.get()))
        with e.if_(can):
            e.sync_out()
            vec = e.callback(CB_INTR_ACK)
            e.sync_in()
            with e.if_(vec.slt(0x100) & vec.sge(0)):
                self.insn_start.set(e.lget("eip"))
                e.call("deliver", vec.tr(32), e.c(2), e.c(0), e.c(0))
        self._tail_dispatch(checks=False)
        self._terminate(fn)
        # ---- the first dispatch of a run
        t_start, e = self._handler("t_start")
        self._tail_dispatch()
        self._terminate(t_start)
        # ---- pyv86_run (C calling convention): set up, then enter the handlers
        ft = ir.FunctionType(I64, [I8P, I8P, I64])
        fn = ir.Function(self.module, ft, name=RUN_NAME)
        fn.args[0].add_attribute("noalias")
        fn.args[1].add_attribute("noalias")
        e = self.e = Emitter(self.module, fn, self.helpers, in_run=True, run_handler=True)
        e.sset("run_budget", V(e, fn.args[2]))
        e.sset("run_handlers", V(e, e.b.ptrtoint(self.main_tab, I64)))
        self.n = e.var(64, 0)
        self.pfx = e.var(32, PFX_NONE)
        self._run_state(e)
        body = e.block("body")
        e.b.branch(body)

        def enter():
            e.b.ret(e.b.call(t_start, self._handler_args(), cconv="ghccc"))
            e.dead()
        # a fault here can only come from a translated block entered below
        self._exit_and_fault(e, enter)
        e.b.position_at_end(body)
        e.sync_in()
        self.tsc0.set(e.sget("tsc"))
        self.shadow_n.set(e.sel(e.sget("shadow").ne(0), e.c(0, 64), e.c(-1, 64)))
        e.sset("exit_reason", e.c(S.EXIT_BUDGET))
        with e.if_(e.sget("halted").ne(0)):
            wake = e.sget("intr").ne(0) & (e.lget("eflags") & S.IF).ne(0)
            with e.if_else(wake) as (t, o):
                with t:
                    e.sset("halted", e.c(0))
                with o:
                    e.sset("exit_reason", e.c(S.EXIT_HALT))
                    e.b.branch(e.exit_bb)
                    e.dead()
        with e.if_(e.sget("jit_on").ne(0), likely=False):
            self.emit_jit_call(e.sget("run_budget"))
        enter()
        self._terminate(fn)
        return fn

    def emit_jit_call(self, budget: V):
        """Call the out-of-line dispatcher (``pyv86_jit_dispatch``) and take over what the
        translated blocks it ran did: instructions retired, TSC, shadow, fault or exit."""
        e = self.e
        with e.if_(~self.jit_miss_counted(), likely=False):
            e.sync_out()
            e.tsc_out()
            left = budget - self.n.get()
            left = e.sel(left.ugt(0x7FFFFFFF), e.c(0x7FFFFFFF, 64), left).tr(32)
            k = V(e, e.b.call(self.jit_dispatch, [e.state, e.ram, left.v]))
            st = e.sget("jit_status")
            with e.if_((k | st).ne(0)):
                e.sync_in()
                n = self.n.get() + k.zx(64)
                self.n.set(n)
                self.tsc0.set(e.sget("tsc") - n * e.sget("tsc_per_insn").zx(64))
                with e.if_(k.ne(0) & e.sget("shadow").ne(0)):
                    self.shadow_n.set(n)
                with e.if_(st.eq(JIT_FAULT)):
                    self.insn_start.set(e.lget("eip"))
                    e.b.branch(e.fault_bb)
                    e.dead()
                with e.if_(st.eq(JIT_EXIT) | st.eq(JIT_SYNC)):
                    e.b.branch(e.exit_bb)
                    e.dead()

    def jit_miss_counted(self) -> V:
        """The dispatcher's common case, inline and without syncing the state: no translation
        can start at this branch target, so only its hit counter goes up. True when that was
        all there was to do. The dispatcher is still called when the code page is mapped and
        its set holds a translation (maybe for this target) or the count reaches the request
        threshold: it makes those decisions (see :meth:`emit_jit_dispatch_fn`)."""
        e = self.e
        in_tlb, locate = code_slot(e, e.lget("cs_base") + e.lget("eip"))
        done = e.var(1, 1)                # not in the TLB: the dispatcher would do nothing
        with e.if_(in_tlb):
            _phys, _slot, ent, hot_ptr = locate()
            fns = e.c(0, 64)
            for w in range(S.JIT_WAYS):
                fns = fns | entry_field(e, ent + w * S.JIT_ENTRY_SIZE, FN_OFFSET, 64)[1]
            count = V(e, e.b.load(hot_ptr)) + 1
            counted = fns.eq(0) & count.ne(e.sget("jit_threshold"))
            with e.if_(counted):
                e.b.store(count.v, hot_ptr)
            done.set(counted)
        return done.get()

    def emit_jit_dispatch_fn(self):
        """``i32 pyv86_jit_dispatch(state, ram, budget)``: at a branch target (state synced),
        run the translated block for (EIP, physical address, code size) if there is a
        current one and the budget covers it (it may chain on to others) and return the
        instructions retired; else count the miss and ask for a translation when the address
        becomes hot (jitrt.py translates)."""
        ft = ir.FunctionType(I32, [I8P, I8P, I32])
        fn = self.jit_dispatch = ir.Function(self.module, ft, name="pyv86_jit_dispatch")
        fn.linkage = "internal"
        e = Emitter(self.module, fn, self.helpers, in_run=False)
        left = V(e, fn.args[2])
        out = e.var(32, 0)
        e.sset("jit_status", e.c(0))
        eip = e.sget("eip")

        def current(t):
            with e.if_(t.ninsn.ule(left)):
                e.sset("smc", e.c(0))
                fp = e.b.inttoptr(t.fn.v, BLOCK_TYPE.as_pointer())
                k = V(e, e.b.call(fp, [e.state, e.ram, left.v, ir.Constant(I32, 0)]))
                out.set(k)
                e.sset("jit_calls", e.sget("jit_calls") + 1)
                e.sset("jit_insns", e.sget("jit_insns") + k.zx(64))

        emit_lookup(e, eip, current, lambda t: count_miss(e, eip, t))
        e.b.ret(out.get().v)
        self._terminate(fn)

    def decode_operands(self, d, o32: bool, unsized: bool):
        """ModRM (with its SIB byte and displacement) and immediate of one handler."""
        e = self.e
        dec = self.dec
        ovr = dec["segovr"].get()
        dec["dseg"].set(e.sel(ovr.eq(-1), e.c(S.DS), ovr))
        dec["is_mem"].set(e.c(0, 1))
        dec["esp_base"].set(e.c(0, 1))
        dec["ea"].set(e.c(0))
        dec["seg"].set(e.c(S.DS))
        if d.modrm:
            m = self.fetch(8).zx(32)
            mod = m >> 6
            dec["mod"].set(mod)
            dec["reg"].set((m >> 3) & 7)
            dec["rm"].set(m & 7)
            if d.code not in REG_ONLY_OPS:
                memb = e.block("mem_form")
                join = e.block("operands")
                e.b.cbranch(mod.ne(3).v, memb, join)
                e.b.position_at_end(memb)
                dec["is_mem"].set(e.c(1, 1))
                self.decode_ea(dec["mod"].get(), dec["rm"].get())
                e.b.branch(join)
                e.b.position_at_end(join)
        k = d.imm
        if k == isa.IMM_B:
            dec["imm"].set(self.fetch(8).zx(32))
        elif k == isa.IMM_W:
            dec["imm"].set(self.fetch(16).zx(32))
        elif k == isa.IMM_Z and not unsized:
            dec["imm"].set(self.fetch(32) if o32 else self.fetch(16).zx(32))
        elif k in (isa.IMM_Z, isa.IMM_MOFFS):
            cond = dec["o32"].get() if k == isa.IMM_Z else dec["a32"].get()
            with e.if_else(cond) as (t, o):
                with t:
                    dec["imm"].set(self.fetch(32))
                with o:
                    dec["imm"].set(self.fetch(16).zx(32))
        else:
            dec["imm"].set(e.c(0))

    def decode_ea(self, mod: V, rm: V):
        e = self.e
        dec = self.dec
        ea = e.var(32, 0)
        use_ss = e.var(1, 0)
        with e.if_else(dec["a32"].get()) as (t, o):
            with t:
                with e.if_else(rm.eq(4)) as (sib_b, nosib):
                    with sib_b:
                        sib = self.fetch(8).zx(32)
                        base = sib & 7
                        index = (sib >> 3) & 7
                        scale = sib >> 6
                        with e.if_else(base.eq(5) & mod.eq(0)) as (d32, rb):
                            with d32:
                                ea.set(self.fetch(32))
                            with rb:
                                ea.set(e.reg(base))
                                use_ss.set(base.eq(4) | base.eq(5))
                                dec["esp_base"].set(base.eq(4))
                        with e.if_(index.ne(4)):
                            ea.set(ea.get() + (e.reg(index) << scale))
                    with nosib:
                        with e.if_else(rm.eq(5) & mod.eq(0)) as (d32, rb):
                            with d32:
                                ea.set(self.fetch(32))
                            with rb:
                                ea.set(e.reg(rm))
                                use_ss.set(rm.eq(5))
                with e.if_(mod.eq(1)):
                    ea.set(ea.get() + self.fetch(8).sx(32))
                with e.if_(mod.eq(2)):
                    ea.set(ea.get() + self.fetch(32))
            with o:
                with e.if_else(rm.eq(6) & mod.eq(0)) as (d16, rb):
                    with d16:
                        ea.set(self.fetch(16).zx(32))
                    with rb:
                        bx, bp, si, di = (e.reg(r, 16).zx(32) for r in (3, 5, 6, 7))
                        vals = {0: lambda: bx + si, 1: lambda: bx + di, 2: lambda: bp + si,
                                3: lambda: bp + di, 4: lambda: si, 5: lambda: di, 6: lambda: bp,
                                7: lambda: bx}
                        e.switch(rm, {k: (lambda f=f: ea.set(f())) for k, f in vals.items()})
                        use_ss.set(rm.eq(2) | rm.eq(3) | rm.eq(6))
                with e.if_(mod.eq(1)):
                    ea.set(ea.get() + self.fetch(8).sx(32))
                with e.if_(mod.eq(2)):
                    ea.set(ea.get() + self.fetch(16).zx(32))
                ea.set(ea.get() & 0xFFFF)
        dec["ea"].set(ea.get())
        ovr = dec["segovr"].get()
        dflt = e.sel(use_ss.get(), e.c(S.SS), e.c(S.DS))
        dec["seg"].set(e.sel(ovr.eq(-1), dflt, ovr))


def generate(only_ops=None) -> tuple[str, dict]:
    g = Generator()
    g.declare_helpers()
    g.emit_helpers()
    g.emit_helper_exports()
    g.emit_jit_dispatch_fn()
    g.emit_run(only_ops)
    info = {"handlers": g.handler_count, "opcodes": len(isa.OPS)}
    return str(g.module), info
