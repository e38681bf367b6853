"""Fixtures for the relay_tap tests."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from taphelp import Namespaces, require_netns  # noqa: E402


@pytest.fixture
def netns() -> Iterator[Namespaces]:
    require_netns()
    spaces = Namespaces()
    try:
        yield spaces
    finally:
        spaces.cleanup()
