"""``ws://`` and ``wss://`` netdevs: a NIC's cable plugged into a WebSocket Ethernet relay.

One Ethernet frame per binary message in both directions, the protocol of v86's relay
client, websockproxy, node-relay, wsnic, go-websockproxy and ``pyv86 relay serve``.

Threads: the backend runs its own asyncio loop on a daemon thread. The machine thread
calls :meth:`WsBackend.send`, which only appends a copy of the frame to a bounded queue
(the newest frames are kept, the oldest dropped and counted) and wakes the loop — the
frames a guest sends close together during a CPU slice when the slice ends, together
(:class:`~pyv86.net.slicebatch.SliceBatch`); it never waits for the network.
Received frames are checked (text messages ignored, runts and oversize messages dropped,
go-websockproxy's 1518-byte padding trimmed) and handed to the machine thread through the
core's bounded :class:`~pyv86.net.handoff.Handoff` (one ``machine.call_soon_threadsafe``
per batch).

The connection is opened in the background as soon as the backend exists and reopened
after every failure or close, with capped exponential backoff; each attempt is logged once
at INFO. Counters: :attr:`WsBackend.stats`.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import random
import ssl as _ssl
import threading
import time
import urllib.parse
from typing import TYPE_CHECKING, Any, Callable

import attrs

from pyv86.net.handoff import Handoff
from pyv86.net.slicebatch import SliceBatch

from pyv86_relay_ws.frames import ETH_FRAME_MAX, RUNT, TRIMMED, check_frame, redact_url

if TYPE_CHECKING:
    from pyv86.machine import Machine

log = logging.getLogger(__name__)

FrameCallback = Callable[[bytes], None]

WRITE_BATCH = 64
"""At most this many queued frames go out in one socket write (then flow control)."""

MAX_MESSAGE = 1 << 16
"""A message longer than this closes the connection (websockets refuses it); shorter
oversize messages are dropped one by one."""


@attrs.define
class _Counters:
    connects: int = 0
    disconnects: int = 0
    connect_failures: int = 0
    tx_frames: int = 0
    tx_bytes: int = 0
    tx_dropped: int = 0
    rx_frames: int = 0
    rx_bytes: int = 0
    rx_text_ignored: int = 0
    rx_runt: int = 0
    rx_oversize: int = 0
    rx_trimmed: int = 0


def parse_ws_url(url: str) -> urllib.parse.SplitResult:
    """Check a ``ws://``/``wss://`` relay URL; ValueError with a hint otherwise."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"{url!r} is not a ws:// or wss:// URL")
    if not parts.hostname:
        raise ValueError(f"{redact_url(url)!r} has no host (expected ws://HOST[:PORT]/PATH)")
    try:
        parts.port
    except ValueError:
        raise ValueError(f"{redact_url(url)!r} has an invalid port") from None
    return parts


