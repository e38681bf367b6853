"""pytest fixtures for pyv86 and for plugin authors (loaded through the ``pytest11`` entry point).

pytest imports this module in every run of any environment where pyv86 is installed, so
it imports nothing heavy (no numpy, no llvmlite) and opens nothing at import time; the
fixtures import what they need when a test asks for them.

Fixtures:

``pyv86_plugins``
    An isolated :class:`~pyv86.plugins.manager.PluginManager`: built-ins loaded, entry-point
    autoload off, environment ignored. Add your plugin with
    ``pyv86_plugins.register_module(module, "name")`` or load an installed one with
    ``pyv86_plugins.load_entry_points(only=["name"])``.
``make_machine(toml_text, *, cpu=False, path=...)``
    Builds and realizes a machine from machine-file text using ``pyv86_plugins``. No CPU
    unless the text says ``[machine] cpu = true`` or ``cpu=True`` is passed; virtual
    clock unless the text sets one; ``version = 1`` is assumed if missing. Machines are
    shut down at teardown.
``port_bus``
    A bare :class:`~pyv86.bus.ports.PortBus` to map handlers on and poke with
    ``outb``/``inb``... (a machine's own bus is ``machine.ports``).
``loopback_net``
    A :class:`~pyv86.testing.net.LoopbackNet` registered as URL scheme ``loopback:`` on
    ``pyv86_plugins``: ``.sent`` captures frames the NIC sends, ``.inject(frame)`` delivers one.
``assert_state_roundtrip``
    :func:`pyv86.testing.state.assert_state_roundtrip` (``assert_state_roundtrip(device)``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterator

import pytest

if TYPE_CHECKING:
    from pyv86.bus.ports import PortBus
    from pyv86.machine import Machine
    from pyv86.plugins.manager import PluginManager
    from pyv86.testing.net import LoopbackNet


@pytest.fixture
def pyv86_plugins() -> PluginManager:
    """A plugin manager with the built-ins only (no entry points, no environment)."""
    from pyv86.plugins.manager import create_plugin_manager

    return create_plugin_manager(autoload=False, load=None, environ={})


class MachineFactory:
    """``make_machine(toml_text)``: machines built from machine-file text, shut down at teardown."""

    def __init__(self, plugins: PluginManager, tmp_path_factory: pytest.TempPathFactory) -> None:
        self.plugins = plugins
        self.machines: list[Machine] = []
        self._tmp = tmp_path_factory

    def config(self, toml_text: str, *, cpu: bool = False, path: str | None = None) -> Any:
        """Validate ``toml_text`` as a machine file and return its MachineConfig (nothing built)."""
        import tomllib
        from pathlib import Path

        import attrs

        from pyv86.config import parse_machine_config
        from pyv86.errors import ConfigError

        shown = path or "<make_machine>"
        try:
            data = tomllib.loads(toml_text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{shown}: not valid TOML: {exc}") from None
        data.setdefault("version", 1)
        base_dir = Path(path).parent if path else self._tmp.mktemp("machine")
        self.plugins.check()
        self.plugins.collect()
        config = parse_machine_config(data, shown, toml_text, base_dir=base_dir, plugins=self.plugins)
        machine_table = data.get("machine", {})
        changes: dict[str, Any] = {}
        if "cpu" not in machine_table:
            changes["cpu_enabled"] = cpu
        if "clock" not in machine_table:
            changes["clock"] = "virtual"
        return attrs.evolve(config, **changes)

    def __call__(self, toml_text: str = "", *, cpu: bool = False, path: str | None = None) -> Machine:
        from pyv86.machine import Machine

        config = self.config(toml_text, cpu=cpu, path=path)
        machine = Machine.from_config(config, self.plugins)
        self.machines.append(machine)
        return machine

    def close(self) -> None:
        while self.machines:
            self.machines.pop().shutdown("test-teardown")


@pytest.fixture
def make_machine(pyv86_plugins: PluginManager,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[MachineFactory]:
    """Build machines from machine-file text: ``machine = make_machine('[device.x] type = "..."')``."""
    factory = MachineFactory(pyv86_plugins, tmp_path_factory)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture
def port_bus() -> PortBus:
    """A port-I/O bus with nothing mapped: unassigned ports read all ones."""
    from pyv86.bus.ports import PortBus

    return PortBus()


@pytest.fixture
def loopback_net(pyv86_plugins: PluginManager) -> LoopbackNet:
    """A test network backend, reachable from machine files as ``url = "loopback:"``."""
    from pyv86.testing.net import LoopbackNet, LoopbackPlugin

    net = LoopbackNet()
    pyv86_plugins.register_module(LoopbackPlugin(net), "pyv86.testing.loopback")
    pyv86_plugins.collect()
    return net


@pytest.fixture
def assert_state_roundtrip() -> Callable[..., Any]:
    """``assert_state_roundtrip(device, into=None)``: save, restore, save again, compare."""
    from pyv86.testing.state import assert_state_roundtrip as check

    return check
