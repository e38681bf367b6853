"""Benchmark: CPU-bound programs inside a booted Linux guest, on both CPU tiers.

The tier that matters for long-running guest code is the block JIT: the boot is mostly code
that runs a few times, while a guest program that computes for seconds runs the same blocks
millions of times. Each peer boots its own guest (same kernel, initramfs and command line),
then runs each workload ``--runs`` times in the guest shell and reports the wall time of the
best run, the guest instructions it took and MIPS. The runs after the first show the JIT
with its translations in place (the first also pays for compiling them).

    python benchmarks/guest_compute.py [--mb 16] [--runs 3] [--only interp,jit] [--json]

Workloads (busybox applets on data from /dev/zero, so no disk is involved):

* ``md5sum``    MD5 over ``--mb`` MiB (integer rounds, rotates; a tight compute loop)
* ``sha256sum`` SHA-256 over ``--mb`` MiB
* ``gzip``      gzip -1 over ``--mb`` MiB (hashing, memory traffic, branches)
* ``tcp-lo``    ``--mb`` MiB through TCP over the guest's loopback with its MTU set to 1500
  (``dd | nc`` to ``nc -l``, what ``net_throughput.py --guest`` ran until December 2026):
  the kernel's network stack, system calls and context switches, frame by frame, with no
  NIC; it prints the byte count received

``ratio`` in the JSON is interpreter time / JIT time for each workload (above 1: the JIT
is faster). The peers run one after the other in this process, so compare them within one
run on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

WORKLOADS = {
    "md5sum": "dd if=/dev/zero bs=1M count={mb} 2>/dev/null | md5sum",
    "sha256sum": "dd if=/dev/zero bs=1M count={mb} 2>/dev/null | sha256sum",
    "gzip": "dd if=/dev/zero bs=1M count={mb} 2>/dev/null | gzip -1 | wc -c",
    "tcp-lo": ("ip link set lo up mtu 1500; rm -f /tmp/lo.bytes; "
               "(sleep 1000 | nc -l -p 5001 | wc -c > /tmp/lo.bytes) & sleep 1; "
               "dd if=/dev/zero bs=1M count={mb} 2>/dev/null | nc 127.0.0.1 5001; "
               "while [ ! -s /tmp/lo.bytes ]; do sleep 1; done; cat /tmp/lo.bytes"),
}
PEERS = {"interp": False, "jit": True}


def machine_text() -> str:
    from pyv86.paths import guest_dir
    g = guest_dir()
    return ("version = 1\n[machine]\nmemory = \"128M\"\nclock = \"virtual\"\n"
            f"[boot]\nkernel = \"{g / 'vmlinuz'}\"\ninitrd = \"{g / 'initramfs.cpio.gz'}\"\n")


def run_peer(jit: bool, workloads: list[str], mb: int, runs: int, timeout: float) -> dict[str, Any]:
    from pyv86.testing.guest import GuestMachine
    os.environ["PYV86_JIT"] = "1" if jit else "0"
    guest = GuestMachine.from_toml(machine_text(), name="jit" if jit else "interp")
    cpu = guest.machine.cpu
    out: dict[str, Any] = {"workloads": {}}
    try:
        t0 = time.perf_counter()
        guest.start()
        guest.wait_ready(timeout=timeout)
        out["boot_s"] = round(time.perf_counter() - t0, 2)
        for name in workloads:
            cmd = WORKLOADS[name].format(mb=mb)
            times, insns = [], []
            for _ in range(runs):
                i0, t = cpu.instructions, time.perf_counter()
                res = guest.run(cmd, timeout=timeout)
                times.append(time.perf_counter() - t)
                insns.append(cpu.instructions - i0)
            best = min(range(runs), key=lambda i: times[i])
            out["workloads"][name] = {
                "seconds": round(times[best], 3), "first_s": round(times[0], 3),
                "instructions": insns[best], "mips": round(insns[best] / times[best] / 1e6, 1),
                "output": res.output.strip().split()[0] if res.output.strip() else ""}
        if cpu.jit is not None:
            rep = cpu.jit.report()
            out["jit"] = {k: rep[k] for k in ("jit_instructions", "translated", "blocks_entered",
                                             "stale", "invalidations")}
    finally:
        guest.close()
        os.environ.pop("PYV86_JIT", None)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=16, help="MiB of input per workload run")
    ap.add_argument("--runs", type=int, default=3, help="runs of each workload (the best is reported)")
    ap.add_argument("--workloads", default=",".join(WORKLOADS), help="comma-separated workloads")
    ap.add_argument("--only", default="interp,jit", help="comma-separated peers: interp, jit")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per boot or command")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args(argv)
    workloads = [w for w in a.workloads.split(",") if w]
    for w in workloads:
        if w not in WORKLOADS:
            ap.error(f"--workloads: unknown workload {w!r} (known: {', '.join(WORKLOADS)})")
    peers = [p for p in a.only.split(",") if p]
    for p in peers:
        if p not in PEERS:
            ap.error(f"--only: unknown peer {p!r} (known: {', '.join(PEERS)})")
    results = {}
    for p in peers:
        print(f"guest_compute: booting the {p} peer...", file=sys.stderr, flush=True)
        results[p] = run_peer(PEERS[p], workloads, a.mb, a.runs, a.timeout)
    ratio = {}
    if "interp" in results and "jit" in results:
        for w in workloads:
            ratio[w] = round(results["interp"]["workloads"][w]["seconds"]
                             / results["jit"]["workloads"][w]["seconds"], 2)
            if results["interp"]["workloads"][w]["output"] != results["jit"]["workloads"][w]["output"]:
                print(f"guest_compute: {w}: the tiers printed different results "
                      f"({results['interp']['workloads'][w]['output']!r} against "
                      f"{results['jit']['workloads'][w]['output']!r})", file=sys.stderr)
                return 1
    summary = {"mb": a.mb, "runs": a.runs, "peers": results, "ratio": ratio}
    if a.json:
        print(json.dumps(summary))
        return 0
    print(f"{'workload':10s} {'peer':7s} {'best':>8s} {'first':>8s} {'instructions':>15s} {'MIPS':>7s}")
    for w in workloads:
        for p in peers:
            r = results[p]["workloads"][w]
            print(f"{w:10s} {p:7s} {r['seconds']:7.2f}s {r['first_s']:7.2f}s "
                  f"{r['instructions']:15,d} {r['mips']:7.1f}")
        if w in ratio:
            print(f"{w:10s} ratio interp/jit: {ratio[w]}")
    for p in peers:
        if "jit" in results[p]:
            print(f"{p}: boot {results[p]['boot_s']} s; JIT {results[p]['jit']}")
        else:
            print(f"{p}: boot {results[p]['boot_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
