"""Opcode coverage report: which opcodes the ISA description implements.

    python -m pyv86.cpu.coverage
"""
from __future__ import annotations

import sys


def report() -> str:
    from . import codegen  # noqa: F401  (registers the x87 opcodes)
    from . import isa
    lines = []
    for base, title in ((0, "one-byte map"), (0x100, "0F map")):
        lines.append(f"{title}: {sum(1 for o in isa.OPS if base <= o < base + 256)} of 256 opcodes")
        lines.append("     " + " ".join(f"{x:X}" for x in range(16)))
        for hi in range(16):
            row = []
            for lo in range(16):
                o = base + hi * 16 + lo
                if o in isa.OPS:
                    row.append("#")
                elif base == 0 and o in (0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65, 0x66, 0x67, 0xF0, 0xF2, 0xF3, 0x0F):
                    row.append("p")
                else:
                    row.append(".")
            lines.append(f"  {hi:X}x " + " ".join(row))
    lines.append("legend: # implemented, p prefix/escape, . #UD")
    lines.append("")
    for o in sorted(isa.OPS):
        d = isa.OPS[o]
        lines.append(f"{'0F ' if o >= 0x100 else '   '}{o & 0xFF:02X}  {d.name}")
    return "\n".join(lines)


def main(argv=None):
    print(report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
