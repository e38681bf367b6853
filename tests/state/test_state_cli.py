"""``pyv86 run --save-on-exit/--restore`` and ``pyv86 state info/check`` from the command line."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pyv86.cli import main
from pyv86.state import read_image

MACHINE = """version = 1
[machine]
memory = "2M"
cpu = false
clock = "virtual"
[device.exit]
type = "isa-debug-exit"
"""


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.setenv("PYV86_DISABLE_PLUGIN_AUTOLOAD", "1")
    machine = tmp_path / "m.toml"
    machine.write_text(MACHINE)
    return machine, tmp_path / "m.pyv86state"


def test_save_on_exit_then_restore_in_a_new_process(files, capsys):
    machine, image = files
    assert main(["run", str(machine), "--headless", "--save-on-exit", str(image)]) == 0
    assert read_image(image).records[0]["fields"]["memory"] == 2 << 20
    env = dict(os.environ, PYV86_DISABLE_PLUGIN_AUTOLOAD="1")
    proc = subprocess.run([sys.executable, "-m", "pyv86.cli", "-v", "run", str(machine), "--headless",
                           "--restore", str(image)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "restored" in proc.stderr


def test_bad_image_is_one_line_and_exit_status_2(files, capsys):
    machine, image = files
    image.write_bytes(b"\x89pyv86S\n" + bytes(100))
    assert main(["run", str(machine), "--headless", "--restore", str(image)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(image) in err and "checksum" in err


def test_state_image_key_in_the_machine_file(files, capsys):
    machine, image = files
    assert main(["run", str(machine), "--headless", "--save-on-exit", str(image)]) == 0
    machine.write_text(MACHINE + f'[state]\nimage = "{image.name}"\n')
    image.write_bytes(image.read_bytes()[:-3])
    assert main(["run", str(machine), "--headless"]) == 2
    err = capsys.readouterr().err
    assert str(image) in err and "truncated" in err, err


def test_state_info_and_check(files, capsys):
    machine, image = files
    main(["run", str(machine), "--headless", "--save-on-exit", str(image)])
    capsys.readouterr()
    assert main(["state", "info", str(image)]) == 0
    out = capsys.readouterr().out
    assert "format 1.0" in out and "isa-debug-exit/exit" in out and "ram  pages" in out
    assert main(["state", "check", str(image), "--machine", str(machine)]) == 0
    assert "ok, fits" in capsys.readouterr().out
    other = machine.with_name("other.toml")
    other.write_text(MACHINE.replace("[device.exit]", "[device.quit]"))
    assert main(["state", "check", str(image), "--machine", str(other)]) == 2
    assert "record isa-debug-exit/exit: the machine has no device 'exit'" in capsys.readouterr().err
