"""``tap:NAME`` netdevs: the NIC's cable plugged into a Linux TAP interface.

URL: ``tap:NAME`` or ``tap:NAME?bridge=BR&up=1``. The backend attaches to TAP ``NAME``
(creating a transient one if it does not exist; it disappears when pyv86 exits unless it
was made persistent with ``ip tuntap add``). ``up=1`` (the default) brings the link up
when it is down and we may; ``bridge=BR`` enslaves it to an existing Linux bridge.

Threads: a reader thread polls the non-blocking descriptor (and a wake-up pipe for
:meth:`TapBackend.close`), reads every queued frame, drops and counts runts and frames
longer than 1514 bytes, and hands the rest to the machine thread through the core's
bounded :class:`~pyv86.net.handoff.Handoff` (one ``call_soon_threadsafe`` per batch).
:meth:`TapBackend.send` writes to the descriptor from the machine thread, the frames of a
CPU slice together when it ends (:class:`~pyv86.net.slicebatch.SliceBatch`); when the
kernel queue is full the frame is dropped and counted (the guest sees loss, as on a wire).
Counters: :attr:`TapBackend.stats`.
"""
from __future__ import annotations

import errno
import logging
import os
import select
import threading
import urllib.parse
from typing import TYPE_CHECKING, Any, Callable

import attrs

from pyv86.net.handoff import Handoff
from pyv86.net.slicebatch import SliceBatch

from pyv86_relay_tap.ifctl import TapError, add_to_bridge, check_ifname, link_is_up, open_tap, set_link_up

if TYPE_CHECKING:
    from pyv86.machine import Machine

log = logging.getLogger(__name__)

FrameCallback = Callable[[bytes], None]

ETH_HEADER = 14
ETH_FRAME_MAX = 1514
READ_SIZE = 65536


def parse_tap_url(url: str) -> tuple[str, dict[str, str]]:
    """``"tap:tap0?bridge=br0"`` -> ``("tap0", {"bridge": "br0"})``; TapError when malformed."""
    scheme, sep, rest = url.partition(":")
    if scheme.lower() != "tap" or not sep:
        raise TapError(f"{url!r}: not a tap: URL (expected tap:NAME[?bridge=BR&up=1])")
    name, _, query = rest.lstrip("/").partition("?")
    check_ifname(name, url)
    options: dict[str, str] = {}
    for key, values in urllib.parse.parse_qs(query, keep_blank_values=True).items():
        if key not in ("bridge", "up"):
            raise TapError(f"{url}: unknown option {key!r} (known: bridge, up)")
        options[key] = values[-1]
    if options.get("up", "1") not in ("0", "1"):
        raise TapError(f"{url}: up={options['up']!r}; use up=0 or up=1")
    return name, options


@attrs.define
class _Counters:
    rx_frames: int = 0
    rx_bytes: int = 0
    rx_runt: int = 0
    rx_oversize: int = 0
    tx_frames: int = 0
    tx_bytes: int = 0
    tx_dropped: int = 0
    tx_errors: int = 0


class TapBackend:
    """A NetBackend on a TAP interface (see the module docstring)."""

    external = True

    def __init__(self, url: str, machine: Any, *, rx_backlog: int = 512) -> None:
        name, options = parse_tap_url(url)
        self.url = url
        self._handoff = Handoff(machine, limit=rx_backlog)
        self._tx = SliceBatch(machine, self._write_batch)
        self._c = _Counters()
        self._closed = False
        self._tx_error_logged = False
        self.fd, self.ifname = open_tap(name)
        try:
            if "bridge" in options:
                add_to_bridge(self.ifname, options["bridge"])
            if options.get("up", "1") == "1":
                try:
                    set_link_up(self.ifname)
                except TapError as exc:
                    log.warning("%s", exc)
            elif not link_is_up(self.ifname):
                log.info("tap:%s: link is down; frames will not flow until it is up", self.ifname)
        except BaseException:
            os.close(self.fd)
            raise
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._reader, name=f"pyv86-tap {self.ifname}",
                                        daemon=True)
        self._thread.start()
        log.info("tap:%s: attached", self.ifname)

    # NetBackend ----------------------------------------------------------------------
    def send(self, frame: bytes) -> None:
        """Write ``frame`` to the TAP; during a CPU slice, when the slice ends, with the
        slice's other frames (the reader on the far side then takes them in one wake-up)."""
        if self._closed:
            return
        if not self._tx.add(frame):
            self._write(frame)

    def _write_batch(self, frames: list[bytes]) -> None:
        for frame in frames:
            self._write(frame)

    def _write(self, frame: bytes) -> None:
        if self._closed:
            return
        try:
            os.write(self.fd, frame)
        except BlockingIOError:
            self._c.tx_dropped += 1
            return
        except OSError as exc:
            self._c.tx_errors += 1
            if not self._tx_error_logged:
                self._tx_error_logged = True
                hint = "; is the link up?" if exc.errno == errno.EIO else ""
                log.warning("tap:%s: write failed: %s%s (counting further failures silently)",
                            self.ifname, exc.strerror, hint)
            return
        self._c.tx_frames += 1
        self._c.tx_bytes += len(frame)

    def set_receiver(self, callback: FrameCallback | None) -> None:
        self._handoff.set_receiver(callback)

    def rx_resume(self) -> None:
        """The NIC has room again: deliver the frames that waited (while it is full they
        wait in the inbox, beyond that they are dropped and counted in
        ``rx_dropped_backlog`` instead of overflowing the NIC, see ``HubPort.rx_resume``)."""
        self._handoff.resume()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass
        if threading.current_thread() is not self._thread:
            self._thread.join(5.0)
        for fd in (self.fd, self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    @property
    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = attrs.asdict(self._c)
        out["rx_dropped_backlog"] = self._handoff.dropped
        out["rx_dropped_no_receiver"] = self._handoff.undelivered
        out["ifname"] = self.ifname
        return out

    # reader thread ---------------------------------------------------------------------
    def _reader(self) -> None:
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        c, fd, deliver = self._c, self.fd, self._handoff.deliver
        while not self._closed:
            try:
                events = poller.poll()
            except InterruptedError:
                continue
            if self._closed:
                break
            for efd, mask in events:
                if efd == fd and mask & (select.POLLERR | select.POLLHUP | select.POLLNVAL):
                    log.warning("tap:%s: the device went away; no more frames", self.ifname)
                    return
            while True:
                try:
                    frame = os.read(fd, READ_SIZE)
                except BlockingIOError:
                    break
                except OSError as exc:
                    log.warning("tap:%s: read failed: %s; stopping", self.ifname, exc.strerror)
                    return
                n = len(frame)
                if n < ETH_HEADER:
                    c.rx_runt += 1
                    continue
                if n > ETH_FRAME_MAX:
                    c.rx_oversize += 1
                    continue
                c.rx_frames += 1
                c.rx_bytes += n
                deliver(frame)


def make_backend(url: str, machine: Machine) -> TapBackend:
    """The ``tap`` factory registered with pyv86."""
    return TapBackend(url, machine)
