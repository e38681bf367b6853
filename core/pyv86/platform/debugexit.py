"""``isa-debug-exit``: a port the guest writes to stop the emulator with an exit status.

Compatible with QEMU's device of the same name: writing value ``v`` stops the machine
with exit status ``(v << 1) | 1``. pyv86's guest images use it to end ``--exec`` runs.
"""
from __future__ import annotations

from typing import ClassVar

import attrs

from pyv86.devices.base import Device


def _port(value: int) -> int:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"iobase {value:#x} is not an I/O port (0..0xffff)")
    return value


@attrs.define(frozen=True)
class DebugExitConfig:
    iobase: int = attrs.field(default=0x501, validator=lambda _i, _a, v: _port(v),
                              metadata={"help": "I/O port the guest writes its exit code to"})
    iosize: int = attrs.field(default=2, validator=attrs.validators.in_((1, 2, 4)), metadata={"help": "width of the port in bytes (1, 2 or 4)"})


@attrs.define
class DebugExitState:
    VERSION: ClassVar[int] = 1


class DebugExit(Device):
    kind = "isa-debug-exit"
    config_cls = DebugExitConfig
    description = "guest writes an exit code to a port; the emulator stops with it"

    def realize(self, machine) -> None:  # type: ignore[override]
        super().realize(machine)
        machine.ports.map(self.config.iobase, self.config.iosize, None, self.io_write, self)

    def io_write(self, offset: int, size: int, value: int) -> None:
        assert self.machine is not None
        self.machine.stop("guest-exit", exit_status=(value << 1) | 1)
