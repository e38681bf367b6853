"""``hub:NAME`` — a learning Ethernet switch joining NICs in one process and across processes.

Every ``hub:NAME`` backend in a process is a port of that process's switch named NAME.
Switches of the same name in different processes of one user on one host join through
a UNIX socket in the abstract namespace (``@pyv86-hub/<uid>/<NAME>``; it disappears with
its owner): the first process binds it and *hosts*; later ones connect as *members*,
each with one uplink. If the host exits, a member takes over and the others reconnect.
On the socket each side first sends ``b"pyv86-hub 1\\n"``, then frames travel as a
4-byte big-endian length followed by the frame. Peers of another user are refused.

The switch learns source MACs (at most :data:`MAC_TABLE_SIZE`, forgotten after
:data:`MAC_AGING_S` seconds), sends known unicast to one port, and floods group
addresses and unknown destinations to every port but the sender — never back to it.
Nothing a peer sends can grow memory without bound: frames outside 14..65535 bytes are
dropped and counted, a bad length prefix closes that link, and every queue (a link's
send queue, a port's inbox to its machine thread) is bounded with a drop counter.

``hub:NAME?scope=process`` keeps the switch inside the process (no socket).
"""
from __future__ import annotations

import collections
import logging
import os
import re
import socket
import struct
import threading
import time
from typing import TYPE_CHECKING

from pyv86.net.base import FrameCallback
from pyv86.net.frame import ETH_HEADER
from pyv86.net.framedstream import FramedStream, shut_and_close
from pyv86.net.handoff import Handoff
from pyv86.net.slicebatch import SliceBatch

if TYPE_CHECKING:
    from pyv86.machine import Machine

log = logging.getLogger(__name__)

MAGIC = b"pyv86-hub 1\n"
MAX_WIRE_FRAME = 65535
MAC_TABLE_SIZE = 1024
MAC_AGING_S = 300.0
LINK_QUEUE_FRAMES = 512
HANDSHAKE_TIMEOUT_S = 5.0
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def parse_hub_url(url: str) -> tuple[str, bool]:
    """``hub:NAME[?scope=process|host]`` -> (NAME, shared across processes)."""
    scheme, _, rest = url.partition(":")
    if scheme.lower() != "hub":
        raise ValueError(f"{url!r} is not a hub: URL")
    rest = rest.lstrip("/")
    name, _, query = rest.partition("?")
    if not NAME_RE.match(name):
        raise ValueError(f"hub name {name!r} must be 1-64 letters, digits, '.', '_' or '-' "
                         "(e.g. hub:lan)")
    shared = True
    if query:
        key, _, value = query.partition("=")
        if key != "scope" or value not in ("process", "host"):
            raise ValueError(f"{url!r}: unknown option {query!r}; the only option is "
                             "?scope=process (keep the hub inside this process) or ?scope=host")
        shared = value == "host"
    return name, shared


def socket_address(name: str) -> str:
    """The abstract UNIX socket address of hub ``name`` for this user."""
    return f"\0pyv86-hub/{os.getuid()}/{name}"


class _Link:
    """One port of the switch: something frames can be delivered to."""

    name = "link"

    def deliver(self, frame: bytes) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def deliver_many(self, frames: list[bytes]) -> None:
        for frame in frames:
            self.deliver(frame)


class HubPort(_Link):
    """A NIC's connection to the hub: the :class:`~pyv86.net.base.NetBackend` ``hub:NAME`` makes."""

    external = True  # frames can arrive from other machines at any time

    def __init__(self, hub: Hub, name: str, machine: Machine | None) -> None:
        self.hub = hub
        self.name = name
        self.url = f"hub:{hub.name}"
        self.handoff = Handoff(machine)
        self.sent_frames = 0
        self.received_frames = 0
        self._closed = False
        self._tx = SliceBatch(machine, self._switch_batch)

    def send(self, frame: bytes) -> None:
        """Switch ``frame``; during a CPU slice, when the slice ends, with the slice's other
        frames (a frame to another process then costs a share of one system call, and the
        other process's reader thread wakes once per batch instead of once per frame)."""
        if self._closed:
            return
        self.sent_frames += 1
        if not self._tx.add(frame):
            self.hub.forward(self, frame)

    def _switch_batch(self, frames: list[bytes]) -> None:
        if not self._closed:
            self.hub.forward_many(self, frames)

    def set_receiver(self, callback: FrameCallback | None) -> None:
        self.handoff.set_receiver(callback)

    def rx_resume(self) -> None:
        """The NIC has room again (its port held our frames back): deliver what waits.

        While the NIC is full, frames wait in this port's inbox, and when that is full the
        hub drops them, as a switch drops at a full output queue. Without this the NIC's
        port queue would overflow instead, and the NE2000 reports that as a receive ring
        overrun (ISR.OVW), which makes Linux stop and restart the chip."""
        self.handoff.resume()

    def deliver(self, frame: bytes) -> None:
        self.received_frames += 1
        self.handoff.deliver(frame)

    def deliver_many(self, frames: list[bytes]) -> None:
        self.received_frames += len(frames)
        self.handoff.deliver_many(frames)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.hub.remove(self)

    @property
    def dropped(self) -> int:
        return self.handoff.dropped

    def __repr__(self) -> str:
        return f"<HubPort {self.name} on hub:{self.hub.name}>"


