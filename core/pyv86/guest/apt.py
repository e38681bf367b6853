"""The edge to the host's Debian package tools (dpkg, apt-cache, apt-get).

Everything that runs an external command for the image builder lives here: enabling the
i386 architecture, refreshing the indexes, resolving a package's candidate version (and the
versioned kernel package ``linux-image-686`` depends on), and ``apt-get download`` into a
directory with a byte-level progress bar. Errors are one line naming the command.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import attrs

from pyv86.errors import Pyv86Error
from pyv86.guest.progress import Progress

log = logging.getLogger(__name__)

ARCH = "i386"


class GuestBuildError(Pyv86Error):
    """The guest image cannot be built (tools missing, package not found, bad input file)."""


@attrs.frozen
class PackageInfo:
    """A resolved package: name, candidate version and the archive facts apt knows."""

    name: str
    version: str
    size: int
    sha256: str
    filename: str


def tools_available() -> str | None:
    """None when dpkg/apt-get/apt-cache are on PATH, else the name of the first missing tool."""
    for tool in ("dpkg", "apt-get", "apt-cache"):
        if shutil.which(tool) is None:
            return tool
    return None


def require_tools() -> None:
    missing = tools_available()
    if missing:
        raise GuestBuildError(
            f"guest build: {missing} not found; building the image needs Debian's package tools "
            "(apt/dpkg) — on another system pass --kernel FILE and --initrd FILE")


def _privileged(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return cmd
    if shutil.which("sudo"):
        return ["sudo", "-n", *cmd]
    return cmd


def _run(cmd: list[str], check: bool = True, timeout: float = 600,
         cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    log.debug("running %s", " ".join(cmd))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                              stdin=subprocess.DEVNULL, env={**os.environ, "LC_ALL": "C",
                                                             "DEBIAN_FRONTEND": "noninteractive"})
    except FileNotFoundError:
        raise GuestBuildError(f"guest build: {cmd[0]} not found; install apt/dpkg or use --kernel/--initrd") from None
    except subprocess.TimeoutExpired:
        raise GuestBuildError(f"guest build: `{' '.join(cmd)}` took more than {timeout:.0f} s; "
                              "check the package mirror configuration") from None
    if check and proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or ["(no output)"])[-1]
        raise GuestBuildError(f"guest build: `{' '.join(cmd)}` failed (exit {proc.returncode}): {last}")
    return proc


def i386_enabled() -> bool:
    native = _run(["dpkg", "--print-architecture"]).stdout.strip()
    if native == ARCH:
        return True
    foreign = _run(["dpkg", "--print-foreign-architectures"]).stdout.split()
    return ARCH in foreign


def enable_i386(progress: Progress) -> None:
    progress.message("enabling the i386 architecture (dpkg --add-architecture i386)")
    _run(_privileged(["dpkg", "--add-architecture", ARCH]))


def update_indexes(progress: Progress) -> None:
    """``apt-get update``; a non-zero exit (one mirror failing) is only a warning here —
    whether the packages resolve afterwards decides."""
    progress.start("apt-get update", None, unit_bytes=False)
    proc = _run(_privileged(["apt-get", "update", "-q"]), check=False, timeout=900)
    if proc.returncode != 0:
        errors = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.startswith(("E:", "Err:"))]
        progress.finish(f"finished with errors ({len(errors)} lines), continuing with the indexes it got")
        for line in errors[:3]:
            log.info("apt-get update: %s", line)
    else:
        progress.finish()


def show(package: str) -> PackageInfo | None:
    """The candidate version of ``package`` (``name:i386``) or None if apt knows none."""
    proc = _run(["apt-cache", "show", "--no-all-versions", package], check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        return None
    fields: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        if not line.strip():
            break
        if ":" in line and not line.startswith(" "):
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    if "Version" not in fields:
        return None
    return PackageInfo(name=fields.get("Package", package.split(":")[0]), version=fields["Version"],
                       size=int(fields.get("Size", "0") or 0), sha256=fields.get("SHA256", ""),
                       filename=fields.get("Filename", ""))


def kernel_dependency(meta: str = "linux-image-686") -> str | None:
    """The versioned kernel package the metapackage depends on (e.g. ``linux-image-6.1.0-50-686``)."""
    proc = _run(["apt-cache", "depends", f"{meta}:{ARCH}"], check=False)
    if proc.returncode != 0:
        return None
    for line in proc.stdout.splitlines():
        m = re.match(r"\s*\|?Depends:\s*<?(linux-image-[^:>\s]+)", line)
        if m:
            return m.group(1)
    return None


def download(pkg: PackageInfo, dest: Path, progress: Progress) -> Path:
    """``apt-get download name:i386=version`` into ``dest``; returns the .deb path.

    The download goes to a private subdirectory first, so a partial file never looks cached.
    """
    dest.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".download-", dir=dest))
    cmd = ["apt-get", "download", "-q", f"{pkg.name}:{ARCH}={pkg.version}"]
    if os.geteuid() == 0:
        cmd[2:2] = ["-o", "APT::Sandbox::User=root"]
    progress.start(f"download {pkg.name} {pkg.version}", pkg.size or None)
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.2):
            try:
                progress.update(sum(p.stat().st_size for p in work.iterdir() if p.is_file()))
            except OSError:
                pass

    watcher = threading.Thread(target=watch, name="pyv86-apt-progress", daemon=True)
    watcher.start()
    try:
        proc = _run(cmd, check=False, timeout=1800, cwd=work)
        stop.set()
        watcher.join()
        new = sorted(work.glob(f"{pkg.name}_*.deb"))
        if proc.returncode != 0 or not new:
            last = ([ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.startswith(("E:", "Err"))]
                    or proc.stderr.strip().splitlines()
                    or [f"exit {proc.returncode}, no package file appeared"])[-1]
            progress.finish("failed")
            raise GuestBuildError(f"guest build: apt-get download {pkg.name}:{ARCH}={pkg.version} failed: {last}")
        final = dest / new[-1].name
        os.replace(new[-1], final)
    finally:
        stop.set()
        shutil.rmtree(work, ignore_errors=True)
    progress.update(pkg.size, force=True)
    progress.finish()
    return final
