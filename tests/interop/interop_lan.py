"""A throw-away LAN for interop tests: one network namespace with a bridge, dnsmasq serving
DHCP on it, and ``pyv86 relay serve`` on the namespace's loopback uplinked to a TAP on the
bridge. Real emulators (v86) run inside the same namespace and join through the relay.

Nothing leaves the namespace: the relay listens on its 127.0.0.1, dnsmasq answers on the
bridge only, and :meth:`Lan.close` ends every process and deletes the namespace.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable

PYV86 = str(Path(sys.executable).with_name("pyv86"))
SUBNET = "10.86.0"
SERVER_IP = f"{SUBNET}.1"
RANGE = (50, 99)


class LanError(Exception):
    """A host tool is missing or the LAN could not be set up; the message says which."""


def _sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise LanError(f"{' '.join(cmd)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc


def _wait(cond: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


def require_host() -> str:
    """The dnsmasq binary, after checking root, iproute2 and the relay plugins."""
    if os.geteuid() != 0:
        raise LanError("this test creates a network namespace and a TAP device: run it as root")
    if shutil.which("ip") is None:
        raise LanError("this test needs iproute2 (`ip`): apt-get install iproute2")
    dnsmasq = shutil.which("dnsmasq") or ("/usr/sbin/dnsmasq" if Path("/usr/sbin/dnsmasq").exists() else None)
    if dnsmasq is None:
        raise LanError("this test needs dnsmasq: apt-get install dnsmasq-base")
    for module, dist in (("pyv86_relay_ws", "relay_ws"), ("pyv86_relay_tap", "relay_tap")):
        try:
            __import__(module)
        except ImportError:
            raise LanError(f"this test needs the {module} plugin: pip install -e plugins/{dist}") from None
    return dnsmasq


class Lan:
    """Namespace + bridge + dnsmasq + relay with a TAP uplink; ``close()`` removes it all."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        tag = uuid.uuid4().hex[:6]
        self.ns = f"p86i-{tag}"
        self.bridge, self.tap = f"i86br{tag}", f"i86up{tag}"
        self.leases = workdir / "dnsmasq.leases"
        self.procs: list[subprocess.Popen[Any]] = []
        self.relay: subprocess.Popen[str] | None = None
        self.dnsmasq: subprocess.Popen[str] | None = None
        self.port = 0
        self._created = False
        self._log: Any = None

    @property
    def relay_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    @property
    def netns_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.ns]

    def start(self, dnsmasq: str) -> Lan:
        _sh("ip", "netns", "add", self.ns)
        self._created = True
        _sh("ip", "-n", self.ns, "link", "set", "lo", "up")
        _sh("ip", "-n", self.ns, "link", "add", self.bridge, "type", "bridge")
        _sh("ip", "-n", self.ns, "addr", "add", f"{SERVER_IP}/24", "dev", self.bridge)
        _sh("ip", "-n", self.ns, "link", "set", self.bridge, "up")
        self._log = open(self.workdir / "dnsmasq.log", "w")
        self.dnsmasq = self._popen(
            dnsmasq, "--no-daemon", "--conf-file=/dev/null", f"--interface={self.bridge}",
            "--bind-interfaces", "--except-interface=lo", "--port=0",
            f"--dhcp-range={SUBNET}.{RANGE[0]},{SUBNET}.{RANGE[1]},255.255.255.0,1h",
            f"--dhcp-leasefile={self.leases}", f"--pid-file={self.workdir / 'dnsmasq.pid'}",
            "--user=root", "--group=root", "--log-dhcp",
            stdout=self._log, stderr=subprocess.STDOUT)
        if not _wait(lambda: self.dnsmasq.poll() is not None or  # type: ignore[union-attr]
                     ":67 " in _sh("ip", "netns", "exec", self.ns, "ss", "-Huln").stdout, 15):
            raise LanError("dnsmasq did not bind UDP port 67 within 15 s")
        if self.dnsmasq.poll() is not None:
            raise LanError(f"dnsmasq exited ({self.dnsmasq.returncode}): {self.dnsmasq_log()[-400:]}")
        self.relay = self._popen(PYV86, "relay", "serve", "--port", "0", "--tap", self.tap,
                                 "--bridge", self.bridge, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)
        assert self.relay.stderr is not None
        line = self.relay.stderr.readline()
        m = re.match(r"relay: serving ws://127\.0\.0\.1:(\d+)/", line)
        if not m:
            rest = line + (self.relay.stderr.read() if self.relay.poll() is not None else "")
            raise LanError(f"pyv86 relay serve did not announce itself: {rest.strip()[-400:]!r}")
        self.port = int(m.group(1))
        return self

    def _popen(self, *cmd: str, **kw: Any) -> subprocess.Popen[Any]:
        proc = subprocess.Popen([*self.netns_prefix, *cmd], stdin=subprocess.DEVNULL, **kw)
        self.procs.append(proc)
        return proc

    def dnsmasq_log(self) -> str:
        try:
            return (self.workdir / "dnsmasq.log").read_text(errors="replace")
        except OSError:
            return ""

    def lease_text(self) -> str:
        try:
            return self.leases.read_text()
        except OSError:
            return ""

    def relay_stats(self) -> dict[str, Any]:
        out = _sh("ip", "netns", "exec", self.ns, sys.executable, "-c",
                  "import urllib.request;print(urllib.request.urlopen("
                  f"'http://127.0.0.1:{self.port}/stats', timeout=10).read().decode())").stdout
        return json.loads(out)

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
        if self._log is not None:
            self._log.close()
        if self._created:
            _sh("ip", "netns", "del", self.ns, check=False)
            self._created = False
