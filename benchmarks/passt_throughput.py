"""passt throughput: MB/s and frames/s of a TCP download through the ``passt:`` backend.

A server on the host's loopback sends N MB over one TCP connection. The client is a
frame-level stand-in for a guest: it sits on the machine thread behind the ``passt:``
backend (a CPU-less machine) and answers passt with hand-built ACKs (MSS 1460, so
every data frame is a full 1514-byte Ethernet frame; window scaling on). That measures
what the backend and passt can carry, an upper bound for any guest; the peer measured in
the same run is a plain socket reading the same server directly over loopback. The
download's sha256 is checked.

``guest_mb_per_s`` is the real thing: the e2e Linux guest (ne2k-pci, restored from the
state image the e2e tests cache; null with the reason when there is none) runs
``wget`` of ``--guest-mb`` MB from an HTTP server on the namespace's loopback, through
passt's gateway mapping; its sha256 is checked in the guest.

passt runs confined to a network namespace this script creates and removes (root and
iproute2 needed), so it can reach nothing but that namespace's loopback.

    python benchmarks/passt_throughput.py            # human-readable figures
    python benchmarks/passt_throughput.py --json     # one JSON object
    python benchmarks/passt_throughput.py --mb 64 --guest-mb 8
"""
from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable

import attrs

from pyv86.testing.frames import checksum

CLONE_NEWNET = 0x40000000
GUEST_MAC = bytes.fromhex("525400beef01")
GUEST_IP = socket.inet_aton("10.0.2.15")
GATEWAY_IP = socket.inet_aton("10.0.2.2")
PORT = 18500


# -- a sealed namespace for passt ------------------------------------------------------------
class Sandbox:
    def __init__(self) -> None:
        self.name = f"pyv86-passt-bench-{os.getpid()}"
        self.bindir = tempfile.mkdtemp(prefix="pyv86-passt-bench-")
        self._libc = ctypes.CDLL(None, use_errno=True)

    def __enter__(self) -> Sandbox:
        ip = ["ip", "-n", self.name]
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        for cmd in (["link", "set", "lo", "up"], ["link", "add", "pv0", "type", "veth", "peer", "name", "pv1"],
                    ["addr", "add", "192.168.77.2/24", "dev", "pv0"], ["link", "set", "pv0", "up"],
                    ["link", "set", "pv1", "up"], ["route", "add", "default", "via", "192.168.77.1"]):
            subprocess.run(ip + cmd, check=True)
        real = shutil.which("passt")
        with open(os.path.join(self.bindir, "passt"), "w") as f:
            f.write(f'#!/bin/sh\nexec ip netns exec {self.name} {real} "$@"\n')
        os.chmod(os.path.join(self.bindir, "passt"), 0o755)
        os.environ["PATH"] = self.bindir + os.pathsep + os.environ["PATH"]
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
        shutil.rmtree(self.bindir, ignore_errors=True)

    def in_netns(self, fn: Callable[[], Any]) -> Any:
        out: list[Any] = []

        def body() -> None:
            fd = os.open(f"/var/run/netns/{self.name}", os.O_RDONLY)
            self._libc.setns(fd, CLONE_NEWNET)
            os.close(fd)
            out.append(fn())

        t = threading.Thread(target=body)
        t.start()
        t.join()
        return out[0]


def serve(listener: socket.socket, payload: bytes, count: int) -> None:
    for _ in range(count):
        conn, _ = listener.accept()
        conn.sendall(payload)
        conn.close()


