"""The relay server: WebSocket clients, QEMU VMs and an optional TAP uplink on one learning switch.

``RelayServer`` runs on an asyncio loop, either its own thread (:meth:`RelayServer.start`
/ :meth:`RelayServer.stop`, for tests and embedding) or the caller's (:meth:`run`, used
by ``pyv86 relay serve``, with SIGINT/SIGTERM for a clean stop and SIGUSR1 for a stats
dump).

Each client connection is a :class:`ClientPort`: an ``asyncio.Protocol`` that speaks the
WebSocket wire itself (:mod:`pyv86_relay_ws.wire`) so frames are handled in batches.
Inbound frames are checked (text, runts and over-long messages dropped and counted,
go-websockproxy padding trimmed), rate limited per client when limits are set (frames/s,
bytes/s; excess dropped and counted) and given to the :class:`~pyv86_relay_ws.switch.Switch`.
Outbound frames go to a per-client queue bounded in bytes and are written by one flush
callback per loop pass; while the socket is backed up the queue fills and further frames
for that client alone are dropped and counted, so a slow client never slows the others.
Per client the server holds at most ``queue_bytes`` queued plus the transport's
``HIGH_WATER`` bytes.

With ``qemu_stream`` (``--qemu-stream HOST:PORT``) the server also listens for QEMU VMs
(``-netdev stream,server=off`` or ``-netdev socket,connect=``); each connection is a
:class:`QemuStreamPort` with the same checks, limits and counters as a WebSocket client,
so v86, pyv86 and QEMU guests share one switch.

Plain HTTP on the same port: ``GET /stats`` returns the counters as JSON,
``GET /stats.txt`` as one line of text (both need the token when one is set).
"""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import signal
import ssl
import threading
import time
from typing import Any, Callable

import attrs
from pyv86.errors import Pyv86Error

from pyv86_relay_ws.frames import ETH_FRAME_MAX, ETH_HEADER
from pyv86_relay_ws.switch import Port, Switch
from pyv86_relay_ws.wire import (CLOSE_GOING_AWAY, CLOSE_NORMAL, MAX_REQUEST_HEAD, OP_BINARY, OP_CLOSE,
                                 OP_PING, OP_PONG, OP_TEXT, FrameParser, HttpRequest, WireError,
                                 encode_close, encode_control, handshake_response, http_response,
                                 parse_request)

log = logging.getLogger(__name__)

HIGH_WATER = 256 * 1024
"""Transport buffer size at which a client counts as backed up."""
HANDSHAKE_TIMEOUT = 10.0
MAX_MESSAGE = 1 << 16
"""Longest WebSocket message accepted at all; longer ones close the connection (1009)."""
TAP_MAX_MACS = 4096


class RelayError(Pyv86Error):
    """The server cannot start (bad option, port in use, TLS files unreadable...)."""


def _positive(_inst: Any, attribute: attrs.Attribute, value: float) -> None:  # type: ignore[type-arg]
    if value < 0:
        raise ValueError(f"{attribute.name} must not be negative (0 = unlimited)")


def _frame_size(_inst: Any, _attribute: Any, value: int) -> None:
    if not ETH_HEADER <= value <= ETH_FRAME_MAX:
        raise ValueError(f"max_frame must be between {ETH_HEADER} and {ETH_FRAME_MAX}")


@attrs.define(frozen=True)
class RelayLimits:
    """Per-client limits; every frame dropped because of one is counted."""

    max_frame: int = attrs.field(default=ETH_FRAME_MAX, validator=_frame_size,
                                 metadata={"help": "longest frame accepted from a client (bytes)"})
    max_fps: float = attrs.field(default=0.0, validator=_positive,
                                 metadata={"help": "frames per second from one client (0 = unlimited)"})
    max_bps: float = attrs.field(default=0.0, validator=_positive,
                                 metadata={"help": "bytes per second from one client (0 = unlimited)"})
    queue_bytes: int = attrs.field(default=1 << 20, validator=_positive,
                                   metadata={"help": "frames queued towards one client (bytes)"})
    max_macs: int = attrs.field(default=16, validator=_positive,
                                metadata={"help": "source MACs one client may own"})
    max_clients: int = attrs.field(default=1024, validator=_positive,
                                   metadata={"help": "clients connected at once"})
    idle_timeout: float = attrs.field(default=60.0, validator=_positive,
                                      metadata={"help": "close a client silent this long (pinged at half)"})


