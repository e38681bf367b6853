"""The CPU object: owns the state struct and calls the compiled interpreter."""
from __future__ import annotations

import ctypes

import numpy as np

from . import state as S
from .dsl import (CB_INTR_ACK, CB_MMIO_READ, CB_MMIO_WRITE, CB_PORT_READ, CB_PORT_READ_STR,
                  CB_PORT_WRITE, CB_PORT_WRITE_STR)
from .host import CpuHost


class TripleFault(RuntimeError):
    """Raised by :meth:`CPU.run` when the guest triple-faults (a real PC would reset)."""


_CB_TYPE = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint32,
                            ctypes.c_uint32, ctypes.c_uint64)
_RUN_TYPE = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64)

_MASKS = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF}
_SEG_INDEX = {n: i for i, n in enumerate(S.SEG_NAMES)}
_REG_INDEX = {n: i for i, n in enumerate(S.REG_NAMES)}
_CR_INDEX = {"cr0": 0, "cr2": 2, "cr3": 3, "cr4": 4}
_SKIP_SAVE = {"tlb_tag", "tlb_delta", "tlb_global", "iobuf", "callback", "scratch", "ram_size",
              "exit_reason", "stop", "smc"} | {n for n in S.FIELD_NAMES if n.startswith(("jit_", "run_", "pwin_"))}


def _host_seg_chk(protected: int, limit: int, flags: int) -> tuple[int, int]:
    """``state.seg_chk`` (read, write) for a segment cache loaded by the host: 0 lets the TLB
    fast path serve accesses, 2 sends them through the checked slow path, which is always
    right. The guest's own loads compute it exactly (``system.seg_chk_of``); here only the
    flat cases that need no check take the fast path."""
    if not protected:
        return 0, 0
    present, kind, rw = flags & 0x80, flags & 0x1C, flags & 2
    if not present or (limit & 0xFFFFFFFF) != 0xFFFFFFFF:
        return 2, 2
    if kind == 0x10:                      # expand-up data
        return 0, (0 if rw else 2)
    if kind & 0x18 == 0x18:               # code: readable or not, never writable
        return (0 if rw else 2), 2
    return 2, 2                           # expand-down data, system segments


