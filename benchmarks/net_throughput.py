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
Its peer (unless ``--no-qemu``) is the same pair under QEMU TCG: the same kernel, initramfs,
command line and commands, two ``ne2k_pci`` NICs joined by QEMU's loopback ``socket``
netdev; the ratio is pyv86 / QEMU. On a host with two or more CPUs each guest's process
(pyv86's and QEMU's alike) runs pinned to a CPU of its own, the receiver on the first the
benchmark may use and the sender on the second (``--no-pin``: wherever the host's
scheduler puts them). Unpinned, the two processes' threads migrate between the CPUs
(their network threads wake on the CPU where the other guest runs): on a 2-CPU machine
that cost pyv86 about a fifth of its throughput (eight alternating pairs: medians 11.4
MB/s pinned, 9.6 unpinned).

    python benchmarks/net_throughput.py               # human-readable
    python benchmarks/net_throughput.py --json        # one JSON object
    python benchmarks/net_throughput.py --size 1514 --seconds 3 --guest
"""
from __future__ import annotations

import argparse
import json
import os
import re
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
GUEST_ADDRESSES = ("10.99.0.1", "10.99.0.2")
"""The receiver's and the sender's IPv4 addresses in every guest TCP transfer."""
NO_GUEST_IMAGE = {"mb_per_s": None, "reason": "no guest image: run `pyv86 guest build` first"}
PIN: list[int] | None = None
"""Host CPUs for the receiver's and the sender's process (set by main; None: not pinned)."""


def guest_cpus() -> list[int] | None:
    """The first two CPUs this process may run on, for the receiver and the sender."""
    cpus = sorted(os.sched_getaffinity(0))
    return cpus[:2] if len(cpus) >= 2 else None


def pin_process(pid: int, cpu: int) -> None:
    """Pin every thread of process ``pid`` (and so the threads it starts) to ``cpu``."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), {cpu})
        except (ProcessLookupError, ValueError):
            pass  # a thread that ended meanwhile


def guest_image() -> tuple[Path, Path]:
    """The guest image's kernel and initramfs (they may not exist yet)."""
    from pyv86.paths import resolve_file
    return resolve_file("guest:vmlinuz", ROOT), resolve_file("guest:initramfs.cpio.gz", ROOT)


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


def guest_to_guest(megabytes: int, timeout: float, breakdown: bool = False) -> dict[str, Any]:
    """busybox nc + dd between two booted Linux guests on one hub (needs a booting guest)."""
    hub = f"benchguest{os.getpid()}"
    return guest_pair_tcp(f"hub:{hub}", f"hub:{hub}", megabytes, timeout, breakdown=breakdown)


# -- where the time goes (--breakdown) ------------------------------------------------------
# Each guest's `pyv86 run` is started as `python net_throughput.py --probe-child OUT run ...`:
# the child wraps the machine's run loop, CPU slices and port I/O with counters, samples them
# every SAMPLE_S seconds (with the machine thread's on-CPU and run-queue time from
# /proc/self/task/TID/schedstat) and writes the samples to OUT at exit. The parent keeps the
# samples in which data frames flowed and reports per-frame figures for that window.
SAMPLE_S = 0.25


