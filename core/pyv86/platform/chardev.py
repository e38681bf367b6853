"""Character backends: where a serial port's bytes go and where its input comes from.

This is the edge between a UART and the host. Every backend has ``write(data)`` (guest
output), ``set_receiver(callback)`` (the UART's input callback; backends call it from
their own threads, the UART moves the bytes onto the machine thread) and ``close()``.

* :class:`CallbackChardev` — Python code: ``on_output(bytes)``; feed input with ``feed()``.
* :class:`FileChardev` — output appended to a file (``file:PATH``); no input.
* :class:`TcpChardev` — listens on a loopback TCP port (``tcp:127.0.0.1:PORT``); one client
  at a time gets the output and may type.
* :class:`TerminalChardev` — the controlling terminal: stdin in raw mode (when it is a
  TTY), stdout unbuffered. **Ctrl-A x** quits, **Ctrl-A Ctrl-A** sends one Ctrl-A,
  **Ctrl-A h** prints the keys.
* :class:`NullChardev` — discards output, no input.
"""
from __future__ import annotations

import logging
import os
import select
import socket
import sys
import threading
from typing import IO, Callable, Protocol

from pyv86.errors import ConfigError

log = logging.getLogger(__name__)

Receiver = Callable[[bytes], None]
ESCAPE = 0x01  # Ctrl-A
HELP = (b"\r\npyv86 console keys: Ctrl-A x  quit | Ctrl-A Ctrl-A  send Ctrl-A | "
        b"Ctrl-A h  this help\r\n")


class CharBackend(Protocol):
    def write(self, data: bytes) -> None: ...

    def set_receiver(self, callback: Receiver | None) -> None: ...

    def close(self) -> None: ...


def check_spec(spec: str) -> None:
    """Validate a ``chardev`` machine-file value; raises ValueError with the reason."""
    if spec in ("console", "null"):
        return
    scheme, sep, rest = spec.partition(":")
    if scheme == "file" and sep and rest:
        return
    if scheme == "tcp" and sep:
        host, _, port = rest.rpartition(":")
        if host not in ("127.0.0.1", "localhost", "::1", "[::1]"):
            raise ValueError(f"chardev {spec!r}: only loopback addresses may be used "
                             "(tcp:127.0.0.1:PORT)")
        if not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"chardev {spec!r}: {port!r} is not a TCP port")
        return
    raise ValueError(f"chardev {spec!r} is not \"console\", \"null\", \"file:PATH\" or "
                     "\"tcp:127.0.0.1:PORT\"")


def open_chardev(spec: str, where: str = "chardev") -> CharBackend:
    """Open the backend a ``chardev`` value names; errors are one-line ConfigErrors."""
    try:
        check_spec(spec)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if spec == "null":
        return NullChardev()
    scheme, _, rest = spec.partition(":")
    if scheme == "file":
        try:
            return FileChardev(open(rest, "ab", buffering=0))
        except OSError as exc:
            raise ConfigError(f"{where}: cannot open {rest!r}: {exc.strerror}") from None
    host, _, port = rest.rpartition(":")
    try:
        return TcpChardev(host.strip("[]"), int(port))
    except OSError as exc:
        raise ConfigError(f"{where}: cannot listen on {rest}: {exc.strerror}") from None
    raise AssertionError(spec)


class NullChardev:
    def write(self, data: bytes) -> None:
        pass

    def set_receiver(self, callback: Receiver | None) -> None:
        pass

    def close(self) -> None:
        pass


class CallbackChardev:
    """Output to a Python callable; input from :meth:`feed`."""

    def __init__(self, on_output: Callable[[bytes], None] | None = None) -> None:
        self.on_output = on_output
        self.receiver: Receiver | None = None
        self.closed = False

    def write(self, data: bytes) -> None:
        if self.on_output is not None:
            self.on_output(data)

    def set_receiver(self, callback: Receiver | None) -> None:
        self.receiver = callback

    def feed(self, data: bytes) -> None:
        """Type ``data`` into the serial line (any thread)."""
        if self.receiver is not None:
            self.receiver(bytes(data))

    def close(self) -> None:
        self.closed = True


