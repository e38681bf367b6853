"""Benchmark: save and restore a 128 MiB guest; time and image size, against a numpy+zlib peer.

RAM is filled with a realistic mix laid out in runs of 1-64 pages: zero pages (free
memory), text-like pages (kernel/page-cache text, logs) and random pages (compressed or
encrypted data), plus a NIC-like device. The peer measured in the same run is what a
simple implementation would do: ``numpy.save`` of all of RAM through one zlib stream at
level 1 (and the raw ``numpy.save`` size for reference). Target: < 1 s each way.

    python benchmarks/state.py [--memory 128] [--zero 0.5] [--text 0.3] [--json]
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

from pyv86.machine import Machine
from pyv86.state import restore_machine, save_machine

WORDS = (b"the kernel network packet eth0 def return static int struct page 0x00000000 "
         b"ffffffff dhcp lease 10.0.2.15 usr lib python3 import self if else\n").split(b" ")


def fill(ram: np.ndarray, zero: float, text: float, seed: int = 1) -> dict[str, int]:
    rng = np.random.default_rng(seed)
    pages = ram.reshape(-1, 4096)
    counts = {"zero": 0, "text": 0, "random": 0}
    vocab = np.frombuffer(b" ".join(WORDS) * 64, dtype=np.uint8)
    i = 0
    while i < len(pages):
        run = int(rng.integers(1, 65))
        r = rng.random()
        kind = "zero" if r < zero else "text" if r < zero + text else "random"
        block = pages[i : i + run]
        if kind == "text":
            starts = rng.integers(0, len(vocab) - 4096, len(block))
            for j, s in enumerate(starts):
                block[j] = vocab[s : s + 4096]
        elif kind == "random":
            block[:] = rng.integers(0, 256, block.shape, dtype=np.uint8)
        counts[kind] += len(block)
        i += run
    return counts


def peer(ram: np.ndarray, tmp: Path) -> dict[str, float]:
    start = time.perf_counter()
    buf = io.BytesIO()
    np.save(buf, ram)
    raw = buf.getvalue()
    packed = zlib.compress(raw, 1)
    (tmp / "peer.bin").write_bytes(packed)
    save_s = time.perf_counter() - start
    start = time.perf_counter()
    back = np.load(io.BytesIO(zlib.decompress((tmp / "peer.bin").read_bytes())))
    restore_s = time.perf_counter() - start
    assert np.array_equal(back, ram)
    return {"save_s": save_s, "restore_s": restore_s, "image_bytes": len(packed), "raw_bytes": len(raw)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--memory", type=int, default=128, help="guest RAM in MiB")
    ap.add_argument("--zero", type=float, default=0.5, help="share of zero pages")
    ap.add_argument("--text", type=float, default=0.3, help="share of text-like pages (rest random)")
    ap.add_argument("--repeat", type=int, default=3, help="best of N")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    say = (lambda *a: None) if args.json else (lambda *a: print(*a, file=sys.stderr))

    machine = Machine(memory=args.memory << 20, name="bench")
    machine.realize()
    say(f"filling {args.memory} MiB ...")
    mix = fill(machine.memory.ram, args.zero, args.text)
    target = Machine(memory=args.memory << 20, name="bench-restore")
    target.realize()
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        path = tmp / "bench.pyv86state"
        saves, restores = [], []
        for _ in range(args.repeat):
            t = time.perf_counter()
            result = save_machine(machine, path)
            saves.append(time.perf_counter() - t)
            t = time.perf_counter()
            restore_machine(target, path)
            restores.append(time.perf_counter() - t)
        assert np.array_equal(target.memory.ram, machine.memory.ram)
        say("peer: numpy.save + zlib level 1 ...")
        base = peer(machine.memory.ram, tmp)
    out = {
        "memory_mib": args.memory, "pages": mix, "cpus": os.cpu_count(),
        "save_s": round(min(saves), 3), "restore_s": round(min(restores), 3),
        "image_bytes": result.image_bytes,
        "peer_save_s": round(base["save_s"], 3), "peer_restore_s": round(base["restore_s"], 3),
        "peer_image_bytes": base["image_bytes"],
        "save_speedup": round(base["save_s"] / min(saves), 2),
        "restore_speedup": round(base["restore_s"] / min(restores), 2),
        "size_ratio": round(result.image_bytes / base["image_bytes"], 3),
        "target_met": min(saves) < 1.0 and min(restores) < 1.0,
    }
    if args.json:
        print(json.dumps(out))
    else:
        print(f"guest RAM {args.memory} MiB: {mix['zero']} zero / {mix['text']} text / {mix['random']} random pages")
        print(f"pyv86 image : save {out['save_s']:.3f} s  restore {out['restore_s']:.3f} s  "
              f"{out['image_bytes'] / 2**20:.1f} MiB")
        print(f"numpy+zlib  : save {out['peer_save_s']:.3f} s  restore {out['peer_restore_s']:.3f} s  "
              f"{out['peer_image_bytes'] / 2**20:.1f} MiB")
        print(f"ratios      : save x{out['save_speedup']} faster, restore x{out['restore_speedup']} faster, "
              f"size {out['size_ratio']} of the peer's; target < 1 s each: "
              f"{'met' if out['target_met'] else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
