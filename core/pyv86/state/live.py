"""Saving a machine while it runs: at the next slice boundary, on request or on a signal.

:func:`request_save` may be called from any thread (a console key handler, a signal
handler, a monitor socket): the save itself runs on the machine thread between two CPU
slices, where every device is between accesses. :func:`install_signal_handler` makes
SIGUSR1 (by default) save to a fixed path; the console can bind a key to
``machine.request_save(path)``.
"""
from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from pyv86.errors import StateError

if TYPE_CHECKING:
    from pyv86.machine import Machine
    from pyv86.state.snapshot import SaveResult

log = logging.getLogger(__name__)

Done = Callable[["SaveResult | None", "StateError | None"], None]


def request_save(machine: Machine, path: str | Path, done: Done | None = None) -> None:
    """Save ``machine`` to ``path`` at its next slice boundary; ``done(result, error)`` after."""

    def save() -> None:
        from pyv86.state.snapshot import save_machine

        # Pending work runs before the loop fires timers; a slice may have ended past a
        # deadline. Fire those first: an image cannot record "due but not fired", and a
        # device re-deriving its timer from the saved state would drop that event.
        machine.scheduler.run_due()
        try:
            result = save_machine(machine, path)
        except StateError as exc:
            log.error("%s", exc)
            if done is not None:
                done(None, exc)
            return
        log.warning("%s: state saved to %s (%d bytes, %.2f s)", machine.name, result.path,
                    result.image_bytes, result.seconds)
        if done is not None:
            done(result, None)

    machine.call_soon_threadsafe(save)


def install_signal_handler(machine: Machine, path: str | Path,
                           signum: int = signal.SIGUSR1) -> Callable[[], None]:
    """On ``signum`` save ``machine`` to ``path``; returns a function that restores the old handler."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        log.warning("%s: not the main thread; signal %d will not save the machine", machine.name, signum)
        return lambda: None
    previous = signal.getsignal(signum)

    def handler(_signum: int, _frame: object) -> None:
        request_save(machine, path)

    signal.signal(signum, handler)

    def uninstall() -> None:
        signal.signal(signum, previous)

    return uninstall
