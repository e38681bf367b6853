"""The relay's learning switch: ports, the MAC table, and where each frame goes.

A :class:`Port` is anything frames leave through (a WebSocket client, the TAP uplink).
:meth:`Switch.input` takes a frame that entered on one port: it learns the source MAC,
then forwards to the one port that owns a known unicast destination, or floods
broadcast, multicast and unknown unicast to every other port. A frame never goes back
to the port it came from. Entries age out after ``mac_age`` seconds without traffic. A
MAC owned by a live port that was heard within ``mac_age`` cannot be taken over by
another port unless ``allow_mac_move`` is set; such frames are dropped and counted.
Each port may own at most ``Port.max_macs`` addresses, so no peer can fill the table.

This module does no I/O; the server feeds it frames and a monotonic ``now``.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

from pyv86_relay_ws.frames import RUNT, TRIMMED, check_frame
from pyv86_relay_ws.wire import encode_binary

log = logging.getLogger(__name__)


def _mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


class Port:
    """One switch port. Subclasses implement :meth:`deliver` and set ``closed``."""

    kind = "port"
    COUNTERS = ("rx_frames", "rx_bytes", "tx_frames", "tx_bytes", "drop_malformed",
                "drop_text", "drop_oversize", "drop_rate", "drop_queue", "drop_mac_conflict",
                "drop_mac_limit", "drop_bad_source", "trimmed")

    def __init__(self, name: str, max_macs: int) -> None:
        self.name = name
        self.max_macs = max_macs
        self.macs = 0
        self.closed = False
        self._conflict_logged = False
        self.rx_frames = self.rx_bytes = self.tx_frames = self.tx_bytes = 0
        self.drop_malformed = self.drop_text = self.drop_oversize = self.drop_rate = 0
        self.drop_queue = self.drop_mac_conflict = self.drop_mac_limit = 0
        self.drop_bad_source = self.trimmed = 0

    def deliver(self, frame: bytes, wire: bytes) -> None:
        """Send ``frame`` out of this port (``wire`` is it as a WebSocket binary frame)."""
        raise NotImplementedError

    def checked_length(self, msg: bytes, max_frame: int) -> bytes | None:
        """A received message outside 14..``max_frame`` bytes (callers test that first, so a
        frame of a normal length costs no call): ``None`` for a runt or an oversize message,
        counted in ``drop_malformed`` or ``drop_oversize``, or the frame with a relay's
        trailing padding cut off when its IP/ARP length says so, counted in ``trimmed``."""
        frame, verdict = check_frame(msg, max_frame)
        if frame is None:
            if verdict == RUNT:
                self.drop_malformed += 1
            else:
                self.drop_oversize += 1
        elif verdict == TRIMMED:
            self.trimmed += 1
        return frame

    def counters(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "macs": self.macs}
        for name in self.COUNTERS:
            out[name] = getattr(self, name)
        return out


class Switch:
    """Forwarding among ports (see the module docstring)."""

    def __init__(self, mac_age: float = 300.0, allow_mac_move: bool = False,
                 encode: Callable[[bytes], bytes] = encode_binary) -> None:
        if mac_age <= 0:
            raise ValueError("mac_age must be positive")
        self.mac_age = mac_age
        self.allow_mac_move = allow_mac_move
        self.encode = encode
        self.ports: list[Port] = []
        self.fdb: dict[bytes, list[Any]] = {}  # mac -> [port, last_seen]
        self.unicast = 0
        self.flooded = 0
        self.filtered = 0
        self.moves = 0
        self.aged = 0

    # ports -------------------------------------------------------------------------
    def add_port(self, port: Port) -> None:
        self.ports = self.ports + [port]

    def remove_port(self, port: Port) -> None:
        port.closed = True
        self.ports = [p for p in self.ports if p is not port]
        fdb = self.fdb
        for mac in [m for m, e in fdb.items() if e[0] is port]:
            del fdb[mac]
        port.macs = 0

    def sweep(self, now: float) -> int:
        """Forget entries older than ``mac_age``; returns how many."""
        limit = now - self.mac_age
        stale = [m for m, e in self.fdb.items() if e[1] < limit]
        for mac in stale:
            entry = self.fdb.pop(mac)
            entry[0].macs -= 1
        self.aged += len(stale)
        return len(stale)

    def table(self, now: float) -> list[dict[str, Any]]:
        return [{"mac": _mac(m), "port": e[0].name, "age_s": round(now - e[1], 1)}
                for m, e in list(self.fdb.items())]

    # forwarding --------------------------------------------------------------------
    def input(self, port: Port, frame: bytes, now: float) -> None:
        """Forward one frame (length already checked) that arrived on ``port``."""
        src = frame[6:12]
        if src[0] & 1:
            port.drop_bad_source += 1
            return
        fdb = self.fdb
        entry = fdb.get(src)
        if entry is None:
            if port.macs >= port.max_macs:
                port.drop_mac_limit += 1
                return
            fdb[src] = [port, now]
            port.macs += 1
        elif entry[0] is port:
            entry[1] = now
        else:
            owner = entry[0]
            if not (owner.closed or now - entry[1] > self.mac_age or self.allow_mac_move):
                port.drop_mac_conflict += 1
                if not port._conflict_logged:
                    port._conflict_logged = True
                    log.warning("%s: source MAC %s belongs to %s; dropping its frames "
                                "(start the relay with --allow-mac-move to permit this)",
                                port.name, _mac(src), owner.name)
                return
            if port.macs >= port.max_macs:
                port.drop_mac_limit += 1
                return
            owner.macs -= 1
            entry[0] = port
            entry[1] = now
            port.macs += 1
            self.moves += 1
        wire = self.encode(frame)
        if not frame[0] & 1:
            dest = fdb.get(frame[0:6])
            if dest is not None and not dest[0].closed and now - dest[1] <= self.mac_age:
                target = dest[0]
                if target is port:
                    self.filtered += 1
                else:
                    self.unicast += 1
                    target.deliver(frame, wire)
                return
        self.flooded += 1
        for other in self.ports:
            if other is not port:
                other.deliver(frame, wire)
