"""Fixtures for the relay_ws tests: relay servers on loopback and throw-away namespaces."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from relayhelp import Namespaces, require_netns  # noqa: E402

from pyv86.testing.net import DirectMachine  # noqa: E402
from pyv86_relay_ws.server import RelayServer  # noqa: E402


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


class PeerRelay:
    """A scripted relay on the websockets library: records what a client sends and its
    request headers, and sends whatever a test queues (text, runts, padded frames...)."""

    def __init__(self, port: int = 0) -> None:
        import asyncio
        import threading

        self.requested_port = port
        self.port = 0
        self.received: list[Any] = []
        self.headers: list[dict[str, str]] = []
        self.subprotocols: list[Any] = []
        self._loop = asyncio.new_event_loop()
        self._conns: list[Any] = []
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()
        assert self._ready.wait(10)

    def _main(self) -> None:
        import asyncio

        from websockets.asyncio.server import serve

        async def handler(ws: Any) -> None:
            self.headers.append({k.lower(): v for k, v in ws.request.headers.raw_items()})
            self.subprotocols.append(ws.subprotocol)
            self._conns.append(ws)
            async for msg in ws:
                self.received.append(msg)

        async def main() -> None:
            async with serve(handler, "127.0.0.1", self.requested_port, compression=None) as srv:
                self.port = srv.sockets[0].getsockname()[1]
                self._stop = asyncio.Event()
                self._ready.set()
                await self._stop.wait()

        self._loop.run_until_complete(main())

    @property
    def connections(self) -> int:
        return len(self._conns)

    def send(self, msg: Any) -> None:
        import asyncio

        asyncio.run_coroutine_threadsafe(self._conns[-1].send(msg), self._loop).result(5)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.fixture
def peer_relay() -> Iterator[Callable[..., PeerRelay]]:
    peers: list[PeerRelay] = []

    def make(port: int = 0) -> PeerRelay:
        peer = PeerRelay(port)
        peers.append(peer)
        return peer

    yield make
    for peer in peers:
        peer.stop()
