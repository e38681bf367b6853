"""The CPU state struct, defined once.

Both the IR generator (field byte offsets) and Python (a numpy structured view) read this
table.  The JIT (a later issue) shares the same layout, exits and TLB.

Segment register indices follow the x86 encoding: ES=0 CS=1 SS=2 DS=3 FS=4 GS=5, and then
LDTR=6 TR=7.  Segment ``flags`` encoding (also used by :meth:`CPU.set_segment`):

* bits 0-7   the descriptor access byte (type, S, DPL, P)
* bit 12     AVL, bit 13 L (ignored), bit 14 D/B, bit 15 G

i.e. ``flags = (descriptor_high_dword >> 8) & 0xF0FF``.  ``limit`` is the expanded byte limit.
"""
from __future__ import annotations

import numpy as np

# TLB geometry (direct mapped)
TLB_BITS = 10
TLB_SIZE = 1 << TLB_BITS
# TLB access kinds: supervisor read, supervisor write, user read, user write
TLB_KINDS = 4

# block JIT translation table: sets of JIT_WAYS entries chosen by a hash of the physical
# address (two hot blocks whose addresses hash alike both stay translated; with one way they
# evicted each other again and again). One entry is 32 bytes:
# u32 eip, u32 phys, u32 code32, u32 page generation, u32 instruction count, u32 pad, u64 fn
JIT_TABLE_BITS = 16
JIT_TABLE_SIZE = 1 << JIT_TABLE_BITS
PORT_WINDOWS = 3  # register windows the CPU serves at once (CPU.set_port_windows)
DATA_PORT_COMMANDS = 2  # start-command rules per data port (pyv86.bus.window.DataPort)
NO_DATA_PORT = 0x10000  # pwin_dport of a window without one: no port offset (port - base) equals it
NO_BYTE = 0x100  # a pwin_* block-byte field meaning "none": no block byte compares equal to it
JIT_WAYS = 2
JIT_ENTRY_SIZE = 32
JIT_REQ_CAP = 256


def jit_slot(phys: int) -> int:
    """First table entry of the set of a block at physical address ``phys`` (codegen emits the
    same); the set's hit counter has the same index."""
    return (phys ^ (phys >> JIT_TABLE_BITS)) & (JIT_TABLE_SIZE - JIT_WAYS)

SEG_NAMES = ("es", "cs", "ss", "ds", "fs", "gs", "ldtr", "tr")
ES, CS, SS, DS, FS, GS, LDTR, TR = range(8)
REG_NAMES = ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi")

# exit reasons written to state.exit_reason
EXIT_BUDGET = 0
EXIT_HALT = 1
EXIT_STOP = 2
EXIT_TRIPLE = 3
EXIT_INTR = 4          # (reserved)
EXIT_EXCEPTION = 5     # exc_exit=1: an exception stopped run() instead of being delivered
EXIT_JIT = 6           # jit_sync=1: a block became hot; translate it, then call run() again

