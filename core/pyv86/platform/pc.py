"""The "pc" platform: gives every machine with a CPU the chips a PC has, and boots Linux.

A built-in plugin (``pyv86.pc``; ``-p no:pyv86.pc`` turns it off) implementing
``pyv86_machine_created``: when the machine has a CPU it adds, in this order, the 8259
pair (``pic``), the 8254 (``pit``), the RTC (``rtc``), COM1 (``serial0``), the i8042
(``i8042``), ports 0x80 and 0x92, the i440FX host bridge and the PIIX3 ISA bridge. A
machine file that already declares a device of one of these kinds (to set its options,
e.g. ``[device.rtc] type = "mc146818"  time = "2024-01-01T00:00:00"``) keeps its own
and the platform skips that kind. Machines without a CPU (device tests) get nothing
unless a test calls :func:`add_pc_platform` itself.

When the machine file sets ``[boot] kernel``, the Linux loader
(:class:`pyv86.boot.linux.LinuxBoot`) is parsed now (so a bad file fails before anything
runs) and installed as a boot hook: it runs after every reset.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pyv86 import hookimpl
from pyv86.devices.base import Device
from pyv86.platform.i440fx import I440fx
from pyv86.platform.i8042 import I8042
from pyv86.platform.pic import PicPair
from pyv86.platform.piix3 import Piix3
from pyv86.platform.pit import Pit
from pyv86.platform.port80 import Port80
from pyv86.platform.port92 import Port92
from pyv86.platform.rtc import Rtc
from pyv86.platform.uart import Uart16550

if TYPE_CHECKING:
    from pyv86.machine import Machine

log = logging.getLogger(__name__)

PC_DEVICES: tuple[tuple[str, type[Device]], ...] = (
    ("pic", PicPair),
    ("pit", Pit),
    ("rtc", Rtc),
    ("serial0", Uart16550),
    ("i8042", I8042),
    ("port80", Port80),
    ("port92", Port92),
    ("i440fx", I440fx),
    ("piix3", Piix3),
)


def add_pc_platform(machine: Machine) -> list[Device]:
    """Add the PC chips the machine does not have yet; returns the devices added."""
    added = []
    for device_id, cls in PC_DEVICES:
        if any(type(d) is cls for d in machine.devices.values()):
            continue
        name = device_id
        n = 1
        while name in machine.devices:
            name = f"{device_id}-{n}"
            n += 1
        added.append(machine.add_device(cls(name)))
    return added


def console_uart(machine: Machine) -> Uart16550 | None:
    """The serial port the console runs on: ``serial0`` if present, else the first UART."""
    device = machine.devices.get("serial0")
    if isinstance(device, Uart16550):
        return device
    return next(iter(machine.devices_of(Uart16550)), None)


@hookimpl
def pyv86_machine_created(machine: Machine) -> None:
    if machine.cpu is None:
        return
    add_pc_platform(machine)
    config = machine.config
    if config is not None and config.kernel:
        from pyv86.boot.linux import LinuxBoot

        machine.boot_hooks.append(LinuxBoot.from_files(config.kernel, config.initrd, config.cmdline or None,
                                                       decompress=config.decompress))
