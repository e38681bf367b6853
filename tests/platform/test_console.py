"""The run console: --exec typing, marker parsing, exit status; the typed line in a real sh."""
from __future__ import annotations

import io
import re
import subprocess

import pytest

from pyv86.platform.console import ExecSession, shell_line


def guest_prints(pc, text: bytes) -> None:
    for byte in text:
        pc.outb(0x3F8, byte)


def typed(pc) -> bytes:
    out = bytearray()
    while pc.inb(0x3FD) & 1:
        out.append(pc.inb(0x3F8))
    return bytes(out)


@pytest.fixture
def session(pc):
    pc.stdout = io.BytesIO()
    pc.session = ExecSession(pc.machine, pc.uart, "uname -m", stdout=pc.stdout, key=4242)
    return pc


def test_waits_for_ready_marker_before_typing(session):
    guest_prints(session, b"[    0.0] Linux version ...\r\n")
    session.machine.run(until_ns=session.machine.clock.now + 100_000_000)
    assert typed(session) == b""


def test_types_command_line_after_ready_marker(session):
    guest_prints(session, b"\r\nPYV86-READY\r\n")
    session.machine.run(until_ns=session.machine.clock.now + 100_000_000)
    assert typed(session) == shell_line("uname -m", 4242)


def test_prints_only_command_output_and_exits_with_status(session):
    guest_prints(session, b"PYV86-READY\r\n")
    session.machine.run(until_ns=session.machine.clock.now + 100_000_000)
    line = typed(session)
    guest_prints(session, line.replace(b"\n", b"\r\n"))  # the tty echoes what was typed
    session.machine.call_soon_threadsafe(
        lambda: guest_prints(session, b"@PYV86-S4242@\r\ni686\r\n@PYV86-E4243@3\r\n/ # "))
    session.machine.run(until_ns=session.machine.clock.now + 100_000_000)
    assert session.stdout.getvalue() == b"i686\n"
    assert session.session.status == 3
    assert session.machine.stop_reason == "exec-finished" and session.machine.exit_status == 3


def test_echo_of_typed_line_is_not_mistaken_for_markers(session):
    guest_prints(session, b"PYV86-READY\r\n")
    session.machine.run(until_ns=session.machine.clock.now + 100_000_000)
    guest_prints(session, typed(session).replace(b"\n", b"\r\n"))
    assert session.session.status is None


def test_output_without_final_newline_is_kept_exact(session):
    guest_prints(session, b"PYV86-READY\r\n")
    session.machine.run(until_ns=session.machine.clock.now + 100_000_000)
    guest_prints(session, b"@PYV86-S4242@\r\nno newline@PYV86-E4243@0\r\n")
    assert session.stdout.getvalue() == b"no newline"


def test_long_output_with_the_end_marker_split_across_writes(session):
    # the end marker is searched incrementally (only new output); a marker arriving in
    # pieces after many lines must still be found, and nothing of the output lost
    guest_prints(session, b"PYV86-READY\r\n")
    session.machine.run(until_ns=session.machine.clock.now + 100_000_000)
    body = b"".join(b"line %05d\r\n" % i for i in range(3000))
    session.session._on_output(b"@PYV86-S4242@\r\n" + body + b"@PYV86-E42")
    session.session._on_output(b"43@7")
    assert session.session.status is None
    session.session._on_output(b"\r\n")
    assert session.session.status == 7
    assert session.stdout.getvalue() == body.replace(b"\r\n", b"\n")


def test_timeout_exit_status_and_message(session, capsys):
    assert session.session.exit_status("timeout", 5) == 124
    assert "timed out after 5 s waiting for PYV86-READY" in capsys.readouterr().err


@pytest.mark.parametrize("command, output, status", [
    ("echo hello", b"hello\n", 0),
    ("false", b"", 1),
    ("echo bye; exit 3", b"bye\n", 3),
    ("exit_code() { return 7; }; exit_code", b"", 7),
    ("printf 'a\\tb\\n'", b"a\tb\n", 0),
    ("echo \"it's\" 'quoted \"twice\"'", b"it's quoted \"twice\"\n", 0),
    ("echo one\necho two", b"one\ntwo\n", 0),
    ("echo back\\\\slash", b"back\\slash\n", 0),
    ("x=5; echo $((x * 2)) $x", b"10 5\n", 0),
    ("printf %s 'no newline'", b"no newline", 0),
    ("echo '$((1+1))' @PYV86-E1@", b"$((1+1)) @PYV86-E1@\n", 0),
])
def test_typed_line_runs_command_exactly_in_a_posix_shell(command, output, status):
    key = 1000
    line = shell_line(command, key)
    assert line.count(b"\n") == 1 and line.endswith(b"\n")
    result = subprocess.run(["sh"], input=line, capture_output=True, timeout=10)
    text = result.stdout
    start = re.search(rb"@PYV86-S1000@\n", text)
    end = re.search(rb"@PYV86-E1001@(\d+)", text)
    assert start and end, text
    assert text[start.end():end.start()] == output
    assert int(end.group(1)) == status