def _probe_child(out: str, cli_args: list[str]) -> int:
    import atexit
    import threading

    from pyv86 import machine as machine_mod
    from pyv86.cli import main as cli_main

    M = machine_mod.Machine
    n: dict[str, float] = dict.fromkeys(("insns", "slices", "cpu_wall", "cpu_thread", "idle", "io", "exits",
                                         "irq_acks"), 0)
    box: dict[str, Any] = {}
    pc, thread_time = time.perf_counter, time.thread_time
    orig_run, orig_idle, orig_ack = M.run, M._idle, M.interrupt_ack

    def timed(orig: Any, seconds: str, calls: str | None = None) -> Any:
        """``orig`` adding its time to ``n[seconds]`` (and counting calls in ``n[calls]``)."""
        def wrapper(self: Any, *a: Any) -> Any:
            t = pc()
            try:
                return orig(self, *a)
            finally:
                n[seconds] += pc() - t
                if calls:
                    n[calls] += 1
        return wrapper

    from pyv86.bus.ports import PortBus
    # (a machine hands the CPU its port bus's own read/write: wrap them there)
    for cls, names in ((PortBus, ("read", "write")),
                       (M, ("port_read_string", "port_write_string", "mmio_read", "mmio_write"))):
        for name in names:
            setattr(cls, name, timed(getattr(cls, name), "io", "exits"))

    def interrupt_ack(self: Any) -> Any:
        n["irq_acks"] += 1
        return orig_ack(self)

    idle = timed(orig_idle, "idle")

    def run(self: Any, **kw: Any) -> Any:
        box["machine"], box["tid"] = self, threading.get_native_id()
        cpu = self.cpu
        if cpu is not None:
            cpu_run = cpu.run

            def slice_(budget: int) -> int:
                t, tt = pc(), thread_time()
                done = cpu_run(budget)
                n["cpu_wall"] += pc() - t
                n["cpu_thread"] += thread_time() - tt
                n["insns"] += done
                n["slices"] += 1
                return done
            cpu.run = slice_
        return orig_run(self, **kw)

    M.run, M._idle, M.interrupt_ack = run, idle, interrupt_ack
    rows: list[list[Any]] = []

    def sample() -> None:
        while True:
            time.sleep(SAMPLE_S)
            machine = box.get("machine")
            if machine is None:
                continue
            ports = [d.port.counters.as_dict() for d in machine.devices.values()
                     if hasattr(getattr(d, "port", None), "counters")]
            try:
                with open(f"/proc/self/task/{box['tid']}/schedstat") as f:
                    oncpu, waiting, _ = (int(x) for x in f.read().split())
            except OSError:
                oncpu = waiting = 0
            rows.append([pc(), dict(n), ports[0] if ports else {}, oncpu / 1e9, waiting / 1e9,
                         time.process_time()])

    def dump() -> None:
        with open(out, "w") as f:
            json.dump(rows, f)

    threading.Thread(target=sample, daemon=True, name="net-bench-probe").start()
    atexit.register(dump)
    return int(cli_main(cli_args) or 0)


def _window_breakdown(path: Path, key: str) -> dict[str, Any] | None:
    """Per-frame figures over the samples in which ``key`` (tx_frames / rx_stored) grew."""
    try:
        rows = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    busy = [i for i in range(1, len(rows))
            if rows[i][2].get(key, 0) - rows[i - 1][2].get(key, 0) > 20 * SAMPLE_S / 0.25]
    if not busy:
        return None
    a, b = rows[busy[0] - 1], rows[busy[-1]]
    wall = b[0] - a[0]
    d = {k: b[1][k] - a[1][k] for k in b[1]}
    frames = max(b[2][key] - a[2][key], 1)
    ports = {k: b[2][k] - a[2][k] for k in b[2]}
    oncpu, waiting = b[3] - a[3], b[4] - a[4]
    return {
        "window_s": round(wall, 2),
        "data_frames": frames,
        "guest_insns_per_frame": round(d["insns"] / frames),
        "guest_mips_wall": round(d["insns"] / wall / 1e6, 1),
        "guest_mips_on_cpu": round(d["insns"] / max(d["cpu_thread"], 1e-9) / 1e6, 1),
        "port_exits_per_frame": round(d["exits"] / frames, 1),
        "irqs_per_frame": round(d["irq_acks"] / frames, 2),
        "slices_per_frame": round(d["slices"] / frames, 2),
        "host_cpu_us_per_frame": round(oncpu / frames * 1e6),
        "port_io_us_per_frame": round(d["io"] / frames * 1e6),
        "share_in_cpu_slices": round(d["cpu_wall"] / wall, 3),
        "share_in_port_io": round(d["io"] / wall, 3),
        "share_idle": round(d["idle"] / wall, 3),
        "share_machine_thread_on_cpu": round(oncpu / wall, 3),
        "share_waiting_for_a_host_cpu": round(waiting / wall, 3),
        "process_cpu_s": round(b[5] - a[5], 2),
        "nic_port": {k: v for k, v in ports.items() if v},
    }



