"""pyv86_passt: user-mode networking for pyv86 guests through the ``passt`` program.

Registers the network URL schemes ``passt:`` and ``user:`` (an alias). passt gives the
guest DHCP, DNS, ARP/NDP and real TCP/UDP through host sockets, without root and without
a relay; this plugin only starts or attaches to it and carries Ethernet frames over its
UNIX socket (see :mod:`pyv86_passt.backend`). URL syntax: :mod:`pyv86_passt.options`.
"""
from __future__ import annotations

from pyv86 import hookimpl
from pyv86.net.base import NetBackendRegistry
from pyv86_passt.backend import PasstBackend, PasstCounters, open_passt
from pyv86_passt.options import PasstOptions, parse_url
from pyv86_passt.process import PasstError

__all__ = ["PasstBackend", "PasstCounters", "PasstError", "PasstOptions", "open_passt",
           "parse_url"]


@hookimpl
def pyv86_register_net_backends(registry: NetBackendRegistry) -> None:
    registry.add("passt", open_passt,
                 help="user-mode networking by the passt program (DHCP, DNS, TCP/UDP via host "
                      "sockets); passt:?tcp=8080:80 forwards host port 8080 to the guest's 80; "
                      "passt:/path/to/socket attaches to a running passt")
    registry.add("user", open_passt, help="alias of passt: (QEMU's name for user-mode networking)")
