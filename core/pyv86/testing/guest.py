"""Driving a real guest from Python: a machine on a thread, its serial console as an API.

:class:`GuestMachine` wraps a built :class:`~pyv86.machine.Machine` with a CPU and a
console UART. It runs the machine on a background thread, records everything the guest
writes to the console, and types into it::

    guest = GuestMachine.from_toml(text, plugins=manager, name="a")
    guest.start()
    guest.wait_ready(timeout=600)                 # the /init's PYV86-READY marker
    out = guest.run("ip -4 addr show dev eth0")   # output; raises if the status is not 0
    res = guest.run("ping -c1 10.0.2.16", check=False)   # CommandResult(output, status)
    guest.save("x.pyv86state")                    # while it runs, between two slices
    guest.close()

Commands are typed as one line between two markers the shell has to *compute*
(``echo @E2E-S$((K))@ ... echo @E2E-E$((K+1))@$?``), so the tty's echo of the typed line
never matches; the output is what lies between, CRLF turned back into LF. Every wait has
a timeout whose error names the guest, what it waited for and the last console lines.
If the machine thread dies, waits fail at once with its exception.

Nothing heavy is imported at module import (no numpy, no llvmlite): building a machine
imports what it needs.
"""
from __future__ import annotations

import logging
import random
import re
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import contextlib

if TYPE_CHECKING:
    from pyv86.machine import Machine
    from pyv86.plugins.manager import PluginManager
    from pyv86.state import RestoreResult, SaveResult

log = logging.getLogger(__name__)

READY_MARKER = "PYV86-READY"
MAX_CONSOLE = 8 << 20  # bytes of console kept per guest (older output is dropped)
TAIL_LINES = 25


class GuestError(AssertionError):
    """A guest did not do what a test waited for (an AssertionError, so pytest shows it plainly)."""


class GuestTimeout(GuestError):
    pass


class GuestCommandFailed(GuestError):
    def __init__(self, message: str, result: CommandResult) -> None:
        super().__init__(message)
        self.result = result


class CommandResult:
    """What one shell command printed (LF line ends) and its exit status."""

    __slots__ = ("command", "output", "status", "seconds")

    def __init__(self, command: str, output: str, status: int, seconds: float) -> None:
        self.command = command
        self.output = output
        self.status = status
        self.seconds = seconds

    @property
    def ok(self) -> bool:
        return self.status == 0

    def __repr__(self) -> str:
        return f"CommandResult({self.command!r}, status={self.status}, output={self.output!r})"


def command_line(command: str, key: int) -> str:
    """The console line that runs ``command`` between computed start and end markers."""
    escaped = (command.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
               .replace("'", "'\\''"))
    return (f"echo @E2E-S$(({key}))@; eval \"$(printf '%b' '{escaped}')\"; "
            f"echo @E2E-E$(({key}+1))@$?\n")


def build_machine(toml_text: str, *, plugins: PluginManager | None = None,
                  path: str | Path = "<e2e machine>", base_dir: str | Path | None = None) -> Machine:
    """Build and realize a machine from machine-file text (plugins: entry points, no env)."""
    from pyv86.config import load_machine_config
    from pyv86.machine import Machine
    from pyv86.plugins.manager import create_plugin_manager

    if plugins is None:
        plugins = create_plugin_manager(autoload=True, environ={})
    shown = Path(base_dir or ".") / Path(str(path)).name
    config = load_machine_config(shown, plugins, text=toml_text)
    return Machine.from_config(config, plugins)


