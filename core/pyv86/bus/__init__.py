"""Buses the CPU and devices meet on: port I/O (:mod:`.ports`) and MMIO (:mod:`.mmio`)."""
from pyv86.bus.mmio import MmioBus
from pyv86.bus.ports import PortBus

__all__ = ["PortBus", "MmioBus"]
