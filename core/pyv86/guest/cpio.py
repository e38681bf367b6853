"""The cpio "newc" (SVR4, magic ``070701``) archive format: a writer and a small reader.

Linux unpacks an initramfs in this format. The writer is deterministic: inode numbers are
given in order of addition starting at 0, device numbers are 0, and a directory's link count
is 2 plus its subdirectories — byte for byte what ``cpio -o -H newc --reproducible`` writes
for the same tree (the tests check that). The reader parses what the writer (or the kernel's
own tools) produce, for tests and for ``pyv86 guest`` introspection.
"""
from __future__ import annotations

import stat
from collections.abc import Iterator
from typing import BinaryIO

import attrs

MAGIC = b"070701"
HEADER_SIZE = 110
TRAILER_NAME = "TRAILER!!!"
_FIELDS = ("ino", "mode", "uid", "gid", "nlink", "mtime", "filesize",
           "devmajor", "devminor", "rdevmajor", "rdevminor", "namesize", "check")


class CpioError(ValueError):
    """A malformed archive or an entry that cannot be written."""


@attrs.define
class CpioEntry:
    """One archive member. ``mode`` holds both the file type and permission bits."""

    name: str
    mode: int
    data: bytes = b""
    uid: int = 0
    gid: int = 0
    mtime: int = 0
    nlink: int = 1
    rdevmajor: int = 0
    rdevminor: int = 0
    ino: int = 0

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.mode)

    @property
    def is_file(self) -> bool:
        return stat.S_ISREG(self.mode)


def _pad4(length: int) -> bytes:
    return b"\0" * (-length % 4)


def _check_name(name: str) -> str:
    if not name or name.startswith("/") or "\0" in name:
        raise CpioError(f"cpio: member name {name!r} must be relative, non-empty and without NUL")
    parts = name.split("/")
    if any(p in ("", "..") for p in parts) or (len(parts) > 1 and "." in parts):
        raise CpioError(f"cpio: member name {name!r} has an empty, '.' or '..' component")
    return name


class CpioWriter:
    """Collects members, then writes them as one newc archive.

    Members are written in the order they were added. Parent directories are not created
    implicitly: add them first (``add_dir``), as the kernel needs them before their contents.
    """

    def __init__(self, mtime: int = 0) -> None:
        self.mtime = mtime
        self._entries: list[CpioEntry] = []
        self._names: set[str] = set()

    def __contains__(self, name: str) -> bool:
        return name in self._names

    @property
    def names(self) -> list[str]:
        return [e.name for e in self._entries]

    def _add(self, entry: CpioEntry) -> CpioEntry:
        _check_name(entry.name)
        if entry.name in self._names:
            raise CpioError(f"cpio: {entry.name!r} added twice")
        self._names.add(entry.name)
        self._entries.append(entry)
        return entry

    def add_dir(self, name: str, perm: int = 0o755, mtime: int | None = None) -> CpioEntry:
        return self._add(CpioEntry(name, stat.S_IFDIR | (perm & 0o7777), nlink=2,
                                   mtime=self.mtime if mtime is None else mtime))

    def add_file(self, name: str, data: bytes, perm: int = 0o644, mtime: int | None = None) -> CpioEntry:
        return self._add(CpioEntry(name, stat.S_IFREG | (perm & 0o7777), bytes(data),
                                   mtime=self.mtime if mtime is None else mtime))

    def add_symlink(self, name: str, target: str, mtime: int | None = None) -> CpioEntry:
        if not target:
            raise CpioError(f"cpio: symlink {name!r} has an empty target")
        return self._add(CpioEntry(name, stat.S_IFLNK | 0o777, target.encode(),
                                   mtime=self.mtime if mtime is None else mtime))

    def add_device(self, name: str, kind: str, major: int, minor: int, perm: int = 0o600,
                   mtime: int | None = None) -> CpioEntry:
        fmt = {"c": stat.S_IFCHR, "b": stat.S_IFBLK}.get(kind)
        if fmt is None:
            raise CpioError(f"cpio: device {name!r} kind {kind!r} must be 'c' or 'b'")
        return self._add(CpioEntry(name, fmt | (perm & 0o7777), rdevmajor=major, rdevminor=minor,
                                   mtime=self.mtime if mtime is None else mtime))

    def _finalise(self) -> list[CpioEntry]:
        subdirs: dict[str, int] = {}
        for e in self._entries:
            if e.is_dir and e.name != ".":
                parent = e.name.rpartition("/")[0] if "/" in e.name else "."
                subdirs[parent] = subdirs.get(parent, 0) + 1
        out = []
        for ino, e in enumerate(self._entries):
            nlink = 2 + subdirs.get(e.name, 0) if e.is_dir else e.nlink
            out.append(attrs.evolve(e, ino=ino, nlink=nlink))
        return out

    def to_bytes(self, block_size: int = 512) -> bytes:
        """The archive, trailer included, padded with NULs to a multiple of ``block_size``."""
        chunks: list[bytes] = []
        for e in self._finalise():
            chunks.append(encode_entry(e))
        trailer = CpioEntry(TRAILER_NAME, 0, nlink=1)
        chunks.append(encode_entry(trailer))
        blob = b"".join(chunks)
        if block_size > 1:
            blob += b"\0" * (-len(blob) % block_size)
        return blob

    def write(self, fileobj: BinaryIO, block_size: int = 512) -> int:
        blob = self.to_bytes(block_size)
        fileobj.write(blob)
        return len(blob)