def guest_pair_tcp(rx_url: str, tx_url: str, megabytes: int, timeout: float, *,
                   wrap: list[str] | None = None, addresses: tuple[str, str] = GUEST_ADDRESSES,
                   breakdown: bool = False) -> dict[str, Any]:
    """TCP from a sender guest on netdev ``tx_url`` to a receiver guest on ``rx_url``.

    Both guests boot ``examples/machines/linux.toml`` (realtime clock, so the figure is MB
    per wall second) in their own ``pyv86 run`` process, prefixed by ``wrap`` (e.g.
    ``ip netns exec NS``). The receiver listens with busybox ``nc``; the sender waits until
    it answers ping, then times the transfer with the guest's clock (see
    :func:`_tcp_commands`). Besides MB/s and frames/s the result holds both guests' TCP
    retransmissions and NIC drop counters, read from /proc after the transfer. With
    ``breakdown`` each guest runs instrumented (a few % slower) and the result says where
    its time went per data frame. Reused by ``benchmarks/relay.py``.
    """
    kernel = guest_image()[0]
    if not kernel.exists():
        return dict(NO_GUEST_IMAGE)
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
    rx_cmd, tx_cmd = _tcp_commands(megabytes, *addresses)
    def cmd(name: str) -> list[str]:
        run = ["run", "--headless", "--timeout", str(int(timeout))]
        if breakdown:
            return [*(wrap or []), sys.executable, str(Path(__file__).resolve()), "--probe-child",
                    str(tmp / f"{name}.probe.json"), *run]
        return [*(wrap or []), sys.executable, "-m", "pyv86.cli", *run]

    def on_cpu(index: int) -> Any:
        if PIN is None:
            return None
        return lambda: os.sched_setaffinity(0, {PIN[index]})   # inherited through exec and threads

    start = time.monotonic()
    rx = subprocess.Popen([*cmd("rx"), "--exec", rx_cmd, str(files[0])], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, preexec_fn=on_cpu(0))
    try:
        tx = subprocess.run([*cmd("tx"), "--exec", tx_cmd, str(files[1])], capture_output=True, text=True,
                            timeout=timeout + 60, preexec_fn=on_cpu(1))
        rx_out, rx_err = rx.communicate(timeout=timeout + 60)
    except subprocess.TimeoutExpired:
        rx.kill()
        rx.communicate()
        return {"mb_per_s": None, "reason": f"guests did not finish within {timeout:.0f} s"}
    finally:
        if rx.poll() is None:
            rx.kill()
            rx.communicate()
        probes = {side: _window_breakdown(tmp / f"{name}.probe.json", key) if breakdown else None
                  for side, name, key in (("sender", "tx", "tx_frames"), ("receiver", "rx", "rx_stored"))}
        shutil.rmtree(tmp, ignore_errors=True)
    if tx.returncode != 0 or "ELAPSED" not in tx.stdout:
        last = (tx.stderr.strip().splitlines() or ["no output"])[-1]
        return {"mb_per_s": None, "reason": f"sender guest failed: {last}",
                "wall_seconds": time.monotonic() - start}
    return {**_transfer_figures(megabytes, tx.stdout, rx_out),
            **({"breakdown": probes} if breakdown else {})}