class GuestMachine:
    """A machine with a serial console, run on a thread and driven through the console."""

    def __init__(self, machine: Machine, *, name: str | None = None) -> None:
        from pyv86.platform.pc import console_uart

        self.machine = machine
        self.name = name or machine.name
        uart = console_uart(machine)
        if uart is None:
            raise GuestError(f"{self.name}: the machine has no serial console (no CPU or no pc platform)")
        self.uart = uart
        if uart.config.chardev == "console":
            uart.connect(None)
        self._cond = threading.Condition()
        self._buf = bytearray()
        self._dropped = 0  # bytes dropped from the front of _buf (offsets stay absolute)
        uart.add_output_tap(self._on_output)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.last_stop_reason: str | None = None
        self.closed = False

    @classmethod
    def from_toml(cls, toml_text: str, *, plugins: PluginManager | None = None,
                  name: str | None = None, base_dir: str | Path | None = None) -> GuestMachine:
        return cls(build_machine(toml_text, plugins=plugins, base_dir=base_dir), name=name)

    # console capture -----------------------------------------------------------------
    def _on_output(self, data: bytes) -> None:  # machine thread
        with self._cond:
            self._buf += data
            if len(self._buf) > MAX_CONSOLE:
                cut = len(self._buf) - MAX_CONSOLE // 2
                del self._buf[:cut]
                self._dropped += cut
            self._cond.notify_all()

    @property
    def offset(self) -> int:
        """Absolute position at the end of the console output so far (for ``since=``)."""
        with self._cond:
            return self._dropped + len(self._buf)

    def console(self, since: int = 0) -> str:
        """Console output from absolute offset ``since`` (CRLF as LF)."""
        with self._cond:
            start = max(0, since - self._dropped)
            data = bytes(self._buf[start:])
        return data.decode("utf-8", "replace").replace("\r\n", "\n")

    def tail(self, lines: int = TAIL_LINES) -> str:
        text = self.console(max(0, self.offset - 16384))
        return "\n".join(text.splitlines()[-lines:])

    def _fail(self, what: str, timeout: float) -> GuestError:
        state = "running" if self.running else f"stopped ({self.last_stop_reason})"
        return GuestTimeout(f"{self.name}: no {what} after {timeout:g} s (machine {state}); "
                            f"last console lines:\n{self.tail()}")

    def wait_for(self, pattern: str | re.Pattern[str], timeout: float = 60.0, *,
                 since: int = 0, what: str | None = None) -> re.Match[bytes]:
        """Wait until console output after ``since`` matches ``pattern`` (bytes regex)."""
        regex = pattern if isinstance(pattern, re.Pattern) else re.compile(pattern)
        if isinstance(regex.pattern, str):
            regex = re.compile(regex.pattern.encode(), regex.flags & ~re.UNICODE)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                self._raise_thread_error()
                start = max(0, since - self._dropped)
                found = regex.search(self._buf, start)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                if not self.running and self._thread is not None:
                    break  # stopped: nothing more will come
                self._cond.wait(min(left, 0.5))
        raise self._fail(what or f"console output matching {regex.pattern!r}", timeout)

    def wait_ready(self, timeout: float = 900.0, since: int = 0) -> None:
        self.wait_for(re.escape(READY_MARKER) + r"\r?\n", timeout, since=since,
                      what=f"{READY_MARKER} marker")

    # typing -------------------------------------------------------------------------
    def send(self, text: str | bytes) -> None:
        """Type ``text`` on the console (from any thread)."""
        data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else bytes(text)
        if self.running:
            self.machine.call_soon_threadsafe(lambda: self.uart.receive(data))
        else:
            self.uart.receive(data)

    def run(self, command: str, timeout: float = 60.0, *, check: bool = True) -> CommandResult:
        """Run one shell command; returns its output and status (``check``: raise unless 0)."""
        if not self.running:
            raise GuestError(f"{self.name}: cannot run {command!r}: the machine is not running "
                             f"({self.last_stop_reason or 'not started'})")
        key = random.randrange(10**8, 10**9)
        end_re = re.compile(rb"@E2E-E%d@(\d+)\r?\n" % (key + 1))
        start_re = re.compile(rb"@E2E-S%d@\r?\n" % key)
        since = self.offset
        t0 = time.monotonic()
        self.send(command_line(command, key))
        end = self.wait_for(end_re, timeout, since=since, what=f"end of command {command!r}")
        with self._cond:
            base = max(0, since - self._dropped)
            start = start_re.search(self._buf, base, end.start() + 1)
            raw = bytes(self._buf[start.end():end.start()]) if start else b""
        status = int(end.group(1))
        result = CommandResult(command, raw.decode("utf-8", "replace").replace("\r\n", "\n"),
                               status, time.monotonic() - t0)
        log.debug("%s: %r -> %d in %.2f s", self.name, command, status, result.seconds)
        if check and status != 0:
            raise GuestCommandFailed(f"{self.name}: command {command!r} exited {status}; output:\n"
                                     f"{result.output}", result)
        return result

    def sh(self, command: str, timeout: float = 60.0) -> str:
        """Run a command that must succeed; return its output."""
        return self.run(command, timeout).output

    # lifecycle ------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _raise_thread_error(self) -> None:
        if self._error is not None:
            raise GuestError(f"{self.name}: the machine thread failed: "
                             f"{type(self._error).__name__}: {self._error}; last console lines:\n"
                             f"{self.tail()}") from self._error

    def _body(self) -> None:
        try:
            self.last_stop_reason = self.machine.run()
        except BaseException as exc:  # noqa: BLE001 - reported by the next wait
            log.exception("%s: machine thread failed", self.name)
            self._error = exc
            self.last_stop_reason = f"error: {type(exc).__name__}"
        with self._cond:
            self._cond.notify_all()

    def start(self) -> None:
        """Run the machine on a background thread (again after :meth:`stop`)."""
        if self.closed:
            raise GuestError(f"{self.name}: closed")
        if self.running:
            return
        self._raise_thread_error()
        self._thread = threading.Thread(target=self._body, name=f"guest-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> str | None:
        """Stop the run loop between two slices and wait for the thread; returns the reason."""
        if self._thread is None:
            return self.last_stop_reason
        self.machine.stop("test-stop")
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise GuestError(f"{self.name}: the machine thread did not stop within {timeout:g} s")
        self._thread = None
        return self.last_stop_reason

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Stop the machine for the block, then run it again."""
        was_running = self.running
        self.stop()
        try:
            yield
        finally:
            if was_running:
                self.start()

    def save(self, path: str | Path, timeout: float = 60.0) -> SaveResult:
        """Write a state image; a running machine saves between two slices and keeps running."""
        from pyv86.state import save_machine

        if not self.running:
            return save_machine(self.machine, path)
        done = threading.Event()
        box: list[Any] = [None, None]

        def finished(result: Any, error: Any) -> None:
            box[0], box[1] = result, error
            done.set()

        self.machine.request_save(str(path), finished)
        if not done.wait(timeout):
            raise GuestError(f"{self.name}: saving {path} did not happen within {timeout:g} s")
        if box[1] is not None:
            raise box[1]
        return box[0]

    def restore(self, path: str | Path, *, preserve_mac: bool | None = None,
                mac_translation: bool | None = None) -> RestoreResult:
        """Load a state image into the (stopped) machine."""
        from pyv86.state import restore_machine

        if self.running:
            raise GuestError(f"{self.name}: stop the machine before restoring {path}")
        return restore_machine(self.machine, path, preserve_mac=preserve_mac,
                               mac_translation=mac_translation)

    def close(self) -> None:
        """Stop the machine and release its devices and backends."""
        if self.closed:
            return
        try:
            if self.running:
                self.stop()
        finally:
            self.closed = True
            self.machine.shutdown("test-close")

    def __enter__(self) -> GuestMachine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<GuestMachine {self.name} {'running' if self.running else 'stopped'}>"
