"""``pyv86 guest build`` end to end on fake packages: layout, manifest, caching, options, errors."""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess

import pytest
from guest_fakes import FAKE_RELEASE, fake_bzimage, fake_busybox, fake_module, make_busybox_deb, make_kernel_deb

from pyv86.cli import main
from pyv86.guest import debpkg, initramfs, scripts
from pyv86.guest.apt import GuestBuildError
from pyv86.guest.builder import BuildOptions, build_guest, bzimage_release, parse_add
from pyv86.guest.cpio import read_archive
from pyv86.guest.progress import Progress


def test_build_from_packages_writes_kernel_initramfs_and_manifest(debs, tmp_path):
    script = tmp_path / "hello.sh"
    script.write_text("echo hello from the guest\n")
    script.chmod(0o750)
    out = tmp_path / "out"
    result = build_guest(BuildOptions(debs=debs, out_dir=out, add=(parse_add(f"{script}:/etc/pyv86/startup.sh"),)))
    assert result.rebuilt
    assert (out / "vmlinuz").read_bytes() == fake_bzimage()
    archive = read_archive((out / "initramfs.cpio.gz").read_bytes())

    init = archive["init"]
    assert init.is_file and stat.S_IMODE(init.mode) == 0o755
    assert init.data.startswith(b"#!/bin/sh\n") and b"\n    echo \"PYV86-READY\"\n" in init.data
    assert archive["bin/busybox"].data == fake_busybox()
    for applet in ("sh", "ip", "udhcpc", "cttyhack", "setsid", "ls", "[["):
        assert archive[f"bin/{applet}"].is_symlink and archive[f"bin/{applet}"].data == b"busybox"
    assert archive["sbin"].data == b"bin" and archive["usr/bin"].data == b"../bin"
    moddir = f"lib/modules/{FAKE_RELEASE}"
    assert archive[f"{moddir}/8390.ko"].data == fake_module("8390")
    assert archive[f"{moddir}/ne2k-pci.ko"].data == fake_module("ne2k-pci")   # was .ko.xz
    assert f"{moddir}/ne.ko" not in archive and f"{moddir}/ext4.ko" not in archive
    assert archive[f"{moddir}/modules.dep"].data == b"8390.ko:\nne2k-pci.ko: 8390.ko\n"
    assert archive["dev/console"].rdevmajor == 5
    assert stat.S_IMODE(archive["usr/share/udhcpc/default.script"].mode) == 0o755
    assert archive["etc/pyv86/startup.sh"].data == b"echo hello from the guest\n"
    assert stat.S_IMODE(archive["etc/pyv86/startup.sh"].mode) == 0o750
    assert archive["etc/hostname"].data == b"pyv86\n"

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest == result.manifest
    assert manifest["kernel"]["release"] == FAKE_RELEASE
    assert manifest["kernel"]["package"] == f"linux-image-{FAKE_RELEASE}"
    assert manifest["kernel"]["package_version"] == "6.1.999-1"
    assert manifest["initramfs"]["busybox"]["package_version"] == "1:1.35.0-4"
    assert manifest["initramfs"]["modules"] == ["8390.ko", "ne2k-pci.ko"]
    import hashlib
    assert manifest["initramfs"]["sha256"] == hashlib.sha256((out / "initramfs.cpio.gz").read_bytes()).hexdigest()


def test_second_build_is_a_noop_unless_forced_or_changed(debs, tmp_path):
    out = tmp_path / "out"
    first = build_guest(BuildOptions(debs=debs, out_dir=out))
    stamp = (out / "initramfs.cpio.gz").stat().st_mtime_ns
    again = build_guest(BuildOptions(debs=debs, out_dir=out))
    assert not again.rebuilt and again.manifest == first.manifest
    assert (out / "initramfs.cpio.gz").stat().st_mtime_ns == stamp

    assert build_guest(BuildOptions(debs=debs, out_dir=out, force=True)).rebuilt
    extra = tmp_path / "x"
    extra.write_text("x")
    assert build_guest(BuildOptions(debs=debs, out_dir=out, add=((extra, "/x"),))).rebuilt
    (out / "vmlinuz").write_bytes(b"damaged")
    assert build_guest(BuildOptions(debs=debs, out_dir=out, add=((extra, "/x"),))).rebuilt
    assert (out / "vmlinuz").read_bytes() == fake_bzimage()


def test_output_is_reproducible(debs, tmp_path):
    build_guest(BuildOptions(debs=debs, out_dir=tmp_path / "a"))
    build_guest(BuildOptions(debs=debs, out_dir=tmp_path / "b"))
    assert (tmp_path / "a/initramfs.cpio.gz").read_bytes() == (tmp_path / "b/initramfs.cpio.gz").read_bytes()


def test_user_kernel_and_initrd_need_no_package_tools(tmp_path, monkeypatch):
    kernel = tmp_path / "bz"
    kernel.write_bytes(fake_bzimage("5.10.0-custom"))
    initrd = tmp_path / "rd"
    initrd.write_bytes(b"my initrd")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    result = build_guest(BuildOptions(kernel=kernel, initrd=initrd, out_dir=tmp_path / "out"))
    assert result.kernel.read_bytes() == kernel.read_bytes()
    assert result.initrd.read_bytes() == b"my initrd"
    assert result.manifest["kernel"]["source"] == "file"
    assert result.manifest["kernel"]["release"] == "5.10.0-custom"
    assert result.manifest["initramfs"]["source"] == "file"


