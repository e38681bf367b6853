"""Composing the guest initramfs: the file tree, as a gzip-compressed cpio newc archive.

Input is bytes (the busybox binary, kernel modules, extra files), output is bytes; no
files or processes are touched here. The tree is a merged-/usr layout: every busybox applet
is a symlink in ``/bin`` and ``/sbin``, ``/usr/bin``, ``/usr/sbin`` point at it.
"""
from __future__ import annotations

import gzip
import logging
import lzma
import posixpath
import re
import stat
from collections.abc import Iterable, Sequence

import attrs

from pyv86.guest import scripts
from pyv86.guest.cpio import CpioWriter

log = logging.getLogger(__name__)

ESSENTIAL_APPLETS = ("sh", "ash", "mount", "insmod", "ip", "udhcpc", "setsid", "cttyhack",
                     "hostname", "cat", "echo", "awk", "dmesg", "poweroff", "reboot", "halt")
"""Applets /init relies on; a busybox without any of them is refused."""


class InitramfsError(ValueError):
    """The inputs cannot make a working image (e.g. a busybox lacking an applet /init needs)."""


@attrs.frozen
class ExtraFile:
    """A file to add at ``guest_path`` (absolute) with ``mode`` permission bits."""

    guest_path: str
    data: bytes
    mode: int = 0o644


def busybox_applets(binary: bytes) -> list[str]:
    """Applet names compiled into a busybox binary, read from its sorted name table.

    Busybox keeps the names as one NUL-separated, sorted string list starting with ``[``
    and ``[[`` (the test applets). Raises InitramfsError if no such table is found.
    """
    start = binary.find(b"\0[\0[[\0")
    if start < 0:
        raise InitramfsError("busybox: no applet name table found; is this a busybox binary?")
    names: list[str] = []
    pos = start + 1
    while pos < len(binary):
        end = binary.find(b"\0", pos)
        if end <= pos:
            break
        raw = binary[pos:end]
        if not re.fullmatch(rb"[\[\]a-z0-9_.\-]{1,32}", raw):
            break
        names.append(raw.decode())
        pos = end + 1
    if len(names) < 10 or names != sorted(names):
        raise InitramfsError("busybox: applet name table looks damaged; cannot list applets")
    missing = [a for a in ESSENTIAL_APPLETS if a not in names]
    if missing:
        raise InitramfsError(f"busybox: applets {', '.join(missing)} are missing; /init needs them")
    return names


def decompress_module(name: str, data: bytes) -> tuple[str, bytes]:
    """A module as plain ELF: ``x.ko.xz``/``x.ko.gz`` are decompressed (the initramfs has
    no compressed-module support to rely on), ``x.ko`` passes through."""
    try:
        if name.endswith(".ko.xz"):
            return name[:-3], lzma.decompress(data)
        if name.endswith(".ko.gz"):
            return name[:-3], gzip.decompress(data)
    except (lzma.LZMAError, OSError, EOFError) as exc:
        raise InitramfsError(f"module {name}: cannot decompress ({exc})") from None
    if name.endswith(".ko.zst"):
        raise InitramfsError(f"module {name}: zstd-compressed modules are not supported; "
                             "pass --initrd with an image you built")
    if not data.startswith(b"\x7fELF"):
        raise InitramfsError(f"module {name}: not an ELF file")
    return name, data


def _parents(path: str) -> list[str]:
    out = []
    head = posixpath.dirname(path)
    while head:
        out.append(head)
        head = posixpath.dirname(head)
    return out[::-1]


def build_tree(busybox: bytes, kernel_release: str | None, modules: dict[str, bytes],
               extra: Sequence[ExtraFile] = (), mtime: int = 0) -> CpioWriter:
    """The archive's members. ``modules`` maps ``name.ko`` to plain ELF bytes."""
    applets = busybox_applets(busybox)
    w = CpioWriter(mtime=mtime)
    for d in ("bin", "dev", "etc", "etc/pyv86", "lib", "proc", "root", "run", "sys", "tmp",
              "usr", "usr/share", "usr/share/udhcpc", "var", "mnt"):
        w.add_dir(d, 0o1777 if d == "tmp" else 0o700 if d == "root" else 0o755)
    w.add_device("dev/console", "c", 5, 1, 0o600)
    w.add_device("dev/null", "c", 1, 3, 0o666)
    w.add_symlink("sbin", "bin")
    w.add_symlink("usr/bin", "../bin")
    w.add_symlink("usr/sbin", "../bin")
    w.add_symlink("var/run", "../run")
    w.add_file("bin/busybox", busybox, 0o755)
    for applet in applets:
        if applet == "busybox" or "/" in applet:
            continue
        w.add_symlink(f"bin/{applet}", "busybox")
    w.add_file("init", scripts.init_script().encode(), 0o755)
    w.add_file("usr/share/udhcpc/default.script", scripts.UDHCPC_SCRIPT.encode(), 0o755)
    w.add_file("etc/profile", scripts.PROFILE.encode())
    w.add_file("etc/passwd", scripts.PASSWD.encode())
    w.add_file("etc/group", scripts.GROUP.encode())
    w.add_file("etc/hosts", scripts.HOSTS.encode())
    w.add_file("etc/hostname", scripts.HOSTNAME.encode())
    w.add_file("etc/nsswitch.conf", scripts.NSSWITCH.encode())
    w.add_file("etc/resolv.conf", b"")
    if modules:
        if not kernel_release:
            raise InitramfsError("modules given without a kernel release")
        base = f"lib/modules/{kernel_release}"
        for d in _parents(base + "/x"):
            if d not in w:
                w.add_dir(d)
        dep = []
        for name, data in sorted(modules.items()):
            w.add_file(f"{base}/{name}", data)
        # busybox modprobe reads modules.dep; ne2k-pci needs 8390.
        for name in sorted(modules):
            needs = [m for m in ("8390.ko",) if name == "ne2k-pci.ko" and m in modules]
            dep.append(f"{name}: {' '.join(needs)}".rstrip() + "\n")
        w.add_file(f"{base}/modules.dep", "".join(dep).encode())
    for item in extra:
        _add_extra(w, item)
    return w


def _add_extra(w: CpioWriter, item: ExtraFile) -> None:
    path = posixpath.normpath(item.guest_path)
    if not path.startswith("/") or path == "/" or ".." in path.split("/"):
        raise InitramfsError(f"--add {item.guest_path}: the guest path must be absolute, e.g. /root/run.sh")
    rel = path.lstrip("/")
    for d in _parents(rel):
        if d in w:
            continue
        w.add_dir(d)
    if rel in w:
        raise InitramfsError(f"--add {item.guest_path}: the image already has this file; pick another path")
    w.add_file(rel, item.data, stat.S_IMODE(item.mode) or 0o644)


def pack(writer: CpioWriter, level: int = 9) -> bytes:
    """The gzip-compressed archive (deterministic: no name or time in the gzip header)."""
    return gzip.compress(writer.to_bytes(), compresslevel=level, mtime=0)


def build_initramfs(busybox: bytes, kernel_release: str | None, modules: dict[str, bytes],
                    extra: Iterable[ExtraFile] = ()) -> bytes:
    return pack(build_tree(busybox, kernel_release, modules, list(extra)))
