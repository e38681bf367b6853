"""The e2e LAN: a throw-away namespace with bridge ``br0`` at 10.99.0.1/24 and dnsmasq on it.

The namespace, bridge and dnsmasq come from :class:`pyv86.testing.netns.Lan`, which also
removes them. This module adds how e2e guests join: ``tap:NAME`` netdevs opened *inside* the
namespace and put on the bridge (the machine is built on a thread switched into it with
:meth:`Lan.run_in`, so the TAP is created there), a ``hub:`` bridged in-process to such a
TAP (:meth:`Lan.uplink_hub`), or passt confined to the namespace (:meth:`Lan.passt_wrapper`).
"""
from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any, Callable

from pyv86.testing import netns

WHO = "e2e"
_ids = itertools.count(1)


class Lan(netns.Lan):
    """Namespace ``e2e-PID-N`` with bridge ``br0`` at ``10.99.0.1/24`` and dnsmasq serving 50-99."""

    SERVER = "10.99.0.1"
    PREFIX = "10.99.0."

    def __init__(self, tmp: Path, *, dhcp: bool = True) -> None:
        netns.require_netns(WHO)
        name = f"e2e-{os.getpid()}-{next(_ids)}"
        self.tmp = tmp
        self._closers: list[Callable[[], None]] = []
        self._taps = itertools.count(1)
        super().__init__(name, tmp / name, subnet=self.SERVER.rsplit(".", 1)[0], dhcp=dhcp, who=WHO)

    def tap_name(self) -> str:
        """A fresh TAP name; open ``tap:NAME`` inside the namespace, then :meth:`enslave` it.

        (``tap:NAME?bridge=BR`` cannot be used from a thread that only switched its network
        namespace: the backend looks the bridge up in /sys, which still shows the host's.)
        """
        return f"e2etap{next(self._taps)}"

    def uplink_hub(self, url: str) -> Any:
        """Join ``hub:`` URL ``url`` to the bridge through a TAP in the namespace (in-process)."""
        from pyv86.net.hub import open_hub
        from pyv86_relay_tap.tap import TapBackend

        name = self.tap_name()
        tap = self.run_in(lambda: TapBackend(f"tap:{name}", None))
        self.enslave(name)
        port = open_hub(url, None)
        port.set_receiver(tap.send)
        tap.set_receiver(port.send)

        def close() -> None:
            port.close()
            tap.close()

        self._closers.append(close)
        return tap

    def passt_wrapper(self) -> Path:
        """A folder whose ``passt`` runs the real passt inside this namespace, which gets a
        dead-end default route (:meth:`~pyv86.testing.netns.Netns.add_dead_end_route`) so
        passt starts and reaches nothing but the namespace's own loopback."""
        real = netns.require_tool("passt", "passt", WHO)
        self.add_dead_end_route()
        return self.confined(real, self.tmp / f"{self.name}-bin")

    def close(self) -> None:
        for close in reversed(self._closers):
            try:
                close()
            except Exception:  # noqa: BLE001 - the namespace must still go
                pass
        self._closers.clear()
        super().close()
