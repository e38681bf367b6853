"""passt's lifetime around the machine's: start errors, death and restart, attach, stop."""
from __future__ import annotations

import logging
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import passt_packets as pk
from pyv86.errors import ConfigError

GUEST_MAC = pk.mac("52:54:00:0d:0e:0f")
URL = "passt:?address=10.0.2.15&gateway=10.0.2.2&netmask=24&ip=4"
NOT_INSTALLED = "the passt program is not installed; install the Debian package 'passt'"

pytestmark = pytest.mark.netns


def _offer(frame: bytes):
    eth = pk.parse_eth(frame)
    ip = pk.parse_ipv4(eth.payload) if eth.type == pk.ETH_IP else None
    if ip is None or ip.proto != pk.PROTO_UDP:
        return None
    sport, dport, payload = pk.parse_udp(ip.payload)
    return pk.parse_dhcp(payload) if (sport, dport) == (67, 68) else None


def _dhcp_works(run, xid: int) -> None:
    run.send(pk.dhcp_discover(GUEST_MAC, xid))
    offer = run.expect(lambda f: (d := _offer(f)) is not None and d.xid == xid and d, what="DHCP OFFER")
    assert offer.yiaddr == "10.0.2.15"


def _wait(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_killing_passt_logs_why_and_the_backend_restarts_it(passt_machine, caplog):
    caplog.set_level(logging.WARNING, logger="pyv86_passt")
    run = passt_machine(URL)
    _dhcp_works(run, 1)
    backend = run.backend
    first = backend.pid
    os.kill(first, signal.SIGKILL)
    _wait(lambda: backend.counters.connections == 2 and backend.connected, 10, "passt to restart")
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("pyv86_passt")]
    died = [m for m in messages if f"passt (pid {first}) was killed by signal 9 (SIGKILL)" in m]
    assert len(died) == 1, messages
    assert "its last output:" in died[0] and "restarting it in" in died[0]
    assert any("passt restarted (pid" in m for m in messages), messages
    assert backend.pid != first and _alive(backend.pid)
    assert run.thread.is_alive() and not run.machine.stopped
    _dhcp_works(run, 2)                 # the new passt serves the guest
    assert backend.counters.passt_exits == 1


def test_a_passt_that_exits_by_itself_is_reported_with_its_status(passt_machine, caplog):
    caplog.set_level(logging.WARNING, logger="pyv86_passt")
    run = passt_machine(URL)
    backend = run.backend
    first = backend.pid
    os.kill(first, signal.SIGTERM)
    _wait(lambda: backend.counters.connections == 2 and backend.connected, 10, "passt to restart")
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"passt (pid {first}) " in m and ("exited with status" in m or "signal 15" in m)
               for m in messages), messages
    _dhcp_works(run, 3)


def test_closing_the_machine_stops_passt_and_removes_its_socket_directory(passt_machine):
    run = passt_machine(URL)
    backend = run.backend
    pid = backend.pid
    directory = backend.process.directory
    assert _alive(pid) and os.path.isdir(directory)
    run.stop()
    run.machine.shutdown()
    assert not _alive(pid)
    assert not os.path.exists(directory)
    assert not backend._supervisor.is_alive()


def test_missing_passt_program_is_a_one_line_error_naming_the_package(pyv86_plugins, make_machine,
                                                                      tmp_path, monkeypatch):
    pyv86_plugins.load_entry_points(only=["passt"])
    monkeypatch.setenv("PATH", str(tmp_path))          # no passt anywhere
    with pytest.raises(ConfigError) as err:
        make_machine('[netdev.lan]\nurl = "passt:"\n')
    assert str(err.value) == f"netdev.lan.url: passt:: {NOT_INSTALLED}"


def test_missing_passt_program_via_the_cli_prints_one_line(tmp_path):
    machine = tmp_path / "m.toml"
    machine.write_text('version = 1\n[machine]\nmemory = "1M"\ncpu = false\n'
                       '[netdev.lan]\nurl = "user:?tcp=8080:80"\n')
    pyv86 = Path(sys.executable).with_name("pyv86")
    env = {**os.environ, "PATH": str(tmp_path)}
    done = subprocess.run([str(pyv86), "run", str(machine)], capture_output=True, text=True,
                          env=env, timeout=60)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert lines == [f"pyv86: netdev.lan.url: user:?tcp=8080:80: {NOT_INSTALLED}"]


