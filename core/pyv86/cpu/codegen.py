"""Turn the ISA description (isa.py, fpu.py, system.py) into one LLVM module.

Exported symbol: ``i64 pyv86_run(i8* state, i8* ram, i64 budget)``: runs up to ``budget``
instructions, returns how many retired; ``state.exit_reason`` says why it returned.
"""
from __future__ import annotations

import llvmlite.ir as ir

from . import state as S
from . import isa, system
from . import fpu  # noqa: F401  (registers the x87 opcodes in isa.OPS)
from .dsl import (CB_INTR_ACK, I8, I8P, I32, I64, Emitter, V, ST_EXIT)
from .flags import emit_cc_compute
from .jitabi import (BLOCK_TYPE, BRANCHES, FN_OFFSET, JIT_EXIT, JIT_FAULT, JIT_SYNC, code_slot,
                     count_miss, emit_lookup, entry_field, helper_symbol)

RUN_NAME = "pyv86_run"

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

    def emit_run(self, only_ops=None):
        ft = ir.FunctionType(I64, [I8P, I8P, I64])
        fn = ir.Function(self.module, ft, name=RUN_NAME)
        fn.args[0].add_attribute("noalias")
        fn.args[1].add_attribute("noalias")
        e = self.e = Emitter(self.module, fn, self.helpers, in_run=True)
        budget = V(e, fn.args[2])
        self.n = e.var(64, 0)
        self.shadow_n = e.var(64)
        self.insn_start = e.var(32)
        self.tsc0 = e.var(64)
        # state.tsc is current at every host callback and helper call (port/MMIO devices can
        # read the exact guest time mid-slice); rdtsc itself uses the SSA value
        e.tsc_out = lambda: e.sset("tsc", self.tsc0.get() + self.n.get() * e.sget("tsc_per_insn").zx(64))
        dec = self.dec = {k: e.var(b) for k, b in (("mod", 32), ("reg", 32), ("rm", 32), ("is_mem", 1),
                                                    ("ea", 32), ("seg", 32), ("imm", 32), ("a32", 1),
                                                    ("rep", 32), ("dseg", 32), ("o32", 1), ("segovr", 32), ("esp_base", 1),
                                                    ("npfx", 32), ("op", 32))}
        loop = e.block("loop")
        e.exit_bb = e.block("exit")
        e.fault_bb = e.block("fault")
        nxt = e.block("next")
        # ---- entry
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
            self.emit_jit_call(budget)
        e.b.branch(loop)
        # ---- exit
        e.b.position_at_end(e.exit_bb)
        e.materialize()
        e.sync_out()
        n = self.n.get()
        e.sset("tsc", self.tsc0.get() + n * e.sget("tsc_per_insn").zx(64))
        e.sset("shadow", self.shadow_n.get().eq(n).zx(32))
        e.b.ret(n.v)
        # ---- fault
        e.b.position_at_end(e.fault_bb)
        e.lset("eip", self.insn_start.get())
        e.sync_out()
        st = V(e, e.b.call(self.helpers["raise_exc"], [e.state, e.ram]))
        cont = e.block("fault_cont")
        e.b.cbranch(st.eq(ST_EXIT).v, e.exit_bb, cont)
        e.b.position_at_end(cont)
        e.sync_in()
        self.n.set(self.n.get() + 1)
        e.b.branch(loop)
        # ---- next
        e.b.position_at_end(nxt)
        self.n.set(self.n.get() + 1)
        e.b.branch(loop)
        # ---- next after a control transfer: with the JIT on, look for a translated block at
        # the target (out of line, so the interpreter's own loop is unchanged without it)
        nxt_t = e.block("next_target")
        e.b.position_at_end(nxt_t)
        self.n.set(self.n.get() + 1)
        with e.if_(e.sget("jit_on").ne(0), likely=False):
            self.emit_jit_call(budget)
        e.b.branch(loop)
        # ---- loop
        e.b.position_at_end(loop)
        with e.if_(self.n.get().uge(budget), likely=False):
            e.b.branch(e.exit_bb)
            e.dead()
        att = e.sget("intr") | e.sget("stop")
        with e.if_(att.ne(0), likely=False):
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
        # ---- decode: one switch on (first byte, operand size) dispatches straight to the
        # handler; prefixes and the 0F escape are cases of the same switch.  Each handler
        # decodes its own ModRM and immediate with the attributes known at generation time;
        # memory forms share one effective-address block that returns through a switch.
        eip0 = e.lget("eip")
        self.insn_start.set(eip0)
        code32 = e.sget("code32").ne(0)
        dec["o32"].set(code32)
        dec["a32"].set(code32)
        dec["segovr"].set(e.c(-1))
        dec["rep"].set(e.c(0))
        dec["npfx"].set(e.c(0))
        pfx = e.block("pfx")
        e.b.branch(pfx)
        e.b.position_at_end(pfx)
        b = self.fetch(8).zx(32)
        ud = e.block("undefined")
        dsw = e.b.switch(((b << 1) | dec["o32"].get().zx(32)).v, ud)

        def pcase(val, fn_):
            bb = e.block(f"pfx_{val:x}")
            dsw.add_case(ir.Constant(I32, val << 1), bb)
            dsw.add_case(ir.Constant(I32, (val << 1) | 1), bb)
            with e.b.goto_block(bb):
                fn_()
                np = dec["npfx"].get() + 1
                dec["npfx"].set(np)
                e.gp_if(np.ugt(14), 0)
                e.b.branch(pfx)
        pcase(0x66, lambda: dec["o32"].set(~code32))
        pcase(0x67, lambda: dec["a32"].set(~code32))
        for val, s in ((0x26, 0), (0x2E, 1), (0x36, 2), (0x3E, 3), (0x64, 4), (0x65, 5)):
            pcase(val, lambda s=s: dec["segovr"].set(e.c(s)))
        pcase(0xF0, lambda: None)
        pcase(0xF2, lambda: dec["rep"].set(e.c(2)))
        pcase(0xF3, lambda: dec["rep"].set(e.c(3)))
        esc = e.block("esc_0f")
        dsw.add_case(ir.Constant(I32, 0x0F << 1), esc)
        dsw.add_case(ir.Constant(I32, (0x0F << 1) | 1), esc)
        e.b.position_at_end(esc)
        b2 = self.fetch(8).zx(32)
        dsw2 = e.b.switch((((b2 | 0x100) << 1) | dec["o32"].get().zx(32)).v, ud)
        e.b.position_at_end(ud)
        e.fault(6)
        e.b.branch(nxt)
        # the shared effective-address decoder (memory forms of ModRM)
        ea_bb = e.block("decode_ea")
        ea_ret = e.var(32)
        ea_bad = e.block("ea_ret_bad")
        e.b.position_at_end(ea_bad)
        e.b.unreachable()
        e.b.position_at_end(ea_bb)
        self.decode_ea(dec["mod"].get(), dec["rm"].get())
        ea_sw = e.b.switch(ea_ret.get().v, ea_bad)
        ops = sorted(isa.OPS) if only_ops is None else sorted(only_ops)
        self.handler_count = 0
        for opcode in ops:
            if opcode in (0x0F, 0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65, 0x66, 0x67, 0xF0, 0xF2, 0xF3):
                continue
            d = isa.OPS[opcode]
            unsized = opcode in isa.UNSIZED
            sw = dsw2 if opcode >= 0x100 else dsw
            for o in ((True,) if unsized else (False, True)):
                bb = e.block(f"op_{opcode:03x}_{32 if o else 16}")
                sw.add_case(ir.Constant(I32, ((opcode & 0xFF) << 1 if opcode < 0x100
                                              else opcode << 1) | int(o)), bb)
                if unsized:
                    sw.add_case(ir.Constant(I32, (opcode << 1) if opcode < 0x100 else opcode << 1), bb)
                e.b.position_at_end(bb)
                self.decode_operands(d, o, unsized, ea_bb, ea_ret, ea_sw)
                ins = Insn(self, opcode, o)
                d.fn(ins)
                if not e.b.block.is_terminated:
                    e.b.branch(nxt_t if opcode in BRANCHES else nxt)
                self.handler_count += 1
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

    def decode_operands(self, d, o32: bool, unsized: bool, ea_bb, ea_ret, ea_sw):
        """ModRM (+ SIB/displacement through the shared EA block) and immediate of one handler."""
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
                key = len(ea_sw.cases)
                ea_ret.set(e.c(key))
                e.b.branch(ea_bb)
                ea_sw.add_case(ir.Constant(I32, key), join)
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
