"""``pyv86 run``: build a machine from a file, connect its console, run it, report.

Kept apart from :mod:`pyv86.cli` so the Python API (:func:`run_machine_file`) and the
command line share one path.
"""
from __future__ import annotations

import argparse
import logging
from typing import Any

from pyv86.config import load_machine_config
from pyv86.machine import Machine

log = logging.getLogger(__name__)


def run_machine_file(args: argparse.Namespace, plugins: Any) -> int:
    config = load_machine_config(args.file, plugins)
    from pyv86.state.runhooks import after_run, before_build, before_run

    image = before_build(args, config)  # a bad state image stops here, before anything opens
    machine = Machine.from_config(config, plugins)
    try:
        before_run(args, machine, image)
        reason = machine.run(timeout_s=args.timeout)
        after_run(args, machine)
    finally:
        machine.shutdown(machine.stop_reason or "user")
    log.info("%s: stopped (%s)", config.path, reason)
    if machine.exit_status is not None:
        return machine.exit_status
    return 0
