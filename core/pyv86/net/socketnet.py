"""``stream:`` and ``dgram:`` — a NIC's cable to QEMU's socket netdevs (or anything speaking them).

QEMU joins VMs through plain sockets: ``-netdev stream`` / ``-netdev socket,listen=|connect=``
carry each Ethernet frame behind a 4-byte big-endian length on a TCP or UNIX stream, and
``-netdev dgram`` / ``-netdev socket,udp=`` send one frame per UDP datagram. These backends
speak the same, so a pyv86 VM and a QEMU VM (or two pyv86 VMs on different hosts) share a
link without root, a TAP device or a relay:

==========================================  =====================================================
pyv86 netdev URL                            the QEMU side
==========================================  =====================================================
``stream:127.0.0.1:5555``                   ``-netdev stream,id=n,server=on,addr.type=inet,``
                                            ``addr.host=127.0.0.1,addr.port=5555``
                                            (or ``-netdev socket,id=n,listen=127.0.0.1:5555``)
``stream:127.0.0.1:5555?server=on``         ``-netdev stream,id=n,server=off,addr.type=inet,...``
                                            (or ``-netdev socket,id=n,connect=127.0.0.1:5555``)
``stream:unix:/run/vm.sock[?server=on]``    ``addr.type=unix,addr.path=/run/vm.sock``
``dgram:127.0.0.1:5556?remote=127.0.0.1:5555``  ``-netdev dgram,id=n,local.type=inet,local.host=``
                                            ``127.0.0.1,local.port=5555,remote.type=inet,``
                                            ``remote.host=127.0.0.1,remote.port=5556``
``dgram:230.0.0.1:1234[?ifaddr=A&ttl=N]``   ``-netdev dgram,id=n,remote.type=inet,remote.host=``
                                            ``230.0.0.1,remote.port=1234`` (or ``-netdev socket,``
                                            ``id=n,mcast=230.0.0.1:1234``): every VM on the
                                            group hears every other, a hub across processes
                                            and hosts
==========================================  =====================================================

Hosts may be names, IPv4 or bracketed IPv6 addresses (``[::1]:5555``).

* **Client** (``server=off``, the default): connects in the background, so the machine
  starts at once; when the connection fails or ends it tries again after a pause that
  doubles from 0.25 s to 5 s, and logs when it connects and when it loses the peer.
* **Server** (``server=on``): listens at once (a busy port is an error when the machine
  starts) and takes one peer at a time; a new connection replaces the current one (a
  restarted QEMU comes back without restarting pyv86).
* **Frames.** What the NIC sends during a CPU slice leaves together when the slice ends
  (:class:`~pyv86.net.slicebatch.SliceBatch`); while no peer is connected it is dropped and
  counted (``tx_no_peer``), as on an unplugged cable. Received frames shorter than 14 or
  longer than 1514 bytes are dropped and counted; a stream length above 65,535 closes the
  connection (the peer does not speak this format). Received frames reach the NIC through
  the core's :class:`~pyv86.net.handoff.Handoff`: on a stream, when the NIC's ring is
  full, the reader stops reading and the peer's TCP slows down instead of frames being
  dropped; a datagram that finds the inbox full is dropped and counted.
* A datagram from anyone but ``remote`` is dropped and counted (``rx_foreign``). On a
  multicast group datagrams come from every member, and the group loops this VM's own
  frames back to it: those are recognised (the last 256 frames sent are remembered by
  hash) and dropped (``rx_own``). ``ttl`` (default 1) keeps the group's traffic on the
  local link; ``ifaddr`` picks the interface to join and send on.

Counters: :attr:`StreamBackend.stats`, :attr:`DgramBackend.stats`.
"""
from __future__ import annotations

import collections
import ipaddress
import logging
import socket
import threading
import urllib.parse
from typing import TYPE_CHECKING, Any

import attrs

from pyv86.net.framedstream import FramedStream, shut_and_close
from pyv86.net.handoff import Handoff
from pyv86.net.slicebatch import SliceBatch

if TYPE_CHECKING:
    from pyv86.machine import Machine

log = logging.getLogger(__name__)

ETH_HEADER = 14
ETH_FRAME_MAX = 1514
RETRY_FIRST_S = 0.25
RETRY_MAX_S = 5.0
CONNECT_TIMEOUT_S = 5.0
RX_BACKLOG = 512
DATAGRAM_MAX = 65535


