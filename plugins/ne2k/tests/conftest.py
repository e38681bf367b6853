"""pytest fixtures for the ne2k-pci tests (the helpers live in ne2k_testlib)."""
from __future__ import annotations

from ne2k_testlib import machine, nic, regs, wire  # noqa: F401 - fixtures
