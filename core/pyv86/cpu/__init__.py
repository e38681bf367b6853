"""The pyv86 i686 CPU: an llvmlite-compiled interpreter generated from one ISA description.

Import is light: llvmlite is only imported when a :class:`CPU` is constructed.
See docs/cpu.md for the API.
"""
from __future__ import annotations

from .host import CpuHost

__all__ = ["CPU", "CpuHost", "TripleFault"]


def __getattr__(name):
    if name in ("CPU", "TripleFault"):
        from . import cpu as _cpu
        return getattr(_cpu, name)
    raise AttributeError(name)
