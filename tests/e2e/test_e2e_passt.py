"""Issue 9 end to end: a real Linux guest on ``passt:`` (user-mode networking).

passt runs confined to a namespace the test creates (a ``passt`` wrapper first on PATH
runs it through ``ip netns exec``), so the guest can reach nothing but that namespace's
loopback, where the test's HTTP server listens. The guest gets its address from passt's
DHCP, downloads 4 MB through passt's gateway mapping and checks the sha256 (no frame may be lost
on the way: the NIC's full ring holds passt back, see pyv86.net.port); a port
forward lets a client in the namespace reach busybox ``httpd`` in the guest; killing
passt is logged and the guest keeps running.
"""
from __future__ import annotations

import hashlib
import http.server
import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

import e2e_net as net
from e2e_netns import Lan

pytestmark = [pytest.mark.linux, pytest.mark.timeout(1500)]  # the first one may boot (~5 min)

GATEWAY = "192.168.77.1"
FORWARD = 18080
BLOB = 4 << 20


@pytest.fixture
def passt_ns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lan]:
    lan = Lan(tmp_path, dhcp=False)
    try:
        monkeypatch.setenv("PATH", f"{lan.passt_wrapper()}{os.pathsep}{os.environ.get('PATH', '')}")
        yield lan
    finally:
        lan.close()


@pytest.fixture
def http_server(passt_ns: Lan, tmp_path: Path) -> Iterator[tuple[int, str]]:
    """An HTTP server on the namespace's 127.0.0.1 serving a 4 MB random file."""
    data = os.urandom(BLOB)
    (tmp_path / "blob").write_bytes(data)
    folder = str(tmp_path)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, directory=folder, **kw)

        def log_message(self, *args: Any) -> None:
            pass

    server = passt_ns.run_in(lambda: http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], hashlib.sha256(data).hexdigest()
    finally:
        server.shutdown()
        server.server_close()


def _passt_guest(guests: Any) -> Any:
    guest = guests.restore("passt", f"passt:?tcp={FORWARD}:80&ip=4", preserve_mac=True)
    lease = net.udhcpc(guest)
    assert lease == "192.168.77.2", f"passt's DHCP gave {lease}, expected the namespace's address"
    return guest


def test_guest_on_passt_downloads_4mb_from_loopback(guests: Any, passt_ns: Lan,
                                                   http_server: tuple[int, str]) -> None:
    port, digest = http_server
    guest = _passt_guest(guests)
    t0 = time.monotonic()
    try:
        out = guest.sh(f"wget -q -O - http://{GATEWAY}:{port}/blob | sha256sum", timeout=240)
    except Exception as exc:
        raise AssertionError(f"{exc}\nflow: {_flow_counters(guest)}") from None
    took = time.monotonic() - t0
    assert out.split()[0] == digest, f"downloaded data differs: {out!r}"
    lost = _frames_lost(guest)
    assert lost == 0, f"{lost} frames from passt were dropped on the way to the guest: {_flow_counters(guest)}"
    logging.getLogger(__name__).warning("passt download: %.1f MB in %.1f s (%.2f MB/s); %s",
                                        BLOB / 1e6, took, BLOB / 1e6 / took, _flow_counters(guest))


def _frames_lost(guest: Any) -> int:
    backend = guest.machine.netdevs["lan"]
    lost = backend.counters.rx_unclaimed
    for dev in guest.machine.devices.values():
        port = getattr(dev, "port", None)
        if port is not None and getattr(port, "backend", None) is backend:
            lost += port.counters.rx_queue_drops + port.counters.rx_nic_drops
    return lost


def _flow_counters(guest: Any) -> str:
    """Where frames went between passt and the guest (drops here mean lost back-pressure)."""
    backend = guest.machine.netdevs["lan"]
    parts = [f"passt {backend.counters}"]
    for dev in guest.machine.devices.values():
        port = getattr(dev, "port", None)
        if port is not None and getattr(port, "backend", None) is backend:
            parts.append(f"port {port.counters.as_dict()}")
            stats = getattr(getattr(dev, "chip", None), "stats", None)
            if stats is not None:
                parts.append(f"chip {stats}")
    return "; ".join(parts)


def test_guest_on_passt_serves_a_port_forward_and_survives_passt_dying(
        guests: Any, passt_ns: Lan, caplog: pytest.LogCaptureFixture) -> None:
    guest = _passt_guest(guests)
    guest.sh("mkdir -p /tmp/www && echo hello-from-the-guest > /tmp/www/index.html && "
             "httpd -p 80 -h /tmp/www")

    def fetch() -> bytes:
        with socket.create_connection(("127.0.0.1", FORWARD), timeout=30) as sock:
            sock.sendall(b"GET /index.html HTTP/1.0\r\nHost: guest\r\n\r\n")
            data = b""  # read until the body is there (EOF may come later)
            while b"hello-from-the-guest" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            return data

    reply = passt_ns.run_in(fetch)
    assert reply.startswith(b"HTTP/1.") and b"hello-from-the-guest" in reply, reply[:300]

    backend = guest.machine.netdevs["lan"]
    caplog.set_level(logging.WARNING)
    pid = backend.pid
    os.kill(pid, signal.SIGKILL)
    end = time.monotonic() + 20
    while not any(f"pid {pid}" in r.getMessage() and "killed" in r.getMessage() for r in caplog.records):
        assert time.monotonic() < end, f"no log line about the killed passt (pid {pid}): {caplog.text}"
        time.sleep(0.2)
    assert guest.sh("echo still-running").strip() == "still-running"
