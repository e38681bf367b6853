"""Issue 6 end to end: two real Linux guests (ne2k-pci driver) on one ``hub:`` switch.

Both guests are restored from the one booted image in the default MAC mode, so each NIC
gets a new random MAC; the guests reload their driver (``rmmod``/``modprobe``) to pick it
up, which is how clones stop colliding (issue 8's workaround), and take the addresses
10.0.2.15 and 10.0.2.16. Then: IPv4 ping, IPv6 link-local ping, ``ip link`` down/up,
driver reload and PCI unbind/bind keep the link working, and guest A's pcap holds the
ARP and ICMP exchange between the two MACs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import e2e_net as net
from pyv86.net.pcap import read_pcap

pytestmark = [pytest.mark.linux, pytest.mark.timeout(1500)]  # the first one may boot (~5 min)

IP_A, IP_B = "10.0.2.15", "10.0.2.16"


@pytest.fixture(scope="module")
def pair(module_guests: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    url = net.hub_url()
    pcap = tmp_path_factory.mktemp("pcap") / "a.pcap"
    a = module_guests.restore("a", url, pcap=str(pcap))
    b = module_guests.restore("b", url)
    macs = {}
    for guest, ip in ((a, IP_A), (b, IP_B)):
        nic_guest, nic_wire = net.nic_macs(guest)
        assert nic_guest == nic_wire != "52:54:00:e2:e0:01", "default mode gives the NIC a new MAC"
        macs[guest.name] = net.reload_driver(guest, "modprobe", f"{ip}/24")
        assert macs[guest.name] == nic_guest, (
            f"{guest.name}: after rmmod/modprobe the driver uses {macs[guest.name]}, the NIC has {nic_guest}")
    assert macs["a"] != macs["b"]
    return {"a": a, "b": b, "macs": macs, "pcap": pcap}


def test_ipv4_ping_between_two_guests(pair: dict[str, Any]) -> None:
    net.ping(pair["a"], IP_B)
    net.ping(pair["b"], IP_A)


def test_ipv6_link_local_ping(pair: dict[str, Any]) -> None:
    a, b = pair["a"], pair["b"]
    ll_b = net.link_local(b)
    assert ll_b == net.eui64_link_local(pair["macs"]["b"])
    net.link_local(a)
    net.ping(a, f"{ll_b}%eth0", v6=True)


def test_pcap_shows_arp_and_icmp_between_the_two_macs(pair: dict[str, Any]) -> None:
    a, b = pair["a"], pair["b"]
    mac_a, mac_b = (net.parse_mac(pair["macs"][n]) for n in ("a", "b"))
    a.sh("ip neigh flush dev eth0")
    start = len(read_pcap(pair["pcap"]))
    net.ping(a, IP_B, count=2)
    a.machine.netdevs["lan"].writer.flush()
    frames = [r.frame for r in read_pcap(pair["pcap"])[start:]]
    seen = net.summarize(frames)
    arp_req = [f for f in frames if (x := net.arp_fields(f)) and x[0] == 1 and f[6:12] == mac_a
               and x[1] == mac_a and x[2] == net.ip4(IP_A) and x[4] == net.ip4(IP_B)]
    arp_rep = [f for f in frames if (x := net.arp_fields(f)) and x[0] == 2 and f[6:12] == mac_b
               and f[0:6] == mac_a and x[1] == mac_b and x[2] == net.ip4(IP_B)]
    echo_req = [f for f in frames if net.icmp4(f) == (net.ip4(IP_A), net.ip4(IP_B), 8)
                and f[6:12] == mac_a and f[0:6] == mac_b]
    echo_rep = [f for f in frames if net.icmp4(f) == (net.ip4(IP_B), net.ip4(IP_A), 0)
                and f[6:12] == mac_b and f[0:6] == mac_a]
    assert arp_req and arp_req[0][0:6] == b"\xff" * 6, f"no ARP request from A for B:\n{seen}"
    assert arp_rep, f"no ARP reply from B to A:\n{seen}"
    assert len(echo_req) >= 2 and len(echo_rep) >= 2, f"echo requests/replies missing:\n{seen}"
    assert frames.index(arp_req[0]) < frames.index(echo_req[0]) < frames.index(echo_rep[0])


def test_link_down_up_keeps_networking(pair: dict[str, Any]) -> None:
    a, b = pair["a"], pair["b"]
    a.sh("ip link set eth0 down && ip link set eth0 up")
    net.ping(a, IP_B)
    net.link_local(a)
    net.ping(b, f"{net.link_local(a)}%eth0", v6=True)


@pytest.mark.parametrize("how", ["modprobe", "unbind"])
def test_driver_reload_keeps_networking(pair: dict[str, Any], how: str) -> None:
    a, b = pair["a"], pair["b"]
    mac = net.reload_driver(b, how, f"{IP_B}/24")
    assert mac == pair["macs"]["b"], f"after {how} the NIC's MAC changed: {mac}"
    net.ping(a, IP_B)
    net.ping(b, IP_A)
