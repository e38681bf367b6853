"""The QEMU stream framing passt speaks: each Ethernet frame prefixed by its 32-bit big-endian length.

Pure code, no sockets: :func:`encode` builds what we write, :class:`FrameDecoder` turns
whatever byte chunks a socket returns into whole frames. A length outside
``MIN_FRAME..MAX_FRAME`` is not an Ethernet frame we can use: its bytes are skipped
(without being buffered, so a corrupt length cannot make us allocate gigabytes) and the
frame is counted as dropped.
"""
from __future__ import annotations

import struct
from typing import Callable

from attrs import define

HEADER = struct.Struct(">I")
MIN_FRAME = 14          # destination MAC, source MAC, EtherType
MAX_FRAME = 65535       # what the length field of QEMU's own stream netdev allows
ETH_MAX = 1514          # the largest frame without FCS an NE2000 (or any 1500-MTU NIC) takes


def encode(frame: bytes) -> bytes:
    """One frame as it goes on the stream: length header, then the frame."""
    return HEADER.pack(len(frame)) + frame


@define
class DecoderCounters:
    """What the decoder saw; the backend reports these."""

    frames: int = 0          # frames handed out
    bytes: int = 0           # bytes of those frames
    runts: int = 0           # dropped: shorter than MIN_FRAME
    giants: int = 0          # dropped: longer than MAX_FRAME
    oversize: int = 0        # handed out, but longer than ETH_MAX
    last_bad_length: int = -1


class FrameDecoder:
    """Incremental decoder: ``feed(chunk)`` returns the frames completed by that chunk."""

    def __init__(self, on_drop: Callable[[int], None] | None = None) -> None:
        self.on_drop = on_drop          # called with the length of each dropped frame
        self._buf = bytearray()
        self._skip = 0                  # bytes of a dropped frame still to discard
        self.counters = DecoderCounters()

    @property
    def pending(self) -> int:
        """Bytes buffered towards the next frame (a partial header or body)."""
        return len(self._buf)

    def reset(self) -> None:
        """Forget a partial frame (the stream it came from is gone)."""
        self._buf.clear()
        self._skip = 0

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        frames: list[bytes] = []
        view = memoryview(data)
        if self._skip:
            n = min(self._skip, len(view))
            self._skip -= n
            view = view[n:]
        if not view:
            return frames
        buf = self._buf
        buf += view
        pos = 0
        end = len(buf)
        counters = self.counters
        while end - pos >= 4:
            (length,) = HEADER.unpack_from(buf, pos)
            if length < MIN_FRAME or length > MAX_FRAME:
                if length < MIN_FRAME:
                    counters.runts += 1
                else:
                    counters.giants += 1
                counters.last_bad_length = length
                if self.on_drop is not None:
                    self.on_drop(length)
                pos += 4
                available = end - pos
                if length > available:
                    self._skip = length - available
                    pos = end
                    break
                pos += length
                continue
            if end - pos - 4 < length:
                break
            start = pos + 4
            frames.append(bytes(buf[start : start + length]))
            pos = start + length
            counters.frames += 1
            counters.bytes += length
            if length > ETH_MAX:
                counters.oversize += 1
        if pos:
            del buf[:pos]
        return frames
