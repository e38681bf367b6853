"""The i440FX PCI host bridge (8086:1237) at 00:00.0.

Its presence satisfies Linux's conf1 sanity check (bus 0 must hold an Intel device or a
host bridge). Only identity registers matter to a firmware-less boot; the chipset
registers 0x50-0x7F (PAM, DRAM rows, SMRAM) are plain read/write bytes.
"""
from __future__ import annotations

from typing import ClassVar

import attrs

from pyv86.devices.base import Device
from pyv86.pci import PciFunction


@attrs.define
class PciConfigState:
    """A PCI function's 256-byte configuration space."""

    VERSION: ClassVar[int] = 1
    config: bytes = bytes(256)


class PciBridgeDevice(Device):
    """Shared save/restore of a bridge's configuration space."""

    state_cls = PciConfigState
    slot: ClassVar[int] = 0
    function: PciFunction

    def make_function(self) -> PciFunction:
        raise NotImplementedError

    def realize(self, machine) -> None:  # type: ignore[override]
        super().realize(machine)
        self.function = self.make_function()
        self._power_on_config = bytes(self.function.config)
        machine.pci.attach(self.function, self.slot)

    def unrealize(self) -> None:
        if self.machine is not None:
            self.machine.pci.detach(self.function)

    def reset(self) -> None:
        if self.machine is not None:
            self.function.restore(self._power_on_config)
        self.state = self.save()

    def save(self) -> PciConfigState:
        return PciConfigState(bytes(self.function.config))

    def restore(self, state: PciConfigState) -> None:
        self.function.restore(bytes(state.config))
        self.state = state


class I440fx(PciBridgeDevice):
    kind = "i440fx"
    slot = 0
    description = "i440FX PCI host bridge 8086:1237 at 00:00.0"

    def make_function(self) -> PciFunction:
        function = PciFunction(self.id, 0x8086, 0x1237, 0x060000, revision=0x02)
        for off in range(0x50, 0x80):
            function.writable[off] = 0xFF
        return function
