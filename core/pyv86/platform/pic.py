"""The 8259A programmable interrupt controller pair (master 0x20/0x21, slave 0xA0/0xA1) and ELCR.

This is the PC's interrupt controller: it attaches itself as the sink of the machine's
IRQ lines (``machine.irqs.attach_sink``), registers as the controller the CPU
acknowledges interrupts from (``machine.set_interrupt_controller``) and drives the CPU's
INTR pin with ``machine.set_intr``. The slave's output is wired to master input 2; ISA
IRQ 2 (the cascade) is redirected to input 9 as on every AT.

Implemented: ICW1-ICW4 (single/cascade, LTIM, auto-EOI, special fully nested), OCW1
(IMR), OCW2 (non-specific, specific and rotating EOIs, set priority, rotate on auto-EOI),
OCW3 (IRR/ISR read select, poll, special mask mode), edge and level triggering (level per
line through the ELCR registers at 0x4D0/0x4D1, or all lines with ICW1.LTIM), spurious
IRQ 7 / 15 when the request went away before INTA. The ELCR power-on value is a config
option (default IRQ 10 and 11 level-triggered: the PCI interrupts the PIIX3 routes).

State keeps per-chip registers in two-element lists (index 0 master, 1 slave). The live
IRR, IMR, ISR, a mode byte and each chip's output sit in a bytearray shared with a ctypes
block (:class:`PicRegisters`) so that the CPU can serve mask accesses and specific EOIs
itself while they cannot change either chip's output (register windows,
:mod:`pyv86.bus.window`): Linux masks, acknowledges and unmasks a PCI interrupt around
every interrupt it handles, and lib8390 masks it around every transmission.
"""
from __future__ import annotations

import ctypes
import logging
from typing import ClassVar

import attrs

from pyv86.bus.window import InterruptPair, RegisterWindow
from pyv86.devices.base import Device
from pyv86.errors import StateError

log = logging.getLogger(__name__)

MASTER, SLAVE = 0, 1
ELCR_WRITABLE = (0xF8, 0xDE)  # IRQ 0, 1, 2, 8 and 13 are always edge-triggered
CASCADE = 2


def _elcr(value: int) -> int:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"elcr {value:#x} is not a 16-bit mask of IRQ lines")
    if value & ~(ELCR_WRITABLE[0] | ELCR_WRITABLE[1] << 8):
        raise ValueError(f"elcr {value:#06x}: IRQ 0, 1, 2, 8 and 13 cannot be level-triggered")
    return value


@attrs.define(frozen=True)
class PicConfig:
    elcr: int = attrs.field(default=0x0C00, validator=lambda _i, _a, v: _elcr(v), metadata={
        "help": "power-on ELCR: bit n set = IRQ n level-triggered (default IRQ 10 and 11)"})


def _best_rank(lowest: int, mask: int) -> int:
    start = (lowest + 1) & 7
    for rank in range(8):
        if mask >> ((start + rank) & 7) & 1:
            return rank
    return 8


_RANK = tuple(tuple(_best_rank(lowest, mask) for mask in range(256)) for lowest in range(8))
"""``_RANK[lowest priority input][request mask]``: rank (0 highest) of the best request, 8 if
none. A table, because the guest's mask writes and EOIs (several per network frame) each
resolve priorities on both chips."""


def _pair(value: int = 0) -> list[int]:
    return [value, value]


def _two_bytes(_inst: object, attribute: attrs.Attribute, values: object) -> None:
    """Each register is a byte per chip (checked when a state image is read, before
    anything is restored)."""
    if (not isinstance(values, (list, tuple)) or len(values) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 0xFF for v in values)):
        raise ValueError(f"{attribute.name} must be two bytes, got {values!r:.40}")


def _pair_field(value: int = 0) -> list[int]:
    return attrs.field(factory=lambda: _pair(value), validator=_two_bytes)