@attrs.define(frozen=True)
class SocketAddress:
    """Where a socket netdev listens or connects: (host, port) for TCP/UDP, or a UNIX path."""

    family: int
    host: str = ""
    port: int = 0
    path: str = ""

    @property
    def sockaddr(self) -> Any:
        return self.path if self.family == socket.AF_UNIX else (self.host, self.port)

    def __str__(self) -> str:
        if self.family == socket.AF_UNIX:
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_inet(text: str, what: str) -> SocketAddress:
    """``HOST:PORT`` or ``[V6]:PORT`` -> SocketAddress (resolved; ValueError when malformed)."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{what} {text!r} is not HOST:PORT (a port from 1 to 65535)")
    try:
        info = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ValueError(f"{what} {text!r}: cannot resolve {host!r} ({exc.strerror})") from None
    family, _type, _proto, _name, sockaddr = info[0]
    return SocketAddress(family, sockaddr[0], int(port))


def _split(url: str, scheme: str, keys: tuple[str, ...]) -> tuple[str, dict[str, str]]:
    name, sep, rest = url.partition(":")
    if name.lower() != scheme or not sep:
        raise ValueError(f"{url!r} is not a {scheme}: URL")
    rest = rest[2:] if rest.startswith("//") else rest
    where, _, query = rest.partition("?")
    options: dict[str, str] = {}
    for key, values in urllib.parse.parse_qs(query, keep_blank_values=True).items():
        if key not in keys:
            raise ValueError(f"unknown option {key!r} (known: {', '.join(keys)})")
        options[key] = values[-1]
    if not where:
        raise ValueError(f"no address (expected {scheme}:HOST:PORT)")
    return where, options


def parse_stream_url(url: str) -> tuple[SocketAddress, bool]:
    """``stream:HOST:PORT[?server=on|off]`` or ``stream:unix:PATH[...]`` -> (address, server)."""
    where, options = _split(url, "stream", ("server",))
    server = options.get("server", "off").lower()
    if server not in ("on", "off", "1", "0", "true", "false", "yes", "no"):
        raise ValueError(f"server={options['server']!r}; use server=on or server=off")
    if where.startswith("unix:"):
        path = where[5:]
        if not path:
            raise ValueError("stream:unix: needs a socket path")
        address = SocketAddress(socket.AF_UNIX, path=path)
    else:
        address = parse_inet(where, "address")
    return address, server in ("on", "1", "true", "yes")


@attrs.define(frozen=True)
class DgramSpec:
    """What a ``dgram:`` URL asks for: a unicast pair, or a multicast group."""

    local: SocketAddress
    """Where to bind (for a group: the group and its port)."""
    remote: SocketAddress
    """Where frames go (for a group: the group itself)."""
    group: bool = False
    ifaddr: str = ""
    ttl: int = 1


def parse_dgram_url(url: str) -> DgramSpec:
    """``dgram:LOCAL_HOST:PORT?remote=HOST:PORT`` (unicast) or
    ``dgram:GROUP:PORT[?ifaddr=A.B.C.D&ttl=N]`` (an IPv4 multicast group)."""
    where, options = _split(url, "dgram", ("remote", "ifaddr", "ttl"))
    local = parse_inet(where, "local address")
    if "remote" not in options:
        if local.family != socket.AF_INET or not ipaddress.ip_address(local.host).is_multicast:
            raise ValueError("dgram: needs remote=HOST:PORT (where the other side listens), "
                             "or an IPv4 multicast group (224.0.0.0/4) as its address")
        ttl = options.get("ttl", "1")
        if not ttl.isdigit() or not 0 <= int(ttl) <= 255:
            raise ValueError(f"ttl={ttl!r} is not 0..255")
        ifaddr = options.get("ifaddr", "")
        if ifaddr:
            try:
                ipaddress.IPv4Address(ifaddr)
            except ValueError:
                raise ValueError(f"ifaddr={ifaddr!r} is not an IPv4 address") from None
        return DgramSpec(local, local, group=True, ifaddr=ifaddr, ttl=int(ttl))
    for key in ("ifaddr", "ttl"):
        if key in options:
            raise ValueError(f"{key}= is for a multicast group, not with remote=")
    remote = parse_inet(options["remote"], "remote")
    if local.family != remote.family:
        raise ValueError("local address and remote= must both be IPv4 or both IPv6")
    return DgramSpec(local, remote)


@attrs.define
class _Counters:
    rx_frames: int = 0
    rx_bytes: int = 0
    rx_runt: int = 0
    rx_oversize: int = 0
    rx_foreign: int = 0
    rx_own: int = 0
    tx_frames: int = 0
    tx_bytes: int = 0
    tx_no_peer: int = 0
    tx_errors: int = 0
    connections: int = 0


class _SocketBackend:
    """What both socket netdevs share: the NIC side (send batching, hand-over, counters)."""

    external = True

    def __init__(self, url: str, machine: Machine | None) -> None:
        self.url = url
        self.label = url.split("?")[0]
        self._c = _Counters()
        self._handoff = Handoff(machine, limit=RX_BACKLOG)
        self._tx = SliceBatch(machine, self._send_batch)
        self._closing = threading.Event()

    def send(self, frame: bytes) -> None:
        """Send ``frame``; during a CPU slice, when it ends, with the slice's other frames."""
        if self._closing.is_set():
            return
        if not self._tx.add(frame):
            self._send_batch([frame])

    def _send_batch(self, frames: list[bytes]) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def set_receiver(self, callback: Any) -> None:
        self._handoff.set_receiver(callback)

    def rx_resume(self) -> None:
        """Machine thread: the NIC has room again (called by its port); deliver what waits."""
        self._handoff.resume()

    def _accept_frame(self, frame: bytes) -> bool:
        """Count ``frame`` and say whether it is a frame a NIC can take."""
        n = len(frame)
        c = self._c
        if n < ETH_HEADER:
            c.rx_runt += 1
            return False
        if n > ETH_FRAME_MAX:
            c.rx_oversize += 1
            return False
        c.rx_frames += 1
        c.rx_bytes += n
        return True

    @property
    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = attrs.asdict(self._c)
        out["rx_dropped_backlog"] = self._handoff.dropped
        out["rx_dropped_no_receiver"] = self._handoff.undelivered
        return out


