"""Fixtures for the relay_tap tests."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import pytest

from pyv86.testing.netns import Namespaces, require_netns

sys.path.insert(0, str(Path(__file__).parent))

from taphelp import WHO  # noqa: E402


@pytest.fixture
def netns() -> Iterator[Namespaces]:
    """A test's namespaces (:class:`pyv86.testing.netns.Namespaces`), removed afterwards."""
    require_netns(WHO)
    with Namespaces() as spaces:
        yield spaces
