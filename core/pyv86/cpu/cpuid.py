"""CPUID: GenuineIntel family 6 model 7 stepping 3 ("pentium3"-like, no APIC, no SSE)."""
from __future__ import annotations

VENDOR = b"GenuineIntel"
SIGNATURE = 0x673
# EDX: FPU DE PSE TSC MSR CX8 SEP PGE CMOV (FXSR not advertised: FPU context uses FNSAVE)
FEATURES_EDX = (1 << 0) | (1 << 2) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 8) | (1 << 11) | (1 << 13) | (1 << 15)
MAX_LEAF = 1


def cpuid_table(leaf: int) -> tuple[int, int, int, int]:
    """(eax, ebx, ecx, edx) for a leaf: the single description used by the IR and docs."""
    if leaf == 0:
        b = int.from_bytes(VENDOR[0:4], "little")
        d = int.from_bytes(VENDOR[4:8], "little")
        c = int.from_bytes(VENDOR[8:12], "little")
        return (MAX_LEAF, b, c, d)
    if leaf == 1:
        return (SIGNATURE, 0, 0, FEATURES_EDX)
    if leaf == 0x80000000:
        return (0x80000000, 0, 0, 0)
    return (0, 0, 0, 0)


def emit_cpuid(e):
    leaf = e.reg(0)
    outs = [e.var(32, 0) for _ in range(4)]
    cases = {}
    for lf in (0, 1, 0x80000000):
        vals = cpuid_table(lf)

        def mk(vals=vals):
            def f():
                for o, v in zip(outs, vals):
                    o.set(e.c(v))
            return f
        cases[lf] = mk()
    e.switch(leaf, cases)
    for reg, o in zip((0, 3, 1, 2), outs):
        e.set_reg(reg, o.get())
