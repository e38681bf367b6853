"""pyv86.peers.v86 without booting v86: finding and checking the install, the runner's
argument checks (real run_v86.mjs under Node.js), and the console driver against a fake
runner that speaks the same protocol (fake_v86_runner.mjs). The real boots are in
tests/interop/test_v86_relay.py.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from pyv86.peers import v86
from pyv86.peers.v86 import V86Error, V86Guest

HERE = Path(__file__).parent
REPO_PEER = Path(__file__).resolve().parents[2] / "peers" / "v86"


def need_node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("these tests need Node.js (`node`); the machine image has it, Debian's nodejs works too")
    return node


@pytest.fixture
def fake_peer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A peer folder whose node_modules looks installed and whose runner is the fake."""
    need_node()
    peer = tmp_path / "peer"
    (peer / "node_modules" / "v86").mkdir(parents=True)
    (peer / "node_modules" / "ws").mkdir(parents=True)
    pins = json.loads((REPO_PEER / "package.json").read_text())["dependencies"]
    (peer / "package.json").write_text(json.dumps({"dependencies": pins}))
    (peer / "node_modules" / "v86" / "package.json").write_text(json.dumps({"version": pins["v86"] + "+gfake"}))
    (peer / "node_modules" / "ws" / "package.json").write_text(json.dumps({"version": pins["ws"]}))
    shutil.copy(HERE / "fake_v86_runner.mjs", peer / v86.RUNNER)
    bios = tmp_path / "seabios"
    bios.mkdir()
    for name in v86.BIOS_FILES:
        (bios / name).write_bytes(b"\0" * 16)
    monkeypatch.setenv("PYV86_V86_DIR", str(peer))
    monkeypatch.setattr(v86, "SEABIOS_DIR", bios)
    return peer


@pytest.fixture
def image(tmp_path: Path) -> tuple[Path, Path]:
    kernel, initrd = tmp_path / "vmlinuz", tmp_path / "initrd"
    kernel.write_bytes(b"k")
    initrd.write_bytes(b"i")
    return kernel, initrd


# -- the checked-in peer folder --------------------------------------------------------------
def test_package_json_pins_exact_versions_of_v86_and_ws() -> None:
    pins = v86.pinned_versions(REPO_PEER)
    assert set(pins) == {"v86", "ws"}
    for name, version in pins.items():
        assert all(part.isdigit() for part in version.split(".")), f"{name} must be pinned exactly: {version}"
    assert "package-lock=false" in (REPO_PEER / ".npmrc").read_text()
    assert "peers/v86/node_modules/" in (REPO_PEER.parents[1] / ".gitignore").read_text().split()


def test_peer_dir_defaults_to_the_checkout_and_names_a_wrong_override(monkeypatch: pytest.MonkeyPatch,
                                                                       tmp_path: Path) -> None:
    monkeypatch.delenv("PYV86_V86_DIR", raising=False)
    assert v86.peer_dir() == REPO_PEER
    monkeypatch.setenv("PYV86_V86_DIR", str(tmp_path))
    with pytest.raises(V86Error, match=rf"no package.json and run_v86.mjs in {tmp_path}; .*PYV86_V86_DIR"):
        v86.peer_dir()


def test_is_installed_compares_node_modules_with_the_pins(fake_peer: Path) -> None:
    assert v86.is_installed(fake_peer)
    (fake_peer / "node_modules" / "ws" / "package.json").write_text('{"version": "7.0.0"}')
    assert not v86.is_installed(fake_peer)
    shutil.rmtree(fake_peer / "node_modules")
    assert not v86.is_installed(fake_peer)


def test_check_host_names_the_missing_seabios_file(fake_peer: Path, tmp_path: Path) -> None:
    (v86.SEABIOS_DIR / "vgabios-stdvga.bin").unlink()
    with pytest.raises(V86Error, match=r"vgabios-stdvga.bin: missing; .*apt-get install seabios"):
        v86.check_host()


def test_missing_node_is_a_clear_error_and_the_benchmark_says_not_measured(
        monkeypatch: pytest.MonkeyPatch, image: tuple[Path, Path]) -> None:
    monkeypatch.setattr(v86.shutil, "which", lambda name: None)
    with pytest.raises(V86Error, match="node not found; install Node.js"):
        v86.check_host()
    result = v86.boot_to_marker(*image, install_stream=None)
    assert result["seconds"] is None and result["status"].startswith("not measured: v86 peer: node not found")


