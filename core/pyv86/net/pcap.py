"""Recording frames to libpcap files: ``pcap = "FILE"`` beside any backend, or ``pcap:FILE`` alone.

Files use the classic libpcap format (magic ``0xa1b2c3d4``, version 2.4, microsecond
timestamps from the host clock, snap length 65535, ``LINKTYPE_ETHERNET``), which
tcpdump, tshark and Wireshark read. Both directions go into one file: what the NIC sent
and what the backend delivered to it. :func:`read_pcap` reads such files back (tests,
tools).

The file is flushed at most every :data:`FLUSH_INTERVAL_S` seconds while frames flow
and on close, so a file being written can be inspected while the machine runs.
"""
from __future__ import annotations

import struct
import threading
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, NamedTuple

from pyv86.net.base import FrameCallback, NetBackend
from pyv86.net.null import NullBackend

if TYPE_CHECKING:
    from pyv86.machine import Machine

PCAP_MAGIC = 0xA1B2C3D4
LINKTYPE_ETHERNET = 1
SNAPLEN = 65535
FLUSH_INTERVAL_S = 0.2
_GLOBAL = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")


class PcapWriter:
    """Appends frames to a new pcap file (overwriting what was there)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._file: IO[bytes] | None = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        self._file.write(_GLOBAL.pack(PCAP_MAGIC, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET))
        self._file.flush()
        self._lock = threading.Lock()
        self._last_flush = time.monotonic()
        self.frames = 0

    def write(self, frame: bytes, timestamp: float | None = None) -> None:
        if timestamp is None:
            timestamp = time.time()
        sec = int(timestamp)
        usec = int((timestamp - sec) * 1_000_000)
        kept = frame[:SNAPLEN]
        with self._lock:
            f = self._file
            if f is None:
                return
            f.write(_RECORD.pack(sec, usec, len(kept), len(frame)))
            f.write(kept)
            self.frames += 1
            now = time.monotonic()
            if now - self._last_flush >= FLUSH_INTERVAL_S:
                f.flush()
                self._last_flush = now

    def flush(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            f, self._file = self._file, None
        if f is not None:
            f.close()


class PcapTap:
    """Wraps a backend and records every frame in both directions."""

    def __init__(self, backend: NetBackend, path: str | Path) -> None:
        self.inner = backend
        self.writer = PcapWriter(path)
        self.url = getattr(backend, "url", "")
        self._receiver: FrameCallback | None = None

    @property
    def external(self) -> bool:
        return bool(getattr(self.inner, "external", True))

    def send(self, frame: bytes) -> None:
        self.writer.write(frame)
        self.inner.send(frame)

    def set_receiver(self, callback: FrameCallback | None) -> None:
        self._receiver = callback
        self.inner.set_receiver(None if callback is None else self._received)

    def _received(self, frame: bytes) -> None:
        self.writer.write(frame)
        receiver = self._receiver
        if receiver is not None:
            receiver(frame)

    def close(self) -> None:
        try:
            self.inner.close()
        finally:
            self.writer.close()

    def __getattr__(self, name: str):  # counters and extras of the wrapped backend
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


def open_pcap(url: str, machine: Machine | None = None) -> PcapTap:
    """The ``pcap:FILE`` backend: records what the NIC sends; nothing is ever received."""
    _scheme, _, path = url.partition(":")
    if not path:
        raise ValueError("pcap: needs a file name, e.g. pcap:capture.pcap")
    return PcapTap(NullBackend("null:", machine), path)


class PcapRecord(NamedTuple):
    timestamp: float
    frame: bytes
    original_length: int


def read_pcap(path: str | Path) -> list[PcapRecord]:
    """Read a classic pcap file (either byte order, micro- or nanosecond); ValueError if it is not one."""
    data = Path(path).read_bytes()
    if len(data) < _GLOBAL.size:
        raise ValueError(f"{path}: {len(data)} bytes is too short for a pcap header")
    magic_le = struct.unpack_from("<I", data)[0]
    if magic_le in (0xA1B2C3D4, 0xA1B23C4D):
        endian = "<"
        magic = magic_le
    else:
        magic = struct.unpack_from(">I", data)[0]
        if magic not in (0xA1B2C3D4, 0xA1B23C4D):
            raise ValueError(f"{path}: not a pcap file (magic {magic_le:#010x})")
        endian = ">"
    scale = 1e-9 if magic == 0xA1B23C4D else 1e-6
    _m, major, _minor, _zone, _sig, _snap, linktype = struct.unpack_from(endian + "IHHiIII", data)
    if major != 2:
        raise ValueError(f"{path}: pcap version {major} is not supported")
    if linktype != LINKTYPE_ETHERNET:
        raise ValueError(f"{path}: link type {linktype} is not Ethernet (1)")
    record = struct.Struct(endian + "IIII")
    out: list[PcapRecord] = []
    off = _GLOBAL.size
    while off < len(data):
        if off + record.size > len(data):
            raise ValueError(f"{path}: truncated record header at offset {off}")
        sec, frac, incl, orig = record.unpack_from(data, off)
        off += record.size
        if off + incl > len(data):
            raise ValueError(f"{path}: truncated frame at offset {off}")
        out.append(PcapRecord(sec + frac * scale, data[off : off + incl], orig))
        off += incl
    return out