class StreamBackend(_SocketBackend):
    """``stream:`` — length-prefixed frames on a TCP or UNIX stream (see the module docstring)."""

    def __init__(self, url: str, machine: Machine | None = None) -> None:
        super().__init__(url, machine)
        self.address, self.server = parse_stream_url(url)
        self._lock = threading.Lock()
        self._stream: FramedStream | None = None
        self._ended = threading.Event()
        self._listener: socket.socket | None = None
        self._dropped_before = 0  # frames the queues of earlier connections dropped
        if self.server:
            self._listener = self._listen()
            target, name = self._accept_loop, "accept"
        else:
            target, name = self._connect_loop, "connect"
        self._thread = threading.Thread(target=target, name=f"{self.label} {name}", daemon=True)
        self._thread.start()

    @property
    def connected(self) -> bool:
        return self._stream is not None

    def _send_batch(self, frames: list[bytes]) -> None:
        stream = self._stream
        if stream is None:
            self._c.tx_no_peer += len(frames)
            return
        stream.send_many(frames)
        self._c.tx_frames += len(frames)
        self._c.tx_bytes += sum(map(len, frames))

    @property
    def stats(self) -> dict[str, Any]:
        out = super().stats
        stream = self._stream
        out["tx_dropped_queue"] = self._dropped_before + (stream.dropped if stream else 0)
        out["connected"] = stream is not None
        return out

    # connections --------------------------------------------------------------------
    def _received(self, frame: bytes) -> None:
        if self._accept_frame(frame):
            # a full NIC makes this reader wait, so the peer's TCP slows down (no loss)
            self._handoff.deliver_many((frame,), block=True, cancel=self._closing)

    def _attach(self, sock: socket.socket, peer: str) -> FramedStream | None:
        if self._closing.is_set():  # a connection that completed while closing
            sock.close()
            return None
        if sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        stream: FramedStream

        def ended() -> None:
            with self._lock:
                self._dropped_before += stream.dropped  # also for a peer a new one replaced
                if self._stream is stream:
                    self._stream = None
                    self._ended.set()
            if not self._closing.is_set():
                log.info("%s: %s went away", self.label, peer)

        stream = FramedStream(sock, f"{self.label} ({peer})", on_frame=self._received,
                              on_close=ended, queue_frames=RX_BACKLOG)
        with self._lock:
            old, self._stream = self._stream, stream
            self._ended.clear()
            self._c.connections += 1
        if old is not None:
            log.info("%s: %s replaces the previous peer", self.label, peer)
            old.close()
        stream.start()
        log.info("%s: connected to %s", self.label, peer)
        return stream

    def _connect_loop(self) -> None:
        delay, reported = RETRY_FIRST_S, False
        while not self._closing.is_set():
            sock = socket.socket(self.address.family, socket.SOCK_STREAM)
            try:
                sock.settimeout(CONNECT_TIMEOUT_S)
                sock.connect(self.address.sockaddr)
                sock.settimeout(None)
            except OSError as exc:
                sock.close()
                if not reported:
                    log.warning("%s: cannot connect to %s (%s); trying again every %g s at most",
                                self.label, self.address, exc.strerror or exc, RETRY_MAX_S)
                    reported = True
                self._closing.wait(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            self._attach(sock, str(self.address))
            delay, reported = RETRY_FIRST_S, False
            while not self._closing.is_set() and not self._ended.wait(0.5):
                pass
            self._closing.wait(RETRY_FIRST_S)

    def _listen(self) -> socket.socket:
        sock = socket.socket(self.address.family, socket.SOCK_STREAM)
        try:
            if self.address.family != socket.AF_UNIX:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(self.address.sockaddr)
            sock.listen(4)
        except OSError as exc:
            sock.close()
            raise OSError(exc.errno, f"cannot listen on {self.address}: {exc.strerror or exc}") from None
        log.info("%s: waiting for a peer on %s", self.label, self.address)
        return sock

    def _accept_loop(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._closing.is_set():
            try:
                sock, peer = listener.accept()
            except OSError:
                return
            if self._closing.is_set():
                sock.close()
                return
            name = "a peer" if self.address.family == socket.AF_UNIX else \
                str(SocketAddress(self.address.family, peer[0], peer[1]))
            self._attach(sock, name)

    def close(self) -> None:
        if self._closing.is_set():
            return
        self._closing.set()
        listener, self._listener = self._listener, None
        if listener is not None:
            shut_and_close(listener)
        with self._lock:
            stream = self._stream
        if stream is not None:
            stream.close()
        if threading.current_thread() is not self._thread:
            self._thread.join(5.0)


class DgramBackend(_SocketBackend):
    """``dgram:`` — one frame per UDP datagram, to one peer or a multicast group (see the
    module docstring)."""

    OWN_FRAMES = 256
    """How many of the frames sent last are recognised when a group loops them back."""

    def __init__(self, url: str, machine: Machine | None = None) -> None:
        super().__init__(url, machine)
        spec = self.spec = parse_dgram_url(url)
        self.local, self.remote = spec.local, spec.remote
        sock = socket.socket(self.local.family, socket.SOCK_DGRAM)
        try:
            if spec.group:
                self._join_group(sock)
            sock.bind(self.local.sockaddr)
        except OSError as exc:
            sock.close()
            raise OSError(exc.errno, f"cannot bind {self.local}: {exc.strerror or exc}") from None
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock = sock
        self._remote_key = (self.remote.host, self.remote.port)
        self._sent: collections.deque[int] = collections.deque()
        self._sent_count: collections.Counter[int] = collections.Counter()
        self._error_logged = False
        self._thread = threading.Thread(target=self._read_loop, name=f"{self.label} rx", daemon=True)
        self._thread.start()

    def _join_group(self, sock: socket.socket) -> None:
        spec = self.spec
        # every VM on this host binds the group's port
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        iface = socket.inet_aton(spec.ifaddr or "0.0.0.0")
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                        socket.inet_aton(self.local.host) + iface)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)  # VMs on this host
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, spec.ttl)
        if spec.ifaddr:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, iface)

    def _remember(self, frame: bytes) -> None:
        """Note a frame sent to the group, to recognise it when the group loops it back."""
        key = hash(frame)
        self._sent.append(key)
        self._sent_count[key] += 1
        if len(self._sent) > self.OWN_FRAMES:
            old = self._sent.popleft()
            left = self._sent_count[old] - 1
            if left:
                self._sent_count[old] = left
            else:
                del self._sent_count[old]

    def _is_own(self, frame: bytes) -> bool:
        return hash(frame) in self._sent_count

    def _send_batch(self, frames: list[bytes]) -> None:
        sockaddr = self.remote.sockaddr
        c = self._c
        group = self.spec.group
        for frame in frames:
            if group:
                self._remember(frame)
            try:
                self.sock.sendto(frame, socket.MSG_DONTWAIT, sockaddr)
            except BlockingIOError:
                c.tx_errors += 1
                continue
            except OSError as exc:
                # nobody listening yet (ICMP port unreachable) or the socket is closing
                c.tx_no_peer += 1
                if not self._error_logged and not self._closing.is_set():
                    self._error_logged = True
                    log.info("%s: sending to %s failed: %s (counting further failures silently)",
                             self.label, self.remote, exc.strerror or exc)
                continue
            c.tx_frames += 1
            c.tx_bytes += len(frame)

    def _read_loop(self) -> None:
        recv, deliver = self.sock.recvfrom, self._handoff.deliver
        while not self._closing.is_set():
            try:
                frame, peer = recv(DATAGRAM_MAX)
            except ConnectionRefusedError:
                continue  # an earlier datagram found nobody listening
            except OSError:
                return
            if self._closing.is_set():
                return
            if self.spec.group:
                if self._is_own(frame):
                    self._c.rx_own += 1
                    continue
            elif not peer or (peer[0], peer[1]) != self._remote_key:
                self._c.rx_foreign += 1
                continue
            if self._accept_frame(frame):
                deliver(frame)

    def close(self) -> None:
        if self._closing.is_set():
            return
        self._closing.set()
        shut_and_close(self.sock)
        if threading.current_thread() is not self._thread:
            self._thread.join(5.0)


def open_stream(url: str, machine: Machine | None = None) -> StreamBackend:
    """The ``stream`` factory."""
    return StreamBackend(url, machine)


def open_dgram(url: str, machine: Machine | None = None) -> DgramBackend:
    """The ``dgram`` factory."""
    return DgramBackend(url, machine)
