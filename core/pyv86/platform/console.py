"""The serial console of ``pyv86 run``: the terminal, headless logging, and ``--exec``.

:func:`attach_console` connects the machine's console UART (``serial0``) for one run:

* **interactive** (default): the terminal (:class:`~pyv86.platform.chardev.TerminalChardev`):
  raw mode when stdin is a TTY, **Ctrl-A x** quits;
* **headless** (``--headless``): nothing on the terminal; the console goes to stderr only
  with ``-v``, or to ``--console-log FILE``;
* **exec** (``--exec CMD``): headless, plus an :class:`ExecSession` that waits for the
  guest's ``PYV86-READY`` line, types the command, prints exactly its output on stdout
  and stops the machine with its exit status.

How ``--exec`` finds the output: it types one line,
``echo @PYV86-S$((K))@; (eval "$(printf '%b' 'CMD')"); echo @PYV86-E$((K+1))@$?`` with a
random K (the subshell lets ``exit N`` end the command, not the guest's shell). The echo of the typed line shows ``$((K))`` unexpanded, so the markers the
shell *prints* (``@PYV86-SK@`` ... ``@PYV86-E<K+1>@<status>``) can only come from running
it; what lies between them is the command's output (CRLF turned back into LF). Newlines
and backslashes in CMD travel as ``printf %b`` escapes, so the line stays one line.
"""
from __future__ import annotations

import logging
import random
import re
import sys
from typing import IO, TYPE_CHECKING, Any

from pyv86.errors import Pyv86Error

if TYPE_CHECKING:
    from pyv86.machine import Machine
    from pyv86.platform.uart import Uart16550

log = logging.getLogger(__name__)

READY_MARKER = b"PYV86-READY"
EXIT_TIMEOUT = 124
EXIT_ERROR = 2
TYPE_DELAY_NS = 20_000_000  # let the shell that follows the marker reach its prompt
MAX_CAPTURE = 64 << 20


def shell_line(command: str, key: int) -> bytes:
    """The line typed for ``--exec``: start marker, the command through eval, end marker."""
    escaped = command.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    escaped = escaped.replace("'", "'\\''")
    line = (f"echo @PYV86-S$(({key}))@; (eval \"$(printf '%b' '{escaped}')\"); "
            f"echo @PYV86-E$(({key}+1))@$?\n")
    return line.encode("utf-8", "surrogateescape")