@attrs.define
class PicState:
    """Registers of both chips (index 0 master, 1 slave) with datasheet names."""

    VERSION: ClassVar[int] = 1
    irr: list[int] = _pair_field()
    isr: list[int] = _pair_field()
    imr: list[int] = _pair_field()
    elcr: list[int] = _pair_field()
    input_level: list[int] = _pair_field()    # current level of each input pin
    vector_base: list[int] = _pair_field()    # ICW2 & 0xF8
    icw3: list[int] = _pair_field()
    init_step: list[int] = _pair_field()      # 0 ready, 2..4 expecting ICWn
    icw4_needed: list[int] = _pair_field()
    single: list[int] = _pair_field()
    ltim: list[int] = _pair_field()           # ICW1 bit 3: all inputs level
    auto_eoi: list[int] = _pair_field()
    rotate_on_aeoi: list[int] = _pair_field()
    sfnm: list[int] = _pair_field()           # special fully nested mode
    lowest_priority: list[int] = _pair_field(7)  # IR with lowest priority
    read_isr: list[int] = _pair_field()       # OCW3 RR/RIS: 1 = read ISR
    poll: list[int] = _pair_field()
    special_mask: list[int] = _pair_field()
    intr: bool = False


_PAIRS = tuple(f.name for f in attrs.fields(PicState) if f.name != "intr")


_BYTES = ("irr", "imr", "mode", "isr")
"""The registers in the block the CPU reads (the rest are Python lists)."""
IRR, IMR, MODE, ISR = (2 * _BYTES.index(name) for name in _BYTES)
OUT = 2 * len(_BYTES)
"""Offsets in :attr:`PicRegisters.regs`, the CPU's block (add the chip: 0 master, 1 slave).
``OUT`` is not state: each chip's output (1: requesting), kept up to date by the pair."""


class PicRegisters:
    """The running pair's registers, :class:`PicState`'s fields per chip (index 0 master,
    1 slave). IRR, IMR, ISR and the mode byte (per chip 0 while it takes mask writes and
    mask reads as such: initialised, not polling, not in special mask mode; 1 otherwise)
    live in ``regs``, followed by each chip's output (``OUT``), in a bytearray
    whose memory is also the ctypes ``block`` of the CPU's register window, so it never
    moves; the hot code indexes ``regs[IRR + chip]`` (as fast as a list; a ctypes structure
    or memoryview per register made the 8259's Python side 25-160 % slower). The others
    are lists. Reset and restore fill it in place."""

    __slots__ = ("regs", "block", "intr", *(name for name in _PAIRS if name not in _BYTES))

    def __init__(self) -> None:
        self.regs = bytearray(OUT + 2)
        self.block = (ctypes.c_uint8 * len(self.regs)).from_buffer(self.regs)
        for name in _PAIRS:
            if name not in _BYTES:
                setattr(self, name, [0, 0])
        self.intr = False

    # the registers in ``regs`` as two-byte views (master, slave), e.g. ``state.irr[SLAVE]``
    irr, imr, mode, isr = (property(lambda self, at=at: memoryview(self.regs)[at : at + 2])
                           for at in (IRR, IMR, MODE, ISR))

    def fill(self, state: PicState, where: str = "i8259") -> None:
        """Copy ``state`` in (all of it checked first: a bad one changes nothing)."""
        fields = attrs.fields_dict(PicState)
        for name in _PAIRS:
            try:
                _two_bytes(state, fields[name], getattr(state, name))
            except ValueError as exc:
                raise StateError(f"{where}: {exc}") from None
        for name in _PAIRS:
            values = getattr(state, name)
            if name in _BYTES:
                getattr(self, name)[:] = bytes(values)
            else:
                setattr(self, name, list(values))
        self.intr = bool(state.intr)
        for chip in (MASTER, SLAVE):
            self.sync_mode(chip)

    def sync_mode(self, chip: int) -> None:
        """Call after ``poll``, ``init_step`` or ``special_mask`` of ``chip`` changed."""
        self.regs[MODE + chip] = 1 if self.poll[chip] or self.init_step[chip] or self.special_mask[chip] else 0

    def snapshot(self) -> PicState:
        return PicState(**{name: list(getattr(self, name)) for name in _PAIRS}, intr=bool(self.intr))


def _window(regs: PicRegisters, chip: int) -> RegisterWindow:
    """What the CPU serves of one chip's ports itself, while the chip is in mode 0:
    mask reads; mask writes while no unmasked request is pending before and after them, or
    while the chip's output is low and the write only masks more (then neither chip's
    output can change); and specific EOIs (OCW2 0x60-0x67) while no unmasked request is
    pending (ending a service then lets nothing through)."""
    interrupt = InterruptPair(status=IRR + chip, enable=IMR + chip, clear_bits=0, enable_is_mask=True,
                              idle_only=True, true_output=OUT + chip, in_service=ISR + chip,
                              eoi=(0xF8, 0x60))
    return RegisterWindow(regs.block, {(0, 1): IMR + chip}, {(0, 1): IMR + chip, (0, 0): ISR + chip},
                          length=2, bank_offset=MODE + chip, bank_mask=1, interrupt=interrupt)


