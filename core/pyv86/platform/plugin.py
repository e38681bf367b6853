"""Built-in plugin registering the PC platform devices through the public hooks."""
from __future__ import annotations

from pyv86 import hookimpl
from pyv86.devices.base import DeviceRegistry
from pyv86.platform.debugexit import DebugExit


@hookimpl
def pyv86_register_devices(registry: DeviceRegistry) -> None:
    registry.add(DebugExit)
