"""A minimal i8042 keyboard controller (data port 0x60, status/command port 0x64).

Enough for Linux's probe and for rebooting: status register (OBF, SYS, command/data,
keylock, AUX data), the controller configuration byte (commands 0x20/0x60), self-test
0xAA (answers 0x55 and sets SYS), interface tests 0xAB/0xA9 (0x00 = ok), port
enable/disable (0xA7/0xA8/0xAD/0xAE), output port read/write (0xD0/0xD1: bit 0 low =
reset), output-buffer echo (0xD2 keyboard, 0xD3 AUX) and the pulse command 0xF0-0xFF
(0xFE pulses the reset line: ``machine.request_reset("guest")``). A keyboard device
answers reset (0xFA 0xAA), identify (0xFA 0xAB 0x83), enable/disable/defaults (0xFA),
LEDs/typematic/scancode-set with their argument (0xFA each) and echo (0xEE). Nothing
is connected to the AUX port (writes to it are ignored). IRQ 1 / IRQ 12 follow the
output buffer when enabled in the configuration byte.
"""
from __future__ import annotations

import logging
from typing import ClassVar

import attrs

from pyv86.devices.base import Device

log = logging.getLogger(__name__)

STAT_OBF, STAT_IBF, STAT_SYS, STAT_CMD, STAT_UNLOCKED, STAT_AUX = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
CTR_KBDINT, CTR_AUXINT, CTR_SYS, CTR_KBDDIS, CTR_AUXDIS, CTR_XLATE = 0x01, 0x02, 0x04, 0x10, 0x20, 0x40
QUEUE_LIMIT = 16


@attrs.define
class I8042State:
    VERSION: ClassVar[int] = 1
    status: int = STAT_UNLOCKED
    ctr: int = CTR_KBDINT | CTR_SYS | CTR_XLATE
    output_port: int = 0x03               # bit 0: not in reset, bit 1: A20 enabled
    queue: list[list[int]] = attrs.field(factory=list)  # [byte, from_aux]
    last: int = 0
    pending_command: int = 0              # controller command waiting for its data byte
    kbd_pending: int = 0                  # keyboard command waiting for its argument
    kbd_scanning: bool = True


class I8042(Device):
    kind = "i8042"
    state_cls = I8042State
    description = "minimal i8042 keyboard controller (self-test, config byte, 0xFE reset)"

    def realize(self, machine) -> None:  # type: ignore[override]
        super().realize(machine)
        machine.ports.map(0x60, 1, self._read_data, self._write_data, self, name="i8042-data", sizes=(1,))
        machine.ports.map(0x64, 1, self._read_status, self._write_command, self, name="i8042-cmd", sizes=(1,))
        self._irq_kbd = machine.irqs[1].source(f"{self.id}.kbd")
        self._irq_aux = machine.irqs[12].source(f"{self.id}.aux")

    def reset(self) -> None:
        super().reset()
        self._update_irq()

    def restore(self, state: I8042State) -> None:
        self.state = state
        self._update_irq()

    # output buffer ---------------------------------------------------------------
    def _push(self, byte: int, aux: bool = False) -> None:
        s = self.state
        if len(s.queue) >= QUEUE_LIMIT:
            log.debug("%s: output queue full; dropping %#04x", self.id, byte)
            return
        s.queue.append([byte & 0xFF, int(aux)])
        self._update_irq()

    def _update_irq(self) -> None:
        s = self.state
        if s.queue:
            s.status |= STAT_OBF
            if s.queue[0][1]:
                s.status |= STAT_AUX
            else:
                s.status &= ~STAT_AUX
        else:
            s.status &= ~(STAT_OBF | STAT_AUX)
        if self.machine is None:
            return
        head_aux = bool(s.queue and s.queue[0][1])
        self._irq_kbd.set(bool(s.queue) and not head_aux and bool(s.ctr & CTR_KBDINT))
        self._irq_aux.set(head_aux and bool(s.ctr & CTR_AUXINT))

    def _read_data(self, offset: int, size: int) -> int:
        s = self.state
        if s.queue:
            s.last = s.queue.pop(0)[0]
            self._update_irq()
        return s.last

    def _read_status(self, offset: int, size: int) -> int:
        return self.state.status

    # commands ----------------------------------------------------------------------
    def _write_command(self, offset: int, size: int, value: int) -> None:
        s = self.state
        s.status |= STAT_CMD
        s.pending_command = 0
        if value == 0x20:
            self._push(s.ctr)
        elif 0x21 <= value <= 0x3F:
            self._push(0)  # internal RAM bytes read as zero
        elif value in (0x60, 0xD1, 0xD2, 0xD3, 0xD4) or 0x61 <= value <= 0x7F:
            s.pending_command = value
        elif value == 0xA7:
            s.ctr |= CTR_AUXDIS
        elif value == 0xA8:
            s.ctr &= ~CTR_AUXDIS
        elif value in (0xA9, 0xAB):
            self._push(0x00)  # interface test passed
        elif value == 0xAA:
            s.status |= STAT_SYS
            self._push(0x55)
        elif value == 0xAD:
            s.ctr |= CTR_KBDDIS
        elif value == 0xAE:
            s.ctr &= ~CTR_KBDDIS
        elif value == 0xC0:
            self._push(0x00)  # input port
        elif value == 0xD0:
            self._push(s.output_port)
        elif value >= 0xF0:
            if not value & 1:
                self._pulse_reset()
        else:
            log.debug("%s: controller command %#04x ignored", self.id, value)

    def _pulse_reset(self) -> None:
        log.info("%s: reset pulsed by the guest", self.id)
        if self.machine is not None:
            self.machine.request_reset("guest")

    def _write_data(self, offset: int, size: int, value: int) -> None:
        s = self.state
        s.status &= ~STAT_CMD
        command, s.pending_command = s.pending_command, 0
        if command == 0x60:
            s.ctr = value
            if value & CTR_SYS:
                s.status |= STAT_SYS
            else:
                s.status &= ~STAT_SYS
            self._update_irq()
        elif 0x61 <= command <= 0x7F:
            pass  # internal RAM write
        elif command == 0xD1:
            s.output_port = value
            if not value & 1:
                self._pulse_reset()
        elif command == 0xD2:
            self._push(value)
        elif command == 0xD3:
            self._push(value, aux=True)
        elif command == 0xD4:
            log.debug("%s: byte %#04x for the AUX port ignored (no mouse)", self.id, value)
        else:
            self._keyboard(value)

    def _keyboard(self, value: int) -> None:
        s = self.state
        s.ctr &= ~CTR_KBDDIS  # writing to the keyboard enables its interface
        if s.kbd_pending:
            s.kbd_pending = 0
            self._push(0xFA)
            return
        if value == 0xFF:
            s.kbd_scanning = True
            self._push(0xFA)
            self._push(0xAA)
        elif value == 0xF2:
            self._push(0xFA)
            self._push(0xAB)
            self._push(0x83)
        elif value in (0xED, 0xF3, 0xF0):
            s.kbd_pending = value
            self._push(0xFA)
        elif value == 0xF4:
            s.kbd_scanning = True
            self._push(0xFA)
        elif value in (0xF5, 0xF6):
            s.kbd_scanning = value == 0xF6
            self._push(0xFA)
        elif value == 0xEE:
            self._push(0xEE)
        else:
            self._push(0xFE)  # resend: unknown command
