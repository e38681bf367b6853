"""The state-image container: header, manifest, blobs, checksums — bytes in, bytes out.

Layout of a file (all integers little-endian)::

    offset  size  what
    0       8     magic  b"\\x89pyv86S\\n"   (the high byte and the newline catch text-mode
                                            transfers, as PNG's signature does)
    8       2     format major              (another major is refused)
    10      2     format minor              (a newer minor is refused: it may add meaning)
    12      4     flags                     (no bit is defined yet; any set bit is refused)
    16      8     manifest length in bytes
    24      4     CRC-32 of the manifest
    28      4     CRC-32 of bytes 0..27
    32      ...   manifest: UTF-8 JSON (compact, sorted keys)
    ...     ...   blobs, back to back, in manifest order

The manifest is ``{"pyv86": VERSION, "records": [...], "blobs": [...]}``. Each blob entry
is ``{"name", "offset", "length", "encoding", "size", "crc32"}``: ``offset`` counts from
the first byte after the manifest, ``length`` is the stored (encoded) length, ``size`` the
decoded length, and ``crc32`` covers the stored bytes. ``encoding`` is ``raw``, ``zlib`` or
``pages`` (sparse page-compressed guest RAM, :mod:`pyv86.state.pages`).

This module knows nothing about machines or devices; :mod:`pyv86.state.snapshot` builds
the records. Every problem becomes one :class:`~pyv86.errors.StateError` line naming the
file and, where it applies, the blob.
"""
from __future__ import annotations

import json
import logging
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import attrs

from pyv86.errors import StateError

log = logging.getLogger(__name__)

MAGIC = b"\x89pyv86S\n"
FORMAT_MAJOR = 1
FORMAT_MINOR = 0
HEADER = struct.Struct("<8sHHIQII")
HEADER_SIZE = HEADER.size  # 32
MAX_MANIFEST = 64 << 20
MAX_BLOB_SIZE = 4 << 30  # decoded; guest RAM is at most 3 GiB
ENCODINGS = ("raw", "zlib", "pages")
SUFFIX = ".pyv86state"


@attrs.define
class Blob:
    """One stored blob: its manifest entry and (once read) its stored bytes."""

    name: str
    encoding: str
    size: int
    data: bytes | memoryview
    crc32: int = 0


@attrs.define
class Image:
    """A parsed image: its manifest (records) and its blobs by name."""

    path: str
    major: int
    minor: int
    manifest: dict[str, Any]
    manifest_bytes: bytes
    blobs: dict[str, Blob]

    @property
    def records(self) -> list[dict[str, Any]]:
        return self.manifest["records"]


def encode_blob(name: str, data: bytes | bytearray | memoryview, *, level: int = 1) -> Blob:
    """Store small or incompressible data raw, everything else as one zlib stream."""
    raw = bytes(data)
    if len(raw) >= 64:
        packed = zlib.compress(raw, level)
        if len(packed) < len(raw) - len(raw) // 16:
            return Blob(name, "zlib", len(raw), packed)
    return Blob(name, "raw", len(raw), raw)


