"""A small DSL for writing instruction semantics once, emitted as LLVM IR with llvmlite.

Semantics functions receive an :class:`Emitter` ``e`` and operate on :class:`V` values
(SSA values with a bit width) with Python operators.  The emitter hides:

* state access (``e.sget/sset``), guest registers (``e.reg/set_reg``)
* guest memory through segmentation, the software TLB and the slow path (``e.read/write``)
* lazy flags (``e.set_cc``, ``e.flags()``, ``e.cond(cc)``)
* precise exceptions (``e.fault(vector, code)``) and helper calls with status checks.

The same emitter works in three places: the interpreter's handler functions (``run_handler``:
EIP and three lazy-flag fields are SSA locals that travel between handlers in registers, the
rest lives in the state), translated blocks (all of them SSA locals) and out-of-line helper
functions (all of them in the state).
"""
from __future__ import annotations

from contextlib import contextmanager

import llvmlite.ir as ir

from . import state as S

I1 = ir.IntType(1)
I8 = ir.IntType(8)
I16 = ir.IntType(16)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
F64 = ir.DoubleType()
I8P = I8.as_pointer()
VOID = ir.VoidType()


def ity(bits: int) -> ir.IntType:
    return ir.IntType(bits)


MASK = {8: 0xFF, 16: 0xFFFF, 32: 0xFFFFFFFF, 64: (1 << 64) - 1, 1: 1}
SIGN = {8: 0x80, 16: 0x8000, 32: 0x80000000, 64: 1 << 63}

# lazy flag operations
CC_EFLAGS = 0
CC_BASES = ("ADD", "SUB", "LOGIC", "INC", "DEC", "SHL", "SHR", "SAR")
SIZE_IDX = {8: 0, 16: 1, 32: 2}


def cc_code(base: str, size: int) -> int:
    return 1 + CC_BASES.index(base) * 3 + SIZE_IDX[size]


# callback ``which`` codes (host.py dispatches them)
CB_PORT_READ, CB_PORT_WRITE, CB_PORT_READ_STR, CB_PORT_WRITE_STR = 1, 2, 3, 4
CB_MMIO_READ, CB_MMIO_WRITE, CB_INTR_ACK = 5, 6, 7
CALLBACK_TYPE = ir.FunctionType(I64, [I32, I32, I32, I32, I64])

# helper status
ST_OK, ST_FAULT, ST_EXIT = 0, 1, 2


class V:
    """An SSA integer (or double) value with Python operators."""

    __slots__ = ("e", "v")

    def __init__(self, e: "Emitter", v):
        self.e = e
        self.v = v

    @property
    def bits(self) -> int:
        return self.v.type.width

    def _o(self, o):
        if isinstance(o, V):
            assert o.v.type == self.v.type, (o.v.type, self.v.type)
            return o.v
        return ir.Constant(self.v.type, o & MASK.get(self.bits, (1 << self.bits) - 1))

    def _w(self, v):
        return V(self.e, v)

    @property
    def b(self):
        return self.e.b

    def __add__(self, o): return self._w(self.b.add(self.v, self._o(o)))
    __radd__ = __add__
    def __sub__(self, o): return self._w(self.b.sub(self.v, self._o(o)))
    def __rsub__(self, o): return self._w(self.b.sub(self._o(o), self.v))
    def __mul__(self, o): return self._w(self.b.mul(self.v, self._o(o)))
    __rmul__ = __mul__
    def __and__(self, o): return self._w(self.b.and_(self.v, self._o(o)))
    __rand__ = __and__
    def __or__(self, o): return self._w(self.b.or_(self.v, self._o(o)))
    __ror__ = __or__
    def __xor__(self, o): return self._w(self.b.xor(self.v, self._o(o)))
    __rxor__ = __xor__
    def __invert__(self): return self._w(self.b.not_(self.v))
    def __neg__(self): return self._w(self.b.neg(self.v))
    def __lshift__(self, o): return self._w(self.b.shl(self.v, self._o(o)))
    def __rshift__(self, o): return self._w(self.b.lshr(self.v, self._o(o)))
    def sar(self, o): return self._w(self.b.ashr(self.v, self._o(o)))
    def udiv(self, o): return self._w(self.b.udiv(self.v, self._o(o)))
    def urem(self, o): return self._w(self.b.urem(self.v, self._o(o)))
    def sdiv(self, o): return self._w(self.b.sdiv(self.v, self._o(o)))
    def srem(self, o): return self._w(self.b.srem(self.v, self._o(o)))

    def _cmp(self, op, o, signed=False):
        f = self.b.icmp_signed if signed else self.b.icmp_unsigned
        return self._w(f(op, self.v, self._o(o)))

    def eq(self, o): return self._cmp("==", o)
    def ne(self, o): return self._cmp("!=", o)
    def ult(self, o): return self._cmp("<", o)
    def ule(self, o): return self._cmp("<=", o)
    def ugt(self, o): return self._cmp(">", o)
    def uge(self, o): return self._cmp(">=", o)
    def slt(self, o): return self._cmp("<", o, True)
    def sle(self, o): return self._cmp("<=", o, True)
    def sgt(self, o): return self._cmp(">", o, True)
    def sge(self, o): return self._cmp(">=", o, True)

    def zx(self, bits):
        if bits == self.bits:
            return self
        if bits < self.bits:
            return self._w(self.b.trunc(self.v, ity(bits)))
        return self._w(self.b.zext(self.v, ity(bits)))

    def sx(self, bits):
        if bits == self.bits:
            return self
        if bits < self.bits:
            return self._w(self.b.trunc(self.v, ity(bits)))
        return self._w(self.b.sext(self.v, ity(bits)))

    def tr(self, bits):
        return self.zx(bits)

    def bool(self):
        """i1: value != 0"""
        if self.bits == 1:
            return self
        return self.ne(0)

    def sign(self, size=None):
        size = size or self.bits
        return (self & SIGN[size]).ne(0)


