"""Built-in plugin registering the network backends that ship with the core."""
from __future__ import annotations

from pyv86 import hookimpl
from pyv86.net.base import NetBackendRegistry
from pyv86.net.hub import open_hub
from pyv86.net.null import NullBackend
from pyv86.net.pcap import open_pcap
from pyv86.net.socketnet import open_dgram, open_stream


@hookimpl
def pyv86_register_net_backends(registry: NetBackendRegistry) -> None:
    registry.add("null", NullBackend, help="drops every frame (cable unplugged)")
    registry.add("hub", open_hub,
                 help="hub:NAME — learning switch shared by every VM using NAME, in this and "
                      "other processes of this user on this host")
    registry.add("pcap", open_pcap,
                 help="pcap:FILE — record what the NIC sends to FILE (no network); to record "
                      "beside another backend use the netdev key pcap = \"FILE\"")
    registry.add("stream", open_stream,
                 help="stream:HOST:PORT[?server=on] or stream:unix:PATH — frames on a TCP or "
                      "UNIX stream, as QEMU's -netdev stream/socket send them")
    registry.add("dgram", open_dgram,
                 help="dgram:HOST:PORT?remote=HOST:PORT or dgram:GROUP:PORT (multicast) — one "
                      "frame per UDP datagram, as QEMU's -netdev dgram sends them")
