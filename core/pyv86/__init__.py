"""pyv86: a plugin-based x86 PC emulator whose first job is guest networking.

This module holds only public names: the ``hookimpl`` marker plugins use, the
version, and the error types. Everything heavy (the CPU and llvmlite) is imported
lazily by the modules that need it, so importing ``pyv86`` stays cheap.
"""
from __future__ import annotations

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("pyv86")
"""Marker for plugin hook implementations: ``@hookimpl def pyv86_register_devices(registry): ...``."""

from pyv86.errors import ConfigError, PluginError, Pyv86Error, StateError  # noqa: E402

__all__ = ["hookimpl", "__version__", "Pyv86Error", "ConfigError", "PluginError", "StateError"]
