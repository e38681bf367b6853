"""Differential testing of the pyv86 CPU against unicorn (QEMU TCG).

Environment (both emulators identical): 32-bit protected mode, paging on (CR0.PG|WP), 1 MiB of
RAM.  One page table is shared by all 1024 PDEs and maps linear page ``i`` to physical page
``i % 256``, so *every* 32-bit linear address is valid: random memory operands alias into RAM.
The page tables, GDT and code pages are read-only (stores to their aliases raise #PF) and one
physical page is not present (#PF on any access).  FS has a non-zero base.  pyv86 runs with
``exc_exit=1`` so exceptions stop it like unicorn's interrupt hook.

A case is 1-4 random instructions (decoded/validated by iced-x86, branches patched to forward
targets) ending in HLT.  Compared: the 8 GPRs, EIP, EFLAGS (arithmetic flags minus the ones
Intel documents as undefined for the last instruction, plus DF), all of RAM, the exception
vector, and CR2 for page faults.

    python -m pyv86.cpu.difftest --cases 1000000 --seed 1 [--group alu] [-v]
"""
from __future__ import annotations

import argparse
import random
import sys
import time

import numpy as np

RAM = 1 << 20
PD, PT, GDT, CODE, STACK_TOP = 0x1000, 0x2000, 0x3000, 0x10000, 0x7F800
RO_PAGES = {PD >> 12, PT >> 12, GDT >> 12, CODE >> 12}
NP_PAGE = 0xEE
FS_BASE = 0x00345000
ARITH = 0x8D5
CF, PF, AF, ZF, SF, OF = 1, 4, 0x10, 0x40, 0x80, 0x800

# opcode groups for random generation: name -> list of opcode byte strings (after prefixes)
ONE = lambda *xs: [bytes([x]) for x in xs]  # noqa: E731
TWO = lambda *xs: [bytes([0x0F, x]) for x in xs]  # noqa: E731
GROUPS = {
    "alu": ONE(*[b + k for b in range(0, 0x40, 8) for k in range(6)], 0x80, 0x81, 0x83, 0x84, 0x85,
               0xA8, 0xA9),
    "incdec_stack": ONE(*range(0x40, 0x60), 0x60, 0x61, 0x68, 0x6A, 0x8F, 0x9C, 0xC8, 0xC9),
    "mov": ONE(0x86, 0x87, 0x88, 0x89, 0x8A, 0x8B, 0x8D, *range(0x90, 0x9A), 0xA0, 0xA1, 0xA2,
               0xA3, *range(0xB0, 0xC0), 0xC6, 0xC7, 0xD7, 0x9E, 0x9F)
    + TWO(0xB6, 0xB7, 0xBE, 0xBF, *range(0x40, 0x50), *range(0x90, 0xA0), 0x1F),
    "shift": ONE(0xC0, 0xC1, 0xD0, 0xD1, 0xD2, 0xD3) + TWO(0xA4, 0xA5, 0xAC, 0xAD),
    "muldiv": ONE(0xF6, 0xF7, 0x69, 0x6B) + TWO(0xAF),
    "bit": TWO(0xA3, 0xAB, 0xB3, 0xBB, 0xBA, 0xBC, 0xBD, *range(0xC8, 0xD0)),
    "atomic": TWO(0xB0, 0xB1, 0xC0, 0xC1, 0xC7),
    "bcd": ONE(0x27, 0x2F, 0x37, 0x3F, 0xD4, 0xD5),
    "misc": ONE(0xF5, 0xF8, 0xF9, 0xFC, 0xFD, 0xFE, 0xFF, 0x98, 0x99),
    "string": ONE(*range(0xA4, 0xB0)),
    "branch": ONE(*range(0x70, 0x80), 0xEB, 0xE9, 0xE8, 0xE0, 0xE1, 0xE2, 0xE3) + TWO(*range(0x80, 0x90)),
    "seg": ONE(0x8C, 0x8E, 0x06, 0x07, 0x0E, 0x16, 0x17, 0x1E, 0x1F) + TWO(0xA0, 0xA1, 0xA8, 0xA9, 0xB2, 0xB4, 0xB5),
}
BRANCH_REL8 = set(range(0x70, 0x80)) | {0xEB, 0xE0, 0xE1, 0xE2, 0xE3}
BRANCH_REL32 = {0xE9, 0xE8}

