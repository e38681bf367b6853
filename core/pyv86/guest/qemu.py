"""Booting the guest image under QEMU TCG: the reference peer for tests and ``benchmarks/boot.py``.

:class:`QemuGuest` starts ``qemu-system-i386 -M pc -cpu pentium3 -m 128`` with the image's
kernel and initramfs, an RTL8029 (``ne2k_pci``) on QEMU's user-mode network with
``restrict=on`` (the guest reaches QEMU's built-in DHCP/DNS only, nothing outside the QEMU
process; no host forwards), and the serial console on a pipe. A reader thread collects the
console; callers wait for text, type commands and close. Nothing here is used by pyv86's
own emulation.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

from pyv86.errors import Pyv86Error
from pyv86.guest.scripts import READY_MARKER
from pyv86.guest.shell import ShellCommands

log = logging.getLogger(__name__)

QEMU_BINARY = "qemu-system-i386"
DEFAULT_CMDLINE = "console=ttyS0 acpi=off nolapic"
"""Kernel command line used when the caller gives none (the pyv86 machine file's is preferred)."""


class QemuError(Pyv86Error):
    """QEMU is missing, failed to start, exited early or the guest did not reach a marker."""


def qemu_binary() -> str:
    path = shutil.which(QEMU_BINARY)
    if path is None:
        raise QemuError(f"{QEMU_BINARY}: not found; install Debian's qemu-system-x86 "
                        "(`apt-get install qemu-system-x86`, .ci/run does)")
    return path


USER_NETDEV = "user,restrict=on"
"""QEMU's user-mode network with no way out of the QEMU process (DHCP/DNS answered inside)."""


def qemu_command(kernel: Path, initrd: Path, cmdline: str = DEFAULT_CMDLINE,
                 memory_mib: int = 128, network: bool = True, netdev: str = USER_NETDEV,
                 mac: str | None = None) -> list[str]:
    """The QEMU command line; ``netdev`` is a ``-netdev`` spec without its id (e.g.
    ``socket,listen=127.0.0.1:5555``) and ``mac`` the NIC's address (QEMU's default else)."""
    cmd = [qemu_binary(), "-M", "pc", "-cpu", "pentium3", "-m", str(memory_mib),
           "-accel", "tcg", "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
           "-monitor", "none", "-kernel", str(kernel), "-initrd", str(initrd), "-append", cmdline]
    if network:
        nic = "ne2k_pci,netdev=n0,romfile=" + (f",mac={mac}" if mac else "")
        cmd += ["-netdev", f"{netdev},id=n0", "-device", nic]
    return cmd


class QemuGuest(ShellCommands):
    """A running QEMU with the guest image; use as a context manager."""

    def __init__(self, kernel: Path, initrd: Path, cmdline: str = DEFAULT_CMDLINE,
                 memory_mib: int = 128, network: bool = True, netdev: str = USER_NETDEV,
                 mac: str | None = None) -> None:
        for path in (kernel, initrd):
            if not Path(path).is_file():
                raise QemuError(f"{path}: no such file; run `pyv86 guest build`")
        self.command = qemu_command(Path(kernel), Path(initrd), cmdline, memory_mib, network,
                                    netdev, mac)
        self._output = bytearray()
        self._cond = threading.Condition()
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self.started_at = 0.0

    def __enter__(self) -> QemuGuest:
        self.start()
        return self

    @property
    def pid(self) -> int | None:
        """The QEMU process's id while it runs (e.g. to pin it to a host CPU)."""
        return self._proc.pid if self._proc is not None else None

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        log.debug("starting %s", " ".join(self.command))
        self.started_at = time.monotonic()
        self._proc = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        self._reader = threading.Thread(target=self._read, name="pyv86-qemu-console", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        while True:
            chunk = os.read(fd, 65536)
            with self._cond:
                if not chunk:
                    self._cond.notify_all()
                    return
                self._output += chunk
                self._cond.notify_all()

    @property
    def output(self) -> str:
        with self._cond:
            return self._output.decode("utf-8", "replace")

    def wait_for(self, pattern: str | re.Pattern[str], timeout_s: float, start: int = 0) -> re.Match[str]:
        """Wait until ``pattern`` (a literal or compiled regex) appears in the console output
        at or after character ``start``; raises QemuError with the console tail on timeout/exit."""
        regex = pattern if isinstance(pattern, re.Pattern) else re.compile(re.escape(pattern))
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                text = self._output.decode("utf-8", "replace")
                m = regex.search(text, start)
                if m:
                    return m
                remaining = deadline - time.monotonic()
                exited = self._proc is not None and self._proc.poll() is not None and \
                    (self._reader is None or not self._reader.is_alive())
                if remaining <= 0 or exited:
                    tail = "\n".join(text.splitlines()[-15:])
                    why = (f"QEMU exited with status {self._proc.returncode}" if exited and self._proc
                           else f"not seen within {timeout_s:.0f} s")
                    raise QemuError(f"qemu guest: {regex.pattern!r} {why}; console tail:\n{tail}")
                self._cond.wait(min(remaining, 0.5))

    def wait_ready(self, timeout_s: float = 120) -> float:
        """Seconds from process start until the ``PYV86-READY`` line appeared."""
        self.wait_for(re.compile(rf"^{READY_MARKER}\r?$", re.M), timeout_s)
        return time.monotonic() - self.started_at

    def send(self, text: str) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(text.encode())
        self._proc.stdin.flush()

    def wait_exit(self, timeout_s: float) -> int:
        """Wait for QEMU to exit on its own (``-no-reboot`` turns a guest reboot into an exit)."""
        assert self._proc is not None
        try:
            return self._proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            raise QemuError(f"qemu guest: still running after {timeout_s:.0f} s; console tail:\n"
                            + "\n".join(self.output.splitlines()[-10:])) from None

    def close(self, timeout_s: float = 10) -> int | None:
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            try:
                proc.terminate()
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdin, proc.stdout):
            try:
                if stream:
                    stream.close()
            except OSError:
                pass
        if self._reader is not None:
            self._reader.join(2)
        return proc.returncode
