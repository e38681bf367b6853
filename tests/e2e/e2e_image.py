"""The booted-Linux state image the e2e tests restore from: machine text, cache key, boot.

A boot to the shell costs ~7 G guest instructions (~4-5 minutes here), so it happens once
per cache key and the result is kept as a state image in the user cache
(``<pyv86 cache>/e2e/linux-<key>.pyv86state``). The key is a sha256 over the kernel and
initramfs bytes, the CPU interpreter's cache key, the installed pyv86 and pyv86-ne2k
versions and the machine text below (cmdline, MAC, RAM): anything that could make an
old image wrong changes it. Every test builds a machine from :func:`machine_text` with
its own netdev URL (backends are not in an image) and restores.

Run ``python tests/e2e/e2e_image.py`` to build the image outside pytest (prints timings).
"""
from __future__ import annotations

import hashlib
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

RECIPE = 2  # bump when the boot procedure below changes
SAVED_MAC = "52:54:00:e2:e0:01"
BASE_IP = "10.0.2.15"
MEMORY = "128M"
# Virtual: guest time = executed instructions, and idle time passes in real time while a
# netdev is connected. Realtime mode loses PIT one-shots (notes: platform-bugs-from-e2e.md).
CLOCK = "virtual"
KERNEL = "vmlinuz"
INITRD = "initramfs.cpio.gz"
BOOT_TIMEOUT_S = 1500.0


def guest_files() -> tuple[Path, Path]:
    """Kernel and initramfs of the built guest image; fails (not skips) when missing."""
    from pyv86.paths import guest_dir

    kernel, initrd = guest_dir() / KERNEL, guest_dir() / INITRD
    missing = [str(p) for p in (kernel, initrd) if not p.is_file()]
    if missing:
        raise AssertionError(f"e2e: the Linux guest image is missing ({', '.join(missing)}); "
                             "build it with `pyv86 guest build` (or `make guest`)")
    return kernel, initrd


def cmdline() -> str:
    from pyv86.boot.linux import DEFAULT_CMDLINE

    return f"{DEFAULT_CMDLINE} pyv86.dhcp=0 pyv86.ip={BASE_IP}/24 pyv86.hostname=e2e"


def machine_text(name: str, url: str = "null:", *, pcap: str | None = None,
                 extra_state: str = "") -> str:
    """Machine-file text of an e2e guest: 128 MiB, one ne2k-pci on ``url``."""
    kernel, initrd = guest_files()
    lines = [
        "version = 1", f'name = "{name}"',
        "[machine]", f'memory = "{MEMORY}"', f'clock = "{CLOCK}"',
        "[boot]", f'kernel = "{kernel}"', f'initrd = "{initrd}"', f'cmdline = "{cmdline()}"',
        "[device.net0]", 'type = "ne2k-pci"', 'netdev = "lan"', f'mac = "{SAVED_MAC}"',
        "[netdev.lan]", f'url = "{url}"',
    ]
    if pcap:
        lines.append(f'pcap = "{pcap}"')
    if extra_state:
        lines += ["[state]", extra_state]
    return "\n".join(lines) + "\n"


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "none"


def image_key() -> str:
    from pyv86.cpu import build

    kernel, initrd = guest_files()
    h = hashlib.sha256()
    for part in (kernel.read_bytes(), initrd.read_bytes(), build.cache_key().encode(),
                 _version("pyv86").encode(), _version("pyv86-ne2k").encode(),
                 machine_text("e2e").replace(str(kernel), KERNEL).replace(str(initrd), INITRD).encode(),
                 str(RECIPE).encode()):
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()


def image_path() -> Path:
    from pyv86.paths import cache_dir

    return cache_dir("e2e", f"linux-{image_key()[:32]}.pyv86state")


def _wait_ready_showing_progress(guest: object, t0: float) -> None:
    """Wait for PYV86-READY; every 30 s tell stderr (uncaptured) where the boot is."""
    from pyv86.testing.guest import GuestTimeout

    while True:
        try:
            guest.wait_ready(30)  # type: ignore[attr-defined]
            return
        except GuestTimeout:
            elapsed = time.monotonic() - t0
            if elapsed > BOOT_TIMEOUT_S or not guest.running:  # type: ignore[attr-defined]
                raise
            last = guest.tail(1).strip()[:100]  # type: ignore[attr-defined]
            print(f"e2e: booting the Linux guest once for the state image: {elapsed:.0f} s; "
                  f"console: {last}", file=sys.__stderr__, flush=True)


def boot_and_save(path: Path) -> dict[str, float]:
    """Boot the guest to its shell, check it answers, save to ``path``; returns timings."""
    from pyv86.testing.guest import GuestMachine

    t0 = time.monotonic()
    guest = GuestMachine.from_toml(machine_text("e2e-boot"), name="e2e-boot")
    built = time.monotonic() - t0
    try:
        guest.start()
        _wait_ready_showing_progress(guest, t0)
        booted = time.monotonic() - t0
        out = guest.sh("cat /proc/uptime; ip -4 addr show dev eth0", timeout=120)
        if f"inet {BASE_IP}/24" not in out:
            raise AssertionError(f"e2e boot: eth0 does not have {BASE_IP}/24:\n{out}")
        guest.stop()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        try:
            saved = guest.save(tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    finally:
        guest.close()
    return {"build_s": built, "boot_s": booted, "save_s": saved.seconds,
            "image_bytes": float(saved.image_bytes), "total_s": time.monotonic() - t0}


def ensure_image(rebuild: bool = False) -> tuple[Path, dict[str, float] | None]:
    """The cached image, booting once if it is absent; returns (path, timings or None)."""
    path = image_path()
    if path.is_file() and not rebuild:
        return path, None
    log.warning("e2e: no cached Linux state image for this kernel/CPU/pyv86; booting once "
                "(~5 minutes) to make %s", path)
    for old in path.parent.glob("linux-*.pyv86state"):
        if old != path:
            old.unlink(missing_ok=True)  # stale keys: never restored again
    return path, boot_and_save(path)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    where, timings = ensure_image(rebuild="--rebuild" in sys.argv)
    print(where, timings)