# -- the frame-level downloader ---------------------------------------------------------------
class Downloader:
    """One TCP connection to GATEWAY:PORT, acknowledging everything in order (machine thread)."""

    def __init__(self, backend: Any, gw_mac: bytes) -> None:
        self.backend, self.gw_mac = backend, gw_mac
        self.sport = 40500
        self.seq = 1000
        self.ack = 0
        self.data = bytearray()
        self.frames = 0
        self.done = threading.Event()
        self.unacked = 0

    def segment(self, flags: int, options: bytes = b"") -> None:
        off = (20 + len(options)) // 4
        tcp = struct.pack("!HHIIBBHHH", self.sport, PORT, self.seq, self.ack, off << 4, flags,
                          0xFFFF, 0, 0) + options
        pseudo = GUEST_IP + GATEWAY_IP + struct.pack("!BBH", 0, 6, len(tcp))
        tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
        iph = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, GUEST_IP, GATEWAY_IP)
        iph = iph[:10] + struct.pack("!H", checksum(iph)) + iph[12:]
        self.backend.send(self.gw_mac + GUEST_MAC + b"\x08\x00" + iph + tcp)

    def start(self) -> None:
        # MSS 1460, window scale 10 (window 64 MB): passt is never window-limited
        self.segment(0x02, bytes([2, 4, 0x05, 0xB4, 1, 3, 3, 10]))

    def receive(self, frame: bytes) -> None:
        if frame[12:14] != b"\x08\x00" or frame[23] != 6:
            return
        ihl = (frame[14] & 0x0F) * 4
        total = struct.unpack("!H", frame[16:18])[0]
        t = frame[14 + ihl : 14 + total]
        sport, dport, seq, _ack, off, flags = struct.unpack("!HHIIBB", t[:14])
        if (sport, dport) != (PORT, self.sport):
            return
        payload = t[(off >> 4) * 4 :]
        self.frames += 1
        if flags & 0x12 == 0x12:                         # SYN-ACK
            self.seq += 1
            self.ack = (seq + 1) & 0xFFFFFFFF
            self.segment(0x10)
            return
        if payload:
            if seq == self.ack:
                self.data += payload
                self.ack = (self.ack + len(payload)) & 0xFFFFFFFF
                self.unacked += 1
            else:
                self.unacked = 2                         # out of step: say where we are now
        if flags & 0x01:                                 # FIN
            self.ack = (self.ack + 1) & 0xFFFFFFFF
            self.segment(0x11)
            self.done.set()
            return
        # ACK every second segment, and at once after a short or pushed one (the end of a
        # burst): a receiver that leaves data unacknowledged waits for passt's retransmit timer
        if self.unacked >= 2 or (payload and (len(payload) < 1460 or flags & 0x08)):
            self.unacked = 0
            self.segment(0x10)


def run_passt(sandbox: Sandbox, listener: socket.socket, payload: bytes) -> dict[str, Any]:
    from pyv86.machine import Machine
    from pyv86_passt.backend import PasstBackend

    machine = Machine(1 << 20, clock_mode="realtime")
    backend = PasstBackend("passt:?address=10.0.2.15&gateway=10.0.2.2&netmask=24&ip=4", machine)
    machine.netdevs["lan"] = backend
    arp_reply = threading.Event()
    gw: list[bytes] = []
    dl: list[Downloader] = []

    def receiver(frame: bytes) -> None:
        if dl:
            dl[0].receive(frame)
        elif frame[12:14] == b"\x08\x06" and frame[20:22] == b"\x00\x02":
            gw.append(frame[22:28])
            arp_reply.set()

    backend.set_receiver(receiver)
    thread = threading.Thread(target=machine.run, daemon=True)
    thread.start()
    arp = (b"\xff" * 6 + GUEST_MAC + b"\x08\x06" + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)
           + GUEST_MAC + GUEST_IP + b"\0" * 6 + GATEWAY_IP)
    machine.call_soon_threadsafe(lambda: backend.send(arp))
    if not arp_reply.wait(5):
        raise SystemExit("passt_throughput: passt did not answer ARP for the gateway")
    down = Downloader(backend, gw[0])
    t0 = time.perf_counter()
    machine.call_soon_threadsafe(lambda: (dl.append(down), down.start()))
    finished = down.done.wait(120)
    elapsed = time.perf_counter() - t0
    machine.stop("benchmark over")
    thread.join(5)
    machine.shutdown()
    if not finished:
        raise SystemExit(f"passt_throughput: download stalled after {len(down.data)} of {len(payload)} bytes")
    ok = hashlib.sha256(down.data).digest() == hashlib.sha256(payload).digest()
    return {"seconds": elapsed, "mb_per_s": len(payload) / elapsed / 1e6,
            "frames_per_s": down.frames / elapsed, "frames": down.frames, "sha256_ok": ok,
            "counters": attrs.asdict(backend.counters)}


def run_direct(sandbox: Sandbox, payload: bytes) -> dict[str, Any]:
    sock = sandbox.in_netns(lambda: socket.socket())
    t0 = time.perf_counter()
    sock.connect(("127.0.0.1", PORT))
    got = bytearray()
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        got += chunk
    elapsed = time.perf_counter() - t0
    sock.close()
    return {"seconds": elapsed, "mb_per_s": len(payload) / elapsed / 1e6,
            "sha256_ok": hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()}


def serve_http(listener: socket.socket, payload: bytes) -> None:
    """One HTTP/1.0 response carrying ``payload`` to whatever request comes."""
    conn, _ = listener.accept()
    with conn:
        request = b""
        while b"\r\n\r\n" not in request:
            chunk = conn.recv(4096)
            if not chunk:
                return
            request += chunk
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(payload) + payload)


