"""The ``passt:`` network backend: frames between a NIC and a passt process over its UNIX socket.

Threads and hand-over:

* the machine thread calls :meth:`PasstBackend.send`; it never blocks: frames go into a
  bounded queue, and a full queue (or no connection) drops the frame and counts it;
* a writer thread per connection drains that queue onto the socket, several frames
  per system call;
* the supervisor thread reads the socket, decodes frames (:mod:`pyv86_passt.framing`)
  and hands them to the machine thread in batches through the core's
  :class:`~pyv86.net.handoff.Handoff`. Delivery is lossless: when the NIC's ring is full
  its port tells the handoff to hold frames until the guest frees ring space
  (:meth:`PasstBackend.rx_resume`); at most ``rx_limit`` frames wait, beyond that the
  reader stops reading the socket, so passt's socket buffer fills and passt (and TCP)
  slow down to the guest's pace instead of frames being dropped and retransmitted.

When passt goes away the supervisor logs one warning with passt's exit status and its
last line of output. A passt we started is restarted after a growing pause
(0.25 s doubling to 8 s; back to 0.25 s once a connection lasted 30 s); for a passt
someone else started we report and keep trying to reconnect every few seconds. The
machine keeps running either way: meanwhile frames from the NIC are dropped and counted.
"""
from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from typing import TYPE_CHECKING

from attrs import define

from pyv86.net.base import FrameCallback
from pyv86.net.frame import strip_padding
from pyv86.net.handoff import Handoff
from pyv86_passt.framing import ETH_MAX, MAX_FRAME, MIN_FRAME, FrameDecoder, encode
from pyv86_passt.options import PasstOptions, parse_url
from pyv86_passt.process import PasstError, PasstProcess, describe_status

if TYPE_CHECKING:
    from pyv86.machine import Machine

log = logging.getLogger(__name__)

RECV_SIZE = 256 * 1024
BACKOFF_FIRST = 0.25
BACKOFF_MAX = 8.0
STABLE_AFTER = 30.0          # a connection this old resets the backoff
ATTACH_RETRY = 2.0
_STOP = object()


@define
class PasstCounters:
    """Frame and event counts, readable from any thread (single writers, so no lock)."""

    tx_frames: int = 0       # frames written to passt
    tx_bytes: int = 0
    tx_dropped: int = 0      # queue full or no connection (machine thread)
    tx_lost: int = 0         # queued, but the connection ended before they were written
    tx_invalid: int = 0      # not 14..65535 bytes: never sent
    rx_frames: int = 0       # frames delivered to the receiver
    rx_bytes: int = 0
    rx_runts: int = 0        # from passt, shorter than 14 bytes: dropped
    rx_giants: int = 0       # from passt, longer than 65535 bytes: dropped
    rx_oversize: int = 0     # from passt, longer than 1514 bytes: delivered, logged
    rx_unclaimed: int = 0    # arrived while no receiver was installed
    connections: int = 0     # successful connects (1 + restarts/reconnects)
    passt_exits: int = 0     # times the connection ended while we were not closing


