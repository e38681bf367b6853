"""Hook specifications: every way a plugin extends pyv86.

Plugins implement any subset of these with ``@pyv86.hookimpl``; implementations may
accept any subset of the documented arguments (pluggy passes them by name), so hooks can
gain arguments without breaking plugins. Built-in devices and backends register through
these same hooks. Each hook is documented in ``docs/plugin-hooks.md`` (a test checks it).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import argparse

    from pyv86.devices.base import DeviceRegistry
    from pyv86.machine import Machine
    from pyv86.net.base import NetBackendRegistry

hookspec = pluggy.HookspecMarker("pyv86")

# -- registration ------------------------------------------------------------------


@hookspec
def pyv86_register_devices(registry: DeviceRegistry) -> None:
    """Add device classes that machine files can name.

    Call ``registry.add(cls)`` once per :class:`pyv86.devices.Device` subclass;
    ``cls.kind`` is the value of ``type = "..."`` in a ``[device.<id>]`` table.

    :param registry: Collects the classes. A kind registered twice (by this or another
        plugin) is an error naming both plugins.

    .. versionadded:: 0.1
    """


@hookspec
def pyv86_register_net_backends(registry: NetBackendRegistry) -> None:
    """Add network backends, chosen by the scheme of a ``[netdev.<id>] url``.

    Call ``registry.add(scheme, factory, help="...")``; ``factory(url, machine)``
    returns an object with ``send(frame)``, ``set_receiver(callback)`` and ``close()``.

    :param registry: Collects the factories. A scheme registered twice is an error.

    .. versionadded:: 0.1
    """


@hookspec
def pyv86_add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add subcommands to the ``pyv86`` command line (e.g. ``pyv86 relay serve``).

    Create a parser with ``subparsers.add_parser(name, help=...)`` and give it a
    handler with ``parser.set_defaults(func=handler)``; the CLI calls
    ``handler(args, plugins)`` (the parsed namespace and the plugin manager) and exits
    with the status it returns. Raise :class:`pyv86.errors.Pyv86Error` subclasses for
    one-line errors (exit status 2).

    :param subparsers: The argparse sub-parser collection of the ``pyv86`` command.

    .. versionadded:: 0.1
    """


# -- machine lifecycle ---------------------------------------------------------------


@hookspec
def pyv86_machine_created(machine: Machine) -> None:
    """The machine's devices are realized; the first reset has not happened yet.

    Attach monitors, tracers or extra wiring here.

    :param machine: The new machine.

    .. versionadded:: 0.1
    """


@hookspec
def pyv86_machine_reset(machine: Machine, reason: str) -> None:
    """Every device was reset (power-on, or a reset the guest asked for).

    :param machine: The machine.
    :param reason: ``"power-on"``, ``"guest"`` (reboot, triple fault) or ``"api"``.

    .. versionadded:: 0.1
    """


@hookspec
def pyv86_before_save(machine: Machine, extra: dict[str, Any]) -> None:
    """A state image is about to be written.

    Add JSON-serialisable entries to ``extra`` to store plugin data that belongs to no
    device; they come back in :func:`pyv86_after_restore`.

    :param machine: The machine being saved (stopped between instructions).
    :param extra: Plugin data to store in the image, keyed by plugin name.

    .. versionadded:: 0.1
    """


@hookspec
def pyv86_after_restore(machine: Machine, extra: dict[str, Any]) -> None:
    """A state image was loaded into ``machine``; the guest has not run yet.

    :param machine: The restored machine.
    :param extra: What :func:`pyv86_before_save` implementations stored.

    .. versionadded:: 0.1
    """


@hookspec
def pyv86_machine_stopped(machine: Machine, reason: str) -> None:
    """The machine stopped; release what the plugin attached to it.

    :param machine: The machine.
    :param reason: Why it stopped (``"guest-poweroff"``, ``"exec-finished"``, ``"user"``,
        ``"error"``...).

    .. versionadded:: 0.1
    """