def _tcp_commands(megabytes: int, rx_ip: str, tx_ip: str) -> tuple[str, str]:
    """The receiver's and the sender's shell commands (the same for every emulator).

    ``dd`` reads and writes the TCP socket itself (``nc -e``), the way a benchmark tool
    does, rather than through a pipe to ``nc``: piping made the guests spend more
    instructions switching between ``dd`` and ``nc`` and copying through the pipe than on
    the network (an EIP profile of the pipe version: scheduler ~15 %, poll, pipe and VFS
    code; the socket version runs 2.5-3 times as fast on pyv86 and on QEMU). The receiver's
    ``dd`` reads exactly the megabytes sent (``iflag=fullblock``) and answers ``done``; the
    sender's shell waits for that answer, so the time covers delivery, not just queueing in
    the sender's socket buffer. The sender prints ``ELAPSED T0 T1`` (guest uptime around
    the transfer); both print ``TCPSTAT`` counters afterwards (see :func:`_tcpstat`)."""
    setup = "ip link set eth0 up; ip addr add {ip}/24 dev eth0; "
    # after the transfer: TCP RetransSegs (/proc/net/snmp) and eth0's rx/tx drops (/proc/net/dev)
    counters = ("; echo TCPSTAT $(awk '/^Tcp:/ {n++} /^Tcp:/ && n==2 {print $13}' /proc/net/snmp) "
                "$(awk '/eth0:/ {sub(/.*:/, \"\"); print $4, $12}' /proc/net/dev)")
    blocks = megabytes * 16
    rx_cmd = (setup.format(ip=rx_ip) + "nc -l -p 5001 -e sh -c "
              f"'dd of=/dev/null bs=64k count={blocks} iflag=fullblock 2>/tmp/dd.log; echo done'; "
              "tail -1 /tmp/dd.log" + counters)
    tx_cmd = (setup.format(ip=tx_ip) + f"until ping -c 1 -W 1 {rx_ip} >/dev/null 2>&1; do sleep 1; done; "
              "sleep 1; T0=$(cut -d' ' -f1 /proc/uptime); "
              f"nc {rx_ip} 5001 -e sh -c 'dd if=/dev/zero bs=64k count={blocks} 2>/dev/null; read x'; "
              "T1=$(cut -d' ' -f1 /proc/uptime); echo ELAPSED $T0 $T1" + counters)
    return rx_cmd, tx_cmd


def _transfer_figures(megabytes: int, tx_out: str, rx_out: str) -> dict[str, Any]:
    """MB/s and frames/s from the sender's ``ELAPSED`` line, with both sides' counters."""
    received = re.search(r"(\d+)\+\d+ records out", rx_out)
    if received is None or int(received.group(1)) != megabytes * 16:
        return {"mb_per_s": None, "reason": "the receiver did not get every byte: "
                + (received.group(0) if received else repr(rx_out[-200:]))}
    t0, t1 = (float(x) for x in tx_out.split("ELAPSED", 1)[1].split()[:2])
    seconds = max(t1 - t0, 1e-6)
    return {"mb_per_s": megabytes * 1.048576 / seconds, "frames_per_s": megabytes * 1048576 / 1448 / seconds,
            "guest_seconds": seconds, "receiver": rx_out.split("TCPSTAT")[0].strip()[-200:],
            "sender_counters": _tcpstat(tx_out), "receiver_counters": _tcpstat(rx_out)}


QEMU_TRANSFER_S = 60
QEMU_TRANSFER_S_PER_MB = 10
"""The QEMU peer's transfer gets at most QEMU_TRANSFER_S + QEMU_TRANSFER_S_PER_MB per MB
(a peer slower than ~0.1 MB/s has no figure; the peer normally moves 8-10 MB/s)."""

PEER_CMDLINE_DROP = ("tsc_early_khz=", "tsc=")
"""pyv86's command line tells Linux the TSC's rate (1 GHz of guest time); a peer's TSC runs
at the host's (QEMU) or its own (v86), so the peer's guest measures it."""


