"""The machine's device lifecycle and the order of lifecycle hooks, without a CPU."""
from __future__ import annotations

from typing import ClassVar

import attrs
import pytest

from pyv86 import hookimpl
from pyv86.devices import Device
from pyv86.errors import ConfigError
from pyv86.machine import Machine

EVENTS: list[str] = []


@attrs.define
class CounterState:
    VERSION: ClassVar[int] = 1
    resets: int = 0


class Counter(Device):
    kind = "counter"
    state_cls = CounterState

    def realize(self, machine):
        super().realize(machine)
        EVENTS.append(f"realize {self.id}")

    def reset(self):
        super().reset()
        EVENTS.append(f"reset {self.id}")

    def unrealize(self):
        EVENTS.append(f"unrealize {self.id}")


class Watcher:
    @hookimpl
    def pyv86_register_devices(self, registry):
        registry.add(Counter)

    @hookimpl
    def pyv86_machine_created(self, machine):
        EVENTS.append("created")

    @hookimpl
    def pyv86_machine_reset(self, machine, reason):
        EVENTS.append(f"machine reset {reason}")

    @hookimpl
    def pyv86_machine_stopped(self, machine, reason):
        EVENTS.append(f"stopped {reason}")


@pytest.fixture
def plugins(pyv86_plugins):
    EVENTS.clear()
    pyv86_plugins.register_module(Watcher(), "watcher")
    return pyv86_plugins


def test_lifecycle_order(plugins, make_machine):
    machine = make_machine('[device.a]\ntype = "counter"\n[device.b]\ntype = "counter"\n')
    assert EVENTS == ["realize a", "realize b", "created", "reset a", "reset b", "machine reset power-on"]
    EVENTS.clear()
    machine.reset("guest")
    assert EVENTS == ["reset a", "reset b", "machine reset guest"]
    EVENTS.clear()
    machine.shutdown("user")
    assert EVENTS == ["stopped user", "unrealize a", "unrealize b"]


def test_device_added_after_realize_is_realized_and_reset_at_once(plugins, make_machine):
    machine = make_machine("")
    EVENTS.clear()
    machine.add_device(Counter("late"))
    assert EVENTS == ["realize late", "reset late"]


def test_device_ids_are_unique():
    machine = Machine(memory=1 << 20)
    machine.add_device(Counter("x"))
    with pytest.raises(ConfigError, match="device id 'x' is used twice"):
        machine.add_device(Counter("x"))


def test_guest_requested_reset_happens_at_the_next_slice_boundary(plugins, make_machine):
    machine = make_machine('[device.a]\ntype = "counter"\n')
    EVENTS.clear()
    t = machine.scheduler.timer("reboot", lambda: machine.request_reset("guest"))
    t.arm(100)
    machine.run(until_ns=1000)
    assert EVENTS == ["reset a", "machine reset guest"]


def test_stop_from_a_timer_ends_run_with_its_reason_and_status(make_machine):
    machine = make_machine("")
    machine.scheduler.timer("stop", lambda: machine.stop("test-done", exit_status=3)).arm(50)
    assert machine.run() == "test-done"
    assert machine.exit_status == 3
    assert machine.clock.now == 50


def test_run_with_an_instruction_budget_and_no_cpu_is_idle(make_machine):
    assert make_machine("").run(max_instructions=10) == "idle"
