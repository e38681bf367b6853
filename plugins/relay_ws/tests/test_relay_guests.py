"""Linux guests on the relay: two guests in the real v86 (its own relay client, its NE2000)
get DHCP leases from dnsmasq through `pyv86 relay serve` uplinked to a TAP, then ping each
other through the relay's switch and ping the host side of the bridge.

v86 (pyv86.peers.v86, under Node.js) runs the guests because it boots the pyv86 guest image
in about two minutes; a pyv86 guest does not reach its shell in a test-sized time yet.
"""
from __future__ import annotations

import re

import pytest

from relayhelp import DhcpLan, wait_for


def v86_guest_or_fail():  # type: ignore[no-untyped-def]
    from pyv86 import paths
    from pyv86.peers.v86 import V86Error, V86Guest, check_host

    kernel, initrd = paths.guest_dir() / "vmlinuz", paths.guest_dir() / "initramfs.cpio.gz"
    if not (kernel.is_file() and initrd.is_file()):
        pytest.fail("this test needs the guest image: run `pyv86 guest build`")
    try:
        check_host()
    except V86Error as exc:
        pytest.fail(str(exc))
    return V86Guest, kernel, initrd


@pytest.mark.linux
@pytest.mark.netns
@pytest.mark.slow
def test_two_v86_guests_lease_through_a_tap_uplinked_relay_and_ping_each_other(netns, tmp_path):
    V86Guest, kernel, initrd = v86_guest_or_fail()
    lan = DhcpLan(netns, str(tmp_path))
    guests = [V86Guest(kernel, initrd, relay_url=lan.URL, prefix=["ip", "netns", "exec", lan.ns],
                       name=f"v86-{i}") for i in range(2)]
    try:
        for guest in guests:
            guest.start()
        for guest in guests:
            guest.wait_ready(900)
        addresses = []
        for guest in guests:
            # the image's /init tried DHCP for 3 s at boot, before v86's relay client had
            # connected (it connects on the first frame); ask again with the image's hook
            out, status = guest.run("udhcpc -i eth0 -s /usr/share/udhcpc/default.script -f -n -q "
                                    "-t 10 -T 2 >/dev/null 2>&1; ip -4 -o addr show dev eth0", 120)
            found = re.search(r"inet (10\.78\.0\.\d+)/24", out)
            assert found, f"{guest.name}: no lease: {out!r}"
            addresses.append(found.group(1))
        assert addresses[0] != addresses[1]
        out, status = guests[0].run(f"ping -c 3 -W 5 {addresses[1]}", 90)
        assert status == 0 and "3 packets received" in out, out
        out, status = guests[1].run("ping -c 2 -W 5 10.78.0.1", 60)
        assert status == 0, out
        assert wait_for(lambda: all(a in lan.lease_text() for a in addresses), 5)
        stats = lan.stats()
        assert stats["clients"] == 2 and stats["unicast"] > 0
        assert stats["drops"] == 0, stats["totals"]
    finally:
        for guest in guests:
            guest.close()
