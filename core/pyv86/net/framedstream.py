"""Ethernet frames over a stream socket, each behind a 4-byte big-endian length.

This is the wire format of QEMU's ``-netdev stream`` and ``-netdev socket`` (TCP or UNIX
socket) and of the links between the processes of a ``hub:`` switch. A
:class:`FramedStream` owns one connected socket and two threads:

* **Sending.** While nothing waits in its queue, :meth:`FramedStream.send` (and
  :meth:`FramedStream.send_many` for a CPU slice's batch) writes straight to the socket
  without blocking (``MSG_DONTWAIT``), on the caller's thread: one system call and no
  thread wake-up. Only when the socket's buffer is full (the peer reads slowly) does the
  rest wait in the queue for the writer thread, and later frames queue behind it, so the
  order on the wire is kept and no frame is ever cut. The queue holds at most
  ``queue_frames`` frames; beyond that frames are dropped and counted in
  :attr:`FramedStream.dropped`.
* **Receiving.** The reader thread hands every frame to ``on_frame`` in order. A length
  above ``max_frame`` means the peer does not speak this format (or is broken): the
  stream is closed with one log line naming the peer and the length; nothing of it
  reaches ``on_frame``.

``on_close`` runs once, on whichever thread noticed the end (EOF, an error, or
:meth:`FramedStream.close`).
"""
from __future__ import annotations

import collections
import logging
import socket
import struct
import threading
from typing import Callable

log = logging.getLogger(__name__)

LENGTH = struct.Struct("!I")
DEFAULT_QUEUE_FRAMES = 512
DEFAULT_MAX_FRAME = 65535


def shut_and_close(sock: socket.socket) -> None:
    """Shut ``sock`` down, then close it: the shutdown wakes a thread blocked in ``recv`` or
    ``accept`` on it, which a plain close would leave waiting."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


class FramedStream:
    """Length-prefixed frames both ways on ``sock`` (see the module docstring)."""

    def __init__(self, sock: socket.socket, label: str, on_frame: Callable[[bytes], None],
                 on_close: Callable[[], None] = lambda: None, *,
                 queue_frames: int = DEFAULT_QUEUE_FRAMES,
                 max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.sock = sock
        self.label = label
        """How log lines name this stream (``"hub:lab: link member1"``, ``"stream:host:port"``)."""
        self.queue_frames = queue_frames
        self.max_frame = max_frame
        self.sent_frames = 0
        self.received_frames = 0
        self.dropped = 0
        """Frames not sent because the queue was full."""
        self._on_frame = on_frame
        self._on_close = on_close
        self._queue: collections.deque[bytes] = collections.deque()
        """Wire chunks (length-prefixed frames, or the unsent tail of some) for the writer thread."""
        self._queued_frames = 0
        self._cond = threading.Condition()
        self._writing = False  # the writer thread is sending chunks it took from the queue
        self._closed = False
        self._reader = threading.Thread(target=self._read_loop, name=f"{label} rx", daemon=True)
        self._writer = threading.Thread(target=self._write_loop, name=f"{label} tx", daemon=True)

    @property
    def queued_frames(self) -> int:
        """Frames waiting for the writer thread."""
        return self._queued_frames

    def start(self) -> None:
        self._reader.start()
        self._writer.start()

    def send(self, frame: bytes) -> None:
        self._send_chunk(LENGTH.pack(len(frame)) + frame, 1)

    def send_many(self, frames: list[bytes]) -> None:
        pack = LENGTH.pack
        self._send_chunk(b"".join([pack(len(f)) + f for f in frames]), len(frames))

    def _send_chunk(self, chunk: bytes, nframes: int) -> None:
        """Send ``nframes`` frames already framed in ``chunk`` (or queue them, see above)."""
        with self._cond:
            if self._closed:
                return
            if not self._queue and not self._writing:
                try:
                    sent = self.sock.send(chunk, socket.MSG_DONTWAIT)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                except OSError:
                    sent = 0  # the writer thread meets the error too, logs it and closes the stream
                if sent == len(chunk):
                    self.sent_frames += nframes
                    return
                if sent:  # the tail must go next, whatever the queue's bound
                    self.sent_frames += nframes
                    self._queue.append(chunk[sent:])
                    self._queued_frames += nframes
                    self._cond.notify()
                    return
            if self._queued_frames + nframes > self.queue_frames:
                self.dropped += nframes
                return
            self._queue.append(chunk)
            self._queued_frames += nframes
            self.sent_frames += nframes
            self._cond.notify()

    def _write_loop(self) -> None:
        try:
            while True:
                with self._cond:
                    self._writing = False
                    while not self._queue and not self._closed:
                        self._cond.wait()
                    if self._closed:
                        return
                    chunks = list(self._queue)
                    self._queue.clear()
                    self._queued_frames = 0
                    self._writing = True
                self.sock.sendall(b"".join(chunks))
        except OSError as exc:
            if not self._closed:
                log.info("%s: send failed: %s", self.label, exc)
        finally:
            self.close()

    def _read_loop(self) -> None:
        unpack = LENGTH.unpack
        stream = self.sock.makefile("rb", buffering=1 << 16)
        try:
            while True:
                header = stream.read(4)
                if len(header) < 4:
                    return
                (length,) = unpack(header)
                if length > self.max_frame:
                    log.warning("%s: the peer sent a %d-byte frame (limit %d): not a stream of "
                                "length-prefixed frames; closing the connection",
                                self.label, length, self.max_frame)
                    return
                frame = stream.read(length)
                if len(frame) < length:
                    return
                self.received_frames += 1
                self._on_frame(frame)
        except (OSError, ValueError) as exc:
            if not self._closed:
                log.info("%s: receive failed: %s", self.label, exc)
        finally:
            try:
                stream.close()
            except OSError:
                pass
            self.close()

    def close(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._queue.clear()
            self._cond.notify_all()
        shut_and_close(self.sock)
        self._on_close()
