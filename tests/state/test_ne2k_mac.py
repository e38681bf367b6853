"""The MAC options with the real ``ne2k-pci`` NIC (plugins/ne2k), through its NicPort."""
from __future__ import annotations

import tomllib

import pytest

from pyv86.config import parse_machine_config
from pyv86.machine import Machine
from pyv86.net.mactranslate import MacTranslator
from pyv86.plugins.manager import create_plugin_manager
from pyv86.state import restore_machine, save_machine

TEXT = """version = 1
{top}
[machine]
memory = "2M"
cpu = false
clock = "virtual"
[device.net0]
type = "ne2k-pci"
netdev = "lan"
[netdev.lan]
url = "null:"
"""


def machine(top: str = "") -> Machine:
    plugins = create_plugin_manager(environ={})
    plugins.collect()
    if "ne2k-pci" not in plugins.devices:
        pytest.fail("ne2k-pci is not installed: pip install -e plugins/ne2k (make install does it)")
    text = TEXT.format(top=top)
    return Machine.from_config(parse_machine_config(tomllib.loads(text), "<ne2k>", text, plugins=plugins),
                               plugins)


@pytest.fixture
def image(tmp_path):
    m = machine()
    path = tmp_path / "ne2k.pyv86state"
    save_machine(m, path)
    mac = m.devices["net0"].wire_mac
    m.shutdown("test")
    return path, mac


def test_default_new_mac_in_par_prom_and_wire(image):
    path, saved = image
    m = machine()
    restore_machine(m, path)
    s = m.devices["net0"].chip.state
    assert s.par == s.prom_mac == s.wire_mac != saved
    assert not any(isinstance(f, MacTranslator) for f in m.devices["net0"].port.filters)


def test_preserve_keeps_the_saved_mac(image):
    path, saved = image
    m = machine("preserve_mac_from_state_image = true")
    restore_machine(m, path)
    s = m.devices["net0"].chip.state
    assert s.par == s.prom_mac == s.wire_mac == saved


def test_translation_guest_keeps_par_and_prom_wire_is_new(image):
    path, saved = image
    m = machine("mac_address_translation = true")
    restore_machine(m, path)
    nic = m.devices["net0"]
    s = nic.chip.state
    assert s.par == s.prom_mac == saved and s.wire_mac != saved
    seen = []
    nic.port.add_observer(lambda d, f: seen.append(f))
    nic.port.transmit(b"\xff" * 6 + saved + b"\x08\x06" + bytes(46))
    assert seen[0][6:12] == s.wire_mac
