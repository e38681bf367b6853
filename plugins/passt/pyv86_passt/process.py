"""Running ``passt`` as our child: private socket directory, start, watch its output, stop.

passt is started in the foreground (so the PID we hold is passt's own) with
``--one-off`` (it quits when our connection closes, even if we die without cleaning
up) and a socket in a fresh private directory. Started as root, passt drops to user
``nobody`` before it binds its socket, so the directory then belongs to ``nobody``.
Its output (stdout and stderr) is read on a thread, logged at DEBUG and the last lines
kept for error messages.
"""
from __future__ import annotations

import collections
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

log = logging.getLogger(__name__)

NOT_INSTALLED = "the passt program is not installed; install the Debian package 'passt'"
SOCKET_NAME = "passt.socket"
# passt tries the system logger and, without one, says so on stderr for every line.
_NOISE = ("to syslog",)


class PasstError(OSError):
    """passt cannot be started or reached (one-line message)."""


def find_passt() -> str:
    """The passt executable on PATH, or :class:`PasstError` naming the Debian package."""
    found = shutil.which("passt")
    if found is None:
        raise PasstError(NOT_INSTALLED)
    return found


def describe_status(returncode: int | None) -> str:
    """``exited with status 1`` / ``was killed by signal 9 (SIGKILL)`` / ``is still running``."""
    if returncode is None:
        return "is still running"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown signal"
        return f"was killed by signal {-returncode} ({name})"
    return f"exited with status {returncode}"


class PasstProcess:
    """One passt child at a time; :meth:`start` again after it exits to restart it."""

    def __init__(self, options: list[str], name: str = "passt") -> None:
        self.options = list(options)
        self.name = name
        self.binary = find_passt()
        self.directory = tempfile.mkdtemp(prefix="pyv86-passt-")
        os.chmod(self.directory, 0o700)
        self.socket_path = os.path.join(self.directory, SOCKET_NAME)
        self._chown_for_passt()
        self.proc: subprocess.Popen[bytes] | None = None
        self.output: collections.deque[str] = collections.deque(maxlen=20)
        self._reader: threading.Thread | None = None
        self.starts = 0

    def _chown_for_passt(self) -> None:
        if os.geteuid() != 0:
            return
        try:
            nobody = pwd.getpwnam("nobody")
        except KeyError:
            return
        os.chown(self.directory, nobody.pw_uid, nobody.pw_gid)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def argv(self) -> list[str]:
        return [self.binary, "--foreground", "--one-off", "--socket", self.socket_path,
                *self.options]

    def last_output(self) -> str:
        """passt's last line of output, or a note that it printed nothing."""
        return self.output[-1] if self.output else "(no output)"

    def start(self, timeout: float = 10.0, cancel: threading.Event | None = None) -> socket.socket:
        """Start passt and return a socket connected to it.

        ``cancel`` set while waiting for the socket stops passt and raises :class:`PasstError`.
        """
        if self.proc is not None and self.proc.poll() is None:
            raise PasstError(f"passt (pid {self.proc.pid}) is already running")
        try:
            os.unlink(self.socket_path)
        except FileNotFoundError:
            pass
        self.output.clear()
        try:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, close_fds=True, start_new_session=True)
        except FileNotFoundError:
            raise PasstError(NOT_INSTALLED) from None
        except OSError as exc:
            raise PasstError(f"cannot run {self.binary}: {exc.strerror or exc}") from None
        self.starts += 1
        proc = self.proc
        self._reader = threading.Thread(target=self._read_output, args=(proc,),
                                        name=f"passt-output-{proc.pid}", daemon=True)
        self._reader.start()
        log.debug("%s: started passt (pid %d): %s", self.name, proc.pid, " ".join(self.argv))
        deadline = time.monotonic() + timeout
        last_error: OSError | None = None
        while True:
            if proc.poll() is not None:
                self._reader.join(1.0)
                raise PasstError(f"passt {describe_status(proc.returncode)} before accepting a "
                                 f"connection; it said: {self.last_output()}")
            if os.path.exists(self.socket_path):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.connect(self.socket_path)
                    return sock
                except OSError as exc:
                    sock.close()
                    last_error = exc
            if cancel is not None and cancel.is_set():
                self.stop()
                raise PasstError("start of passt cancelled")
            if time.monotonic() >= deadline:
                self.stop()
                why = f" ({last_error.strerror})" if last_error is not None else ""
                if os.geteuid() == 0:
                    why += (f"; started as root, passt runs as user nobody, which must be able "
                            f"to reach {self.directory} (check TMPDIR)")
                raise PasstError(f"passt did not open its socket {self.socket_path} within "
                                 f"{timeout:g} s{why}; it said: {self.last_output()}")
            time.sleep(0.01)

    def _read_output(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            if not line.strip() or any(n in line for n in _NOISE):
                continue
            self.output.append(line.strip())
            log.debug("%s: passt[%d]: %s", self.name, proc.pid, line)
        proc.stdout.close()

    def wait(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` s for passt to exit; its return code or None."""
        if self.proc is None:
            return None
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        if self._reader is not None:
            self._reader.join(1.0)
        return code

    def stop(self, grace: float = 2.0) -> int | None:
        """Terminate passt (SIGTERM, then SIGKILL after ``grace`` s); its return code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            try:
                proc.terminate()
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(grace)
            except ProcessLookupError:
                pass
        if self._reader is not None:
            self._reader.join(1.0)
        return proc.returncode

    def cleanup(self) -> None:
        """Stop passt and remove the private directory."""
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
