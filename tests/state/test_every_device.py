"""Every device kind any installed plugin registers survives a whole-machine image round trip.

The list comes from the registry at test time, so a new device (built-in or plugin) is
covered without touching this file. Each kind gets a machine of its own (defaults for
its config, a ``null:`` netdev if it takes one): save -> restore into a fresh machine ->
save must give a byte-identical image.
"""
from __future__ import annotations

import tomllib

import pytest

from pyv86.config import parse_machine_config
from pyv86.machine import Machine
from pyv86.plugins.manager import create_plugin_manager
from pyv86.state import read_image, restore_machine, save_machine


def _plugins():
    plugins = create_plugin_manager(environ={})
    plugins.collect()
    return plugins


KINDS = _plugins().devices.kinds()


def _machine(plugins, kind: str) -> Machine:
    cls = plugins.devices.get(kind)
    text = f'version = 1\n[machine]\nmemory = "2M"\ncpu = false\nclock = "virtual"\n[device.dut]\ntype = "{kind}"\n'
    if cls.uses_netdev:
        text += 'netdev = "lan"\n[netdev.lan]\nurl = "null:"\n'
    config = parse_machine_config(tomllib.loads(text), f"<{kind}>", text, plugins=plugins)
    return Machine.from_config(config, plugins)


def test_the_registry_is_not_empty():
    assert "isa-debug-exit" in KINDS


@pytest.mark.parametrize("kind", KINDS)
def test_device_kind_round_trips_through_an_image(kind, tmp_path):
    plugins = _plugins()
    a = _machine(plugins, kind)
    b = _machine(plugins, kind)
    try:
        a.run(until_ns=1_000_000)      # let timers and devices do whatever they do unprompted
        first, second = tmp_path / "1.pyv86state", tmp_path / "2.pyv86state"
        save_machine(a, first)
        restore_machine(b, first, preserve_mac=True)
        save_machine(b, second)
        one, two = read_image(first), read_image(second)
        assert [r["kind"] for r in one.records].count(kind) == 1
        assert one.manifest_bytes == two.manifest_bytes, f"{kind}: image differs after a round trip"
        assert first.read_bytes() == second.read_bytes()
    finally:
        a.shutdown("test")
        b.shutdown("test")
