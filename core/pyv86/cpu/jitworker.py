"""The JIT's compile process: ``python -m pyv86.cpu.jitworker``.

It reads batches from stdin and writes object code to stdout, one pickled message each, framed
by a 4-byte little-endian length: request ``(batch_id, [(eip, code32, code), ...])``, reply
``(batch_id, object bytes or None, [(symbol, instructions) or None, ...], error or None)``.
A separate process (not a thread) because translating is Python work that would otherwise
take the GIL from the machine thread.
"""
from __future__ import annotations

import pickle
import struct
import sys


def read_message(stream):
    head = stream.read(4)
    if len(head) < 4:
        return None
    (size,) = struct.unpack("<I", head)
    data = stream.read(size)
    if len(data) < size:
        return None
    return pickle.loads(data)


def write_message(stream, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack("<I", len(data)) + data)
    stream.flush()


def main() -> int:
    import os
    try:
        os.nice(10)    # compile on spare CPU only: never slow down the machine thread
    except OSError:
        pass
    from .jit import translate_batch
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    while True:
        msg = read_message(inp)
        if msg is None:
            return 0
        batch_id, jobs = msg
        try:
            obj, res = translate_batch(jobs)
            reply = (batch_id, obj, res, None)
        except Exception as exc:   # report it and keep serving
            reply = (batch_id, None, [None] * len(jobs), f"{type(exc).__name__}: {exc}")
        try:
            write_message(out, reply)
        except (BrokenPipeError, OSError):
            return 0


if __name__ == "__main__":
    sys.exit(main())
