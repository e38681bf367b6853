"""The built-in plugins: pyv86's own devices and backends, loaded through the public hooks.

Each entry is ``(plugin name, module)``; a module implements the same hooks a
third-party plugin would. Blocking one (``-p no:pyv86.pc``) removes what it registers.
"""
from __future__ import annotations

BUILTIN_MODULES: list[tuple[str, str]] = [
    ("pyv86.platform", "pyv86.platform.plugin"),
    ("pyv86.pc", "pyv86.platform.pc"),
    ("pyv86.net", "pyv86.net.plugin"),
    ("pyv86.state", "pyv86.state.plugin"),
    ("pyv86.guest", "pyv86.guest.plugin"),
]