def test_user_kernel_takes_modules_from_the_matching_package(debs, tmp_path):
    kernel = tmp_path / "bz"
    kernel.write_bytes(fake_bzimage(FAKE_RELEASE) + b"custom")
    result = build_guest(BuildOptions(kernel=kernel, debs=debs, out_dir=tmp_path / "out"))
    assert result.kernel.read_bytes() == kernel.read_bytes()
    archive = read_archive(result.initrd.read_bytes())
    assert f"lib/modules/{FAKE_RELEASE}/ne2k-pci.ko" in archive
    assert result.manifest["initramfs"]["modules"] == ["8390.ko", "ne2k-pci.ko"]


def test_user_kernel_without_package_builds_without_modules(debs, tmp_path):
    kernel = tmp_path / "bz"
    kernel.write_bytes(fake_bzimage("9.9.9-other"))
    result = build_guest(BuildOptions(kernel=kernel, debs=debs, out_dir=tmp_path / "out"))
    archive = read_archive(result.initrd.read_bytes())
    assert not [n for n in archive if n.endswith(".ko")]
    assert result.manifest["initramfs"]["modules"] == []


def test_not_a_bzimage_is_a_one_line_error(tmp_path):
    bad = tmp_path / "notkernel"
    bad.write_bytes(b"\0" * 4096)
    with pytest.raises(GuestBuildError, match=r"notkernel: not a Linux bzImage"):
        build_guest(BuildOptions(kernel=bad, initrd=bad, out_dir=tmp_path / "out"))
    old = bytearray(fake_bzimage())
    old[0x206:0x208] = b"\x01\x02"
    with pytest.raises(GuestBuildError, match=r"boot protocol 2.1 is too old"):
        bzimage_release(bytes(old), "old")
    with pytest.raises(GuestBuildError, match="--kernel .*missing: no such file"):
        build_guest(BuildOptions(kernel=tmp_path / "missing", out_dir=tmp_path / "out"))


def test_missing_modules_are_named(tmp_path):
    d = tmp_path / "debs"
    d.mkdir()
    make_kernel_deb(d, modules=("8390",))
    make_busybox_deb(d)
    with pytest.raises(GuestBuildError, match=r"modules ne2k-pci.ko not found under lib/modules/\*/kernel/drivers"):
        build_guest(BuildOptions(debs=d, out_dir=tmp_path / "out"))


def test_without_apt_the_message_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(GuestBuildError) as info:
        build_guest(BuildOptions(out_dir=tmp_path / "out"))
    message = str(info.value)
    assert "\n" not in message
    assert "dpkg not found" in message and "--kernel FILE and --initrd FILE" in message


@pytest.mark.parametrize("spec, match", [
    ("nocolon", "expected HOST:GUEST"), ("{f}:relative", "absolute guest path"),
    ("/no/such/file:/x", "is not a readable file")])
def test_bad_add_specs(tmp_path, spec, match):
    f = tmp_path / "f"
    f.write_text("")
    with pytest.raises(GuestBuildError, match=match):
        parse_add(spec.format(f=f))