class ExecSession:
    """Drives one ``--exec`` command through the console; runs on the machine thread."""

    def __init__(self, machine: Machine, uart: Uart16550, command: str,
                 stdout: IO[bytes] | None = None, key: int | None = None) -> None:
        self.machine = machine
        self.uart = uart
        self.command = command
        self.stdout = stdout if stdout is not None else sys.stdout.buffer
        self.key = key if key is not None else random.randrange(10**8, 10**9)
        self.start_re = re.compile(rb"@PYV86-S%d@\r?\n" % self.key)
        self.end_re = re.compile(rb"@PYV86-E%d@(\d+)" % (self.key + 1))
        self.buffer = bytearray()
        self._scanned = 0   # the end marker is not in buffer[:_scanned - 64] (searched already)
        self.phase = "boot"  # boot -> typing -> running -> done
        self.status: int | None = None
        self.output: bytes | None = None
        self._timer = machine.scheduler.timer("exec-type", self._type)
        uart.add_output_tap(self._on_output)

    def _on_output(self, data: bytes) -> None:
        if self.phase == "done":
            return
        self.buffer += data
        if len(self.buffer) > MAX_CAPTURE:
            cut = len(self.buffer) - MAX_CAPTURE
            del self.buffer[:cut]
            self._scanned = max(0, self._scanned - cut)
        if self.phase == "boot":
            at = self.buffer.find(READY_MARKER)
            if at >= 0 and b"\n" in self.buffer[at:]:
                log.info("exec: guest ready; typing the command")
                self.phase = "typing"
                del self.buffer[:]
                self._scanned = 0
                self._timer.arm_in(TYPE_DELAY_NS)
            elif at < 0 and len(self.buffer) > 4096:
                del self.buffer[: len(self.buffer) - len(READY_MARKER)]
            return
        if self.phase == "running" or self.phase == "typing":
            if not self.buffer.endswith(b"\n"):
                return
            # search only what arrived since the last search (plus a marker's length): large
            # outputs stay linear instead of rescanning the whole capture per chunk
            end = self.end_re.search(self.buffer, max(0, self._scanned - 64))
            self._scanned = len(self.buffer)
            if end is None:
                return
            start = self.start_re.search(self.buffer)
            if start is None or start.end() > end.start():
                return
            self.output = bytes(self.buffer[start.end() : end.start()]).replace(b"\r\n", b"\n")
            self.status = int(end.group(1)) & 0xFF
            self.phase = "done"
            try:
                self.stdout.write(self.output)
                self.stdout.flush()
            except (OSError, ValueError):
                pass
            self.machine.stop("exec-finished", exit_status=self.status)

    def _type(self) -> None:
        self.phase = "running"
        self.uart.receive(shell_line(self.command, self.key))

    def exit_status(self, reason: str | None, timeout: float | None) -> int:
        """What ``pyv86 run --exec`` exits with; prints why when the command did not finish."""
        if self.status is not None:
            return self.status
        if reason == "timeout":
            waiting = "for PYV86-READY" if self.phase == "boot" else "for the command to finish"
            print(f"pyv86: --exec: timed out after {timeout:g} s waiting {waiting}", file=sys.stderr)
            return EXIT_TIMEOUT
        print(f"pyv86: --exec: the machine stopped ({reason}) before the command finished",
              file=sys.stderr)
        return EXIT_ERROR


class ConsoleAttachment:
    """What :func:`attach_console` connected; :meth:`close` disconnects it."""

    def __init__(self) -> None:
        self.backends: list[Any] = []
        self.exec_session: ExecSession | None = None

    def close(self) -> None:
        for backend in self.backends:
            try:
                backend.close()
            except Exception:  # noqa: BLE001 - closing must not mask the run's result
                log.exception("console backend close failed")
        self.backends.clear()


def attach_console(machine: Machine, *, exec_cmd: str | None = None, headless: bool = False,
                   verbose: int = 0, console_log: str | None = None) -> ConsoleAttachment:
    """Connect the console UART for ``pyv86 run`` (see the module docstring)."""
    from pyv86.platform.chardev import CallbackChardev, TerminalChardev, open_chardev
    from pyv86.platform.pc import console_uart

    attachment = ConsoleAttachment()
    uart = console_uart(machine)
    if uart is None:
        if exec_cmd is not None:
            raise Pyv86Error("--exec: the machine has no serial console (no CPU, or `-p no:pyv86.pc`)")
        return attachment
    log_backend = None
    if console_log:
        log_backend = open_chardev(f"file:{console_log}", "--console-log")
        attachment.backends.append(log_backend)
    elif verbose and (headless or exec_cmd is not None):
        log_backend = CallbackChardev(_stderr_writer())
    if log_backend is not None:
        uart.add_output_tap(log_backend.write)
    if uart.config.chardev != "console":
        pass  # the machine file connected it (file:, tcp:, null)
    elif exec_cmd is not None or headless:
        uart.connect(None)
    else:
        terminal = TerminalChardev(lambda: machine.stop("user-quit", exit_status=0))
        if terminal.raw:
            sys.stderr.write("pyv86: console on this terminal; Ctrl-A x quits, Ctrl-A h for help\r\n")
        uart.connect(terminal)
        attachment.backends.append(terminal)
    if exec_cmd is not None:
        attachment.exec_session = ExecSession(machine, uart, exec_cmd)
    return attachment


def _stderr_writer():
    stream = sys.stderr.buffer

    def write(data: bytes) -> None:
        try:
            stream.write(data)
            stream.flush()
        except (OSError, ValueError):
            pass

    return write
