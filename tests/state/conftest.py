from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import state_helpers as helpers  # noqa: E402


@pytest.fixture
def state_machines(pyv86_plugins, make_machine):
    """``state_machines(text=helpers.MACHINE)`` -> a realized machine with the test devices."""
    helpers.register(pyv86_plugins)

    def build(text: str = helpers.MACHINE, **kw):
        return make_machine(text, **kw)

    return build
