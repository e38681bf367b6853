"""A throw-away LAN for interop tests: one network namespace with a bridge, dnsmasq serving
DHCP on it, and ``pyv86 relay serve`` on the namespace's loopback uplinked to a TAP on the
bridge. Real emulators (v86) run inside the same namespace and join through the relay.

The namespace, bridge, dnsmasq and relay come from :class:`pyv86.testing.netns.Lan`; this
module adds the interop addresses and the two-step life the tests use (``Lan(workdir)``,
``start(dnsmasq)``, ``close()``). Nothing leaves the namespace: the relay listens on its
127.0.0.1, dnsmasq answers on the bridge only, and :meth:`Lan.close` ends every process and
deletes the namespace.
"""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from pyv86.testing import netns

WHO = "interop"
SUBNET = "10.86.0"
SERVER_IP = f"{SUBNET}.1"
RANGE = (50, 99)

LanError = netns.NetnsError  # a host tool is missing or the LAN could not be set up


def require_host() -> str:
    """The dnsmasq binary, after checking root, iproute2 and the relay plugins."""
    netns.require_netns(WHO)
    dnsmasq = netns.require_tool("dnsmasq", "dnsmasq-base", WHO)
    for module, dist in (("pyv86_relay_ws", "relay_ws"), ("pyv86_relay_tap", "relay_tap")):
        try:
            __import__(module)
        except ImportError:
            raise LanError(f"this test needs the {module} plugin: pip install -e plugins/{dist}") from None
    return dnsmasq


class Lan:
    """Namespace + bridge + dnsmasq + relay with a TAP uplink; ``close()`` removes it all."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        tag = uuid.uuid4().hex[:6]
        self.ns = f"p86i-{tag}"
        self.bridge, self.tap = f"i86br{tag}", f"i86up{tag}"
        self.net: netns.Lan | None = None
        self.relay: netns.Relay | None = None

    @property
    def port(self) -> int:
        return self.relay.port if self.relay else 0

    @property
    def relay_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    @property
    def netns_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.ns]

    def start(self, dnsmasq: str) -> Lan:
        self.net = netns.Lan(self.ns, self.workdir / "dnsmasq", subnet=SUBNET, bridge=self.bridge,
                             dhcp_range=RANGE, dnsmasq=dnsmasq, who=WHO)
        self.relay = self.net.start_relay(self.tap)
        return self

    def dnsmasq_log(self) -> str:
        return self.net.dnsmasq_log() if self.net else ""

    def lease_text(self) -> str:
        return self.net.lease_text() if self.net else ""

    def relay_stats(self) -> dict[str, Any]:
        if self.relay is None:
            raise LanError(f"{WHO}: the relay in {self.ns} is not running; call start() first")
        return self.relay.stats()

    def close(self) -> None:
        if self.net is not None:
            self.net.close()
            self.net = None
            self.relay = None