class PeerPort(asyncio.Protocol, Port):
    """A switch port on one TCP connection: admission, the checks and rate limits every
    received frame passes, and the outgoing queue (bounded in bytes: a backed-up peer loses
    only its own frames). Subclasses speak a wire format: :class:`ClientPort` (WebSocket)
    and :class:`QemuStreamPort` (QEMU's length-prefixed stream)."""

    kind = "client"
    wire_name = "?"
    answers_pings = False
    """Whether the peer answers a liveness probe (the idle timeout applies only then)."""

    def __init__(self, server: RelayServer) -> None:
        Port.__init__(self, "?", server.limits.max_macs)
        self.server = server
        self.limits = server.limits
        self.transport: asyncio.Transport | None = None
        self.loop = server.loop
        self.admitted = False
        self.path = ""
        self.out: list[bytes] = []
        self.out_bytes = 0
        self.flush_pending = False
        self.paused = False
        self.protocol_errors = 0
        self.connected_at = time.time()
        self.last_rx = self.loop.time()
        self.ping_outstanding = False
        limits = self.limits
        self._fps = limits.max_fps
        self._bps = limits.max_bps
        self._tok_f = max(limits.max_fps, 1.0)
        self._tok_b = max(limits.max_bps, float(ETH_FRAME_MAX))
        self._tok_time = self.last_rx

    # asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.name = f"{peer[0]}:{peer[1]}" if ":" not in str(peer[0]) else f"[{peer[0]}]:{peer[1]}"
        else:
            self.name = str(peer)
        transport.set_write_buffer_limits(high=HIGH_WATER)
        if not self.server._admit(self):
            transport.abort()
            return
        self.admitted = True
        self._admitted()

    def _admitted(self) -> None:
        """The connection may stay (the server had room)."""

    def connection_lost(self, exc: Exception | None) -> None:
        self.out.clear()
        self.out_bytes = 0
        self.server._detach(self)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.out and not self.flush_pending:
            self.flush_pending = True
            self.loop.call_soon(self._flush)

    def eof_received(self) -> bool | None:
        return None  # close the transport

    def ping(self) -> None:
        """Probe a quiet peer (only called when :attr:`answers_pings`)."""

    # input ------------------------------------------------------------------------------
    def _frames_in(self, frames: list[bytes]) -> None:
        """Frames that arrived together: check, rate-limit and switch each one."""
        now = self.loop.time()
        self.last_rx = now
        self.ping_outstanding = False
        fps, bps = self._fps, self._bps
        if fps or bps:
            elapsed = now - self._tok_time
            self._tok_time = now
            if fps:
                self._tok_f = min(max(fps, 1.0), self._tok_f + elapsed * fps)
            if bps:
                self._tok_b = min(max(bps, float(ETH_FRAME_MAX)), self._tok_b + elapsed * bps)
        max_frame = self.limits.max_frame
        switch_input = self.server.switch.input
        for payload in frames:
            n = len(payload)
            if n < ETH_HEADER or n > max_frame:
                checked = self.checked_length(payload, max_frame)
                if checked is None:
                    continue
                payload = checked
                n = len(payload)
            if fps:
                if self._tok_f < 1.0:
                    self.drop_rate += 1
                    continue
                self._tok_f -= 1.0
            if bps:
                if self._tok_b < n:
                    self.drop_rate += 1
                    continue
                self._tok_b -= n
            self.rx_frames += 1
            self.rx_bytes += n
            switch_input(self, payload, now)

    # output ---------------------------------------------------------------------------
    def _encode(self, frame: bytes, wire: bytes) -> bytes:
        """``frame`` as this peer's wire format wants it (``wire``: as a WebSocket message)."""
        raise NotImplementedError

    def deliver(self, frame: bytes, wire: bytes) -> None:
        wire = self._encode(frame, wire)
        n = len(wire)
        if self.out_bytes + n > self.limits.queue_bytes:
            if self.paused or self.transport is None:
                self.drop_queue += 1
                return
            self._flush()  # a burst larger than the queue: hand it to the socket now
            if self.paused and n > self.limits.queue_bytes:
                self.drop_queue += 1
                return
        self.out.append(wire)
        self.out_bytes += n
        self.tx_frames += 1
        self.tx_bytes += len(frame)
        if not self.flush_pending:
            self.flush_pending = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self.flush_pending = False
        if self.paused or not self.out or self.transport is None or self.transport.is_closing():
            return
        out = self.out
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        self.out_bytes = 0
        self.transport.write(data)

    def counters(self) -> dict[str, Any]:
        out = Port.counters(self)
        out["queued_bytes"] = self.out_bytes
        out["protocol_errors"] = self.protocol_errors
        out["path"] = self.path
        out["wire"] = self.wire_name
        out["connected_s"] = round(time.time() - self.connected_at, 1)
        return out

    def _write_now(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


class ClientPort(PeerPort):
    """One WebSocket client: HTTP upgrade, then frames in and out."""

    wire_name = "ws"
    answers_pings = True

    def __init__(self, server: RelayServer) -> None:
        super().__init__(server)
        self.ws = False
        self._head: bytearray | None = bytearray()
        self._parser = FrameParser(MAX_MESSAGE)
        self._timer: asyncio.TimerHandle | None = None

    def _admitted(self) -> None:
        self._timer = self.loop.call_later(HANDSHAKE_TIMEOUT, self._handshake_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        super().connection_lost(exc)

    def _encode(self, frame: bytes, wire: bytes) -> bytes:
        return wire

    def data_received(self, data: bytes) -> None:
        if self.ws:
            self._ws_data(data)
        elif self._head is not None:
            self._http_data(data)

    # HTTP phase ---------------------------------------------------------------------------
    def _handshake_timeout(self) -> None:
        if not self.ws and self.transport is not None:
            self.server.rejected += 1
            self.transport.abort()

    def _http_data(self, data: bytes) -> None:
        head = self._head
        assert head is not None
        head += data
        end = head.find(b"\r\n\r\n")
        if end < 0:
            if len(head) > MAX_REQUEST_HEAD:
                self._reject(431, "request head too large")
            return
        request_head, rest = bytes(head[:end]), bytes(head[end + 4:])
        self._head = None
        try:
            request = parse_request(request_head)
        except WireError as exc:
            self._reject(exc.code, exc.reason)
            return
        self.path = request.path
        if not request.is_websocket:
            self._plain_http(request)
            return
        status = self.server._check_token(request)
        if status is not None:
            self._reject(status, "a valid token is required (?token=... or Authorization: Bearer ...)"
                         if status == 401 else "wrong token")
            return
        if self.server.client_count >= self.limits.max_clients:
            self._reject(503, f"the relay is full ({self.limits.max_clients} clients)")
            return
        try:
            response = handshake_response(request)
        except WireError as exc:
            self._reject(exc.code, exc.reason)
            return
        assert self.transport is not None
        self.transport.write(response)
        self.ws = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.last_rx = self._tok_time = self.loop.time()
        self.server._attach(self)
        if rest:
            self._ws_data(rest)

    def _plain_http(self, request: HttpRequest) -> None:
        if request.method == "GET" and request.path in ("/stats", "/stats.json", "/stats.txt"):
            status = self.server._check_token(request)
            if status is not None:
                self._reject(status, "a valid token is required")
                return
            if request.path == "/stats.txt":
                body, ctype = self.server.stats_line() + "\n", "text/plain; charset=utf-8"
            else:
                body, ctype = json.dumps(self.server.stats, indent=1) + "\n", "application/json"
            self._respond(200, body, ctype)
            return
        self._respond(426, "this is a pyv86 Ethernet relay: connect a WebSocket client "
                           "(ws:// or wss://); counters are at /stats\n")

    def _respond(self, status: int, body: str, ctype: str = "text/plain; charset=utf-8") -> None:
        assert self.transport is not None
        extra = {"WWW-Authenticate": 'Bearer realm="pyv86-relay"'} if status == 401 else None
        self.transport.write(http_response(status, body, ctype, extra))
        self.transport.close()

    def _reject(self, status: int, reason: str) -> None:
        self.server.rejected += 1
        if status in (401, 403):
            self.server.rejected_auth += 1
        log.info("%s: refused (%d %s)", self.name, status, reason)
        self._respond(status, reason + "\n")

    # WebSocket phase ------------------------------------------------------------------
    def _ws_data(self, data: bytes) -> None:
        try:
            msgs = self._parser.feed(data)
        except WireError as exc:
            self.protocol_errors += 1
            log.info("%s: protocol error: %s; closing", self.name, exc.reason)
            self.close(exc.code, exc.reason)
            return
        if not msgs:
            return
        self.last_rx = self.loop.time()  # any message (a pong too) shows the client is alive
        self.ping_outstanding = False
        binary = [payload for opcode, payload in msgs if opcode == OP_BINARY]
        if len(binary) == len(msgs):
            self._frames_in(binary)
            return
        for opcode, payload in msgs:
            if opcode == OP_BINARY:
                self._frames_in([payload])
            elif opcode == OP_TEXT:
                self.drop_text += 1
            elif opcode == OP_PING:
                self._write_now(encode_control(OP_PONG, payload))
            elif opcode == OP_PONG:
                pass
            elif opcode == OP_CLOSE:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else CLOSE_NORMAL
                self.close(code if 1000 <= code < 5000 and code not in (1005, 1006, 1015) else CLOSE_NORMAL)
                return

    def ping(self) -> None:
        self.ping_outstanding = True
        self._write_now(encode_control(OP_PING, b"pyv86"))

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """Send a close frame (after what is queued) and close the connection."""
        if self.transport is None or self.transport.is_closing():
            return
        if self.ws:
            self._flush()
            self.transport.write(encode_close(code, reason))
        self.ws = False
        self.transport.close()

class QemuStreamPort(PeerPort):
    """A peer speaking QEMU's stream netdev (``-netdev stream,server=off`` or ``-netdev
    socket,connect=``): each frame behind a 4-byte big-endian length, no handshake. It joins
    the switch as soon as it connects; a length above :data:`MAX_MESSAGE` is a protocol
    error that closes the connection. QEMU cannot answer a liveness probe, so the idle
    timeout does not apply (a dead peer shows when writing to it fails)."""

    wire_name = "qemu-stream"

    def __init__(self, server: RelayServer) -> None:
        super().__init__(server)
        self._buf = bytearray()

    def _admitted(self) -> None:
        self.path = "qemu-stream"
        if self.server.client_count >= self.limits.max_clients:
            self.server.rejected += 1
            log.info("%s: refused (the relay is full: %d clients)", self.name, self.limits.max_clients)
            assert self.transport is not None
            self.transport.close()
            return
        self.server._attach(self)

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        frames: list[bytes] = []
        at, end = 0, len(buf)
        while end - at >= 4:
            length = int.from_bytes(buf[at:at + 4], "big")
            if length > MAX_MESSAGE:
                self.protocol_errors += 1
                log.info("%s: a %d-byte frame on a QEMU stream (limit %d); closing",
                         self.name, length, MAX_MESSAGE)
                self._buf = bytearray()
                if self.transport is not None:
                    self.transport.close()
                return
            if end - at - 4 < length:
                break
            frames.append(bytes(buf[at + 4:at + 4 + length]))
            at += 4 + length
        del buf[:at]
        if frames:
            self._frames_in(frames)

    def _encode(self, frame: bytes, wire: bytes) -> bytes:
        return len(frame).to_bytes(4, "big") + frame

    def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        if self.transport is not None and not self.transport.is_closing():
            self._flush()
            self.transport.close()


class TapPort(Port):
    """The uplink: a TAP interface (optionally on a Linux bridge) as one more switch port."""

    kind = "tap"

    def __init__(self, server: RelayServer, name: str, bridge: str | None) -> None:
        try:
            from pyv86_relay_tap.ifctl import TapError, add_to_bridge, open_tap, set_link_up
        except ImportError:
            raise RelayError("--tap needs the pyv86-relay-tap plugin (pip install pyv86-relay-tap)") from None
        self.fd, ifname = open_tap(name)
        super().__init__(f"tap:{ifname}", TAP_MAX_MACS)
        self.ifname = ifname
        self.server = server
        self.tx_errors = 0
        self._error_logged = False
        try:
            if bridge:
                add_to_bridge(ifname, bridge)
            try:
                set_link_up(ifname)
            except TapError as exc:
                log.warning("%s", exc)
        except BaseException:
            os.close(self.fd)
            raise
        server.loop.add_reader(self.fd, self._readable)

    def _readable(self) -> None:
        now = self.server.loop.time()
        switch_input = self.server.switch.input
        for _ in range(256):
            try:
                frame = os.read(self.fd, 65536)
            except BlockingIOError:
                return
            except OSError as exc:
                log.warning("%s: read failed (%s); uplink stopped", self.name, exc.strerror)
                self.server.loop.remove_reader(self.fd)
                return
            n = len(frame)
            if n < ETH_HEADER or n > ETH_FRAME_MAX:
                checked = self.checked_length(frame, ETH_FRAME_MAX)
                if checked is None:
                    continue
                frame = checked
                n = len(frame)
            self.rx_frames += 1
            self.rx_bytes += n
            switch_input(self, frame, now)

    def deliver(self, frame: bytes, wire: bytes) -> None:
        try:
            os.write(self.fd, frame)
        except BlockingIOError:
            self.drop_queue += 1
            return
        except OSError as exc:
            self.tx_errors += 1
            if not self._error_logged:
                self._error_logged = True
                log.warning("%s: write failed (%s); is the link up?", self.name, exc.strerror)
            return
        self.tx_frames += 1
        self.tx_bytes += len(frame)

    def close(self) -> None:
        self.closed = True
        try:
            self.server.loop.remove_reader(self.fd)
        except (ValueError, RuntimeError):
            pass
        os.close(self.fd)

    def counters(self) -> dict[str, Any]:
        out = Port.counters(self)
        out["tx_errors"] = self.tx_errors
        return out


class RelayServer:
    """A WebSocket Ethernet relay (learning switch). See the module docstring.

    :param host: Address to listen on (``"0.0.0.0"`` for every IPv4 interface).
    :param port: TCP port; 0 picks a free one (read it back from :attr:`port`).
    :param token: Shared secret; clients must present it as ``?token=...``, an
        ``Authorization: Bearer ...`` or an ``X-Relay-Token`` header (401 when missing,
        403 when wrong).
    :param cert: PEM certificate chain for TLS (``wss://``), with ``key``.
    :param tap: Name of a TAP interface to use as uplink (needs pyv86-relay-tap).
    :param bridge: Linux bridge to enslave the TAP to.
    :param limits: Per-client limits.
    :param mac_age: Seconds after which an unused MAC table entry is forgotten.
    :param allow_mac_move: Let a client take over a MAC another live client uses.
    :param stats_interval: Report a stats line every this many seconds (0 = never).
    :param report: Where stats lines go (default: INFO log).
    :param qemu_stream: ``HOST:PORT`` to also accept QEMU VMs on (``-netdev stream,server=off``
        or ``-netdev socket,connect=``): each connection is one more port of the switch.
        No token applies there, so bind it to loopback or a trusted network.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 8086, *, token: str | None = None,
                 cert: str | None = None, key: str | None = None, tap: str | None = None,
                 bridge: str | None = None, limits: RelayLimits | None = None,
                 mac_age: float = 300.0, allow_mac_move: bool = False,
                 stats_interval: float = 0.0, report: Callable[[str], None] | None = None,
                 qemu_stream: str | None = None) -> None:
        if key and not cert:
            raise RelayError("relay: --key needs --cert")
        if bridge and not tap:
            raise RelayError("relay: --bridge needs --tap")
        self.host = host
        self.requested_port = port
        self.port = port
        self.token = token or None
        self.cert, self.key = cert, key
        self.tap_name, self.bridge = tap, bridge
        self.qemu_stream = _host_port(qemu_stream) if qemu_stream else None
        """(host, port) of the QEMU stream listener; the port is the real one once open."""
        self._qemu_server: asyncio.AbstractServer | None = None
        self.limits = limits or RelayLimits()
        self.switch = Switch(mac_age=mac_age, allow_mac_move=allow_mac_move)
        self.stats_interval = stats_interval
        self.report = report or (lambda line: log.info("%s", line))
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self.clients: dict[PeerPort, None] = {}
        self.tap: TapPort | None = None
        self.connections = 0
        self.clients_total = 0
        self.rejected = 0
        self.rejected_auth = 0
        self._departed = {name: 0 for name in Port.COUNTERS}
        self._server: asyncio.AbstractServer | None = None
        self._housekeeping: asyncio.Task[None] | None = None
        self._stop_event: asyncio.Event | None = None
        self._started_at = time.monotonic()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None

    # properties ----------------------------------------------------------------------
    @property
    def scheme(self) -> str:
        return "wss" if self.cert else "ws"

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else ("::1" if self.host == "::" else self.host)
        if ":" in host:
            host = f"[{host}]"
        return f"{self.scheme}://{host}:{self.port}/"

    @property
    def client_count(self) -> int:
        return len(self.clients)

    # lifecycle (inside a running loop) ----------------------------------------------------
    async def open(self) -> None:
        """Start listening (and open the TAP uplink); call inside the loop that will serve."""
        self.loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        ssl_ctx = None
        if self.cert:
            ssl_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            try:
                ssl_ctx.load_cert_chain(self.cert, self.key)
            except (OSError, ssl.SSLError) as exc:
                raise RelayError(f"relay: --cert {self.cert}: cannot load certificate/key: "
                                 f"{getattr(exc, 'strerror', None) or exc}") from None
        if self.tap_name:
            self.tap = TapPort(self, self.tap_name, self.bridge)
            self.switch.add_port(self.tap)
        try:
            self._server = await self.loop.create_server(
                lambda: ClientPort(self), self.host or None, self.requested_port, ssl=ssl_ctx,
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT if ssl_ctx else None, backlog=1024)
        except OSError as exc:
            if self.tap is not None:
                self.tap.close()
            raise RelayError(f"relay: cannot listen on {self.host}:{self.requested_port}: "
                             f"{exc.strerror or exc}") from None
        self.port = self._server.sockets[0].getsockname()[1]
        if self.qemu_stream is not None:
            host, port = self.qemu_stream
            try:
                self._qemu_server = await self.loop.create_server(
                    lambda: QemuStreamPort(self), host, port, backlog=64)
            except OSError as exc:
                await self.close()
                raise RelayError(f"relay: --qemu-stream {host}:{port}: cannot listen: "
                                 f"{exc.strerror or exc}") from None
            self.qemu_stream = (host, self._qemu_server.sockets[0].getsockname()[1])
            if self.token:
                log.warning("relay: QEMU peers on %s:%d need no token (QEMU cannot send one)",
                            *self.qemu_stream)
            log.info("relay: QEMU VMs join with -netdev stream,server=off,addr.type=inet,"
                     "addr.host=%s,addr.port=%d", *self.qemu_stream)
        self._started_at = time.monotonic()
        self._housekeeping = asyncio.ensure_future(self._housekeep())
        log.info("relay: listening on %s%s", self.url,
                 f" (uplink {self.tap.name}{' on ' + self.bridge if self.bridge else ''})" if self.tap else "")

    async def close(self) -> None:
        """Stop accepting, say goodbye to clients (close 1001), release the TAP."""
        if self._server is not None:
            self._server.close()
        if self._qemu_server is not None:
            self._qemu_server.close()
        if self._housekeeping is not None:
            self._housekeeping.cancel()
        for client in list(self.clients):
            client.close(CLOSE_GOING_AWAY, "relay shutting down")
        deadline = self.loop.time() + 1.0
        while self.clients and self.loop.time() < deadline:
            await asyncio.sleep(0.02)
        for client in list(self.clients):
            if client.transport is not None:
                client.transport.abort()
        await asyncio.sleep(0)
        if self.tap is not None:
            self.switch.remove_port(self.tap)
            self.tap.close()
        for server in (self._server, self._qemu_server):
            if server is not None:
                await server.wait_closed()
        log.info("relay: stopped")

    def request_stop(self) -> None:
        """Ask :meth:`serve_until_stopped` to return (thread-safe)."""
        if self._stop_event is not None and not self.loop.is_closed():
            try:
                self.loop.call_soon_threadsafe(self._stop_event.set)
            except RuntimeError:  # the loop closed meanwhile: already stopped
                pass

    async def serve_until_stopped(self) -> None:
        assert self._stop_event is not None
        await self._stop_event.wait()

    # threaded API (tests, embedding) ---------------------------------------------------
    def start(self) -> RelayServer:
        """Serve on a background thread; returns once listening (raises RelayError if not)."""
        self._thread = threading.Thread(target=self._thread_main, name="pyv86-relay", daemon=True)
        self._thread.start()
        self._ready.wait(30.0)
        if self._start_error is not None:
            raise self._start_error
        return self

    def stop(self) -> None:
        """Stop the background server and wait for it."""
        self.request_stop()
        if self._thread is not None:
            self._thread.join(10.0)

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            try:
                loop.run_until_complete(self.open())
            except BaseException as exc:  # noqa: BLE001 - reported by start()
                self._start_error = exc
                return
            finally:
                self._ready.set()
            loop.run_until_complete(self.serve_until_stopped())
            loop.run_until_complete(self.close())
        finally:
            loop.close()

    # blocking CLI API -----------------------------------------------------------------
    def run(self, announce: bool = False) -> None:
        """Serve in this thread until SIGINT/SIGTERM; SIGUSR1 reports the counters."""
        async def main() -> None:
            await self.open()
            if announce:
                self.report(f"relay: serving {self.url}"
                            + (" (listening on all interfaces)" if self.host in ("", "0.0.0.0", "::") else "")
                            + (f" with uplink {self.tap.name}" if self.tap is not None else "")
                            + (" (token required)" if self.token else ""))
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self._stop_event.set)  # type: ignore[union-attr]
            loop.add_signal_handler(signal.SIGUSR1, lambda: self.report(self.stats_line()))
            try:
                await self.serve_until_stopped()
            finally:
                for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
                    loop.remove_signal_handler(sig)
                await self.close()
                self.report(self.stats_line())

        asyncio.run(main())

    # bookkeeping -----------------------------------------------------------------------
    def _admit(self, client: PeerPort) -> bool:
        if self.connections >= self.limits.max_clients + 64:
            self.rejected += 1
            return False
        self.connections += 1
        return True

    def _attach(self, client: PeerPort) -> None:
        self.clients[client] = None
        self.clients_total += 1
        self.switch.add_port(client)
        log.info("%s: connected (%s; %d clients)", client.name, client.path, len(self.clients))

    def _detach(self, client: PeerPort) -> None:
        if client.admitted:
            client.admitted = False
            self.connections -= 1
        if client in self.clients:
            del self.clients[client]
            self.switch.remove_port(client)
            for name in Port.COUNTERS:
                self._departed[name] += getattr(client, name)
            log.info("%s: disconnected (rx %d, tx %d, dropped %d; %d clients)", client.name,
                     client.rx_frames, client.tx_frames, _drops(client.counters()), len(self.clients))

    def _check_token(self, request: HttpRequest) -> int | None:
        """None when the request may proceed, else the HTTP status to refuse it with."""
        if not self.token:
            return None
        given = (request.query.get("token") or [""])[-1]
        if not given:
            auth = request.header("authorization")
            if auth[:7].lower() == "bearer ":
                given = auth[7:].strip()
        if not given:
            given = request.header("x-relay-token")
        if not given:
            return 401
        if not hmac.compare_digest(given.encode("utf-8", "replace"), self.token.encode("utf-8")):
            return 403
        return None

    async def _housekeep(self) -> None:
        limits = self.limits
        tick = min(2.0, self.switch.mac_age / 4)
        if limits.idle_timeout:
            tick = min(tick, limits.idle_timeout / 4)
        if self.stats_interval:
            tick = min(tick, self.stats_interval)
        tick = max(0.05, tick)
        next_report = self.loop.time() + self.stats_interval if self.stats_interval else None
        while True:
            await asyncio.sleep(tick)
            now = self.loop.time()
            self.switch.sweep(now)
            if limits.idle_timeout:
                for client in list(self.clients):
                    if not client.answers_pings:
                        continue
                    idle = now - client.last_rx
                    if idle > limits.idle_timeout:
                        log.info("%s: silent for %.0f s; closing", client.name, idle)
                        if client.transport is not None:
                            client.transport.abort()
                    elif idle > limits.idle_timeout / 2 and not client.ping_outstanding:
                        client.ping()
            if next_report is not None and now >= next_report:
                next_report = now + self.stats_interval
                self.report(self.stats_line())

    # counters --------------------------------------------------------------------------
    @property
    def stats(self) -> dict[str, Any]:
        """A snapshot of every counter (safe to read from another thread)."""
        ports = list(self.switch.ports)
        now = time.monotonic()
        totals = dict(self._departed)
        clients = []
        for port in ports:
            counters = port.counters()
            if port.kind == "client":
                clients.append(counters)
                for name in Port.COUNTERS:
                    totals[name] += counters[name]
        sw = self.switch
        return {
            "url": self.url,
            "uptime_s": round(now - self._started_at, 3),
            "clients": len(clients),
            "clients_total": self.clients_total,
            "rejected": self.rejected,
            "rejected_auth": self.rejected_auth,
            "fdb_size": len(sw.fdb),
            "unicast": sw.unicast,
            "flooded": sw.flooded,
            "filtered": sw.filtered,
            "mac_moves": sw.moves,
            "mac_aged": sw.aged,
            "totals": totals,
            "drops": _drops(totals),
            "tap": self.tap.counters() if self.tap is not None else None,
            "qemu_stream": "%s:%d" % self.qemu_stream if self.qemu_stream else None,
            "ports": clients,
        }

    def stats_line(self) -> str:
        s = self.stats
        t = s["totals"]
        line = (f"relay {s['url']}: {s['clients']} clients ({s['clients_total']} total, "
                f"{s['rejected']} refused), fdb {s['fdb_size']}, rx {t['rx_frames']} frames/"
                f"{t['rx_bytes']} B, tx {t['tx_frames']} frames/{t['tx_bytes']} B, drops: "
                f"malformed {t['drop_malformed']} text {t['drop_text']} oversize {t['drop_oversize']} "
                f"rate {t['drop_rate']} queue {t['drop_queue']} mac {t['drop_mac_conflict'] + t['drop_mac_limit']}")
        if s["tap"] is not None:
            tap = s["tap"]
            line += f"; {tap['name']}: rx {tap['rx_frames']} tx {tap['tx_frames']} errors {tap['tx_errors']}"
        return line


def _host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` (port 0 = any free one) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise RelayError(f"relay: --qemu-stream {text!r}: expected HOST:PORT (port 0..65535)")
    return host, int(port)


def _drops(counters: dict[str, Any]) -> int:
    return sum(v for k, v in counters.items() if k.startswith("drop_"))
