"""The server side of the WebSocket wire (RFC 6455), kept small and fast for the relay.

Owns: parsing the HTTP/1.1 upgrade request, the 101 (or error) response, decoding masked
client frames (fragmented messages, ping/pong/close, size limits) and encoding unmasked
server frames. Unmasking uses the C helper that ships with ``websockets``. No extension
(permessage-deflate) or subprotocol is negotiated; relays do not use them.

A protocol violation raises :class:`WireError` carrying the close code to send.
"""
from __future__ import annotations

import struct
import urllib.parse

from websockets.utils import accept_key, apply_mask

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL = 1002
CLOSE_TOO_BIG = 1009

MAX_REQUEST_HEAD = 16384

_REASONS = {101: "Switching Protocols", 200: "OK", 400: "Bad Request", 401: "Unauthorized",
            403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
            426: "Upgrade Required", 431: "Request Header Fields Too Large",
            503: "Service Unavailable"}

_SMALL_BINARY_HEADERS = [bytes((0x80 | OP_BINARY, n)) for n in range(126)]
_pack_medium = struct.Struct("!BBH").pack
_pack_large = struct.Struct("!BBQ").pack


class WireError(Exception):
    """The peer broke the protocol; ``code`` is the close code (or HTTP status) to answer."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class HttpRequest:
    """The parts of an HTTP request head the relay looks at."""

    __slots__ = ("method", "target", "path", "query", "headers")

    def __init__(self, method: str, target: str, headers: dict[str, str]) -> None:
        self.method = method
        self.target = target
        split = urllib.parse.urlsplit(target)
        self.path = split.path or "/"
        self.query = urllib.parse.parse_qs(split.query, keep_blank_values=True)
        self.headers = headers

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")

    def header_tokens(self, name: str) -> set[str]:
        return {part.strip().lower() for part in self.header(name).split(",") if part.strip()}

    @property
    def is_websocket(self) -> bool:
        return "websocket" in self.header_tokens("upgrade") and "upgrade" in self.header_tokens("connection")


def parse_request(head: bytes) -> HttpRequest:
    """Parse a request head (up to, not including, the blank line)."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes anything
        raise WireError(400, "undecodable request") from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise WireError(400, f"not an HTTP/1.x request line: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise WireError(400, f"bad header line {line[:80]!r}")
        key = name.lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return HttpRequest(parts[0], parts[1], headers)


def handshake_response(request: HttpRequest) -> bytes:
    """The 101 answer to a valid upgrade request; WireError(400/426) otherwise."""
    if request.method != "GET":
        raise WireError(405, "WebSocket upgrades use GET")
    if request.header("sec-websocket-version") != "13":
        raise WireError(426, "only WebSocket version 13 is supported")
    key = request.header("sec-websocket-key")
    if not key or len(key) != 24:
        raise WireError(400, "missing or malformed Sec-WebSocket-Key")
    return (
        "HTTP/1.1 101 Switching Protocols\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept_key(key)}\r\n"
        "\r\n"
    ).encode("ascii")


def http_response(status: int, body: bytes | str = b"", content_type: str = "text/plain; charset=utf-8",
                  extra: dict[str, str] | None = None) -> bytes:
    """A complete ``Connection: close`` HTTP response."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
             f"Content-Type: {content_type}", f"Content-Length: {len(body)}", "Connection: close"]
    if status == 426:
        lines.append("Upgrade: websocket")
        lines.append("Sec-WebSocket-Version: 13")
    for name, value in (extra or {}).items():
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def encode_binary(payload: bytes) -> bytes:
    """One unmasked FIN binary frame."""
    n = len(payload)
    if n < 126:
        return _SMALL_BINARY_HEADERS[n] + payload
    if n < 65536:
        return _pack_medium(0x80 | OP_BINARY, 126, n) + payload
    return _pack_large(0x80 | OP_BINARY, 127, n) + payload


def encode_control(opcode: int, payload: bytes = b"") -> bytes:
    """One unmasked control frame (payload at most 125 bytes)."""
    return bytes((0x80 | opcode, len(payload[:125]))) + payload[:125]


def encode_close(code: int, reason: str = "") -> bytes:
    return encode_control(OP_CLOSE, struct.pack("!H", code) + reason.encode("utf-8")[:123])


class FrameParser:
    """Turns the bytes a client sends into whole messages and control frames.

    :meth:`feed` returns ``[(opcode, payload), ...]``: data messages (``OP_TEXT``,
    ``OP_BINARY``, reassembled from fragments) and control frames as they come.
    ``max_message`` bounds what is buffered: a longer frame or message raises
    :class:`WireError` 1009 before its bytes are kept.
    """

    def __init__(self, max_message: int = 1 << 16) -> None:
        self.max_message = max_message
        self._buf = bytearray()
        self._frag_op = 0
        self._frag: list[bytes] = []
        self._frag_len = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf = self._buf
        if buf:
            buf += data
            view: bytes | bytearray = buf
        else:
            view = data
        out: list[tuple[int, bytes]] = []
        pos = 0
        end = len(view)
        max_message = self.max_message
        while end - pos >= 2:
            b0 = view[pos]
            b1 = view[pos + 1]
            if b0 & 0x70:
                raise WireError(CLOSE_PROTOCOL, "reserved bits set (no extension was negotiated)")
            if not b1 & 0x80:
                raise WireError(CLOSE_PROTOCOL, "client frames must be masked")
            n = b1 & 0x7F
            hdr = 6
            if n == 126:
                if end - pos < 4:
                    break
                n = (view[pos + 2] << 8) | view[pos + 3]
                hdr = 8
            elif n == 127:
                if end - pos < 10:
                    break
                n = int.from_bytes(view[pos + 2:pos + 10], "big")
                hdr = 14
            opcode = b0 & 0x0F
            if n > max_message:
                raise WireError(CLOSE_TOO_BIG, f"frame of {n} bytes exceeds {max_message}")
            if end - pos < hdr + n:
                break
            mask = view[pos + hdr - 4:pos + hdr]
            start = pos + hdr
            payload = apply_mask(view[start:start + n], mask) if n else b""
            pos = start + n
            fin = b0 & 0x80
            if opcode >= 0x8:
                if not fin or n > 125:
                    raise WireError(CLOSE_PROTOCOL, "fragmented or oversize control frame")
                if opcode not in (OP_CLOSE, OP_PING, OP_PONG):
                    raise WireError(CLOSE_PROTOCOL, f"unknown control opcode {opcode:#x}")
                out.append((opcode, payload))
            elif opcode == OP_CONT:
                if not self._frag_op:
                    raise WireError(CLOSE_PROTOCOL, "continuation frame without a message")
                self._frag_len += n
                if self._frag_len > max_message:
                    raise WireError(CLOSE_TOO_BIG, f"message exceeds {max_message} bytes")
                self._frag.append(payload)
                if fin:
                    out.append((self._frag_op, b"".join(self._frag)))
                    self._frag_op = 0
                    self._frag = []
                    self._frag_len = 0
            elif opcode in (OP_TEXT, OP_BINARY):
                if self._frag_op:
                    raise WireError(CLOSE_PROTOCOL, "new message before the last one ended")
                if fin:
                    out.append((opcode, payload))
                else:
                    self._frag_op = opcode
                    self._frag = [payload]
                    self._frag_len = n
            else:
                raise WireError(CLOSE_PROTOCOL, f"unknown data opcode {opcode:#x}")
        if view is buf:
            del buf[:pos]
        elif pos < end:
            buf += view[pos:]
        return out
