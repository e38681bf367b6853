"""The ``pages`` blob encoding: guest RAM stored sparse and compressed, in parallel.

RAM is cut into 4 KiB pages. A bitmap marks the pages that hold any non-zero byte; zero
pages cost one bit. The non-zero pages, in address order, are grouped into chunks of up
to :data:`CHUNK_PAGES` pages and each chunk is stored either as one zlib stream or raw:
two sample pages are compressed first, and a chunk whose samples do not shrink (already
compressed or random data) is stored raw without paying for compressing it. Chunks are
compressed and decompressed on a thread pool (zlib releases the GIL).

Layout (little-endian)::

    b"PAGE"  u32 page_size  u64 ram_size  u32 chunk_count
    bitmap   ceil(pages / 8) bytes, bit i (LSB first) = page i is stored
    table    chunk_count x (u32 pages, u32 stored_length, u8 method 0=raw 1=zlib)
    data     the chunks back to back

Decoding checks every count and length against the declared sizes before trusting it.
"""
from __future__ import annotations

import os
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from pyv86.errors import StateError

PAGE = 4096
CHUNK_PAGES = 64
HEAD = struct.Struct("<4sIQI")
TABLE = np.dtype([("pages", "<u4"), ("length", "<u4"), ("method", "u1")])
RAW, ZLIB = 0, 1


def _workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _compress_chunk(chunk: np.ndarray, level: int) -> tuple[int, bytes | memoryview]:
    view = memoryview(chunk).cast("B")
    n = len(view)
    samples = (view[:PAGE], view[(n // PAGE // 2) * PAGE:][:PAGE])
    if all(len(zlib.compress(s, 1)) > PAGE - PAGE // 32 for s in samples):
        return RAW, view
    packed = zlib.compress(view, level)
    if len(packed) >= n - n // 32:
        return RAW, view
    return ZLIB, packed


def encode_pages(ram: np.ndarray, *, level: int = 1) -> bytes:
    """Encode a RAM array (uint8, a multiple of 4 KiB long) as a ``pages`` blob."""
    if ram.dtype != np.uint8 or ram.ndim != 1 or len(ram) % PAGE:
        raise ValueError("encode_pages: RAM must be a 1-D uint8 array of whole 4 KiB pages")
    npages = len(ram) // PAGE
    pages = ram.reshape(npages, PAGE)
    nonzero = ram.view(np.uint64).reshape(npages, PAGE // 8).any(axis=1)
    index = np.flatnonzero(nonzero)
    groups = [index[i : i + CHUNK_PAGES] for i in range(0, len(index), CHUNK_PAGES)]

    def work(group: np.ndarray) -> tuple[int, int, bytes | memoryview]:
        first, last = int(group[0]), int(group[-1])
        if last - first + 1 == len(group):
            chunk = pages[first : last + 1]   # contiguous run: no copy
        else:
            chunk = pages[group]
        method, data = _compress_chunk(np.ascontiguousarray(chunk), level)
        return len(group), method, data

    if len(groups) > 4:
        with ThreadPoolExecutor(_workers()) as pool:
            results = list(pool.map(work, groups))
    else:
        results = [work(g) for g in groups]
    table = np.zeros(len(results), dtype=TABLE)
    for i, (count, method, data) in enumerate(results):
        table[i] = (count, len(data), method)
    parts = [HEAD.pack(b"PAGE", PAGE, len(ram), len(results)),
             np.packbits(nonzero, bitorder="little").tobytes(), table.tobytes()]
    parts.extend(data for _c, _m, data in results)
    return b"".join(parts)


def decode_pages(where: str, blob: bytes | memoryview, ram_size: int) -> np.ndarray:
    """Decode a ``pages`` blob into a new uint8 array of ``ram_size`` bytes (or raise StateError)."""
    view = memoryview(blob)
    if len(view) < HEAD.size:
        raise StateError(f"{where}: page data truncated ({len(view)} bytes)")
    magic, page, size, nchunks = HEAD.unpack_from(view)
    if magic != b"PAGE" or page != PAGE:
        raise StateError(f"{where}: not page-encoded RAM (bad page header)")
    if size != ram_size:
        raise StateError(f"{where}: holds {size} bytes of RAM, the machine has {ram_size}")
    npages = size // PAGE
    if size % PAGE:
        raise StateError(f"{where}: RAM size {size} is not a multiple of {PAGE}")
    pos = HEAD.size
    nbitmap = (npages + 7) // 8
    table_end = pos + nbitmap + nchunks * TABLE.itemsize
    if nchunks > npages or table_end > len(view):
        raise StateError(f"{where}: page table truncated or implausible ({nchunks} chunks)")
    bits = np.frombuffer(view, dtype=np.uint8, count=nbitmap, offset=pos)
    stored = np.unpackbits(bits, count=npages, bitorder="little").astype(bool)
    if np.unpackbits(bits, bitorder="little")[npages:].any():
        raise StateError(f"{where}: page bitmap marks pages beyond the end of RAM")
    pos += nbitmap
    table = np.frombuffer(view, dtype=TABLE, count=nchunks, offset=pos)
    pos += nchunks * TABLE.itemsize
    index = np.flatnonzero(stored)
    counts = table["pages"].astype(np.int64)
    lengths = table["length"].astype(np.int64)
    if counts.sum() != len(index) or (counts == 0).any() or (counts > CHUNK_PAGES * 16).any():
        raise StateError(f"{where}: chunk page counts do not match the page bitmap")
    if pos + int(lengths.sum()) != len(view):
        raise StateError(f"{where}: chunk lengths add up to {int(lengths.sum())} bytes, "
                         f"{len(view) - pos} are stored")
    if ((table["method"] != RAW) & (table["method"] != ZLIB)).any():
        raise StateError(f"{where}: unknown chunk compression method")
    ram = np.zeros(size, dtype=np.uint8)
    pages = ram.reshape(npages, PAGE)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1])) if nchunks else np.zeros(0, np.int64)
    offsets = pos + np.concatenate(([0], np.cumsum(lengths)[:-1])) if nchunks else np.zeros(0, np.int64)

    def work(i: int) -> str | None:
        count, length, method = int(counts[i]), int(lengths[i]), int(table["method"][i])
        data = view[int(offsets[i]) : int(offsets[i]) + length]
        want = count * PAGE
        if method == RAW:
            if length != want:
                return f"chunk {i}: raw chunk of {length} bytes for {count} pages"
            raw = data
        else:
            d = zlib.decompressobj()
            try:
                raw = d.decompress(data, want + 1)
            except zlib.error as exc:
                return f"chunk {i}: corrupt zlib data ({exc})"
            if len(raw) != want or not d.eof or d.unused_data:
                return f"chunk {i}: decodes to the wrong length"
        group = index[int(starts[i]) : int(starts[i]) + count]
        chunk = np.frombuffer(raw, dtype=np.uint8).reshape(count, PAGE)
        first = int(group[0])
        if int(group[-1]) - first + 1 == count:
            pages[first : first + count] = chunk
        else:
            pages[group] = chunk
        return None

    if nchunks > 4:
        with ThreadPoolExecutor(_workers()) as pool:
            problems = [p for p in pool.map(work, range(nchunks)) if p]
    else:
        problems = [p for p in map(work, range(nchunks)) if p]
    if problems:
        raise StateError(f"{where}: {problems[0]}")
    return ram
