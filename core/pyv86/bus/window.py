"""Register windows: a device's byte registers that the CPU reads and writes without a callback.

A port access that reaches Python costs a round trip from native code (1-3 µs in a running
guest), and a NIC driver makes dozens per frame, most of them to registers with no side
effect: an address or a count the device reads later, a status byte it set earlier. A
device can keep such registers in a block of memory it owns (a ctypes structure that never
moves) and describe them in a :class:`RegisterWindow`; the port bus hands the window of a
mapped region to the CPU, which then serves those byte accesses itself. Everything else
(wider accesses, registers not listed, a listed write that fails the guard) still reaches
the device's handlers, which read and write the same block, so both paths see one state.

A register may be listed only if serving it natively is exactly what the device would do:
a read returns the stored byte and changes nothing; a write stores the byte and nothing
else happens (no interrupt, no transfer, no other register changes). Registers can be
banked, as the DP8390's four pages selected by bits 7:6 of its command register: the bank
is ``block[bank_offset] >> bank_shift & bank_mask``. A write to the bank-select byte itself
is served natively only when the new value passes ``bank_write_new`` and the old one
``bank_write_old`` (each a ``(mask, value)`` pair: ``byte & mask == value``); it then
stores the new value with the bits of ``bank_write_keeps`` taken from the old one. For the
DP8390: a started chip, written "no remote DMA, no transmit, not stop", keeps running and
only changes page; any other write goes to the device, which may start a command.

Many devices raise a level interrupt while ``status & enable`` has a bit set, clear status
bits by writing ones to them, and program the enable mask directly (the DP8390's ISR and
IMR). An :class:`InterruptPair` names those two bytes; a listed write to either is served
natively only when the interrupt output stays as it was (both before and after low, or
both high), so the device would not have moved its interrupt line either. Status writes
with a bit of ``status_exits`` (bits whose acknowledgement does more) and enable writes
with a bit outside ``enable_bits`` (bits the device would mask off) go to the device.
"""
from __future__ import annotations

import ctypes
from typing import Any, Mapping

from attrs import define, field

BANKS = 4
WINDOW_PORTS = 16
NOT_SERVED = 0xFF

Registers = Mapping[tuple[int, int], int]
"""``(bank, port offset) -> byte offset`` in the block."""


@define(frozen=True)
class InterruptPair:
    """A status byte (write 1 to clear) and an enable byte that together drive a level
    interrupt: asserted while ``status & enable & bits`` is not zero."""

    status: int
    enable: int
    bits: int = 0xFF
    clear_bits: int = 0xFF
    """Status bits that a written 1 clears (others ignore writes)."""
    status_exits: int = 0
    """A status write with any of these bits set goes to the device."""
    enable_bits: int = 0xFF
    """An enable write with a bit outside these goes to the device."""
    enable_is_mask: bool = False
    """The enable byte is a mask instead (a set bit disables): output ``status & ~enable``."""
    idle_only: bool = False
    """Serve writes only while the output stays low, not also while it stays high (for a
    device whose output has more inputs than this pair, as an 8259's in-service priority)."""

    def output(self, status: int, enable: int) -> bool:
        return bool(status & (enable ^ (0xFF if self.enable_is_mask else 0)) & self.bits)