def encode_entry(e: CpioEntry) -> bytes:
    name = e.name.encode() + b"\0"
    values = (e.ino, e.mode, e.uid, e.gid, e.nlink, e.mtime, len(e.data), 0, 0,
              e.rdevmajor, e.rdevminor, len(name), 0)
    for field, value in zip(_FIELDS, values):
        if not 0 <= value <= 0xFFFFFFFF:
            raise CpioError(f"cpio: {e.name!r}: {field}={value} does not fit in 32 bits")
    header = MAGIC + b"".join(b"%08X" % v for v in values)
    head = header + name
    return head + _pad4(len(head)) + e.data + _pad4(len(e.data))


def iter_entries(blob: bytes) -> Iterator[CpioEntry]:
    """Parse a newc archive (uncompressed); stops at the trailer. Raises CpioError."""
    pos = 0
    while True:
        if pos + HEADER_SIZE > len(blob):
            raise CpioError(f"cpio: truncated header at offset {pos}; archive has no trailer")
        header = blob[pos:pos + HEADER_SIZE]
        if header[:6] != MAGIC:
            raise CpioError(f"cpio: bad magic {header[:6]!r} at offset {pos}; not a newc archive")
        try:
            values = dict(zip(_FIELDS, (int(header[6 + 8 * i:14 + 8 * i], 16) for i in range(13))))
        except ValueError:
            raise CpioError(f"cpio: non-hex header field at offset {pos}") from None
        name_start = pos + HEADER_SIZE
        name_end = name_start + values["namesize"]
        if values["namesize"] < 1 or name_end > len(blob) or blob[name_end - 1] != 0:
            raise CpioError(f"cpio: bad name size {values['namesize']} at offset {pos}")
        name = blob[name_start:name_end - 1].decode("utf-8", "surrogateescape")
        data_start = name_end + (-(name_end - pos) % 4)
        data_end = data_start + values["filesize"]
        if data_end > len(blob):
            raise CpioError(f"cpio: {name!r} data runs past the end of the archive")
        pos = data_end + (-data_end % 4)
        if name == TRAILER_NAME:
            return
        yield CpioEntry(name=name, mode=values["mode"], data=blob[data_start:data_end],
                        uid=values["uid"], gid=values["gid"], mtime=values["mtime"],
                        nlink=values["nlink"], rdevmajor=values["rdevmajor"],
                        rdevminor=values["rdevminor"], ino=values["ino"])


def read_archive(blob: bytes) -> dict[str, CpioEntry]:
    """All members by name (gzip/xz-compressed input is decompressed first)."""
    return {e.name: e for e in iter_entries(decompress(blob))}


def decompress(blob: bytes) -> bytes:
    if blob[:2] == b"\x1f\x8b":
        import gzip
        return gzip.decompress(blob)
    if blob[:6] == b"\xfd7zXZ\x00":
        import lzma
        return lzma.decompress(blob)
    return blob
