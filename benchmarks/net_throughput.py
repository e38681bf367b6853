"""NIC + hub throughput: frames/s and MB/s, register level now, guest-to-guest TCP once Linux runs.

Register level (always): two machines without a CPU, each with an ``ne2k-pci`` NIC on one
in-process ``hub:``; a Python model of Linux's ne2k-pci/lib8390 driver (pyv86_ne2k.driver)
drives both ends through the I/O ports exactly as the kernel does (upload by remote DMA,
trigger, interrupt loop, ei_receive). Frames of ``--size`` bytes go from A to B for
``--seconds``. The peer measured in the same run is the raw hub: the same frames copied
from one hub port to another with no NIC and no driver, which bounds what any NIC model
can reach here. The ratio is ours / raw hub.

Guest to guest (``--guest``): two booted Linux guests on ``hub:`` (``examples/machines/
linux.toml`` with the netdev changed), busybox ``nc`` + ``dd`` moving ``--guest-mb`` MB
over TCP. It needs the guest image (``pyv86 guest build``) and a CPU fast enough to
boot both within ``--guest-timeout`` seconds; otherwise the figure is null with the reason.

    python benchmarks/net_throughput.py               # human-readable
    python benchmarks/net_throughput.py --json        # one JSON object
    python benchmarks/net_throughput.py --size 1514 --seconds 3 --guest
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

TARGET_MB_PER_S = 10.0
ROOT = Path(__file__).resolve().parent.parent


def _machine(name: str, hub: str) -> Any:
    from pyv86.config import parse_machine_config
    from pyv86.machine import Machine
    from pyv86.plugins.manager import create_plugin_manager

    plugins = create_plugin_manager(environ={})
    plugins.collect()
    if "ne2k-pci" not in plugins.devices:
        raise SystemExit("net_throughput: the ne2k-pci plugin is not installed (pip install -e plugins/ne2k)")
    text = f"""version = 1
