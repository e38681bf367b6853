"""v86's MAC options applied on restore, with a NIC that has a guest MAC and a wire MAC."""
from __future__ import annotations

import state_helpers as helpers
from pyv86.net.mactranslate import MacTranslator
from pyv86.state import restore_machine, save_machine

SAVED = b"\x52\x54\x00\x00\x00\x01"
PEER = b"\x52\x54\x00\x99\x99\x99"


def arp_from(mac: bytes) -> bytes:
    return (b"\xff" * 6 + mac + b"\x08\x06" + bytes.fromhex("0001080006040001") + mac
            + b"\x0a\0\0\x0f" + bytes(6) + b"\x0a\0\0\x01")


def saved_image(state_machines, tmp_path):
    a = state_machines()
    path = tmp_path / "nic.pyv86state"
    save_machine(a, path)
    return path


def test_default_gives_each_clone_a_new_random_mac(state_machines, tmp_path):
    path = saved_image(state_machines, tmp_path)
    clones = []
    for _ in range(2):
        m = state_machines()
        result = restore_machine(m, path)
        nic = m.devices["nic0"]
        guest, wire = nic.mac_addresses()
        assert guest == wire != SAVED and nic.state.par == guest
        assert not any(isinstance(f, MacTranslator) for f in nic.port.filters)
        assert "default" in result.mac_changes[0]
        clones.append(guest)
    assert clones[0] != clones[1]


def test_preserve_keeps_the_saved_mac(state_machines, tmp_path):
    path = saved_image(state_machines, tmp_path)
    m = state_machines(helpers.MACHINE + "[state]\npreserve_mac_from_state_image = true\n")
    restore_machine(m, path)
    assert m.devices["nic0"].mac_addresses() == (SAVED, SAVED)


def test_translation_keeps_the_guest_mac_and_rewrites_on_the_wire(state_machines, tmp_path):
    path = saved_image(state_machines, tmp_path)
    m = state_machines("mac_address_translation = true\n" + helpers.MACHINE)
    restore_machine(m, path)
    nic = m.devices["nic0"]
    guest, wire = nic.mac_addresses()
    assert guest == SAVED and wire != SAVED and nic.state.par == SAVED
    seen = []
    nic.port.add_observer(lambda direction, frame: seen.append((direction, frame)))
    nic.send(arp_from(SAVED))
    assert seen[0][0] == "tx" and SAVED not in seen[0][1] and seen[0][1][6:12] == wire
    reply = wire + PEER + b"\x08\x06" + bytes.fromhex("0001080006040002") + PEER + b"\x0a\0\0\x01" \
        + wire + b"\x0a\0\0\x0f"
    nic.port.inject(reply)
    assert nic.received and nic.received[-1][:6] == SAVED and nic.received[-1][32:38] == SAVED


def test_translated_machine_saved_again_keeps_both_macs(state_machines, tmp_path):
    path = saved_image(state_machines, tmp_path)
    m = state_machines()
    restore_machine(m, path, mac_translation=True)
    wire = m.devices["nic0"].mac_addresses()[1]
    again = tmp_path / "again.pyv86state"
    save_machine(m, again)
    n = state_machines()
    restore_machine(n, again, preserve_mac=True)
    nic = n.devices["nic0"]
    assert nic.mac_addresses() == (SAVED, wire)            # v86 loses one of the two here
    assert any(isinstance(f, MacTranslator) for f in nic.port.filters)
    o = state_machines()
    restore_machine(o, again, mac_translation=True)
    guest2, wire2 = o.devices["nic0"].mac_addresses()
    assert guest2 == SAVED and wire2 not in (SAVED, wire)


def test_preserve_wins_over_translation(state_machines, tmp_path):
    path = saved_image(state_machines, tmp_path)
    m = state_machines()
    restore_machine(m, path, preserve_mac=True, mac_translation=True)
    assert m.devices["nic0"].mac_addresses() == (SAVED, SAVED)
