"""The plugin registers ``passt:`` and its alias ``user:`` through the public hook."""
from __future__ import annotations

from pyv86_passt import open_passt


def test_entry_point_registers_passt_and_user_schemes(pyv86_plugins):
    pyv86_plugins.load_entry_points(only=["passt"])
    pyv86_plugins.collect()
    backends = pyv86_plugins.net_backends
    assert backends.get("passt") is open_passt
    assert backends.get("user") is open_passt
    assert backends.provider("passt") == backends.provider("user") == "passt"
    assert "tcp=8080:80" in backends.help("passt")
    assert "alias" in backends.help("user")
