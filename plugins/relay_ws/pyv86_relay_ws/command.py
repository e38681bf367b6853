"""``pyv86 relay serve``: the command line of the relay server."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from pyv86.errors import Pyv86Error

from pyv86_relay_ws.frames import ETH_FRAME_MAX


def add_relay_command(subparsers: argparse._SubParsersAction) -> None:
    relay = subparsers.add_parser("relay", help="WebSocket Ethernet relay tools")
    sub = relay.add_subparsers(dest="relay_command", metavar="SUBCOMMAND")
    serve = sub.add_parser(
        "serve", help="run a relay: a learning switch among ws:// clients (and optionally a TAP)",
        description="Run a WebSocket Ethernet relay compatible with v86's network_relay_url: one "
                    "Ethernet frame per binary message, a learning switch among clients, optional "
                    "TAP uplink. Counters: GET /stats on the same port, SIGUSR1, --stats-interval.")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1; 0.0.0.0 for all IPv4 interfaces)")
    serve.add_argument("--port", type=int, default=8086, help="TCP port (default 8086; 0 = any free)")
    serve.add_argument("--token", default=None,
                       help="shared secret clients must present (?token=..., Authorization: Bearer, "
                            "X-Relay-Token); default from $PYV86_RELAY_TOKEN")
    serve.add_argument("--token-file", default=None, metavar="FILE",
                       help="read the shared secret from FILE (first line)")
    serve.add_argument("--cert", default=None, metavar="PEM", help="TLS certificate chain (serve wss://)")
    serve.add_argument("--key", default=None, metavar="PEM", help="TLS private key (with --cert)")
    serve.add_argument("--tap", default=None, metavar="NAME",
                       help="uplink: attach to or create TAP NAME (needs pyv86-relay-tap and CAP_NET_ADMIN)")
    serve.add_argument("--bridge", default=None, metavar="BR", help="enslave the --tap interface to bridge BR")
    serve.add_argument("--qemu-stream", default=None, metavar="HOST:PORT",
                       help="also take QEMU VMs as switch ports: they connect here with -netdev "
                            "stream,server=off,addr.type=inet,addr.host=HOST,addr.port=PORT (or "
                            "-netdev socket,connect=HOST:PORT); no token applies to them")
    serve.add_argument("--max-frame", type=int, default=ETH_FRAME_MAX, metavar="BYTES",
                       help="longest frame accepted from a client (14..1514, default 1514)")
    serve.add_argument("--max-fps", type=float, default=0.0, metavar="N",
                       help="frames per second accepted from one client (default 0 = unlimited)")
    serve.add_argument("--max-bps", type=float, default=0.0, metavar="N",
                       help="bytes per second accepted from one client (default 0 = unlimited)")
    serve.add_argument("--queue-bytes", type=int, default=1 << 20, metavar="N",
                       help="bytes queued towards one client before its frames are dropped (default 1 MiB)")
    serve.add_argument("--max-macs", type=int, default=16, metavar="N",
                       help="source MAC addresses one client may use (default 16)")
    serve.add_argument("--max-clients", type=int, default=1024, metavar="N",
                       help="clients connected at once (default 1024)")
    serve.add_argument("--idle-timeout", type=float, default=60.0, metavar="S",
                       help="close clients silent this long; pinged at half (default 60, 0 = never)")
    serve.add_argument("--mac-age", type=float, default=300.0, metavar="S",
                       help="forget a MAC after this many seconds without traffic (default 300)")
    serve.add_argument("--allow-mac-move", action="store_true",
                       help="let a client take over a MAC that another live client is using")
    serve.add_argument("--stats-interval", type=float, default=0.0, metavar="S",
                       help="print a counters line to stderr every S seconds (default 0 = never)")
    serve.set_defaults(func=cmd_serve)
    relay.set_defaults(func=lambda args, *_: (relay.print_help(), 2)[1])


def _token(args: argparse.Namespace) -> str | None:
    if args.token_file:
        try:
            with open(args.token_file, encoding="utf-8") as fh:
                token = fh.readline().strip()
        except OSError as exc:
            raise Pyv86Error(f"relay serve: --token-file {args.token_file}: {exc.strerror}") from None
        if not token:
            raise Pyv86Error(f"relay serve: --token-file {args.token_file}: the file is empty")
        return token
    return args.token or os.environ.get("PYV86_RELAY_TOKEN") or None


def cmd_serve(args: argparse.Namespace, *_: Any) -> int:
    from pyv86_relay_ws.server import RelayLimits, RelayServer

    try:
        limits = RelayLimits(max_frame=args.max_frame, max_fps=args.max_fps, max_bps=args.max_bps,
                             queue_bytes=args.queue_bytes, max_macs=args.max_macs,
                             max_clients=args.max_clients, idle_timeout=args.idle_timeout)
    except ValueError as exc:
        raise Pyv86Error(f"relay serve: {exc}") from None
    if not 0 <= args.port <= 65535:
        raise Pyv86Error(f"relay serve: --port {args.port}: not a TCP port (0..65535)")
    if args.mac_age <= 0:
        raise Pyv86Error("relay serve: --mac-age must be positive")

    def report(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    server = RelayServer(args.host, args.port, token=_token(args), cert=args.cert, key=args.key,
                         tap=args.tap, bridge=args.bridge, limits=limits, mac_age=args.mac_age,
                         allow_mac_move=args.allow_mac_move, stats_interval=args.stats_interval,
                         report=report, qemu_stream=args.qemu_stream)
    server.run(announce=True)
    return 0
