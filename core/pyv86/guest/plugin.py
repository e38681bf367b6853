"""Built-in plugin adding ``pyv86 guest build`` and ``pyv86 guest info`` to the command line."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pyv86 import hookimpl


@hookimpl
def pyv86_add_commands(subparsers: argparse._SubParsersAction) -> None:
    guest = subparsers.add_parser("guest", help="build or inspect the Linux guest image")
    sub = guest.add_subparsers(dest="guest_command", metavar="SUBCOMMAND")
    guest.set_defaults(func=lambda args, plugins=None: _usage(guest))

    build = sub.add_parser(
        "build", help="fetch Debian's i386 kernel and busybox and write the guest image",
        description="Writes vmlinuz, initramfs.cpio.gz and manifest.json into the guest cache "
                    "(~/.cache/pyv86/guest, or $PYV86_CACHE_DIR/guest). A second build is a no-op.")
    build.add_argument("--force", action="store_true", help="rebuild even if the image is up to date")
    build.add_argument("--kernel", metavar="FILE", type=Path, help="use this bzImage instead of Debian's")
    build.add_argument("--initrd", metavar="FILE", type=Path,
                       help="use this initramfs as is instead of building one")
    build.add_argument("--add", metavar="HOST:GUEST", action="append", default=[],
                       help="add a host file to the initramfs at an absolute guest path (repeatable); "
                            "/etc/pyv86/startup.sh runs at boot")
    build.add_argument("--debs", metavar="DIR", type=Path,
                       help="take the .deb packages from DIR instead of apt (offline builds)")
    build.add_argument("--out", metavar="DIR", type=Path, help="write the image here instead of the cache")
    build.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    build.set_defaults(func=cmd_build)

    info = sub.add_parser("info", help="show where the guest image is and what it contains")
    info.add_argument("--json", action="store_true", help="print the manifest as JSON")
    info.set_defaults(func=cmd_info)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def cmd_build(args: argparse.Namespace, plugins: Any = None) -> int:
    from pyv86.guest.builder import BuildOptions, build_guest, parse_add
    from pyv86.guest.progress import Progress

    options = BuildOptions(force=args.force, kernel=args.kernel, initrd=args.initrd,
                           add=tuple(parse_add(s) for s in args.add), debs=args.debs, out_dir=args.out)
    result = build_guest(options, Progress(None if args.quiet else sys.stderr))
    print(result.out_dir)
    return 0


def cmd_info(args: argparse.Namespace, plugins: Any = None) -> int:
    from pyv86 import paths
    from pyv86.guest.builder import GuestBuilder, BuildOptions
    from pyv86.guest.apt import GuestBuildError

    builder = GuestBuilder(BuildOptions())
    manifest = builder.load_manifest()
    if manifest is None:
        raise GuestBuildError(f"guest info: no image in {paths.guest_dir()}; run `pyv86 guest build`")
    if args.json:
        print(json.dumps(manifest, indent=2))
        return 0
    k, i = manifest["kernel"], manifest["initramfs"]
    print(f"directory: {builder.out_dir}")
    print(f"kernel:    {k.get('release') or '?'} ({k.get('package') or k.get('source')}"
          f" {k.get('package_version') or ''}".rstrip() + f"), {k['size']} bytes")
    print(f"initramfs: {i['source']}, {i['size']} bytes, modules: {', '.join(i.get('modules', [])) or 'none'}")
    print(f"built:     {manifest.get('created')}")
    return 0
