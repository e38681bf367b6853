"""The cpio newc writer against GNU cpio (byte for byte) and the reader against both."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from pyv86.guest.cpio import CpioError, CpioWriter, iter_entries, read_archive


def need_cpio() -> str:
    path = shutil.which("cpio")
    if path is None:
        pytest.fail("GNU cpio is not installed (apt-get install cpio; .ci/run installs it)")
    return path


def gnu_cpio_of(tree: Path, names: list[str]) -> bytes:
    proc = subprocess.run([need_cpio(), "-o", "-H", "newc", "--reproducible", "--quiet"],
                          input="".join(n + "\n" for n in names).encode(), cwd=tree,
                          capture_output=True, check=True)
    return proc.stdout


def make_tree(root: Path) -> tuple[list[str], CpioWriter]:
    """Create the same tree on disk and in a writer; returns (names in order, writer)."""
    w = CpioWriter()
    names: list[str] = []

    def d(name: str, perm: int) -> None:
        (root / name).mkdir() if name != "." else None
        os.chmod(root / name, perm)
        w.add_dir(name, perm, mtime=1_000 + len(names))
        names.append(name)

    def f(name: str, data: bytes, perm: int) -> None:
        (root / name).write_bytes(data)
        os.chmod(root / name, perm)
        w.add_file(name, data, perm, mtime=1_000 + len(names))
        names.append(name)

    def link(name: str, target: str) -> None:
        os.symlink(target, root / name)
        w.add_symlink(name, target, mtime=1_000 + len(names))
        names.append(name)

    d(".", 0o755)
    d("bin", 0o755)
    f("bin/busybox", bytes(range(256)) * 9 + b"x", 0o755)   # 2305 bytes: odd length, needs padding
    link("bin/sh", "busybox")
    d("etc", 0o755)
    d("etc/a", 0o700)
    d("etc/a/b", 0o750)
    f("etc/empty", b"", 0o644)
    f("etc/abc", b"abc", 0o600)
    f("init", b"#!/bin/sh\necho hi\n", 0o755)
    link("lnk-with-longer-name", "etc/a/b")
    d("tmp", 0o1777)
    for i, name in enumerate(names):
        os.utime(root / name, (1_000 + i, 1_000 + i), follow_symlinks=False)
    return names, w


def test_writer_is_byte_identical_to_gnu_cpio_reproducible(tmp_path):
    names, writer = make_tree(tmp_path)
    if os.geteuid() != 0:  # our writer always writes uid/gid 0, as an initramfs wants
        pytest.fail("this comparison needs files owned by root (run as root, as CI does)")
    expected = gnu_cpio_of(tmp_path, names)
    ours = writer.to_bytes()
    assert len(ours) % 512 == 0
    assert ours == expected


def test_gnu_cpio_extracts_our_archive(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    names, writer = make_tree(src)
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run([need_cpio(), "-i", "-d", "--quiet", "--no-absolute-filenames"],
                   input=writer.to_bytes(), cwd=out, check=True)
    assert (out / "bin/busybox").read_bytes() == (src / "bin/busybox").read_bytes()
    assert os.readlink(out / "bin/sh") == "busybox"
    assert os.readlink(out / "lnk-with-longer-name") == "etc/a/b"
    assert (out / "etc/empty").read_bytes() == b""
    assert stat.S_IMODE((out / "init").stat().st_mode) == 0o755
    assert stat.S_IMODE((out / "etc/abc").stat().st_mode) == 0o600
    listing = subprocess.run([need_cpio(), "-t", "--quiet"], input=writer.to_bytes(),
                             capture_output=True, check=True).stdout.decode().split()
    assert listing == names


def test_reader_round_trips_writer_and_gnu_cpio(tmp_path):
    names, writer = make_tree(tmp_path)
    for blob in (writer.to_bytes(), gnu_cpio_of(tmp_path, names)):
        entries = list(iter_entries(blob))
        assert [e.name for e in entries] == names
        by_name = {e.name: e for e in entries}
        assert by_name["bin/sh"].is_symlink and by_name["bin/sh"].data == b"busybox"
        assert by_name["etc/abc"].data == b"abc" and by_name["etc/abc"].is_file
        assert by_name["etc/a"].is_dir and by_name["etc/a"].nlink == 3
        assert by_name["."].nlink == 5          # bin, etc, tmp
        assert by_name["tmp"].mode == stat.S_IFDIR | 0o1777


def test_device_nodes_and_gzip_reading():
    import gzip
    w = CpioWriter()
    w.add_dir("dev")
    w.add_device("dev/console", "c", 5, 1)
    entries = read_archive(gzip.compress(w.to_bytes()))
    console = entries["dev/console"]
    assert stat.S_ISCHR(console.mode) and (console.rdevmajor, console.rdevminor) == (5, 1)


@pytest.mark.parametrize("name", ["/abs", "", "a/../b", "a//b", "a/./b", "x\0y"])
def test_bad_member_names_are_refused(name):
    with pytest.raises(CpioError, match="member name"):
        CpioWriter().add_file(name, b"")


def test_duplicates_and_bad_devices_are_refused():
    w = CpioWriter()
    w.add_file("a", b"")
    with pytest.raises(CpioError, match="added twice"):
        w.add_file("a", b"1")
    with pytest.raises(CpioError, match="must be 'c' or 'b'"):
        w.add_device("d", "x", 1, 1)


def test_reader_reports_corruption():
    blob = CpioWriter().to_bytes(block_size=1)
    good = CpioWriter()
    good.add_file("f", b"data")
    raw = good.to_bytes(block_size=1)
    with pytest.raises(CpioError, match="bad magic"):
        list(iter_entries(b"070702" + raw[6:]))
    with pytest.raises(CpioError, match="no trailer"):
        list(iter_entries(raw[:-120]))
    with pytest.raises(CpioError, match="runs past the end"):
        list(iter_entries(raw[:HEADER_END_OF_F + 2]))
    assert list(iter_entries(blob)) == []


HEADER_END_OF_F = 110 + 2  # header and "f\0" (already 4-aligned)