@define(frozen=True, eq=False)
class RegisterWindow:
    """Which byte registers of a port range the CPU serves from ``block``."""

    block: Any
    """A ctypes object (structure or array) holding the registers; it must not move or be freed."""
    reads: Registers
    writes: Registers
    length: int = WINDOW_PORTS
    """Ports covered from the region's base (at most 16)."""
    bank_offset: int = 0
    bank_shift: int = 0
    bank_mask: int = 0
    """0: one bank; else the bank is ``block[bank_offset] >> bank_shift & bank_mask`` (<= 3)."""
    bank_write_new: tuple[int, int] = (0, 0)
    bank_write_old: tuple[int, int] = (0, 0)
    bank_write_keeps: int = 0
    interrupt: InterruptPair | None = None
    address: int = field(init=False)

    def __attrs_post_init__(self) -> None:
        size = ctypes.sizeof(self.block)
        if not 1 <= self.length <= WINDOW_PORTS:
            raise ValueError(f"a register window covers 1..{WINDOW_PORTS} ports, not {self.length}")
        if not 0 <= self.bank_mask < BANKS or not 0 <= self.bank_shift < 8:
            raise ValueError(f"bank mask {self.bank_mask:#x} / shift {self.bank_shift} do not select one of {BANKS} banks")
        if not 0 <= self.bank_offset < size:
            raise ValueError(f"bank-select byte {self.bank_offset} is outside the {size}-byte block")
        for rule in (self.bank_write_new, self.bank_write_old):
            if len(rule) != 2 or not all(0 <= x <= 0xFF for x in rule) or rule[1] & ~rule[0]:
                raise ValueError(f"bank write rule {rule!r} is not a (mask, value) pair of bytes")
        if not 0 <= self.bank_write_keeps <= 0xFF:
            raise ValueError(f"bank_write_keeps {self.bank_write_keeps:#x} is not a byte mask")
        irq = self.interrupt
        if irq is not None:
            for name in ("status", "enable"):
                byte = getattr(irq, name)
                if not 0 <= byte < min(size, NOT_SERVED) or (self.bank_mask and byte == self.bank_offset):
                    raise ValueError(f"interrupt {name} byte {byte} is outside the {size}-byte block "
                                     f"or is the bank-select byte")
            if irq.status == irq.enable:
                raise ValueError("interrupt status and enable must be different bytes")
            for name in ("bits", "clear_bits", "status_exits", "enable_bits"):
                if not 0 <= getattr(irq, name) <= 0xFF:
                    raise ValueError(f"interrupt {name} {getattr(irq, name):#x} is not a byte mask")
        for kind, table in (("read", self.reads), ("write", self.writes)):
            for (bank, offset), byte in table.items():
                if not (0 <= bank <= self.bank_mask and 0 <= offset < self.length):
                    raise ValueError(f"{kind} register (bank {bank}, offset {offset:#x}) is outside the window")
                if not 0 <= byte < min(size, NOT_SERVED):
                    raise ValueError(f"{kind} register (bank {bank}, offset {offset:#x}) -> byte {byte} "
                                     f"is outside the {size}-byte block")
        object.__setattr__(self, "address", ctypes.addressof(self.block))

    def served_write(self, block: bytes, byte: int, value: int) -> int | None:
        """What the CPU stores at ``byte`` of ``block`` (its current contents) for a guest
        byte write of ``value`` listed in :attr:`writes`, or None when it leaves the write
        to the device. The CPU's code follows this (``Emitter.port_out``); device tests use
        it to check that the device would have done the same."""
        old, new = block[byte], value & 0xFF
        stored = new
        if self.bank_mask and byte == self.bank_offset:
            (new_mask, new_value), (old_mask, old_value) = self.bank_write_new, self.bank_write_old
            if new & new_mask != new_value or old & old_mask != old_value:
                return None
            stored = new & ~self.bank_write_keeps | old & self.bank_write_keeps
        irq = self.interrupt
        if irq is not None:
            if byte == irq.status:
                if new & irq.status_exits:
                    return None
                stored = old & ~(new & irq.clear_bits)
            elif byte == irq.enable and new & ~irq.enable_bits:
                return None
            status, enable = block[irq.status], block[irq.enable]
            before = irq.output(status, enable)
            after = irq.output(stored if byte == irq.status else status,
                               stored if byte == irq.enable else enable)
            if before != after or (irq.idle_only and before):
                return None
        return stored

    def native_fields(self) -> dict[str, int]:
        """This window's rules as the CPU's ``pwin_*`` state fields (one window's entry)."""
        irq = self.interrupt
        banks = bool(self.bank_mask)   # with one bank there is no bank-select byte to guard
        (new_mask, new_value), (old_mask, old_value) = (
            (self.bank_write_new, self.bank_write_old) if banks else ((0, 0), (0, 0)))
        return {
            "pwin_block": self.address, "pwin_page": self.bank_offset,
            "pwin_page_shift": self.bank_shift, "pwin_page_mask": self.bank_mask,
            "pwin_new_mask": new_mask, "pwin_new_value": new_value,
            "pwin_old_mask": old_mask, "pwin_old_value": old_value,
            "pwin_keep_mask": self.bank_write_keeps if banks else 0,
            "pwin_status": 0x100 if irq is None else irq.status,
            "pwin_enable": 0x100 if irq is None else irq.enable,
            "pwin_irq_bits": 0 if irq is None else irq.bits,
            "pwin_enable_xor": 0xFF if irq is not None and irq.enable_is_mask else 0,
            "pwin_idle_only": 1 if irq is not None and irq.idle_only else 0,
            "pwin_clear_bits": 0 if irq is None else irq.clear_bits,
            "pwin_status_exits": 0 if irq is None else irq.status_exits,
            "pwin_enable_bits": 0 if irq is None else irq.enable_bits,
        }

    def tables(self) -> tuple[bytes, bytes]:
        """The CPU's lookup tables: ``bank << 4 | offset`` -> byte, 0xFF where the device serves."""
        out = []
        for table in (self.reads, self.writes):
            flat = bytearray([NOT_SERVED]) * (BANKS * WINDOW_PORTS)
            for (bank, offset), byte in table.items():
                flat[bank << 4 | offset] = byte
            out.append(bytes(flat))
        return out[0], out[1]
