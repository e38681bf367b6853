"""The pyv86 entry point of pyv86-ne2k: registers the ``ne2k-pci`` device type."""
from __future__ import annotations

from pyv86 import hookimpl
from pyv86.devices.base import DeviceRegistry
from pyv86_ne2k.pci import Ne2kPci


@hookimpl
def pyv86_register_devices(registry: DeviceRegistry) -> None:
    registry.add(Ne2kPci)