def qemu_pair_tcp(megabytes: int, timeout: float) -> dict[str, Any]:
    """The peer: the same guests, kernel command line and commands under QEMU TCG, two
    ``qemu-system-i386`` processes whose ``ne2k_pci`` NICs are joined by QEMU's ``socket``
    netdev over loopback TCP (the sender's QEMU connects to the receiver's)."""
    import socket

    from pyv86.guest.qemu import QemuError, QemuGuest, qemu_binary

    try:
        qemu_binary()
    except QemuError as exc:
        return {"mb_per_s": None, "reason": str(exc)}
    kernel, initrd = guest_image()
    if not kernel.exists():
        return dict(NO_GUEST_IMAGE)
    cmdline = peer_cmdline()
    with socket.socket() as probe:  # a free loopback port for the receiver's QEMU to listen on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    try:
        with QemuGuest(kernel, initrd, cmdline, netdev=f"socket,listen=127.0.0.1:{port}",
                       mac="52:54:00:99:00:01") as rx:
            rx.wait_ready(timeout)
            with QemuGuest(kernel, initrd, cmdline, netdev=f"socket,connect=127.0.0.1:{port}",
                           mac="52:54:00:99:00:02") as tx:
                tx.wait_ready(timeout)
                if PIN is not None:   # the same placement as pyv86's guests
                    for guest, cpu in ((rx, PIN[0]), (tx, PIN[1])):
                        pin_process(guest.pid, cpu)
                # a stalled transfer (QEMU's TCP once idled for minutes after losses) gets a
                # figure-less result instead of holding the benchmark for the whole timeout
                limit = min(timeout, QEMU_TRANSFER_S + QEMU_TRANSFER_S_PER_MB * megabytes)
                return {**shell_pair_tcp(rx, tx, megabytes, limit, QemuError), "cmdline": cmdline}
    except QemuError as exc:
        return {"mb_per_s": None, "reason": str(exc).splitlines()[0]}


def shell_pair_tcp(rx: Any, tx: Any, megabytes: int, timeout: float,
                   errors: type[Exception]) -> dict[str, Any]:
    """The transfer between two booted peer guests driven through their consoles
    (:class:`pyv86.guest.shell.ShellCommands`); ``errors`` is what their drivers raise."""
    import threading

    rx_cmd, tx_cmd = _tcp_commands(megabytes, *GUEST_ADDRESSES)
    out: dict[str, Any] = {}

    def receive() -> None:
        try:
            out["rx"] = rx.run(rx_cmd, timeout)[0]
        except errors as exc:
            out["rx_error"] = str(exc).splitlines()[0]
    receiver = threading.Thread(target=receive, daemon=True)
    receiver.start()
    time.sleep(1)  # the receiver's nc is listening before the sender connects
    try:
        tx_out = tx.run(tx_cmd, timeout)[0]
    except errors as exc:
        return {"mb_per_s": None, "reason": str(exc).splitlines()[0]}
    receiver.join(timeout)
    if "ELAPSED" not in tx_out or "rx" not in out:
        return {"mb_per_s": None, "reason": out.get("rx_error") or f"sender: {tx_out[-200:]!r}"}
    return _transfer_figures(megabytes, tx_out, out["rx"])


def peer_cmdline() -> str:
    """pyv86's default kernel command line without what only holds for pyv86's TSC."""
    from pyv86.boot.linux import DEFAULT_CMDLINE
    return " ".join(w for w in DEFAULT_CMDLINE.split() if not w.startswith(PEER_CMDLINE_DROP))


