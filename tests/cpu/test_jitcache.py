"""The JIT's disk cache on its own: entries verified against the block's bytes, old translator
versions pruned, nothing stored past the size bound."""
from __future__ import annotations

import os

from pyv86.cpu import jitcache
from pyv86.cpu.jitcache import TranslationCache


def test_an_entry_is_found_only_for_the_same_block_bytes_and_an_intact_object(tmp_path):
    cache = TranslationCache(tmp_path / "v1")
    code = bytes(range(40))
    key = cache.key(0x1000, True, code)
    cache.store(b"object code", [(key, "blk0_00001000", 3, code[:20])])
    entry = (tmp_path / "v1" / f"{key}.e").read_text().split()
    assert entry[1:4] == ["blk0_00001000", "3", "20"]
    other = code[:10] + b"\xff" + code[11:]        # differs in the first 16 bytes
    assert cache.key(0x1000, True, other) != key
    assert cache.key(0x2000, True, code) != key and cache.key(0x1000, False, code) != key
    later = code[:18] + b"\xff" + code[19:]        # differs after the first 16 bytes
    assert cache.key(0x1000, True, later) == key
    assert cache.lookup(key, later) is None         # the hash of the 20 bytes does not match
    assert cache.stats["errors"] == 0
    # the object file damaged on disk: refused before it reaches the linker (no crash)
    (tmp_path / "v1" / entry[0]).write_bytes(b"\x7fELF garbage")
    assert TranslationCache(tmp_path / "v1").lookup(key, code) is None


def test_only_the_newest_translator_versions_are_kept(tmp_path):
    for i, name in enumerate(("a", "b", "c", "d")):
        d = tmp_path / name
        d.mkdir()
        os.utime(d, (1000 + i, 1000 + i))
    TranslationCache(tmp_path / "new").store(b"x", [("k", "s", 1, b"\x90")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "d", "new"]


def test_nothing_is_stored_past_the_size_bound(tmp_path, monkeypatch):
    monkeypatch.setattr(jitcache, "MAX_BYTES", 100)
    cache = TranslationCache(tmp_path / "v")
    cache.store(b"a" * 60, [("k1", "s", 1, b"\x90")])
    cache.store(b"b" * 60, [("k2", "s", 1, b"\x90")])
    assert (tmp_path / "v" / "k1.e").exists() and not (tmp_path / "v" / "k2.e").exists()
    assert cache.stats["stored"] == 1
