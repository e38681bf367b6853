"""``null:`` — a backend that drops every frame (a NIC with its cable unplugged)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from pyv86.net.base import FrameCallback

if TYPE_CHECKING:
    from pyv86.machine import Machine


class NullBackend:
    """Counts and discards what the NIC sends; never receives anything."""

    external = False

    def __init__(self, url: str = "null:", machine: Machine | None = None) -> None:
        self.url = url
        self.sent_frames = 0
        self.sent_bytes = 0

    def send(self, frame: bytes) -> None:
        self.sent_frames += 1
        self.sent_bytes += len(frame)

    def set_receiver(self, callback: FrameCallback | None) -> None:
        pass

    def close(self) -> None:
        pass
