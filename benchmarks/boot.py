"""Benchmark: Linux boot time to the ``PYV86-READY`` marker, pyv86 against QEMU TCG and v86.

pyv86 boots twice, as it runs by default (the interpreter) and with the block JIT tier
(``PYV86_JIT=1``, peer ``pyv86-jit``), so each tier's MIPS is printed. All boot the same kernel and initramfs
(the image of ``pyv86 guest build``) with the same kernel command line (the machine file's
``[boot] cmdline``, else pyv86's default), in the same run, on 128 MiB. Times are host
wall-clock seconds from process start to the marker line on the serial console, and the
user CPU time of each peer's processes. The ratio is pyv86 / QEMU (lower is better; issue
10's target is <= 2.0); ``jit_ratio`` is the same for the JIT tier. The JIT keeps its
translations on disk (docs/jit.md), so its first boot after an install compiles and later
boots mostly link cached code: the line shows how many blocks came from each.

* pyv86: ``pyv86 -v run MACHINE --exec true`` (the console is logged to stderr with -v);
  guest instructions are taken from pyv86's own report when it prints one
  (``N instructions``), and MIPS = instructions / seconds.
* QEMU: ``qemu-system-i386 -M pc -cpu pentium3 -m 128`` TCG, ne2k_pci on user-mode
  networking with ``restrict=on`` (see :mod:`pyv86.guest.qemu`).
* v86: the npm package under Node.js with SeaBIOS, no network backend (see
  :mod:`pyv86.peers.v86`); its status names the user CPU time (``v86_user_cpu_s``).

Peers are entries of ``PEERS`` (name -> function returning a result dict), so another
emulator (v86) is one more function. A peer that cannot boot is reported with its reason
instead of a number.

    python benchmarks/boot.py [--machine examples/machines/linux.toml] [--json]
                              [--timeout 1800] [--qemu-timeout 300] [--only pyv86,qemu]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path
from typing import Any, Callable

from pyv86 import paths
from pyv86.guest.scripts import READY_MARKER

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MACHINE = ROOT / "examples/machines/linux.toml"
READY_RE = re.compile(rf"^{READY_MARKER}\r?$", re.M)
UPTIME_RE = re.compile(r"pyv86-init: ready after ([0-9.]+) s of guest uptime")
INSNS_RE = re.compile(r"^.*\bpyv86\b.*?([0-9][0-9_,]*)\s+(?:guest\s+)?instructions", re.I | re.M)


def machine_cmdline(machine: Path) -> str:
    """The kernel command line pyv86 uses for this machine file."""
    try:
        data = tomllib.loads(machine.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        data = {}
    cmdline = data.get("boot", {}).get("cmdline")
    if isinstance(cmdline, str):
        return cmdline
    try:
        from pyv86.boot.linux import DEFAULT_CMDLINE
        return str(DEFAULT_CMDLINE)
    except ImportError:
        from pyv86.guest.qemu import DEFAULT_CMDLINE as QEMU_DEFAULT
        return QEMU_DEFAULT


def _uptime(text: str) -> float | None:
    m = UPTIME_RE.search(text)
    return float(m.group(1)) if m else None


JIT_RE = re.compile(r"JIT: ([0-9,]+) of them in translated blocks.*?(\d+) blocks translated"
                    r".*?(\d+) from the cache")


def run_pyv86(ctx: dict[str, Any], jit: bool = True) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "pyv86.cli", "-v", "run", str(ctx["machine"]), "--exec", "true",
           "--timeout", str(ctx["timeout"])]
    result: dict[str, Any] = {"command": ("PYV86_JIT=1 " if jit else "") + " ".join(cmd[2:]),
                              "tier": "interpreter + block JIT" if jit else "interpreter"}
    env = dict(os.environ, PYV86_JIT="1" if jit else "0")
    start = time.monotonic()
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True, env=env)
    err, out = bytearray(), bytearray()
    ready_at: list[float] = []

    def pump(stream: Any, buf: bytearray, watch: bool) -> None:
        fd = stream.fileno()
        while chunk := os.read(fd, 65536):
            buf.extend(chunk)
            recent = bytes(buf[-(len(chunk) + 32):]).decode("utf-8", "replace")
            if watch and not ready_at and READY_RE.search(recent):
                ready_at.append(time.monotonic() - start)

    readers = [threading.Thread(target=pump, args=(proc.stderr, err, True), daemon=True),
               threading.Thread(target=pump, args=(proc.stdout, out, False), daemon=True)]
    for r in readers:
        r.start()
    try:
        proc.wait(timeout=ctx["timeout"] + 30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    for r in readers:
        r.join(5)
    total = time.monotonic() - start
    text = bytes(err).decode("utf-8", "replace") + bytes(out).decode("utf-8", "replace")
    result["exit_status"] = proc.returncode
    result["total_s"] = round(total, 3)
    result["user_cpu_s"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime - cpu0, 2)
    m = JIT_RE.search(text)
    if m:
        result["jit_instructions"] = int(m.group(1).replace(",", ""))
        result["jit_blocks"] = int(m.group(2))
        result["jit_cached_blocks"] = int(m.group(3))
    result["guest_uptime_s"] = _uptime(text)
    counts = [int(m.group(1).replace(",", "").replace("_", "")) for m in INSNS_RE.finditer(text)]
    result["instructions"] = max(counts) if counts else None
    if ready_at:
        result["seconds"] = round(ready_at[0], 3)
        result["status"] = "ok"
    else:
        result["seconds"] = None
        tail = [ln for ln in text.splitlines() if ln.strip()][-3:]
        why = "killed at the time limit" if proc.returncode in (-9, -signal.SIGKILL) else f"exit {proc.returncode}"
        result["status"] = (f"did not reach {READY_MARKER} ({why} after {total:.1f} s): "
                            + (" | ".join(tail)[-400:] or "no console output"))
    if result["instructions"] and result["seconds"]:
        result["mips"] = round(result["instructions"] / result["total_s"] / 1e6, 2)
    return result


def run_qemu(ctx: dict[str, Any]) -> dict[str, Any]:
    from pyv86.guest.qemu import QemuError, QemuGuest
    result: dict[str, Any] = {"instructions": None, "mips": None}
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
    try:
        with QemuGuest(ctx["kernel"], ctx["initrd"], ctx["cmdline"]) as q:
            result["command"] = " ".join(q.command)
            result["seconds"] = round(q.wait_ready(ctx["qemu_timeout"]), 3)
            result["guest_uptime_s"] = _uptime(q.output)
            result["status"] = "ok"
    except QemuError as exc:
        result["seconds"] = None
        result["status"] = str(exc).splitlines()[0]
    # (QEMU is stopped once the marker is seen: its CPU time covers the boot)
    result["user_cpu_s"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime - cpu0, 2)
    return result


def run_v86(ctx: dict[str, Any]) -> dict[str, Any]:
    # the real v86 under Node.js (peers/v86, installed on first use); see pyv86.peers.v86
    from pyv86.peers.v86 import boot_to_marker
    return boot_to_marker(ctx["kernel"], ctx["initrd"], ctx["cmdline"], ctx.get("v86_timeout", 900))


PEERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "pyv86": lambda ctx: run_pyv86(ctx, jit=False),     # the default: interpreter
    "pyv86-jit": run_pyv86,
    "qemu": run_qemu,
    "v86": run_v86,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--machine", type=Path, default=DEFAULT_MACHINE, help="pyv86 machine file")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds to let pyv86 boot")
    ap.add_argument("--qemu-timeout", type=float, default=300, help="seconds to let QEMU boot")
    ap.add_argument("--only", default="pyv86,pyv86-jit,qemu,v86",
                    help="comma-separated peers (pyv86 = default interpreter, pyv86-jit, qemu, v86)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)

    guest = paths.guest_dir()
    kernel, initrd = guest / "vmlinuz", guest / "initramfs.cpio.gz"
    if not (kernel.is_file() and initrd.is_file()):
        print(f"boot.py: no guest image in {guest}; run `pyv86 guest build` first", file=sys.stderr)
        return 2
    ctx = {"machine": args.machine, "timeout": args.timeout, "qemu_timeout": args.qemu_timeout,
           "kernel": kernel, "initrd": initrd, "cmdline": machine_cmdline(args.machine)}
    wanted = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = [p for p in wanted if p not in PEERS]
    if unknown:
        print(f"boot.py: --only {args.only}: unknown peer {unknown[0]}; choose from {', '.join(PEERS)}",
              file=sys.stderr)
        return 2
    results: dict[str, Any] = {}
    for name in wanted:
        if not args.json:
            print(f"booting {name} ...", file=sys.stderr, flush=True)
        results[name] = PEERS[name](ctx)

    def secs(name: str) -> float | None:
        return results.get(name, {}).get("seconds")

    ratio = round(secs("pyv86") / secs("qemu"), 2) if secs("pyv86") and secs("qemu") else None
    manifest_path = guest / "manifest.json"
    release = None
    if manifest_path.is_file():
        release = json.loads(manifest_path.read_text()).get("kernel", {}).get("release")
    jit_ratio = round(secs("pyv86-jit") / secs("qemu"), 2) if secs("pyv86-jit") and secs("qemu") else None
    summary = {"pyv86_s": secs("pyv86"), "pyv86_jit_s": secs("pyv86-jit"), "jit_ratio": jit_ratio,
               "qemu_s": secs("qemu"), "v86_s": secs("v86"),
               "v86_user_cpu_s": results.get("v86", {}).get("user_cpu_s"), "ratio": ratio,
               "marker": READY_MARKER, "kernel": release, "cmdline": ctx["cmdline"],
               "machine": str(args.machine), "peers": results}
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"kernel {release}, cmdline: {ctx['cmdline']}")
    print(f"{'peer':<13} {'to marker':>10} {'user CPU':>9} {'guest uptime':>13} {'instructions':>14} "
          f"{'MIPS':>8}  status")
    for name, r in results.items():
        s = f"{r['seconds']:.2f} s" if r.get("seconds") else "-"
        cpu = f"{r['user_cpu_s']:.1f} s" if r.get("user_cpu_s") is not None else "-"
        up = f"{r['guest_uptime_s']:.2f} s" if r.get("guest_uptime_s") else "-"
        ins = f"{r['instructions']:,}" if r.get("instructions") else "-"
        mips = f"{r['mips']:.1f}" if r.get("mips") else "-"
        extra = (f" ({r['jit_instructions']:,} instructions translated; blocks: {r['jit_blocks']} "
                 f"compiled in this run, {r['jit_cached_blocks']} from the disk cache)"
                 if r.get("jit_instructions") is not None else "")
        print(f"{name:<13} {s:>10} {cpu:>9} {up:>13} {ins:>14} {mips:>8}  {r['status']}{extra}")
    print(f"ratio pyv86/qemu: {ratio if ratio is not None else 'n/a (a peer did not boot)'}"
          + (f"; with the JIT tier: {jit_ratio}" if jit_ratio is not None else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
