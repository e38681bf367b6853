"""Tier against tier: run one guest twice in lockstep, interpreter only and with the block JIT,
and compare the whole CPU state, the guest clock and RAM at checkpoints.

Both machines boot the same machine file with a virtual clock, a fixed RTC time and a fixed
MAC, so they must retire exactly the same instruction stream; the JIT runs in ``sync`` mode
(translations are made the moment code becomes hot, deterministically) with a low threshold
so that most of the run executes translated code.  The first checkpoint that differs is
reported with the fields that differ.

    python -m pyv86.cpu.tiercheck [--machine FILE] [--every 10000000] [--until 200000000]
                                  [--threshold 20]
"""
from __future__ import annotations

import argparse
import sys
import zlib
from pathlib import Path

from pyv86.paths import guest_dir

COMPARED = ("regs", "eip", "eflags", "cc_op", "cc_res", "cc_src1", "cc_src2", "seg_sel",
            "seg_base", "seg_limit", "seg_flags", "cr", "gdtr_base", "gdtr_limit", "idtr_base",
            "idtr_limit", "cpl", "halted", "tsc", "fpu_top", "fpu_sw", "fpu_cw", "fpu_tag")


def default_machine_text() -> str:
    g = guest_dir()
    return ("version = 1\n[machine]\nmemory = \"128M\"\nclock = \"virtual\"\n"
            f"[boot]\nkernel = \"{g / 'vmlinuz'}\"\ninitrd = \"{g / 'initramfs.cpio.gz'}\"\n"
            "[device.rtc]\ntype = \"mc146818\"\ntime = \"2024-01-01T00:00:00\"\n"
            "[device.net0]\ntype = \"ne2k-pci\"\nnetdev = \"lan\"\nmac = \"00:22:15:00:00:01\"\n"
            "[netdev.lan]\nurl = \"null:\"\n")


def build(machine_file: Path, jit):
    from pyv86.config import load_machine_config
    from pyv86.machine import Machine
    from pyv86.plugins.manager import create_plugin_manager
    plugins = create_plugin_manager()
    machine = Machine.from_config(load_machine_config(machine_file, plugins), plugins)
    machine.cpu.set_jit(jit)
    return machine


def snapshot(machine) -> dict:
    st = machine.cpu.state
    out = {name: (st[name].tolist() if getattr(st[name], "shape", ()) else int(st[name]))
           for name in COMPARED}
    out["instructions"] = machine.cpu.instructions
    out["clock_ns"] = machine.clock.now
    out["ram_crc"] = zlib.crc32(memoryview(machine.memory.ram))
    return out


def differences(a: dict, b: dict) -> list[str]:
    return [f"{k}: interpreter={a[k]!r} jit={b[k]!r}" for k in a if a[k] != b[k]]


def compare(machine_file: Path, every: int, until: int, threshold: int, out=sys.stdout) -> dict:
    """Run both tiers to ``until`` instructions; returns a summary (``mismatch`` is None or
    the first checkpoint that differed)."""
    interp = build(machine_file, False)
    jitted = build(machine_file, {"sync": True, "threshold": threshold, "verbose": False})
    result = {"checkpoints": 0, "instructions": 0, "mismatch": None, "jit": None}
    try:
        done = 0
        while done < until:
            step = min(every, until - done)
            r1 = interp.run(max_instructions=step)
            r2 = jitted.run(max_instructions=step)
            done += step
            a, b = snapshot(interp), snapshot(jitted)
            result["checkpoints"] += 1
            result["instructions"] = a["instructions"]
            diff = differences(a, b)
            if r1 != r2:
                diff.insert(0, f"stop reason: interpreter={r1} jit={r2}")
            print(f"checkpoint {result['checkpoints']}: {a['instructions']:,} instructions, "
                  f"eip {a['eip']:#010x}, {'same' if not diff else 'DIFFERENT'}", file=out, flush=True)
            if diff:
                result["mismatch"] = {"checkpoint": result["checkpoints"], "differences": diff}
                break
            if r1 not in ("budget",):
                break
        result["jit"] = jitted.cpu.jit.report()
    finally:
        interp.shutdown("tiercheck")
        jitted.shutdown("tiercheck")
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--machine", type=Path, help="machine file (default: the guest image, null network)")
    ap.add_argument("--every", type=int, default=10_000_000, help="instructions between checkpoints")
    ap.add_argument("--until", type=int, default=200_000_000, help="instructions in all")
    ap.add_argument("--threshold", type=int, default=20, help="JIT hotness threshold")
    a = ap.parse_args(argv)
    machine_file = a.machine
    if machine_file is None:
        import tempfile
        machine_file = Path(tempfile.mkdtemp(prefix="pyv86-tiercheck-")) / "tiercheck.toml"
        machine_file.write_text(default_machine_text())
    r = compare(machine_file, a.every, a.until, a.threshold)
    j = r["jit"] or {}
    print(f"{r['checkpoints']} checkpoints over {r['instructions']:,} instructions; "
          f"{j.get('jit_instructions', 0):,} ran translated ({j.get('translated', 0)} blocks, "
          f"{j.get('invalidations', 0)} page invalidations)")
    if r["mismatch"]:
        print(f"tiers differ at checkpoint {r['mismatch']['checkpoint']}:")
        for line in r["mismatch"]["differences"]:
            print("  " + line)
        return 1
    print("no difference between the tiers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