class PicPair(Device):
    """Two cascaded 8259As, the machine's interrupt controller."""

    kind = "i8259"
    config_cls = PicConfig
    state_cls = PicState
    description = "8259A PIC pair with ELCR; the machine's interrupt controller"

    def __init__(self, id: str, config: PicConfig | None = None) -> None:
        super().__init__(id, config)
        self.state = PicRegisters()  # type: ignore[assignment]
        self.state.fill(self._power_on())
        self.windows = (_window(self.state, MASTER), _window(self.state, SLAVE))
        self.master_window, self.slave_window = self.windows

    def realize(self, machine) -> None:  # type: ignore[override]
        super().realize(machine)
        self.state.fill(self._power_on())
        machine.ports.map(0x20, 2, self._read_master, self._write_master, self, name="pic-master", sizes=(1,),
                          window=self.master_window)
        machine.ports.map(0xA0, 2, self._read_slave, self._write_slave, self, name="pic-slave", sizes=(1,),
                          window=self.slave_window)
        machine.ports.map(0x4D0, 2, self._read_elcr, self._write_elcr, self, name="elcr", sizes=(1,))
        machine.set_interrupt_controller(self)
        machine.irqs.attach_sink(self)

    def _power_on(self) -> PicState:
        state = PicState()
        state.elcr = [self.config.elcr & ELCR_WRITABLE[0], (self.config.elcr >> 8) & ELCR_WRITABLE[1]]
        return state

    def reset(self) -> None:
        state = self._power_on()
        state.input_level = list(self.state.input_level)  # the wires keep their levels across a reset
        self.state.fill(state)
        self._drive_output(force=True)

    def save(self) -> PicState:
        return self.state.snapshot()

    def restore(self, state: PicState) -> None:
        if not isinstance(state, PicState):
            raise StateError(f"{self.kind}/{self.id}: expected a PicState, got {type(state).__name__}")
        self.state.fill(state, f"{self.kind}/{self.id}")
        self._drive_output(force=True)

    # IRQ lines (the sink side) ------------------------------------------------------
    def set_irq(self, line: int, level: bool) -> None:
        """An ISA line changed level; line 2 is the AT's redirected IRQ 9."""
        if line == CASCADE:
            line = 9
        if not 0 <= line < 16:
            return
        self._set_input(line >> 3, line & 7, bool(level))
        self._update()

    def _set_input(self, chip: int, irq: int, level: bool) -> None:
        s = self.state
        bit = 1 << irq
        was = s.input_level[chip] & bit
        if level:
            s.input_level[chip] |= bit
        else:
            s.input_level[chip] &= ~bit
        if self._is_level(chip, irq):
            if level:
                s.regs[IRR + chip] |= bit
            else:
                s.regs[IRR + chip] &= ~bit
        elif level and not was:
            s.regs[IRR + chip] |= bit  # rising edge latches the request

    def _is_level(self, chip: int, irq: int) -> bool:
        s = self.state
        if chip == MASTER and irq == CASCADE and not s.single[MASTER]:
            return True  # the slave's INT output is a level: no request once it drops
        return bool(s.ltim[chip] or s.elcr[chip] >> irq & 1)

    # priority resolution --------------------------------------------------------------
    def _priority(self, chip: int, mask: int) -> int:
        """Priority rank (0 highest) of the best request in ``mask``; 8 if none."""
        return _RANK[self.state.lowest_priority[chip] & 7][mask & 0xFF]

    def _pending(self, chip: int) -> int:
        """The input this chip would present to the CPU now, or -1."""
        s = self.state
        lowest = s.lowest_priority[chip] & 7
        ranks = _RANK[lowest]  # (what _priority does, inline: this runs on every mask write)
        rank = ranks[s.regs[IRR + chip] & ~s.regs[IMR + chip] & 0xFF]
        if rank == 8:
            return -1
        in_service = s.regs[ISR + chip]
        if s.special_mask[chip]:
            in_service &= ~s.regs[IMR + chip]
        if s.sfnm[chip] and chip == MASTER:
            in_service &= ~(1 << CASCADE)  # the slave may nest its own priorities
        if rank < ranks[in_service & 0xFF]:
            return (lowest + 1 + rank) & 7
        return -1

    def _update(self) -> None:
        s = self.state
        slave_out = self._pending(SLAVE) >= 0
        s.regs[OUT + SLAVE] = slave_out
        if s.single[MASTER]:
            self._set_input(MASTER, CASCADE, slave_out)
        elif slave_out:  # cascaded: the slave's INT is a level on master input 2 (inline
            s.input_level[MASTER] |= 1 << CASCADE  # _set_input: this runs on every mask
            s.regs[IRR + MASTER] |= 1 << CASCADE          # write and EOI, several per frame)
        else:
            s.input_level[MASTER] &= ~(1 << CASCADE)
            s.regs[IRR + MASTER] &= ~(1 << CASCADE)
        intr = self._pending(MASTER) >= 0
        s.regs[OUT + MASTER] = intr
        if self.machine is not None and intr != s.intr:
            s.intr = intr
            self.machine.set_intr(intr)

    def _drive_output(self, force: bool = False) -> None:
        regs = self.state.regs
        regs[OUT + SLAVE] = self._pending(SLAVE) >= 0
        intr = regs[OUT + MASTER] = self._pending(MASTER) >= 0
        if self.machine is None:
            return
        if intr != self.state.intr or force:
            self.state.intr = intr
            self.machine.set_intr(intr)

    @property
    def intr(self) -> bool:
        return self.state.intr

    # INTA -----------------------------------------------------------------------
    def _intack(self, chip: int, irq: int) -> None:
        s = self.state
        bit = 1 << irq
        if s.auto_eoi[chip]:
            if s.rotate_on_aeoi[chip]:
                s.lowest_priority[chip] = irq
        else:
            s.regs[ISR + chip] |= bit
        if not self._is_level(chip, irq):
            s.regs[IRR + chip] &= ~bit

    def acknowledge(self) -> int | None:
        """The CPU's interrupt-acknowledge cycle: the vector to deliver."""
        s = self.state
        irq = self._pending(MASTER)
        if irq < 0:
            # INTR dropped before INTA: the 8259 answers with IR7 without setting ISR
            vector = s.vector_base[MASTER] + 7
        elif irq == CASCADE and not s.single[MASTER]:
            self._intack(MASTER, irq)
            irq2 = self._pending(SLAVE)
            if irq2 >= 0:
                self._intack(SLAVE, irq2)
            else:
                irq2 = 7  # spurious IRQ 15
            vector = s.vector_base[SLAVE] + irq2
        else:
            self._intack(MASTER, irq)
            vector = s.vector_base[MASTER] + irq
        self._update()
        return vector & 0xFF

    # guest access ------------------------------------------------------------------
    def _read_master(self, offset: int, size: int) -> int:
        return self._read(MASTER, offset)

    def _write_master(self, offset: int, size: int, value: int) -> None:
        self._write(MASTER, offset, value & 0xFF)

    def _read_slave(self, offset: int, size: int) -> int:
        return self._read(SLAVE, offset)

    def _write_slave(self, offset: int, size: int, value: int) -> None:
        self._write(SLAVE, offset, value & 0xFF)

    def _read(self, chip: int, offset: int) -> int:
        s = self.state
        if s.poll[chip]:
            s.poll[chip] = 0
            s.sync_mode(chip)
            return self._poll_read(chip)
        if offset == 0:
            return s.regs[ISR + chip] if s.read_isr[chip] else s.regs[IRR + chip]
        return s.regs[IMR + chip]

    def _poll_read(self, chip: int) -> int:
        """OCW3 poll: the read acts as INTA; bit 7 = request pending, bits 2-0 = its level."""
        irq = self._pending(chip)
        if irq < 0:
            self._update()
            return 0
        self._intack(chip, irq)
        if chip == MASTER and irq == CASCADE:
            pass  # the slave is polled separately by software
        self._update()
        return 0x80 | irq

    def _write(self, chip: int, offset: int, value: int) -> None:
        s = self.state
        if offset == 0:
            if value & 0x10:
                self._icw1(chip, value)
            elif value & 0x08:
                self._ocw3(chip, value)
            else:
                self._ocw2(chip, value)
            return
        step = s.init_step[chip]
        if step == 0:
            s.regs[IMR + chip] = value
            self._update()
            return
        if step == 2:
            s.vector_base[chip] = value & 0xF8
            if not s.single[chip]:
                s.init_step[chip] = 3
            else:
                s.init_step[chip] = 4 if s.icw4_needed[chip] else 0
        elif step == 3:
            s.icw3[chip] = value
            s.init_step[chip] = 4 if s.icw4_needed[chip] else 0
        elif step == 4:
            if not value & 1:
                log.warning("%s: ICW4 %#04x selects MCS-80/85 mode; treating it as 8086 mode", self.id, value)
            s.auto_eoi[chip] = value >> 1 & 1
            s.sfnm[chip] = value >> 4 & 1
            s.init_step[chip] = 0
            self._update()
        s.sync_mode(chip)

    def _icw1(self, chip: int, value: int) -> None:
        s = self.state
        s.regs[IMR + chip] = 0
        s.regs[ISR + chip] = 0
        s.regs[IRR + chip] = 0
        s.lowest_priority[chip] = 7
        s.read_isr[chip] = 0
        s.poll[chip] = 0
        s.special_mask[chip] = 0
        s.auto_eoi[chip] = 0
        s.rotate_on_aeoi[chip] = 0
        s.sfnm[chip] = 0
        s.icw4_needed[chip] = value & 1
        s.single[chip] = value >> 1 & 1
        s.ltim[chip] = value >> 3 & 1
        s.init_step[chip] = 2
        s.sync_mode(chip)
        if value & 0x04:
            log.debug("%s: ICW1 call address interval 4 ignored (8086 mode)", self.id)
        # the edge detectors restart: a high edge-triggered input must fall and rise again,
        # a high level-triggered input requests at once
        for irq in range(8):
            if self._is_level(chip, irq) and s.input_level[chip] >> irq & 1:
                s.regs[IRR + chip] |= 1 << irq
        self._update()

    def _ocw2(self, chip: int, value: int) -> None:
        s = self.state
        command = value >> 5
        if command in (0, 4):  # clear / set rotate in automatic EOI mode
            s.rotate_on_aeoi[chip] = command >> 2
        elif command in (1, 5):  # non-specific EOI (5: and rotate)
            rank = self._priority(chip, s.regs[ISR + chip])
            if rank != 8:
                irq = (s.lowest_priority[chip] + 1 + rank) & 7
                s.regs[ISR + chip] &= ~(1 << irq)
                if command == 5:
                    s.lowest_priority[chip] = irq
        elif command == 3:  # specific EOI
            s.regs[ISR + chip] &= ~(1 << (value & 7))
        elif command == 6:  # set priority: the given IR becomes the lowest
            s.lowest_priority[chip] = value & 7
        elif command == 7:  # rotate on specific EOI
            irq = value & 7
            s.regs[ISR + chip] &= ~(1 << irq)
            s.lowest_priority[chip] = irq
        # command 2 is a no-op
        self._update()

    def _ocw3(self, chip: int, value: int) -> None:
        s = self.state
        if value & 0x04:
            s.poll[chip] = 1
            s.sync_mode(chip)
        if value & 0x02:
            s.read_isr[chip] = value & 1
        if value & 0x40:
            s.special_mask[chip] = value >> 5 & 1
            s.sync_mode(chip)
        self._update()

    # ELCR ----------------------------------------------------------------------
    def _read_elcr(self, offset: int, size: int) -> int:
        return self.state.elcr[offset]

    def _write_elcr(self, offset: int, size: int, value: int) -> None:
        s = self.state
        s.elcr[offset] = value & ELCR_WRITABLE[offset]
        # a line switched to level mode requests while high; one switched to edge keeps its IRR
        for irq in range(8):
            if self._is_level(offset, irq):
                if s.input_level[offset] >> irq & 1:
                    s.regs[IRR + offset] |= 1 << irq
                elif not (offset == MASTER and irq == CASCADE):
                    s.regs[IRR + offset] &= ~(1 << irq)
        self._update()

    # introspection for tests and monitors ------------------------------------------
    def is_level_triggered(self, line: int) -> bool:
        return self._is_level(line >> 3, line & 7)