class PasstBackend:
    """NetBackend for ``passt:`` and ``user:`` URLs."""

    external = True

    def __init__(self, url: str, machine: Machine | None = None, *, tx_limit: int = 512,
                 rx_limit: int = 512, start_timeout: float = 10.0) -> None:
        self.url = url
        self.name = url
        self.machine = machine
        self.options: PasstOptions = parse_url(url)
        self.counters = PasstCounters()
        self.tx_limit = tx_limit
        self.rx_limit = rx_limit
        self.start_timeout = start_timeout
        self._receiver: FrameCallback | None = None
        self._txq: queue.Queue[object] = queue.Queue(maxsize=tx_limit)
        self._handoff = Handoff(machine, limit=rx_limit)
        self._handoff.set_receiver(self._receive)
        self._closing = threading.Event()
        self._sock: socket.socket | None = None
        self._sock_lock = threading.Lock()
        self._writer: threading.Thread | None = None
        self._connected_at = 0.0
        self._oversize_logged = 0
        self._bad_frames = 0
        self.process: PasstProcess | None = None
        if self.options.socket_path is None:
            self.process = PasstProcess(self.options.argv(), name=url)
            try:
                sock = self.process.start(start_timeout)
            except BaseException:
                self.process.cleanup()
                raise
        else:
            sock = self._connect_attached()
        self._attach(sock)
        self._supervisor = threading.Thread(target=self._supervise, name=f"passt-{id(self):x}",
                                            daemon=True)
        self._supervisor.start()

    # -- the NIC's side (machine thread) ----------------------------------------------
    def send(self, frame: bytes) -> None:
        n = len(frame)
        if n < MIN_FRAME or n > MAX_FRAME:
            self.counters.tx_invalid += 1
            return
        if self._sock is None:
            self.counters.tx_dropped += 1
            return
        try:
            # passt takes a segment's length from the frame, so the NIC's padding of short
            # frames to 60 bytes would turn a bare ACK into one carrying 6 bytes
            self._txq.put_nowait(strip_padding(bytes(frame)))
        except queue.Full:
            self.counters.tx_dropped += 1

    def set_receiver(self, callback: FrameCallback | None) -> None:
        self._receiver = callback
        if callback is None:
            self._handoff.resume()       # nobody will tell us to go on: frames are unclaimed

    def rx_resume(self) -> None:
        """Machine thread: the NIC has room again (called by its port); deliver what waits."""
        self._handoff.resume()

    @property
    def rx_waiting(self) -> int:
        """Frames read from passt that wait for room in the NIC."""
        return self._handoff.pending

    @property
    def pid(self) -> int | None:
        """PID of the passt we started (None when attached to someone else's)."""
        return self.process.pid if self.process is not None else None

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def close(self) -> None:
        """Stop the threads and the passt we started; idempotent."""
        if self._closing.is_set():
            return
        self._closing.set()
        self._shutdown_socket()
        self._supervisor.join(5.0)
        if self.process is not None:
            self.process.cleanup()

    # -- connection management (supervisor thread) --------------------------------------
    def _connect_attached(self) -> socket.socket:
        path = self.options.socket_path
        assert path is not None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
        except OSError as exc:
            sock.close()
            raise PasstError(f"cannot connect to the passt socket {path}: "
                             f"{exc.strerror or exc}; is passt running?") from None
        return sock

    def _attach(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        while True:                      # frames queued for a dead connection are lost
            try:
                self._txq.get_nowait()
                self.counters.tx_lost += 1
            except queue.Empty:
                break
        self._writer = threading.Thread(target=self._write_loop, args=(sock,),
                                        name=f"passt-tx-{id(self):x}", daemon=True)
        self._connected_at = time.monotonic()
        self.counters.connections += 1
        with self._sock_lock:
            self._sock = sock
        self._writer.start()

    def _detach(self) -> None:
        with self._sock_lock:
            sock, self._sock = self._sock, None
        if sock is None:
            return
        try:
            self._txq.put_nowait(_STOP)
        except queue.Full:
            pass
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        if self._writer is not None:
            self._writer.join(2.0)
            self._writer = None
        sock.close()

    def _shutdown_socket(self) -> None:
        with self._sock_lock:
            sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _supervise(self) -> None:
        backoff = BACKOFF_FIRST
        while True:
            sock = self._sock
            why = self._read_loop(sock) if sock is not None else "not connected"
            lived = time.monotonic() - self._connected_at
            self._detach()
            if self._closing.is_set():
                return
            self.counters.passt_exits += 1
            if lived >= STABLE_AFTER:
                backoff = BACKOFF_FIRST
            if self.process is not None:
                backoff = self._restart(why, backoff)
            else:
                self._reconnect(why)
            if self._closing.is_set():
                return

    def _restart(self, why: str, backoff: float) -> float:
        proc = self.process
        assert proc is not None
        code = proc.wait(2.0)
        if code is None:                 # socket gone but passt alive: make it a clean restart
            code = proc.stop()
        log.warning("%s: passt (pid %s) %s (%s); its last output: %s; restarting it in %.2g s",
                    self.name, proc.pid, describe_status(code), why, proc.last_output(), backoff)
        while not self._closing.wait(backoff):
            backoff = min(backoff * 2, BACKOFF_MAX)
            try:
                sock = proc.start(self.start_timeout, cancel=self._closing)
            except PasstError as exc:
                if self._closing.is_set():
                    return backoff
                log.error("%s: restarting passt failed: %s; next try in %.2g s",
                          self.name, exc, backoff)
                continue
            if self._closing.is_set():
                sock.close()
                return backoff
            log.warning("%s: passt restarted (pid %s)", self.name, proc.pid)
            self._attach(sock)
            return backoff
        return backoff

    def _reconnect(self, why: str) -> None:
        log.error("%s: the connection to passt at %s ended (%s); it is not our process, so "
                  "pyv86 cannot restart it: frames are dropped until it is back (retrying "
                  "every %g s)", self.name, self.options.socket_path, why, ATTACH_RETRY)
        while not self._closing.wait(ATTACH_RETRY):
            try:
                sock = self._connect_attached()
            except PasstError:
                continue
            log.warning("%s: reconnected to passt at %s", self.name, self.options.socket_path)
            self._attach(sock)
            return

    # -- data paths ----------------------------------------------------------------------
    def _read_loop(self, sock: socket.socket) -> str:
        """Read frames until the connection ends; returns why it ended."""
        decoder = FrameDecoder(on_drop=self._dropped_from_passt)
        buf = bytearray(RECV_SIZE)
        view = memoryview(buf)
        counters = self.counters
        while not self._closing.is_set():
            try:
                n = sock.recv_into(buf)
            except OSError as exc:
                return f"socket error: {exc.strerror or exc}"
            if n == 0:
                if decoder.pending:
                    return f"connection closed by passt in the middle of a frame ({decoder.pending} bytes)"
                return "connection closed by passt"
            frames = decoder.feed(view[:n])
            dc = decoder.counters
            counters.rx_runts, counters.rx_giants = dc.runts, dc.giants
            if dc.oversize != counters.rx_oversize:
                counters.rx_oversize = dc.oversize
                if self._oversize_logged < 5:
                    self._oversize_logged += 1
                    big = max(len(f) for f in frames if len(f) > ETH_MAX)
                    log.warning("%s: passt sent a %d-byte frame, larger than Ethernet's %d; "
                                "a 1500-MTU NIC will drop it (is the guest's MTU above 1500, "
                                "or mtu=0 in the URL?)", self.name, big, ETH_MAX)
            if frames:
                self._hand_over(frames)
        return "closing"

    def _dropped_from_passt(self, length: int) -> None:
        self._bad_frames += 1
        n = self._bad_frames
        if n <= 10 or n % 1000 == 0:
            log.warning("%s: dropped a frame of %d bytes from passt (frames must be %d..%d "
                        "bytes); %d dropped so far", self.name, length, MIN_FRAME, MAX_FRAME, n)

    def _hand_over(self, frames: list[bytes]) -> None:
        """Reader thread: pass frames on, waiting (not reading passt) while ``rx_limit`` wait."""
        self._handoff.deliver_many(frames, block=True, cancel=self._closing)

    def _receive(self, frame: bytes) -> bool:
        """Machine thread: give one frame to the NIC; False when it has no room for more."""
        receiver = self._receiver
        counters = self.counters
        if receiver is None:
            counters.rx_unclaimed += 1
            return True
        counters.rx_frames += 1
        counters.rx_bytes += len(frame)
        try:
            return receiver(frame) is not False  # type: ignore[func-returns-value]
        except Exception:  # noqa: BLE001 - a NIC bug must not kill the backend
            log.exception("%s: the receiver failed on a %d-byte frame", self.name, len(frame))
            return True

    def _write_loop(self, sock: socket.socket) -> None:
        txq = self._txq
        counters = self.counters
        while True:
            item = txq.get()
            if item is _STOP:
                return
            batch = [encode(item)]  # type: ignore[arg-type]
            nbytes = len(item)  # type: ignore[arg-type]
            while len(batch) < 64:
                try:
                    more = txq.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    self._write(sock, batch, nbytes)
                    return
                batch.append(encode(more))  # type: ignore[arg-type]
                nbytes += len(more)  # type: ignore[arg-type]
            if not self._write(sock, batch, nbytes):
                return

    def _write(self, sock: socket.socket, batch: list[bytes], nbytes: int) -> bool:
        try:
            sock.sendall(b"".join(batch))
        except OSError as exc:
            self.counters.tx_lost += len(batch)
            if not self._closing.is_set():
                log.debug("%s: writing to passt failed: %s", self.name, exc)
            try:
                sock.shutdown(socket.SHUT_RDWR)   # wakes the reader, which handles the restart
            except OSError:
                pass
            return False
        self.counters.tx_frames += len(batch)
        self.counters.tx_bytes += nbytes
        return True


def open_passt(url: str, machine: Machine) -> PasstBackend:
    """Backend factory for the ``passt`` and ``user`` schemes."""
    return PasstBackend(url, machine)
