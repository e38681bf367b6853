"""Fakes for the guest-image tests: tiny Debian packages, bzImages and busybox binaries."""
from __future__ import annotations

import io
import lzma
import struct
import tarfile
from pathlib import Path

from pyv86.guest.initramfs import ESSENTIAL_APPLETS

FAKE_RELEASE = "6.1.0-99-686"


def fake_bzimage(release: str = FAKE_RELEASE, size: int = 0x2000) -> bytes:
    data = bytearray(size)
    data[0x1F1] = 3
    data[0x1FE:0x200] = b"\x55\xaa"
    data[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", data, 0x206, 0x020F)
    text = f"{release} (test@example) #1 SMP Debian fake".encode() + b"\0"
    struct.pack_into("<H", data, 0x20E, 0x400 - 0x200)
    data[0x400:0x400 + len(text)] = text
    return bytes(data)


def fake_busybox(extra_applets: tuple[str, ...] = ("ls", "vi", "udhcpd")) -> bytes:
    names = sorted(set(ESSENTIAL_APPLETS) | set(extra_applets) | {"[", "[["})
    return b"\x7fELF" + b"\x01" * 60 + b"\0" + b"\0".join(n.encode() for n in names) + b"\0\0tail"


def fake_module(name: str) -> bytes:
    return b"\x7fELF\x01\x01\x01" + name.encode() + b"\0" * 32


def _tar_xz(files: dict[str, bytes | str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, content in files.items():
            info = tarfile.TarInfo("./" + path)
            if isinstance(content, str):
                info.type = tarfile.SYMTYPE
                info.linkname = content
                tar.addfile(info)
            else:
                info.size = len(content)
                info.mode = 0o755 if "bin/" in path else 0o644
                tar.addfile(info, io.BytesIO(content))
    return lzma.compress(buf.getvalue())


def make_deb(path: Path, package: str, version: str, files: dict[str, bytes | str]) -> Path:
    """Write a minimal Debian binary package (ar: debian-binary, control.tar.xz, data.tar.xz)."""
    control = f"Package: {package}\nVersion: {version}\nArchitecture: i386\nDescription: fake\n".encode()
    members = [("debian-binary", b"2.0\n"), ("control.tar.xz", _tar_xz({"control": control})),
               ("data.tar.xz", _tar_xz(files))]
    out = bytearray(b"!<arch>\n")
    for name, data in members:
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n".encode()
        out += data + (b"\n" if len(data) % 2 else b"")
    path.write_bytes(bytes(out))
    return path


def make_kernel_deb(directory: Path, release: str = FAKE_RELEASE, modules: tuple[str, ...] = ("8390", "ne2k-pci"),
                    xz_module: str = "ne2k-pci") -> Path:
    moddir = f"lib/modules/{release}/kernel/drivers/net/ethernet/8390/"
    files: dict[str, bytes | str] = {f"boot/vmlinuz-{release}": fake_bzimage(release),
                                     f"boot/config-{release}": b"CONFIG_FAKE=y\n",
                                     f"{moddir}ne.ko": fake_module("ne"),
                                     f"lib/modules/{release}/kernel/fs/ext4/ext4.ko": fake_module("ext4")}
    for m in modules:
        if m == xz_module:
            files[f"{moddir}{m}.ko.xz"] = lzma.compress(fake_module(m))
        else:
            files[f"{moddir}{m}.ko"] = fake_module(m)
    return make_deb(directory / f"linux-image-{release}_6.1.999-1_i386.deb", f"linux-image-{release}",
                    "6.1.999-1", files)


def make_busybox_deb(directory: Path) -> Path:
    return make_deb(directory / "busybox-static_1%3a1.35.0-4_i386.deb", "busybox-static", "1:1.35.0-4",
                    {"bin/busybox": fake_busybox(), "usr/share/doc/busybox-static/copyright": b"(c)\n"})
