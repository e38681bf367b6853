"""pyv86-ne2k: an NE2000-compatible RTL8029 PCI NIC for pyv86 (device type ``ne2k-pci``).

Modules: :mod:`pyv86_ne2k.dp8390` (the chip: registers, remote DMA, ring, filters,
state), :mod:`pyv86_ne2k.pci` (the PCI function and the device class),
:mod:`pyv86_ne2k.driver` (a Python model of Linux's ne2k-pci driver, for tests and
benchmarks), :mod:`pyv86_ne2k.plugin` (the hook implementation).
"""
from __future__ import annotations

__version__ = "0.1.0"
