"""The NIC side of the network core: one :class:`NicPort` per NIC, between the chip and its backend.

A NIC never talks to a backend directly. It owns a ``NicPort`` and

* calls :meth:`NicPort.transmit` with each frame the guest sends (``bytes``, no FCS);
* receives frames through the ``receive(frame) -> RxResult`` function it gave the port;
* calls :meth:`NicPort.rx_space` when its receive buffer got room again (the guest
  advanced its read pointer, or restarted the receiver).

Frames from the backend arrive in :meth:`NicPort.from_backend` (installed as the
backend's receiver). Their length is checked first (shorter than an Ethernet header or
longer than ``max_frame``: dropped and counted, the NIC never sees them). If the NIC has
no room (``RxResult.NO_ROOM``) the frame waits in a small bounded queue and is retried
on ``rx_space``. When that queue is full the frame is dropped, counted, and the NIC is
told (``on_missed``: the 8390 counts it in CNTR2).

Lossless back-pressure, for backends that can hold frames (passt: it stops reading its
socket, so the peer slows down as a kernel would make it): :meth:`from_backend` returns
``False`` once a frame had to wait (the frame itself is kept), meaning "hold the next
ones". A backend that obeys keeps further frames and waits until the port calls its
``rx_resume()`` method (looked up on the backend at :meth:`attach`), which happens on the
machine thread as soon as the NIC has taken every waiting frame (or the queue was
flushed, or the port detached). A backend without ``rx_resume`` may ignore the return
value: its frames are queued and dropped when the queue is full, as before.
:class:`pyv86.net.handoff.Handoff` implements the backend half for threaded backends.

Between the NIC and the backend sits a chain of :class:`FrameFilter` objects — the hook
point for a MAC translator. Filters see the frame in both directions
(``to_wire``/``to_guest``) and may return a rewritten frame or ``None`` to drop it.
Observers (:meth:`add_observer`) see every frame on the wire side, after the filters,
and :meth:`inject` feeds a frame as if it came from the backend, so a NIC can be driven
from Python without any backend.

At most one copy of a frame is made on its way (by the NIC, into or out of its
buffer); the port passes the same ``bytes`` object along. Everything here runs on the
machine thread; backends with threads hand frames over through
:class:`pyv86.net.handoff.Handoff`.
"""
from __future__ import annotations

import collections
import enum
import logging
from typing import TYPE_CHECKING, Callable, Protocol

import attrs

from pyv86.net.frame import ETH_HEADER, ETH_VLAN_FRAME_MAX
from pyv86.net.trace import trace_frame, trace_log

if TYPE_CHECKING:
    from pyv86.net.base import NetBackend

log = logging.getLogger(__name__)

DEFAULT_QUEUE_FRAMES = 64


class RxResult(enum.IntEnum):
    """What a NIC did with a frame the port offered it."""

    STORED = 0
    """Accepted and in the guest-visible receive buffer."""
    FILTERED = 1
    """Not addressed to this NIC (address filter); not an error."""
    NO_ROOM = 2
    """Accepted by the filter but the buffer is full now: the port queues it and retries."""
    DROPPED = 3
    """The NIC discarded it and counted it itself (receiver stopped, monitor mode...)."""


class FrameFilter(Protocol):
    """A rewriting stage between a NIC and its backend (e.g. MAC address translation).

    Each method gets a frame and returns the frame to pass on (the same object, or a new
    one) or ``None`` to drop it. Filters run in the order they were added on the way to
    the wire and in reverse order on the way to the guest.
    """

    def to_wire(self, frame: bytes) -> bytes | None:
        """A frame the guest sent, on its way to the backend."""

    def to_guest(self, frame: bytes) -> bytes | None:
        """A frame from the backend, on its way to the NIC."""


Observer = Callable[[str, bytes], None]
"""``observer(direction, frame)`` with direction ``"tx"`` (guest -> wire) or ``"rx"`` (wire -> guest)."""


