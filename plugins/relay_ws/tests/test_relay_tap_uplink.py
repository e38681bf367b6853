"""A relay uplinked to a TAP on a bridge reaches dnsmasq: a client gets a DHCP lease."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from relayhelp import sh, wait_for

HERE = Path(__file__).parent
PYV86 = str(Path(sys.executable).with_name("pyv86"))


def require_dnsmasq() -> str:
    path = shutil.which("dnsmasq") or ("/usr/sbin/dnsmasq" if Path("/usr/sbin/dnsmasq").exists() else None)
    if path is None:
        pytest.fail("this test needs dnsmasq: apt-get install dnsmasq-base")
    return path


@pytest.mark.netns
def test_relay_with_tap_uplink_on_a_bridge_gets_a_dhcp_lease_from_dnsmasq(netns, tmp_path):
    try:
        import pyv86_relay_tap  # noqa: F401
    except ImportError:
        pytest.fail("this test needs the pyv86-relay-tap plugin: pip install -e plugins/relay_tap")
    dnsmasq = require_dnsmasq()
    ns = netns.add("dh")
    br, tap = netns.ifname("t7br"), netns.ifname("t7up")
    sh("ip", "-n", ns, "link", "add", br, "type", "bridge")
    sh("ip", "-n", ns, "addr", "add", "10.78.0.1/24", "dev", br)
    sh("ip", "-n", ns, "link", "set", br, "up")
    relay = netns.popen(ns, PYV86, "relay", "serve", "--port", "8086", "--tap", tap, "--bridge", br,
                        stderr=subprocess.PIPE, text=True)
    line = relay.stderr.readline()
    assert line.startswith("relay: serving ws://127.0.0.1:8086/ with uplink tap:"), line
    leases = tmp_path / "leases"
    server = netns.popen(ns, dnsmasq, "--no-daemon", "--conf-file=/dev/null", f"--interface={br}",
                         "--bind-interfaces", "--except-interface=lo", "--port=0",
                         "--dhcp-range=10.78.0.50,10.78.0.99,255.255.255.0,1h",
                         f"--dhcp-leasefile={leases}", f"--pid-file={tmp_path / 'dnsmasq.pid'}",
                         "--user=root", "--group=root", "--log-dhcp",
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert wait_for(lambda: server.poll() is not None or
                    ":67 " in sh("ip", "netns", "exec", ns, "ss", "-Huln").stdout, 10)
    assert server.poll() is None, server.stdout.read()
    result = subprocess.run(["ip", "netns", "exec", ns, sys.executable, str(HERE / "dhcp_probe.py"),
                             "ws://127.0.0.1:8086/"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr + (server.stdout.read() if server.poll() is not None else "")
    lease = json.loads(result.stdout)
    octets = [int(x) for x in lease["ack"]["yiaddr"].split(".")]
    assert octets[:3] == [10, 78, 0] and 50 <= octets[3] <= 99
    assert lease["offer"]["server"] == "10.78.0.1" and lease["ack"]["yiaddr"] == lease["offer"]["yiaddr"]
    assert wait_for(lambda: leases.exists() and lease["mac"] in leases.read_text(), 5)
    stats = json.loads(sh("ip", "netns", "exec", ns, sys.executable, "-c",
                          "import urllib.request;print(urllib.request.urlopen("
                          "'http://127.0.0.1:8086/stats').read().decode())").stdout)
    assert stats["tap"]["rx_frames"] >= 2 and stats["tap"]["tx_frames"] >= 2
    relay.terminate()
    assert relay.wait(10) == 0