def dumps_manifest(manifest: dict[str, Any]) -> bytes:
    return json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def write_image(path: str | Path, records: list[dict[str, Any]], blobs: list[Blob],
                *, extra_manifest: dict[str, Any] | None = None) -> int:
    """Write an image atomically (temp file, fsync, rename); returns its size in bytes."""
    from pyv86 import __version__

    path = Path(path)
    entries = []
    offset = 0
    names: set[str] = set()
    for blob in blobs:
        if blob.name in names:
            raise ValueError(f"state image: blob name {blob.name!r} used twice")
        names.add(blob.name)
        blob.crc32 = zlib.crc32(blob.data)
        entries.append({"name": blob.name, "offset": offset, "length": len(blob.data),
                        "encoding": blob.encoding, "size": blob.size, "crc32": blob.crc32})
        offset += len(blob.data)
    manifest = {"pyv86": __version__, "records": records, "blobs": entries}
    if extra_manifest:
        manifest.update(extra_manifest)
    body = dumps_manifest(manifest)
    head = HEADER.pack(MAGIC, FORMAT_MAJOR, FORMAT_MINOR, 0, len(body), zlib.crc32(body), 0)
    head = head[:28] + struct.pack("<I", zlib.crc32(head[:28]))
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(head)
            fh.write(body)
            for blob in blobs:
                fh.write(blob.data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise StateError(f"{path}: cannot write state image: {exc.strerror or exc}") from None
    return HEADER_SIZE + len(body) + offset


def read_image(path: str | Path, data: bytes | None = None) -> Image:
    """Read and check an image: header, manifest checksum and shape, every blob's bounds and CRC.

    Decoding blob contents happens later (:func:`decode_blob`), but nothing here trusts
    a length or offset it has not checked against the file.
    """
    shown = str(path)
    if data is None:
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            raise StateError(f"{shown}: no such state image") from None
        except OSError as exc:
            raise StateError(f"{shown}: cannot read state image: {exc.strerror or exc}") from None
    return parse_image(shown, data)


def parse_image(shown: str, data: bytes) -> Image:
    if len(data) < HEADER_SIZE:
        if data[: len(MAGIC)] != MAGIC[: len(data)] or not data:
            raise StateError(f"{shown}: not a pyv86 state image (no pyv86 magic)")
        raise StateError(f"{shown}: truncated: {len(data)} bytes, shorter than the {HEADER_SIZE}-byte header")
    magic, major, minor, flags, mlen, mcrc, hcrc = HEADER.unpack_from(data)
    if magic != MAGIC:
        hint = ""
        if data[:4] == struct.pack("<I", 0x86768676):
            hint = "; this looks like a v86 state file, which pyv86 does not read"
        elif data[:4] == b"\x28\xb5\x2f\xfd":
            hint = "; this is a zstd-compressed file (v86 states are shipped that way)"
        raise StateError(f"{shown}: not a pyv86 state image (bad magic){hint}")
    if zlib.crc32(data[:28]) != hcrc:
        raise StateError(f"{shown}: header: checksum mismatch (file corrupted)")
    if major != FORMAT_MAJOR:
        side = "pyv86" if major > FORMAT_MAJOR else "the image (save it again with an older pyv86 that reads it)"
        raise StateError(f"{shown}: header: format {major}.{minor} is not readable by this pyv86 "
                         f"(reads {FORMAT_MAJOR}.x); upgrade {side}")
    if minor > FORMAT_MINOR:
        raise StateError(f"{shown}: header: format {major}.{minor} is newer than this pyv86 reads "
                         f"({FORMAT_MAJOR}.{FORMAT_MINOR}); upgrade pyv86")
    if flags:
        raise StateError(f"{shown}: header: unknown flags {flags:#x}; upgrade pyv86")
    if mlen > MAX_MANIFEST:
        raise StateError(f"{shown}: header: manifest length {mlen} is implausible (file corrupted)")
    end = HEADER_SIZE + mlen
    if end > len(data):
        raise StateError(f"{shown}: truncated: manifest needs {end} bytes, file has {len(data)}")
    body = bytes(data[HEADER_SIZE:end])
    if zlib.crc32(body) != mcrc:
        raise StateError(f"{shown}: manifest: checksum mismatch (file corrupted)")
    try:
        manifest = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise StateError(f"{shown}: manifest: not valid JSON ({_short(exc)})") from None
    _check_manifest_shape(shown, manifest)
    blobs: dict[str, Blob] = {}
    view = memoryview(data)
    for entry in manifest["blobs"]:
        name = entry["name"]
        start = end + entry["offset"]
        stop = start + entry["length"]
        if stop > len(data):
            raise StateError(f"{shown}: blob {name}: truncated: needs bytes {start}..{stop}, "
                             f"file has {len(data)}")
        chunk = view[start:stop]
        if zlib.crc32(chunk) != entry["crc32"]:
            raise StateError(f"{shown}: blob {name}: checksum mismatch (file corrupted)")
        if name in blobs:
            raise StateError(f"{shown}: manifest: blob {name!r} is listed twice")
        blobs[name] = Blob(name, entry["encoding"], entry["size"], chunk, entry["crc32"])
    stored = end + sum(e["length"] for e in manifest["blobs"])
    if stored != len(data):
        raise StateError(f"{shown}: {len(data) - stored} bytes after the last blob (file damaged "
                         f"or two files joined)")
    return Image(shown, major, minor, manifest, body, blobs)


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:120]


