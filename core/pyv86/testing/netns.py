"""Throw-away network namespaces for tests: create them, work inside them, always remove them.

This module owns every host-network step the test suites take (the e2e, interop, passt and
relay suites all build on it):

- :func:`require_netns` / :func:`require_tool`: root, ``ip`` and the other host programs a test
  needs, or a :class:`NetnsError` naming the program and its Debian package;
- :class:`Netns`: one namespace (``lo`` up) with ``ip -n`` commands, processes started inside it,
  threads and sockets switched into it, a dead-end default route and wrapper scripts that run a
  program confined to it; :meth:`Netns.close` ends those processes and deletes the namespace;
- :class:`Namespaces`: a test's group of namespaces and interface names sharing one random tag;
- :class:`Lan`: a namespace with a bridge at ``SUBNET.1/24``, dnsmasq leasing addresses on it
  and, on request, ``pyv86 relay serve`` uplinked to the bridge through a TAP.

Traffic stays on loopback or inside the namespaces made here: dnsmasq binds to the bridge
only, the relay listens on the namespace's own 127.0.0.1, the dead-end route leads to a veth
whose far end has no address, and HTTP fetches run on a thread inside the namespace with
proxies off. Whoever creates a namespace closes it (``with``, ``try/finally`` or a fixture),
also when the test fails.

Nothing runs at import time; only the standard library is used.
"""
from __future__ import annotations

import ctypes
import json
import logging
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Callable, Self, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/var/run/netns"
COMMAND_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
DHCP_START_TIMEOUT_S = 15.0
ANNOUNCE_TIMEOUT_S = 30.0
# An address and a gateway for namespaces whose program insists on a default route (passt
# copies both): the gateway is the far end of a veth pair that has no address, so nothing
# sent there is answered or leaves the namespace.
DEAD_END_ADDR = "192.168.77.2"
DEAD_END_GATEWAY = "192.168.77.1"
RELAY_ANNOUNCE = re.compile(r"relay: serving (ws://127\.0\.0\.1:(\d+)/)")

_libc: ctypes.CDLL | None = None


class NetnsError(AssertionError):
    """A host program is missing or a namespace could not be set up (an AssertionError, so
    pytest shows the one-line message plainly)."""


# -- host checks ------------------------------------------------------------------------------
def find_tool(name: str) -> str | None:
    """The path of program ``name`` on PATH or in /usr/sbin, /sbin (not on a user's PATH)."""
    return shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.access(p, os.X_OK)), None)


def require_tool(tool: str, package: str, who: str) -> str:
    """The path of ``tool``; :class:`NetnsError` naming its Debian package if it is missing."""
    path = find_tool(tool)
    if path is None:
        raise NetnsError(f"{who}: needs {tool}, which is not installed; apt-get install {package}")
    return path


def require_netns(who: str) -> None:
    """Check that this process may create namespaces and TAP devices: root and iproute2."""
    if os.geteuid() != 0:
        raise NetnsError(f"{who}: creates network namespaces and TAP devices (ip netns); run it as root")
    require_tool("ip", "iproute2", who)