def run_guest(sandbox: Sandbox, mb: int) -> tuple[dict[str, Any] | None, str]:
    """wget in the e2e Linux guest through passt; (figures, "") or (None, why not)."""
    e2e = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests", "e2e")
    sys.path.insert(0, os.path.normpath(e2e))
    import e2e_image
    import e2e_net

    image = e2e_image.image_path()
    if not image.exists():
        return None, f"no cached e2e guest image {image} (running tests/e2e once makes it)"
    from pyv86.plugins.manager import create_plugin_manager
    from pyv86.testing.guest import GuestMachine

    payload = os.urandom(mb * 1_000_000)
    listener = sandbox.in_netns(lambda: socket.socket())
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", PORT + 1))
    listener.listen(1)
    threading.Thread(target=serve_http, args=(listener, payload), daemon=True).start()
    plugins = create_plugin_manager(autoload=True, environ={})
    plugins.collect()
    tmp = tempfile.mkdtemp(prefix="pyv86-passt-bench-guest-")
    guest = GuestMachine.from_toml(e2e_image.machine_text("bench", "passt:?ip=4"), plugins=plugins,
                                   name="bench", base_dir=tmp)
    try:
        guest.restore(image, preserve_mac=True)
        guest.start()
        e2e_net.udhcpc(guest)
        t0 = time.perf_counter()
        out = guest.sh(f"wget -q -O - http://192.168.77.1:{PORT + 1}/blob | sha256sum", timeout=900)
        elapsed = time.perf_counter() - t0
        backend = guest.machine.netdevs["lan"]
        port = guest.machine.devices["net0"].port  # type: ignore[attr-defined]
        result = {"seconds": elapsed, "mb_per_s": len(payload) / elapsed / 1e6,
                  "sha256_ok": out.split()[:1] == [hashlib.sha256(payload).hexdigest()],
                  "rx_frames": backend.counters.rx_frames,
                  "rx_dropped": port.counters.rx_queue_drops + port.counters.rx_nic_drops,
                  "rx_pauses": port.counters.rx_pauses}
    finally:
        guest.close()
        listener.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return result, ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--mb", type=int, default=16, help="download size in MB (default 16)")
    parser.add_argument("--guest-mb", type=int, default=4,
                        help="download size in MB for the Linux guest (default 4; 0 skips it)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("passt") is None:
        print("passt_throughput: needs root, iproute2 and passt (it confines passt to a network "
              "namespace)", file=sys.stderr)
        return 2
    payload = os.urandom(args.mb * 1_000_000)
    with Sandbox() as sandbox:
        listener = sandbox.in_netns(lambda: socket.socket())
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", PORT))
        listener.listen(2)
        threading.Thread(target=serve, args=(listener, payload, 2), daemon=True).start()
        if not args.json:
            print(f"downloading {args.mb} MB from a loopback server...", file=sys.stderr)
        direct = run_direct(sandbox, payload)
        through = run_passt(sandbox, listener, payload)
        listener.close()
        if args.guest_mb > 0:
            if not args.json:
                print(f"downloading {args.guest_mb} MB in the Linux guest...", file=sys.stderr)
            guest, guest_reason = run_guest(sandbox, args.guest_mb)
        else:
            guest, guest_reason = None, "skipped (--guest-mb 0)"
    out = {
        "benchmark": "passt_throughput",
        "mb": args.mb,
        "passt_frame_level": through,
        "direct_loopback": direct,
        "ratio_passt_to_direct": through["mb_per_s"] / direct["mb_per_s"],
        "guest_mb_per_s": guest["mb_per_s"] if guest else None,
        "guest": guest,
        "guest_reason": guest_reason,
    }
    if args.json:
        print(json.dumps(out))
    else:
        print(f"passt backend, frame-level TCP download: {through['mb_per_s']:8.1f} MB/s "
              f"({through['frames_per_s']:,.0f} frames/s, sha256 {'ok' if through['sha256_ok'] else 'MISMATCH'})")
        print(f"direct loopback socket (peer):           {direct['mb_per_s']:8.1f} MB/s")
        print(f"ratio passt/direct:                      {out['ratio_passt_to_direct']:8.3f}")
        if guest:
            print(f"Linux guest wget through passt (ne2k):   {guest['mb_per_s']:8.2f} MB/s "
                  f"({guest['rx_frames']:,} frames, {guest['rx_dropped']} dropped, "
                  f"sha256 {'ok' if guest['sha256_ok'] else 'MISMATCH'})")
        else:
            print(f"Linux guest wget through passt:          n/a ({guest_reason})")
    ok = through["sha256_ok"] and direct["sha256_ok"] and (guest is None or guest["sha256_ok"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