def _is_uint(value: Any, limit: int = 1 << 63) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < limit


def _check_manifest_shape(shown: str, manifest: Any) -> None:
    def bad(where: str, what: str) -> StateError:
        return StateError(f"{shown}: manifest: {where}: {what} (file corrupted or not from pyv86)")

    if not isinstance(manifest, dict):
        raise bad("top level", "not an object")
    for key, typ in (("records", list), ("blobs", list)):
        if not isinstance(manifest.get(key), typ):
            raise bad(key, f"missing or not a {typ.__name__}")
    offset = 0
    for i, entry in enumerate(manifest["blobs"]):
        if not isinstance(entry, dict):
            raise bad(f"blobs[{i}]", "not an object")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise bad(f"blobs[{i}].name", "missing or not a string")
        for key, limit in (("offset", 1 << 48), ("length", 1 << 48), ("size", MAX_BLOB_SIZE + 1),
                           ("crc32", 1 << 32)):
            if not _is_uint(entry.get(key), limit):
                raise bad(f"blob {name}.{key}", "missing or out of range")
        if not isinstance(entry.get("encoding"), str) or entry["encoding"] not in ENCODINGS:
            raise bad(f"blob {name}.encoding", f"{entry.get('encoding')!r} is not one of {', '.join(ENCODINGS)}")
        if entry["offset"] != offset:
            raise bad(f"blob {name}.offset", f"{entry['offset']} does not follow the previous blob ({offset})")
        if entry["encoding"] == "raw" and entry["length"] != entry["size"]:
            raise bad(f"blob {name}", "raw blob whose stored length differs from its size")
        offset += entry["length"]
    for i, record in enumerate(manifest["records"]):
        if not isinstance(record, dict):
            raise bad(f"records[{i}]", "not an object")
        kind, rid = record.get("kind"), record.get("id")
        if not isinstance(kind, str) or not isinstance(rid, str) or not kind or not rid:
            raise bad(f"records[{i}]", "kind and id must be non-empty strings")
        if not _is_uint(record.get("version"), 1 << 31) or record["version"] < 1:
            raise bad(f"record {kind}/{rid}.version", "missing or not a positive integer")
        if not isinstance(record.get("fields"), dict):
            raise bad(f"record {kind}/{rid}.fields", "missing or not an object")


def decode_blob(image_path: str, blob: Blob, *, expect_size: int | None = None) -> bytes:
    """The decoded bytes of a ``raw`` or ``zlib`` blob (``pages`` blobs go to :mod:`.pages`)."""
    where = f"{image_path}: blob {blob.name}"
    if expect_size is not None and blob.size != expect_size:
        raise StateError(f"{where}: holds {blob.size} bytes, expected {expect_size}")
    if blob.encoding == "raw":
        return bytes(blob.data)
    if blob.encoding == "zlib":
        d = zlib.decompressobj()
        try:
            out = d.decompress(blob.data, blob.size + 1)
        except zlib.error as exc:
            raise StateError(f"{where}: corrupt zlib data ({exc})") from None
        if len(out) != blob.size or not d.eof:
            raise StateError(f"{where}: decodes to {len(out)}{'+' if not d.eof else ''} bytes, "
                             f"manifest says {blob.size}")
        return out
    raise StateError(f"{where}: encoding {blob.encoding!r} cannot be decoded as plain bytes")