class FileChardev:
    """Appends output to a file."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream

    def write(self, data: bytes) -> None:
        self.stream.write(data)

    def set_receiver(self, callback: Receiver | None) -> None:
        pass

    def close(self) -> None:
        try:
            self.stream.close()
        except OSError:
            pass


class TcpChardev:
    """A listening loopback socket; the connected client sees output and may type."""

    def __init__(self, host: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, port))
        self.listener.listen(1)
        self.address = self.listener.getsockname()
        self.client: socket.socket | None = None
        self.receiver: Receiver | None = None
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"chardev-tcp-{self.address[1]}",
                                        daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self.address[1])

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                ready, _, _ = select.select([self.listener], [], [], 0.2)
                if not ready:
                    continue
                client, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                self.client = client
            try:
                while not self._closed.is_set():
                    ready, _, _ = select.select([client], [], [], 0.2)
                    if not ready:
                        continue
                    data = client.recv(4096)
                    if not data:
                        break
                    if self.receiver is not None:
                        self.receiver(data)
            except OSError:
                pass
            with self._lock:
                self.client = None
            client.close()

    def write(self, data: bytes) -> None:
        with self._lock:
            client = self.client
        if client is None:
            return
        try:
            client.sendall(data)
        except OSError:
            pass  # the client went away; the reader thread notices

    def set_receiver(self, callback: Receiver | None) -> None:
        self.receiver = callback

    def close(self) -> None:
        self._closed.set()
        try:
            self.listener.close()
        except OSError:
            pass
        self._thread.join(timeout=1.0)


class TerminalChardev:
    """The user's terminal. Raw mode only when stdin is a TTY; Ctrl-A x calls ``on_quit``."""

    def __init__(self, on_quit: Callable[[], None], stdin: IO[bytes] | None = None,
                 stdout: IO[bytes] | None = None, raw: bool | None = None) -> None:
        self._stdin = stdin if stdin is not None else sys.stdin.buffer
        self.stdin_fd = self._stdin.fileno()
        self.stdout = stdout if stdout is not None else sys.stdout.buffer
        self.on_quit = on_quit
        self.receiver: Receiver | None = None
        self.raw = os.isatty(self.stdin_fd) if raw is None else raw
        self._saved_attrs: list | None = None
        self._escape = False
        self._closed = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        if self.raw:
            import termios
            import tty

            self._saved_attrs = termios.tcgetattr(self.stdin_fd)
            tty.setraw(self.stdin_fd)
        self._thread = threading.Thread(target=self._read_loop, name="chardev-terminal", daemon=True)
        self._thread.start()

    def write(self, data: bytes) -> None:
        try:
            self.stdout.write(data)
            self.stdout.flush()
        except (OSError, ValueError):
            pass

    def set_receiver(self, callback: Receiver | None) -> None:
        self.receiver = callback

    def _read_loop(self) -> None:
        while not self._closed.is_set():
            try:
                ready, _, _ = select.select([self.stdin_fd, self._wake_r], [], [])
            except (OSError, ValueError):
                return
            if self._wake_r in ready:
                return
            try:
                data = os.read(self.stdin_fd, 1024)
            except OSError:
                return
            if not data:
                return  # end of input: keep the machine running
            data = self.filter_keys(data)
            if data and self.receiver is not None:
                self.receiver(data)

    def filter_keys(self, data: bytes) -> bytes:
        """Handle the Ctrl-A escape in raw mode; return what goes to the guest."""
        if not self.raw:
            return data
        out = bytearray()
        for byte in data:
            if self._escape:
                self._escape = False
                if byte in (ord("x"), ord("X")):
                    self.on_quit()
                    return bytes(out)
                if byte == ESCAPE:
                    out.append(ESCAPE)
                elif byte in (ord("h"), ord("H"), ord("?")):
                    self.write(HELP)
                continue
            if byte == ESCAPE:
                self._escape = True
                continue
            out.append(byte)
        return bytes(out)

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass
        self._thread.join(timeout=1.0)
        if self._saved_attrs is not None:
            import termios

            termios.tcsetattr(self.stdin_fd, termios.TCSADRAIN, self._saved_attrs)
            self._saved_attrs = None
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