class WsBackend:
    """A NetBackend connected to a WebSocket Ethernet relay.

    :param url: ``ws://host[:port]/path[?token=...]`` or ``wss://...``.
    :param machine: Anything with ``call_soon_threadsafe(fn)``; received frames are
        delivered by functions run there.
    :param queue_frames: Outgoing frames kept while disconnected (or while the relay is
        slower than the guest); beyond this the oldest are dropped and counted.
    :param backoff_initial: First reconnect delay in seconds; doubled after every failed
        attempt up to ``backoff_max``; reset once connected.
    :param ssl_context: TLS settings for ``wss://`` (default: the system's CA store, which
        honours ``SSL_CERT_FILE``).
    :param origin: The ``Origin`` header sent (default ``http(s)://HOST[:PORT]`` from the
        URL; go-websockproxy insists on one).
    """

    external = True

    def __init__(self, url: str, machine: Any, *, queue_frames: int = 128,
                 rx_backlog: int = 512, backoff_initial: float = 0.5, backoff_max: float = 10.0,
                 open_timeout: float = 10.0, ssl_context: _ssl.SSLContext | None = None,
                 origin: str | None = None, name: str | None = None) -> None:
        parts = parse_ws_url(url)
        if queue_frames < 1 or rx_backlog < 1:
            raise ValueError("queue_frames and rx_backlog must be at least 1")
        self.url = url
        self.name = name or redact_url(url)
        self._handoff = Handoff(machine, limit=rx_backlog)
        self._slice = SliceBatch(machine, self._queue)
        self._ssl = ssl_context if parts.scheme == "wss" else None
        if origin is None:
            http = "https" if parts.scheme == "wss" else "http"
            origin = f"{http}://{parts.netloc.rpartition('@')[2]}"
        self._origin = origin
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._open_timeout = open_timeout
        self._c = _Counters()
        self._connected = False
        self._closing = False
        # machine thread -> loop: frames to send
        self._tx: collections.deque[bytes] = collections.deque()
        self._tx_max = queue_frames
        self._tx_signalled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tx_event: asyncio.Event | None = None
        self._main_task: asyncio.Task[None] | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._thread_main, name=f"pyv86-ws {self.name}",
                                        daemon=True)
        self._thread.start()
        self._ready.wait(5.0)

    # NetBackend ------------------------------------------------------------------
    def send(self, frame: bytes) -> None:
        """Queue one frame (copied) for the relay; never blocks the caller. During a CPU
        slice the frame joins the slice's others, queued together when it ends (the loop
        then wakes once for all of them)."""
        if self._closing:
            return
        frame = bytes(frame)
        if not self._slice.add(frame):
            self._queue([frame])

    def _queue(self, frames: list[bytes]) -> None:
        tx = self._tx
        for frame in frames:
            if len(tx) >= self._tx_max:
                try:
                    tx.popleft()
                except IndexError:
                    pass
                self._c.tx_dropped += 1
            tx.append(frame)
        if not self._tx_signalled and self._connected:
            self._tx_signalled = True
            loop, event = self._loop, self._tx_event
            if loop is not None and event is not None:
                try:
                    loop.call_soon_threadsafe(event.set)
                except RuntimeError:  # loop already closed
                    pass

    def set_receiver(self, callback: FrameCallback | None) -> None:
        self._handoff.set_receiver(callback)

    def rx_resume(self) -> None:
        """The NIC has room again: deliver the frames that waited (while it is full they
        wait in the inbox, beyond that they are dropped and counted in
        ``rx_dropped_backlog`` instead of overflowing the NIC, see ``HubPort.rx_resume``)."""
        self._handoff.resume()

    def close(self) -> None:
        """Disconnect and stop the loop thread (idempotent)."""
        if self._closing:
            return
        self._closing = True
        loop, task = self._loop, self._main_task
        if loop is not None and task is not None:
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:
                pass
        if threading.current_thread() is not self._thread:
            self._thread.join(5.0)

    # introspection ---------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def stats(self) -> dict[str, Any]:
        """Counters since the backend was created (plus ``connected`` and ``tx_queued``)."""
        out: dict[str, Any] = attrs.asdict(self._c)
        out["rx_dropped_backlog"] = self._handoff.dropped
        out["rx_dropped_no_receiver"] = self._handoff.undelivered
        out["connected"] = self._connected
        out["tx_queued"] = len(self._tx)
        return out

    def wait_connected(self, timeout: float) -> bool:
        """Block until connected (for tests and tools); False on timeout."""
        deadline = time.monotonic() + timeout
        while not self._connected:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    # loop thread -------------------------------------------------------------------
    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._tx_event = asyncio.Event()
            self._main_task = loop.create_task(self._main())
            self._ready.set()
            try:
                loop.run_until_complete(self._main_task)
            except asyncio.CancelledError:
                pass
        finally:
            self._connected = False
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
                self._ready.set()

    async def _main(self) -> None:
        from websockets.asyncio.client import connect

        attempt = 0
        delay = self._backoff_initial
        while not self._closing:
            attempt += 1
            log.info("%s: connecting (attempt %d)", self.name, attempt)
            try:
                ws = await connect(self.url, origin=self._origin, compression=None,  # type: ignore[arg-type]
                                   ssl=self._ssl, proxy=None, open_timeout=self._open_timeout,
                                   max_size=MAX_MESSAGE, max_queue=64, user_agent_header=None,
                                   close_timeout=2.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure means "try again later"
                self._c.connect_failures += 1
                log.info("%s: attempt %d failed: %s; next attempt in %.1f s",
                         self.name, attempt, _reason(exc), delay)
                await asyncio.sleep(delay * random.uniform(0.9, 1.1))
                delay = min(delay * 2, self._backoff_max)
                continue
            attempt = 0
            delay = self._backoff_initial
            self._c.connects += 1
            self._connected = True
            log.info("%s: connected", self.name)
            try:
                await self._session(ws)
            finally:
                self._connected = False
                self._c.disconnects += 1
                await ws.close()
            if not self._closing:
                code = ws.close_code
                log.warning("%s: disconnected (%s); reconnecting", self.name,
                            f"close code {code}" if code is not None else "connection lost")
                await asyncio.sleep(self._backoff_initial * random.uniform(0.5, 1.0))

    async def _session(self, ws: Any) -> None:
        writer = asyncio.ensure_future(self._writer(ws))
        try:
            await self._reader(ws)
        finally:
            writer.cancel()
            try:
                await writer
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass

    async def _writer(self, ws: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        event = self._tx_event
        assert event is not None
        tx = self._tx
        c = self._c
        batched = hasattr(ws, "send_context") and hasattr(ws, "protocol") and hasattr(ws, "transport")
        try:
            while True:
                self._tx_signalled = False
                event.clear()
                while tx:
                    if not batched:
                        frame = tx.popleft()
                        await ws.send(frame)
                        c.tx_frames += 1
                        c.tx_bytes += len(frame)
                        continue
                    # the frames a CPU slice sent, one message each, in one socket write
                    # (websockets' send_context: state checks, then flow control on exit)
                    async with ws.send_context():
                        sent = 0
                        while tx and sent < WRITE_BATCH:
                            frame = tx.popleft()
                            ws.protocol.send_binary(frame)
                            sent += 1
                            c.tx_frames += 1
                            c.tx_bytes += len(frame)
                        _write_joined(ws)
                await event.wait()
        except ConnectionClosed:
            pass

    async def _reader(self, ws: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        c = self._c
        deliver = self._handoff.deliver
        try:
            async for msg in ws:
                if isinstance(msg, str):
                    c.rx_text_ignored += 1
                    continue
                frame, verdict = check_frame(msg, ETH_FRAME_MAX)
                if frame is None:
                    if verdict == RUNT:
                        c.rx_runt += 1
                    else:
                        c.rx_oversize += 1
                    continue
                if verdict == TRIMMED:
                    c.rx_trimmed += 1
                c.rx_frames += 1
                c.rx_bytes += len(frame)
                deliver(frame)
        except ConnectionClosed:
            pass


def _write_joined(ws: Any) -> None:
    """Write what the protocol has to send as one buffer (one system call for a batch of
    messages). An empty chunk, websockets' end-of-stream marker (not expected while the
    connection is open), is honoured the way websockets' own ``send_data`` does."""
    data = ws.protocol.data_to_send()
    if data and all(data):
        ws.transport.write(b"".join(data))
    else:
        for chunk in data:
            if chunk:
                ws.transport.write(chunk)
            elif ws.transport.can_write_eof():
                ws.transport.write_eof()
            else:
                ws.transport.close()


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0]


def make_backend(url: str, machine: Machine) -> WsBackend:
    """The ``ws``/``wss`` factory registered with pyv86."""
    return WsBackend(url, machine)
