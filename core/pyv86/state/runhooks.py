"""How ``pyv86 run`` uses state images: ``--restore``, ``[state] image``, ``--save-on-exit``, SIGUSR1.

:func:`before_build` reads and checks the image (header, manifest, checksums) before the
machine or any backend exists, so a corrupt, truncated, foreign or too-new image stops
the run with one line and starts nothing. :func:`before_run` restores it into the built
machine (device kinds and ids are checked there; the machine has not run yet) and, when
``--save-on-exit`` is given, makes SIGUSR1 save to the same path while the machine runs.
:func:`after_run` writes the ``--save-on-exit`` image once the machine stopped.
"""
from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

from pyv86.state.container import Image, read_image

if TYPE_CHECKING:
    from pyv86.config import MachineConfig
    from pyv86.machine import Machine

log = logging.getLogger(__name__)


def restore_path(args: argparse.Namespace, config: MachineConfig) -> str | None:
    return getattr(args, "restore", None) or config.state_image


def before_build(args: argparse.Namespace, config: MachineConfig) -> Image | None:
    path = restore_path(args, config)
    return read_image(path) if path else None


def before_run(args: argparse.Namespace, machine: Machine, image: Image | None) -> None:
    from pyv86.state.live import install_signal_handler
    from pyv86.state.snapshot import restore_machine

    if image is not None:
        result = restore_machine(machine, image.path, image=image)
        for line in result.mac_changes:
            log.info("%s", line)
    save_path = getattr(args, "save_on_exit", None)
    if save_path:
        install_signal_handler(machine, save_path)


def after_run(args: argparse.Namespace, machine: Machine) -> None:
    from pyv86.state.snapshot import save_machine

    save_path = getattr(args, "save_on_exit", None)
    if save_path:
        result = save_machine(machine, save_path)
        log.warning("%s: state saved to %s (%d bytes, %.2f s)", machine.name, result.path,
                    result.image_bytes, result.seconds)
