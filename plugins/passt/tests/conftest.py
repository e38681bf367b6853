"""Fixtures for the passt backend tests: a sealed network namespace for passt, a running machine.

Every passt these tests start runs inside a network namespace the tests create (``lo``
plus a veth pair whose far end leads nowhere, holding passt's template address and
default route), through a ``passt`` wrapper script put first on PATH. So whatever a test
frame asks for, passt can reach nothing but that namespace's loopback; host-side test
peers (HTTP servers, clients of port forwards) open their sockets in the same namespace.
"""
from __future__ import annotations

import os
import queue
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from pyv86.testing.netns import Netns, require_netns, require_tool

WHO = "passt tests"


@pytest.fixture(scope="session")
def passt_netns() -> Iterator[Netns]:
    """The namespace every confined passt runs in: ``lo`` and a dead-end default route."""
    require_netns(WHO)
    require_tool("passt", "passt", WHO)
    with Netns(f"pyv86-passt-{os.getpid()}") as ns:
        ns.add_dead_end_route()
        yield ns


@pytest.fixture(scope="session")
def passt_wrapper_dir(passt_netns: Netns, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory whose ``passt`` runs the real passt inside :func:`passt_netns`."""
    return passt_netns.confined(require_tool("passt", "passt", WHO), tmp_path_factory.mktemp("passt-bin"))


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
