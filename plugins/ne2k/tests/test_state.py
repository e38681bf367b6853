"""ne2k-pci state: every register, PAR/MAR/PROM/wire MAC and the ring survive save -> restore."""
from __future__ import annotations

import copy

import attrs
import pytest

from pyv86.errors import StateError
from pyv86.testing.state import assert_state_roundtrip
from pyv86_ne2k.pci import Ne2kPciState

from ne2k_testlib import MAC, NIC_TEXT, OTHER, Regs, build_machine, frame_to, make_plugins
from ne2k_testlib import ring_read


def busy_nic(regs: Regs, nic) -> None:
    regs.start_receiver(par=OTHER)
    for i, b in enumerate(bytes.fromhex("0102040810204080")):
        regs.wr(1, 0x08 + i, b)
    regs.outb(0x0F, 0x3F)
    for i in range(3):
        nic.port.inject(frame_to(OTHER, 200 + i))
    regs.remote(0x4123, 77, 0x0A)


def test_generic_roundtrip(regs, nic):
    busy_nic(regs, nic)
    assert_state_roundtrip(nic)


def test_state_has_datasheet_names_and_separate_macs(nic):
    names = {f.name for f in attrs.fields(Ne2kPciState)}
    assert {"cr", "isr", "imr", "dcr", "tcr", "rcr", "pstart", "pstop", "bnry", "curr", "tpsr", "tbcr",
            "rsar", "rbcr", "par", "mar", "prom_mac", "wire_mac", "ram", "pci_config"} <= names
    assert Ne2kPciState.VERSION >= 1


def test_save_restore_save_is_identical_and_unread_frames_survive(regs, nic):
    busy_nic(regs, nic)
    saved = copy.deepcopy(nic.save())
    other = build_machine(NIC_TEXT.format(name="m2", url="null:", options=""), make_plugins())
    try:
        nic2 = other.devices["net0"]
        nic2.restore(copy.deepcopy(saved))
        again = nic2.save()
        assert attrs.asdict(again) == attrs.asdict(saved)
        regs2 = Regs(other, nic2)
        page, got = 0x4C, []
        while page != regs2.rd(1, 0x07):
            (_s, nxt, _c), data = ring_read(regs2, page)
            got.append(data)
            page = nxt
        assert got == [frame_to(OTHER, 200 + i) for i in range(3)]
        assert nic2.irq_level  # PRX pending and enabled: the line is re-derived
        line = other.pci.config_read(5, 0, 0x3C, 1)
        assert other.irqs[line].level
    finally:
        other.shutdown("test")


def test_restore_keeps_guest_and_wire_macs_apart(regs, nic):
    regs.start_receiver(par=OTHER)
    state = copy.deepcopy(nic.save())
    state.wire_mac = bytes.fromhex("0a0000000001")
    nic.restore(state)
    assert nic.guest_mac == OTHER
    assert nic.chip.state.prom_mac == MAC
    assert nic.wire_mac == bytes.fromhex("0a0000000001")


def test_restore_forgets_host_queue(regs, nic):
    regs.start_receiver()
    regs.outb(0x03, 0x4D)
    nic.port.inject(frame_to(MAC))
    assert nic.port.queued == 1
    nic.restore(copy.deepcopy(nic.save()))
    assert nic.port.queued == 0


@pytest.mark.parametrize("field, value, message", [
    ("isr", 256, "isr = 256 is not a byte"),
    ("cr", -1, "cr = -1 is not a byte"),
    ("rbcr", 0x10000, "rbcr = 65536 is not a 16-bit value"),
    ("par", b"\x00" * 5, "par must be 6 bytes"),
    ("mar", "nope", "mar must be 8 bytes"),
    ("ram", bytearray(100), "ram must be 16384 bytes, got 100"),
    ("pci_config", b"\x00" * 10, "pci_config must be 256 bytes, got 10"),
])
def test_corrupt_state_is_refused_with_one_line(nic, field, value, message):
    state = copy.deepcopy(nic.save())
    before = attrs.asdict(nic.save())
    setattr(state, field, value)
    with pytest.raises(StateError) as err:
        nic.restore(state)
    assert message in str(err.value) and "ne2k-pci/net0" in str(err.value)
    assert attrs.asdict(nic.save()) == before  # nothing was installed


def test_mac_hook_point_translates_both_directions(regs, nic, wire):
    """A filter on the port sits between the NIC and its backend (the MAC translator's place)."""

    class Swap:
        def __init__(self, guest: bytes, wire_mac: bytes) -> None:
            self.guest, self.wire = guest, wire_mac

        def to_wire(self, frame: bytes) -> bytes:
            return frame.replace(self.guest, self.wire)

        def to_guest(self, frame: bytes) -> bytes:
            return frame.replace(self.wire, self.guest)

    wire_mac = bytes.fromhex("0a1122334455")
    nic.port.add_filter(Swap(MAC, wire_mac))
    regs.start_receiver()
    wire.inject(frame_to(wire_mac, 80))
    assert ring_read(regs, 0x4C)[1] == frame_to(MAC, 80)
    from ne2k_testlib import transmit, upload
    upload(regs, frame_to(OTHER, 60, src=MAC))
    transmit(regs, 60)
    assert wire.take() == [frame_to(OTHER, 60, src=wire_mac)]
