"""Interop: the real v86 (npm ``v86`` under Node.js) as a client of ``pyv86 relay serve``.

Two v86 guests boot the pyv86 guest image with ``network_relay_url`` pointing at our relay,
which is uplinked to a TAP on a bridge where dnsmasq serves DHCP — all inside one network
namespace the test creates (see interop_lan.py). The guests must get leases from dnsmasq,
ping it, and ping each other through the relay's switch. Both boots run at once (v86 takes
one core each); that is the only pair of v86 boots in the suite.

Needs: root, iproute2, dnsmasq-base, seabios, Node.js with npm (the v86 npm packages are
installed on first use into peers/v86/node_modules), and the guest image (`pyv86 guest build`).
Anything missing makes the tests fail with the reason: .ci/run installs all of it.
"""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from interop_lan import RANGE, SERVER_IP, SUBNET, Lan, LanError, require_host
from pyv86 import paths
from pyv86.peers.v86 import DEFAULT_CMDLINE, V86Error, V86Guest, prepare

pytestmark = [pytest.mark.slow, pytest.mark.netns, pytest.mark.linux, pytest.mark.timeout(1500)]

BOOT_TIMEOUT_S = 900  # two JIT boots sharing two cores with the rest of the machine
NET_RE = re.compile(r"pyv86-init: net eth0 (\d+\.\d+\.\d+\.\d+)/(\d+) (\w+) .*mac=([0-9a-f:]{17})")
RECEIVED_RE = re.compile(r"(\d+) packets transmitted, (\d+) packets received")


class Booted:
    def __init__(self, lan: Lan, guests: dict[str, V86Guest]) -> None:
        self.lan = lan
        self.guests = guests
        self.net: dict[str, dict[str, Any]] = {}

    def network(self, name: str) -> dict[str, Any]:
        """What /init reported for ``name``: address, prefix, how (dhcp/static), MAC."""
        if name not in self.net:
            guest = self.guests[name]
            m = NET_RE.search(guest.output)
            assert m, f"{name}: no 'pyv86-init: net eth0' line on the console:\n{guest.output[-1500:]}"
            net = {"ip": m.group(1), "prefix": int(m.group(2)), "how": m.group(3), "mac": m.group(4)}
            if net["how"] != "dhcp":
                # /init's DHCP tries are 1 s apart, and v86's relay client only connects when
                # the guest sends its first frame: on a loaded machine they can all be gone
                # before the relay link is up. Ask again, as a user would, now that it is.
                out, status = guest.run("udhcpc -i eth0 -s /usr/share/udhcpc/default.script "
                                        "-f -q -n -t 10 -T 3 && ip -4 addr show dev eth0", timeout_s=90)
                m2 = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/(\d+)", out)
                if status == 0 and m2:
                    net.update(ip=m2.group(1), prefix=int(m2.group(2)), how="dhcp-retry")
            self.net[name] = net
        return self.net[name]


def guest_image() -> tuple[Path, Path]:
    guest = paths.guest_dir()
    kernel, initrd = guest / "vmlinuz", guest / "initramfs.cpio.gz"
    if not (kernel.is_file() and initrd.is_file()):
        pytest.fail(f"no guest image in {guest}: run `pyv86 guest build` (make guest; .ci/run does)")
    return kernel, initrd


@pytest.fixture(scope="module")
def booted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Booted]:
    kernel, initrd = guest_image()
    try:
        dnsmasq = require_host()
        prepare()  # node, npm, seabios; installs the npm packages on first use
    except (LanError, V86Error) as exc:
        pytest.fail(str(exc))
    lan = Lan(tmp_path_factory.mktemp("v86lan"))
    guests: dict[str, V86Guest] = {}
    try:
        try:
            lan.start(dnsmasq)
        except LanError as exc:
            pytest.fail(f"setting up the namespace LAN: {exc}")
        for name in ("v86a", "v86b"):
            cmdline = f"{DEFAULT_CMDLINE} pyv86.dhcp=10 pyv86.hostname={name}"
            guests[name] = V86Guest(kernel, initrd, cmdline, relay_url=lan.relay_url,
                                    prefix=lan.netns_prefix, name=name)
            guests[name].start()
        for guest in guests.values():
            ready = guest.wait_ready(BOOT_TIMEOUT_S)
            print(f"{guest.name}: {guest.marker} after {ready:.1f} s: {guest.marker_figures}")
        yield Booted(lan, guests)
    except V86Error as exc:
        pytest.fail(f"{exc}\n--- dnsmasq log tail:\n{lan.dnsmasq_log()[-1500:]}")
    finally:
        for guest in guests.values():
            guest.close()
        lan.close()


def ping(guest: V86Guest, address: str, count: int = 3) -> tuple[int, int, str]:
    out, status = guest.run(f"ping -c {count} -W 3 {address}", timeout_s=60)
    m = RECEIVED_RE.search(out)
    assert m, f"{guest.name}: ping {address} printed no summary (exit {status}):\n{out}"
    return int(m.group(1)), int(m.group(2)), out


