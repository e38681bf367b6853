"""Fixtures for the passt backend tests: a sealed network namespace for passt, a running machine.

Every passt these tests start runs inside a network namespace the tests create (``lo``
plus a veth pair whose far end leads nowhere, holding passt's template address and
default route), through a ``passt`` wrapper script put first on PATH. So whatever a test
frame asks for, passt can reach nothing but that namespace's loopback; host-side test
peers (HTTP servers, clients of port forwards) open their sockets in the same namespace.
"""
from __future__ import annotations

import ctypes
import os
import queue
import shutil
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

CLONE_NEWNET = 0x40000000
TEMPLATE_ADDR = "192.168.77.2"
TEMPLATE_GW = "192.168.77.1"


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


class Netns:
    """A named network namespace; :meth:`socket` makes sockets that live in it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._libc = ctypes.CDLL(None, use_errno=True)

    def run_in(self, fn: Callable[[], Any]) -> Any:
        """Call ``fn`` on a fresh thread switched into the namespace; return its result."""
        result: list[Any] = []
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
                result.append(fn())
            except BaseException as exc:  # noqa: BLE001 - re-raised on the caller's thread
                error.append(exc)

        t = threading.Thread(target=body)
        t.start()
        t.join()
        if error:
            raise error[0]
        return result[0]

    def socket(self, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM) -> socket.socket:
        return self.run_in(lambda: socket.socket(family, type))  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def passt_netns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Netns]:
    if os.geteuid() != 0:
        pytest.fail("the passt tests need root: they confine passt to a network namespace "
                    "they create (ip netns)")
    if shutil.which("ip") is None:
        pytest.fail("the passt tests need the ip command (Debian package iproute2)")
    if shutil.which("passt") is None:
        pytest.fail("the passt tests need the passt program (Debian package passt)")
    name = f"pyv86-passt-{os.getpid()}"
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        _ip("-n", name, "link", "add", "pv0", "type", "veth", "peer", "name", "pv1")
        _ip("-n", name, "addr", "add", f"{TEMPLATE_ADDR}/24", "dev", "pv0")
        _ip("-n", name, "link", "set", "pv0", "up")
        _ip("-n", name, "link", "set", "pv1", "up")
        _ip("-n", name, "route", "add", "default", "via", TEMPLATE_GW)
        yield Netns(name)
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


@pytest.fixture(scope="session")
def passt_wrapper_dir(passt_netns: Netns, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory whose ``passt`` runs the real passt inside :func:`passt_netns`."""
    real = shutil.which("passt")
    assert real is not None
    d = tmp_path_factory.mktemp("passt-bin")
    script = d / "passt"
    script.write_text(f'#!/bin/sh\nexec ip netns exec {passt_netns.name} {real} "$@"\n')
    script.chmod(0o755)
    return d


@pytest.fixture
def confined_passt(passt_wrapper_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH finds the namespace-confined passt first."""
    monkeypatch.setenv("PATH", f"{passt_wrapper_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return passt_wrapper_dir


class Running:
    """A machine running on its own thread, with a netdev whose frames land in ``.frames``."""

    def __init__(self, machine: Any, netdev: str) -> None:
        self.machine = machine
        self.backend = machine.netdevs[netdev]
        self.frames: queue.Queue[bytes] = queue.Queue()
        self.backend.set_receiver(self.frames.put)
        self.thread = threading.Thread(target=machine.run, name="machine", daemon=True)
        self.thread.start()

    def send(self, frame: bytes) -> None:
        """Send as the NIC would: on the machine thread."""
        self.machine.call_soon_threadsafe(lambda: self.backend.send(frame))

    def expect(self, match: Callable[[bytes], Any], timeout: float = 5.0, what: str = "frame") -> Any:
        """The first received frame for which ``match`` returns something truthy."""
        import time

        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {what} from passt within {timeout} s ({seen} other frames)")
            try:
                frame = self.frames.get(timeout=left)
            except queue.Empty:
                continue
            got = match(frame)
            if got:
                return got
            seen += 1

    def stop(self) -> None:
        self.machine.stop("test over")
        self.thread.join(5.0)
        assert not self.thread.is_alive(), "machine thread did not stop"


@pytest.fixture
def passt_machine(url_machine: Callable[[str], Running], confined_passt: Path) -> Callable[[str], Running]:
    """``passt_machine(url)``: :func:`url_machine` where passt runs confined to the namespace."""
    return url_machine


@pytest.fixture
def url_machine(pyv86_plugins: Any, make_machine: Any) -> Iterator[Callable[[str], Running]]:
    """``url_machine(url)``: a CPU-less machine with ``[netdev.lan] url = url``, running."""
    pyv86_plugins.load_entry_points(only=["passt"])
    runs: list[Running] = []

    def start(url: str) -> Running:
        machine = make_machine(f'[machine]\nmemory = "1M"\n[netdev.lan]\nurl = "{url}"\n')
        run = Running(machine, "lan")
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.stop()          # make_machine shuts the machine (and so passt) down afterwards