# -- commands ---------------------------------------------------------------------------------
def sh(*cmd: str, check: bool = True, timeout: float = COMMAND_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """Run ``cmd``; with ``check``, a non-zero exit is a :class:`NetnsError` with its stderr."""
    try:
        done = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise NetnsError(f"{' '.join(cmd)}: still running after {timeout:g} s") from None
    if check and done.returncode:
        raise NetnsError(f"{' '.join(cmd)}: exit {done.returncode}: {done.stderr.strip()}")
    return done


def stop_process(proc: subprocess.Popen[Any], timeout: float = STOP_TIMEOUT_S) -> None:
    """Terminate ``proc`` if it still runs; kill it if it does not end within ``timeout``."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


def run_in_netns(name: str, fn: Callable[[], T]) -> T:
    """Call ``fn`` on a new thread switched into namespace ``name``; return its result.

    Sockets the thread creates, and threads it starts, stay in the namespace; an exception
    is raised again on the caller's thread.
    """
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    libc = _libc
    box: list[T] = []
    error: list[BaseException] = []

    def body() -> None:
        try:
            fd = os.open(f"{NETNS_DIR}/{name}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({name}): {os.strerror(err)}")
            finally:
                os.close(fd)
            box.append(fn())
        except BaseException as exc:  # noqa: BLE001 - re-raised on the caller's thread
            error.append(exc)

    thread = threading.Thread(target=body, name=f"in-{name}")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return box[0]


# -- one namespace ----------------------------------------------------------------------------
class Netns:
    """Network namespace ``name``, created with ``lo`` up; :meth:`close` removes it.

    Processes started with :meth:`popen` belong to it and are ended by :meth:`close`.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.procs: list[subprocess.Popen[Any]] = []
        self._created = False
        sh("ip", "netns", "add", name)
        self._created = True
        log.debug("netns %s: created", name)
        try:
            self.ip("link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    @property
    def prefix(self) -> list[str]:
        """The argv prefix that runs a command inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    def ip(self, *args: str) -> str:
        """``ip -n NAME ARGS``; its stdout."""
        return sh("ip", "-n", self.name, *args).stdout

    def run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` inside the namespace and wait for it."""
        return sh(*self.prefix, *cmd, check=check)

    def popen(self, *cmd: str, **kw: Any) -> subprocess.Popen[Any]:
        """Start ``cmd`` inside the namespace (text mode, stdin from /dev/null unless given)."""
        kw.setdefault("text", True)
        kw.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.Popen([*self.prefix, *cmd], **kw)
        self.procs.append(proc)
        return proc

    def popen_announced(self, *cmd: str, pattern: re.Pattern[str], what: str,
                        timeout: float = ANNOUNCE_TIMEOUT_S, **kw: Any) -> tuple[subprocess.Popen[str], re.Match[str]]:
        """Start ``cmd`` with stderr piped and wait for its first stderr line to match ``pattern``."""
        proc = self.popen(*cmd, stderr=subprocess.PIPE, **kw)
        assert proc.stderr is not None
        ready, _, _ = select.select([proc.stderr], [], [], timeout)
        line = proc.stderr.readline() if ready else ""
        found = pattern.search(line)
        if found is None:
            rest = line + (proc.stderr.read() if proc.poll() is not None else "")
            raise NetnsError(f"netns {self.name}: {what} did not announce itself within {timeout:g} s: "
                             f"{rest.strip()[-400:]!r}")
        return proc, found

    def run_in(self, fn: Callable[[], T]) -> T:
        """Call ``fn`` on a new thread switched into the namespace (see :func:`run_in_netns`)."""
        return run_in_netns(self.name, fn)

    def socket(self, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM) -> socket.socket:
        """A socket that lives in the namespace."""
        return self.run_in(lambda: socket.socket(family, type))

    def fetch(self, url: str, timeout: float = 10.0) -> bytes:
        """GET ``url`` from inside the namespace (no proxies), e.g. a server on its 127.0.0.1."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

        def get() -> bytes:
            with opener.open(url, timeout=timeout) as reply:
                return reply.read()  # type: ignore[no-any-return]

        return self.run_in(get)

    def udp_listening(self, port: int) -> bool:
        """Whether some socket in the namespace is bound to UDP ``port``."""
        return f":{port} " in self.run("ss", "-Huln").stdout

    def add_bridge(self, bridge: str, cidr: str) -> None:
        """Create bridge ``bridge`` with address ``cidr`` and bring it up."""
        self.ip("link", "add", bridge, "type", "bridge")
        self.ip("addr", "add", cidr, "dev", bridge)
        self.ip("link", "set", bridge, "up")

    def enslave(self, ifname: str, bridge: str) -> None:
        """Put interface ``ifname`` (in the namespace) on ``bridge`` and bring it up."""
        self.ip("link", "set", ifname, "master", bridge)
        self.ip("link", "set", ifname, "up")

    def add_dead_end_route(self, address: str = DEAD_END_ADDR, gateway: str = DEAD_END_GATEWAY) -> None:
        """Give the namespace ``address``/24 and a default route via ``gateway``, which never answers.

        Both are on veth ``pv0``, whose peer ``pv1`` (also in the namespace) has no address:
        enough for a program that needs an uplink to start, while it reaches only the
        namespace's loopback.
        """
        self.ip("link", "add", "pv0", "type", "veth", "peer", "name", "pv1")
        self.ip("addr", "add", f"{address}/24", "dev", "pv0")
        self.ip("link", "set", "pv0", "up")
        self.ip("link", "set", "pv1", "up")
        self.ip("route", "add", "default", "via", gateway)

    def confined(self, program: str, folder: Path) -> Path:
        """Write ``folder/<program's name>``, a script running ``program`` inside the namespace.

        Returns ``folder``: put it first on PATH and whoever starts the program by name gets
        the confined one.
        """
        folder.mkdir(parents=True, exist_ok=True)
        script = folder / Path(program).name
        script.write_text(f'#!/bin/sh\nexec ip netns exec {self.name} {program} "$@"\n')
        script.chmod(0o755)
        return folder

    def close(self) -> None:
        """End the processes started here (last first) and delete the namespace; idempotent."""
        for proc in reversed(self.procs):
            try:
                stop_process(proc)
            except Exception:  # noqa: BLE001 - the namespace must still go
                log.exception("netns %s: could not stop %s", self.name, proc.args)
        self.procs.clear()
        if self._created:
            sh("ip", "netns", "del", self.name, check=False)
            self._created = False
            log.debug("netns %s: deleted", self.name)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}{'' if self._created else ' (deleted)'}>"


class Namespaces:
    """A test's namespaces and interface names, unique through one random tag; :meth:`cleanup`
    (or leaving a ``with`` block) removes every namespace made or adopted here."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:6]
        self.spaces: dict[str, Netns] = {}

    @property
    def names(self) -> list[str]:
        return list(self.spaces)

    def ifname(self, base: str) -> str:
        """``base`` plus the tag: an interface name no other test run uses (max 15 characters)."""
        name = f"{base}{self.tag}"
        if len(name) > 15:
            raise NetnsError(f"netns: interface name {name!r} is longer than 15 characters; "
                             "use a shorter base")
        return name

    def nsname(self, base: str) -> str:
        return f"p7{base}-{self.tag}"

    def add(self, base: str) -> str:
        """Create namespace ``p7BASE-TAG``; returns its name."""
        return self.adopt(Netns(self.nsname(base))).name

    def adopt(self, ns: Netns) -> Netns:
        """Remove ``ns`` with the others on :meth:`cleanup`."""
        self.spaces[ns.name] = ns
        return ns

    def ip(self, ns: str, *args: str) -> str:
        return self.spaces[ns].ip(*args)

    def run(self, ns: str, *cmd: str) -> subprocess.CompletedProcess[str]:
        return self.spaces[ns].run(*cmd)

    def popen(self, ns: str, *cmd: str, **kw: Any) -> subprocess.Popen[Any]:
        return self.spaces[ns].popen(*cmd, **kw)

    def cleanup(self) -> None:
        for ns in reversed(list(self.spaces.values())):
            ns.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


# -- a LAN: bridge + dnsmasq (+ relay) --------------------------------------------------------
class Relay:
    """``pyv86 relay serve`` running in a namespace (see :meth:`Lan.start_relay`)."""

    def __init__(self, ns: Netns, proc: subprocess.Popen[str], announce: str, url: str, port: int) -> None:
        self.ns = ns
        self.proc = proc
        self.announce = announce
        self.url = url
        self.port = port

    def stats(self) -> dict[str, Any]:
        """The relay's ``/stats`` JSON, fetched from inside the namespace."""
        return json.loads(self.ns.fetch(f"http://127.0.0.1:{self.port}/stats"))  # type: ignore[no-any-return]


class Lan(Netns):
    """Namespace ``name`` with bridge ``bridge`` at ``SUBNET.1/24`` and, unless ``dhcp`` is
    False, dnsmasq leasing ``SUBNET.first`` to ``SUBNET.last`` on it.

    dnsmasq's files are ``FILES.leases``, ``FILES.log`` and ``FILES.pid``. If setting up
    fails, the namespace is removed before the error propagates.
    """

    def __init__(self, name: str, files: Path, *, subnet: str, bridge: str = "br0",
                 dhcp_range: tuple[int, int] = (50, 99), dhcp: bool = True,
                 dnsmasq: str | None = None, who: str = "netns") -> None:
        self.subnet = subnet
        self.server = f"{subnet}.1"
        self.bridge = bridge
        self.dhcp_range = dhcp_range
        self.leases = Path(f"{files}.leases")
        self.log_path = Path(f"{files}.log")
        self.pid_path = Path(f"{files}.pid")
        self.who = who
        self.dnsmasq: subprocess.Popen[Any] | None = None
        super().__init__(name)
        try:
            self.add_bridge(bridge, f"{self.server}/24")
            if dhcp:
                self.start_dnsmasq(dnsmasq or require_tool("dnsmasq", "dnsmasq-base", who))
        except BaseException:
            self.close()
            raise

    def start_dnsmasq(self, dnsmasq: str) -> None:
        """Start dnsmasq on the bridge (DHCP only, no DNS) and wait until it has bound port 67."""
        first, last = self.dhcp_range
        with open(self.log_path, "w") as log_file:
            self.dnsmasq = self.popen(
                dnsmasq, "--no-daemon", "--conf-file=/dev/null", f"--interface={self.bridge}",
                "--bind-interfaces", "--except-interface=lo", "--port=0",
                f"--dhcp-range={self.subnet}.{first},{self.subnet}.{last},255.255.255.0,1h",
                f"--dhcp-leasefile={self.leases}", f"--pid-file={self.pid_path}",
                "--user=root", "--group=root", "--log-dhcp",
                stdout=log_file, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + DHCP_START_TIMEOUT_S
        while not self.udp_listening(67):
            if self.dnsmasq.poll() is not None:
                raise NetnsError(f"{self.who}: dnsmasq in {self.name} exited with status "
                                 f"{self.dnsmasq.returncode}; its log:\n{self.dnsmasq_log()[-1500:]}")
            if time.monotonic() > deadline:
                raise NetnsError(f"{self.who}: dnsmasq in {self.name} did not bind UDP port 67 within "
                                 f"{DHCP_START_TIMEOUT_S:g} s; its log:\n{self.dnsmasq_log()[-1500:]}")
            time.sleep(0.1)

    def start_relay(self, tap: str, port: int = 0) -> Relay:
        """Run ``pyv86 relay serve`` on the namespace's 127.0.0.1, uplinked to the bridge
        through TAP ``tap``; returns once it has announced its URL."""
        pyv86 = str(Path(sys.executable).with_name("pyv86"))
        proc, found = self.popen_announced(pyv86, "relay", "serve", "--port", str(port), "--tap", tap,
                                           "--bridge", self.bridge, stdout=subprocess.DEVNULL,
                                           pattern=RELAY_ANNOUNCE, what="pyv86 relay serve")
        return Relay(self, proc, found.string, found.group(1), int(found.group(2)))

    def enslave(self, ifname: str, bridge: str | None = None) -> None:
        """Put ``ifname`` on the LAN's bridge (or ``bridge``) and bring it up."""
        super().enslave(ifname, bridge or self.bridge)

    def dnsmasq_log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def lease_text(self) -> str:
        """dnsmasq's lease file ('' before the first lease)."""
        try:
            return self.leases.read_text()
        except OSError:
            return ""

    def lease_macs(self) -> dict[str, str]:
        """MAC (lower case) -> leased address, from dnsmasq's lease file."""
        out = {}
        for line in self.lease_text().splitlines():
            parts = line.split()
            if len(parts) >= 3:
                out[parts[1].lower()] = parts[2]
        return out


__all__ = [
    "DEAD_END_ADDR", "DEAD_END_GATEWAY", "Lan", "Namespaces", "Netns", "NetnsError", "Relay",
    "find_tool", "require_netns", "require_tool", "run_in_netns", "sh", "stop_process",
]
