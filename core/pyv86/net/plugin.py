"""Built-in plugin registering the network backends that ship with the core."""
from __future__ import annotations

from pyv86 import hookimpl
from pyv86.net.base import NetBackendRegistry
from pyv86.net.null import NullBackend


@hookimpl
def pyv86_register_net_backends(registry: NetBackendRegistry) -> None:
    registry.add("null", NullBackend, help="drops every frame (cable unplugged)")