name = "{name}"
[machine]
memory = "2M"
cpu = false
clock = "virtual"
[netdev.lan]
url = "hub:{hub}?scope=process"
[device.net0]
type = "ne2k-pci"
netdev = "lan"
"""
    return Machine.from_config(parse_machine_config(tomllib.loads(text), name, text, plugins=plugins), plugins)


def register_level(size: int, seconds: float) -> dict[str, Any]:
    """Two NICs driven by the Linux driver model, A -> B."""
    from pyv86_ne2k.driver import LinuxNe2kModel

    hub = f"bench{os.getpid()}"
    a, b = _machine("a", hub), _machine("b", hub)
    try:
        na, nb = a.devices["net0"], b.devices["net0"]
        da = LinuxNe2kModel(a, na.io_base, irq_pending=lambda: na.irq_level)
        db = LinuxNe2kModel(b, nb.io_base, irq_pending=lambda: nb.irq_level)
        da.probe()
        db.probe()
        da.open()
        db.open()
        received = [0, 0]

        def count(frame: bytes) -> None:
            received[0] += 1
            received[1] += len(frame)

        db.on_receive = count
        frame = db.mac + da.mac + b"\x08\x00" + bytes(i & 0xFF for i in range(size - 14))
        sent = 0
        start = time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline:
            for _ in range(64):
                if da.start_xmit(frame):
                    sent += 1
                da.poll()
                db.poll()
        for _ in range(10):
            da.poll()
            db.poll()
        elapsed = time.perf_counter() - start
        errors = [m for m in da.messages + db.messages if "found at" not in m]
        return {"frames": received[0], "sent": sent, "bytes": received[1], "seconds": elapsed,
                "frames_per_s": received[0] / elapsed, "mb_per_s": received[1] / elapsed / 1e6,
                "lost": sent - received[0], "driver_messages": errors[:5],
                "missed": db.stats["rx_missed_errors"]}
    finally:
        a.shutdown("bench")
        b.shutdown("bench")


def raw_hub(size: int, seconds: float) -> dict[str, Any]:
    """The peer: the same frames copied through the same hub with nothing else."""
    from pyv86.net.hub import open_hub

    hub = f"benchraw{os.getpid()}?scope=process"
    pa, pb = open_hub(f"hub:{hub}"), open_hub(f"hub:{hub}")
    got = [0, 0]

    def count(frame: bytes) -> None:
        got[0] += 1
        got[1] += len(frame)

    pb.set_receiver(count)
    pa.set_receiver(lambda f: None)
    src, dst = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")
    pb.send(src + dst + b"\x08\x00" + bytes(46))  # so the switch learns where dst is
    frame = dst + src + b"\x08\x00" + bytes(i & 0xFF for i in range(size - 14))
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(256):
            pa.send(bytes(frame))  # one copy, as a NIC makes when it reads its TX buffer
    elapsed = time.perf_counter() - start
    pa.close()
    pb.close()
    return {"frames": got[0], "seconds": elapsed, "frames_per_s": got[0] / elapsed,
            "mb_per_s": got[1] / elapsed / 1e6}


def guest_to_guest(megabytes: int, timeout: float) -> dict[str, Any]:
    """busybox nc + dd between two booted Linux guests on one hub (needs a booting guest)."""
    hub = f"benchguest{os.getpid()}"
    return guest_pair_tcp(f"hub:{hub}", f"hub:{hub}", megabytes, timeout)


def guest_pair_tcp(rx_url: str, tx_url: str, megabytes: int, timeout: float, *,
                   wrap: list[str] | None = None, addresses: tuple[str, str] = ("10.99.0.1", "10.99.0.2"),
                   ) -> dict[str, Any]:
    """TCP from a sender guest on netdev ``tx_url`` to a receiver guest on ``rx_url``.

    Both guests boot ``examples/machines/linux.toml`` (realtime clock, so the figure is MB
    per wall second) in their own ``pyv86 run`` process, prefixed by ``wrap`` (e.g.
    ``ip netns exec NS``). The receiver listens with busybox ``nc``; the sender waits until
    it answers ping, then pipes ``dd`` into ``nc`` and times the transfer with the guest's
    clock. Besides MB/s and frames/s the result holds both guests' TCP retransmissions and
    NIC drop counters, read from /proc after the transfer. Reused by ``benchmarks/relay.py``.
    """
    from pyv86.paths import resolve_file

    kernel = resolve_file("guest:vmlinuz", ROOT)
    if not kernel.exists():
        return {"mb_per_s": None, "reason": "no guest image: run `pyv86 guest build` first"}
    base = (ROOT / "examples" / "machines" / "linux.toml").read_text()
    tmp = Path(tempfile.mkdtemp(prefix="pyv86-net-bench-"))
    files = []
    for name, url in (("rx", rx_url), ("tx", tx_url)):
        text = base.replace('url = "null:"', f'url = "{url}"').replace('name = "linux"', f'name = "{name}"')
        # guest time must be wall time here: the figure is MB per wall second
        text = text.replace('clock = "virtual"', 'clock = "realtime"')
        guest_dir = f"{kernel.parent}/"
        path = tmp / f"{name}.toml"
        path.write_text(text.replace('kernel = "guest:', f'kernel = "{guest_dir}').replace(
            'initrd = "guest:', f'initrd = "{guest_dir}'))
        files.append(path)
    rx_ip, tx_ip = addresses
    setup = "ip link set eth0 up; ip addr add {ip}/24 dev eth0; "
    # after the transfer: TCP RetransSegs (/proc/net/snmp) and eth0's rx/tx drops (/proc/net/dev)
    counters = ("; echo TCPSTAT $(awk '/^Tcp:/ {n++} /^Tcp:/ && n==2 {print $13}' /proc/net/snmp) "
                "$(awk '/eth0:/ {sub(/.*:/, \"\"); print $4, $12}' /proc/net/dev)")
    rx_cmd = setup.format(ip=rx_ip) + "nc -l -p 5001 | dd of=/dev/null bs=64k 2>&1 | tail -1" + counters
    tx_cmd = (setup.format(ip=tx_ip) + f"until ping -c 1 -W 1 {rx_ip} >/dev/null 2>&1; do sleep 1; done; "
              "sleep 1; T0=$(cut -d' ' -f1 /proc/uptime); "
              f"dd if=/dev/zero bs=64k count={megabytes * 16} 2>/dev/null | nc {rx_ip} 5001; "
              "T1=$(cut -d' ' -f1 /proc/uptime); echo ELAPSED $T0 $T1" + counters)
    cmd = [*(wrap or []), sys.executable, "-m", "pyv86.cli", "run", "--headless", "--timeout", str(int(timeout))]
    start = time.monotonic()
    rx = subprocess.Popen([*cmd, "--exec", rx_cmd, str(files[0])], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    try:
        tx = subprocess.run([*cmd, "--exec", tx_cmd, str(files[1])], capture_output=True, text=True,
                            timeout=timeout + 60)
        rx_out, rx_err = rx.communicate(timeout=timeout + 60)
    except subprocess.TimeoutExpired:
        rx.kill()
        rx.communicate()
        return {"mb_per_s": None, "reason": f"guests did not finish within {timeout:.0f} s"}
    finally:
        if rx.poll() is None:
            rx.kill()
            rx.communicate()
        shutil.rmtree(tmp, ignore_errors=True)
    if tx.returncode != 0 or "ELAPSED" not in tx.stdout:
        last = (tx.stderr.strip().splitlines() or ["no output"])[-1]
        return {"mb_per_s": None, "reason": f"sender guest failed: {last}",
                "wall_seconds": time.monotonic() - start}
    t0, t1 = (float(x) for x in tx.stdout.split("ELAPSED", 1)[1].split()[:2])
    seconds = max(t1 - t0, 1e-6)
    return {"mb_per_s": megabytes * 1.048576 / seconds, "frames_per_s": megabytes * 1048576 / 1448 / seconds,
            "guest_seconds": seconds, "receiver": rx_out.split("TCPSTAT")[0].strip()[-200:],
            "sender_counters": _tcpstat(tx.stdout), "receiver_counters": _tcpstat(rx_out)}


def _tcpstat(output: str) -> dict[str, int] | None:
    """``TCPSTAT retrans rxdrop txdrop`` printed by the guest -> a dict (None if missing)."""
    if "TCPSTAT" not in output:
        return None
    fields = output.split("TCPSTAT", 1)[1].split()[:3]
    try:
        retrans, rx_drop, tx_drop = (int(x) for x in fields)
    except ValueError:
        return None
    return {"tcp_retransmits": retrans, "eth0_rx_dropped": rx_drop, "eth0_tx_dropped": tx_drop}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--size", type=int, default=1514, help="frame size in bytes (60..1514)")
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each measurement")
    parser.add_argument("--guest", action="store_true", help="also run busybox nc + dd between two Linux guests")
    parser.add_argument("--guest-mb", type=int, default=10, help="megabytes the guests move")
    parser.add_argument("--guest-timeout", type=float, default=1800, help="seconds allowed for boot + transfer")
    args = parser.parse_args(argv)
    if not 60 <= args.size <= 1514:
        parser.error("--size must be 60..1514")

    ours = register_level(args.size, args.seconds)
    peer = raw_hub(args.size, args.seconds)
    if args.guest:
        guest = guest_to_guest(args.guest_mb, args.guest_timeout)
    else:
        guest = {"mb_per_s": None, "reason": "not run (pass --guest; needs a booting Linux guest image)"}
    # the headline figure is guest-to-guest TCP when it was measured, else the register level
    headline, measure = ours, "register-level: Linux ne2k-pci driver model on both NICs over an in-process hub"
    if guest.get("mb_per_s") is not None:
        headline, measure = guest, "guest-to-guest TCP: busybox nc + dd between two Linux guests on hub:"
    result = {
        "benchmark": "net_throughput",
        "frame_size": args.size,
        "mb_per_s": round(headline["mb_per_s"], 3),
        "frames_per_s": round(headline["frames_per_s"], 1),
        "measure": measure,
        "register_level": ours,
        "peer_raw_hub": peer,
        "ratio_vs_raw_hub": round(ours["frames_per_s"] / peer["frames_per_s"], 4) if peer["frames_per_s"] else None,
        "guest_tcp": guest,
        "target_mb_per_s": TARGET_MB_PER_S,
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"frame size {args.size} bytes, {args.seconds:.1f} s per measurement")
    print(f"NIC+hub, Linux driver model both ends: {ours['frames_per_s']:10.0f} frames/s "
          f"{ours['mb_per_s']:8.2f} MB/s  (lost {ours['lost']}, missed {ours['missed']})")
    print(f"peer: raw hub copy:                    {peer['frames_per_s']:10.0f} frames/s "
          f"{peer['mb_per_s']:8.2f} MB/s")
    print(f"ratio ours / raw hub: {result['ratio_vs_raw_hub']}")
    if guest.get("mb_per_s") is None:
        print(f"guest-to-guest TCP: not measured: {guest['reason']}")
    else:
        print(f"guest-to-guest TCP (busybox nc + dd): {guest['mb_per_s']:.2f} MB/s "
              f"(target {TARGET_MB_PER_S} MB/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
