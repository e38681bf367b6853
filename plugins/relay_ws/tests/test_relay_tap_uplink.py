"""A relay uplinked to a TAP on a bridge reaches dnsmasq: a client gets a DHCP lease."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from relayhelp import DhcpLan, wait_for

HERE = Path(__file__).parent


@pytest.mark.netns
def test_relay_with_tap_uplink_on_a_bridge_gets_a_dhcp_lease_from_dnsmasq(netns, tmp_path):
    lan = DhcpLan(netns, str(tmp_path))
    assert lan.announce.startswith("relay: serving ws://127.0.0.1:8086/ with uplink tap:"), lan.announce
    result = subprocess.run(["ip", "netns", "exec", lan.ns, sys.executable, str(HERE / "dhcp_probe.py"),
                             lan.URL], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lease = json.loads(result.stdout)
    octets = [int(x) for x in lease["ack"]["yiaddr"].split(".")]
    assert octets[:3] == [10, 78, 0] and 50 <= octets[3] <= 99
    assert lease["offer"]["server"] == "10.78.0.1" and lease["ack"]["yiaddr"] == lease["offer"]["yiaddr"]
    assert wait_for(lambda: lease["mac"] in lan.lease_text(), 5)
    stats = lan.stats()
    assert stats["tap"]["rx_frames"] >= 2 and stats["tap"]["tx_frames"] >= 2
    lan.relay.terminate()
    assert lan.relay.wait(10) == 0
