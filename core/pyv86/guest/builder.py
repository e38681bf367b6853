"""``pyv86 guest build``: fetch Debian's i386 kernel and busybox, write the guest image.

Outputs go to :func:`pyv86.paths.guest_dir` (``~/.cache/pyv86/guest``, or under
``$PYV86_CACHE_DIR``): ``vmlinuz``, ``initramfs.cpio.gz`` and ``manifest.json`` (versions,
sizes, sha256s and the recipe). Downloaded packages are kept in ``debs/`` beside them so a
``--force`` rebuild works offline. A build whose recipe matches the manifest and whose files
still hash as recorded is a no-op.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import logging
import re
import shutil
import struct
from pathlib import Path
from typing import Any

import attrs

from pyv86 import paths
from pyv86.guest import apt, debpkg, initramfs, scripts
from pyv86.guest.apt import GuestBuildError, PackageInfo
from pyv86.guest.progress import Progress

log = logging.getLogger(__name__)

BUILDER_VERSION = 1
"""Bump when the image layout or /init changes so cached images are rebuilt."""

KERNEL_META = "linux-image-686"
BUSYBOX_PACKAGE = "busybox-static"
KERNEL_FILE = "vmlinuz"
INITRD_FILE = "initramfs.cpio.gz"
MANIFEST_FILE = "manifest.json"
MODULE_DIR = "kernel/drivers/net/ethernet/8390/"
MODULE_NAMES = tuple(f"{m}.ko" for m in scripts.MODULES)


@attrs.frozen
class BuildOptions:
    """What ``pyv86 guest build`` was asked to do."""

    force: bool = False
    kernel: Path | None = None
    initrd: Path | None = None
    add: tuple[tuple[Path, str], ...] = ()
    debs: Path | None = None
    out_dir: Path | None = None


@attrs.frozen
class BuildResult:
    out_dir: Path
    manifest: dict[str, Any]
    rebuilt: bool

    @property
    def kernel(self) -> Path:
        return self.out_dir / KERNEL_FILE

    @property
    def initrd(self) -> Path:
        return self.out_dir / INITRD_FILE


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def parse_add(spec: str) -> tuple[Path, str]:
    """``HOST:GUEST`` -> (host path, absolute guest path)."""
    host, sep, guest = spec.rpartition(":")
    if not sep or not host or not guest.startswith("/"):
        raise GuestBuildError(f"--add {spec}: expected HOST:GUEST with an absolute guest path, "
                              "e.g. --add run.sh:/etc/pyv86/startup.sh")
    path = Path(host).expanduser()
    if not path.is_file():
        raise GuestBuildError(f"--add {spec}: {host} is not a readable file")
    return path.resolve(), guest


def bzimage_release(data: bytes, where: str) -> tuple[str, str]:
    """(release, full version string) of a bzImage, e.g. ('6.1.0-50-686', '6.1.0-50-686 (...) #1 ...')."""
    if len(data) < 0x270 or data[0x1FE:0x200] != b"\x55\xaa" or data[0x202:0x206] != b"HdrS":
        raise GuestBuildError(f"{where}: not a Linux bzImage (no boot signature/HdrS header)")
    version = struct.unpack_from("<H", data, 0x206)[0]
    if version < 0x0206:
        raise GuestBuildError(f"{where}: boot protocol {version >> 8}.{version & 0xFF} is too old; need 2.06+")
    ptr = struct.unpack_from("<H", data, 0x20E)[0]
    text = ""
    if ptr:
        start = 0x200 + ptr
        end = data.find(b"\0", start, start + 256)
        if end > start:
            text = data[start:end].decode("ascii", "replace")
    return (text.split()[0] if text else ""), text


class GuestBuilder:
    """One build: resolves inputs, decides whether anything changed, writes the outputs."""

    def __init__(self, options: BuildOptions, progress: Progress | None = None) -> None:
        self.options = options
        self.progress = progress or Progress(None)
        self.out_dir = options.out_dir or paths.guest_dir()
        self.deb_cache = self.out_dir / "debs"
        self._apt_ready = False
        self._updated = False

    # -- recipe / manifest ---------------------------------------------------------------

    def recipe(self) -> dict[str, Any]:
        o = self.options
        return {
            "builder": BUILDER_VERSION,
            "scripts": scripts.fingerprint(),
            "kernel_file": sha256_file(o.kernel) if o.kernel else None,
            "initrd_file": sha256_file(o.initrd) if o.initrd else None,
            "add": [[guest, sha256_file(host), host.stat().st_mode & 0o777] for host, guest in o.add],
            "packages": None if (o.kernel and o.initrd) else [KERNEL_META, BUSYBOX_PACKAGE],
        }

    def load_manifest(self) -> dict[str, Any] | None:
        path = self.out_dir / MANIFEST_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("%s: unreadable (%s); rebuilding", path, exc)
            return None
        return data if isinstance(data, dict) else None

    def up_to_date(self, recipe: dict[str, Any]) -> dict[str, Any] | None:
        manifest = self.load_manifest()
        if not manifest or manifest.get("recipe") != recipe:
            return None
        for key, name in (("kernel", KERNEL_FILE), ("initramfs", INITRD_FILE)):
            path = self.out_dir / name
            if not path.is_file() or sha256_file(path) != manifest.get(key, {}).get("sha256"):
                return None
        return manifest

    # -- the build -----------------------------------------------------------------------

    def build(self) -> BuildResult:
        o = self.options
        for p, what in ((o.kernel, "--kernel"), (o.initrd, "--initrd")):
            if p is not None and not p.is_file():
                raise GuestBuildError(f"{what} {p}: no such file")
        recipe = self.recipe()
        if not o.force:
            manifest = self.up_to_date(recipe)
            if manifest is not None:
                self.progress.message(f"image in {self.out_dir} is up to date "
                                      f"(kernel {manifest['kernel'].get('release') or '?'}); --force rebuilds it")
                return BuildResult(self.out_dir, manifest, rebuilt=False)
        self.out_dir.mkdir(parents=True, exist_ok=True)

        kernel_info: dict[str, Any]
        modules: dict[str, bytes] = {}
        kernel_deb: Path | None = None
        kernel_bytes: bytes
        if o.kernel is not None:
            kernel_bytes = o.kernel.read_bytes()
            release, version_text = bzimage_release(kernel_bytes, str(o.kernel))
            kernel_info = {"source": "file", "path": str(o.kernel), "release": release,
                           "version_string": version_text}
            if o.initrd is None:
                kernel_deb = self._kernel_deb_for_release(release)
        else:
            kernel_deb = self._kernel_deb()
            kernel_info = {"source": "debs" if o.debs else "apt"}
        if kernel_deb is not None:
            fields = debpkg.control_fields(kernel_deb)
            pkg_kernel, modules, release = self._extract_kernel(kernel_deb, want_image=o.kernel is None)
            if o.kernel is None:
                assert pkg_kernel is not None
                kernel_bytes = pkg_kernel
                _, version_text = bzimage_release(kernel_bytes, str(kernel_deb))
                kernel_info.update(release=release, version_string=version_text)
            kernel_info.update(package=fields.get("Package"), package_version=fields.get("Version"),
                               deb_sha256=sha256_file(kernel_deb))

        initrd_info: dict[str, Any]
        if o.initrd is not None:
            initrd_bytes = o.initrd.read_bytes()
            initrd_info = {"source": "file", "path": str(o.initrd)}
        else:
            bb_deb = self._busybox_deb()
            bb_fields = debpkg.control_fields(bb_deb)
            self.progress.start(f"extract {bb_deb.name}", bb_deb.stat().st_size)
            members = debpkg.extract(bb_deb, lambda p: p == "bin/busybox", self._on_bytes)
            self.progress.finish()
            if "bin/busybox" not in members:
                raise GuestBuildError(f"{bb_deb}: has no bin/busybox; is it busybox-static?")
            extra = [initramfs.ExtraFile(guest, host.read_bytes(), host.stat().st_mode & 0o777)
                     for host, guest in o.add]
            self.progress.start("write initramfs (cpio newc, gzip)", None)
            try:
                tree = initramfs.build_tree(members["bin/busybox"].data, kernel_info.get("release"),
                                            modules, extra)
                initrd_bytes = initramfs.pack(tree)
            except initramfs.InitramfsError as exc:
                self.progress.finish("failed")
                raise GuestBuildError(f"guest build: {exc}") from None
            self.progress.finish(f"{len(tree.names)} entries, {len(initrd_bytes) / 1e6:.1f} MB")
            if not modules:
                self.progress.message("warning: no NE2000 modules in the image (kernel "
                                      f"{kernel_info.get('release') or '?'} has no Debian package); "
                                      "the kernel must have them built in")
            initrd_info = {"source": "built", "entries": len(tree.names),
                           "modules": sorted(modules),
                           "busybox": {"package": bb_fields.get("Package"),
                                       "package_version": bb_fields.get("Version"),
                                       "sha256": hashlib.sha256(members["bin/busybox"].data).hexdigest()},
                           "extra": [{"guest": guest, "host": str(host)} for host, guest in o.add],
                           "marker": scripts.READY_MARKER}

        paths.write_atomic(self.out_dir / KERNEL_FILE, kernel_bytes)
        paths.write_atomic(self.out_dir / INITRD_FILE, initrd_bytes)
        kernel_info.update(file=KERNEL_FILE, size=len(kernel_bytes),
                           sha256=hashlib.sha256(kernel_bytes).hexdigest())
        initrd_info.update(file=INITRD_FILE, size=len(initrd_bytes),
                           sha256=hashlib.sha256(initrd_bytes).hexdigest())
        manifest = {
            "format": 1,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "recipe": recipe,
            "kernel": kernel_info,
            "initramfs": initrd_info,
        }
        paths.write_atomic(self.out_dir / MANIFEST_FILE, (json.dumps(manifest, indent=2) + "\n").encode())
        self.progress.message(f"wrote {self.out_dir / KERNEL_FILE} ({len(kernel_bytes) / 1e6:.1f} MB) and "
                              f"{self.out_dir / INITRD_FILE} ({len(initrd_bytes) / 1e6:.1f} MB)")
        return BuildResult(self.out_dir, manifest, rebuilt=True)

    # -- packages ------------------------------------------------------------------------

    def _on_bytes(self, done: int, total: int) -> None:
        self.progress.update(done)

    def _extract_kernel(self, deb: Path, want_image: bool) -> tuple[bytes | None, dict[str, bytes], str]:
        wanted = {n + suffix for n in MODULE_NAMES for suffix in ("", ".xz", ".gz", ".zst")}

        def want(path: str) -> bool:
            if want_image and re.fullmatch(r"boot/vmlinuz-[^/]+", path):
                return True
            return path.startswith("lib/modules/") and MODULE_DIR in path and path.rsplit("/", 1)[-1] in wanted

        self.progress.start(f"extract {deb.name}", deb.stat().st_size)
        members = debpkg.extract(deb, want, self._on_bytes)
        self.progress.finish()
        image = None
        release = ""
        if want_image:
            images = [m for p, m in members.items() if p.startswith("boot/vmlinuz-")]
            if not images:
                raise GuestBuildError(f"{deb}: has no boot/vmlinuz-*; is it a linux-image package?")
            image = images[0].data
            release = images[0].path.split("vmlinuz-", 1)[1]
        modules: dict[str, bytes] = {}
        for path, member in members.items():
            if not path.startswith("lib/modules/"):
                continue
            release = release or path.split("/")[2]
            try:
                name, data = initramfs.decompress_module(path.rsplit("/", 1)[-1], member.data)
            except initramfs.InitramfsError as exc:
                raise GuestBuildError(f"{deb}: {exc}") from None
            modules[name] = data
        missing = [m for m in MODULE_NAMES if m not in modules]
        if missing:
            raise GuestBuildError(f"{deb}: modules {', '.join(missing)} not found under "
                                  f"lib/modules/*/{MODULE_DIR}")
        return image, modules, release

    def _local_deb(self, pattern: str, what: str) -> Path:
        assert self.options.debs is not None
        found = sorted(self.options.debs.glob(pattern))
        if not found:
            raise GuestBuildError(f"--debs {self.options.debs}: no {pattern} ({what})")
        return found[-1]

    def _kernel_deb(self) -> Path:
        if self.options.debs is not None:
            candidates = [p for p in sorted(self.options.debs.glob("linux-image-*_i386.deb"))
                          if not p.name.startswith(KERNEL_META + "_")]
            if not candidates:
                raise GuestBuildError(f"--debs {self.options.debs}: no linux-image-<version>-686_*_i386.deb")
            return candidates[-1]
        self._prepare_apt()
        name = apt.kernel_dependency(KERNEL_META)
        if name is None and not self._updated:
            apt.update_indexes(self.progress)
            self._updated = True
            name = apt.kernel_dependency(KERNEL_META)
        if name is None:
            raise GuestBuildError(f"guest build: apt knows no {KERNEL_META}:i386; check that Debian 12 "
                                  "(bookworm) sources are configured, then run apt-get update")
        self.progress.message(f"{KERNEL_META}:i386 depends on {name}")
        return self._fetch(name)

    def _kernel_deb_for_release(self, release: str) -> Path | None:
        if self.options.debs is not None:
            found = sorted(self.options.debs.glob(f"linux-image-{release}_*_i386.deb"))
            return found[-1] if found else None
        if not release or apt.tools_available() is not None:
            return None
        self._prepare_apt()
        if apt.show(f"linux-image-{release}:{apt.ARCH}") is None:
            return None
        return self._fetch(f"linux-image-{release}")

    def _busybox_deb(self) -> Path:
        if self.options.debs is not None:
            return self._local_deb(f"{BUSYBOX_PACKAGE}_*_i386.deb", "busybox-static")
        self._prepare_apt()
        return self._fetch(BUSYBOX_PACKAGE)

    def _prepare_apt(self) -> None:
        if self._apt_ready:
            return
        apt.require_tools()
        if not apt.i386_enabled():
            apt.enable_i386(self.progress)
            apt.update_indexes(self.progress)
            self._updated = True
        self._apt_ready = True

    def _resolve(self, name: str) -> PackageInfo:
        info = apt.show(f"{name}:{apt.ARCH}")
        if info is None and not self._updated:
            apt.update_indexes(self.progress)
            self._updated = True
            info = apt.show(f"{name}:{apt.ARCH}")
        if info is None:
            raise GuestBuildError(f"guest build: apt knows no {name}:i386; run apt-get update "
                                  "with Debian 12 sources configured")
        return info

    def _fetch(self, name: str) -> Path:
        info = self._resolve(name)
        for cached in sorted(self.deb_cache.glob(f"{info.name}_*_{apt.ARCH}.deb")):
            if info.sha256 and sha256_file(cached) == info.sha256:
                self.progress.message(f"using cached {cached.name}")
                return cached
        try:
            deb = apt.download(info, self.deb_cache, self.progress)
        except GuestBuildError:
            if self._updated:
                raise
            # A stale index names a file the mirror no longer has: refresh once and retry.
            apt.update_indexes(self.progress)
            self._updated = True
            info = self._resolve(name)
            deb = apt.download(info, self.deb_cache, self.progress)
        if info.sha256 and sha256_file(deb) != info.sha256:
            deb.unlink()
            raise GuestBuildError(f"guest build: {deb.name} does not match the sha256 apt expects; "
                                  "deleted it, run the build again")
        for old in self.deb_cache.glob(f"{info.name}_*.deb"):
            if old != deb:
                old.unlink()
        return deb


def build_guest(options: BuildOptions, progress: Progress | None = None) -> BuildResult:
    """Build (or confirm) the guest image; the Python API behind ``pyv86 guest build``."""
    return GuestBuilder(options, progress).build()


def remove_cached_debs(out_dir: Path | None = None) -> None:
    shutil.rmtree((out_dir or paths.guest_dir()) / "debs", ignore_errors=True)
