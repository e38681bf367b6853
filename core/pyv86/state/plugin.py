"""Built-in plugin adding ``pyv86 state info IMAGE`` and ``pyv86 state check IMAGE [--machine FILE]``.

``info`` prints the format version, each record (kind/id/version, field count) and each
blob (encoding, stored and decoded size); ``--json`` prints the manifest. ``check`` reads
and verifies every checksum and decodes every blob; with ``--machine FILE`` it also
checks the image against that machine file (device kinds and ids, RAM size, versions)
without running anything. Problems print one line and exit with status 2.
"""
from __future__ import annotations

import argparse
import json
from typing import Any

from pyv86 import hookimpl


@hookimpl
def pyv86_add_commands(subparsers: argparse._SubParsersAction) -> None:
    state = subparsers.add_parser("state", help="inspect and check state images")
    sub = state.add_subparsers(dest="state_command", metavar="ACTION")
    info = sub.add_parser("info", help="show what a state image holds")
    info.add_argument("image", help="state image file")
    info.add_argument("--json", action="store_true", help="print the manifest as JSON")
    info.set_defaults(func=cmd_info)
    check = sub.add_parser("check", help="verify a state image (and that it fits a machine file)")
    check.add_argument("image", help="state image file")
    check.add_argument("--machine", metavar="FILE", help="also check it against this machine file")
    check.set_defaults(func=cmd_check)
    state.set_defaults(func=lambda args, plugins=None: (state.print_help(), 2)[1])


def cmd_info(args: argparse.Namespace, plugins: Any = None) -> int:
    from pyv86.state.container import read_image

    image = read_image(args.image)
    if args.json:
        print(json.dumps(image.manifest, indent=2, sort_keys=True))
        return 0
    stored = sum(len(b.data) for b in image.blobs.values())
    print(f"{image.path}: pyv86 state image, format {image.major}.{image.minor}, "
          f"written by pyv86 {image.manifest.get('pyv86', '?')}")
    print(f"records ({len(image.records)}):")
    for record in image.records:
        print(f"  {record['kind']}/{record['id']}  v{record['version']}  {len(record['fields'])} fields")
    print(f"blobs ({len(image.blobs)}, {stored} bytes stored):")
    for blob in image.blobs.values():
        print(f"  {blob.name}  {blob.encoding}  {len(blob.data)} -> {blob.size} bytes")
    return 0


def cmd_check(args: argparse.Namespace, plugins: Any = None) -> int:
    from pyv86.state import pages
    from pyv86.state.container import decode_blob, read_image

    image = read_image(args.image)
    for blob in image.blobs.values():
        if blob.encoding == "pages":
            pages.decode_pages(f"{image.path}: blob {blob.name}", blob.data, blob.size)
        else:
            decode_blob(image.path, blob)
    if args.machine:
        from pyv86.config import load_machine_config
        from pyv86.machine import Machine
        from pyv86.state.snapshot import plan_restore

        config = load_machine_config(args.machine, plugins)
        import attrs

        # backends are not needed to check an image: every netdev becomes a null: one
        config = attrs.evolve(config, netdevs=tuple(attrs.evolve(n, url="null:", pcap=None)
                                                    for n in config.netdevs))
        machine = Machine.from_config(config, plugins)
        try:
            plan_restore(machine, image)
        finally:
            machine.shutdown("state-check")
        print(f"{image.path}: ok, fits {args.machine}")
        return 0
    print(f"{image.path}: ok ({len(image.records)} records, {len(image.blobs)} blobs)")
    return 0
