"""What a device is: a kind name, a frozen Config, a saved State, and runtime resources.

Three kinds of data are kept apart. **Config** is what the machine file says (a frozen
attrs class; each field's ``metadata["help"]`` documents the key). **State** is what the
guest can see (a mutable attrs class with a ``VERSION``; the only thing a state image
holds). **Runtime** (sockets, threads, bus regions) is made in :meth:`Device.realize`
and released in :meth:`Device.unrealize`, never saved.

Lifecycle: ``__init__`` only stores; ``realize(machine)`` claims ports, MMIO, PCI slots,
IRQs and opens backends; ``reset()`` puts a fresh ``State`` in place (also on guest
reboot); ``save()``/``restore(state)`` serve state images.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, ClassVar

import attrs

from pyv86.errors import PluginError

if TYPE_CHECKING:
    from pyv86.machine import Machine

log = logging.getLogger(__name__)


@attrs.define(frozen=True)
class NoConfig:
    """Config of a device that takes no options."""


@attrs.define
class NoState:
    """State of a device that keeps none."""

    VERSION: ClassVar[int] = 1


class Device:
    """Base class for every device, built-in or from a plugin."""

    kind: ClassVar[str] = ""
    """The ``type = "..."`` value machine files use."""
    config_cls: ClassVar[type] = NoConfig
    state_cls: ClassVar[type] = NoState
    uses_netdev: ClassVar[bool] = False
    """True if the device takes ``netdev = "<id>"`` in its machine-file table."""
    description: ClassVar[str] = ""

    def __init__(self, id: str, config: Any | None = None) -> None:
        self.id = id
        self.config = config if config is not None else self.config_cls()
        self.state = self.state_cls()
        self.machine: Machine | None = None

    # lifecycle ------------------------------------------------------------------
    def realize(self, machine: Machine) -> None:
        """Claim bus resources on ``machine``; called once, before the first reset."""
        self.machine = machine

    def reset(self) -> None:
        """Return to power-on state (also on a guest-initiated reset)."""
        self.state = self.state_cls()

    def unrealize(self) -> None:
        """Release runtime resources (sockets, threads); the machine is stopping."""

    # state images ----------------------------------------------------------------
    def save(self) -> Any:
        """Return the State to store in an image (a copy is taken by the caller)."""
        return self.state

    def restore(self, state: Any) -> None:
        """Install a State read from an image; re-derive runtime things (IRQ levels)."""
        self.state = state

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.kind}/{self.id}>"


class DeviceRegistry:
    """Device kinds by name, each remembered with the plugin that registered it."""

    def __init__(self) -> None:
        self._kinds: dict[str, type[Device]] = {}
        self._providers: dict[str, str] = {}
        self.current_plugin: str = "<unknown>"
        self.describe: Callable[[str], str] = str
        """Turns a plugin name into the label errors show (the manager adds the distribution)."""

    def add(self, cls: type[Device]) -> None:
        """Register ``cls`` under ``cls.kind``; a kind registered twice is an error."""
        if not isinstance(cls, type) or not issubclass(cls, Device):
            raise PluginError(f"plugin {self.describe(self.current_plugin)}: {cls!r} is not a pyv86 Device subclass")
        kind = cls.kind
        if not kind:
            raise PluginError(f"plugin {self.describe(self.current_plugin)}: device class {cls.__qualname__} has no 'kind'")
        if kind in self._kinds and self._kinds[kind] is not cls:
            raise PluginError(
                f"plugin {self.describe(self.current_plugin)}: device type {kind!r} is already registered "
                f"by plugin {self.describe(self._providers[kind])}"
            )
        self._kinds[kind] = cls
        self._providers[kind] = self.current_plugin

    def get(self, kind: str) -> type[Device] | None:
        return self._kinds.get(kind)

    def provider(self, kind: str) -> str:
        return self._providers[kind]

    def kinds(self) -> list[str]:
        return sorted(self._kinds)

    def by_plugin(self, plugin: str) -> list[str]:
        return sorted(k for k, p in self._providers.items() if p == plugin)

    def __contains__(self, kind: str) -> bool:
        return kind in self._kinds
