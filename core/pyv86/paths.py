"""Where pyv86 keeps things on the host: the user cache directory and ``guest:`` paths.

``$PYV86_CACHE_DIR`` wins, then ``$XDG_CACHE_HOME/pyv86``, then ``~/.cache/pyv86``.
Machine files may name files of the built guest image as ``guest:NAME`` (for example
``kernel = "guest:vmlinuz"``), resolved to ``<cache>/guest/NAME``.
"""
from __future__ import annotations

import os
from pathlib import Path

GUEST_PREFIX = "guest:"


def cache_dir(*parts: str) -> Path:
    base = os.environ.get("PYV86_CACHE_DIR")
    if base:
        root = Path(base)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = (Path(xdg) if xdg else Path.home() / ".cache") / "pyv86"
    return root.joinpath(*parts)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` under a temporary name, then rename it: a reader (another
    pyv86 process sharing the cache) sees the old file or the whole new one, never a part."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def guest_dir() -> Path:
    return cache_dir("guest")


def resolve_file(value: str, base_dir: Path) -> Path:
    """A machine-file path: ``guest:NAME`` or relative to the machine file's folder."""
    if value.startswith(GUEST_PREFIX):
        return guest_dir() / value[len(GUEST_PREFIX):]
    return base_dir / Path(value).expanduser()
