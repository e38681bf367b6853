"""The ``pyv86`` command line; the only module that configures logging.

Subcommands: ``run FILE``, ``check FILE``, ``plugins [--json]``, plus whatever plugins
add through ``pyv86_add_commands``. Global options: ``-v`` (repeat for more), ``--log
LOGGER=LEVEL``, ``-p NAME`` / ``-p no:NAME``, ``--debug`` (tracebacks), ``--version``.
Errors print one line and exit with status 2.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from typing import Any, Sequence

from pyv86 import __version__
from pyv86.errors import Pyv86Error

log = logging.getLogger("pyv86")

EXIT_USAGE = 2


def _global_parser(add_help: bool) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyv86", add_help=add_help,
        description="pyv86: a plugin-based x86 PC emulator built for guest networking")
    parser.add_argument("--version", action="version", version=f"pyv86 {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging: -v info, -vv debug, -vvv per-frame/port traces")
    parser.add_argument("--log", action="append", default=[], metavar="LOGGER=LEVEL",
                        help="set one logger's level, e.g. --log pyv86.net=DEBUG")
    parser.add_argument("-p", dest="plugin_opts", action="append", default=[], metavar="NAME",
                        help="load plugin NAME (entry point, distribution or module); -p no:NAME blocks it")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    return parser


def setup_logging(verbose: int, specs: Sequence[str]) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr)
    # per-frame/per-access traces (loggers under "pyv86.trace") need -vvv (or --log)
    logging.getLogger("pyv86.trace").setLevel(logging.DEBUG if verbose >= 3 else logging.INFO)
    for spec in specs:
        name, _, lvl = spec.partition("=")
        value = logging.getLevelName(lvl.upper() or "DEBUG")
        if not isinstance(value, int):
            raise Pyv86Error(f"--log {spec}: {lvl!r} is not a log level (DEBUG, INFO, WARNING, ERROR)")
        logging.getLogger(name).setLevel(value)


def make_plugin_manager(plugin_opts: Sequence[str], tolerant: bool = False) -> Any:
    from pyv86.plugins.manager import create_plugin_manager

    block = [p[3:] for p in plugin_opts if p.startswith("no:")]
    extra = [p for p in plugin_opts if not p.startswith("no:")]
    return create_plugin_manager(block=block, extra=extra, tolerant=tolerant)


def build_parser(plugins: Any) -> argparse.ArgumentParser:
    parser = _global_parser(add_help=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run a machine file")
    run.add_argument("file", help="machine file (TOML)")
    add_run_options(run)
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check", help="validate a machine file without starting anything")
    check.add_argument("file", help="machine file (TOML)")
    check.set_defaults(func=cmd_check)

    plug = sub.add_parser("plugins", help="list plugins and what they provide")
    plug.add_argument("--json", action="store_true", help="print JSON")
    plug.set_defaults(func=cmd_plugins)

    plugins.hook.pyv86_add_commands(subparsers=sub)
    return parser


def add_run_options(run: argparse.ArgumentParser) -> None:
    """Options of ``pyv86 run`` (kept in one place so tools can reuse them)."""
    run.add_argument("--exec", dest="exec_cmd", metavar="CMD",
                     help="run CMD in the guest shell, print its output, exit with its status")
    run.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                     help="stop after this many seconds of host time")
    run.add_argument("--headless", action="store_true",
                     help="do not connect the serial console to this terminal")
    run.add_argument("--console-log", metavar="FILE",
                     help="also write everything the guest prints on its console to FILE")
    run.add_argument("--restore", metavar="IMAGE", help="restore this state image before running")
    run.add_argument("--save-on-exit", metavar="IMAGE", help="write a state image when the machine stops")
    run.add_argument("--jit", choices=["on", "off"], default=None,
                     help="the CPU's block JIT tier (default: off, or PYV86_JIT; see docs/jit.md)")


def cmd_check(args: argparse.Namespace, plugins: Any) -> int:
    from pyv86.config import load_machine_config

    config = load_machine_config(args.file, plugins)
    print(f"{args.file}: ok ({len(config.devices)} devices, {len(config.netdevs)} netdevs, "
          f"{config.memory >> 20} MiB)")
    return 0


def cmd_run(args: argparse.Namespace, plugins: Any) -> int:
    from pyv86.runner import run_machine_file

    if args.jit is not None:   # read where the CPU is made (pyv86.cpu.jitrt.settings_from_env)
        os.environ["PYV86_JIT"] = "1" if args.jit == "on" else "0"
    return run_machine_file(args, plugins)


def cmd_plugins(args: argparse.Namespace, plugins: Any) -> int:
    info = plugins.plugin_info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for entry in info:
        origin = ("built-in" if entry["builtin"] else f"{entry['distribution']} {entry['version']}"
                  if entry["distribution"] else f"module {entry['module']}")
        provides = []
        if entry["devices"]:
            provides.append("devices: " + ", ".join(entry["devices"]))
        if entry["net_schemes"]:
            provides.append("backends: " + ", ".join(s + ":" for s in entry["net_schemes"]))
        print(f"{entry['name']} ({origin})" + (f" — {'; '.join(provides)}" if provides else ""))
    return 0


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # unwinds through the run loop's cleanup (backends, child processes)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    pre, rest = _global_parser(add_help=False).parse_known_args(argv)
    try:
        setup_logging(pre.verbose, pre.log)
        # `pyv86 plugins` lists a plugin that fails to import (with its error) instead of failing
        listing = bool(rest) and rest[0] == "plugins"
        plugins = make_plugin_manager(pre.plugin_opts, tolerant=listing)
        parser = build_parser(plugins)
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return EXIT_USAGE
        return int(args.func(args, plugins) or 0)
    except Pyv86Error as exc:
        if pre.debug:
            raise
        print(f"pyv86: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("pyv86: interrupted", file=sys.stderr)
        return 130
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


if __name__ == "__main__":
    sys.exit(main())
