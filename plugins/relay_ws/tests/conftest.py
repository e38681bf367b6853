"""Fixtures for the relay_ws tests: relay servers on loopback and throw-away namespaces."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from relayhelp import Namespaces, require_netns  # noqa: E402

from pyv86_relay_ws.server import RelayServer  # noqa: E402


class DirectMachine:
    """Stands in for a Machine: runs handed-over functions at once, on the caller's thread."""

    def call_soon_threadsafe(self, fn: Callable[[], None]) -> None:
        fn()


@pytest.fixture
def relay() -> Iterator[Callable[..., RelayServer]]:
    servers: list[RelayServer] = []

    def make(**kw: Any) -> RelayServer:
        kw.setdefault("port", 0)
        server = RelayServer(**kw).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def direct_machine() -> DirectMachine:
    return DirectMachine()


@pytest.fixture
def netns() -> Iterator[Namespaces]:
    require_netns()
    spaces = Namespaces()
    try:
        yield spaces
    finally:
        spaces.cleanup()