# (name, numpy type, count)
_FIELDS: list[tuple[str, str, int]] = [
    ("regs", "u4", 8),
    ("eip", "u4", 1),
    ("eflags", "u4", 1),
    ("cc_op", "u4", 1),
    ("cc_res", "u4", 1),
    ("cc_src1", "u4", 1),
    ("cc_src2", "u4", 1),
    ("insn_start", "u4", 1),
    ("seg_sel", "u4", 8),
    ("seg_base", "u4", 8),
    ("seg_limit", "u4", 8),
    ("seg_flags", "u4", 8),
    ("cr", "u4", 8),            # cr0..cr7 (only 0,2,3,4 meaningful)
    ("dr", "u4", 8),
    ("gdtr_base", "u4", 1),
    ("gdtr_limit", "u4", 1),
    ("idtr_base", "u4", 1),
    ("idtr_limit", "u4", 1),
    ("cpl", "u4", 1),
    ("code32", "u4", 1),
    ("stack32", "u4", 1),
    ("intr", "u4", 1),          # INTR pin level
    ("stop", "u4", 1),          # request_stop()
    ("halted", "u4", 1),
    ("shadow", "u4", 1),        # interrupt shadow (sti / mov ss) for the next instruction
    ("pending_vector", "i4", 1),  # acknowledged external vector to deliver, or -1
    ("exit_reason", "u4", 1),
    ("exc_vector", "u4", 1),    # pending exception (set by a faulting access)
    ("exc_code", "u4", 1),
    ("exc_has_code", "u4", 1),
    ("exc_exit", "u4", 1),     # testing: exit run() on exceptions instead of delivering
    ("last_exc", "i4", 1),      # last exception vector delivered (diagnostics / tests)
    ("last_exc_code", "u4", 1),
    ("exc_count", "u4", 1),
    ("ram_size", "u4", 1),
    ("scratch", "u4", 4),
    ("sysenter_cs", "u4", 1),
    ("sysenter_esp", "u4", 1),
    ("sysenter_eip", "u4", 1),
    ("tsc_per_insn", "u4", 1),
    ("tsc", "u8", 1),
    ("callback", "u8", 1),      # host callback function pointer
    # block JIT (jit.py, jitrt.py): host arrays the native code indexes, and counters
    ("jit_table", "u8", 1),     # -> translation table (jitrt.ENTRY_DTYPE x JIT_TABLE_SIZE)
    ("jit_hot", "u8", 1),       # -> u32 hotness counter per table slot
    ("jit_req", "u8", 1),       # -> u32 x 4 translation requests (eip, phys, code32, slot)
    ("jit_code_pages", "u8", 1),  # -> u64 per physical page: 64-byte lines with translated code
    ("jit_page_gen", "u8", 1),  # -> u32 per physical page: bumped when its code is written
    ("jit_calls", "u8", 1),     # translated blocks entered
    ("jit_insns", "u8", 1),     # instructions retired in translated blocks
    ("jit_on", "u4", 1),
    ("jit_sync", "u4", 1),      # 1: leave run() with EXIT_JIT at each new request (tests)
    ("jit_status", "u4", 1),    # set by a block on return (jit.JIT_FAULT / JIT_EXIT)
    ("jit_threshold", "u4", 1),
    ("jit_nreq", "u4", 1),
    ("jit_req_cap", "u4", 1),
    ("smc", "u4", 1),           # set when translated code was written (ends the block)
    # x87
    ("fpr", "f8", 8),           # physical registers R0..R7 (double precision internally)
    ("fpu_top", "u4", 1),
    ("fpu_sw", "u4", 1),        # status word without TOP
    ("fpu_cw", "u4", 1),
    ("fpu_tag", "u4", 1),       # bit i set = physical register i empty
    ("fpu_ip", "u4", 1),
    ("fpu_dp", "u4", 1),
    ("fpu_op", "u4", 1),
    ("mxcsr", "u4", 1),
    ("xmm", "u4", 32),          # saved/restored by fxsave/fxrstor only
    # software TLB
    ("tlb_tag", "u4", TLB_KINDS * TLB_SIZE),
    ("tlb_delta", "u4", TLB_SIZE),
    ("tlb_global", "u1", TLB_SIZE),
    ("iobuf", "u1", 4096 + 16),  # buffer for rep ins/outs chunks
    # per segment register: 0 = TLB fast path allowed, 2 = every access takes the checked
    # slow path (null/unusable, limit below 4 GiB, expand-down, wrong type); [0..7] reads,
    # [8..15] writes.  OR-ed into the TLB tag compare so a checked segment never hits.
    ("seg_chk", "u4", 16),
    ("task_nest", "u4", 1),     # faults raised inside a task switch after its commit point (bounded)
    # register windows: devices' byte registers served without a host callback
    # (CPU.set_port_windows; one entry per window, index 0 wins an overlap)
    ("pwin_block", "u8", PORT_WINDOWS),  # -> the device's register block (host memory it owns)
    ("pwin_base", "u4", PORT_WINDOWS),   # first port
    ("pwin_len", "u4", PORT_WINDOWS),    # ports in the window (<= 16); 0: no window
    ("pwin_page", "u4", PORT_WINDOWS),   # byte of the block that selects the bank
    ("pwin_page_shift", "u4", PORT_WINDOWS),
    ("pwin_page_mask", "u4", PORT_WINDOWS),  # bank = block[page] >> shift & mask (<= 3; 0: one bank)
    # a write to the bank-select byte is served when (new & new_mask) == new_value and
    # (old & old_mask) == old_value; it stores new & ~keep_mask | old & keep_mask
    ("pwin_new_mask", "u4", PORT_WINDOWS),
    ("pwin_new_value", "u4", PORT_WINDOWS),
    ("pwin_old_mask", "u4", PORT_WINDOWS),
    ("pwin_old_value", "u4", PORT_WINDOWS),
    ("pwin_keep_mask", "u4", PORT_WINDOWS),
    # an interrupt status/enable pair (output = status & (enable ^ enable_xor) & irq_bits
    # != 0): a write to either is served only while the output stays as it was (idle_only:
    # stays 0); status bits are write-1-to-clear
    ("pwin_status", "u4", PORT_WINDOWS),   # byte of the status register (no pair: 0x100, bits 0)
    ("pwin_enable", "u4", PORT_WINDOWS),   # byte of the enable register
    ("pwin_irq_bits", "u4", PORT_WINDOWS),
    ("pwin_enable_xor", "u4", PORT_WINDOWS),
    ("pwin_idle_only", "u4", PORT_WINDOWS),
    ("pwin_clear_bits", "u4", PORT_WINDOWS),   # status bits a written 1 clears
    ("pwin_status_exits", "u4", PORT_WINDOWS),  # a status write with any of these goes to the host
    ("pwin_enable_bits", "u4", PORT_WINDOWS),  # an enable write with a bit outside these goes to the host
    # byte the device keeps at its real output (0x100: none): while it is 0, an enable write
    # that only disables requests is served even if status & enable changes
    ("pwin_true_out", "u4", PORT_WINDOWS),
    # byte of in-service bits (0x100: none): a write there with (value & eoi_mask) ==
    # eoi_value clears bit value & 7 (a specific EOI), served while the output stays low
    ("pwin_in_service", "u4", PORT_WINDOWS),
    ("pwin_eoi_mask", "u4", PORT_WINDOWS),
    ("pwin_eoi_value", "u4", PORT_WINDOWS),
    # a data port (bus.window.DataPort) streaming device memory [dmem_start, dmem_end) from
    # host address dmem: 16-bit address and count at block bytes daddr/dcount; accesses end
    # below block[dend] * 256; while block[dword] & dword_bit the address is made even and
    # byte accesses go to the host; the count reaching 0 sets ddone in the status byte.
    # dport: the port's offset from base (NO_DATA_PORT: none). A bank-select write matching
    # one of the cmd_mask/cmd_value pairs is served like a bank change while the count is
    # not zero (value 0x100: an unused pair)
    ("pwin_dport", "u4", PORT_WINDOWS),
    ("pwin_dmem", "u8", PORT_WINDOWS),
    ("pwin_dmem_start", "u4", PORT_WINDOWS),
    ("pwin_dmem_end", "u4", PORT_WINDOWS),
    ("pwin_daddr", "u4", PORT_WINDOWS),
    ("pwin_dcount", "u4", PORT_WINDOWS),
    ("pwin_dend", "u4", PORT_WINDOWS),
    ("pwin_dword", "u4", PORT_WINDOWS),
    ("pwin_dword_bit", "u4", PORT_WINDOWS),
    ("pwin_ddone", "u4", PORT_WINDOWS),
    ("pwin_cmd_mask", "u4", PORT_WINDOWS * DATA_PORT_COMMANDS),
    ("pwin_cmd_value", "u4", PORT_WINDOWS * DATA_PORT_COMMANDS),
    ("pwin_rmap", "u1", PORT_WINDOWS * 64),  # window << 6 | bank << 4 | offset -> byte; 0xFF: the host
    ("pwin_wmap", "u1", PORT_WINDOWS * 64),
    # private to one run() call: what the interpreter's handlers (one function each, see
    # codegen) share besides the values they pass each other in registers
    ("run_tsc0", "u8", 1),
    ("run_shadow_n", "u8", 1),
    ("run_cp_tag", "u4", 1),
    ("run_cp_delta", "u4", 1),
    ("run_cs_base", "u4", 1),
    ("run_insn_start", "u4", 1),
    ("run_budget", "u8", 1),
    ("run_handlers", "u8", 1),  # -> the handler table (read from here, not through the GOT)
]