class _SocketLink(_Link):
    """A link to another process's switch: a :class:`~pyv86.net.framedstream.FramedStream`
    whose frames the hub switches like a port's (sent straight to the socket, a bounded
    queue of :data:`LINK_QUEUE_FRAMES` frames only when the peer reads slowly)."""

    def __init__(self, hub: Hub, sock: socket.socket, name: str) -> None:
        self.hub = hub
        self.name = name
        self.stream = FramedStream(sock, f"hub:{hub.name}: link {name}",
                                   on_frame=lambda frame: hub.forward(self, frame),
                                   on_close=lambda: hub._link_closed(self),
                                   queue_frames=LINK_QUEUE_FRAMES, max_frame=MAX_WIRE_FRAME)

    def start(self) -> None:
        self.stream.start()

    def deliver(self, frame: bytes) -> None:
        self.stream.send(frame)

    def deliver_many(self, frames: list[bytes]) -> None:
        self.stream.send_many(frames)

    def close(self) -> None:
        self.stream.close()


def _peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def _handshake(sock: socket.socket) -> None:
    sock.settimeout(HANDSHAKE_TIMEOUT_S)
    sock.sendall(MAGIC)
    got = b""
    while len(got) < len(MAGIC):
        chunk = sock.recv(len(MAGIC) - len(got))
        if not chunk:
            raise ConnectionError("peer closed during the handshake")
        got += chunk
    if got != MAGIC:
        raise ConnectionError(f"peer is not a pyv86 hub (said {got!r})")
    sock.settimeout(None)