def test_runner_command_carries_every_option(tmp_path: Path) -> None:
    cmd = v86.runner_command("/usr/bin/node", tmp_path, Path("/k"), Path("/i"), "console=ttyS0 x=1",
                             memory_mib=256, relay_url="ws://127.0.0.1:9/", marker="M",
                             exit_on_marker=True, timeout_s=5, jit=False)
    assert cmd[:2] == ["/usr/bin/node", str(tmp_path / "run_v86.mjs")]
    pairs = dict(zip(cmd[2::2], cmd[3::2]))
    assert pairs["--bzimage"] == "/k" and pairs["--initrd"] == "/i" and pairs["--memory"] == "256"
    assert pairs["--cmdline"] == "console=ttyS0 x=1" and pairs["--marker"] == "M"
    assert cmd[cmd.index("--relay") + 1] == "ws://127.0.0.1:9/"
    assert {"--exit-on-marker", "--no-jit", "--quit-on-eof"} <= set(cmd)
    assert "--relay" not in v86.runner_command("node", tmp_path, Path("/k"), Path("/i"), "c")


# -- the real runner's argument checks (no boot: each fails before v86 starts) ------------------
@pytest.mark.parametrize("extra, message", [
    ([], "--bzimage: missing; run `pyv86 guest build`"),
    (["--bzimage", "/nonexistent/vmlinuz"], "--bzimage /nonexistent/vmlinuz: ENOENT"),
    (["--memory", "lots"], "--memory lots: not a whole number of MiB"),
    (["--relay", "http://127.0.0.1:1/"], "--relay http://127.0.0.1:1/: not a ws:// or wss:// URL"),
    (["--bios", "/nonexistent/bios.bin"], "--bios /nonexistent/bios.bin: ENOENT; install Debian's seabios"),
    (["--frobnicate"], "Unknown option '--frobnicate'"),
])
def test_real_runner_rejects_bad_arguments_in_one_line(extra: list[str], message: str, image: tuple[Path, Path]) -> None:
    node = need_node()
    if "--bzimage" not in extra and extra:
        extra = ["--bzimage", str(image[0]), "--initrd", str(image[1]), *extra]
    proc = subprocess.run([node, str(REPO_PEER / "run_v86.mjs"), *extra], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("v86-runner: error: ") and message in lines[0], lines
    assert proc.stdout == ""


# -- the console driver against the fake runner -------------------------------------------------
def test_guest_waits_for_the_marker_runs_commands_and_reports_figures(fake_peer: Path,
                                                                       image: tuple[Path, Path]) -> None:
    with V86Guest(*image, "console=ttyS0 pyv86.hostname=a", relay_url="ws://127.0.0.1:9/",
                  memory_mib=64, install_stream=None) as guest:
        assert guest.wait_ready(30) > 0
        assert guest.marker_figures is not None and guest.marker_figures["instructions"] == 5_000_000_000
        assert "fake kernel, cmdline: console=ttyS0 pyv86.hostname=a" in guest.output
        assert "relay=ws://127.0.0.1:9/ memory=64" in guest.output
        assert guest.run("echo hello world") == ("hello world", 0)
        assert guest.run("frobnicate") == ("sh: frobnicate: not found", 127)
        figures = guest.close()
    assert figures is not None and figures["reason"] == "SIGTERM"
    assert guest.returncode == 0


def test_runner_dying_before_the_marker_is_reported_with_its_message(
        fake_peer: Path, image: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_V86_MODE", "crash")
    with V86Guest(*image, install_stream=None) as guest:
        with pytest.raises(V86Error, match=r"v86 exited with status 4 \(v86-runner: error: fake crash"):
            guest.wait_ready(30)
    result = v86.boot_to_marker(*image, install_stream=None)
    assert result["seconds"] is None and "fake crash" in result["status"]


def test_marker_timeout_names_the_marker_and_shows_the_console(
        fake_peer: Path, image: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_V86_MODE", "silent")
    with V86Guest(*image, install_stream=None, name="g1") as guest:
        guest.wait_for("fake kernel", 30)
        with pytest.raises(V86Error, match=r"g1: marker line 'PYV86-READY' not seen within 1 s; "
                                           r"console tail:\n\[    0.000000\] fake kernel"):
            guest.wait_ready(1)


def test_boot_to_marker_returns_the_benchmark_figures(fake_peer: Path, image: tuple[Path, Path]) -> None:
    result = v86.boot_to_marker(*image, cmdline="console=ttyS0", install_stream=None)
    assert result["seconds"] and result["seconds"] > 0
    assert result["instructions"] == 5_000_000_000 and result["user_cpu_s"] == 1.25
    assert result["guest_uptime_s"] == 1.5
    assert result["mips"] == round(5e9 / result["seconds"] / 1e6, 2)
    assert result["main_thread_cpu_s"] == 1.0 and result["cpu_wait_s"] == 2.5
    assert result["status"] == "ok (v86 0.0.0-fake, JIT, user CPU 1.2 s, main thread 1.0 s, 2 s waiting for a CPU)"
    assert "--exit-on-marker" in result["command"]


def test_missing_image_file_is_named(fake_peer: Path, tmp_path: Path) -> None:
    with pytest.raises(V86Error, match=r"nothere: no such file; run `pyv86 guest build`"):
        V86Guest(tmp_path / "nothere", tmp_path / "nothere2")
