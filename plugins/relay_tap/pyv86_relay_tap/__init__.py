"""pyv86-relay-tap: the ``tap:NAME`` network backend (a NIC on a Linux TAP interface)."""
from __future__ import annotations

__version__ = "0.1.0"
