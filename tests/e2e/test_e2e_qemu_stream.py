"""A pyv86 guest and a QEMU guest on one link, through QEMU's own socket netdevs.

``qemu-system-i386`` (TCG, its ``ne2k_pci``, the same guest image) and a pyv86 guest are
joined three ways: pyv86 listens on ``stream:`` and QEMU connects with ``-netdev stream``;
QEMU listens with the older ``-netdev socket,listen=`` and pyv86 connects; UDP, pyv86's
``dgram:`` against QEMU's ``-netdev dgram``; and through ``pyv86 relay serve
--qemu-stream``, pyv86 as a WebSocket client and QEMU as a stream peer of the same switch. Both Linux guests use their ne2k-pci drivers;
each time they ping each other both ways and move a file over TCP whose checksum must
match on the other side. Every socket is on loopback.

Needs the guest image (``pyv86 guest build``) and qemu-system-x86 (.ci/run installs it).
"""
from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest

import e2e_net as net
from pyv86 import paths
from pyv86.boot.linux import DEFAULT_CMDLINE
from pyv86.guest.qemu import QemuError, QemuGuest, qemu_binary

pytestmark = [pytest.mark.linux, pytest.mark.timeout(1500)]

IP_PYV86, IP_QEMU = "10.0.2.15", "10.0.2.16"
QEMU_MAC = "52:54:00:12:34:77"
QEMU_READY_S = 600


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def qemu_guest(netdev: str) -> QemuGuest:
    try:
        qemu_binary()
    except QemuError as exc:
        pytest.fail(str(exc))
    guest = paths.guest_dir()
    kernel, initrd = guest / "vmlinuz", guest / "initramfs.cpio.gz"
    if not kernel.is_file():
        pytest.fail(f"no guest image in {guest}: run `pyv86 guest build`")
    # pyv86's command line without the TSC rate, which holds only for pyv86's virtual TSC
    cmdline = " ".join(w for w in DEFAULT_CMDLINE.split() if not w.startswith(("tsc_early_khz=", "tsc=")))
    return QemuGuest(kernel, initrd, cmdline, netdev=netdev, mac=QEMU_MAC)


def qemu_sh(q: QemuGuest, command: str, timeout: float = 120) -> str:
    out, status = q.run(command, timeout)
    assert status == 0, f"QEMU guest: {command!r} exited {status}:\n{out[-800:]}"
    return out


DATA_SEGMENTS = -(-256 * 1024 // 1460)  # frames pyv86 must send: 256 KiB at most 1460 per segment
SOME_ACKS = 20  # frames QEMU must send back: pings and ACKs, however it paces them


def links(mode: str, relay: Any = None) -> tuple[str, str]:
    """(pyv86 netdev URL, QEMU -netdev spec) for one way of joining them."""
    if mode == "relay":
        host, port = relay.qemu_stream
        return relay.url, f"stream,server=off,addr.type=inet,addr.host={host},addr.port={port}"
    port = free_port()
    if mode == "stream":
        return (f"stream:127.0.0.1:{port}?server=on",
                f"stream,server=off,addr.type=inet,addr.host=127.0.0.1,addr.port={port}")
    if mode == "socket-listen":
        return f"stream:127.0.0.1:{port}", f"socket,listen=127.0.0.1:{port}"
    other = free_port()
    return (f"dgram:127.0.0.1:{port}?remote=127.0.0.1:{other}",
            f"dgram,local.type=inet,local.host=127.0.0.1,local.port={other},"
            f"remote.type=inet,remote.host=127.0.0.1,remote.port={port}")


@pytest.fixture
def relay() -> Any:
    from pyv86_relay_ws.server import RelayServer  # plugins/relay_ws (installed by `make test`)

    server = RelayServer(port=0, qemu_stream="127.0.0.1:0").start()
    yield server
    server.stop()


@pytest.mark.parametrize("mode", ["stream", "socket-listen", "dgram", "relay"])
def test_pyv86_and_qemu_guests_talk_over_qemus_socket_netdevs(module_guests: Any, mode: str,
                                                              request: pytest.FixtureRequest) -> None:
    url, netdev = links(mode, request.getfixturevalue("relay") if mode == "relay" else None)
    a = module_guests.restore(f"a-{mode}", url)
    net.reload_driver(a, "modprobe", f"{IP_PYV86}/24")
    with qemu_guest(netdev) as q:
        q.wait_ready(QEMU_READY_S)
        qemu_sh(q, f"ip -4 addr flush dev eth0; ip addr add {IP_QEMU}/24 dev eth0 && ip link set eth0 up")
        backend = a.machine.netdevs["lan"]
        if mode not in ("dgram", "relay"):
            deadline = time.monotonic() + 30
            while not backend.connected:
                assert time.monotonic() < deadline, f"QEMU and pyv86 never connected: {backend.stats}"
                time.sleep(0.1)

        net.ping(a, IP_QEMU, count=2)
        out = qemu_sh(q, f"ping -c 2 -W 5 {IP_PYV86}")
        assert "2 packets received" in out, out

        # 256 KiB of random bytes from pyv86 to QEMU over TCP; the checksums must agree
        received: dict[str, str] = {}

        def receive() -> None:
            received["out"] = qemu_sh(q, "nc -l -p 5001 > /tmp/got && md5sum /tmp/got", timeout=300)

        listener = threading.Thread(target=receive, daemon=True)
        listener.start()
        sent = a.sh("dd if=/dev/urandom of=/tmp/sent bs=1k count=256 2>/dev/null && md5sum /tmp/sent "
                    f"&& until nc {IP_QEMU} 5001 < /tmp/sent; do sleep 1; done", timeout=300)
        listener.join(300)
        assert "out" in received, "the QEMU guest's nc never finished"
        digest = sent.split()[0]
        assert len(digest) == 32 and digest in received["out"], (sent, received["out"])
        if mode == "relay":
            ports = request.getfixturevalue("relay").stats["ports"]
            assert sorted(p["wire"] for p in ports) == ["qemu-stream", "ws"], ports
            by_wire = {p["wire"]: p for p in ports}
            # the data frames from pyv86 are counted exactly; the ACKs coming back depend on
            # the receiver's delayed ACKs and its pacing, so only some are required
            assert by_wire["ws"]["rx_frames"] >= DATA_SEGMENTS, ports
            assert by_wire["qemu-stream"]["rx_frames"] >= SOME_ACKS, ports
            return
        stats = backend.stats
        assert stats["tx_frames"] >= DATA_SEGMENTS and stats["rx_frames"] >= SOME_ACKS, stats
        assert stats["rx_runt"] == stats["rx_oversize"] == 0, stats