def _transfer_line(label: str, run: dict[str, Any], note: str) -> str:
    """One line of the human-readable output for a guest TCP figure (or why there is none)."""
    if run.get("mb_per_s") is None:
        return f"{label}: not measured: {run['reason']}"
    median = f"; median of {run['runs_mb_per_s']}" if "runs_mb_per_s" in run else ""
    return f"{label}: {run['mb_per_s']:.2f} MB/s ({note}){median}"


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median MB/s (the lower middle one of an even count), with every run's
    figure in ``runs_mb_per_s``; the first failure if no run measured anything."""
    measured = sorted((r for r in runs if r.get("mb_per_s") is not None), key=lambda r: r["mb_per_s"])
    if not measured:
        return runs[0]
    pick = dict(measured[(len(measured) - 1) // 2])
    if len(runs) > 1:
        pick["runs_mb_per_s"] = [None if r.get("mb_per_s") is None else round(r["mb_per_s"], 3) for r in runs]
    return pick


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
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--probe-child"]:  # an instrumented guest of --breakdown (internal)
        return _probe_child(argv[1], argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--size", type=int, default=1514, help="frame size in bytes (60..1514)")
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each measurement")
    parser.add_argument("--guest", action="store_true", help="also run busybox nc + dd between two Linux guests")
    parser.add_argument("--guest-mb", type=int, default=16, help="megabytes the guests move")
    parser.add_argument("--guest-timeout", type=float, default=1800, help="seconds allowed for boot + transfer")
    parser.add_argument("--runs", type=int, default=1,
                        help="with --guest: transfers per emulator, alternating pyv86 and the peer; "
                             "the figures are the medians (a shared host's speed drifts from run to run)")
    parser.add_argument("--no-qemu", action="store_true",
                        help="with --guest: skip the peer (the same guests and commands under QEMU TCG)")
    parser.add_argument("--no-pin", action="store_true",
                        help="with --guest: do not pin each guest's process to a CPU of its own")
    parser.add_argument("--breakdown", action="store_true",
                        help="with --guest: instrument both guests and report, per data frame, guest "
                             "instructions, port exits, IRQs, host CPU time and where the wall time went")
    args = parser.parse_args(argv)
    if not 60 <= args.size <= 1514:
        parser.error("--size must be 60..1514")

    global PIN
    PIN = None if args.no_pin else guest_cpus()
    ours = register_level(args.size, args.seconds)
    peer = raw_hub(args.size, args.seconds)
    if args.guest:
        ours_runs, qemu_runs = [], []
        for _ in range(max(1, args.runs)):
            ours_runs.append(guest_to_guest(args.guest_mb, args.guest_timeout, breakdown=args.breakdown))
            qemu_runs.append({"mb_per_s": None, "reason": "not run (--no-qemu)"} if args.no_qemu
                             else qemu_pair_tcp(args.guest_mb, args.guest_timeout))
        guest, qemu = median_run(ours_runs), median_run(qemu_runs)
    else:
        guest = {"mb_per_s": None, "reason": "not run (pass --guest; needs a booting Linux guest image)"}
        qemu = {"mb_per_s": None, "reason": "not run (needs --guest)"}
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
        "peer_qemu_guest_tcp": qemu,
        "guest_ratio_vs_qemu": (round(guest["mb_per_s"] / qemu["mb_per_s"], 3)
                                if guest.get("mb_per_s") and qemu.get("mb_per_s") else None),
        "target_mb_per_s": TARGET_MB_PER_S,
        "guest_cpus": PIN if args.guest else None,
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
    print(_transfer_line("guest-to-guest TCP (busybox nc + dd)", guest,
                         f"target {TARGET_MB_PER_S} MB/s"))
    for side, figures in (guest.get("breakdown") or {}).items():
        print(f"  {side}: {json.dumps(figures)}")
    retrans = (qemu.get("sender_counters") or {}).get("tcp_retransmits")
    print(_transfer_line("peer: QEMU TCG, same guests and commands", qemu,
                         f"TCP retransmissions {retrans}"))
    if result["guest_ratio_vs_qemu"] is not None:
        print(f"ratio pyv86 / QEMU guest TCP: {result['guest_ratio_vs_qemu']}")
    if args.guest:
        print(f"guests pinned to host CPUs {PIN[0]} (receiver) and {PIN[1]} (sender), both emulators"
              if PIN else "guests not pinned to host CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
