"""Typing a command into a guest's busybox shell over a serial console and reading its result.

Shared by the peer emulators pyv86 drives (QEMU, v86). A driver provides ``send(text)``,
``wait_for(pattern, timeout_s, start)`` and the console text so far in ``output``.
"""
from __future__ import annotations

import re
import time
from typing import Any


class ShellCommands:
    """Mixin: ``run(command)`` -> (output, exit status) on a console with a shell prompt."""

    output: str
    default_command_timeout_s: float = 30

    def send(self, text: str) -> None:  # pragma: no cover - provided by the driver
        raise NotImplementedError

    def wait_for(self, pattern: re.Pattern[str], timeout_s: float, start: int = 0) -> Any:  # pragma: no cover
        raise NotImplementedError

    def run(self, command: str, timeout_s: float | None = None) -> tuple[str, int]:
        """Type ``command`` into the shell; return (its output, its exit status).

        The begin/end tags are computed by the guest shell (``$((n+1))``), so the echo of the
        typed line — which the terminal may wrap — never matches them.
        """
        if timeout_s is None:
            timeout_s = self.default_command_timeout_s
        n = time.monotonic_ns()
        begin, end = f"PYV86-B{n + 1}", f"PYV86-E{n + 1}"
        start = len(self.output)
        self.send(f"echo PYV86-B$(({n}+1)); {command}; echo PYV86-E$(({n}+1))-$?\n")
        m_end = self.wait_for(re.compile(rf"{end}-(\d+)\r?$", re.M), timeout_s, start)
        m_begin = self.wait_for(re.compile(rf"^{begin}\r?\n", re.M), 0, start)
        text = self.output[m_begin.end():m_end.start()].replace("\r", "")
        return text.strip("\n"), int(m_end.group(1))
