"""Whole-machine save -> restore -> save, and what restoring checks."""
from __future__ import annotations

import numpy as np
import pytest

import state_helpers as helpers
from pyv86.errors import StateError
from pyv86.state import read_image, restore_machine, save_machine


def test_roundtrip_gives_a_byte_identical_manifest_and_blobs(state_machines, tmp_path):
    a = state_machines()
    a.devices["rich0"].scribble()
    helpers.fill_ram(a)
    a.clock.advance_to(123_456_789)
    first, second = tmp_path / "a.pyv86state", tmp_path / "b.pyv86state"
    save_machine(a, first)
    b = state_machines()
    restore_machine(b, first, preserve_mac=True)
    save_machine(b, second)
    one, two = read_image(first), read_image(second)
    assert one.manifest_bytes == two.manifest_bytes
    assert first.read_bytes() == second.read_bytes()
    assert np.array_equal(a.memory.ram, b.memory.ram)
    assert b.clock.now == 123_456_789
    s = b.devices["rich0"].state
    assert (s.cr, s.mode, s.name, s.pair, s.queue) == (0x22, helpers.Mode.BUSY, "scribbled", (7, 8),
                                                        [b"frame-one", b"two"])
    assert isinstance(s.mode, helpers.Mode) and isinstance(s.mem, bytearray)
    assert s.table == {1: "one", "k": [1, 2, {"x": None}]} and s.inner == helpers.Inner(5, "in")
    assert s.regs.dtype == np.uint32 and np.array_equal(s.regs, a.devices["rich0"].state.regs)
    assert s.mem is not a.devices["rich0"].state.mem


def test_pci_configuration_space_survives(state_machines, tmp_path):
    a = state_machines()
    fn = a.devices["rich0"].pci
    a.pci.config_write(6, 0, 0x10, 0xD000)         # the guest moves BAR0
    a.pci.config_write(6, 0, 0x3C, 0x0B, size=1)
    save_machine(a, tmp_path / "p.pyv86state")
    b = state_machines()
    restore_machine(b, tmp_path / "p.pyv86state")
    fb = b.devices["rich0"].pci
    assert fb.save() == fn.save()
    assert fb.bar_address(0) == 0xD000 and fb.bars[0].mapped_at == 0xD000


def test_ram_zero_pages_cost_almost_nothing(state_machines, tmp_path):
    a = state_machines("[machine]\nmemory = \"64M\"\ncpu = false\n")
    size = save_machine(a, tmp_path / "z.pyv86state").image_bytes
    assert size < 4096, size          # 16384 zero pages: a 2 KiB bitmap and a manifest


def test_restore_into_a_machine_differing_only_in_backends(state_machines, tmp_path):
    a = state_machines()
    a.devices["rich0"].scribble(5)
    save_machine(a, tmp_path / "n.pyv86state")
    # another netdev id and backend: backends are never part of an image
    text = helpers.MACHINE.replace('netdev = "lan"', 'netdev = "other"').replace("[netdev.lan]", "[netdev.other]")
    b = state_machines(text)
    restore_machine(b, tmp_path / "n.pyv86state", preserve_mac=True)
    assert b.devices["rich0"].state.mem == a.devices["rich0"].state.mem


def test_device_missing_from_the_machine_is_a_clear_error(state_machines, tmp_path):
    a = state_machines()
    save_machine(a, tmp_path / "m.pyv86state")
    text = helpers.MACHINE.replace("[device.rich0]\ntype = \"state-test-rich\"\n", "")
    b = state_machines(text)
    with pytest.raises(StateError, match=r"m.pyv86state: .*rich0"):
        restore_machine(b, tmp_path / "m.pyv86state")


def test_device_kind_mismatch_names_the_record(state_machines, tmp_path):
    a = state_machines()
    save_machine(a, tmp_path / "k.pyv86state")
    text = helpers.MACHINE.replace("[device.rich0]", "[device.richX]").replace(
        "[device.nic0]", "[device.rich0]").replace('type = "state-test-nic"\nnetdev = "lan"',
                                                   'type = "isa-debug-exit"')
    text = text.replace('type = "state-test-rich"', 'type = "state-test-nic"')
    b = state_machines(text.replace("[netdev.lan]\nurl = \"null:\"\n", ""))
    with pytest.raises(StateError) as err:
        restore_machine(b, tmp_path / "k.pyv86state")
    msg = str(err.value)
    assert "\n" not in msg and "k.pyv86state" in msg and "rich0" in msg


def test_extra_device_in_the_machine_is_refused(state_machines, tmp_path):
    a = state_machines(helpers.MACHINE.replace("[device.rich0]\ntype = \"state-test-rich\"\n", ""))
    save_machine(a, tmp_path / "e.pyv86state")
    b = state_machines()
    with pytest.raises(StateError, match="rich0"):
        restore_machine(b, tmp_path / "e.pyv86state")


def test_memory_size_mismatch(state_machines, tmp_path):
    a = state_machines()
    save_machine(a, tmp_path / "s.pyv86state")
    b = state_machines(helpers.MACHINE.replace('"4M"', '"8M"'))
    with pytest.raises(StateError, match=r"4 MiB of RAM, this machine 8 MiB"):
        restore_machine(b, tmp_path / "s.pyv86state")


def test_a_failed_restore_changes_nothing(state_machines, tmp_path):
    a = state_machines()
    a.devices["rich0"].scribble()
    helpers.fill_ram(a)
    path = tmp_path / "c.pyv86state"
    save_machine(a, path)
    data = bytearray(path.read_bytes())
    # corrupt the last byte of the rich0 record's state mem blob -> checksum error
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    b = state_machines()
    before = b.memory.ram.copy()
    with pytest.raises(StateError, match="checksum mismatch"):
        restore_machine(b, path)
    assert np.array_equal(before, b.memory.ram) and b.devices["rich0"].state.cr == 0x21


def test_hooks_extra_round_trips(state_machines, tmp_path):
    from pyv86 import hookimpl

    seen = {}

    class P:
        @hookimpl
        def pyv86_before_save(self, machine, extra):
            extra["monitor"] = {"frames": 12, "blob": b"x" * 300}

        @hookimpl
        def pyv86_after_restore(self, machine, extra):
            seen.update(extra)

    a = state_machines()
    a.plugins.register_module(P(), "extra-test")
    save_machine(a, tmp_path / "x.pyv86state")
    b = state_machines()
    restore_machine(b, tmp_path / "x.pyv86state")
    assert seen == {"monitor": {"frames": 12, "blob": b"x" * 300}}


def test_request_save_runs_at_a_slice_boundary(state_machines, tmp_path):
    a = state_machines()
    results = []
    a.request_save(str(tmp_path / "r.pyv86state"), lambda r, e: results.append((r, e)))
    assert results == []                      # nothing until the machine runs
    a.run(max_instructions=1)
    assert results and results[0][1] is None
    assert read_image(tmp_path / "r.pyv86state").records[0]["kind"] == "machine"
