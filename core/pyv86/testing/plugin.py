"""Plugin module for tests: registers the ``test-nic`` device.

``pyv86 -p pyv86.testing.plugin check FILE`` or, in a test,
``pyv86_plugins.register_module(pyv86.testing.plugin, "pyv86.testing")``.
"""
from __future__ import annotations

from pyv86 import hookimpl
from pyv86.devices.base import DeviceRegistry
from pyv86.testing.devices import TestNic


@hookimpl
def pyv86_register_devices(registry: DeviceRegistry) -> None:
    registry.add(TestNic)
