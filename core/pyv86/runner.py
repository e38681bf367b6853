"""``pyv86 run``: build a machine from a file, connect its console, run it, report.

Kept apart from :mod:`pyv86.cli` so the Python API (:func:`run_machine_file`) and the
command line share one path.
"""
from __future__ import annotations

import argparse
import logging
import time
from typing import Any

from pyv86.config import load_machine_config
from pyv86.machine import Machine
from pyv86.platform.console import attach_console

log = logging.getLogger(__name__)


def run_machine_file(args: argparse.Namespace, plugins: Any) -> int:
    config = load_machine_config(args.file, plugins)
    from pyv86.state.runhooks import after_run, before_build, before_run

    image = before_build(args, config)  # a bad state image stops here, before anything opens
    machine = Machine.from_config(config, plugins)
    console = None
    try:
        console = attach_console(machine, exec_cmd=getattr(args, "exec_cmd", None),
                                 headless=getattr(args, "headless", False),
                                 verbose=getattr(args, "verbose", 0),
                                 console_log=getattr(args, "console_log", None))
        before_run(args, machine, image)
        started = time.monotonic()
        reason = machine.run(timeout_s=args.timeout)
        elapsed = time.monotonic() - started
        after_run(args, machine)
    finally:
        if console is not None:
            console.close()
        machine.shutdown(machine.stop_reason or "user")
    if machine.cpu is not None:
        executed = machine.cpu.instructions
        log.info("%s: stopped (%s) after %s guest instructions in %.2f s (%.1f MIPS)", config.path,
                 reason, f"{executed:,}", elapsed, executed / max(elapsed, 1e-9) / 1e6)
        jit = getattr(machine.cpu, "jit", None)
        if jit is not None:
            r = jit.report()
            log.info("%s: JIT: %s of them in translated blocks (%d blocks entered); %d blocks "
                     "translated in %d batches (%.1f s of compile thread), %d from the cache, "
                     "%d invalidated pages, %d stale, %d untranslatable, %d evicted by others", config.path,
                     f"{r['jit_instructions']:,}", r["blocks_entered"], r["translated"],
                     r["batches"], r["compile_s"], r["cache_hits"], r["invalidations"], r["stale"],
                     r["untranslatable"], r["evicted"])
    else:
        log.info("%s: stopped (%s)", config.path, reason)
    if console is not None and console.exec_session is not None:
        return console.exec_session.exit_status(reason, args.timeout)
    if machine.exit_status is not None:
        return machine.exit_status
    return 0
