"""Decode guest code in Python for the block JIT: instruction boundaries and operand fields.

The decode rules are the interpreter's (``codegen.Generator.decode_operands`` and
``decode_ea``): the same opcode table (:data:`isa.OPS`, its ModRM and immediate attributes,
:data:`isa.UNSIZED`, :data:`codegen.REG_ONLY_OPS`) read at translation time instead of at
run time.  The few instructions whose semantics fetch extra immediate bytes themselves
(``enter``, far ``jmp``/``call``, ``test`` in group 3) are listed in :func:`_extra_fetches`.

:func:`decode_block` returns the straight-line run of instructions that a translated block
covers: it stops after anything that transfers control, changes the interrupt flag, the
interrupt shadow, the code segment, paging or descriptor tables, after ``rep`` string
instructions (they restart themselves), before an instruction the interpreter should fault
on (undefined opcode, too many prefixes) and before an instruction that leaves the page.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from . import isa
from . import fpu  # noqa: F401  (registers the x87 opcodes in isa.OPS)
from . import state as S

PREFIX_SEG = {0x26: S.ES, 0x2E: S.CS, 0x36: S.SS, 0x3E: S.DS, 0x64: S.FS, 0x65: S.GS}
MAX_PREFIXES = 14
REG_ONLY_OPS = {0x120, 0x121, 0x122, 0x123}   # mov to/from CR/DR: mod is ignored

# conditional near branches: a block goes on along the fall-through path (the taken path is
# a side exit, or a loop back to the block's start)
COND_BRANCHES = set(range(0x70, 0x80)) | set(range(0x180, 0x190)) | set(range(0xE0, 0xE4))
REL_JUMPS = {0xE9, 0xEB}
# the block ends after these (control transfer, IF / shadow / CS / CR / descriptor changes;
# group 5, 0xFF, only for some ModRM forms: see Decoded.ends_block)
ENDS_BLOCK = ({0xE8, 0xE9, 0xEA, 0xEB, 0x9A, 0xC2, 0xC3, 0xCA, 0xCB, 0xCC, 0xCD, 0xCE, 0xCF,
                 0xF1, 0xF4, 0xFB, 0x9D, 0x17, 0x8E, 0x1B2, 0x100, 0x101, 0x106, 0x108,
                 0x109, 0x120, 0x121, 0x122, 0x123, 0x130, 0x134, 0x135})


@dataclass
class Decoded:
    """One decoded instruction (offsets are relative to the start of the code buffer)."""

    offset: int
    length: int
    opcode: int            # 0x000-0x0FF one-byte map, 0x100-0x1FF the 0F map
    o32: bool              # effective operand size
    a32: bool              # effective address size
    segovr: int            # -1 or a segment index
    rep: int               # 0, 2 (repne) or 3 (rep/repe)
    has_modrm: bool = False
    mod: int = 0
    reg: int = 0
    rm: int = 0
    is_mem: bool = False
    base: int = -1         # EA parts (memory forms): base register or -1
    index: int = -1        # index register or -1
    scale: int = 0
    disp: int = 0
    seg: int = S.DS        # segment of the memory operand
    esp_base: bool = False
    imm: int = 0
    extra: list[tuple[int, int]] = field(default_factory=list)   # (bits, value) fetched by the semantics

    @property
    def handler_o32(self) -> bool:
        """The operand size the interpreter's handler was instantiated with."""
        return True if self.opcode in isa.UNSIZED else self.o32

    def branch_target(self, next_eip: int) -> int | None:
        """Target EIP of a relative jump or conditional branch, else None."""
        if self.opcode not in COND_BRANCHES and self.opcode not in REL_JUMPS:
            return None
        short = self.opcode < 0x100 and self.opcode != 0xE9
        rel = _sx(self.imm & 0xFF, 8) if short else (_sx(self.imm, 32) if self.o32 else _sx(self.imm & 0xFFFF, 16))
        return (next_eip + rel) & (0xFFFFFFFF if self.o32 else 0xFFFF)

    @property
    def ends_block(self) -> bool:
        if self.opcode == 0xFF:     # group 5: the indirect calls and jumps (and /7, #UD) end
            return self.reg not in (0, 1, 6)    # it; inc, dec and push do not
        if self.opcode in ENDS_BLOCK:
            return True
        return self.rep != 0 and self.opcode in isa.STR_KINDS


class _Cursor:
    def __init__(self, code: bytes, pos: int):
        self.code = code
        self.pos = pos

    def take(self, nbytes: int) -> int:
        if self.pos + nbytes > len(self.code):
            raise IndexError
        v = int.from_bytes(self.code[self.pos:self.pos + nbytes], "little")
        self.pos += nbytes
        return v


def _sx(v: int, bits: int) -> int:
    return (v ^ (1 << (bits - 1))) - (1 << (bits - 1))


