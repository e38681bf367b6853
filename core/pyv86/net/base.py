"""The two-sided port between a NIC and a network backend, and the backend registry.

A backend moves whole Ethernet frames (``bytes``, destination MAC first, no FCS). The
NIC calls :meth:`NetBackend.send`; the backend hands received frames to the callback the
NIC installed with :meth:`NetBackend.set_receiver`. Backends that run threads (sockets,
asyncio) must deliver frames on the machine thread: they call the receiver through
``machine.call_soon_threadsafe``. Neither side imports the other's type.

Backends are made by factories registered per URL scheme (``hub``, ``pcap``, ``null``,
``ws``, ``tap``...): ``factory(url: str, machine) -> NetBackend``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Protocol, runtime_checkable

from pyv86.errors import PluginError

if TYPE_CHECKING:
    from pyv86.machine import Machine

FrameCallback = Callable[[bytes], "bool | None"]
"""``receiver(frame)``; a NIC port returns False when the backend should hold frames (see
:mod:`pyv86.net.port`), other receivers return None."""


@runtime_checkable
class NetBackend(Protocol):
    def send(self, frame: bytes) -> None:
        """Transmit one Ethernet frame from the NIC to the network."""

    def set_receiver(self, callback: FrameCallback | None) -> None:
        """Install the function that takes frames arriving for the NIC."""

    def close(self) -> None:
        """Stop and release sockets, threads and files."""


BackendFactory = Callable[[str, "Machine"], NetBackend]


class NetBackendRegistry:
    """Backend factories by URL scheme."""

    def __init__(self) -> None:
        self._factories: dict[str, BackendFactory] = {}
        self._providers: dict[str, str] = {}
        self._help: dict[str, str] = {}
        self.current_plugin: str = "<unknown>"
        self.describe: Callable[[str], str] = str
        """Turns a plugin name into the label errors show (the manager adds the distribution)."""

    def add(self, scheme: str, factory: BackendFactory, help: str = "") -> None:
        """Register ``factory`` for URLs ``scheme:...``; a scheme registered twice is an error."""
        scheme = scheme.lower().rstrip(":")
        if not scheme or not scheme.replace("+", "").replace("-", "").isalnum():
            raise PluginError(f"plugin {self.describe(self.current_plugin)}: {scheme!r} is not a valid URL scheme")
        if scheme in self._factories and self._factories[scheme] is not factory:
            raise PluginError(
                f"plugin {self.describe(self.current_plugin)}: network URL scheme {scheme!r} is already "
                f"registered by plugin {self.describe(self._providers[scheme])}"
            )
        self._factories[scheme] = factory
        self._providers[scheme] = self.current_plugin
        self._help[scheme] = help

    def get(self, scheme: str) -> BackendFactory | None:
        return self._factories.get(scheme.lower())

    def schemes(self) -> list[str]:
        return sorted(self._factories)

    def provider(self, scheme: str) -> str:
        return self._providers[scheme]

    def help(self, scheme: str) -> str:
        return self._help.get(scheme, "")

    def by_plugin(self, plugin: str) -> list[str]:
        return sorted(s for s, p in self._providers.items() if p == plugin)

    def __contains__(self, scheme: str) -> bool:
        return scheme.lower() in self._factories


def url_scheme(url: str) -> str:
    """The scheme of a backend URL: ``"ws://h:1/"`` -> ``"ws"``, ``"tap:tap0"`` -> ``"tap"``."""
    scheme, sep, _rest = url.partition(":")
    return scheme.lower() if sep else ""
