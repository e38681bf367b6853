"""Issue 8 end to end: clones of one state image on one ``hub:``, v86's MAC options, DHCP.

The hub is bridged (in-process) to a TAP inside a namespace the test creates, where
dnsmasq serves 10.99.0.50-99. Two clones restored at once from the booted image:

* default: each NIC gets a new random MAC; after ``rmmod``/``modprobe`` or PCI
  unbind/bind in each guest, the guests use them, get different leases and reach the
  server and each other;
* ``mac_address_translation``: the guests keep the saved MAC and need no driver reload;
  the wire (dnsmasq's lease file, the hub) sees two different MACs;
* ``preserve_mac_from_state_image``: the MAC is the saved one.

And a shell loop counting in the guest across a live save continues in the restored
clone with no jump in guest time.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

import pytest

import e2e_net as net
from e2e_image import SAVED_MAC
from e2e_netns import Lan

pytestmark = [pytest.mark.linux, pytest.mark.timeout(1500)]  # the first one may boot (~5 min)


@pytest.fixture(scope="module")
def lan(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lan]:
    lan = Lan(tmp_path_factory.mktemp("lan"))
    try:
        yield lan
    finally:
        lan.close()


@pytest.fixture
def hub(lan: Lan) -> str:
    url = net.hub_url()
    lan.uplink_hub(url)
    return url


def _leases_differ(lan: Lan, clones: list[Any], leases: list[str], wire_macs: list[str]) -> None:
    assert len(set(leases)) == 2, f"the clones got the same lease {leases}"
    for ip in leases:
        assert ip.startswith(Lan.PREFIX) and 50 <= int(ip.rsplit(".", 1)[1]) <= 99, ip
    table = lan.lease_macs()
    for mac, ip in zip(wire_macs, leases):
        assert table.get(mac) == ip, f"dnsmasq leased {table}, expected {mac} -> {ip}"
    for guest in clones:
        net.ping(guest, Lan.SERVER)


@pytest.mark.parametrize("how", ["modprobe", "unbind"])
def test_default_mode_clones_get_new_macs_and_different_leases(guests: Any, lan: Lan, hub: str,
                                                               how: str) -> None:
    clones = [guests.restore(f"{how}{i}", hub) for i in (1, 2)]
    nic = [net.nic_macs(g)[0] for g in clones]
    assert nic[0] != nic[1] and SAVED_MAC not in nic, f"default mode: NIC MACs {nic}"
    for guest in clones:  # the driver still has the saved MAC until it is reloaded
        assert net.guest_mac(guest) == SAVED_MAC
    used = [net.reload_driver(g, how) for g in clones]
    assert used == nic, f"after {how} the guests use {used}, the NICs have {nic}"
    leases = [net.udhcpc(g) for g in clones]
    _leases_differ(lan, clones, leases, used)
    net.ping(clones[0], leases[1])


def test_mac_translation_needs_no_guest_action(guests: Any, lan: Lan, hub: str) -> None:
    clones = [guests.restore(f"tr{i}", hub, mac_translation=True) for i in (1, 2)]
    wire = []
    for guest in clones:
        guest_side, wire_side = net.nic_macs(guest)
        assert guest_side == SAVED_MAC != wire_side
        assert net.guest_mac(guest) == SAVED_MAC
        wire.append(wire_side)
    assert wire[0] != wire[1]
    leases = [net.udhcpc(g) for g in clones]
    _leases_differ(lan, clones, leases, wire)
    assert SAVED_MAC not in lan.lease_macs(), "the saved MAC reached the wire"
    net.ping(clones[0], leases[1])
    net.ping(clones[1], leases[0])


def test_preserve_mac_keeps_the_saved_mac(guests: Any, lan: Lan, hub: str) -> None:
    guest = guests.restore("keep", hub, preserve_mac=True)
    assert net.nic_macs(guest) == (SAVED_MAC, SAVED_MAC)
    assert net.guest_mac(guest) == SAVED_MAC
    lease = net.udhcpc(guest)
    assert lan.lease_macs().get(SAVED_MAC) == lease
    net.ping(guest, Lan.SERVER)


def test_counting_loop_continues_across_a_save(guests: Any, tmp_path: Path) -> None:
    first = guests.restore("count1")
    first.sh("(i=0; while [ $i -lt 100000 ]; do echo \"$i $(cut -d' ' -f1 /proc/uptime)\" >> /tmp/count; "
             "i=$((i+1)); usleep 100000; done) >/dev/null 2>&1 &")
    time.sleep(2.0)
    image = tmp_path / "counting.pyv86state"
    first.save(image)  # live: between two slices, the machine keeps running
    first.close()
    time.sleep(3.0)  # wall time that must not show up in the clone's guest time
    clone = guests.restore("count2", image=image)
    time.sleep(2.0)
    lines = clone.sh("cat /tmp/count").split("\n")
    entries = [(int(i), float(t)) for i, t in (line.split() for line in lines if line.strip())]
    numbers = [i for i, _ in entries]
    assert numbers == list(range(len(numbers))), f"the count has gaps: {numbers}"
    gaps = [b[1] - a[1] for a, b in zip(entries, entries[1:])]
    assert len(entries) >= 20, f"the loop did not keep counting in the clone: {entries}"
    assert max(gaps) < 1.5, f"guest time jumped by {max(gaps):.2f} s between two counts: {entries}"