def _extra_fetches(op: int, d: Decoded) -> list[int]:
    """Bit sizes of the immediates the semantics fetch themselves (``I.fetch``)."""
    if op == 0xC8:
        return [8]
    if op in (0xEA, 0x9A):
        return [16]
    if op in (0xF6, 0xF7) and d.reg in (0, 1):
        return [8 if op == 0xF6 else (32 if d.o32 else 16)]
    return []


def decode_one(code: bytes, offset: int, code32: bool) -> Decoded | None:
    """Decode the instruction at ``code[offset:]``; None when the interpreter should handle it
    (undefined opcode, too many prefixes, or bytes beyond the buffer)."""
    cur = _Cursor(code, offset)
    o32 = a32 = code32
    segovr, rep, npfx = -1, 0, 0
    try:
        while True:
            b = cur.take(1)
            if b == 0x66:
                o32 = not code32
            elif b == 0x67:
                a32 = not code32
            elif b in PREFIX_SEG:
                segovr = PREFIX_SEG[b]
            elif b == 0xF0:
                pass
            elif b in (0xF2, 0xF3):
                rep = b & 3
            else:
                break
            npfx += 1
            if npfx > MAX_PREFIXES:
                return None
        op = b
        if op == 0x0F:
            op = 0x100 | cur.take(1)
        d_op = isa.OPS.get(op)
        if d_op is None or op in (0x0F, 0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65, 0x66, 0x67, 0xF0,
                                  0xF2, 0xF3):
            return None
        d = Decoded(offset, 0, op, o32, a32, segovr, rep)
        if d_op.modrm:
            m = cur.take(1)
            d.has_modrm = True
            d.mod, d.reg, d.rm = m >> 6, (m >> 3) & 7, m & 7
            if d.mod != 3 and op not in REG_ONLY_OPS:
                d.is_mem = True
                _decode_ea(cur, d)
        k = d_op.imm
        unsized = op in isa.UNSIZED
        if k == isa.IMM_B:
            d.imm = cur.take(1)
        elif k == isa.IMM_W:
            d.imm = cur.take(2)
        elif k == isa.IMM_Z and not unsized:
            d.imm = cur.take(4 if o32 else 2)
        elif k == isa.IMM_Z:
            d.imm = cur.take(4 if o32 else 2)
        elif k == isa.IMM_MOFFS:
            d.imm = cur.take(4 if a32 else 2)
        for bits in _extra_fetches(op, d):
            d.extra.append((bits, cur.take(bits // 8)))
    except IndexError:
        return None
    d.length = cur.pos - offset
    return d


def _decode_ea(cur: _Cursor, d: Decoded) -> None:
    use_ss = False
    mod, rm = d.mod, d.rm
    if d.a32:
        if rm == 4:
            sib = cur.take(1)
            base, index, scale = sib & 7, (sib >> 3) & 7, sib >> 6
            if base == 5 and mod == 0:
                d.disp = cur.take(4)
            else:
                d.base = base
                use_ss = base in (4, 5)
                d.esp_base = base == 4
            if index != 4:
                d.index, d.scale = index, scale
        elif rm == 5 and mod == 0:
            d.disp = cur.take(4)
        else:
            d.base = rm
            use_ss = rm == 5
        if mod == 1:
            d.disp = (d.disp + _sx(cur.take(1), 8)) & 0xFFFFFFFF
        elif mod == 2:
            d.disp = (d.disp + cur.take(4)) & 0xFFFFFFFF
    else:
        if rm == 6 and mod == 0:
            d.disp = cur.take(2)
        else:
            # 16-bit forms as (base, index) register pairs: bx+si bx+di bp+si bp+di si di bp bx
            d.base, d.index = ((3, 6), (3, 7), (5, 6), (5, 7), (6, -1), (7, -1), (5, -1), (3, -1))[rm]
            use_ss = rm in (2, 3, 6)
        if mod == 1:
            d.disp = _sx(cur.take(1), 8) & 0xFFFFFFFF
        elif mod == 2:
            d.disp = cur.take(2)
    dflt = S.SS if use_ss else S.DS
    d.seg = dflt if d.segovr == -1 else d.segovr


def decode_block(code: bytes, offset: int, eip: int, code32: bool, max_insns: int) -> list[Decoded]:
    """The instructions of the block starting at ``code[offset:]`` (``code`` is the rest of one
    guest page: an instruction that does not fit ends the block before it)."""
    out: list[Decoded] = []
    pos = offset
    while len(out) < max_insns:
        d = decode_one(code, pos, code32)
        if d is None:
            break
        end_eip = eip + (pos + d.length - offset)
        if not code32 and end_eip > 0xFFFF:
            break
        out.append(d)
        pos += d.length
        if d.ends_block:
            break
    return out
