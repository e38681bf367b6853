"""Registers the ``tap`` network URL scheme with pyv86."""
from __future__ import annotations

from pyv86 import hookimpl
from pyv86.net.base import NetBackendRegistry

from pyv86_relay_tap.tap import make_backend


@hookimpl
def pyv86_register_net_backends(registry: NetBackendRegistry) -> None:
    registry.add("tap", make_backend,
                 help="Linux TAP interface: tap:NAME[?bridge=BR&up=1] (needs CAP_NET_ADMIN or a "
                      "TAP owned by the user)")
