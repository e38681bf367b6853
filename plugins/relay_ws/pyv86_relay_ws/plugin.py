"""Registers ``ws``/``wss`` backends and the ``pyv86 relay`` command with pyv86."""
from __future__ import annotations

import argparse

from pyv86 import hookimpl
from pyv86.net.base import NetBackendRegistry


@hookimpl
def pyv86_register_net_backends(registry: NetBackendRegistry) -> None:
    from pyv86_relay_ws.client import make_backend

    help_text = ("WebSocket Ethernet relay (v86 network_relay_url; websockproxy, node-relay, wsnic, "
                 "go-websockproxy, pyv86 relay serve)")
    registry.add("ws", make_backend, help=help_text)
    registry.add("wss", make_backend, help=help_text + " over TLS")


@hookimpl
def pyv86_add_commands(subparsers: argparse._SubParsersAction) -> None:
    from pyv86_relay_ws.command import add_relay_command

    add_relay_command(subparsers)
