"""Character backends: file, TCP on loopback, callback, terminal key handling."""
from __future__ import annotations

import os
import socket
import time

import pytest

from pyv86.errors import ConfigError
from pyv86.platform.chardev import CallbackChardev, TerminalChardev, open_chardev


def test_callback_backend_passes_output_and_input():
    out = []
    backend = CallbackChardev(out.append)
    got = []
    backend.set_receiver(got.append)
    backend.write(b"x")
    backend.feed(b"y")
    assert out == [b"x"] and got == [b"y"]


def test_file_backend_appends_output(tmp_path):
    path = tmp_path / "console.log"
    backend = open_chardev(f"file:{path}")
    backend.write(b"hello\n")
    backend.close()
    assert path.read_bytes() == b"hello\n"


def test_file_backend_error_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match="device.serial0.chardev: cannot open"):
        open_chardev(f"file:{tmp_path}/missing/dir/log", "device.serial0.chardev")


def test_tcp_backend_round_trip_on_loopback():
    backend = open_chardev("tcp:127.0.0.1:0")
    got = []
    backend.set_receiver(got.append)
    try:
        client = socket.create_connection(("127.0.0.1", backend.port), timeout=2)
        deadline = time.monotonic() + 2
        while backend.client is None and time.monotonic() < deadline:
            time.sleep(0.01)
        backend.write(b"login: ")
        assert client.recv(100) == b"login: "
        client.sendall(b"root\n")
        while not got and time.monotonic() < deadline:
            time.sleep(0.01)
        assert b"".join(got) == b"root\n"
        client.close()
    finally:
        backend.close()


def test_terminal_quit_key_sequence():
    r, w = os.pipe()
    quits = []
    term = TerminalChardev(lambda: quits.append(1), stdin=os.fdopen(r, "rb"), stdout=open(os.devnull, "wb"), raw=False)
    term.raw = True  # exercise the key filter without a real TTY
    try:
        assert term.filter_keys(b"ab\x01\x01c") == b"ab\x01c"
        assert quits == []
        assert term.filter_keys(b"d\x01x") == b"d"
        assert quits == [1]
    finally:
        term.raw = False
        term.close()
        os.close(w)


def test_terminal_without_tty_passes_bytes_through():
    r, w = os.pipe()
    got = []
    term = TerminalChardev(lambda: None, stdin=os.fdopen(r, "rb"), stdout=open(os.devnull, "wb"))
    term.set_receiver(got.append)
    try:
        assert not term.raw
        os.write(w, b"ls\n")
        deadline = time.monotonic() + 2
        while not got and time.monotonic() < deadline:
            time.sleep(0.01)
        assert b"".join(got) == b"ls\n"
    finally:
        term.close()
        os.close(w)