# flags Intel documents as undefined, by iced mnemonic name
UNDEF = {
    "MUL": SF | ZF | AF | PF, "IMUL": SF | ZF | AF | PF, "DIV": ARITH, "IDIV": ARITH,
    "AND": AF, "OR": AF, "XOR": AF, "TEST": AF,
    "SHL": AF | OF, "SAL": AF | OF, "SHR": AF | OF, "SAR": AF | OF,
    "ROL": OF, "ROR": OF, "RCL": OF, "RCR": OF,
    "SHLD": AF | OF, "SHRD": AF | OF,
    "BT": OF | SF | ZF | AF | PF, "BTS": OF | SF | ZF | AF | PF, "BTR": OF | SF | ZF | AF | PF,
    "BTC": OF | SF | ZF | AF | PF, "BSF": CF | OF | SF | AF | PF, "BSR": CF | OF | SF | AF | PF,
    "AAA": OF | SF | ZF | PF, "AAS": OF | SF | ZF | PF, "DAA": OF, "DAS": OF,
    "AAM": OF | AF | CF, "AAD": OF | AF | CF,
    # not undefined, but unicorn 2.1.4 computes CMPXCHG8B's other flags from a stale cc_op
    "CMPXCHG8B": CF | PF | AF | SF | OF | 0x400,
}
# shifts by an immediate 1 (D0/D1) define OF
DEF_OF_D0 = {0xD0, 0xD1}


class _Mem:
    def __init__(self, size):
        self.size = size
        self.ram = np.zeros(size, dtype=np.uint8)


class _NullHost:
    def port_read(self, port, size):
        return (1 << (8 * size)) - 1

    def port_write(self, port, size, value):
        pass

    def port_read_string(self, port, size, count):
        return b"\xff" * (size * count)

    def port_write_string(self, port, size, data):
        pass

    def mmio_read(self, addr, size):
        return (1 << (8 * size)) - 1

    def mmio_write(self, addr, size, value):
        pass

    def interrupt_ack(self):
        return None


def _desc(base, limit, access, flags=0xC):
    return ((limit & 0xFFFF) | ((base & 0xFFFF) << 16) | (((base >> 16) & 0xFF) << 32)
            | (access << 40) | (((limit >> 16) & 0xF) << 48) | (flags << 52) | ((base >> 24) << 56))


def build_image(rng: random.Random) -> np.ndarray:
    img = np.frombuffer(rng.randbytes(RAM), dtype=np.uint8).copy()
    img[PD:PD + 0x3000] = 0
    for i in range(1024):
        img[PD + 4 * i:PD + 4 * i + 4] = np.frombuffer((PT | 0x7).to_bytes(4, "little"), np.uint8)
        phys = i % 256
        pte = (phys << 12) | 0x5 | (0 if phys in RO_PAGES else 2)
        if phys == NP_PAGE:
            pte = 0
        img[PT + 4 * i:PT + 4 * i + 4] = np.frombuffer(pte.to_bytes(4, "little"), np.uint8)
    gdt = [0, _desc(0, 0xFFFFF, 0x9B), _desc(0, 0xFFFFF, 0x93), _desc(FS_BASE, 0xFFFFF, 0x93)]
    for i, d in enumerate(gdt):
        img[GDT + 8 * i:GDT + 8 * i + 8] = np.frombuffer(d.to_bytes(8, "little"), np.uint8)
    img[CODE:CODE + 0x1000] = 0xF4
    return img


REAL_SEGS = {"cs": 0x1000, "ds": 0x2000, "es": 0x3000, "ss": 0x4000, "fs": 0x5000, "gs": 0x6000}
REAL_RAM = 2 << 20


def build_real_image(rng: random.Random) -> np.ndarray:
    img = np.frombuffer(rng.randbytes(REAL_RAM), dtype=np.uint8).copy()
    img[0x10000:0x11000] = 0xF4
    return img


