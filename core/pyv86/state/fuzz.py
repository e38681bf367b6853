"""Fuzz the state-image reader: mutated, truncated and re-signed images must give StateError only.

``python -m pyv86.state.fuzz --cases 100000 [--seed N]`` builds a small machine with a
device holding every kind of field, saves it, then restores thousands of damaged copies
into a fresh machine. Damage comes in two families:

* raw: flipped bits, overwritten/inserted/deleted bytes, truncation, appended junk —
  mostly caught by the header/manifest/blob checksums;
* re-signed: the manifest JSON or a blob is changed *and* the checksums are recomputed,
  so the structural checks behind the checksums are exercised too (wrong types, huge or
  negative numbers, missing keys, bad blob references, corrupt zlib/page data...).

Every case must either restore or raise :class:`~pyv86.errors.StateError` with a
one-line message; anything else (another exception, a multi-line message) is a failure.
Prints progress and a summary; exits 1 on any failure.
"""
from __future__ import annotations

import argparse
import copy
import json
import random
import struct
import sys
import tempfile
import time
import traceback
import zlib
from pathlib import Path
from typing import Any, ClassVar

import attrs
import numpy as np

from pyv86.devices.base import Device
from pyv86.errors import StateError
from pyv86.machine import Machine
from pyv86.state.container import HEADER_SIZE, dumps_manifest
from pyv86.state.snapshot import restore_machine, save_machine


@attrs.define
class FuzzState:
    VERSION: ClassVar[int] = 2
    cr: int = 0x21
    flag: bool = False
    name: str = "fuzz"
    mem: bytearray = attrs.field(factory=lambda: bytearray(4096))
    regs: np.ndarray = attrs.field(factory=lambda: np.zeros(4, dtype=np.uint32))
    pair: tuple = (1, 2)
    queue: list = attrs.field(factory=list)
    imr: int = attrs.field(default=0, metadata={"since": 2})


class FuzzDevice(Device):
    kind = "fuzz-device"
    state_cls = FuzzState


def build_machine() -> Machine:
    machine = Machine(memory=1 << 20, name="fuzz")
    machine.add_device(FuzzDevice("fz0"))
    machine.realize()
    return machine


def base_image(tmp: Path) -> bytes:
    machine = build_machine()
    rng = np.random.default_rng(7)
    machine.memory.ram[0x1000:0x3000] = rng.integers(0, 256, 0x2000, dtype=np.uint8)
    machine.memory.ram[0x8000:0xA000] = np.frombuffer(b"text page " * 819 + b"xx", dtype=np.uint8)
    s = machine.devices["fz0"].state
    s.mem[:] = (b"ring" * 1024)
    s.regs[:] = [1, 2, 3, 4]
    s.queue = [b"q" * 300, 5]
    path = tmp / "base.pyv86state"
    save_machine(machine, path)
    return path.read_bytes()


def _resign(head: bytes, manifest: bytes, rest: bytes) -> bytes:
    h = bytearray(head[:HEADER_SIZE])
    h[16:24] = struct.pack("<Q", len(manifest))
    h[24:28] = struct.pack("<I", zlib.crc32(manifest))
    h[28:32] = struct.pack("<I", zlib.crc32(bytes(h[:28])))
    return bytes(h) + manifest + rest


def _split(data: bytes) -> tuple[bytes, dict[str, Any], bytes]:
    mlen = struct.unpack_from("<Q", data, 16)[0]
    manifest = json.loads(data[HEADER_SIZE : HEADER_SIZE + mlen])
    return data[:HEADER_SIZE], manifest, data[HEADER_SIZE + mlen :]


WEIRD = [0, -1, 1, 2**31, 2**64, -(2**63), 1e308, "x", "", None, True, False, [], {}, [1, 2],
         {"$blob": "nope"}, {"$hex": "zz"}, {"$ndarray": "ram", "dtype": "<u4", "shape": [3]},
         {"$ndarray": "fz0.mem", "dtype": "O", "shape": [1]}, {"$tuple": 5}, {"$dict": [[1]]},
         {"$float": "nan"}, "ram", 10**30]


def _mutate_tree(node: Any, rng: random.Random) -> Any:
    """Change one randomly chosen spot of a JSON tree."""
    if isinstance(node, dict) and node and rng.random() < 0.85:
        key = rng.choice(sorted(node))
        r = rng.random()
        if r < 0.1:
            del node[key]
        elif r < 0.15:
            node[key + "_x"] = copy.deepcopy(rng.choice(WEIRD))
        else:
            node[key] = _mutate_tree(node[key], rng)
        return node
    if isinstance(node, list) and node and rng.random() < 0.85:
        i = rng.randrange(len(node))
        r = rng.random()
        if r < 0.1:
            del node[i]
        elif r < 0.15:
            node.insert(i, copy.deepcopy(node[i]))
        else:
            node[i] = _mutate_tree(node[i], rng)
        return node
    if isinstance(node, int) and not isinstance(node, bool) and rng.random() < 0.6:
        return node + rng.choice([-1, 1, 4096, -4096, 2**20, node, -node - 1])
    return copy.deepcopy(rng.choice(WEIRD))


