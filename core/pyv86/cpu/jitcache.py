"""The block JIT's translation cache on disk: object code of translated blocks kept between
runs, so a guest's hot code is translated once per install, not once per start.

A translation depends only on the translator and on what it was made from: the block's
guest bytes, its EIP and its code size (16/32-bit). The translator version (a hash of the
interpreter's sources, ``build.cache_key``, the translator's own sources and the code
generation level) names the directory; a block's entry is named by a hash of its EIP, code
size and first bytes (so it can be looked up before the block is decoded) and holds the
block's length and a hash of all its bytes, which must match. Nothing about the guest's physical memory is in the key: the runtime
checks the bytes in guest RAM when a block becomes hot, exactly as for a fresh
translation, and watches them afterwards.

Layout, under ``pyv86.paths.cache_dir('jit', VERSION)`` (``~/.cache/pyv86/jit/...``; honours
``PYV86_CACHE_DIR``): ``<sha of object>.o`` per compiled batch and ``<key>.e`` per block
(``object name, symbol, instruction count, length, hash of the bytes``). Files are written under a temporary name and
renamed, so several emulator processes can share the cache (each lists the entries once, when
it first looks, and sees its own later additions). Past :data:`MAX_BYTES` of
object code nothing more is stored (delete the directory to start over); the caches of all
but the three most recently written translator versions are deleted. ``PYV86_JIT_CACHE=0`` turns the cache off.

Object code from the cache is linked into this process with MCJIT like a fresh batch; a
file that cannot be read or linked is ignored (and the block is compiled again).
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from pyv86.paths import write_atomic

log = logging.getLogger(__name__)

KEY_BYTES = 16               # leading bytes of a block in its entry's name
MAX_BYTES = 256 << 20        # object code kept at most (then nothing more is stored)
KEEP_VERSIONS = 3            # translator versions whose caches are kept
TRANSLATOR_SOURCES = ("jit.py", "blockdecode.py", "jitabi.py", "jitcache.py")


def enabled_from_env() -> bool:
    return os.environ.get("PYV86_JIT_CACHE", "1").strip().lower() not in ("0", "off", "no", "false")


def translator_version() -> str:
    from . import build
    h = hashlib.sha256(build.cache_key().encode())
    here = Path(__file__).parent
    for name in TRANSLATOR_SOURCES:
        h.update(name.encode() + b"\0" + (here / name).read_bytes())
    h.update(os.environ.get("PYV86_JIT_CODEGEN_OPT", "1").encode())
    return h.hexdigest()[:24]


class TranslationCache:
    """Lookup and store of translated blocks (one per JIT runtime; loaded objects are kept
    alive here for as long as their code may run)."""

    def __init__(self, root: Path | None = None) -> None:
        if root is None:
            from pyv86.paths import cache_dir
            root = cache_dir("jit", translator_version())
        self.root = root
        self._engines: dict[str, object] = {}     # object name -> MCJIT engine (None: unusable)
        self._full = False
        self._bytes: int | None = None            # object code in the cache (summed once)
        self._entries: set[str] | None = None     # entry names on disk (listed once)
        self.stats = {"hits": 0, "misses": 0, "stored": 0, "errors": 0}

    @staticmethod
    def key(eip: int, code32: bool, code: bytes) -> str:
        """The entry name for a block at ``eip`` whose bytes start ``code``: computed before
        the block is decoded (its length is unknown), from its first bytes; the entry then
        holds the length and a hash of all the block's bytes."""
        return _digest(b"%d:%d:" % (eip, int(code32)) + code[:KEY_BYTES])

    def lookup(self, key: str, code: bytes) -> tuple[int, int, int] | None:
        """(function address, instruction count, length in bytes) of a cached translation of
        the block at the start of ``code``, else None."""
        if self._entries is None:       # listed once: a miss then costs no system call
            try:
                self._entries = {n[:-2] for n in os.listdir(self.root) if n.endswith(".e")}
            except OSError:
                self._entries = set()
        if key not in self._entries:
            self.stats["misses"] += 1
            return None
        try:
            with open(os.path.join(self.root, key + ".e")) as f:
                text = f.read()
        except OSError:
            self.stats["misses"] += 1
            return None
        addr = 0
        try:
            obj_name, symbol, ninsn, size, digest = text.split()
            if _digest(code[:int(size)]) != digest or int(size) > len(code):
                self.stats["misses"] += 1       # other bytes after the first ones
                return None
            ee = self._engine(obj_name)
            addr = ee.get_function_address(symbol) if ee is not None else 0
        except Exception as exc:  # noqa: BLE001 - a damaged entry: translate again
            log.debug("pyv86 JIT cache: entry %s unusable (%s)", key, exc)
        if not addr:
            self.stats["errors"] += 1
            return None
        self.stats["hits"] += 1
        return addr, int(ninsn), int(size)

    def unload(self) -> None:
        """Forget the linked objects (the runtime dropped every translation)."""
        self._engines.clear()

    def _engine(self, obj_name: str):
        if obj_name not in self._engines:
            from .jit import load_object
            engine = None
            try:
                obj = (self.root / obj_name).read_bytes()
                # an object is named by its own hash: a damaged file is never handed to the
                # linker (which trusts what it links and would crash on garbage)
                if _object_name(obj) == obj_name:
                    engine = load_object(obj)
                else:
                    log.warning("pyv86 JIT cache: %s is damaged (its content does not match its "
                                "name); ignored", self.root / obj_name)
            except Exception as exc:  # noqa: BLE001 - unreadable or not linkable
                log.debug("pyv86 JIT cache: object %s unusable (%s)", obj_name, exc)
            self._engines[obj_name] = engine
        return self._engines[obj_name]

    def store(self, obj: bytes, entries: list[tuple[str, str, int, bytes]], engine=None) -> None:
        """Keep a compiled batch: ``entries`` are ``(key, symbol, instruction count, the
        block's bytes)``; ``engine`` is the batch already linked in this process."""
        if self._full or not entries:
            return
        try:
            if self._bytes is None:
                self.root.mkdir(parents=True, exist_ok=True)
                _prune_other_versions(self.root)
                self._bytes = sum(p.stat().st_size for p in self.root.glob("*.o"))
            if self._bytes + len(obj) > MAX_BYTES:
                self._full = True
                log.info("pyv86 JIT cache: %s is full (%d MiB); storing no more", self.root,
                         MAX_BYTES >> 20)
                return
            obj_name = _object_name(obj)
            write_atomic(self.root / obj_name, obj)
            self._bytes += len(obj)
            if engine is not None:
                self._engines.setdefault(obj_name, engine)
            for key, symbol, ninsn, code in entries:
                line = f"{obj_name} {symbol} {ninsn} {len(code)} {_digest(code)}\n"
                write_atomic(self.root / f"{key}.e", line.encode())
                if self._entries is not None:
                    self._entries.add(key)
            self.stats["stored"] += len(entries)
        except OSError as exc:
            self._full = True
            log.warning("pyv86 JIT cache: cannot write to %s (%s); translations are not kept",
                        self.root, exc)


def _prune_other_versions(root: Path, keep: int = KEEP_VERSIONS) -> None:
    """Delete the caches of all but the ``keep`` most recently written translator versions
    (each edit of the CPU or translator sources starts a new one)."""
    import shutil
    try:
        dirs = sorted((d for d in root.parent.iterdir() if d.is_dir() and d != root),
                      key=lambda d: d.stat().st_mtime, reverse=True)
    except OSError:
        return
    for old in dirs[keep - 1:]:
        shutil.rmtree(old, ignore_errors=True)
        log.info("pyv86 JIT cache: removed %s (an older translator version)", old)


def _object_name(obj: bytes) -> str:
    return hashlib.sha256(obj).hexdigest()[:32] + ".o"


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:40]


