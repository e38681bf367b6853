"""A loopback network backend for tests: it records what a NIC sends and injects frames; and
stand-ins for a machine that backend tests hand to a backend (:class:`DirectMachine`,
:class:`SlicingMachine`).

``LoopbackNet`` satisfies :class:`pyv86.net.base.NetBackend`. A test gets one from the
``loopback_net`` fixture, which also registers the URL scheme ``loopback:`` on the
fixture's plugin manager, so a machine file can say ``url = "loopback:"`` (or
``"loopback:NAME"`` for a second, separate port: ``loopback_net.port("NAME")``).
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable

from pyv86 import hookimpl

if TYPE_CHECKING:
    from pyv86.machine import Machine
    from pyv86.net.base import FrameCallback, NetBackendRegistry

log = logging.getLogger(__name__)

SCHEME = "loopback"


class LoopbackNet:
    """One end of a test cable: ``sent`` holds every frame the NIC sent, oldest first."""

    external = False  # nothing arrives unless the test injects it; an idle machine may stop

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.sent: list[bytes] = []
        self.receiver: FrameCallback | None = None
        self.closed = False
        self.machine: Machine | None = None
        self._ports: dict[str, LoopbackNet] = {}

    # NetBackend protocol ---------------------------------------------------------
    def send(self, frame: bytes) -> None:
        if self.closed:
            raise RuntimeError(f"loopback:{self.name}: send() after close()")
        self.sent.append(bytes(frame))

    def set_receiver(self, callback: FrameCallback | None) -> None:
        self.receiver = callback

    def close(self) -> None:
        self.closed = True

    # test side -----------------------------------------------------------------
    def inject(self, frame: bytes) -> None:
        """Deliver ``frame`` to the NIC now, on the calling thread (the test's)."""
        if self.receiver is None:
            raise AssertionError(
                f"loopback:{self.name}: no receiver installed; is a NIC attached to this netdev "
                "and realized?")
        self.receiver(bytes(frame))

    def inject_threadsafe(self, frame: bytes) -> None:
        """Deliver ``frame`` the way a backend thread must: through the machine thread."""
        if self.machine is None:
            raise AssertionError(f"loopback:{self.name}: not opened by a machine")
        self.machine.call_soon_threadsafe(lambda: self.inject(frame))

    def take(self) -> list[bytes]:
        """Return the frames sent so far and forget them."""
        frames, self.sent = self.sent, []
        return frames

    def port(self, name: str) -> LoopbackNet:
        """The separate backend a machine file names ``loopback:NAME``."""
        if not name:
            return self
        if name not in self._ports:
            self._ports[name] = LoopbackNet(name)
        return self._ports[name]

    # plugin side -----------------------------------------------------------------
    def factory(self, url: str, machine: Machine) -> LoopbackNet:
        _scheme, _sep, rest = url.partition(":")
        backend = self.port(rest.strip("/"))
        backend.machine = machine
        backend.closed = False
        return backend

    def __repr__(self) -> str:
        return f"<LoopbackNet {self.name!r} sent={len(self.sent)}>"


class LoopbackPlugin:
    """A plugin object registering ``loopback:`` for one :class:`LoopbackNet`."""

    def __init__(self, net: LoopbackNet) -> None:
        self.net = net

    @hookimpl
    def pyv86_register_net_backends(self, registry: NetBackendRegistry) -> None:
        registry.add(SCHEME, self.net.factory, help="test backend: records sent frames, injects frames")

    def __repr__(self) -> str:
        return f"<LoopbackPlugin {self.net!r}>"


def frames_summary(frames: list[bytes], limit: int = 4) -> str:
    """A short description of captured frames for assertion messages."""
    parts = [f"{len(f)}B dst={f[:6].hex(':')}" for f in frames[:limit]]
    if len(frames) > limit:
        parts.append(f"... {len(frames) - limit} more")
    return "[" + ", ".join(parts) + "]"




class DirectMachine:
    """Stands in for a Machine in backend tests: runs handed-over functions at once, on the
    caller's thread, and is never in a CPU slice."""

    thread = None

    def call_soon_threadsafe(self, fn: Callable[[], None], cut_slice: bool = True) -> None:
        fn()


class SlicingMachine(DirectMachine):
    """A DirectMachine that a test puts "in a CPU slice" (``in_slice = True``): work given
    to ``after_slice`` then waits for :meth:`end_slice`, as on a running Machine."""

    def __init__(self) -> None:
        self.in_slice = False
        self._ends: list[Callable[[], None]] = []

    def after_slice(self, fn: Callable[[], None]) -> bool:
        if not self.in_slice:
            return False
        self._ends.append(fn)
        return True

    def end_slice(self) -> None:
        self.in_slice = False
        todo, self._ends = self._ends, []
        for fn in todo:
            fn()


__all__ = ["DirectMachine", "LoopbackNet", "LoopbackPlugin", "SCHEME", "SlicingMachine", "frames_summary"]
