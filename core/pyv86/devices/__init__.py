"""Device base class and the registry machine files name device types from."""
from pyv86.devices.base import Device, DeviceRegistry

__all__ = ["Device", "DeviceRegistry"]
