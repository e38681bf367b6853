"""Port 0x92, "system control port A": the fast A20 latch and the fast reset bit.

Bit 1 is the A20 gate as a read/write latch. pyv86's address bus is always 32 bits wide,
so clearing it is logged once and otherwise has no effect (no guest we boot relies on
the 1 MiB wrap). Writing bit 0 as 1 resets the machine (``request_reset("guest")``); bit
0 reads back as 0.
"""
from __future__ import annotations

import logging
from typing import ClassVar

import attrs

from pyv86.devices.base import Device

log = logging.getLogger(__name__)


@attrs.define
class Port92State:
    VERSION: ClassVar[int] = 1
    value: int = 0x02  # A20 enabled


class Port92(Device):
    kind = "port92"
    state_cls = Port92State
    description = "system control port A 0x92 (A20 latch, bit 0 resets)"

    def realize(self, machine) -> None:  # type: ignore[override]
        super().realize(machine)
        machine.ports.map(0x92, 1, self.io_read, self.io_write, self, name="port92", sizes=(1,))
        self._warned = False

    def io_read(self, offset: int, size: int) -> int:
        return self.state.value & 0xFE

    def io_write(self, offset: int, size: int, value: int) -> None:
        self.state.value = value & 0xFE
        if not value & 0x02 and not self._warned:
            self._warned = True
            log.info("%s: guest disabled A20; pyv86 keeps the address bus 32 bits wide", self.id)
        if value & 0x01 and self.machine is not None:
            log.info("%s: fast reset requested by the guest", self.id)
            self.machine.request_reset("guest")
