"""Start a test's CPU in flat real mode at a program it wrote to guest memory.

Platform and device tests drive the real CPU with a few hand-assembled instructions:
:func:`start_real_mode` points CS, DS, ES and SS at segment 0 (limit 64 KiB) and sets EIP
and ESP, as a boot hook or after ``machine.reset()``.
"""
from __future__ import annotations

from typing import Any

PROGRAM_AT = 0x1000
STACK_AT = 0x8000


def start_real_mode(cpu: Any, eip: int = PROGRAM_AT, esp: int = STACK_AT) -> None:
    """Flat real-mode segments; execution starts at ``eip`` with the stack at ``esp``."""
    for seg in ("cs", "ds", "es", "ss"):
        cpu.set_segment(seg, 0, 0, 0xFFFF, 0x9B if seg == "cs" else 0x93)
    cpu.set_reg("esp", esp)
    cpu.set_reg("eip", eip)
