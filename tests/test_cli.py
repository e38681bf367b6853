"""The ``pyv86`` command line: ``check`` on broken and example machine files, ``run``,
``--version``, exit statuses."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from pyv86 import __version__
from pyv86.cli import main

ROOT = Path(__file__).resolve().parent.parent
BROKEN = sorted((ROOT / "tests" / "data" / "machines").glob("*.toml"))
EXAMPLES = sorted((ROOT / "examples" / "machines").glob("*.toml"))
PYV86 = [sys.executable, "-m", "pyv86.cli"]


def headers(path: Path) -> dict[str, str]:
    """The ``# name: value`` lines at the top of a broken machine file."""
    found = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^# (expect|line|args): (.*)$", line)
        if not m:
            break
        found[m.group(1)] = m.group(2)
    return found


def test_there_are_at_least_ten_broken_machine_files():
    assert len(BROKEN) >= 10
    for path in BROKEN:
        assert "expect" in headers(path), f"{path.name}: no '# expect:' header"


@pytest.mark.parametrize("path", BROKEN, ids=[p.stem for p in BROKEN])
def test_check_reports_a_broken_machine_file_in_one_line(path, capsys, monkeypatch):
    monkeypatch.setenv("PYV86_DISABLE_PLUGIN_AUTOLOAD", "1")  # built-ins (+ -p args) only
    h = headers(path)
    shown = os.path.relpath(path)
    status = main([*shlex.split(h.get("args", "")), "check", shown])
    out, err = capsys.readouterr()
    assert status == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    prefix = f"pyv86: {shown}:{h['line']}: " if "line" in h else f"pyv86: {shown}: "
    assert line.startswith(prefix), line
    assert h["expect"] in line, line


def test_check_in_a_subprocess_prints_one_line_and_exits_2():
    path = ROOT / "tests" / "data" / "machines" / "unknown-key.toml"
    env = {**os.environ, "PYV86_DISABLE_PLUGIN_AUTOLOAD": "1"}
    proc = subprocess.run([*PYV86, "check", str(path)], capture_output=True, text=True, env=env,
                          timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == (f"pyv86: {path}:6: machine.memroy: unknown key; valid keys: "
                           "clock, cpu, memory, on_triple_fault\n")


def test_missing_machine_file(capsys, monkeypatch):
    monkeypatch.setenv("PYV86_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert main(["check", "no/such/file.toml"]) == 2
    assert capsys.readouterr().err == "pyv86: no/such/file.toml: no such machine file\n"


def test_debug_shows_the_traceback(monkeypatch):
    from pyv86.errors import ConfigError

    monkeypatch.setenv("PYV86_DISABLE_PLUGIN_AUTOLOAD", "1")
    with pytest.raises(ConfigError, match="no such machine file"):
        main(["--debug", "check", "no/such/file.toml"])


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_machine_file_passes_check(path, capsys):
    # with whatever plugins are installed: an example naming a missing plugin must fail here
    status = main(["check", str(path)])
    out, err = capsys.readouterr()
    if status != 0 and ("unknown device type" in err or "unknown network URL scheme" in err):
        pytest.fail(f"{path.name} needs a plugin that is not installed "
                    f"(run `make install-test`): {err.strip()}")
    assert status == 0, err
    assert out.startswith(f"{path}: ok (")


def test_examples_exist():
    names = {p.name for p in EXAMPLES}
    assert {"default.toml", "postcard.toml"} <= names


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"pyv86 {__version__}"


def test_no_command_prints_help_and_exits_2(capsys, monkeypatch):
    monkeypatch.setenv("PYV86_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_bad_log_level_is_a_one_line_error(capsys, monkeypatch):
    monkeypatch.setenv("PYV86_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert main(["--log", "pyv86.net=LOUD", "plugins"]) == 2
    assert capsys.readouterr().err == "pyv86: --log pyv86.net=LOUD: 'LOUD' is not a log level (DEBUG, INFO, WARNING, ERROR)\n"


def test_run_stops_with_the_guest_exit_status(tmp_path, monkeypatch):
    """A machine whose timer-driven 'guest' writes to isa-debug-exit: run returns (v << 1) | 1."""
    from pyv86 import hookimpl
    from pyv86.machine import Machine

    class Poker:
        @hookimpl
        def pyv86_machine_created(self, machine: Machine) -> None:
            t = machine.scheduler.timer("poke", lambda: machine.ports.outw(0x501, 3))
            t.arm(1_000_000)

    import pyv86.plugins.manager as manager_mod

    real = manager_mod.create_plugin_manager

    def with_poker(**kwargs):
        manager = real(**kwargs)
        manager.register_module(Poker(), "poker")
        return manager

    monkeypatch.setattr(manager_mod, "create_plugin_manager", with_poker)
    monkeypatch.setenv("PYV86_DISABLE_PLUGIN_AUTOLOAD", "1")
    machine_file = tmp_path / "exit.toml"
    machine_file.write_text('version = 1\n[machine]\nmemory = "2M"\nclock = "virtual"\ncpu = false\n'
                            '[device.exit]\ntype = "isa-debug-exit"\n')
    assert main(["run", str(machine_file), "--timeout", "10"]) == 7


def test_the_default_machine_is_linux_with_a_network():
    """What `make run` boots: the guest image on a CPU, with an NE2000 on a real backend."""
    from pyv86.config import load_machine_config
    from pyv86.plugins.manager import create_plugin_manager

    config = load_machine_config(ROOT / "examples" / "machines" / "default.toml", create_plugin_manager())
    assert config.cpu_enabled
    assert config.kernel is not None and config.kernel.endswith("guest/vmlinuz")
    assert config.initrd is not None and config.initrd.endswith("guest/initramfs.cpio.gz")
    nics = [d for d in config.devices if d.type == "ne2k-pci"]
    assert len(nics) == 1 and nics[0].netdev is not None
    netdev = {n.id: n for n in config.netdevs}[nics[0].netdev]
    assert netdev.url.split(":")[0] not in ("null", "")