class CPU:
    """An i686 CPU attached to ``memory`` (``.ram`` numpy uint8, ``.size``) and ``host``."""

    def __init__(self, memory, host: CpuHost, jit: bool | dict | None = None):
        """``jit``: None = from the environment (``PYV86_JIT``, off by default), False = the
        interpreter only, True or a dict of :class:`~pyv86.cpu.jitrt.JitRuntime` options."""
        from . import build
        self.memory = memory
        self.host = host
        self._engine, addr = build.load()
        self._run_native = _RUN_TYPE(addr)
        self._buf = np.zeros(1, dtype=S.STATE_DTYPE)
        self.state = self._buf[0]          # numpy structured view: self.state["regs"][0] ...
        self._state_ptr = self._buf.ctypes.data
        # the INTR pin, written on every change of the interrupt controller's output: a
        # ctypes view is several times cheaper than assigning a field of the numpy record
        self._intr_pin = ctypes.c_uint32.from_address(self._state_ptr + S.field_offset("intr"))
        ram = memory.ram
        assert ram.dtype == np.uint8 and ram.flags["C_CONTIGUOUS"]
        self._ram = ram
        self._ram_ptr = ram.ctypes.data
        self._cb = _CB_TYPE(self._callback)
        self._pending_exc: BaseException | None = None
        self._port_windows: list = []
        self.instructions = 0
        self.jit = None
        self.reset()
        self._setup_jit(jit)

    def set_jit(self, jit: bool | dict | None) -> None:
        """Choose the tier: False = the interpreter only; True or a dict of
        :class:`~pyv86.cpu.jitrt.JitRuntime` options = the block JIT; None = from
        ``PYV86_JIT``.  Existing translations are dropped."""
        if self.jit is not None:
            self.jit.close()
            remove = getattr(self.memory, "remove_write_hook", None)
            if remove is not None:
                remove(self.jit.invalidate)
            self.jit = None
        self.state["jit_on"] = 0
        self._setup_jit(jit)

    def _setup_jit(self, jit) -> None:
        from .jitrt import JitRuntime, settings_from_env
        if jit is None:
            env = settings_from_env()
            if not env.pop("enabled"):
                return
            jit = env
        if jit is False:
            return
        opts = jit if isinstance(jit, dict) else {}
        self.jit = JitRuntime(self, **opts)
        hook = getattr(self.memory, "add_write_hook", None)
        if hook is not None:
            hook(self.jit.invalidate)

    # ------------------------------------------------------------------ host callbacks
    def _callback(self, which, a, b, c, d):
        try:
            h = self.host
            if which == CB_PORT_WRITE:   # the most frequent exits first
                h.port_write(a, b, c)
                return 0
            if which == CB_PORT_READ:
                return h.port_read(a, b) & _MASKS[b]
            if which == CB_PORT_READ_STR:
                want = b * c
                data = bytes(h.port_read_string(a, b, c))[:want]
                if len(data) < want:
                    data = data + b"\xff" * (want - len(data))
                ctypes.memmove(d, data, want)
                if self.jit is not None:
                    self.jit.invalidate(d - self._ram_ptr, want)
                return 0
            if which == CB_PORT_WRITE_STR:
                h.port_write_string(a, b, ctypes.string_at(d, b * c))
                return 0
            if which == CB_MMIO_READ:
                return h.mmio_read(a, b) & ((1 << (8 * b)) - 1)
            if which == CB_MMIO_WRITE:
                h.mmio_write(a, b, c)
                return 0
            if which == CB_INTR_ACK:
                v = h.interrupt_ack()
                return -1 if v is None else int(v) & 0xFF
        except BaseException as ex:  # re-raised by run()
            if self._pending_exc is None:
                self._pending_exc = ex
            self.state["stop"] = 1
        return 0

    # ------------------------------------------------------------------ execution
    def run(self, budget: int) -> int:
        """Execute up to ``budget`` instructions; return how many retired.

        Returns early on HLT (``halted`` becomes True), on :meth:`request_stop`, or raises
        :class:`TripleFault`.  Exceptions raised by host callbacks are re-raised here."""
        st = self.state
        if budget <= 0:
            return 0
        if st["halted"] and not (st["intr"] and st["eflags"] & S.IF):
            return 0
        st["callback"] = ctypes.cast(self._cb, ctypes.c_void_p).value
        n = self._run_native(self._state_ptr, self._ram_ptr, budget)
        jit = self.jit
        if jit is not None:
            jit.after_run()
            while st["exit_reason"] == S.EXIT_JIT and self._pending_exc is None and n < budget:
                n += self._run_native(self._state_ptr, self._ram_ptr, budget - n)
                jit.after_run()
        self.instructions += n
        if self._pending_exc is not None:
            ex, self._pending_exc = self._pending_exc, None
            raise ex
        if st["exit_reason"] == S.EXIT_TRIPLE:
            raise TripleFault(f"triple fault at EIP={int(st['eip']):#x} (last exception "
                              f"{int(st['exc_vector'])}, error code {int(st['exc_code']):#x})")
        return int(n)

    def set_port_windows(self, windows) -> None:
        """Serve these register windows, a list of ``(base, window)`` pairs (at most
        ``PORT_WINDOWS``; :class:`~pyv86.bus.window.RegisterWindow`): their byte registers
        are read and written in native code, without a callback. The port bus calls this as
        devices map and unmap; the windows survive :meth:`reset` and :meth:`restore` (they
        are wiring, not state)."""
        windows = list(windows)
        if len(windows) > S.PORT_WINDOWS:
            raise ValueError(f"the CPU serves at most {S.PORT_WINDOWS} register windows, not {len(windows)}")
        self._port_windows = windows
        self._install_port_windows()

    def set_port_window(self, base: int | None, window=None) -> None:
        """One register window at ``base`` (None: none); see :meth:`set_port_windows`."""
        self.set_port_windows([] if base is None or window is None else [(base, window)])

    def _install_port_windows(self) -> None:
        st = self.state
        st["pwin_len"] = 0
        st["pwin_dport"] = S.NO_DATA_PORT
        for i, (base, window) in enumerate(self._port_windows):
            reads, writes = window.tables()
            st["pwin_rmap"][i * 64:(i + 1) * 64] = np.frombuffer(reads, dtype=np.uint8)
            st["pwin_wmap"][i * 64:(i + 1) * 64] = np.frombuffer(writes, dtype=np.uint8)
            for field, value in window.native_fields().items():
                if isinstance(value, list):   # several entries per window
                    st[field][i * len(value):(i + 1) * len(value)] = value
                else:
                    st[field][i] = value
            st["pwin_base"][i] = base
            st["pwin_len"][i] = window.length

    def request_stop(self) -> None:
        """Make the current :meth:`run` return at the next instruction boundary."""
        self.state["stop"] = 1

    def set_intr(self, level: bool) -> None:
        self._intr_pin.value = 1 if level else 0

    @property
    def halted(self) -> bool:
        return bool(self.state["halted"])

    @halted.setter
    def halted(self, v: bool):
        self.state["halted"] = 1 if v else 0

    @property
    def exit_reason(self) -> int:
        return int(self.state["exit_reason"])

    @property
    def tsc(self) -> int:
        return int(self.state["tsc"])

    @tsc.setter
    def tsc(self, v: int):
        self.state["tsc"] = v & ((1 << 64) - 1)

    @property
    def tsc_per_insn(self) -> int:
        return int(self.state["tsc_per_insn"])

    @tsc_per_insn.setter
    def tsc_per_insn(self, v: int):
        self.state["tsc_per_insn"] = v

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Power-on state: real mode, CS=F000 base FFFF0000, EIP=FFF0, CR0=0x60000010."""
        if self.jit is not None:
            self.jit.bank_counters()
        self._buf[...] = 0
        st = self.state
        st["ram_size"] = self.memory.size
        st["tsc_per_insn"] = 1
        st["pending_vector"] = -1
        st["last_exc"] = -1
        st["cr"][0] = 0x60000010
        st["eip"] = 0xFFF0
        st["eflags"] = 2
        st["regs"][2] = 0x673
        for i in range(6):
            st["seg_sel"][i] = 0
            st["seg_base"][i] = 0
            st["seg_limit"][i] = 0xFFFF
            st["seg_flags"][i] = 0x93
        st["seg_sel"][S.CS] = 0xF000
        st["seg_base"][S.CS] = 0xFFFF0000
        st["seg_flags"][S.CS] = 0x9B
        st["seg_limit"][S.LDTR] = 0xFFFF
        st["seg_flags"][S.LDTR] = 0x82
        st["seg_limit"][S.TR] = 0xFFFF
        st["seg_flags"][S.TR] = 0x8B
        st["gdtr_limit"] = 0xFFFF
        st["idtr_limit"] = 0xFFFF
        st["fpu_cw"] = 0x37F
        st["fpu_tag"] = 0xFF
        st["mxcsr"] = 0x1F80
        st["dr"][6] = 0xFFFF0FF0
        st["dr"][7] = 0x400
        self._install_port_windows()
        self.flush_tlb()
        if self.jit is not None:
            self.jit.flush()
            self.jit.attach()

    def flush_tlb(self) -> None:
        self.state["tlb_tag"][:] = 0

    def get_reg(self, name: str) -> int:
        st = self.state
        if name in _REG_INDEX:
            return int(st["regs"][_REG_INDEX[name]])
        if name in ("eip", "eflags"):
            return int(st[name])
        if name in _CR_INDEX:
            return int(st["cr"][_CR_INDEX[name]])
        if name in _SEG_INDEX:
            return int(st["seg_sel"][_SEG_INDEX[name]])
        if name.startswith("dr") and name[2:].isdigit():
            return int(st["dr"][int(name[2:])])
        if name == "cpl":
            return int(st["cpl"])
        raise KeyError(name)

    def set_reg(self, name: str, value: int) -> None:
        st = self.state
        value &= 0xFFFFFFFF
        if name in _REG_INDEX:
            st["regs"][_REG_INDEX[name]] = value
        elif name == "eip":
            st["eip"] = value
        elif name == "eflags":
            st["eflags"] = (value & 0x3F7FD5) | 2
            st["cc_op"] = 0
        elif name in _CR_INDEX:
            st["cr"][_CR_INDEX[name]] = value
            self.flush_tlb()
        elif name.startswith("dr") and name[2:].isdigit():
            st["dr"][int(name[2:])] = value
        else:
            raise KeyError(name)

    def get_segment(self, name: str) -> tuple[int, int, int, int]:
        i = _SEG_INDEX[name]
        st = self.state
        return (int(st["seg_sel"][i]), int(st["seg_base"][i]), int(st["seg_limit"][i]),
                int(st["seg_flags"][i]))

    def set_segment(self, name: str, selector: int, base: int, limit: int, flags: int) -> None:
        """Load a segment register's visible selector and hidden cache.

        ``flags`` = descriptor access byte (bits 0-7) | AVL<<12 | L<<13 | D/B<<14 | G<<15,
        i.e. ``(descriptor_high >> 8) & 0xF0FF``; ``limit`` is the byte-granular limit."""
        i = _SEG_INDEX[name]
        st = self.state
        st["seg_sel"][i] = selector & 0xFFFF
        st["seg_base"][i] = base & 0xFFFFFFFF
        st["seg_limit"][i] = limit & 0xFFFFFFFF
        st["seg_flags"][i] = flags & 0xF0FF
        if i == S.CS:
            st["code32"] = (flags >> 14) & 1
            st["cpl"] = (selector & 3) if st["cr"][0] & 1 else 0
        elif i == S.SS:
            st["stack32"] = (flags >> 14) & 1
        if i <= S.GS:
            st["seg_chk"][i], st["seg_chk"][i + 8] = _host_seg_chk(st["cr"][0] & 1, limit, flags)

    def set_gdtr(self, base: int, limit: int) -> None:
        self.state["gdtr_base"] = base
        self.state["gdtr_limit"] = limit

    def set_idtr(self, base: int, limit: int) -> None:
        self.state["idtr_base"] = base
        self.state["idtr_limit"] = limit

    def save(self) -> dict:
        """All architectural state (incl. FPU and hidden descriptor caches) as plain ints/bytes."""
        out = {}
        for name in S.FIELD_NAMES:
            if name in _SKIP_SAVE:
                continue
            v = self.state[name]
            if name in ("fpr", "xmm"):
                out[name] = np.ascontiguousarray(v).tobytes()
            elif getattr(v, "shape", ()):
                out[name] = [int(x) for x in v]
            else:
                out[name] = int(v)
        out["instructions"] = self.instructions
        out["version"] = 1
        return out

    def restore(self, d: dict) -> None:
        if self.jit is not None:
            self.jit.bank_counters()
        cb = self.state["callback"]
        self._buf[...] = 0
        st = self.state
        for name in S.FIELD_NAMES:
            if name in _SKIP_SAVE or name not in d:
                continue
            v = d[name]
            if name in ("fpr", "xmm"):
                st[name] = np.frombuffer(v, dtype=st[name].dtype)
            else:
                st[name] = v
        st["ram_size"] = self.memory.size
        st["callback"] = cb
        self._install_port_windows()
        self.instructions = int(d.get("instructions", 0))
        self.flush_tlb()
        if self.jit is not None:
            self.jit.flush()
            self.jit.attach()
