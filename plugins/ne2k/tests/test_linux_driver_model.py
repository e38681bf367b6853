"""Two machines on a ``hub:``, each NIC driven by a model of Linux's ne2k-pci/lib8390 driver.

The model (pyv86_ne2k.driver) makes the same port accesses as the kernel driver: probe,
PROM read, NS8390_init, the multicast list, two TX slots with the RDC poll, the interrupt
loop and ei_receive. Any "mismatched read page pointers", "bogus packet size", "mismap"
or "Card failure" line the kernel would print fails the test.
"""
from __future__ import annotations

import pytest

from pyv86.net.frame import BROADCAST, multicast_hash_index
from pyv86_ne2k.driver import LinuxNe2kModel

from ne2k_testlib import NIC_TEXT, build_machine, make_plugins, unique_hub

BAD_MESSAGES = ("mismatched", "bogus", "mismap", "Card failure", "timeout", "busy", "inconsistency",
                "did not complete", "Too much work", "unexpected")


class Vm:
    def __init__(self, name: str, hub: str) -> None:
        self.machine = build_machine(NIC_TEXT.format(name=name, url=f"hub:{hub}?scope=process", options=""),
                                     make_plugins())
        self.nic = self.machine.devices["net0"]
        self.eth0 = LinuxNe2kModel(self.machine, self.nic.io_base, irq_pending=lambda: self.nic.irq_level)

    def modprobe(self) -> None:
        self.eth0 = LinuxNe2kModel(self.machine, self.nic.io_base, irq_pending=lambda: self.nic.irq_level)
        self.eth0.probe()
        self.eth0.open()

    def check_dmesg(self) -> None:
        bad = [m for m in self.eth0.messages if any(b in m for b in BAD_MESSAGES)]
        assert not bad, bad

    def close(self) -> None:
        self.machine.shutdown("test")


@pytest.fixture
def pair():
    hub = unique_hub("drv")
    a, b = Vm("a", hub), Vm("b", hub)
    yield a, b
    a.close()
    b.close()


def ipv4_frame(dst: bytes, src: bytes, seq: int, size: int = 98) -> bytes:
    return dst + src + b"\x08\x00" + bytes([0x45, 0]) + size.to_bytes(2, "big") + seq.to_bytes(4, "big") \
        + bytes((seq + i) & 0xFF for i in range(size - 22))


def exchange(a: Vm, b: Vm, frames: list[bytes]) -> list[bytes]:
    got = []
    b.eth0.on_receive = got.append
    for f in frames:
        while not a.eth0.start_xmit(f):
            a.eth0.poll()
            b.eth0.poll()
        a.eth0.poll()
        b.eth0.poll()
    for _ in range(5):
        a.eth0.poll()
        b.eth0.poll()
    b.eth0.on_receive = None
    return got


def test_probe_prints_the_found_line_with_the_mac(pair):
    a, _b = pair
    mac = a.eth0.probe()
    assert mac == a.nic.wire_mac
    assert a.eth0.messages == [f"ne2k-pci: RealTek RTL-8029 found at {a.nic.io_base:#x}, "
                               + ":".join(f"{x:02x}" for x in mac)]


def test_ping_both_ways(pair):
    a, b = pair
    a.modprobe()
    b.modprobe()
    there = [ipv4_frame(b.eth0.mac, a.eth0.mac, i) for i in range(20)]
    back = [ipv4_frame(a.eth0.mac, b.eth0.mac, 1000 + i) for i in range(20)]
    assert exchange(a, b, there) == there
    assert exchange(b, a, back) == back
    assert a.eth0.stats["tx_packets"] == 20 and b.eth0.stats["rx_packets"] == 20
    a.check_dmesg()
    b.check_dmesg()


def test_all_frame_sizes_cross_intact(pair):
    a, b = pair
    a.modprobe()
    b.modprobe()
    frames = [ipv4_frame(b.eth0.mac, a.eth0.mac, n, size=n) for n in range(60, 1515, 23)] + \
             [ipv4_frame(b.eth0.mac, a.eth0.mac, 1514, size=1514)]
    assert exchange(a, b, frames) == frames
    b.check_dmesg()


