"""Fixtures for the PC platform device tests: a CPU-less machine with the pc chips."""
from __future__ import annotations

import pytest

from pyv86.machine import Machine
from pyv86.platform.pc import add_pc_platform


class Pc:
    """A realized machine with the PC platform; helpers to poke ports and run time."""

    def __init__(self, memory: int = 32 << 20, devices: tuple = ()) -> None:
        self.machine = Machine(memory)
        for device in devices:
            self.machine.add_device(device)
        add_pc_platform(self.machine)
        self.machine.realize()
        self.ports = self.machine.ports
        self.pic = self.machine.devices["pic"]
        self.pit = self.machine.devices["pit"]
        self.rtc = self.machine.devices["rtc"]
        self.uart = self.machine.devices["serial0"]
        self.i8042 = self.machine.devices["i8042"]

    def outb(self, port: int, value: int) -> None:
        self.ports.outb(port, value)

    def inb(self, port: int) -> int:
        return self.ports.inb(port)

    def advance(self, ns: int) -> None:
        """Let ``ns`` of guest time pass (no CPU: the machine jumps between timers)."""
        self.machine.run(until_ns=self.machine.clock.now + ns)

    def init_pics(self, master_icw4: int = 0x01, slave_icw4: int = 0x01) -> None:
        """What Linux's init_8259A does: vectors 0x30/0x38, cascade on IR2, all unmasked."""
        for port, value in ((0x20, 0x11), (0x21, 0x30), (0x21, 0x04), (0x21, master_icw4),
                            (0xA0, 0x11), (0xA1, 0x38), (0xA1, 0x02), (0xA1, slave_icw4)):
            self.outb(port, value)
        self.outb(0x21, 0x00)
        self.outb(0xA1, 0x00)


@pytest.fixture
def pc() -> Pc:
    return Pc()


@pytest.fixture
def make_pc():
    """``make_pc(memory=..., devices=(...))``: a PC with some chips configured by the test."""
    return Pc
