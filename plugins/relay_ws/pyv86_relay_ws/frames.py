"""What counts as an Ethernet frame on a relay link, and how to recover a padded one.

Relays carry one frame per binary WebSocket message: destination MAC, source MAC,
EtherType, payload; no FCS. A message shorter than the 14-byte header or longer than
1514 bytes is not a frame. Some relays (go-websockproxy) always send 1518 bytes with
stale bytes after the real frame; when the IPv4, IPv6 or ARP header says how long the
frame really is, :func:`check_frame` cuts the message back to that length.
"""
from __future__ import annotations

from pyv86.net.frame import real_length

__all__ = ["real_length", "check_frame", "redact_url"]

ETH_HEADER = 14
ETH_FRAME_MAX = 1514
ARP_ETH_IPV4_LEN = 28  # htype/ptype/hlen/plen/oper + 2 x (MAC + IPv4)

OK = "ok"
TRIMMED = "trimmed"
RUNT = "runt"
OVERSIZE = "oversize"


def check_frame(msg: bytes, max_len: int = ETH_FRAME_MAX) -> tuple[bytes | None, str]:
    """Validate one relay message: ``(frame, OK | TRIMMED)`` or ``(None, RUNT | OVERSIZE)``.

    A message longer than ``max_len`` is kept only if its header says the real frame
    fits; the trailing bytes are then cut off.
    """
    n = len(msg)
    if n < ETH_HEADER:
        return None, RUNT
    if n <= max_len:
        return msg, OK
    real = real_length(msg)
    if real is not None and real <= max_len and real <= n:
        return msg[:max(real, ETH_HEADER)], TRIMMED
    return None, OVERSIZE


def redact_url(url: str) -> str:
    """The URL with the value of any ``token=`` query parameter hidden (for logs)."""
    base, sep, query = url.partition("?")
    if not sep:
        return url
    parts = []
    for item in query.split("&"):
        key, eq, _value = item.partition("=")
        parts.append(f"{key}=***" if eq and key.lower() == "token" else item)
    return base + "?" + "&".join(parts)