def test_ipv6_neighbour_solicitation_reaches_the_solicited_node_group(pair):
    a, b = pair
    a.modprobe()
    b.modprobe()
    snm = bytes.fromhex("3333ff") + b.eth0.mac[3:]
    b.eth0.set_multicast_list([bytes.fromhex("333300000001"), snm, bytes.fromhex("01005e000001")])
    ns = snm + a.eth0.mac + b"\x86\xdd" + bytes(72)
    joined = [bytes.fromhex("333300000001"), snm, bytes.fromhex("01005e000001")]
    # a group of another host whose hash bucket differs from all joined ones (the filter is a hash)
    foreign = next(g for g in (bytes.fromhex("3333ff%06x" % n) for n in range(1, 1000))
                   if multicast_hash_index(g) not in {multicast_hash_index(j) for j in joined})
    other_group = foreign + a.eth0.mac + b"\x86\xdd" + bytes(72)
    assert exchange(a, b, [ns, other_group]) == [ns]
    b.check_dmesg()


def test_link_down_drops_and_link_up_works_again(pair):
    a, b = pair
    a.modprobe()
    b.modprobe()
    b.eth0.close()
    assert exchange(a, b, [ipv4_frame(b.eth0.mac, a.eth0.mac, 1)]) == []
    b.eth0.open()
    f = ipv4_frame(b.eth0.mac, a.eth0.mac, 2)
    assert exchange(a, b, [f]) == [f]
    b.check_dmesg()


def test_rmmod_modprobe_and_unbind_bind_leave_networking_working(pair):
    a, b = pair
    a.modprobe()
    b.modprobe()
    for _ in range(2):
        b.eth0.close()  # rmmod / unbind: the driver closes the device
        b.modprobe()  # modprobe / bind: probe (reset port, PROM) and open again
        f = ipv4_frame(b.eth0.mac, a.eth0.mac, 7)
        assert exchange(a, b, [f]) == [f]
        g = ipv4_frame(a.eth0.mac, b.eth0.mac, 8)
        assert exchange(b, a, [g]) == [g]
    b.check_dmesg()


def test_broadcast_reaches_the_other_vm_but_not_the_sender(pair):
    a, b = pair
    a.modprobe()
    b.modprobe()
    arp = BROADCAST + a.eth0.mac + b"\x08\x06" + bytes(28)
    got_a: list[bytes] = []
    a.eth0.on_receive = got_a.append
    assert exchange(a, b, [arp]) == [arp + bytes(18)]
    assert got_a == []


def test_promiscuous_sees_foreign_unicast(pair):
    a, b = pair
    a.modprobe()
    b.modprobe()
    b.eth0.set_multicast_list(promisc=True)
    assert b.nic.chip.state.rcr == 0x1C
    foreign = ipv4_frame(bytes.fromhex("0a0b0c0d0e0f"), a.eth0.mac, 5)
    assert exchange(a, b, [foreign]) == [foreign]


def test_flood_every_frame_delivered_or_counted(pair):
    """5,000 back-to-back frames while the receiver services its interrupt only now and then."""
    a, b = pair
    a.modprobe()
    b.modprobe()
    got: list[bytes] = []
    b.eth0.on_receive = got.append
    sent = 0
    for i in range(5000):
        frame = ipv4_frame(b.eth0.mac, a.eth0.mac, i, size=600)
        b.nic.port.inject(frame)  # the host side pushes faster than the guest reads
        sent += 1
        if i % 97 == 0:
            b.eth0.poll()
    for _ in range(200):
        if not b.eth0.poll() and not b.nic.port.queued:
            break
    assert b.nic.port.queued == 0
    # lib8390 reads at most 9 frames per interrupt and acks PRX: what is left in the ring
    # waits for the next arrival, as on real hardware; send one more frame from the peer
    last = ipv4_frame(b.eth0.mac, a.eth0.mac, 99999)
    a.eth0.start_xmit(last)
    for _ in range(20):
        a.eth0.poll()
        b.eth0.poll()
    b.eth0.read_counters()
    missed = b.eth0.stats["rx_missed_errors"]
    assert got[-1] == last  # the link still works
    assert len(got) + missed == sent + 1, (len(got), missed, b.nic.port.counters)
    assert missed == b.nic.port.counters.rx_queue_drops > 0
    assert b.eth0.stats["rx_over_errors"] > 0
    assert len(set(got)) == len(got)  # nothing duplicated or overwritten
    seqs = [int.from_bytes(f[18:22], "big") for f in got]
    assert seqs == sorted(seqs)  # in order
    b.check_dmesg()