class Harness:
    """mode "pm": protected mode with aliased paging (see module doc); mode "real": real mode,
    CS=1000 DS=2000 ES=3000 SS=4000 FS=5000 GS=6000 over 2 MiB of random RAM."""

    def __init__(self, seed=0, mode="pm"):
        from unicorn import Uc, UC_ARCH_X86, UC_MODE_32, UC_HOOK_INTR
        from unicorn import x86_const as X
        from .cpu import CPU
        self.X = X
        self.rng = random.Random(seed)
        self.mode = mode
        self.image = build_image(self.rng) if mode == "pm" else build_real_image(self.rng)
        self.ram_size = RAM if mode == "pm" else REAL_RAM
        self.mem = _Mem(self.ram_size)
        self.cpu = CPU(self.mem, _NullHost())
        self.intr = []
        self.need_new_uc = False
        self._new_uc()
        self.regs = [X.UC_X86_REG_EAX, X.UC_X86_REG_ECX, X.UC_X86_REG_EDX, X.UC_X86_REG_EBX,
                     X.UC_X86_REG_ESP, X.UC_X86_REG_EBP, X.UC_X86_REG_ESI, X.UC_X86_REG_EDI]
        self.code_off = 0
        self.null_seg_gp = False
        self.skipped_null_seg = 0
        from iced_x86 import Decoder, Formatter, FormatterSyntax, Mnemonic, Code
        self.Decoder = Decoder
        self.fmt = Formatter(FormatterSyntax.INTEL)
        self.mnem = {getattr(Mnemonic, n): n.upper() for n in dir(Mnemonic) if not n.startswith("_")}
        self.INVALID = Code.INVALID

    def _new_uc(self):
        """A fresh unicorn: its x86 'old_exception' state leaks between hooked exceptions
        (QEMU would turn the next fault into #DF), so an exception case gets a new instance."""
        from unicorn import Uc, UC_ARCH_X86, UC_MODE_16, UC_MODE_32, UC_HOOK_INTR
        X = self.X
        self.uc = uc = Uc(UC_ARCH_X86, UC_MODE_32 if self.mode == "pm" else UC_MODE_16)
        uc.mem_map(0, self.ram_size)
        uc.mem_write(0, self.image.tobytes())

        def hook(uc_, intno, ud):
            self.intr.append(intno)
            uc_.emu_stop()
        uc.hook_add(UC_HOOK_INTR, hook)
        if self.mode == "real":
            for name, sel in REAL_SEGS.items():
                uc.reg_write(getattr(X, f"UC_X86_REG_{name.upper()}"), sel)
            return
        uc.reg_write(X.UC_X86_REG_GDTR, (0, GDT, 0x1F, 0))
        uc.reg_write(X.UC_X86_REG_CR3, PD)
        uc.reg_write(X.UC_X86_REG_CR4, 0x10)
        uc.reg_write(X.UC_X86_REG_CR0, 0x80010011)
        uc.reg_write(X.UC_X86_REG_CS, 0x08)
        for r in (X.UC_X86_REG_DS, X.UC_X86_REG_ES, X.UC_X86_REG_SS, X.UC_X86_REG_GS):
            uc.reg_write(r, 0x10)
        uc.reg_write(X.UC_X86_REG_FS, 0x18)

    # ---------------------------------------------------------------- generation
    def gen_insn(self, group):
        rng = self.rng
        for _ in range(50):
            opc = rng.choice(GROUPS[group])
            pfx = b""
            is_branch = group == "branch"
            if not is_branch:
                if rng.random() < 0.25:
                    pfx += b"\x66"
                if rng.random() < 0.05 and self.mode == "pm":
                    pfx += b"\x67"
                if rng.random() < 0.12:
                    # (real mode: no CS override, stores to the code page confuse unicorn's SMC handling)
                    pfx += rng.choice([b"\x64", b"\x26", b"\x2e" if self.mode == "pm" else b"\x3e",
                                       b"\x36", b"\x3e", b"\x65"])
                if group == "string" and rng.random() < 0.6:
                    pfx += rng.choice([b"\xf3", b"\xf2"])
            if opc[0] == 0x0F and opc[1] in range(0xC8, 0xD0):
                pfx = pfx.replace(b"\x66", b"")
            tail = rng.randbytes(12)
            if rng.random() < 0.5:   # favour register forms half of the time
                tail = bytes([tail[0] | 0xC0]) + tail[1:]
            if opc in (b"\xd4", b"\xd5") and rng.random() < 0.7:
                tail = bytes([10]) + tail[1:]
            raw = pfx + opc + tail
            ins = next(iter(self.Decoder(32 if self.mode == "pm" else 16, raw, ip=0)))
            if ins.code == self.INVALID:
                continue
            m = self.mnem.get(ins.mnemonic, "?")
            if m in ("BOUND", "ARPL", "LES", "LDS", "INT", "INTO", "INT3", "IRET", "IRETD", "HLT",
                     "POPF", "POPFD", "SALC", "RET", "RETF", "ICEBP", "INT1", "CMPXCHG16B", "RDRAND",
                     "RDSEED", "XSAVES", "XRSTORS", "XSAVEC", "RDPID", "VMPTRLD", "VMPTRST", "VMCLEAR",
                     "VMXON", "XBEGIN", "XABORT", "?"):
                continue
            modreg = (raw[len(pfx) + len(opc)] >> 3) & 7 if len(raw) > len(pfx) + len(opc) else 0
            if opc in (b"\xf6", b"\xf7") and modreg == 1:
                continue   # the undocumented TEST alias: unicorn raises #UD
            if opc == b"\x8e" and modreg in (1, 6, 7):
                continue
            if opc == b"\xc8" and b"\x66" in pfx:
                continue   # 16-bit ENTER on a 32-bit stack: QEMU writes all of EBP, Intel only BP
            if opc == b"\x0f\xc7" and modreg != 1:
                continue
            if group == "misc" and opc in (b"\xff",) and ((raw[len(pfx) + 1] >> 3) & 7) not in (0, 1, 6):
                continue
            b = raw[:ins.len]
            return b, m, opc, pfx
        return b"\x90", "NOP", b"\x90", b""

    def gen_case(self, group):
        rng = self.rng
        n = 1 if group in ("string",) else rng.randint(1, 4)
        insns = [self.gen_insn(group if rng.random() < 0.8 or group == "branch" else
                               rng.choice(["alu", "mov", "incdec_stack"])) for _ in range(n)]
        # an instruction with undefined flags may only be the last one
        keep = []
        for i, it in enumerate(insns):
            keep.append(it)
            if UNDEF.get(it[1], 0):
                break
        insns = keep
        # patch branches to forward targets
        lens = [len(b) for b, *_ in insns]
        offs = [sum(lens[:i]) for i in range(len(lens) + 1)]
        out = []
        for i, (b, m, opc, pfx) in enumerate(insns):
            op0 = opc[0] if opc[0] != 0x0F else 0x100 | opc[1]
            if op0 in BRANCH_REL8 or op0 in BRANCH_REL32 or (0x180 <= op0 < 0x190):
                j = rng.randint(i + 1, len(insns))
                disp = offs[j] - offs[i + 1]
                body = opc
                if op0 in BRANCH_REL8:
                    b = pfx + body + bytes([disp])
                elif lens[i] - len(pfx) - len(body) == 2:
                    b = pfx + body + disp.to_bytes(2, "little")
                else:
                    b = pfx + body + disp.to_bytes(4, "little")
                assert len(b) == lens[i], (b, lens[i])
            out.append((b, m, opc))
        code = b"".join(b for b, *_ in out)
        last = out[-1]
        undef = UNDEF.get(last[1], 0)
        if last[2][0] in DEF_OF_D0 and last[1] in ("SHL", "SHR", "SAR", "SAL"):
            undef &= ~OF
        if last[2][0] in DEF_OF_D0 and last[1] in ("ROL", "ROR", "RCL", "RCR"):
            undef &= ~OF
        regs = [rng.getrandbits(32) for _ in range(8)]
        if rng.random() < 0.3:
            for k in range(8):
                regs[k] = rng.choice([0, 1, 0xFFFFFFFF, 0x80000000, 0x7FFFFFFF, 0x7F, 0x80, 0xFF,
                                      0x8000, 0xFFFF, rng.getrandbits(8), rng.getrandbits(16)])
        regs[4] = STACK_TOP + rng.randrange(-256, 256, 4) if self.mode == "pm" else 0xF800 + rng.randrange(-256, 256, 2)
        if any(k[0] and k[1] == "" for k in []):
            pass
        if any(m in ("MOVSB", "MOVSW", "MOVSD", "STOSB", "STOSW", "STOSD", "LODSB", "LODSW", "LODSD",
                     "CMPSB", "CMPSW", "CMPSD", "SCASB", "SCASW", "SCASD") for _, m, _ in out):
            regs[1] = rng.randint(0, 40)
        if group == "branch" and rng.random() < 0.5:
            regs[1] = rng.randint(0, 3)
        flags = 2 | (rng.getrandbits(12) & ARITH) | (0x400 if rng.random() < 0.2 else 0)
        return code, regs, flags, undef, [m for _, m, _ in out]

    # ---------------------------------------------------------------- execution
    def run_case(self, code, regs, flags):
        X = self.X
        uc, cpu = self.uc, self.cpu
        off = self.code_off
        self.code_off = (self.code_off + 64) % 0xF80
        addr = CODE + off
        img = self.image
        full = code + b"\xf4"
        # pyv86
        ram = self.mem.ram
        ram[:] = img
        ram[addr:addr + len(full)] = np.frombuffer(full, np.uint8)
        st = cpu.state
        cpu.reset()
        st["exc_exit"] = 1
        if self.mode == "pm":
            cpu.set_gdtr(GDT, 0x1F)
            st["cr"][0] = 0x80010011
            st["cr"][3] = PD
            st["cr"][4] = 0x10
            cpu.set_segment("cs", 0x08, 0, 0xFFFFFFFF, 0xC09B)
            for s_ in ("ds", "es", "ss", "gs"):
                cpu.set_segment(s_, 0x10, 0, 0xFFFFFFFF, 0xC093)
            cpu.set_segment("fs", 0x18, FS_BASE, 0xFFFFFFFF, 0xC093)
            cpu.set_segment("ldtr", 0, 0, 0, 0x82)     # unicorn starts with an empty LDT
            eip = addr
        else:
            for name, sel in REAL_SEGS.items():
                cpu.set_segment(name, sel, sel << 4, 0xFFFF, 0x9B if name == "cs" else 0x93)
            eip = addr - 0x10000
        for i, v in enumerate(regs):
            st["regs"][i] = v
        cpu.set_reg("eflags", flags)
        cpu.set_reg("eip", eip)
        cpu.flush_tlb()
        cpu.run(100000)
        p_exc = int(st["exc_vector"]) if cpu.exit_reason == 5 else None
        # QEMU (unicorn) does not fault on a null DS/ES/FS/GS: such a #GP(0) is not compared
        self.null_seg_gp = (self.mode == "pm" and p_exc == 13 and int(st["exc_code"]) == 0
                            and any(int(st["seg_sel"][i]) & 0xFFFC == 0 for i in (0, 3, 4, 5)))
        # unicorn
        if self.need_new_uc:
            self._new_uc()
            self.need_new_uc = False
            uc = self.uc
        uc.mem_write(0, img.tobytes())
        uc.mem_write(addr, full)
        uc.ctl_remove_cache(CODE, CODE + 0x1000)
        if self.mode == "pm":
            uc.reg_write(X.UC_X86_REG_CR3, PD)
        for r, v in zip(self.regs, regs):
            uc.reg_write(r, v)
        uc.reg_write(X.UC_X86_REG_EFLAGS, flags)
        if self.mode == "pm":
            uc.reg_write(X.UC_X86_REG_CR2, 0)
        self.intr = []
        u_exc = None
        try:
            uc.emu_start(addr, addr + len(code), timeout=2_000_000)
        except Exception as ex:  # noqa: BLE001
            if "INSN_INVALID" in str(ex) or "UC_ERR_INSN_INVALID" in repr(ex):
                u_exc = 6
            else:
                u_exc = ("uc-error", str(ex))
        if self.intr:
            u_exc = self.intr[0]
        if u_exc is not None:
            self.need_new_uc = True
        return p_exc, u_exc

    def compare(self, code, regs, flags, undef, mnemonics=()):
        X = self.X
        p_exc, u_exc = self.run_case(code, regs, flags)
        uc, cpu = self.uc, self.cpu
        st = cpu.state
        diffs = []
        if self.null_seg_gp:
            self.skipped_null_seg += 1
            return diffs
        if p_exc != u_exc:
            diffs.append(f"exception pyv86={p_exc} unicorn={u_exc}")
        for i, r in enumerate(self.regs):
            a, b = int(st["regs"][i]), uc.reg_read(r)
            if a != b:
                diffs.append(f"{['eax','ecx','edx','ebx','esp','ebp','esi','edi'][i]} pyv86={a:#x} unicorn={b:#x}")
        peip = cpu.get_reg("eip")
        ueip = uc.reg_read(X.UC_X86_REG_EIP)
        if p_exc is None and cpu.halted:
            peip -= 1      # pyv86 retired the HLT
        if peip != ueip:
            diffs.append(f"eip pyv86={peip:#x} unicorn={ueip:#x}")
        mask = (ARITH | 0x400) & ~undef
        if p_exc is not None and p_exc == u_exc and mnemonics and mnemonics[-1] in ("RCL", "RCR"):
            # QEMU's rcl/rcr helpers update EFLAGS before the faulting store; pyv86 is precise
            mask = 0
        pf, uf = cpu.get_reg("eflags") & mask, uc.reg_read(X.UC_X86_REG_EFLAGS) & mask
        if pf != uf:
            diffs.append(f"eflags pyv86={pf:#x} unicorn={uf:#x} (mask {mask:#x})")
        if p_exc == 14 and u_exc == 14:
            a, b = cpu.get_reg("cr2"), uc.reg_read(X.UC_X86_REG_CR2)
            if a != b:
                diffs.append(f"cr2 pyv86={a:#x} unicorn={b:#x}")
        umem = np.frombuffer(uc.mem_read(0, self.ram_size), np.uint8)
        bad = np.nonzero(umem != self.mem.ram)[0]
        if len(bad):
            a = int(bad[0])
            diffs.append(f"memory differs at {len(bad)} bytes, first {a:#x}: pyv86={self.mem.ram[a]:#x} unicorn={umem[a]:#x}")
        return diffs

    def disasm(self, code):
        return "; ".join(self.fmt.format(i) for i in self.Decoder(32 if self.mode == "pm" else 16, code, ip=0))


