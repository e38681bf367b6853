"""The network core: frames between NICs and backends, and backends chosen by URL scheme."""
from pyv86.net.base import NetBackend, NetBackendRegistry

__all__ = ["NetBackend", "NetBackendRegistry"]