def test_add_cannot_replace_image_files(debs, tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(GuestBuildError, match="--add /init: the image already has this file"):
        build_guest(BuildOptions(debs=debs, out_dir=tmp_path / "out", add=((f, "/init"),)))


def test_cli_build_and_info(debs, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PYV86_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["guest", "build", "--debs", str(debs), "-q"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == str(tmp_path / "cache" / "guest")
    assert main(["guest", "info"]) == 0
    text = capsys.readouterr().out
    assert FAKE_RELEASE in text and "8390.ko, ne2k-pci.ko" in text
    assert main(["guest", "info", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kernel"]["release"] == FAKE_RELEASE
    assert main(["guest", "build", "--add", "nocolon"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pyv86: --add nocolon: expected HOST:GUEST") and err.count("\n") == 1


def test_cli_info_without_image(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PYV86_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["guest", "info"]) == 2
    assert "run `pyv86 guest build`" in capsys.readouterr().err


def test_progress_output_on_a_pipe(debs, tmp_path):
    import io
    stream = io.StringIO()
    build_guest(BuildOptions(debs=debs, out_dir=tmp_path / "out"), Progress(stream))
    lines = stream.getvalue().splitlines()
    assert any(ln.startswith("pyv86 guest: extract linux-image-") and ln.endswith("s)") for ln in lines)
    assert any("write initramfs" in ln and "entries" in ln for ln in lines)
    assert "\r" not in stream.getvalue()


def test_busybox_applet_table_errors():
    with pytest.raises(initramfs.InitramfsError, match="no applet name table"):
        initramfs.busybox_applets(b"\x7fELF not busybox")
    with pytest.raises(initramfs.InitramfsError, match="applets .*cttyhack.* missing"):
        initramfs.busybox_applets(b"\0[\0[[\0" + b"\0".join(n.encode() for n in sorted(
            ["sh", "ash", "mount", "insmod", "ip", "udhcpc", "setsid", "hostname", "cat", "echo",
             "awk", "dmesg", "poweroff", "reboot", "halt"])) + b"\0\0")


def test_module_decompression():
    import gzip
    import lzma
    assert initramfs.decompress_module("a.ko.xz", lzma.compress(b"\x7fELFx")) == ("a.ko", b"\x7fELFx")
    assert initramfs.decompress_module("a.ko.gz", gzip.compress(b"\x7fELFx")) == ("a.ko", b"\x7fELFx")
    with pytest.raises(initramfs.InitramfsError, match="a.ko.xz: cannot decompress"):
        initramfs.decompress_module("a.ko.xz", b"junk")
    with pytest.raises(initramfs.InitramfsError, match="not an ELF"):
        initramfs.decompress_module("a.ko", b"junk")


def test_deb_reader_errors(tmp_path):
    bad = tmp_path / "bad.deb"
    bad.write_bytes(b"not an ar file")
    with pytest.raises(debpkg.DebError, match="not an ar archive"):
        debpkg.extract(bad, lambda p: True)


@pytest.mark.parametrize("text", [scripts.init_script(), scripts.UDHCPC_SCRIPT])
def test_shell_scripts_parse(tmp_path, text):
    sh = shutil.which("sh")
    assert sh, "no /bin/sh on the host"
    path = tmp_path / "script"
    path.write_text(text)
    proc = subprocess.run([sh, "-n", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


FAKE_APT = r"""#!/bin/sh
# Fake {tool} for the apt edge tests; logs its arguments.
echo "{tool} $*" >> "$FAKE_APT_LOG"
case "{tool} $1" in
  "dpkg --print-architecture") echo amd64 ;;
  "dpkg --print-foreign-architectures") if [ -f "$FAKE_APT_DIR/i386" ]; then echo i386; fi ;;
  "dpkg --add-architecture") touch "$FAKE_APT_DIR/i386" ;;
  "apt-get update") touch "$FAKE_APT_DIR/updated"; echo "E: Failed to fetch one index" >&2; exit 100 ;;
  "apt-cache depends") [ -f "$FAKE_APT_DIR/updated" ] || exit 0
      echo "linux-image-686:i386"; echo "  Depends: linux-image-{release}:i386" ;;
  "apt-cache show")
      [ -f "$FAKE_APT_DIR/updated" ] || exit 100
      case "$3" in
        linux-image-{release}:i386) f=$(ls "$FAKE_APT_DIR"/pool/linux-image-*.deb) ;;
        busybox-static:i386) f=$(ls "$FAKE_APT_DIR"/pool/busybox-*.deb) ;;
        *) exit 100 ;;
      esac
      echo "Package: ${{3%:i386}}"; echo "Version: $(basename "$f" | cut -d_ -f2 | sed 's/%3a/:/')"
      echo "Size: $(stat -c %s "$f")"; echo "SHA256: $(sha256sum "$f" | cut -d' ' -f1)"
      echo "Filename: pool/$(basename "$f")"; echo ;;
  "apt-get download") for a in "$@"; do case "$a" in *:i386=*) name=${{a%%:*}} ;; esac; done
      cp "$FAKE_APT_DIR"/pool/"$name"_*.deb . ;;
  *) echo "unexpected: {tool} $*" >&2; exit 1 ;;
esac
"""


def test_apt_flow_with_fake_tools(tmp_path, monkeypatch):
    """The apt edge: enable i386, tolerate a failing `apt-get update`, resolve the kernel
    dependency, download into the cache, then reuse the cache."""
    bindir, state = tmp_path / "bin", tmp_path / "apt"
    bindir.mkdir()
    (state / "pool").mkdir(parents=True)
    make_kernel_deb(state / "pool")
    make_busybox_deb(state / "pool")
    for tool in ("dpkg", "apt-get", "apt-cache"):
        (bindir / tool).write_text(FAKE_APT.format(tool=tool, release=FAKE_RELEASE))
        (bindir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_APT_DIR", str(state))
    monkeypatch.setenv("FAKE_APT_LOG", str(tmp_path / "log"))
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    out = tmp_path / "out"
    result = build_guest(BuildOptions(out_dir=out))
    log = (tmp_path / "log").read_text().splitlines()
    assert "dpkg --add-architecture i386" in log
    assert sum(1 for ln in log if ln.startswith("apt-get update")) == 1
    assert result.manifest["kernel"]["package"] == f"linux-image-{FAKE_RELEASE}"
    assert sorted(p.name for p in (out / "debs").iterdir()) == [
        "busybox-static_1%3a1.35.0-4_i386.deb", f"linux-image-{FAKE_RELEASE}_6.1.999-1_i386.deb"]
    (tmp_path / "log").write_text("")
    assert build_guest(BuildOptions(out_dir=out, force=True)).rebuilt
    assert not [ln for ln in (tmp_path / "log").read_text().splitlines() if "download" in ln]
