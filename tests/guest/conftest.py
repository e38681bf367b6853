"""Fixtures for the guest-image tests (the fakes live in guest_fakes.py)."""
from __future__ import annotations

from pathlib import Path

import pytest
from guest_fakes import make_busybox_deb, make_kernel_deb


@pytest.fixture
def debs(tmp_path: Path) -> Path:
    d = tmp_path / "debs"
    d.mkdir()
    make_kernel_deb(d)
    make_busybox_deb(d)
    return d
