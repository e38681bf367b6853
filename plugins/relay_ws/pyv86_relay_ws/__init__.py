"""pyv86-relay-ws: WebSocket Ethernet relays — the ``ws:``/``wss:`` client backend and
``pyv86 relay serve``, a learning-switch relay server."""
from __future__ import annotations

__version__ = "0.1.0"
