"""Port 0x80, the POST-code / I/O-delay port: writes are remembered, reads float high.

Linux writes here as an I/O delay (thousands of times during boot); the device only keeps
the last value and a count so a monitor or test can see what firmware or a guest wrote.
"""
from __future__ import annotations

from typing import ClassVar

import attrs

from pyv86.devices.base import Device


@attrs.define
class Port80State:
    VERSION: ClassVar[int] = 1
    last_code: int = 0
    writes: int = 0


class Port80(Device):
    kind = "port80"
    state_cls = Port80State
    description = "POST-code/delay port 0x80 (write sink)"

    def realize(self, machine) -> None:  # type: ignore[override]
        super().realize(machine)
        machine.ports.map(0x80, 1, self.io_read, self.io_write, self, name="port80", sizes=(1,))

    def io_read(self, offset: int, size: int) -> int:
        return 0xFF

    def io_write(self, offset: int, size: int, value: int) -> None:
        self.state.last_code = value & 0xFF
        self.state.writes = (self.state.writes + 1) & 0xFFFFFFFF