def run(cases, seed, groups=None, verbose=False, max_report=10, out=sys.stdout, mode="pm",
        harness_cls=None):
    h = (harness_cls or Harness)(seed, mode)
    groups = groups or list(GROUPS)
    stats = {g: [0, 0] for g in groups}
    failures = []
    t0 = time.time()
    for i in range(cases):
        g = groups[i % len(groups)]
        code, regs, flags, undef, mn = h.gen_case(g)
        diffs = h.compare(code, regs, flags, undef, mn)
        if g == "seg":
            h.need_new_uc = True    # segment registers changed: start the next case afresh
        stats[g][0] += 1
        if diffs:
            stats[g][1] += 1
            if len(failures) < max_report:
                failures.append((g, code.hex(), h.disasm(code), [hex(r) for r in regs], hex(flags), diffs))
                if verbose:
                    print(f"MISMATCH [{g}] {h.disasm(code)} code={code.hex()} regs={[hex(r) for r in regs]} "
                          f"flags={flags:#x}\n   " + "\n   ".join(diffs), file=out)
    dt = time.time() - t0
    return {"cases": cases, "mismatches": sum(v[1] for v in stats.values()), "groups": stats,
            "failures": failures, "seconds": dt, "skipped_null_seg": h.skipped_null_seg}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--group", action="append", choices=list(GROUPS))
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--mode", choices=["pm", "real", "both"], default="both",
                    help="protected mode with paging, real mode, or both (half the cases each)")
    a = ap.parse_args(argv)
    modes = ["pm", "real"] if a.mode == "both" else [a.mode]
    total = {"cases": 0, "mismatches": 0, "groups": {}, "seconds": 0.0}
    for i, mode in enumerate(modes):
        r = run(a.cases // len(modes), a.seed + i, a.group, a.verbose, max_report=50, mode=mode)
        print(f"[{mode}]")
        for g, (n, bad) in r["groups"].items():
            print(f"  {g:14s} {n:8d} cases {bad:6d} mismatches")
        if r["skipped_null_seg"]:
            print(f"  ({r['skipped_null_seg']} cases not compared: pyv86 raised #GP(0) for a null data "
                  "segment, which unicorn/QEMU does not check)")
        for k in ("cases", "mismatches", "seconds"):
            total[k] += r[k]
    r = total
    print(f"total {r['cases']} cases, {r['mismatches']} mismatches, {r['seconds']:.1f} s "
          f"(seed {a.seed})")
    return 1 if r["mismatches"] else 0


if __name__ == "__main__":
    sys.exit(main())
