"""The real v86 emulator as a peer: install it, boot the guest image in it, drive its console.

v86 (the npm package ``v86``, x86-to-wasm JIT) runs under Node.js through the runner script
``peers/v86/run_v86.mjs`` in the repository. This module owns the Python side:

* :func:`peer_dir` finds that folder (``$PYV86_V86_DIR`` overrides it);
* :func:`check_host` says, in one line, what is missing (Node.js, npm, SeaBIOS files);
* :func:`ensure_installed` runs ``npm install`` there once (node_modules stays in the work
  tree, ignored by git) with a progress line, under a lock so parallel callers wait;
* :class:`V86Guest` boots a bzImage + initrd with a kernel command line (optionally on a
  ``ws://`` relay), waits for console text, types commands and reads their output and
  status, like :class:`pyv86.guest.qemu.QemuGuest`;
* :func:`boot_to_marker` is what ``benchmarks/boot.py`` calls: one boot to the marker,
  wall and CPU time, guest instructions.

v86 has no BIOS of its own; Debian's ``seabios`` package provides ``bios.bin`` and
``vgabios-stdvga.bin``. Its NE2000 is an RTL8029 at 00:05.0 (Linux's ne2k-pci), and its
relay client is the one pyv86's relay server is built to serve.

    python -m pyv86.peers.v86 [--cmdline S] [--relay ws://127.0.0.1:PORT/] [--no-jit]
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any, Sequence

from pyv86.errors import Pyv86Error
from pyv86.guest.scripts import READY_MARKER
from pyv86.guest.shell import ShellCommands

log = logging.getLogger(__name__)

RUNNER = "run_v86.mjs"
SEABIOS_DIR = Path("/usr/share/seabios")
BIOS_FILES = ("bios.bin", "vgabios-stdvga.bin")
DEFAULT_CMDLINE = "console=ttyS0 acpi=off nolapic"
"""Used when the caller gives none; the same default as :mod:`pyv86.guest.qemu`."""
NODE_MIN_MAJOR = 18
INSTALL_TIMEOUT_S = 600
_STATUS_RE = re.compile(r"^v86-runner: (marker|exit) (\{.*\})\s*$")


class V86Error(Pyv86Error):
    """v86 cannot be installed or started, exited early, or the guest missed a marker."""


# -- finding and installing ---------------------------------------------------------------------
def peer_dir() -> Path:
    """The folder with ``package.json`` and ``run_v86.mjs`` (``$PYV86_V86_DIR`` wins)."""
    env = os.environ.get("PYV86_V86_DIR")
    candidates = [Path(env)] if env else [Path(__file__).resolve().parents[3] / "peers" / "v86"]
    for path in candidates:
        if (path / "package.json").is_file() and (path / RUNNER).is_file():
            return path
    raise V86Error(f"v86 peer: no package.json and {RUNNER} in {candidates[0]}; "
                   "run from a pyv86 source checkout or set PYV86_V86_DIR")


def pinned_versions(directory: Path) -> dict[str, str]:
    """``{"v86": "0.5.462", "ws": "8.23.0"}`` from package.json's dependencies."""
    path = directory / "package.json"
    try:
        deps = json.loads(path.read_text())["dependencies"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise V86Error(f"{path}: no readable dependencies table ({exc}); restore it from git") from None
    return {str(k): str(v) for k, v in deps.items()}


def installed_version(directory: Path, package: str) -> str | None:
    try:
        version = json.loads((directory / "node_modules" / package / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return str(version).split("+", 1)[0]


def is_installed(directory: Path) -> bool:
    return all(installed_version(directory, name) == want
               for name, want in pinned_versions(directory).items())


def node_binary() -> str:
    path = shutil.which("node")
    if path is None:
        raise V86Error("v86 peer: node not found; install Node.js 20 (the machine image has it; "
                       "Debian's nodejs package also works)")
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
        major = int(out.strip().lstrip("v").split(".")[0])
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        raise V86Error(f"v86 peer: {path} --version failed ({exc}); reinstall Node.js") from None
    if major < NODE_MIN_MAJOR:
        raise V86Error(f"v86 peer: {path} is Node.js {out.strip()}; v86 needs {NODE_MIN_MAJOR} or newer")
    return path


def check_host(bios_dir: Path | None = None) -> str:
    """The node binary, after checking SeaBIOS; raises V86Error naming what is missing."""
    node = node_binary()
    bios_dir = SEABIOS_DIR if bios_dir is None else bios_dir
    for name in BIOS_FILES:
        if not (bios_dir / name).is_file():
            raise V86Error(f"v86 peer: {bios_dir / name}: missing; v86 ships no BIOS, "
                           "install Debian's seabios package (apt-get install seabios; .ci/run does)")
    return node


def ensure_installed(directory: Path | None = None, stream: IO[str] | None = sys.stderr) -> Path:
    """Install the pinned v86 and ws into ``directory/node_modules`` unless already there."""
    directory = directory or peer_dir()
    if is_installed(directory):
        return directory
    npm = shutil.which("npm")
    if npm is None:
        raise V86Error("v86 peer: npm not found; install Node.js with npm (Debian: apt-get install npm)")
    key = hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:12]
    lock_path = Path(tempfile.gettempdir()) / f"pyv86-v86-install-{key}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be installing right now
        if is_installed(directory):
            return directory
        wanted = " ".join(f"{k}@{v}" for k, v in pinned_versions(directory).items())
        if stream is not None:
            print(f"pyv86: installing the v86 peer ({wanted}) with npm in {directory} ...",
                  file=stream, flush=True)
        start = time.monotonic()
        try:
            proc = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--no-package-lock"],
                                  cwd=directory, capture_output=True, text=True,
                                  timeout=INSTALL_TIMEOUT_S, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise V86Error(f"v86 peer: npm install in {directory} took over {INSTALL_TIMEOUT_S} s; "
                           "check the package registry is reachable and retry") from None
        if proc.returncode != 0:
            tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-4:])
            raise V86Error(f"v86 peer: npm install in {directory} failed ({proc.returncode}): {tail}")
        if not is_installed(directory):
            raise V86Error(f"v86 peer: npm install in {directory} finished but node_modules does not "
                           f"hold {wanted}; delete {directory / 'node_modules'} and retry")
        if stream is not None:
            print(f"pyv86: v86 peer installed in {time.monotonic() - start:.1f} s", file=stream, flush=True)
    return directory