def test_passt_refusing_its_options_is_reported_with_what_it_said(pyv86_plugins, make_machine,
                                                                   confined_passt):
    pyv86_plugins.load_entry_points(only=["passt"])
    with pytest.raises(ConfigError) as err:
        make_machine('[netdev.lan]\nurl = "passt:?interface=nosuch0"\n')
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("netdev.lan.url: passt:?interface=nosuch0: passt exited with status 1 "
                          "before accepting a connection; it said: "), msg
    assert "nosuch0" in msg.split("it said:")[1]


def test_bad_url_options_are_config_errors(pyv86_plugins, make_machine, confined_passt):
    pyv86_plugins.load_entry_points(only=["passt"])
    with pytest.raises(ConfigError) as err:
        make_machine('[netdev.lan]\nurl = "passt:?tcp=8080:80&colour=blue"\n')
    assert str(err.value).startswith("netdev.lan.url: passt:?tcp=8080:80&colour=blue: unknown option 'colour'")


@pytest.fixture
def external_passt(confined_passt):
    """A passt we start ourselves (as a user would), serving clients one after another."""
    directory = Path(tempfile.mkdtemp(prefix="pyv86-test-passt-"))   # passt (as nobody) must reach it
    nobody = pwd.getpwnam("nobody")
    os.chown(directory, nobody.pw_uid, nobody.pw_gid)
    path = directory / "passt.socket"
    procs: list[subprocess.Popen] = []

    def start() -> subprocess.Popen:
        proc = subprocess.Popen([str(confined_passt / "passt"), "--foreground", "--socket", str(path),
                                 "--address", "10.0.2.15", "--gateway", "10.0.2.2", "-4"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proc)
        _wait(path.exists, 10, "passt's socket")
        return proc

    start.path = path  # type: ignore[attr-defined]
    yield start
    for proc in procs:
        proc.kill()
        proc.wait()
    shutil.rmtree(directory, ignore_errors=True)


def test_attaching_to_a_running_passt_reports_its_death_and_reconnects(passt_machine,
                                                                       external_passt, caplog):
    caplog.set_level(logging.WARNING, logger="pyv86_passt")
    proc = external_passt()
    run = passt_machine(f"passt:{external_passt.path}")
    backend = run.backend
    assert backend.pid is None and backend.process is None
    _dhcp_works(run, 10)
    proc.kill()
    proc.wait()
    def reported() -> bool:
        return any(f"the connection to passt at {external_passt.path} ended" in m
                   and "cannot restart it" in m
                   for m in (r.getMessage() for r in caplog.records if r.levelno == logging.ERROR))

    _wait(reported, 5, "an error log line saying passt went away")
    assert not backend.connected
    run.send(pk.dhcp_discover(GUEST_MAC, 11))             # dropped and counted, no crash
    _wait(lambda: backend.counters.tx_dropped >= 1, 5, "the drop to be counted")
    assert run.thread.is_alive() and not run.machine.stopped
    os.unlink(external_passt.path)
    external_passt()                                       # the user brings passt back
    _wait(lambda: backend.connected, 10, "the backend to reconnect")
    _dhcp_works(run, 12)


def test_attaching_to_a_socket_nobody_listens_on_is_a_config_error(pyv86_plugins, make_machine,
                                                                   tmp_path):
    pyv86_plugins.load_entry_points(only=["passt"])
    path = tmp_path / "none.socket"
    with pytest.raises(ConfigError) as err:
        make_machine(f'[netdev.lan]\nurl = "passt:{path}"\n')
    assert str(err.value) == (f"netdev.lan.url: passt:{path}: cannot connect to the passt socket "
                              f"{path}: No such file or directory; is passt running?")


def test_the_user_alias_behaves_like_passt(passt_machine):
    run = passt_machine(URL.replace("passt:", "user:", 1))
    _dhcp_works(run, 20)
    assert shutil.which("passt") is not None