class Hub:
    """A learning switch; :func:`get_hub` returns the process's switch for a name."""

    def __init__(self, name: str, shared: bool = True) -> None:
        self.name = name
        self.shared = shared
        self.role = "local"
        self._lock = threading.Lock()
        self._links: tuple[_Link, ...] = ()
        self._ports: list[HubPort] = []
        self._table: collections.OrderedDict[bytes, tuple[_Link, float]] = collections.OrderedDict()
        self._listener: socket.socket | None = None
        self._uplink: _SocketLink | None = None
        self._closed = False
        self._rejoin_thread: threading.Thread | None = None
        self._next_port = 0
        self.forwarded = 0
        self.flooded = 0
        self.bad_frames = 0
        if shared:
            self._join()

    # ports -----------------------------------------------------------------------
    def add_port(self, machine: Machine | None = None, name: str | None = None) -> HubPort:
        with self._lock:
            self._next_port += 1
            port = HubPort(self, name or f"port{self._next_port}", machine)
            self._ports.append(port)
            self._links = (*self._links, port)
        return port

    def remove(self, port: HubPort) -> None:
        with self._lock:
            if port in self._ports:
                self._ports.remove(port)
            self._drop_link_locked(port)
            empty = not self._ports
        if empty:
            _release_hub(self)

    def _drop_link_locked(self, link: _Link) -> None:
        self._links = tuple(x for x in self._links if x is not link)
        for mac in [m for m, (owner, _t) in self._table.items() if owner is link]:
            del self._table[mac]

    @property
    def ports(self) -> list[HubPort]:
        return list(self._ports)

    @property
    def links(self) -> int:
        """Connections to other processes (members for a host, the uplink for a member)."""
        return sum(1 for x in self._links if isinstance(x, _SocketLink))

    # switching -------------------------------------------------------------------
    def forward(self, src: _Link, frame: bytes) -> None:
        """Switch one frame that arrived on ``src``."""
        now = time.monotonic()
        with self._lock:
            targets = self._targets_locked(src, frame, now)
        for target in targets:
            target.deliver(frame)

    def forward_many(self, src: _Link, frames: list[bytes]) -> None:
        """Switch frames that arrived on ``src`` one after the other: each port gets its
        share in one delivery, in their order."""
        now = time.monotonic()
        batches: dict[_Link, list[bytes]] = {}
        with self._lock:
            for frame in frames:
                for target in self._targets_locked(src, frame, now):
                    batches.setdefault(target, []).append(frame)
        for target, batch in batches.items():
            if len(batch) == 1:
                target.deliver(batch[0])
            else:
                target.deliver_many(batch)

    def _targets_locked(self, src: _Link, frame: bytes, now: float) -> tuple[_Link, ...] | list[_Link]:
        """Learn ``frame``'s source and return the links it goes to (lock held)."""
        n = len(frame)
        if n < ETH_HEADER or n > MAX_WIRE_FRAME:
            self.bad_frames += 1
            return ()
        dst = frame[0:6]
        if not frame[6] & 1:
            smac = frame[6:12]
            entry = self._table.get(smac)
            if entry is None or entry[0] is not src or now - entry[1] > 1.0:
                self._table[smac] = (src, now)
                self._table.move_to_end(smac)
                if len(self._table) > MAC_TABLE_SIZE:
                    self._table.popitem(last=False)
        self.forwarded += 1
        targets: tuple[_Link, ...] | list[_Link]
        if dst[0] & 1:
            targets = [x for x in self._links if x is not src]
            self.flooded += 1
        else:
            entry = self._table.get(dst)
            if entry is not None and now - entry[1] < MAC_AGING_S:
                targets = () if entry[0] is src else (entry[0],)
            else:
                targets = [x for x in self._links if x is not src]
                self.flooded += 1
        return targets

    def mac_table(self) -> dict[str, str]:
        """Learned addresses -> port or link names (for diagnostics)."""
        with self._lock:
            return {":".join(f"{b:02x}" for b in mac): link.name for mac, (link, _t) in self._table.items()}

    # sharing across processes ------------------------------------------------------
    def _join(self) -> None:
        """Connect to the host of this hub, or become it."""
        address = socket_address(self.name)
        for _attempt in range(20):
            if self._closed:
                return
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(address)
            except (ConnectionRefusedError, FileNotFoundError):
                sock.close()
            except OSError:
                sock.close()
                raise
            else:
                try:
                    _handshake(sock)
                except (OSError, ConnectionError) as exc:
                    sock.close()
                    raise OSError(f"hub:{self.name}: cannot join the hub's host: {exc}") from None
                link = _SocketLink(self, sock, "uplink")
                with self._lock:
                    self._uplink = link
                    self._links = (*self._links, link)
                    self.role = "member"
                link.start()
                log.info("hub:%s: joined the hub hosted by another process", self.name)
                return
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                listener.bind(address)
            except OSError:
                listener.close()
                time.sleep(0.01)  # another process just became host: connect to it
                continue
            listener.listen(16)
            self._listener = listener
            self.role = "host"
            threading.Thread(target=self._accept_loop, args=(listener,), daemon=True,
                             name=f"hub-{self.name}-accept").start()
            log.info("hub:%s: hosting (other processes on this host can join)", self.name)
            return
        raise OSError(f"hub:{self.name}: could neither host nor join the hub")

    def _accept_loop(self, listener: socket.socket) -> None:
        count = 0
        while not self._closed:
            try:
                sock, _addr = listener.accept()
            except OSError:
                return
            try:
                uid = _peer_uid(sock)
                if uid != os.getuid() and uid != 0:
                    log.warning("hub:%s: refused a connection from uid %d", self.name, uid)
                    sock.close()
                    continue
                _handshake(sock)
            except (OSError, ConnectionError) as exc:
                log.info("hub:%s: a process failed to join: %s", self.name, exc)
                sock.close()
                continue
            count += 1
            link = _SocketLink(self, sock, f"member{count}")
            with self._lock:
                if self._closed:
                    sock.close()
                    return
                self._links = (*self._links, link)
            link.start()
            log.info("hub:%s: another process joined (%s)", self.name, link.name)

    def _link_closed(self, link: _SocketLink) -> None:
        with self._lock:
            self._drop_link_locked(link)
            lost_uplink = link is self._uplink
            if lost_uplink:
                self._uplink = None
                self.role = "local"
        if lost_uplink and not self._closed:
            log.info("hub:%s: the hosting process went away; taking over or rejoining", self.name)
            self._rejoin_thread = threading.Thread(target=self._rejoin, daemon=True,
                                                   name=f"hub-{self.name}-rejoin")
            self._rejoin_thread.start()

    def _rejoin(self) -> None:
        delay = 0.02
        while not self._closed:
            try:
                self._join()
                return
            except OSError as exc:
                log.debug("hub:%s: rejoin failed: %s", self.name, exc)
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def close(self) -> None:
        """Disconnect from other processes and forget every port."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            links = [x for x in self._links if isinstance(x, _SocketLink)]
            listener, self._listener = self._listener, None
        if listener is not None:
            shut_and_close(listener)
        for link in links:
            link.close()

    def __repr__(self) -> str:
        return f"<Hub {self.name} {self.role} ports={len(self._ports)} links={self.links}>"


_hubs: dict[tuple[str, bool], Hub] = {}
_hubs_lock = threading.Lock()


def get_hub(name: str, shared: bool = True) -> Hub:
    """This process's switch called ``name`` (created, and joined to other processes, on first use)."""
    with _hubs_lock:
        hub = _hubs.get((name, shared))
        if hub is None:
            hub = Hub(name, shared)
            _hubs[(name, shared)] = hub
        return hub


def _release_hub(hub: Hub) -> None:
    with _hubs_lock:
        if _hubs.get((hub.name, hub.shared)) is hub and not hub.ports:
            del _hubs[(hub.name, hub.shared)]
        else:
            return
    hub.close()


def open_hub(url: str, machine: Machine | None = None) -> HubPort:
    """The ``hub:`` backend factory: a new port on the named switch."""
    name, shared = parse_hub_url(url)
    machine_name = getattr(machine, "name", None)
    with _hubs_lock:  # so that a hub being released by its last port is not reused
        hub = _hubs.get((name, shared))
        if hub is None:
            hub = Hub(name, shared)
            _hubs[(name, shared)] = hub
        return hub.add_port(machine, name=machine_name)
