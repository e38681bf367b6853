"""Relay throughput: frames/s and MB/s through ``pyv86 relay serve`` with many loopback clients.

Each relay runs in a child process; a load process opens raw WebSocket clients on
loopback in pairs (each sender talks unicast to its partner, whose MAC the switch has
learned) and counts what arrives. The peer baseline is a trivial relay written here on
the ``websockets`` asyncio server: every message goes to every other client (a hub, the
model most public relays follow, with no throttle). The same load runs against both.

Guest TCP (busybox ``nc`` + ``dd`` between two booted Linux guests, the driver of
``benchmarks/net_throughput.py --guest``): over the relay, both guests are clients of a
``pyv86 relay serve`` on loopback; over TAP, both run inside a network namespace this
benchmark creates and removes, each on its own ``tap:`` device on a bridge there. The peer
of the relay figure (unless ``--no-v86``) is the same transfer between two real v86
instances (``network_relay_url``) on the same kind of relay. A figure is null with a reason
when it cannot be measured (no guest image, not root, no Node.js, ...).

    python benchmarks/relay.py            # human-readable figures
    python benchmarks/relay.py --json     # one JSON object
    python benchmarks/relay.py --pairs 25 --seconds 3
    python benchmarks/relay.py --no-guest        # server figures only (no Linux guests)
    python benchmarks/relay.py --no-v86 --runs 3 # medians of 3 guest TCP runs each

Single guest TCP runs of the same code range over about ±15 % (TCP's dynamics with two busy
guests on a 2-core machine); compare medians of several runs.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import multiprocessing as mp
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

TARGET_FRAMES_PER_S = 50_000
TARGET_RELAY_TCP_MB_PER_S = 5.0
V86_TRANSFER_TIMEOUT_S = 240


# -- relays under test (child processes) ----------------------------------------------------
def _serve_ours(port_q: Any, queue_bytes: int) -> None:
    from pyv86_relay_ws.server import RelayLimits, RelayServer

    server = RelayServer("127.0.0.1", 0, limits=RelayLimits(queue_bytes=queue_bytes, max_clients=4096,
                                                            idle_timeout=0))

    async def main() -> None:
        await server.open()
        port_q.put(server.port)
        await server.serve_until_stopped()

    asyncio.run(main())


def _serve_hub(port_q: Any) -> None:
    """The peer baseline: a broadcast relay in a dozen lines on websockets."""
    from websockets.asyncio.server import serve

    clients: set[Any] = set()

    async def handler(ws: Any) -> None:
        clients.add(ws)
        try:
            async for msg in ws:
                for other in list(clients):
                    if other is not ws:
                        try:
                            await other.send(msg)
                        except Exception:  # noqa: BLE001
                            pass
        finally:
            clients.discard(ws)

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0, compression=None, max_queue=None,
                         ping_interval=None) as srv:
            port_q.put(srv.sockets[0].getsockname()[1])
            await asyncio.Future()

    asyncio.run(main())


def start_relay(kind: str, queue_bytes: int) -> tuple[Any, int]:
    ctx = mp.get_context("fork")
    port_q = ctx.Queue()
    target, args = (_serve_ours, (port_q, queue_bytes)) if kind == "pyv86" else (_serve_hub, (port_q,))
    proc = ctx.Process(target=target, args=args, daemon=True)
    proc.start()
    port = port_q.get(timeout=30)
    return proc, port


# -- raw WebSocket load clients ------------------------------------------------------------
def ws_connect(port: int) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                  "\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("relay closed the connection during the handshake")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    if b" 101 " not in head.split(b"\r\n")[0]:
        raise ConnectionError(f"handshake refused: {head.splitlines()[0]!r}")
    return sock, rest


def masked(payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        header = bytes((0x82, 0x80 | n))
    else:
        header = struct.pack("!BBH", 0x82, 0x80 | 126, n)
    return header + b"\0\0\0\0" + payload  # zero mask: payload goes as is


def wire_size(n: int) -> int:
    return n + (2 if n < 126 else 4)


def mac(i: int) -> bytes:
    return bytes((0x02, 0x00, 0x00, 0x00, i >> 8, i & 0xFF))


def run_load(port: int, pairs: int, frame_size: int, seconds: float) -> dict[str, Any]:
    """``pairs`` senders blast unicast frames at their partners; count what arrives.

    Frames have one size, so a receiver finds each frame's source MAC at a fixed stride
    and counts only its partner's frames.
    """
    senders, receivers = [], []
    for i in range(pairs):
        senders.append(ws_connect(port)[0])
        receivers.append(ws_connect(port)[0])
    # Every receiver announces its MAC (a broadcast) so the switch learns where it lives.
    for i, (sock) in enumerate(receivers):
        sock.sendall(masked(b"\xff" * 6 + mac(2 * i + 1) + b"\x08\x06" + b"\0" * 46))
    time.sleep(0.5)
    for sock in senders + receivers:
        sock.setblocking(False)
        try:
            while sock.recv(1 << 20):
                pass
        except BlockingIOError:
            pass
        sock.setblocking(True)
    stop = threading.Event()
    received = [0] * pairs
    counting = threading.Event()

    def send(i: int) -> None:
        frame = mac(2 * i + 1) + mac(2 * i) + b"\x08\x00" + bytes(frame_size - 14)
        chunk = masked(frame) * max(1, 65536 // (frame_size + 8))
        sock = senders[i]
        try:
            while not stop.is_set():
                sock.sendall(chunk)
        except OSError:
            pass

    def recv(i: int) -> None:
        """Count the frames from this receiver's partner (a hub also delivers everyone else's)."""
        sock = receivers[i]
        sock.settimeout(0.2)
        stride = wire_size(frame_size)
        offset = (stride - frame_size) + 11  # last byte of the source MAC
        want = bytes((mac(2 * i)[5],))
        pending = b""
        while not stop.is_set():
            try:
                data = sock.recv(1 << 20)
            except socket.timeout:
                continue
            except OSError:
                return
            if not data:
                return
            buf = pending + data if pending else data
            whole = len(buf) - len(buf) % stride
            pending = buf[whole:]
            if counting.is_set():
                received[i] += buf[offset:whole:stride].count(want)

    def drain(i: int) -> None:
        sock = senders[i]
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                if not sock.recv(1 << 20):
                    return
            except socket.timeout:
                continue
            except OSError:
                return

    threads = [threading.Thread(target=send, args=(i,), daemon=True) for i in range(pairs)]
    threads += [threading.Thread(target=recv, args=(i,), daemon=True) for i in range(pairs)]
    threads += [threading.Thread(target=drain, args=(i,), daemon=True) for i in range(pairs)]
    for t in threads:
        t.start()
    time.sleep(0.5)  # warm up
    counting.set()
    t0 = time.perf_counter()
    time.sleep(seconds)
    counting.clear()
    elapsed = time.perf_counter() - t0
    stop.set()
    for sock in senders + receivers:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()
    for t in threads:
        t.join(2.0)
    frames = sum(received)
    return {"frames_per_s": frames / elapsed, "mb_per_s": frames * frame_size / elapsed / 1e6,
            "frame_size": frame_size, "clients": 2 * pairs, "seconds": round(elapsed, 2)}


def measure(kind: str, pairs: int, frame_size: int, seconds: float, queue_bytes: int) -> dict[str, Any]:
    proc, port = start_relay(kind, queue_bytes)
    try:
        return run_load(port, pairs, frame_size, seconds)
    finally:
        proc.kill()
        proc.join(5)


def _net_throughput() -> Any:
    """benchmarks/net_throughput.py, whose guest-pair TCP driver both figures reuse."""
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    import net_throughput

    return net_throughput


@contextlib.contextmanager
def _relay_server() -> Iterator[dict[str, Any]]:
    """``pyv86 relay serve`` on a free loopback port; yields ``{"url": ws://...}``. On the way
    out it asks the relay for its counters (SIGUSR1), stops it and adds them as ``"counters"``."""
    served: dict[str, Any] = {}
    relay = subprocess.Popen([sys.executable, "-m", "pyv86.cli", "relay", "serve", "--host", "127.0.0.1",
                              "--port", "0"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        line = relay.stderr.readline() if relay.stderr else ""
        found = re.search(r"serving (ws://127\.0\.0\.1:\d+/)", line)
        if not found:
            raise RuntimeError(f"pyv86 relay serve did not start: {line.strip()!r}")
        served["url"] = found.group(1)
        yield served
        relay.send_signal(signal.SIGUSR1)  # the relay prints its counters (drops) on stderr
        time.sleep(0.5)
    finally:
        relay.terminate()
        try:
            _out, err = relay.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            relay.kill()
            _out, err = relay.communicate()
        lines = [x.strip() for x in (err or "").splitlines()[1:] if x.strip()]
        if lines:
            served["counters"] = lines[-1][:400]


def guest_tcp_relay(megabytes: int, timeout: float, breakdown: bool = False) -> dict[str, Any]:
    """Two Linux guests as clients of ``pyv86 relay serve`` on loopback; busybox nc + dd between them."""
    served: dict[str, Any] = {}
    try:
        with _relay_server() as served:
            url = served["url"]
            result = _net_throughput().guest_pair_tcp(url, url, megabytes, timeout, breakdown=breakdown)
    except RuntimeError as exc:
        return {"mb_per_s": None, "reason": str(exc)}
    if "counters" in served:
        result["relay_counters"] = served["counters"]
    return result


def v86_tcp_relay(megabytes: int, timeout: float) -> dict[str, Any]:
    """The peer: the same guests and commands in two real v86 instances (``network_relay_url``)
    on the same ``pyv86 relay serve``."""
    from pyv86.peers.v86 import V86Error, V86Guest, check_host

    try:
        check_host()
    except V86Error as exc:
        return {"mb_per_s": None, "reason": str(exc)}
    nt = _net_throughput()
    kernel, initrd = nt.guest_image()
    if not kernel.exists():
        return dict(nt.NO_GUEST_IMAGE)
    served: dict[str, Any] = {}
    try:
        with _relay_server() as served:
            url = served["url"]
            with V86Guest(kernel, initrd, nt.peer_cmdline(), relay_url=url, name="v86-rx") as rx, \
                    V86Guest(kernel, initrd, nt.peer_cmdline(), relay_url=url, name="v86-tx") as tx:
                rx.wait_ready(timeout)
                tx.wait_ready(timeout)
                # v86 drops frames when its receive ring is full (~200 TCP retransmissions per
                # 8 MB), and now and then its transfer stalls for minutes (2 of 14 runs here,
                # the relay dropping nothing), so the peer gets a bounded time
                result = nt.shell_pair_tcp(rx, tx, megabytes, min(timeout, V86_TRANSFER_TIMEOUT_S),
                                           V86Error)
    except (RuntimeError, V86Error) as exc:
        result = {"mb_per_s": None, "reason": str(exc).splitlines()[0]}
    if "counters" in served:  # (also after a failure: did the relay drop anything?)
        result["relay_counters"] = served["counters"]
    return result


def guest_tcp_tap(megabytes: int, timeout: float, breakdown: bool = False) -> dict[str, Any]:
    """Two Linux guests on ``tap:`` netdevs bridged inside a network namespace made (and removed) here."""
    if os.geteuid() != 0:
        return {"mb_per_s": None, "reason": "guest TCP over TAP needs root (ip netns, TAP devices)"}
    if shutil.which("ip") is None:
        return {"mb_per_s": None, "reason": "guest TCP over TAP needs iproute2 (`ip`)"}
    ns = f"pyv86-bench-{os.getpid()}"
    try:
        subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as exc:
        return {"mb_per_s": None, "reason": f"ip netns add {ns}: {exc.stderr.strip()}"}
    try:
        for cmd in (["ip", "link", "set", "lo", "up"], ["ip", "link", "add", "br0", "type", "bridge"],
                    ["ip", "link", "set", "br0", "up"]):
            subprocess.run(["ip", "netns", "exec", ns, *cmd], check=True, capture_output=True, text=True)
        # each guest's pyv86 creates its TAP inside the namespace and puts it on br0
        return _net_throughput().guest_pair_tcp("tap:benchrx?bridge=br0", "tap:benchtx?bridge=br0",
                                                megabytes, timeout, wrap=["ip", "netns", "exec", ns],
                                                breakdown=breakdown)
    except subprocess.CalledProcessError as exc:
        return {"mb_per_s": None, "reason": f"{' '.join(exc.cmd)}: {exc.stderr.strip()}"}
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--pairs", type=int, default=10, help="sender/receiver pairs (clients = 2x)")
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per run")
    parser.add_argument("--queue-bytes", type=int, default=1 << 20, help="relay queue per client")
    parser.add_argument("--no-guest", action="store_true",
                        help="skip guest TCP over the relay and over TAP (they boot four Linux guests)")
    parser.add_argument("--no-v86", action="store_true",
                        help="skip the peer of guest TCP over the relay (two v86 instances under Node.js)")
    parser.add_argument("--guest-mb", type=int, default=16, help="megabytes each guest TCP run moves")
    parser.add_argument("--guest-timeout", type=float, default=600, help="seconds allowed per guest run")
    parser.add_argument("--runs", type=int, default=1,
                        help="guest TCP transfers over the relay and over TAP each (alternating); "
                             "the figures are the medians, every run's in runs_mb_per_s")
    parser.add_argument("--breakdown", action="store_true",
                        help="instrument the guests of the TCP runs: per-frame instructions, exits, host CPU")
    args = parser.parse_args(argv)

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    results: dict[str, Any] = {}
    runs = [("small", 64), ("large", 1514)]
    for kind in ("pyv86", "hub"):
        for label, size in runs:
            progress(f"relay benchmark: {kind} relay, {2 * args.pairs} clients, {size}-byte frames...")
            results[f"{kind}_{label}"] = measure(kind, args.pairs, size, args.seconds, args.queue_bytes)
        progress(f"relay benchmark: {kind} relay, 2 clients, 64-byte frames...")
        results[f"{kind}_one_pair"] = measure(kind, 1, 64, args.seconds, args.queue_bytes)
    guest: dict[str, dict[str, Any]] = {}
    attempts: dict[str, list[dict[str, Any]]] = {"relay": [], "tap": []}
    for attempt in range(max(1, args.runs)):
        for kind, run in (("relay", guest_tcp_relay), ("tap", guest_tcp_tap)):
            if args.no_guest:
                break
            progress(f"relay benchmark: guest TCP over {kind} (two Linux guests, {args.guest_mb} MB"
                     + (f", run {attempt + 1} of {args.runs}" if args.runs > 1 else "") + ")...")
            attempts[kind].append(run(args.guest_mb, args.guest_timeout, breakdown=args.breakdown))
    for kind, made in attempts.items():
        guest[kind] = (_net_throughput().median_run(made) if made
                       else {"mb_per_s": None, "reason": "not run (--no-guest)"})
    if args.no_guest or args.no_v86:
        guest["v86_relay"] = {"mb_per_s": None, "reason": "not run (--no-guest or --no-v86)"}
    else:
        progress(f"relay benchmark: peer: guest TCP over the relay between two v86 instances "
                 f"({args.guest_mb} MB)...")
        guest["v86_relay"] = v86_tcp_relay(args.guest_mb, args.guest_timeout)
    v86_tcp = guest["v86_relay"]["mb_per_s"]
    relay_tcp, relay_reason = guest["relay"]["mb_per_s"], guest["relay"].get("reason")
    tap_tcp, tap_reason = guest["tap"]["mb_per_s"], guest["tap"].get("reason")
    relay_tcp = None if relay_tcp is None else round(relay_tcp, 3)
    tap_tcp = None if tap_tcp is None else round(tap_tcp, 3)
    ours, hub = results["pyv86_small"], results["hub_small"]
    out = {
        "server_frames_per_s": round(ours["frames_per_s"]),
        "server_mb_per_s": round(results["pyv86_large"]["mb_per_s"], 1),
        "server_frames_per_s_one_pair": round(results["pyv86_one_pair"]["frames_per_s"]),
        "baseline_frames_per_s": round(hub["frames_per_s"]),
        "baseline_mb_per_s": round(results["hub_large"]["mb_per_s"], 1),
        "baseline_frames_per_s_one_pair": round(results["hub_one_pair"]["frames_per_s"]),
        "ratio_frames_vs_baseline": round(ours["frames_per_s"] / max(hub["frames_per_s"], 1e-9), 2),
        "ratio_mb_vs_baseline": round(results["pyv86_large"]["mb_per_s"]
                                      / max(results["hub_large"]["mb_per_s"], 1e-9), 2),
        "target_frames_per_s": TARGET_FRAMES_PER_S,
        "clients": 2 * args.pairs,
        "relay_tcp_mb_per_s": relay_tcp,
        "relay_tcp_reason": relay_reason,
        "tap_tcp_mb_per_s": tap_tcp,
        "tap_tcp_reason": tap_reason,
        "v86_relay_tcp_mb_per_s": None if v86_tcp is None else round(v86_tcp, 3),
        "relay_tcp_ratio_vs_v86": round(relay_tcp / v86_tcp, 2) if relay_tcp and v86_tcp else None,
        "target_relay_tcp_mb_per_s": TARGET_RELAY_TCP_MB_PER_S,
        "guest_tcp": guest,
        "runs": results,
    }
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"pyv86 relay, {out['clients']} clients, 64-byte frames:   {out['server_frames_per_s']:>9,} frames/s "
          f"(target {TARGET_FRAMES_PER_S:,}; {'met' if out['server_frames_per_s'] >= TARGET_FRAMES_PER_S else 'NOT met'})")
    print(f"hub baseline, same load:                  {out['baseline_frames_per_s']:>9,} frames/s "
          f"(pyv86 x{out['ratio_frames_vs_baseline']})")
    print(f"pyv86 relay, 1514-byte frames:            {out['server_mb_per_s']:>9} MB/s")
    print(f"hub baseline, 1514-byte frames:           {out['baseline_mb_per_s']:>9} MB/s "
          f"(pyv86 x{out['ratio_mb_vs_baseline']})")
    print(f"one pair, 64-byte frames: pyv86 {out['server_frames_per_s_one_pair']:,} frames/s, "
          f"hub {out['baseline_frames_per_s_one_pair']:,} frames/s")
    def median_of(kind: str) -> str:
        figures = guest[kind].get("runs_mb_per_s")
        return f"; median of {figures}" if figures else ""
    print(f"guest TCP over relay: {relay_reason if relay_tcp is None else f'{relay_tcp:.2f} MB/s'} "
          f"(target {TARGET_RELAY_TCP_MB_PER_S} MB/s){median_of('relay')}")
    print(f"guest TCP over TAP:   {tap_reason if tap_tcp is None else f'{tap_tcp:.2f} MB/s'}{median_of('tap')}")
    v86_reason = guest["v86_relay"].get("reason")
    print(f"peer: guest TCP over the relay between two v86 instances: "
          f"{v86_reason if v86_tcp is None else f'{v86_tcp:.2f} MB/s'}"
          + (f" (pyv86 x{out['relay_tcp_ratio_vs_v86']})" if out["relay_tcp_ratio_vs_v86"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
