"""A throw-away network namespace with a bridge and dnsmasq, for guests to get DHCP leases.

Nothing here touches the host's own network: the namespace, its bridge, its TAP devices
and dnsmasq are created by the test and removed at the end. Guests reach the bridge
through ``tap:NAME`` netdevs opened *inside* the namespace and put on the bridge (the machine is built
on a thread switched into it with :meth:`Lan.run_in`, so the TAP is created there), a
``hub:`` bridged in-process to such a TAP (:meth:`Lan.uplink_hub`), or a relay server
running in the namespace.
"""
from __future__ import annotations

import ctypes
import itertools
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable

CLONE_NEWNET = 0x40000000
_ids = itertools.count(1)


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if check and done.returncode:
        raise AssertionError(f"{' '.join(cmd)}: exit {done.returncode}: {done.stderr.strip()}")
    return done


def require(tool: str, package: str) -> str:
    path = shutil.which(tool) or next((p for p in (f"/usr/sbin/{tool}", f"/sbin/{tool}")
                                       if Path(p).exists()), None)
    if path is None:
        raise AssertionError(f"e2e: this test needs {tool} (Debian package {package})")
    return path


class Lan:
    """Namespace ``name`` with bridge ``br0`` at ``10.99.0.1/24`` and dnsmasq serving 50-99."""

    SERVER = "10.99.0.1"
    PREFIX = "10.99.0."

    def __init__(self, tmp: Path, *, dhcp: bool = True) -> None:
        if os.geteuid() != 0:
            raise AssertionError("e2e: network namespace tests need root (ip netns)")
        require("ip", "iproute2")
        self.name = f"e2e-{os.getpid()}-{next(_ids)}"
        self.tmp = tmp
        self.bridge = "br0"
        self.leases = tmp / f"{self.name}.leases"
        self._procs: list[subprocess.Popen[str]] = []
        self._closers: list[Callable[[], None]] = []
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._taps = itertools.count(1)
        sh("ip", "netns", "add", self.name)
        try:
            self.ip("link", "set", "lo", "up")
            self.ip("link", "add", self.bridge, "type", "bridge")
            self.ip("addr", "add", f"{self.SERVER}/24", "dev", self.bridge)
            self.ip("link", "set", self.bridge, "up")
            if dhcp:
                self._start_dnsmasq()
        except BaseException:
            self.close()
            raise

    def ip(self, *args: str) -> str:
        return sh("ip", "-n", self.name, *args).stdout

    def popen(self, *cmd: str, **kw: Any) -> subprocess.Popen[str]:
        proc = subprocess.Popen(["ip", "netns", "exec", self.name, *cmd], text=True, **kw)
        self._procs.append(proc)
        return proc

    def _start_dnsmasq(self) -> None:
        dnsmasq = require("dnsmasq", "dnsmasq-base")
        self.dnsmasq_log = self.tmp / f"{self.name}.dnsmasq.log"
        proc = self.popen(dnsmasq, "--no-daemon", "--conf-file=/dev/null", f"--interface={self.bridge}",
                          "--bind-interfaces", "--except-interface=lo", "--port=0",
                          f"--dhcp-range={self.PREFIX}50,{self.PREFIX}99,255.255.255.0,1h",
                          f"--dhcp-leasefile={self.leases}", "--user=root", "--group=root",
                          "--log-dhcp", f"--pid-file={self.tmp / (self.name + '.pid')}",
                          stdout=open(self.dnsmasq_log, "w"), stderr=subprocess.STDOUT)
        end = time.monotonic() + 15
        while ":67 " not in sh("ip", "netns", "exec", self.name, "ss", "-Huln").stdout:
            if proc.poll() is not None or time.monotonic() > end:
                raise AssertionError(f"e2e: dnsmasq did not start:\n{self.dnsmasq_log.read_text()}")
            time.sleep(0.1)

    def lease_macs(self) -> dict[str, str]:
        """MAC -> leased address, from dnsmasq's lease file."""
        if not self.leases.exists():
            return {}
        out = {}
        for line in self.leases.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3:
                out[parts[1].lower()] = parts[2]
        return out

    def run_in(self, fn: Callable[[], Any]) -> Any:
        """Call ``fn`` on a new thread switched into the namespace (threads it starts stay there)."""
        box: list[Any] = []
        error: list[BaseException] = []

        def body() -> None:
            try:
                fd = os.open(f"/var/run/netns/{self.name}", os.O_RDONLY)
                try:
                    if self._libc.setns(fd, CLONE_NEWNET) != 0:
                        err = ctypes.get_errno()
                        raise OSError(err, f"setns({self.name}): {os.strerror(err)}")
                finally:
                    os.close(fd)
                box.append(fn())
            except BaseException as exc:  # noqa: BLE001 - re-raised on the caller's thread
                error.append(exc)

        thread = threading.Thread(target=body, name=f"in-{self.name}")
        thread.start()
        thread.join()
        if error:
            raise error[0]
        return box[0]

    def tap_name(self) -> str:
        """A fresh TAP name; open ``tap:NAME`` inside the namespace, then :meth:`enslave` it.

        (``tap:NAME?bridge=BR`` cannot be used from a thread that only switched its network
        namespace: the backend looks the bridge up in /sys, which still shows the host's.)
        """
        return f"e2etap{next(self._taps)}"

    def enslave(self, ifname: str) -> None:
        """Put interface ``ifname`` (in the namespace) on the bridge and bring it up."""
        self.ip("link", "set", ifname, "master", self.bridge)
        self.ip("link", "set", ifname, "up")

    def uplink_hub(self, url: str) -> Any:
        """Join ``hub:`` URL ``url`` to the bridge through a TAP in the namespace (in-process)."""
        from pyv86.net.hub import open_hub
        from pyv86_relay_tap.tap import TapBackend

        name = self.tap_name()
        tap = self.run_in(lambda: TapBackend(f"tap:{name}", None))
        self.enslave(name)
        port = open_hub(url, None)
        port.set_receiver(tap.send)
        tap.set_receiver(port.send)

        def close() -> None:
            port.close()
            tap.close()

        self._closers.append(close)
        return tap

    def passt_wrapper(self) -> Path:
        """A folder whose ``passt`` runs the real passt inside this namespace.

        The namespace gets what passt needs to start — an address (192.168.77.2/24 on a veth
        whose far end leads nowhere) and a default route — so whatever the guest asks for,
        passt can reach nothing but the namespace's own loopback.
        """
        real = require("passt", "passt")
        self.ip("link", "add", "pv0", "type", "veth", "peer", "name", "pv1")
        self.ip("addr", "add", "192.168.77.2/24", "dev", "pv0")
        self.ip("link", "set", "pv0", "up")
        self.ip("link", "set", "pv1", "up")
        self.ip("route", "add", "default", "via", "192.168.77.1")
        folder = self.tmp / f"{self.name}-bin"
        folder.mkdir(exist_ok=True)
        script = folder / "passt"
        script.write_text(f'#!/bin/sh\nexec ip netns exec {self.name} {real} "$@"\n')
        script.chmod(0o755)
        return folder

    def close(self) -> None:
        for close in reversed(self._closers):
            try:
                close()
            except Exception:  # noqa: BLE001
                pass
        for proc in self._procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        sh("ip", "netns", "del", self.name, check=False)