@attrs.define
class PortCounters:
    """What went through a port; all counts only grow (reset with :meth:`NicPort.reset_counters`)."""

    tx_frames: int = 0
    tx_bytes: int = 0
    tx_filter_drops: int = 0
    rx_frames: int = 0
    """Frames that arrived from the backend (or :meth:`NicPort.inject`), valid or not."""
    rx_bytes: int = 0
    rx_bad_length: int = 0
    """Shorter than an Ethernet header or longer than ``max_frame``; never reached the NIC."""
    rx_filter_drops: int = 0
    rx_stored: int = 0
    rx_not_for_us: int = 0
    rx_nic_drops: int = 0
    rx_queued: int = 0
    """Frames that had to wait for ring space (back-pressure events)."""
    rx_queue_drops: int = 0
    """Frames lost because the NIC's ring and the port's queue were both full."""
    rx_pauses: int = 0
    """Times a flow-controlled backend was told to hold its frames (it resumes on ``rx_resume``)."""

    def as_dict(self) -> dict[str, int]:
        return attrs.asdict(self)


class NicPort:
    """Connects one NIC to one backend (or to nothing): counters, queue, filters, observers."""

    def __init__(self, name: str, receive: Callable[[bytes], RxResult], *,
                 on_missed: Callable[[], None] | None = None,
                 queue_frames: int = DEFAULT_QUEUE_FRAMES,
                 max_frame: int = ETH_VLAN_FRAME_MAX) -> None:
        if queue_frames < 0:
            raise ValueError("queue_frames must be >= 0")
        self.name = name
        self._receive = receive
        self._on_missed = on_missed
        self.queue_frames = queue_frames
        self.max_frame = max_frame
        self.counters = PortCounters()
        self.backend: NetBackend | None = None
        self.filters: list[FrameFilter] = []
        self._observers: list[Observer] = []
        self._queue: collections.deque[bytes] = collections.deque()
        self._draining = False
        self._resume: Callable[[], None] | None = None
        self._paused = False

    # wiring -----------------------------------------------------------------------
    def attach(self, backend: NetBackend | None) -> None:
        """Connect to ``backend`` (replacing any previous one; ``None`` unplugs the cable)."""
        self.detach()
        self.backend = backend
        if backend is not None:
            resume = getattr(backend, "rx_resume", None)
            self._resume = resume if callable(resume) else None
            backend.set_receiver(self.from_backend)

    def detach(self) -> None:
        if self.backend is not None:
            try:
                self.backend.set_receiver(None)
            except Exception:  # noqa: BLE001 - a broken backend must not stop the NIC
                log.exception("%s: backend refused to release the receiver", self.name)
            self.backend = None
        self._resume_backend()   # a backend held back by us must not stay stuck
        self._resume = None

    def add_filter(self, frame_filter: FrameFilter, *, first: bool = False) -> None:
        """Insert a filter nearest the NIC (``first=True``) or nearest the wire (default)."""
        if first:
            self.filters.insert(0, frame_filter)
        else:
            self.filters.append(frame_filter)

    def remove_filter(self, frame_filter: FrameFilter) -> None:
        if frame_filter in self.filters:
            self.filters.remove(frame_filter)

    def add_observer(self, observer: Observer) -> Observer:
        """Call ``observer(direction, frame)`` for each frame on the wire side; returns it."""
        self._observers.append(observer)
        return observer

    def remove_observer(self, observer: Observer) -> None:
        if observer in self._observers:
            self._observers.remove(observer)

    # guest -> wire -------------------------------------------------------------------
    def transmit(self, frame: bytes) -> None:
        """The NIC sent ``frame``: run the filters, tell observers, hand it to the backend."""
        for f in self.filters:
            out = f.to_wire(frame)
            if out is None:
                self.counters.tx_filter_drops += 1
                return
            frame = out
        c = self.counters
        c.tx_frames += 1
        c.tx_bytes += len(frame)
        if trace_log.isEnabledFor(logging.DEBUG):
            trace_frame(self.name, "tx", frame)
        for observer in self._observers:
            observer("tx", frame)
        backend = self.backend
        if backend is not None:
            try:
                backend.send(frame)
            except Exception:  # noqa: BLE001 - the guest keeps running when a backend breaks
                log.exception("%s: backend failed to send a frame", self.name)

    # wire -> guest -------------------------------------------------------------------
    def from_backend(self, frame: bytes) -> bool:
        """A frame arrived from the backend (the receiver installed on it).

        Returns whether the port takes more frames now. ``False`` (only for a backend
        with ``rx_resume``): this frame waits for room in the NIC; the backend should
        hold the following ones until the port calls ``rx_resume()``.
        """
        c = self.counters
        c.rx_frames += 1
        n = len(frame)
        c.rx_bytes += n
        if n < ETH_HEADER or n > self.max_frame:
            c.rx_bad_length += 1
            if trace_log.isEnabledFor(logging.DEBUG):
                trace_log.debug("%s rx dropped: %d bytes is not a frame length (%d..%d)",
                                self.name, n, ETH_HEADER, self.max_frame)
            return self._ready()
        if not isinstance(frame, bytes):
            frame = bytes(frame)
        if trace_log.isEnabledFor(logging.DEBUG):
            trace_frame(self.name, "rx", frame)
        for observer in self._observers:
            observer("rx", frame)
        for f in reversed(self.filters):
            out = f.to_guest(frame)
            if out is None:
                c.rx_filter_drops += 1
                return self._ready()
            frame = out
        if self._queue:
            self._enqueue(frame)
            self.rx_space()
        else:
            self._offer(frame)
        return self._ready()

    def inject(self, frame: bytes) -> None:
        """Feed a frame to the NIC as if the backend delivered it (Python-driven NICs, tests)."""
        self.from_backend(frame)

    def _offer(self, frame: bytes) -> bool:
        """Give one frame to the NIC; False if it must wait (it was queued)."""
        result = self._receive(frame)
        c = self.counters
        if result == RxResult.STORED:
            c.rx_stored += 1
        elif result == RxResult.FILTERED:
            c.rx_not_for_us += 1
        elif result == RxResult.NO_ROOM:
            self._enqueue(frame)
            return False
        else:
            c.rx_nic_drops += 1
        return True

    def _ready(self) -> bool:
        """True while nothing waits for the NIC (or the backend cannot be resumed, so it
        must go on); otherwise note that the backend holds its frames until ``rx_resume``."""
        if not self._queue or self._resume is None:
            return True
        if not self._paused:
            self._paused = True
            self.counters.rx_pauses += 1
        return False

    def _resume_backend(self) -> None:
        """Let a backend we held back deliver again."""
        if not self._paused:
            return
        self._paused = False
        resume = self._resume
        if resume is not None:
            try:
                resume()
            except Exception:  # noqa: BLE001 - a broken backend must not stop the NIC
                log.exception("%s: backend failed to resume delivery", self.name)

    def _enqueue(self, frame: bytes) -> None:
        if len(self._queue) >= self.queue_frames:
            self.counters.rx_queue_drops += 1
            if self._on_missed is not None:
                self._on_missed()
            return
        self.counters.rx_queued += 1
        self._queue.append(frame)

    def rx_space(self) -> None:
        """The NIC has room again: deliver queued frames in order until it is full."""
        if self._draining or not self._queue:
            return
        self._draining = True
        try:
            queue = self._queue
            c = self.counters
            while queue:
                result = self._receive(queue[0])
                if result == RxResult.NO_ROOM:
                    break
                queue.popleft()
                if result == RxResult.STORED:
                    c.rx_stored += 1
                elif result == RxResult.FILTERED:
                    c.rx_not_for_us += 1
                else:
                    c.rx_nic_drops += 1
        finally:
            self._draining = False
        if not self._queue:
            self._resume_backend()

    @property
    def queued(self) -> int:
        """Frames waiting for room in the NIC."""
        return len(self._queue)

    def clear_queue(self) -> None:
        """Forget waiting frames (the NIC was reset; they belong to a guest that is gone)."""
        self._queue.clear()
        self._resume_backend()

    def reset_counters(self) -> None:
        self.counters = PortCounters()