def prepare(stream: IO[str] | None = sys.stderr) -> tuple[str, Path]:
    """Everything a boot needs: (node binary, peer folder); raises V86Error otherwise."""
    node = check_host()
    return node, ensure_installed(stream=stream)


# -- one running v86 ----------------------------------------------------------------------------
def runner_command(node: str, directory: Path, kernel: Path, initrd: Path, cmdline: str,
                   memory_mib: int = 128, relay_url: str | None = None, marker: str = READY_MARKER,
                   exit_on_marker: bool = False, timeout_s: float = 0, jit: bool = True) -> list[str]:
    cmd = [node, str(directory / RUNNER), "--bzimage", str(kernel), "--initrd", str(initrd),
           "--cmdline", cmdline, "--memory", str(memory_mib), "--marker", marker,
           "--timeout", str(timeout_s), "--quit-on-eof"]
    if relay_url:
        cmd += ["--relay", relay_url]
    if exit_on_marker:
        cmd.append("--exit-on-marker")
    if not jit:
        cmd.append("--no-jit")
    return cmd


class V86Guest(ShellCommands):
    """A running v86 with the guest image; use as a context manager.

    ``prefix`` is put before the node command (e.g. ``["ip", "netns", "exec", NS]`` to run
    it inside a network namespace). ``marker_figures`` is the runner's report when the
    marker line appeared (wall_s, instructions, user_cpu_s ...), ``exit_figures`` the one
    it printed on exit.
    """

    default_command_timeout_s = 60

    def __init__(self, kernel: Path, initrd: Path, cmdline: str = DEFAULT_CMDLINE,
                 memory_mib: int = 128, relay_url: str | None = None, marker: str = READY_MARKER,
                 jit: bool = True, exit_on_marker: bool = False, timeout_s: float = 0,
                 prefix: Sequence[str] = (), name: str = "v86",
                 install_stream: IO[str] | None = sys.stderr) -> None:
        for path in (kernel, initrd):
            if not Path(path).is_file():
                raise V86Error(f"{path}: no such file; run `pyv86 guest build`")
        node, directory = prepare(install_stream)
        self.name = name
        self.marker = marker
        self.command = list(prefix) + runner_command(
            node, directory, Path(kernel), Path(initrd), cmdline, memory_mib, relay_url, marker,
            exit_on_marker, timeout_s, jit)
        self.marker_figures: dict[str, Any] | None = None
        self.exit_figures: dict[str, Any] | None = None
        self.ready_s: float | None = None
        self.returncode: int | None = None
        self._output = bytearray()
        self._errors: list[str] = []
        self._cond = threading.Condition()
        self._proc: subprocess.Popen[bytes] | None = None
        self._threads: list[threading.Thread] = []
        self.started_at = 0.0

    def __enter__(self) -> V86Guest:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        log.debug("starting %s", " ".join(self.command))
        self.started_at = time.monotonic()
        try:
            self._proc = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            raise V86Error(f"{self.name}: cannot start {self.command[0]}: {exc.strerror}") from None
        self._threads = [threading.Thread(target=self._read_console, daemon=True, name=f"{self.name}-console"),
                         threading.Thread(target=self._read_status, daemon=True, name=f"{self.name}-status")]
        for t in self._threads:
            t.start()

    def _read_console(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        marker = re.compile(rf"^{re.escape(self.marker)}\r?$", re.M)
        while True:
            chunk = os.read(fd, 65536)
            with self._cond:
                if not chunk:
                    self._cond.notify_all()
                    return
                self._output += chunk
                if self.ready_s is None and marker.search(self._output.decode("utf-8", "replace")):
                    self.ready_s = time.monotonic() - self.started_at
                self._cond.notify_all()

    def _read_status(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for raw in self._proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            m = _STATUS_RE.match(line)
            with self._cond:
                if m:
                    try:
                        figures = json.loads(m.group(2))
                    except ValueError:
                        figures = None
                    if m.group(1) == "marker":
                        self.marker_figures = figures
                    else:
                        self.exit_figures = figures
                elif line.strip():
                    log.debug("%s: %s", self.name, line)
                    self._errors = (self._errors + [line])[-20:]
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def output(self) -> str:
        with self._cond:
            return self._output.decode("utf-8", "replace")

    @property
    def stderr_tail(self) -> str:
        with self._cond:
            return " | ".join(self._errors[-6:])

    def _exited(self) -> bool:
        return self._proc is not None and self._proc.poll() is not None and \
            not any(t.is_alive() for t in self._threads)

    def wait_for(self, pattern: str | re.Pattern[str], timeout_s: float, start: int = 0,
                 what: str | None = None) -> re.Match[str]:
        """Wait until ``pattern`` (a literal or a regex) appears in the console at or after
        character ``start``; raises V86Error with the console tail on timeout or exit."""
        regex = pattern if isinstance(pattern, re.Pattern) else re.compile(re.escape(pattern))
        what = what or repr(pattern if isinstance(pattern, str) else regex.pattern)
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                text = self._output.decode("utf-8", "replace")
                m = regex.search(text, start)
                if m:
                    return m
                remaining = deadline - time.monotonic()
                exited = self._exited()
                if remaining <= 0 or exited:
                    tail = "\n".join(text.splitlines()[-12:])
                    why = (f"v86 exited with status {self._proc.returncode if self._proc else '?'}"
                           f" ({self._errors[-1] if self._errors else 'no message'})" if exited
                           else f"not seen within {timeout_s:.0f} s")
                    raise V86Error(f"{self.name}: {what} {why}; console tail:\n{tail}")
                self._cond.wait(min(remaining, 0.5))

    def wait_ready(self, timeout_s: float = 300) -> float:
        """Seconds from process start until the marker line appeared on the console."""
        self.wait_for(re.compile(rf"^{re.escape(self.marker)}\r?$", re.M), timeout_s,
                      what=f"marker line {self.marker!r}")
        with self._cond:
            while self.marker_figures is None and not self._exited():
                self._cond.wait(0.5)  # the runner's figures follow the line within milliseconds
            assert self.ready_s is not None
            return self.ready_s

    def send(self, text: str) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(text.encode())
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise V86Error(f"{self.name}: cannot type into the console, v86 has exited ({exc})") from None

    def wait_exit(self, timeout_s: float) -> int:
        assert self._proc is not None
        try:
            self.returncode = self._proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            raise V86Error(f"{self.name}: v86 still running after {timeout_s:.0f} s") from None
        for t in self._threads:
            t.join(5)
        return self.returncode

    def close(self) -> dict[str, Any] | None:
        """Stop v86 (SIGTERM, then SIGKILL); return the runner's exit figures if it printed them."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            try:
                proc.terminate()
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            except ProcessLookupError:
                pass
        for t in self._threads:
            t.join(5)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        self.returncode = proc.returncode
        return self.exit_figures


# -- the benchmark's view ------------------------------------------------------------------------
def boot_to_marker(kernel: Path, initrd: Path, cmdline: str = DEFAULT_CMDLINE, timeout_s: float = 600,
                   memory_mib: int = 128, jit: bool = True,
                   install_stream: IO[str] | None = sys.stderr) -> dict[str, Any]:
    """Boot once to the marker and return the figures ``benchmarks/boot.py`` prints.

    ``seconds`` is host wall time from process start to the marker line (as for QEMU);
    ``user_cpu_s``/``system_cpu_s`` are the Node.js process's CPU time until then (all its
    threads: v86 compiles wasm on V8's background threads); ``main_thread_cpu_s`` is the
    thread that runs the guest (on an idle machine the wall time is close to it);
    ``cpu_wait_s`` is how long its threads were runnable but waiting for a CPU (a loaded
    host inflates the wall time by about that much); ``instructions`` is v86's own guest
    instruction counter. Never raises: a peer that cannot run says why in ``status``.
    """
    result: dict[str, Any] = {"seconds": None, "instructions": None, "mips": None,
                              "user_cpu_s": None, "system_cpu_s": None, "guest_uptime_s": None}
    try:
        guest = V86Guest(kernel, initrd, cmdline, memory_mib=memory_mib, jit=jit, exit_on_marker=True,
                         timeout_s=timeout_s, install_stream=install_stream)
    except V86Error as exc:
        result["status"] = f"not measured: {exc}"
        return result
    result["command"] = " ".join(guest.command)
    try:
        with guest:
            result["seconds"] = round(guest.wait_ready(timeout_s + 30), 3)
            guest.wait_exit(30)
    except V86Error as exc:
        result["status"] = str(exc).splitlines()[0]
        return result
    figures = guest.marker_figures or {}
    for key in ("instructions", "user_cpu_s", "system_cpu_s", "main_thread_cpu_s", "cpu_wait_s",
                "wall_s", "v86_version", "jit"):
        result[key] = figures.get(key)
    if result["instructions"] and result["seconds"]:
        result["mips"] = round(result["instructions"] / result["seconds"] / 1e6, 2)
    m = re.search(r"pyv86-init: ready after ([0-9.]+) s of guest uptime", guest.output)
    result["guest_uptime_s"] = float(m.group(1)) if m else None
    cpu, main, wait = result["user_cpu_s"], result["main_thread_cpu_s"], result["cpu_wait_s"]
    result["status"] = (f"ok (v86 {result.get('v86_version')}, {'JIT' if jit else 'interpreter'}"
                        + (f", user CPU {cpu:.1f} s" if cpu is not None else "")
                        + (f", main thread {main:.1f} s" if main is not None else "")
                        + (f", {wait:.0f} s waiting for a CPU" if wait is not None else "") + ")")
    return result


def main(argv: list[str] | None = None) -> int:
    import argparse

    from pyv86 import paths

    ap = argparse.ArgumentParser(prog="python -m pyv86.peers.v86",
                                 description="Boot the pyv86 guest image in the real v86 and time it.")
    ap.add_argument("--kernel", type=Path, default=paths.guest_dir() / "vmlinuz")
    ap.add_argument("--initrd", type=Path, default=paths.guest_dir() / "initramfs.cpio.gz")
    ap.add_argument("--cmdline", default=DEFAULT_CMDLINE)
    ap.add_argument("--memory", type=int, default=128, help="MiB (default 128)")
    ap.add_argument("--no-jit", action="store_true", help="v86's interpreter only")
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--install-only", action="store_true", help="install the npm packages and stop")
    args = ap.parse_args(argv)
    try:
        if args.install_only:
            print(prepare()[1])
            return 0
    except V86Error as exc:
        print(exc, file=sys.stderr)
        return 2
    result = boot_to_marker(args.kernel, args.initrd, args.cmdline, args.timeout, args.memory,
                            jit=not args.no_jit)
    print(json.dumps(result, indent=2))
    return 0 if result["seconds"] else 1


if __name__ == "__main__":
    sys.exit(main())
