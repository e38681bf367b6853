"""Devices and machines for the state-image tests (a register-rich device and a fake NIC)."""
from __future__ import annotations

import enum
from typing import ClassVar

import attrs
import numpy as np

from pyv86 import hookimpl
from pyv86.devices.base import Device, DeviceRegistry
from pyv86.machine import Machine
from pyv86.net.port import NicPort, RxResult
from pyv86.pci import PciFunction


class Mode(enum.IntEnum):
    IDLE = 0
    BUSY = 3


@attrs.define
class Inner:
    count: int = 0
    label: str = "x"


@attrs.define
class RichState:
    VERSION: ClassVar[int] = 3
    RETIRED: ClassVar[frozenset[str]] = frozenset({"old_latch"})
    cr: int = 0x21
    mode: Mode = Mode.IDLE
    ratio: float = 0.5
    flag: bool = False
    name: str = "rich"
    mem: bytearray = attrs.field(factory=lambda: bytearray(0x8000))
    small: bytes = b"\x01\x02\x03"
    regs: np.ndarray = attrs.field(factory=lambda: np.zeros(8, dtype=np.uint32))
    pair: tuple = (1, 2)
    queue: list = attrs.field(factory=list)
    table: dict = attrs.field(factory=dict)
    inner: Inner = attrs.field(factory=Inner)
    maybe: int | None = None
    imr: int = attrs.field(default=0xFF, metadata={"since": 2})
    rxcr: int = attrs.field(default=0x0C, metadata={"since": 3})

    @staticmethod
    def upgrade_2_to_3(fields: dict) -> dict:
        # version 3 split "cr" bit 7 into "flag"
        fields["flag"] = bool(fields["cr"] & 0x80)
        fields["cr"] &= 0x7F
        return fields


class RichDevice(Device):
    """A device with one of every kind of field and a PCI function."""

    kind = "state-test-rich"
    state_cls = RichState

    def realize(self, machine: Machine) -> None:
        super().realize(machine)
        self.pci = PciFunction(f"{self.id}", 0x1234, 0x5678, 0x020000, interrupt_pin=1)
        self.pci.add_io_bar(0, 32, lambda o, s: 0, lambda o, s, v: None)
        machine.pci.attach(self.pci, 6)

    def scribble(self, seed: int = 1) -> None:
        rng = np.random.default_rng(seed)
        s = self.state
        s.cr, s.mode, s.ratio, s.name = 0x22, Mode.BUSY, 1.25, "scribbled"
        s.mem[:] = rng.integers(0, 256, len(s.mem), dtype=np.uint8).tobytes()
        s.small = b"\xff" * 5
        s.regs[:] = rng.integers(0, 2**32, 8, dtype=np.uint64).astype(np.uint32)
        s.pair, s.queue = (7, 8), [b"frame-one", b"two"]
        s.table = {1: "one", "k": [1, 2, {"x": None}]}
        s.inner = Inner(5, "in")
        s.maybe, s.imr, s.rxcr = 9, 0x3F, 0x04


@attrs.define
class FakeNicState:
    VERSION: ClassVar[int] = 1
    par: bytes = b"\x52\x54\x00\x00\x00\x01"
    prom: bytearray = attrs.field(factory=lambda: bytearray(b"\x52\x54\x00\x00\x00\x01" + bytes(26)))
    wire_mac: bytes = b"\x52\x54\x00\x00\x00\x01"


class FakeNic(Device):
    """A NIC with the MAC interface the state code expects (guest MAC in PAR/PROM, wire MAC)."""

    kind = "state-test-nic"
    state_cls = FakeNicState
    uses_netdev = True

    def realize(self, machine: Machine) -> None:
        super().realize(machine)
        self.received: list[bytes] = []
        self.port = NicPort(self.id, self._receive)
        netdev = getattr(self, "netdev_id", None)
        self.port.attach(machine.netdevs.get(netdev) if netdev else None)

    def _receive(self, frame: bytes) -> RxResult:
        if frame[:6] not in (self.state.par, b"\xff" * 6):
            return RxResult.FILTERED
        self.received.append(frame)
        return RxResult.STORED

    def send(self, frame: bytes) -> None:
        self.port.transmit(frame)

    def mac_addresses(self) -> tuple[bytes, bytes]:
        return bytes(self.state.prom[:6]), self.state.wire_mac

    def set_mac_addresses(self, guest: bytes, wire: bytes) -> None:
        self.state.prom[:6] = guest
        self.state.par = guest
        self.state.wire_mac = wire


class _Plugin:
    @hookimpl
    def pyv86_register_devices(self, registry: DeviceRegistry) -> None:
        registry.add(RichDevice)
        registry.add(FakeNic)


def register(plugins) -> None:
    plugins.register_module(_Plugin(), "state-tests")
    plugins.collect()


MACHINE = """
[machine]
memory = "4M"
cpu = false
[device.rich0]
type = "state-test-rich"
[device.nic0]
type = "state-test-nic"
netdev = "lan"
[netdev.lan]
url = "null:"
"""


def fill_ram(machine: Machine, seed: int = 3) -> None:
    rng = np.random.default_rng(seed)
    ram = machine.memory.ram
    ram[0x1000:0x3000] = rng.integers(0, 256, 0x2000, dtype=np.uint8)
    ram[0x10000:0x18000] = np.frombuffer((b"hello pyv86 " * 3000)[:0x8000], dtype=np.uint8)
    ram[-4096:] = 0xAA
