"""Fixtures of the Linux end-to-end tests: one boot per cache key, then restores.

``linux_image`` (session) boots the Debian guest once to its shell and keeps a state image
in the user cache (see :mod:`e2e_image`); ``guests`` restores machines from it, each with
its own netdev URL, running on threads and driven through their serial consoles
(:class:`pyv86.testing.guest.GuestMachine`). A missing guest image fails the tests (it
never skips them): build it with ``pyv86 guest build``.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import e2e_image  # noqa: E402

TIMINGS: dict[str, Any] = {}


@pytest.fixture(scope="session")
def linux_image() -> Path:
    try:
        path, boot = e2e_image.ensure_image()
    except AssertionError as exc:
        pytest.fail(str(exc), pytrace=False)
    if boot is not None:
        TIMINGS["boot"] = boot
    return path


@pytest.fixture(scope="session")
def e2e_plugins() -> Any:
    from pyv86.plugins.manager import create_plugin_manager

    manager = create_plugin_manager(autoload=True, environ={})
    manager.collect()
    if manager.devices.get("ne2k-pci") is None:
        pytest.fail("e2e: the ne2k-pci device is not registered; pip install -e plugins/ne2k")
    return manager


class Guests:
    """Restores guests from the e2e image; every guest is closed at teardown."""

    def __init__(self, image: Path, plugins: Any, tmp: Path) -> None:
        self.image = image
        self.plugins = plugins
        self.tmp = tmp
        self.all: list[Any] = []

    def restore(self, name: str, url: str = "null:", *, image: Path | None = None,
                pcap: str | None = None, preserve_mac: bool | None = None,
                mac_translation: bool | None = None, start: bool = True,
                build: Callable[[Callable[[], Any]], Any] | None = None) -> Any:
        """A guest built with netdev ``url`` and restored from ``image`` (default: the boot image).

        ``build(fn)`` runs the construction elsewhere (e.g. inside a network namespace).
        """
        from pyv86.testing.guest import GuestMachine

        text = e2e_image.machine_text(name, url, pcap=pcap)

        def make() -> Any:
            return GuestMachine.from_toml(text, plugins=self.plugins, name=name, base_dir=self.tmp)

        t0 = time.monotonic()
        guest = build(make) if build is not None else make()
        self.all.append(guest)
        t1 = time.monotonic()
        result = guest.restore(image or self.image, preserve_mac=preserve_mac,
                               mac_translation=mac_translation)
        TIMINGS.setdefault("restore", []).append((name, round(t1 - t0, 2), round(result.seconds, 2)))
        guest.restore_result = result
        if start:
            guest.start()
        return guest

    def close(self) -> None:
        for guest in self.all:
            try:
                guest.close()
            except Exception:  # noqa: BLE001 - close the others too
                pass


@pytest.fixture
def guests(linux_image: Path, e2e_plugins: Any, tmp_path: Path) -> Iterator[Guests]:
    g = Guests(linux_image, e2e_plugins, tmp_path)
    try:
        yield g
    finally:
        g.close()


@pytest.fixture(scope="module")
def module_guests(linux_image: Path, e2e_plugins: Any,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guests]:
    g = Guests(linux_image, e2e_plugins, tmp_path_factory.mktemp("e2e"))
    try:
        yield g
    finally:
        g.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not TIMINGS:
        return
    tr = terminalreporter
    boot = TIMINGS.get("boot")
    if boot:
        tr.write_line(f"e2e: booted the Linux guest once: {boot['boot_s']:.0f} s to PYV86-READY, "
                      f"image {boot['image_bytes'] / 1e6:.1f} MB saved in {boot['save_s']:.2f} s")
    restores = TIMINGS.get("restore", [])
    if restores:
        avg = sum(r[2] for r in restores) / len(restores)
        build = sum(r[1] for r in restores) / len(restores)
        tr.write_line(f"e2e: {len(restores)} restores, {avg:.2f} s each on average "
                      f"(+{build:.2f} s to build the machine)")
