"""The fixtures pyv86 ships for plugin authors (pyv86.testing) do what they promise."""
from __future__ import annotations

import subprocess
import sys
from typing import ClassVar

import attrs
import pytest

import pyv86.testing.plugin
from pyv86.devices import Device
from pyv86.errors import ConfigError

FRAME = bytes.fromhex("ffffffffffff525400123456 0806".replace(" ", "")) + bytes(46)


def test_pytest_plugin_imports_nothing_heavy_and_opens_nothing():
    code = ("import sys, pyv86.testing.pytest_plugin as p; "
            "heavy = [m for m in ('llvmlite', 'numpy', 'pyv86.machine', 'pyv86.cpu') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_pyv86_plugins_is_isolated_from_entry_points_and_environment(pyv86_plugins, monkeypatch):
    monkeypatch.setenv("PYV86_LOAD_PLUGINS", "no-such-plugin")  # would fail if it were read
    assert all(r.builtin for r in pyv86_plugins.records.values())
    assert "isa-debug-exit" in pyv86_plugins.devices


def test_make_machine_has_no_cpu_and_a_virtual_clock(make_machine):
    machine = make_machine('[device.exit]\ntype = "isa-debug-exit"\n')
    assert machine.cpu is None
    assert machine.clock.mode == "virtual"
    assert machine.config.cpu_enabled is False
    machine.ports.outw(0x501, 2)
    assert machine.stopped and machine.exit_status == 5


def test_make_machine_honours_what_the_file_says(make_machine):
    config = make_machine.config('version = 1\n[machine]\nclock = "realtime"\nmemory = "2M"\n')
    assert (config.clock, config.memory, config.cpu_enabled) == ("realtime", 2 << 20, False)
    assert make_machine.config("", cpu=True).cpu_enabled is True


def test_make_machine_errors_are_config_errors(make_machine):
    with pytest.raises(ConfigError, match=r"^<make_machine>:2: device.x.type: unknown device type 'nope'"):
        make_machine('[device.x]\ntype = "nope"\n')
    with pytest.raises(ConfigError, match=r"^m.toml: not valid TOML"):
        make_machine("[device", path="m.toml")


def test_make_machine_shuts_machines_down_at_teardown(pyv86_plugins, tmp_path_factory):
    from pyv86.testing.pytest_plugin import MachineFactory

    class Tracker(Device):
        kind = "tracker"
        closed: ClassVar[list[str]] = []

        def unrealize(self) -> None:
            self.closed.append(self.id)

    class Plug:
        from pyv86 import hookimpl

        @hookimpl
        def pyv86_register_devices(self, registry):
            registry.add(Tracker)

    pyv86_plugins.register_module(Plug(), "tracker")
    factory = MachineFactory(pyv86_plugins, tmp_path_factory)
    factory('[device.t1]\ntype = "tracker"\n')
    factory.close()
    assert Tracker.closed == ["t1"]


def test_port_bus_is_empty(port_bus):
    assert port_bus.regions() == []
    assert port_bus.inl(0xCF8) == 0xFFFFFFFF


def test_loopback_net_carries_frames_both_ways(pyv86_plugins, loopback_net, make_machine):
    pyv86_plugins.register_module(pyv86.testing.plugin, "pyv86.testing")
    machine = make_machine('[netdev.lan]\nurl = "loopback:"\n[device.nic]\ntype = "test-nic"\nnetdev = "lan"\n')
    nic = machine.device("nic")
    nic.transmit(FRAME)
    assert loopback_net.sent == [FRAME]
    loopback_net.inject(FRAME[::-1])
    assert nic.state.received == [FRAME[::-1]]
    assert loopback_net.take() == [FRAME] and loopback_net.sent == []


def test_loopback_ports_are_separate(pyv86_plugins, loopback_net, make_machine):
    pyv86_plugins.register_module(pyv86.testing.plugin, "pyv86.testing")
    machine = make_machine('[netdev.a]\nurl = "loopback:a"\n[netdev.b]\nurl = "loopback:b"\n'
                           '[device.na]\ntype = "test-nic"\nnetdev = "a"\n'
                           '[device.nb]\ntype = "test-nic"\nnetdev = "b"\n')
    machine.device("nb").transmit(FRAME)
    assert loopback_net.port("b").sent == [FRAME]
    assert loopback_net.port("a").sent == [] and loopback_net.sent == []
    loopback_net.port("a").inject(FRAME)
    assert machine.device("na").state.received == [FRAME]
    assert machine.device("nb").state.received == []


def test_loopback_inject_threadsafe_runs_on_the_machine_thread(pyv86_plugins, loopback_net, make_machine):
    pyv86_plugins.register_module(pyv86.testing.plugin, "pyv86.testing")
    machine = make_machine('[netdev.lan]\nurl = "loopback:"\n[device.nic]\ntype = "test-nic"\nnetdev = "lan"\n')
    loopback_net.inject_threadsafe(FRAME)
    assert machine.device("nic").state.received == []  # not yet: waits for the run loop
    machine.run(until_ns=1000)
    assert machine.device("nic").state.received == [FRAME]


def test_loopback_inject_without_a_nic_says_so(loopback_net):
    with pytest.raises(AssertionError, match="no receiver installed"):
        loopback_net.inject(FRAME)


def test_bad_mac_on_the_test_nic(pyv86_plugins, loopback_net, make_machine):
    pyv86_plugins.register_module(pyv86.testing.plugin, "pyv86.testing")
    with pytest.raises(ConfigError, match=r"device.nic.mac: mac '01:00:5e:00:00:01' is a multicast address"):
        make_machine('[netdev.lan]\nurl = "loopback:"\n[device.nic]\ntype = "test-nic"\nnetdev = "lan"\n'
                     'mac = "01:00:5e:00:00:01"\n')


# -- assert_state_roundtrip -----------------------------------------------------------

@attrs.define
class GoodState:
    VERSION: ClassVar[int] = 2
    regs: bytearray = attrs.field(factory=lambda: bytearray(4))
    count: int = 0


class Good(Device):
    kind = "good"
    state_cls = GoodState


def test_state_roundtrip_passes_for_a_well_behaved_device(assert_state_roundtrip):
    dev = Good("g")
    dev.state.regs[1] = 7
    dev.state.count = 3
    restored = assert_state_roundtrip(dev)
    assert restored.regs == bytearray(b"\0\x07\0\0") and restored.count == 3


def test_state_roundtrip_into_a_second_device(assert_state_roundtrip):
    a, b = Good("a"), Good("b")
    a.state.count = 9
    assert_state_roundtrip(a, into=b)
    assert b.state.count == 9


def test_state_roundtrip_catches_a_restore_that_drops_fields(assert_state_roundtrip):
    class Forgetful(Good):
        def restore(self, state):
            self.state = GoodState(regs=state.regs)  # forgets count

    dev = Forgetful("f")
    dev.state.count = 1
    with pytest.raises(AssertionError, match=r"state differs after restore in fields \['count'\]"):
        assert_state_roundtrip(dev)


def test_state_roundtrip_catches_runtime_objects_in_state(assert_state_roundtrip):
    @attrs.define
    class LeakyState:
        VERSION: ClassVar[int] = 1
        callback: object = None

    class Leaky(Device):
        kind = "leaky"
        state_cls = LeakyState

    dev = Leaky("l")
    dev.state.callback = print
    with pytest.raises(AssertionError, match=r"state.callback: builtin_function_or_method cannot be stored"):
        assert_state_roundtrip(dev)


def test_state_roundtrip_needs_a_version(assert_state_roundtrip):
    @attrs.define
    class NoVersion:
        x: int = 0

    class Unversioned(Device):
        kind = "unversioned"
        state_cls = NoVersion

    with pytest.raises(AssertionError, match="VERSION must be an int >= 1"):
        assert_state_roundtrip(Unversioned("u"))


def test_state_roundtrip_catches_shared_buffers(assert_state_roundtrip):
    class Sharing(Good):
        def save(self):
            return self.state

        def restore(self, state):
            self.state = GoodState(regs=self._keep, count=state.count)
            self._keep[:] = state.regs

    dev = Sharing("s")
    dev._keep = dev.state.regs
    with pytest.raises(AssertionError, match="shares mutable buffers"):
        assert_state_roundtrip(dev)
