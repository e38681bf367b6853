"""Opening the backend a ``[netdev.<id>]`` table names, with an optional pcap recorder."""
from __future__ import annotations

from typing import TYPE_CHECKING

from pyv86.errors import ConfigError
from pyv86.net.base import NetBackend, url_scheme

if TYPE_CHECKING:
    from pyv86.config import NetdevSpec
    from pyv86.machine import Machine
    from pyv86.plugins.manager import PluginManager


def open_netdev(spec: NetdevSpec, machine: Machine, plugins: PluginManager) -> NetBackend:
    scheme = url_scheme(spec.url)
    factory = plugins.net_backends.get(scheme)
    if factory is None:
        raise ConfigError(f"netdev.{spec.id}.url: unknown network URL scheme {scheme!r}; "
                          f"installed: {', '.join(plugins.net_backends.schemes()) or 'none'}")
    try:
        backend = factory(spec.url, machine)
    except ConfigError:
        raise
    except (OSError, ValueError) as exc:
        raise ConfigError(f"netdev.{spec.id}.url: {spec.url}: {exc}") from None
    if spec.pcap:
        from pyv86.net.pcap import PcapTap

        backend = PcapTap(backend, spec.pcap)
    return backend