def mutate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    kind = rng.randrange(10)
    buf = bytearray(data)
    if kind == 0:
        for _ in range(rng.randint(1, 8)):
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
        return "bitflip", bytes(buf)
    if kind == 1:
        return "truncate", bytes(buf[: rng.randrange(len(buf))])
    if kind == 2:
        pos = rng.randrange(len(buf))
        buf[pos : pos + rng.randint(1, 16)] = bytes(rng.randrange(256) for _ in range(rng.randint(0, 16)))
        return "splice", bytes(buf)
    if kind == 3:
        return "append", bytes(buf) + bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    if kind == 4:
        pos = rng.randrange(HEADER_SIZE)
        buf[pos] = rng.randrange(256)
        return "header", bytes(buf)
    head, manifest, rest = _split(data)
    if kind in (5, 6, 7):
        for _ in range(rng.randint(1, 3)):
            _mutate_tree(manifest, rng)
        try:
            body = dumps_manifest(manifest)
        except (TypeError, ValueError):
            body = json.dumps(manifest).encode()
        return "manifest", _resign(head, body, rest)
    if kind == 8 and manifest["blobs"]:
        # corrupt a blob's content but fix its checksum, so the decoders see it
        entry = rng.choice(manifest["blobs"])
        blob = bytearray(rest[entry["offset"] : entry["offset"] + entry["length"]])
        if blob:
            for _ in range(rng.randint(1, 6)):
                blob[rng.randrange(len(blob))] = rng.randrange(256)
        if rng.random() < 0.3 and blob:
            blob = blob[: rng.randrange(len(blob))]
        delta = len(blob) - entry["length"]
        rest = rest[: entry["offset"]] + bytes(blob) + rest[entry["offset"] + entry["length"] :]
        entry["crc32"] = zlib.crc32(blob)
        entry["length"] = len(blob)
        seen = False
        for e in manifest["blobs"]:
            if seen:
                e["offset"] += delta
            seen = seen or e is entry
        return "blob", _resign(head, dumps_manifest(manifest), rest)
    # drop or duplicate a record
    records = manifest["records"]
    i = rng.randrange(len(records))
    if rng.random() < 0.5:
        del records[i]
    else:
        records.append(json.loads(json.dumps(records[i])))
    return "records", _resign(head, dumps_manifest(manifest), rest)


def run(cases: int, seed: int, progress: bool = True) -> dict[str, Any]:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        base = base_image(Path(tmp))
    target = build_machine()
    outcomes: dict[str, dict[str, int]] = {}
    failures: list[str] = []
    start = time.monotonic()
    last = start
    for n in range(cases):
        family, data = mutate(base, rng)
        stats = outcomes.setdefault(family, {"cases": 0, "rejected": 0, "restored": 0})
        stats["cases"] += 1
        try:
            restore_machine(target, f"case{n}.pyv86state", data=data, preserve_mac=True)
            stats["restored"] += 1
        except StateError as exc:
            message = str(exc)
            if "\n" in message or not message.startswith(f"case{n}.pyv86state"):
                failures.append(f"case {n} ({family}): badly formed error: {message!r}")
            stats["rejected"] += 1
        except Exception:  # noqa: BLE001 - exactly what the fuzzer looks for
            failures.append(f"case {n} ({family}): {traceback.format_exc(limit=4)}")
        now = time.monotonic()
        if progress and now - last > 5:
            last = now
            print(f"  {n + 1}/{cases} cases, {len(failures)} failures, {now - start:.0f} s", file=sys.stderr)
    return {"cases": cases, "seed": seed, "failures": failures, "by_family": outcomes,
            "seconds": round(time.monotonic() - start, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pyv86.state.fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    args = parser.parse_args(argv)
    result = run(args.cases, args.seed, progress=not args.json)
    if args.json:
        print(json.dumps({**result, "failures": result["failures"][:20], "failure_count": len(result["failures"])}))
    else:
        for family, stats in sorted(result["by_family"].items()):
            print(f"{family:9} {stats['cases']:7} cases  {stats['rejected']:7} rejected  {stats['restored']:6} restored")
        print(f"{result['cases']} cases in {result['seconds']} s, {len(result['failures'])} failures")
        for failure in result["failures"][:10]:
            print(failure)
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
