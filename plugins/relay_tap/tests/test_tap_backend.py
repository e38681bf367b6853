"""The tap: backend: URL checks, permission errors, frames with a veth peer, bridges, VXLAN."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pyv86.testing.netns import sh
from pyv86_relay_tap.ifctl import TapError
from pyv86_relay_tap.tap import TapBackend, parse_tap_url
from taphelp import (BCAST, Collector, DirectMachine, SlicingMachine, arp_request, echo_request,
                     is_echo_reply, mac, parse_arp_reply)

HERE = Path(__file__).parent


def test_tap_urls_are_parsed_and_checked():
    assert parse_tap_url("tap:tap0") == ("tap0", {})
    assert parse_tap_url("tap:tap0?bridge=br0&up=0") == ("tap0", {"bridge": "br0", "up": "0"})
    for url, msg in [("tap:", "not a valid interface name"), ("tap:abcdefghijklmnop", "not a valid"),
                     ("tap:t0?colour=red", "unknown option 'colour'"), ("tap:t0?up=yes", "use up=0 or up=1"),
                     ("tap:a/b", "not a valid interface name")]:
        with pytest.raises(TapError, match=msg):
            parse_tap_url(url)


def test_missing_permission_gives_the_one_line_hint():
    code = ("from pyv86_relay_tap.tap import TapBackend\n"
            "try:\n    TapBackend('tap:p7noperm0', None)\n"
            "except Exception as e:\n    print(type(e).__name__ + ': ' + str(e))\n")
    proc = subprocess.run(["setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin",
                           sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip() == (
        "TapError: tap:p7noperm0: permission denied opening /dev/net/tun; run as root or give "
        "CAP_NET_ADMIN / create it with `ip tuntap add p7noperm0 mode tap user $USER`")


def test_a_machine_file_with_tap_reports_the_error_through_pyv86(tmp_path):
    machine = tmp_path / "m.toml"
    machine.write_text('version = 1\n[machine]\nmemory = "16M"\n[netdev.lan]\nurl = "tap:p7noperm1"\n')
    code = ("import sys\nfrom pyv86.cli import main\nsys.exit(main(['run', sys.argv[1], '--timeout', '1']))")
    proc = subprocess.run(["setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin",
                           sys.executable, "-c", code, str(machine)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "tap:p7noperm1: permission denied opening /dev/net/tun" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def tap_with_a_veth_peer(netns, machine) -> TapBackend:  # type: ignore[no-untyped-def]
    """A TapBackend bridged in namespace A to a veth whose peer (10.77.0.2) is in B."""
    a, b = netns.add("ta"), netns.add("tb")
    tap, va, vb, br = netns.ifname("t7t"), netns.ifname("t7a"), netns.ifname("t7b"), netns.ifname("t7br")
    backend = TapBackend(f"tap:{tap}?up=0", machine)
    try:
        sh("ip", "link", "set", tap, "netns", a)
        netns.ip(a, "link", "add", br, "type", "bridge")
        netns.ip(a, "link", "add", va, "type", "veth", "peer", "name", vb, "netns", b)
        for dev in (va, tap):
            netns.ip(a, "link", "set", dev, "master", br, "up")
        netns.ip(a, "link", "set", br, "up")
        netns.ip(b, "addr", "add", "10.77.0.2/24", "dev", vb)
        netns.ip(b, "link", "set", vb, "up")
    except BaseException:
        backend.close()
        raise
    return backend


@pytest.mark.netns
def test_frames_flow_between_the_tap_and_a_veth_peer_in_another_namespace(netns):
    backend = tap_with_a_veth_peer(netns, DirectMachine())
    try:
        got = Collector()
        backend.set_receiver(got)
        request = arp_request(mac(1), "10.77.0.1", "10.77.0.2", padded=True)
        reply = got.wait(lambda f: parse_arp_reply(f, "10.77.0.2"), resend=lambda: backend.send(request))
        peer_mac = reply[22:28]
        assert reply[:6] == mac(1)
        ping = echo_request(mac(1), peer_mac, "10.77.0.1", "10.77.0.2", 0x77, 1, b"pyv86 tap test")
        got.wait(lambda f: is_echo_reply(f, 0x77, 1, b"pyv86 tap test"), resend=lambda: backend.send(ping))
        stats = backend.stats
        assert stats["tx_frames"] >= 2 and stats["rx_frames"] >= 2 and stats["tx_errors"] == 0
    finally:
        backend.close()


@pytest.mark.netns
def test_frames_sent_during_a_cpu_slice_are_written_when_it_ends(netns, monkeypatch):
    from pyv86.net import handoff
    monkeypatch.setattr(handoff, "QUIET_S", 3600.0)   # after the first frame, all is a stream
    machine = SlicingMachine()
    backend = tap_with_a_veth_peer(netns, machine)
    try:
        got = Collector()
        backend.set_receiver(got)
        request = arp_request(mac(1), "10.77.0.1", "10.77.0.2", padded=True)
        got.wait(lambda f: parse_arp_reply(f, "10.77.0.2"), resend=lambda: backend.send(request))
        sent = backend.stats["tx_frames"]
        machine.in_slice = True
        pings = [echo_request(mac(1), mac(9), "10.77.0.1", "10.77.0.2", 0x78, i, b"slice") for i in range(3)]
        for ping in pings:
            backend.send(ping)
        assert backend.stats["tx_frames"] == sent        # held while the slice runs
        machine.end_slice()
        assert backend.stats["tx_frames"] == sent + 3
        backend.send(pings[0])                              # not in a slice: at once
        assert backend.stats["tx_frames"] == sent + 4
    finally:
        backend.close()


@pytest.mark.netns
def test_bridge_option_enslaves_the_tap_and_brings_it_up(netns):
    a, b = netns.add("ta"), netns.add("tb")
    tap, va, vb, br = netns.ifname("t7t"), netns.ifname("t7a"), netns.ifname("t7b"), netns.ifname("t7br")
    netns.ip(a, "link", "add", br, "type", "bridge")
    netns.ip(a, "link", "set", br, "up")
    netns.ip(a, "link", "add", va, "type", "veth", "peer", "name", vb, "netns", b)
    netns.ip(a, "link", "set", va, "master", br, "up")
    netns.ip(b, "addr", "add", "10.77.0.2/24", "dev", vb)
    netns.ip(b, "link", "set", vb, "up")
    proc = sh("ip", "netns", "exec", a, sys.executable, str(HERE / "tap_probe.py"), f"tap:{tap}?bridge={br}",
              "10.77.0.2")
    result = json.loads(proc.stdout)
    assert result["bridge"] == br and result["up"] is True and result["ifname"] == tap
    missing = subprocess.run(["ip", "netns", "exec", a, sys.executable, "-c",
                              f"from pyv86_relay_tap.tap import TapBackend\n"
                              f"TapBackend('tap:{tap}?bridge=nosuchbr0', None)"],
                             capture_output=True, text=True)
    assert f"tap:{tap}: bridge nosuchbr0 does not exist; create it with `ip link add nosuchbr0 type bridge" \
        in missing.stderr


@pytest.mark.netns
def test_vxlan_example_two_hosts_joined_by_a_bridge_and_vxlan(netns):
    """docs/networking.md, "Spanning hosts": each host has br0 = {vxlan42, tap}; the
    hosts are two namespaces whose underlay is a veth pair."""
    hosts = [netns.add("h1"), netns.add("h2")]
    under = [netns.ifname("t7u"), netns.ifname("t7v")]
    addrs = ["192.168.77.1", "192.168.77.2"]
    netns.ip(hosts[0], "link", "add", under[0], "type", "veth", "peer", "name", under[1], "netns", hosts[1])
    backends, taps, collectors = [], [], []
    try:
        for i, host in enumerate(hosts):
            netns.ip(host, "addr", "add", f"{addrs[i]}/24", "dev", under[i])
            netns.ip(host, "link", "set", under[i], "up")
            vx, br, tap = netns.ifname(f"vx{i}"), netns.ifname(f"br{i}"), netns.ifname(f"tp{i}")
            netns.ip(host, "link", "add", vx, "type", "vxlan", "id", "42", "local", addrs[i],
                     "remote", addrs[1 - i], "dstport", "4789", "dev", under[i])
            netns.ip(host, "link", "add", br, "type", "bridge")
            backend = TapBackend(f"tap:{tap}?up=0", DirectMachine())
            backends.append(backend)
            collectors.append(Collector())
            backend.set_receiver(collectors[-1])
            sh("ip", "link", "set", tap, "netns", host)
            for dev in (vx, tap):
                netns.ip(host, "link", "set", dev, "master", br, "up")
            netns.ip(host, "link", "set", br, "up")
            taps.append((host, vx))
        hello = BCAST + mac(1) + b"\x88\xb5" + b"hello over vxlan".ljust(46, b".")
        collectors[1].wait(lambda f: f == hello, resend=lambda: backends[0].send(hello))
        answer = mac(1) + mac(2) + b"\x88\xb5" + b"unicast back".ljust(46, b".")
        collectors[0].wait(lambda f: f == answer, resend=lambda: backends[1].send(answer))
        for host, vx in taps:  # the frames really crossed the VXLAN devices
            info = json.loads(sh("ip", "-n", host, "-s", "-j", "link", "show", vx).stdout)[0]
            assert info["stats64"]["tx"]["packets"] >= 1 and info["stats64"]["rx"]["packets"] >= 1
    finally:
        for backend in backends:
            backend.close()


def test_the_plugin_registers_the_tap_scheme():
    from pyv86.plugins.manager import create_plugin_manager

    plugins = create_plugin_manager(load=["relay_tap"])
    assert "tap" in plugins.net_backends.schemes() and plugins.net_backends.provider("tap") == "relay_tap"