def _build():
    names, formats, offsets = [], [], []
    off = 0
    for name, typ, cnt in _FIELDS:
        size = np.dtype(typ).itemsize
        align = min(size, 8)
        off = (off + align - 1) // align * align
        names.append(name)
        formats.append((typ, (cnt,)) if cnt > 1 else typ)
        offsets.append(off)
        off += size * cnt
    total = (off + 63) // 64 * 64
    dt = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": total})
    return dt


STATE_DTYPE = _build()
STATE_SIZE = STATE_DTYPE.itemsize


def field_offset(name: str, index: int = 0) -> int:
    """Byte offset of ``name[index]`` in the state struct."""
    fmt, off = STATE_DTYPE.fields[name][:2]
    base = fmt.base if fmt.shape else fmt
    return off + index * base.itemsize


def field_type(name: str) -> str:
    fmt = STATE_DTYPE.fields[name][0]
    base = fmt.base if fmt.shape else fmt
    return base.str.lstrip("<|=")


def field_count(name: str) -> int:
    fmt = STATE_DTYPE.fields[name][0]
    return int(np.prod(fmt.shape)) if fmt.shape else 1


FIELD_NAMES = tuple(f[0] for f in _FIELDS)

# EFLAGS bits
CF, PF, AF, ZF, SF, TF, IF, DF, OF = 1, 4, 0x10, 0x40, 0x80, 0x100, 0x200, 0x400, 0x800
IOPL = 0x3000
NT = 0x4000
RF = 0x10000
VM = 0x20000
AC = 0x40000
ID = 0x200000
ARITH = CF | PF | AF | ZF | SF | OF