class Var:
    """A mutable local (alloca, promoted to SSA by mem2reg)."""

    def __init__(self, e, typ, init=None, name=""):
        self.e = e
        with e.b.goto_block(e.entry_block):
            e.b.position_at_start(e.entry_block)
            self.ptr = e.b.alloca(typ, name=name)
        if init is not None:
            self.set(init)

    def get(self) -> V:
        return V(self.e, self.e.b.load(self.ptr))

    def set(self, v):
        if not isinstance(v, V):
            v = V(self.e, ir.Constant(self.ptr.type.pointee, v))
        self.e.b.store(v.v, self.ptr)


class SVar:
    """A 'local' that lives in the state struct (used by helper functions)."""

    def __init__(self, e, name):
        self.e = e
        self.name = name

    def get(self) -> V:
        return self.e.sget(self.name)

    def set(self, v):
        self.e.sset(self.name, v)


LOCAL_NAMES = ("eip", "eflags", "cc_op", "cc_res", "cc_src1", "cc_src2")
STATE_LOCALS = ("eflags", "cc_src2")
"""Run locals the interpreter's handlers keep in the state rather than in registers (see
codegen.REG_LOCALS); translated blocks keep all of them in SSA values."""


class Emitter:
    def __init__(self, module: ir.Module, fn: ir.Function, helpers: dict, in_run: bool,
                 run_handler: bool = False):
        self.module = module
        self.fn = fn
        self.helpers = helpers
        self.in_run = in_run
        self.entry_block = fn.append_basic_block("entry")
        self.b = ir.IRBuilder(self.entry_block)
        self.state = fn.args[0]
        self.ram = fn.args[1]
        self.fault_bb = None
        self.exit_bb = None
        self.tsc_out = None  # in run(): emits ``state.tsc = current guest TSC`` before host/helper calls
        if in_run:
            mem = STATE_LOCALS if run_handler else ()
            self.L = {n: (SVar(self, n) if n in mem else Var(self, I32, name=n)) for n in LOCAL_NAMES}
            for n in ("cp_tag", "cp_delta", "cs_base"):
                # the code-page cache: in the state for the interpreter's handlers
                self.L[n] = SVar(self, "run_" + n) if run_handler else Var(self, I32, name=n)
        else:
            self.L = {n: SVar(self, n) for n in LOCAL_NAMES}

    # ------------------------------------------------------------ basics
    def c(self, value, bits=32) -> V:
        return V(self, ir.Constant(ity(bits), value & MASK.get(bits, (1 << bits) - 1)))

    def v(self, x, bits=32) -> V:
        return x if isinstance(x, V) else self.c(x, bits)

    def block(self, name=""):
        return self.fn.append_basic_block(name)

    def var(self, bits=32, init=None, name="") -> Var:
        return Var(self, ity(bits) if bits != "f64" else F64, init, name)

    def sel(self, cond: V, a, b) -> V:
        if isinstance(a, V):
            b = self.v(b, a.bits)
        elif isinstance(b, V):
            a = self.v(a, b.bits)
        else:
            a, b = self.c(a), self.c(b)
        return V(self, self.b.select(cond.bool().v, a.v, b.v))

    # ------------------------------------------------------------ state
    def sptr(self, name, idx=0, typ=None):
        t = S.field_type(name)
        lt = {"u4": I32, "i4": I32, "u8": I64, "u1": I8, "f8": F64}[t] if typ is None else typ
        size = {"u4": 4, "i4": 4, "u8": 8, "u1": 1, "f8": 8}[t]
        base = S.field_offset(name)
        if isinstance(idx, V):
            off = idx.zx(64) * size + base
            p = self.b.gep(self.state, [off.v], inbounds=True)
        else:
            p = self.b.gep(self.state, [ir.Constant(I64, base + idx * size)], inbounds=True)
        return self.b.bitcast(p, lt.as_pointer())

    def sget(self, name, idx=0) -> V:
        return V(self, self.b.load(self.sptr(name, idx)))

    def sset(self, name, value, idx=0):
        p = self.sptr(name, idx)
        if not isinstance(value, V):
            value = V(self, ir.Constant(p.type.pointee, value))
        self.b.store(value.v, p)

    def lget(self, name) -> V:
        return self.L[name].get()

    def lset(self, name, v):
        self.L[name].set(self.v(v))

    # ------------------------------------------------------------ control flow
    @contextmanager
    def if_(self, cond: V, likely=None):
        with self.b.if_then(cond.bool().v, likely=likely):
            yield

    @contextmanager
    def if_else(self, cond: V, likely=None):
        with self.b.if_else(cond.bool().v, likely=likely) as (then, other):
            yield then, other

    def while_(self, cond_fn, body_fn):
        hdr = self.block("wh")
        body = self.block("wb")
        out = self.block("we")
        self.b.branch(hdr)
        self.b.position_at_end(hdr)
        c = cond_fn()
        self.b.cbranch(c.bool().v, body, out)
        self.b.position_at_end(body)
        body_fn()
        if not self.b.block.is_terminated:
            self.b.branch(hdr)
        self.b.position_at_end(out)

    def switch(self, value: V, cases: dict, default_fn=None):
        """cases: {int: fn()}; each fn emits code; all fall through to the join block."""
        join = self.block("sw_join")
        dflt = self.block("sw_default")
        sw = self.b.switch(value.v, dflt)
        for k, fn in cases.items():
            bb = self.block(f"sw_{k}")
            sw.add_case(ir.Constant(value.v.type, k), bb)
            self.b.position_at_end(bb)
            fn()
            if not self.b.block.is_terminated:
                self.b.branch(join)
        self.b.position_at_end(dflt)
        if default_fn:
            default_fn()
        if not self.b.block.is_terminated:
            self.b.branch(join)
        self.b.position_at_end(join)

    def dead(self):
        """Continue emitting into an unreachable block."""
        self.b.position_at_end(self.block("dead"))

    # ------------------------------------------------------------ exceptions
    def fault(self, vector, code=None):
        """Raise exception ``vector`` (with optional error code) precisely."""
        self.sset("exc_vector", self.v(vector))
        self.sset("exc_code", self.v(code if code is not None else 0))
        self.sset("exc_has_code", self.c(1 if code is not None else 0))
        self.b.branch(self.fault_bb)
        self.dead()

    def fault_if(self, cond: V, vector, code=None):
        with self.if_(cond, likely=False):
            self.fault(vector, code)

    def gp(self, code=0):
        self.fault(13, code)

    def gp_if(self, cond, code=0):
        self.fault_if(cond, 13, code)

    def ud(self):
        self.fault(6)

    def check_status(self, st: V):
        """Branch on a helper status: 0 continue, 1 fault pending, 2 exit."""
        ok = self.block("st_ok")
        notok = self.block("st_bad")
        self.b.cbranch(st.eq(0).v, ok, notok, )
        self.b.position_at_end(notok)
        self.b.cbranch(st.eq(1).v, self.fault_bb, self.exit_bb)
        self.b.position_at_end(ok)

    def exit(self, reason):
        """Leave run() (or make the helper return 'exit') with state.exit_reason = reason."""
        self.sset("exit_reason", self.v(reason))
        self.b.branch(self.exit_bb)
        self.dead()

    # ------------------------------------------------------------ helper calls
    def sync_out(self):
        if not self.in_run:
            return
        for n in LOCAL_NAMES:
            self.sset(n, self.lget(n))

    def sync_in(self):
        if not self.in_run:
            return
        for n in LOCAL_NAMES:
            self.lset(n, self.sget(n))
        self.lset("cp_tag", self.c(0))
        self.lset("cs_base", self.sget("seg_base", S.CS))

    def call(self, name, *args, check=True, sync=True) -> V:
        """Call helper ``name`` (returns an i32 status), syncing locals around it."""
        fn = self.helpers[name]
        if sync:
            self.sync_out()
        if self.tsc_out is not None:
            self.tsc_out()
        argv = [self.state, self.ram] + [self.v(a).v if not isinstance(a, V) else a.v for a in args]
        st = V(self, self.b.call(fn, argv))
        if sync:
            self.sync_in()
        if check:
            self.check_status(st)
        return st

    def call_pure(self, name, *args) -> V:
        fn = self.helpers[name]
        argv = [self.state, self.ram] + [a.v if isinstance(a, V) else ir.Constant(I32, a) for a in args]
        return V(self, self.b.call(fn, argv))

    def callback(self, which, a=0, b=0, c=0, d=None) -> V:
        if self.tsc_out is not None:  # devices may read the exact guest TSC mid-slice
            self.tsc_out()
        p = self.sget("callback")
        fp = self.b.inttoptr(p.v, CALLBACK_TYPE.as_pointer())
        d = d if d is not None else V(self, ir.Constant(I64, 0))
        r = self.b.call(fp, [self.c(which).v, self.v(a).v, self.v(b).v, self.v(c).v, d.v])
        return V(self, r)

    def _first_window(self, matches) -> tuple[V, V]:
        """(window, found): the register window ``i`` with the lowest index for which
        ``matches(i)`` holds (the lower index wins an overlap)."""
        which = self.var(32, 0)
        found = self.var(1, 0)
        for i in reversed(range(S.PORT_WINDOWS)):
            with self.if_(matches(i)):
                which.set(self.c(i))
                found.set(1)
        return which.get(), found.get()

    def _window_output(self, w: V, status: V, enable: V) -> V:
        """Window ``w``'s interrupt output for these status and enable bytes (no pair:
        bits 0, output 0); with enable_xor 0xFF the enable byte is a mask (set bits
        disable). ``InterruptPair.output`` is the same in Python."""
        return (status & (enable ^ self.sget("pwin_enable_xor", w)) & self.sget("pwin_irq_bits", w)).ne(0)

    def _window_slot(self, port: V, table: str) -> tuple[V, V]:
        """(window, byte): which register window holds ``port`` and the byte of its block
        that serves a byte access there (``table``: ``pwin_rmap`` or ``pwin_wmap``); the
        byte is 0xFF when the host must serve it."""
        w, found = self._first_window(   # (a length of 0: no window)
            lambda i: (port - self.sget("pwin_base", i)).ult(self.sget("pwin_len", i)))
        slot = self.var(8, 0xFF)
        with self.if_(found):
            bank_reg = V(self, self.b.load(self._window_byte(w, self.sget("pwin_page", w))))
            bank = (bank_reg.zx(32) >> self.sget("pwin_page_shift", w)) & self.sget("pwin_page_mask", w)
            off = port - self.sget("pwin_base", w)
            slot.set(self.sget(table, (w << 6) | (bank << 4) | off))
        return w, slot.get()

    def _window_byte(self, w: V, byte: V):
        block = self.b.inttoptr(self.sget("pwin_block", w).v, I8P)
        return self.b.gep(block, [(byte.zx(32) & 0xFF).zx(64).v])

    def data_port(self, port: V, size: int, units: V, allowed: V | None = None) -> tuple[V, V]:
        """(served, pointer): when ``port`` is a register window's data port and the rule of
        ``DataPort.served_transfer`` (the same rule in Python) lets the CPU move ``units``
        elements of ``size`` bytes there (and ``allowed``, if given, is true), the port's
        address, count and status are updated and ``pointer`` (64 bits) is where in the
        device's memory the bytes go or come from; the caller moves them. Otherwise nothing
        changes and served is 0."""
        w, found = self._first_window(
            lambda i: (port - self.sget("pwin_base", i)).eq(self.sget("pwin_dport", i))
            & self.sget("pwin_len", i).ne(0))
        served = self.var(1, 0)
        where = self.var(64, 0)
        with self.if_(found):
            def get(name):
                return self.sget(name, w)

            def byte_at(field):
                return V(self, self.b.load(self._window_byte(w, get(field)))).zx(32)

            def word_ptr(field):
                return self.b.bitcast(self._window_byte(w, get(field)), I16.as_pointer())

            address = V(self, self.b.load(word_ptr("pwin_daddr"), align=1)).zx(32)
            remaining = V(self, self.b.load(word_ptr("pwin_dcount"), align=1)).zx(32)
            word = (byte_at("pwin_dword") & get("pwin_dword_bit")).ne(0)
            address = self.sel(word, address & 0xFFFE, address)
            n = units * size
            end = address + n
            limit = byte_at("pwin_dend") << 8
            limit = self.sel(limit.ult(get("pwin_dmem_end")), limit, get("pwin_dmem_end"))
            ok = (address.uge(get("pwin_dmem_start")) & end.ult(limit) & n.ne(0)
                  & n.ule(remaining))
            if size == 1:
                ok = ok & ~word
            if allowed is not None:
                ok = ok & allowed
            status, enable = byte_at("pwin_status"), byte_at("pwin_enable")
            done = n.eq(remaining)
            new_status = self.sel(done, status | get("pwin_ddone"), status)
            moved = self._window_output(w, status, enable).ne(self._window_output(w, new_status, enable))
            with self.if_(ok & ~moved, likely=True):
                self.b.store(end.tr(16).v, word_ptr("pwin_daddr"), align=1)
                self.b.store((remaining - n).tr(16).v, word_ptr("pwin_dcount"), align=1)
                self.b.store(new_status.tr(8).v, self._window_byte(w, get("pwin_status")))
                where.set(get("pwin_dmem") + (address - get("pwin_dmem_start")).zx(64))
                served.set(1)
        return served.get(), where.get()

    def _device_memory(self, where: V, size: int):
        return self.b.inttoptr(where.v, ir.IntType(size * 8).as_pointer())

    def port_in(self, port: V, nbytes: int) -> V:
        """A guest ``in``: a byte register of a register window (``CPU.set_port_windows``)
        is read here, and a window's data port streams its device memory here
        (:meth:`data_port`); anything else is a host callback. Returns 32 bits."""
        if nbytes != 1:
            out = self.var(32, 0)
            served, where = self.data_port(port, nbytes, self.c(1))
            with self.if_else(served, likely=True) as (native, host):
                with native:
                    out.set(V(self, self.b.load(self._device_memory(where, nbytes), align=1)).zx(32))
                with host:
                    out.set(self.callback(CB_PORT_READ, port, nbytes).tr(32))
            return out.get()
        w, slot = self._window_slot(port, "pwin_rmap")
        out = self.var(32, 0)
        with self.if_else(slot.ne(0xFF), likely=True) as (native, other):
            with native:
                out.set(V(self, self.b.load(self._window_byte(w, slot))).zx(32))
            with other:
                served, where = self.data_port(port, 1, self.c(1))
                with self.if_else(served) as (stream, host):
                    with stream:
                        out.set(V(self, self.b.load(self._device_memory(where, 1))).zx(32))
                    with host:
                        out.set(self.callback(CB_PORT_READ, port, nbytes).tr(32))
        return out.get()

    def port_out(self, port: V, nbytes: int, value: V) -> None:
        """A guest ``out`` (``value``: 32 bits): a byte register of a register window is
        stored here when the window's rules allow it (``RegisterWindow.served_write`` is
        the same rule in Python), a window's data port takes the value into its device
        memory here (:meth:`data_port`); anything else is a host callback."""
        done = self.var(1, 0)
        if nbytes == 1:
            self._window_write(port, value, done)
        with self.if_(done.get().eq(0)):
            served, where = self.data_port(port, nbytes, self.c(1))
            with self.if_else(served, likely=True) as (stream, host):
                with stream:
                    self.b.store(value.tr(nbytes * 8).v, self._device_memory(where, nbytes), align=1)
                with host:
                    self.callback(CB_PORT_WRITE, port, nbytes, value)

    def _window_write(self, port: V, value: V, done: V) -> None:
        """A byte write served from a register window's block, setting ``done``."""
        w, slot = self._window_slot(port, "pwin_wmap")
        with self.if_(slot.ne(0xFF), likely=True):
            def get(name):
                return self.sget(name, w)
            p = self._window_byte(w, slot)
            old = V(self, self.b.load(p)).zx(32)
            new = value & 0xFF
            byte = slot.zx(32)
            is_bank = byte.eq(get("pwin_page"))
            is_status = byte.eq(get("pwin_status"))
            is_enable = byte.eq(get("pwin_enable"))
            is_eoi = byte.eq(get("pwin_in_service"))
            keep = self.sel(is_bank, get("pwin_keep_mask"), 0)
            stored = self.sel(is_status, old & ~(new & get("pwin_clear_bits")),
                              self.sel(is_eoi, old & ~(self.c(1) << (new & 7)), (new & ~keep) | (old & keep)))
            # ... or a data port's start command, while its count is not zero (a window
            # without a data port has value 0x100 in both pairs: never a match)
            command = self.c(0, 1)
            for j in range(S.DATA_PORT_COMMANDS):
                rule = w * S.DATA_PORT_COMMANDS + j
                command = command | (new & self.sget("pwin_cmd_mask", rule)).eq(self.sget("pwin_cmd_value", rule))
            starts = self.var(1, 0)
            with self.if_(is_bank & command):   # (only then is there a count to read)
                count = self.b.bitcast(self._window_byte(w, get("pwin_dcount")), I16.as_pointer())
                starts.set(V(self, self.b.load(count, align=1)).ne(0))
            bank_refused = (((new & get("pwin_new_mask")).ne(get("pwin_new_value")) & ~starts.get())
                            | ((old & get("pwin_old_mask")).ne(get("pwin_old_value"))))
            # the interrupt output before and after
            status = V(self, self.b.load(self._window_byte(w, get("pwin_status")))).zx(32)
            enable = V(self, self.b.load(self._window_byte(w, get("pwin_enable")))).zx(32)
            before = self._window_output(w, status, enable)
            after = self._window_output(w, self.sel(is_status, stored, status), self.sel(is_enable, stored, enable))
            moved = before.ne(after) | ((before | after) & get("pwin_idle_only").ne(0))
            # ... unless the device's real output is low and the write only disables requests
            quiet = self.var(1, 0)
            with self.if_(is_enable & get("pwin_true_out").ne(S.NO_BYTE)):
                out = V(self, self.b.load(self._window_byte(w, get("pwin_true_out")))).zx(32)
                bits, flip = get("pwin_irq_bits"), get("pwin_enable_xor")
                quiet.set(out.eq(0) & ((new ^ flip) & ~(old ^ flip) & bits).eq(0))
            refused = ((is_bank & bank_refused)
                       | (is_status & (new & get("pwin_status_exits")).ne(0))
                       | (is_enable & (new & ~get("pwin_enable_bits")).ne(0))
                       | (is_eoi & ((new & get("pwin_eoi_mask")).ne(get("pwin_eoi_value")) | before))
                       | (moved & ~quiet.get()))
            with self.if_(~refused):
                self.b.store(stored.tr(8).v, p)
                done.set(1)

    # ------------------------------------------------------------ registers
    def reg(self, num, size=32) -> V:
        """Read GPR ``num`` (python int or V) with operand size 8/16/32 (x86 numbering)."""
        if size == 8:
            if isinstance(num, int):
                r = self.sget("regs", num & 3)
                return (r >> (8 * (num >> 2))).tr(8)
            r = self.sget("regs", num & 3)
            sh = (num >> 2) << 3
            return (r >> sh).tr(8)
        r = self.sget("regs", num)
        return r.tr(size)

    def set_reg(self, num, value, size=32):
        value = self.v(value, size)
        if value.bits > size:
            value = value.tr(size)
        if size == 32:
            self.sset("regs", value, num)
            return
        if size == 16:
            r = self.sget("regs", num)
            self.sset("regs", (r & 0xFFFF0000) | value.zx(32), num)
            return
        idx = num & 3
        if isinstance(num, int):
            sh = 8 * (num >> 2)
            r = self.sget("regs", idx)
            self.sset("regs", (r & ~(0xFF << sh)) | (value.zx(32) << sh), idx)
            return
        sh = (num >> 2) << 3
        r = self.sget("regs", idx)
        m = self.c(0xFF) << sh
        self.sset("regs", (r & ~m) | (value.zx(32) << sh), idx)

    # ------------------------------------------------------------ flags
    def set_cc(self, base: str, size: int, res: V, s1, s2):
        self.lset("cc_op", self.c(cc_code(base, size)))
        self.lset("cc_res", self.v(res, size).zx(32))
        self.lset("cc_src1", self.v(s1, size).zx(32) if isinstance(s1, V) else self.c(s1 & MASK[size]))
        self.lset("cc_src2", self.v(s2, size).zx(32) if isinstance(s2, V) else self.c(s2 & MASK[size]))

    def flags(self) -> V:
        """Materialised EFLAGS (full word)."""
        op = self.lget("cc_op")
        ef = self.lget("eflags")
        arith = self.call_pure("cc_compute", op, self.lget("cc_res"), self.lget("cc_src1"),
                               self.lget("cc_src2"))
        return self.sel(op.eq(0), ef, (ef & ~S.ARITH) | arith)

    def set_arith_flags(self, bits: V):
        """Set the six arithmetic flags eagerly (bits is an i32 with only ARITH bits)."""
        ef = self.flags()
        self.lset("eflags", (ef & ~S.ARITH) | (bits & S.ARITH))
        self.lset("cc_op", self.c(0))

    def set_flags_word(self, value: V):
        self.lset("eflags", value | 2)
        self.lset("cc_op", self.c(0))

    def materialize(self):
        self.set_flags_word(self.flags())

    def get_cf(self) -> V:
        """CF without materialising all flags (lazy op ranges: see CC_BASES / cc_code)."""
        op = self.lget("cc_op")
        res, s1, s2 = self.lget("cc_res"), self.lget("cc_src1"), self.lget("cc_src2")
        ef = self.lget("eflags")
        return self.sel(op.eq(0), (ef & 1).ne(0),
                        self.sel(op.ult(cc_code("SUB", 8)), res.ult(s1),
                                 self.sel(op.ult(cc_code("LOGIC", 8)), s1.ult(s2),
                                          self.sel(op.ult(cc_code("INC", 8)), self.c(0, 1), (s2 & 1).ne(0)))))

    def flag(self, bit) -> V:
        return (self.flags() & bit).ne(0)

    def cond(self, cc) -> V:
        """i1 for condition code 0..15 (python int)."""
        inv = cc & 1
        base = cc >> 1
        op = self.lget("cc_op")
        if base == 2:  # Z
            r = self.sel(op.eq(0), (self.lget("eflags") & S.ZF).ne(0), self.lget("cc_res").eq(0))
        elif base in (1, 3, 6, 7):
            # fast path for SUB/CMP
            is_sub = (op - cc_code("SUB", 8)).ult(3)
            res = self.var(1)
            with self.if_else(is_sub) as (then, other):
                with then:
                    a, b = self.lget("cc_src1"), self.lget("cc_src2")
                    sz = op - cc_code("SUB", 8)
                    sh = self.c(24) - (sz << 3)
                    sh = self.sel(sz.eq(2), self.c(0), sh)
                    sa, sb = a << sh, b << sh
                    if base == 1:
                        res.set(a.ult(b))
                    elif base == 3:
                        res.set(a.ule(b))
                    elif base == 6:
                        res.set(sa.slt(sb))
                    else:
                        res.set(sa.sle(sb))
                with other:
                    f = self.flags()
                    res.set(self._cond_flags(base, f))
            r = res.get()
        else:
            r = self._cond_flags(base, self.flags())
        return r ^ 1 if inv else r

    def _cond_flags(self, base, f: V) -> V:
        bit = lambda m: (f & m).ne(0)  # noqa: E731
        if base == 0:
            return bit(S.OF)
        if base == 1:
            return bit(S.CF)
        if base == 2:
            return bit(S.ZF)
        if base == 3:
            return bit(S.CF | S.ZF)
        if base == 4:
            return bit(S.SF)
        if base == 5:
            return bit(S.PF)
        sf_ne_of = bit(S.SF) ^ bit(S.OF)
        if base == 6:
            return sf_ne_of
        return sf_ne_of | bit(S.ZF)

    # ------------------------------------------------------------ memory
    def cpl_kind(self) -> V:
        """TLB kind base for the current privilege level: 0 supervisor, 2 user."""
        return self.sel(self.sget("cpl").eq(3), self.c(2), self.c(0))

    def lin(self, seg, off: V) -> V:
        return self.sget("seg_base", seg) + off

    def _tlb_hit(self, lin: V, size: int, kind: V, chk: V | None = None):
        idx = (lin >> 12) & (S.TLB_SIZE - 1)
        tag = self.sget("tlb_tag", (kind << S.TLB_BITS) + idx)
        want = (lin & ~0xFFF) | 1
        if chk is not None:   # state.seg_chk: 2 makes a segment needing checks always miss
            want = want | chk
        hit = tag.eq(want)
        if size > 1:
            hit = hit & (lin & 0xFFF).ule(4096 - size // 8)
        return hit, idx

    def ram_ptr(self, phys: V, bits: int):
        p = self.b.gep(self.ram, [phys.zx(64).v], inbounds=True)
        return self.b.bitcast(p, ity(bits).as_pointer())

    def read_lin(self, lin: V, size: int, kind: V | None = None, seg=None, off=None) -> V:
        kind = self.cpl_kind() if kind is None else self.v(kind)
        chk = None if seg is None else self.sget("seg_chk", seg)
        hit, idx = self._tlb_hit(lin, size, kind, chk)
        out = self.var(size)
        with self.if_else(hit, likely=True) as (then, other):
            with then:
                phys = lin + self.sget("tlb_delta", idx)
                out.set(V(self, self.b.load(self.ram_ptr(phys, size), align=1)))
            with other:
                if seg is None:
                    self.call("mem_slow", lin, self.c(size // 8), kind, self.c(0), sync=False)
                else:
                    self.call("seg_slow", self.v(seg), off, self.c(size // 8), kind, self.c(0), sync=False)
                out.set(self.sget("scratch", 0).tr(size))
        return out.get()

    def write_lin(self, lin: V, size: int, value: V, kind: V | None = None, seg=None, off=None):
        kind = (self.cpl_kind() if kind is None else self.v(kind)) | 1
        chk = None if seg is None else self.sget("seg_chk", seg + 8)
        hit, idx = self._tlb_hit(lin, size, kind, chk)
        with self.if_else(hit, likely=True) as (then, other):
            with then:
                phys = lin + self.sget("tlb_delta", idx)
                self.b.store(self.v(value, size).v, self.ram_ptr(phys, size), align=1)
            with other:
                v32 = self.v(value, size).zx(32)
                if seg is None:
                    self.call("mem_slow", lin, self.c(size // 8), kind, v32, sync=False)
                else:
                    self.call("seg_slow", self.v(seg), off, self.c(size // 8), kind, v32, sync=False)

    def probe_write_lin(self, lin: V, size: int, kind: V | None = None, seg=None, off=None):
        """Fault now if a write of ``size`` bits at ``lin`` would fault (precise RMW)."""
        kind = (self.cpl_kind() if kind is None else self.v(kind)) | 1
        chk = None if seg is None else self.sget("seg_chk", seg + 8)
        hit, _ = self._tlb_hit(lin, size, kind, chk)
        with self.if_(~hit, likely=False):
            if seg is None:
                self.call("mem_probe", lin, self.c(size // 8), kind, sync=False)
            else:
                self.call("seg_probe", self.v(seg), off, self.c(size // 8), kind, sync=False)

    # segment-relative accesses: the segment checks (system.seg_slow) run on the slow path
    # only.  Implicit stack accesses (a constant SS: push/pop/call/ret/enter/leave) skip them:
    # SS is never null in protected mode and checking its limit there cost ~10 % of the
    # interpreter's speed (register allocation of the one big run function).
    def read(self, seg, off: V, size: int, kind=None) -> V:
        if isinstance(seg, int) and seg == S.SS:
            return self.read_lin(self.lin(seg, off), size, kind)
        return self.read_lin(self.lin(seg, off), size, kind, seg, off)

    def write(self, seg, off: V, size: int, value, kind=None):
        if isinstance(seg, int) and seg == S.SS:
            return self.write_lin(self.lin(seg, off), size, self.v(value, size), kind)
        self.write_lin(self.lin(seg, off), size, self.v(value, size), kind, seg, off)

    def probe_write(self, seg, off: V, size: int, kind=None):
        if isinstance(seg, int) and seg == S.SS:
            return self.probe_write_lin(self.lin(seg, off), size, kind)
        self.probe_write_lin(self.lin(seg, off), size, kind, seg, off)

    # ------------------------------------------------------------ stack
    def stack32(self) -> V:
        return self.sget("stack32").ne(0)

    def sp_add(self, sp: V, delta: int) -> V:
        """esp + delta respecting the stack size (16-bit stacks wrap sp only)."""
        s32 = self.stack32()
        new32 = sp + delta
        new16 = (sp & 0xFFFF0000) | ((sp + delta) & 0xFFFF)
        return self.sel(s32, new32, new16)

    def sp_eff(self, sp: V) -> V:
        return self.sel(self.stack32(), sp, sp & 0xFFFF)

    def push(self, value, size):
        sp = self.reg(4)
        nsp = self.sp_add(sp, -(size // 8))
        self.write(S.SS, self.sp_eff(nsp), size, value)
        self.set_reg(4, nsp)

    def push_probe(self, sizes_bytes: int):
        """Probe that ``sizes_bytes`` can be pushed (for multi-push instructions)."""
        sp = self.reg(4)
        lo = self.sp_eff(self.sp_add(sp, -sizes_bytes))
        hi = self.sp_eff(self.sp_add(sp, -1))
        self.probe_write(S.SS, lo, 8)
        self.probe_write(S.SS, hi, 8)

    def pop_peek(self, size, offset=0) -> V:
        sp = self.reg(4)
        return self.read(S.SS, self.sp_eff(self.sp_add(sp, offset)), size)

    def pop_commit(self, size_bytes):
        self.set_reg(4, self.sp_add(self.reg(4), size_bytes))

    def pop(self, size) -> V:
        v = self.pop_peek(size)
        self.pop_commit(size // 8)
        return v