def test_v86_guest_gets_a_dhcp_lease_from_dnsmasq_through_the_relay_and_pings_it(booted: Booted) -> None:
    net = booted.network("v86a")
    assert net["how"].startswith("dhcp"), f"v86a fell back to a static address: {net}\n{booted.lan.dnsmasq_log()[-1500:]}"
    octets = [int(x) for x in net["ip"].split(".")]
    assert ".".join(map(str, octets[:3])) == SUBNET and RANGE[0] <= octets[3] <= RANGE[1], net
    assert net["prefix"] == 24
    # dnsmasq recorded the lease for v86's NE2000 MAC (v86 makes it 00:22:15:xx:xx:xx)
    assert net["mac"].startswith("00:22:15:"), net
    assert net["mac"] in booted.lan.lease_text().lower(), booted.lan.lease_text()
    guest = booted.guests["v86a"]
    addr, status = guest.run("ip -4 addr show dev eth0")
    assert status == 0 and f"inet {net['ip']}/24" in addr, addr
    sent, received, out = ping(guest, SERVER_IP)
    assert sent == 3 and received >= 2, out
    # the frames really went through our relay and its TAP uplink
    stats = booted.lan.relay_stats()
    assert stats["clients"] == 2, stats
    assert stats["tap"]["rx_frames"] >= 4 and stats["tap"]["tx_frames"] >= 4, stats["tap"]


def test_two_v86_guests_ping_each_other_through_the_relay(booted: Booted) -> None:
    a, b = booted.network("v86a"), booted.network("v86b")
    assert b["how"].startswith("dhcp"), f"v86b fell back to a static address: {b}"
    assert a["ip"] != b["ip"] and a["mac"] != b["mac"], (a, b)
    sent, received, out = ping(booted.guests["v86b"], a["ip"])
    assert sent == 3 and received >= 2, out
    sent, received, out = ping(booted.guests["v86a"], b["ip"])
    assert sent == 3 and received >= 2, out
    stats = booted.lan.relay_stats()
    assert stats["unicast"] > 0, stats
    assert stats["drops"] == 0, stats["totals"]


def test_a_pyv86_guest_and_a_v86_guest_share_the_relay(booted: Booted, tmp_path: Path) -> None:
    """pyv86's own ws:// client and NE2000 beside v86's on one relay: the pyv86 guest (a
    ``pyv86 run`` inside the namespace, booting the same image) gets a lease from dnsmasq
    through the relay and pings a v86 guest, which pings it back."""
    import subprocess
    import sys

    v86 = booted.network("v86a")
    machine = tmp_path / "mixed.toml"
    machine.write_text(
        'version = 1\nname = "mixed"\n[machine]\nmemory = "128M"\n'
        '[boot]\nkernel = "guest:vmlinuz"\ninitrd = "guest:initramfs.cpio.gz"\n'
        '[device.net0]\ntype = "ne2k-pci"\nnetdev = "lan"\n'
        f'[netdev.lan]\nurl = "{booted.lan.relay_url}"\n')
    script = ("udhcpc -i eth0 -s /usr/share/udhcpc/default.script -f -q -n -t 10 -T 3 >/dev/null 2>&1; "
              "echo ADDR $(ip -4 -o addr show dev eth0 | awk '{print $4}') $(cat /sys/class/net/eth0/address); "
              f"ping -c 3 -W 3 {v86['ip']}; "
              "echo LISTEN''ING; sleep 120")  # (the quotes keep the typed line from matching)
    log, errors = tmp_path / "console.log", tmp_path / "stderr.log"
    with open(errors, "wb") as err:
        proc = subprocess.Popen([*booted.lan.netns_prefix, sys.executable, "-m", "pyv86.cli", "run",
                                 "--headless", "--timeout", "900", "--console-log", str(log),
                                 "--exec", script, str(machine)], stdout=subprocess.DEVNULL, stderr=err)
    out = ""
    try:
        deadline = time.monotonic() + 900
        while "LISTENING" not in out:
            assert proc.poll() is None, (f"pyv86 exited ({proc.returncode}): "
                                         f"{errors.read_text(errors='replace')[-1500:]}\n{out[-2000:]}")
            assert time.monotonic() < deadline, f"the pyv86 guest never got through its commands:\n{out[-2000:]}"
            time.sleep(0.5)
            out = log.read_text(errors="replace") if log.exists() else ""
        m = re.search(r"ADDR (\d+\.\d+\.\d+\.\d+)/24 ([0-9a-f:]{17})", out)
        assert m, f"the pyv86 guest got no address through the relay:\n{out[-2000:]}"
        ip, mac = m.group(1), m.group(2)
        assert ip.startswith(SUBNET + ".") and mac in booted.lan.lease_text().lower(), (out[-1500:], booted.lan.lease_text())
        rm = RECEIVED_RE.search(out)
        assert rm and int(rm.group(2)) >= 2, f"pyv86 -> v86 ping failed:\n{out[-2000:]}"
        sent, received, pong = ping(booted.guests["v86a"], ip)
        assert sent == 3 and received >= 2, pong
        assert booted.lan.relay_stats()["clients"] == 3
    finally:
        proc.kill()
        proc.wait(10)
