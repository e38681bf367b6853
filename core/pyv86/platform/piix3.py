"""The PIIX3 PCI-to-ISA bridge (8086:7000) at 00:01.0, with its PIRQ router.

Header type 0x80 (multi-function, as on real boards). Registers 0x60-0x63 (PIRQRC[A-D])
route the four PCI interrupt lines to ISA IRQs: bit 7 disables the route, bits 3:0 give
the IRQ. Power-on values are 10, 10, 11, 11, the values SeaBIOS programs and the ones the
PIC's default ELCR marks level-triggered. The bridge installs itself as
``machine.pci.route_irq`` (device slot + pin -> PIRQ swizzle -> these registers), and
re-wires already attached PCI functions whenever the guest rewrites a route, so the
Interrupt Line a firmware-less Linux reads (written by the bus at reset) always matches
the wire the interrupt travels on. Other registers (0x40-0xFF: the quirk writes Linux
makes at 0x82, ISA recovery timers...) are plain read/write bytes.
"""
from __future__ import annotations

import logging

from pyv86.pci import PciFunction
from pyv86.platform.i440fx import PciBridgeDevice

log = logging.getLogger(__name__)

PIRQRC = 0x60
DEFAULT_ROUTES = (10, 10, 11, 11)
VALID_IRQS = frozenset({3, 4, 5, 6, 7, 9, 10, 11, 12, 14, 15})


class Piix3(PciBridgeDevice):
    kind = "piix3"
    slot = 1
    description = "PIIX3 ISA bridge 8086:7000 at 00:01.0 (PIRQ routing 0x60-0x63)"

    def make_function(self) -> PciFunction:
        function = PciFunction(self.id, 0x8086, 0x7000, 0x060100, header_type=0x80)
        for off in range(0x40, 0x100):
            function.writable[off] = 0xFF
        for i, irq in enumerate(DEFAULT_ROUTES):
            function.config[PIRQRC + i] = irq
            function.writable[PIRQRC + i] = 0x8F
        function.config_write_hook = self._config_written
        return function

    def realize(self, machine) -> None:  # type: ignore[override]
        super().realize(machine)
        machine.pci.route_irq = self.route
        self._rewire()

    def reset(self) -> None:
        super().reset()
        self._rewire()

    def restore(self, state) -> None:  # type: ignore[override]
        super().restore(state)
        self._rewire()

    def pirq_irq(self, pirq: int) -> int | None:
        """The ISA IRQ PIRQ line ``pirq`` (0 = A) is routed to, or None if disabled."""
        value = self.function.config[PIRQRC + (pirq & 3)]
        if value & 0x80 or (value & 0x0F) not in VALID_IRQS:
            return None
        return value & 0x0F

    def route(self, slot: int, pin: int) -> int:
        """``machine.pci.route_irq``: the ISA IRQ of ``pin`` (1 = INTA) of a device in ``slot``.

        A disabled route answers 0xFF, the PCI "not connected" Interrupt Line value.
        """
        irq = self.pirq_irq((slot + pin - 2) & 3)
        return 0xFF if irq is None else irq

    def _config_written(self, offset: int, size: int, value: int) -> None:
        if offset < PIRQRC + 4 and offset + size > PIRQRC:
            self._rewire()

    def _rewire(self) -> None:
        """Move every attached function's INTx onto the line its PIRQ now routes to."""
        machine = self.machine
        if machine is None:
            return
        for devfn, function in machine.pci.functions.items():
            if not function.interrupt_pin:
                continue
            irq = self.route(devfn >> 3, function.interrupt_pin)
            source = function.irq_source
            current = source.line.number if source is not None else None
            target = None if irq == 0xFF else irq
            if current == target:
                continue
            if source is not None:
                source.line.release(source)
                function.irq_source = None
            if target is not None:
                function.irq_source = machine.irqs[target].source(function.name)
                function._drive_irq()
            log.debug("%s: %s INT%s now on IRQ %s", self.id, function.name,
                      "ABCD"[(function.interrupt_pin - 1) & 3], target)
