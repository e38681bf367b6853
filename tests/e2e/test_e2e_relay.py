"""Issue 7 end to end with real Linux guests: ``pyv86 relay serve`` and ``tap:``.

Everything lives in a namespace the test creates: a bridge with dnsmasq, a relay server
uplinked to it through a TAP, and the guests' own sockets and TAPs (the machines are built
on a thread switched into the namespace). Two guests through the relay get leases and
ping each other and the server; a third guest on a ``tap:`` netdev gets a lease and pings
the server and a relay guest.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

import e2e_net as net
from e2e_netns import Lan

pytestmark = [pytest.mark.linux, pytest.mark.timeout(1500)]  # the first one may boot (~5 min)


@pytest.fixture
def relay_lan(tmp_path: Path) -> Iterator[tuple[Lan, str]]:
    """The LAN with ``pyv86 relay serve`` on the namespace's 127.0.0.1, uplinked to the bridge."""
    with Lan(tmp_path) as lan:
        relay = lan.start_relay("e2eup")
        assert "with uplink tap:" in relay.announce, f"relay without its TAP uplink: {relay.announce!r}"
        yield lan, relay.url


def test_two_guests_through_the_relay_and_one_on_tap(guests: Any, relay_lan: tuple[Lan, str]) -> None:
    lan, url = relay_lan
    # the guests keep the MAC they booted with; the wire sees a new one per clone
    relayed = [guests.restore(f"ws{i}", url, mac_translation=True, build=lan.run_in) for i in (1, 2)]
    tap = lan.tap_name()
    tapped = guests.restore("tap", f"tap:{tap}", build=lan.run_in)  # default: a new MAC ...
    lan.enslave(tap)
    net.reload_driver(tapped, "modprobe")  # ... which the guest takes by reloading its driver
    leases = [net.udhcpc(g) for g in (*relayed, tapped)]
    assert len(set(leases)) == 3, f"leases {leases}"
    table = lan.lease_macs()
    wire = [net.nic_macs(g)[1] for g in (*relayed, tapped)]
    assert [table.get(m) for m in wire] == leases, f"dnsmasq leases {table}; wire MACs {wire}"
    net.ping(relayed[0], leases[1])
    net.ping(relayed[1], Lan.SERVER)
    net.ping(tapped, Lan.SERVER)
    net.ping(tapped, leases[0])
