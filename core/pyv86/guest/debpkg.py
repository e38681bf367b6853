"""Reading Debian binary packages (``.deb``) in Python: the ``ar`` container and its data tarball.

Only what the image builder needs: the control fields, and selected members of
``data.tar.{xz,gz,zst,}`` streamed out without unpacking the whole package (a kernel
package holds thousands of modules). Symlinks inside the package are returned as such.
"""
from __future__ import annotations

import io
import lzma
import tarfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import attrs

AR_MAGIC = b"!<arch>\n"


class DebError(ValueError):
    """The file is not a Debian package or a member is missing/unsupported."""


@attrs.frozen
class DebMember:
    """A file taken from a package's data tarball."""

    path: str          # without the leading "./"
    data: bytes
    mode: int
    symlink: str | None = None


def _ar_members(f: BinaryIO, where: str) -> Iterator[tuple[str, int, int]]:
    """Yield (name, offset, size) for each ar member."""
    if f.read(8) != AR_MAGIC:
        raise DebError(f"{where}: not an ar archive; is this a .deb file?")
    pos = 8
    while True:
        f.seek(pos)
        header = f.read(60)
        if not header:
            return
        if len(header) < 60 or header[58:60] != b"`\n":
            raise DebError(f"{where}: corrupt ar header at offset {pos}")
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        try:
            size = int(header[48:58].decode("ascii").strip())
        except ValueError:
            raise DebError(f"{where}: bad ar member size at offset {pos}") from None
        yield name, pos + 60, size
        pos += 60 + size + (size & 1)


class _Window(io.RawIOBase):
    """A read-only view of ``size`` bytes of ``f`` from ``offset``."""

    def __init__(self, f: BinaryIO, offset: int, size: int) -> None:
        self._f, self._offset, self._size, self._pos = f, offset, size, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
        n = min(len(b), self._size - self._pos)
        if n <= 0:
            return 0
        self._f.seek(self._offset + self._pos)
        chunk = self._f.read(n)
        b[:len(chunk)] = chunk
        self._pos += len(chunk)
        return len(chunk)


def _decompressor(name: str, raw: BinaryIO, where: str) -> BinaryIO:
    if name.endswith(".xz"):
        return lzma.LZMAFile(raw)  # type: ignore[return-value]
    if name.endswith(".gz"):
        import gzip
        return gzip.GzipFile(fileobj=raw)  # type: ignore[return-value]
    if name.endswith(".zst"):
        raise DebError(f"{where}: {name} is zstd-compressed; Python cannot read it, use dpkg-deb")
    if name.endswith(".bz2"):
        import bz2
        return bz2.BZ2File(raw)  # type: ignore[return-value]
    return raw


def control_fields(deb: Path) -> dict[str, str]:
    """The ``control`` file of a package as a dict (continuation lines joined)."""
    where = str(deb)
    with open(deb, "rb") as f:
        for name, offset, size in _ar_members(f, where):
            if name.startswith("control.tar"):
                stream = _decompressor(name, io.BufferedReader(_Window(f, offset, size)), where)
                with tarfile.open(fileobj=stream, mode="r|") as tar:
                    for info in tar:
                        if info.name.lstrip("./") == "control" and info.isfile():
                            extracted = tar.extractfile(info)
                            assert extracted is not None
                            return _parse_control(extracted.read().decode("utf-8", "replace"))
                raise DebError(f"{where}: control.tar has no control file")
    raise DebError(f"{where}: no control.tar member; not a Debian binary package")


def _parse_control(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        if line[:1] in (" ", "\t") and key:
            fields[key] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    return fields


def extract(deb: Path, want: Callable[[str], bool],
            progress: Callable[[int, int], None] | None = None) -> dict[str, DebMember]:
    """Members of the data tarball whose path (no leading ``./``) satisfies ``want``.

    ``progress(done, total)`` is called with compressed bytes consumed so far.
    """
    where = str(deb)
    out: dict[str, DebMember] = {}
    with open(deb, "rb") as f:
        for name, offset, size in _ar_members(f, where):
            if not name.startswith("data.tar"):
                continue
            window = _Window(f, offset, size)
            counting = _Counting(window, size, progress)
            try:
                stream = _decompressor(name, io.BufferedReader(counting, 1 << 20), where)
                with tarfile.open(fileobj=stream, mode="r|") as tar:
                    for info in tar:
                        path = info.name[2:] if info.name.startswith("./") else info.name.lstrip("/")
                        if not path or not want(path):
                            continue
                        if info.issym():
                            out[path] = DebMember(path, b"", info.mode, symlink=info.linkname)
                        elif info.isfile():
                            extracted = tar.extractfile(info)
                            assert extracted is not None
                            out[path] = DebMember(path, extracted.read(), info.mode)
            except (tarfile.TarError, lzma.LZMAError, EOFError, OSError, zlib.error) as exc:
                raise DebError(f"{where}: {name} is corrupt ({exc}); delete it and download again") from None
            return out
    raise DebError(f"{where}: no data.tar member; not a Debian binary package")


class _Counting(io.RawIOBase):
    def __init__(self, inner: io.RawIOBase, total: int,
                 progress: Callable[[int, int], None] | None) -> None:
        self._inner, self._total, self._progress, self._done = inner, total, progress, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
        n = self._inner.readinto(b)
        self._done += n or 0
        if self._progress is not None:
            self._progress(self._done, self._total)
        return n or 0