def test_machine_file_pcap_records_the_exchange(tmp_path):
    hub = unique_hub("pcap")
    text = NIC_TEXT.format(name="a", url=f"hub:{hub}?scope=process", options="").replace(
        'url = "hub:', f'pcap = "{tmp_path / "a.pcap"}"\nurl = "hub:')
    a = Vm.__new__(Vm)
    a.machine = build_machine(text, make_plugins())
    a.nic = a.machine.devices["net0"]
    a.eth0 = LinuxNe2kModel(a.machine, a.nic.io_base, irq_pending=lambda: a.nic.irq_level)
    b = Vm("b", hub)
    try:
        a.modprobe()
        b.modprobe()
        there = [ipv4_frame(b.eth0.mac, a.eth0.mac, i) for i in range(5)]
        back = [ipv4_frame(a.eth0.mac, b.eth0.mac, 100 + i) for i in range(5)]
        assert exchange(a, b, there) == there
        assert exchange(b, a, back) == back
    finally:
        a.close()
        b.close()
    from pyv86.net.pcap import read_pcap
    assert [r.frame for r in read_pcap(tmp_path / "a.pcap")] == there + back


def test_a_burst_from_the_hub_waits_in_the_port_and_is_dropped_there_not_overrun(pair):
    """600 frames from the peer while the receiver does not service its NIC: what does not
    fit waits in the hub port's inbox (the NIC's port holds the hub back); beyond that the
    hub drops and counts. The NIC never overflows, so Linux sees no overrun (which would
    stop the chip and lose the frames of the next 10 ms) and gets an ordered prefix."""
    a, b = pair
    a.modprobe()
    b.modprobe()
    got: list[bytes] = []
    b.eth0.on_receive = got.append
    sent = [ipv4_frame(b.eth0.mac, a.eth0.mac, i, size=1000) for i in range(600)]
    for f in sent:
        while not a.eth0.start_xmit(f):
            a.eth0.poll()             # a's TX interrupts only: b is not serviced
    hub_port = b.nic.port.backend
    assert b.nic.port.counters.rx_pauses >= 1 and hub_port.handoff.paused
    for _ in range(400):
        if not b.eth0.poll() and not b.nic.port.queued and not hub_port.handoff.pending:
            break
    # lib8390 leaves what it did not read in one interrupt for the next arrival: one more
    last = ipv4_frame(b.eth0.mac, a.eth0.mac, 99999)
    got += exchange(a, b, [last])
    b.eth0.read_counters()
    dropped = hub_port.dropped
    assert got[-1] == last                                # the link still works
    assert dropped > 0 and len(got) - 1 + dropped == len(sent), (len(got), dropped)
    seqs = [sent.index(f) for f in got[:-1]]             # each one sent, whole
    assert seqs == sorted(set(seqs)) and seqs[:200] == list(range(200))  # in order, no duplicates
    assert b.nic.port.counters.rx_queue_drops == 0
    assert b.eth0.stats["rx_over_errors"] == 0 and b.eth0.stats["rx_missed_errors"] == 0
    # (frames keep arriving while the handler reads: the model, unlike Linux with its default
    # message level, reports the interrupt loop's MAX_SERVICE limit; nothing else may appear)
    bad = [m for m in b.eth0.messages if any(x in m for x in BAD_MESSAGES)
           and not m.startswith("Too much work at interrupt, status 0x01")]
    assert not bad, bad
