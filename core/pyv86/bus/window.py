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
with a bit outside ``enable_bits`` (bits the device would mask off) go to the device. An
8259 also holds back requests that are enabled but lower in priority than the one in
service; it names a byte where it keeps its real output (``true_output``), so that masking
more while that output is low is served too, and its in-service byte (``in_service``) for
the specific end-of-interrupt command.

Some devices also stream a block of their own memory through one port (the DP8390's
remote DMA): each access moves the bytes at a running address register, advances it and
counts down a byte-count register, and reaching zero sets a "done" bit in the status byte.
A :class:`DataPort` describes that port; the CPU then moves whole ``rep ins``/``rep outs``
chunks and single accesses between guest memory and the device's memory itself, while the
access stays inside the memory and the count and does not move the interrupt line. The
commands that start such a transfer only store the command byte when the count is not zero
(``DataPort.start_commands``), and are served then as a bank change is.
"""
from __future__ import annotations

import ctypes
from typing import Any, Mapping

from attrs import define, field

from pyv86.cpu.state import DATA_PORT_COMMANDS, NO_BYTE, NO_DATA_PORT

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
    true_output: int = NOT_SERVED
    """A block byte the device keeps at its real output (0: not requesting), when that is
    more than ``status & enable``. An enable write that only disables more requests is
    then also served while that byte is 0: with fewer requests the output stays low. (An
    8259 keeps requests that in-service priority holds back out of its output.)"""
    in_service: int = NOT_SERVED
    """A block byte of in-service bits that an end-of-interrupt command clears: a write to
    it matching ``eoi`` (mask, value) clears bit ``value & 7``, served while the output
    stays low (the 8259's specific EOI: nothing unmasked is pending, so ending a service
    cannot let a request through)."""
    eoi: tuple[int, int] = (0, NO_BYTE)

    def output(self, status: int, enable: int) -> bool:
        return bool(status & (enable ^ (0xFF if self.enable_is_mask else 0)) & self.bits)

    def disables_only(self, old: int, new: int) -> bool:
        """True if an enable write of ``new`` over ``old`` enables no request that was off."""
        flip = 0xFF if self.enable_is_mask else 0
        return not ((new ^ flip) & ~(old ^ flip) & self.bits)


@define(frozen=True, eq=False)
class DataPort:
    """A port that streams the device's memory (see the module docstring): an access of
    ``n`` bytes at the port moves ``n`` bytes of device memory at the 16-bit address in
    block bytes ``address``..+1, adds ``n`` to that address and subtracts it from the
    16-bit count at ``count``..+1; the count reaching zero sets ``done_bit`` in the status
    byte of the window's interrupt pair."""

    offset: int
    """The port, as an offset from the region's base (0..255)."""
    memory: Any
    """A ctypes object holding the device memory the port streams; it must not move or be freed."""
    memory_start: int
    """The device address of ``memory``'s first byte."""
    address: int
    count: int
    end_page: int
    """Block byte whose value * 256 bounds the served accesses (they end below it): the
    device wraps there (the DP8390's PSTOP), which the device itself handles."""
    done_bit: int
    word_mode: tuple[int, int] = (0, 0)
    """(block byte, bit): while the bit is set the address is first made even, and byte
    accesses go to the device (the DP8390 moves a word for each)."""
    start_commands: tuple[tuple[int, int], ...] = ()
    """New values of the bank-select byte, as ``(mask, value)`` pairs, that start a transfer:
    served (like a bank change, with the same ``bank_write_old`` rule) while the count is
    not zero, when the device only stores them."""
    memory_size: int = field(init=False)
    memory_address: int = field(init=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "memory_size", ctypes.sizeof(self.memory))
        object.__setattr__(self, "memory_address", ctypes.addressof(self.memory))
        if not 0 <= self.offset <= 0xFF:
            raise ValueError(f"data port offset {self.offset:#x} is not 0..0xff")
        if not (0 <= self.memory_start and self.memory_start + self.memory_size <= 0x10000):
            raise ValueError(f"device memory {self.memory_start:#x}+{self.memory_size:#x} is not in 16-bit addresses")
        if not 0 < self.done_bit <= 0xFF or self.done_bit & (self.done_bit - 1):
            raise ValueError(f"done bit {self.done_bit:#x} is not one bit of a byte")
        for rule in self.start_commands:
            if len(rule) != 2 or not all(0 <= x <= 0xFF for x in rule) or rule[1] & ~rule[0]:
                raise ValueError(f"start command rule {rule!r} is not a (mask, value) pair of bytes")
        if len(self.start_commands) > DATA_PORT_COMMANDS:
            raise ValueError(f"at most {DATA_PORT_COMMANDS} start command rules, not {len(self.start_commands)}")

    def served_transfer(self, block: bytearray, interrupt: InterruptPair, size: int, units: int) -> int | None:
        """The offset in :attr:`memory` where a guest access of ``units`` elements of
        ``size`` bytes at the port starts, with the address, count and status updated in
        ``block``; or None (``block`` untouched) when the CPU leaves it to the device. The
        CPU's code follows this (``Emitter.data_port``)."""
        address = block[self.address] | block[self.address + 1] << 8
        byte, bit = self.word_mode
        if block[byte] & bit:
            if size == 1:
                return None
            address &= 0xFFFE
        n = size * units
        remaining = block[self.count] | block[self.count + 1] << 8
        limit = min(block[self.end_page] << 8, self.memory_start + self.memory_size)
        if not (self.memory_start <= address and address + n < limit and 0 < n <= remaining):
            return None
        status, enable = block[interrupt.status], block[interrupt.enable]
        new_status = status | self.done_bit if n == remaining else status
        if interrupt.output(status, enable) != interrupt.output(new_status, enable):
            return None
        end, left = address + n, remaining - n
        block[self.address:self.address + 2] = end.to_bytes(2, "little")
        block[self.count:self.count + 2] = left.to_bytes(2, "little")
        block[interrupt.status] = new_status
        return address - self.memory_start

    def count_is_zero(self, block: bytes) -> bool:
        return not (block[self.count] | block[self.count + 1])


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
    data_port: DataPort | None = None
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
            for name in ("true_output", "in_service"):
                byte = getattr(irq, name)
                taken = (irq.status, irq.enable, self.bank_offset if self.bank_mask else NOT_SERVED)
                if byte != NOT_SERVED and (not 0 <= byte < size or byte in taken):
                    raise ValueError(f"interrupt {name} byte {byte} is outside the {size}-byte block "
                                     f"or is the status, enable or bank-select byte")
            if len(irq.eoi) != 2 or not 0 <= irq.eoi[0] <= 0xFF or not 0 <= irq.eoi[1] <= NO_BYTE:
                raise ValueError(f"interrupt eoi rule {irq.eoi!r} is not a (mask, value) pair")
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
        port = self.data_port
        if port is not None:
            if irq is None:
                raise ValueError("a data port sets its done bit in an interrupt pair's status: name the pair")
            taken = {irq.status, irq.enable, self.bank_offset}
            for name in ("address", "count"):
                byte = getattr(port, name)
                if not 0 <= byte < size - 1 or {byte, byte + 1} & taken:
                    raise ValueError(f"data port {name} bytes {byte}..{byte + 1} are outside the block "
                                     f"or overlap the status, enable or bank-select byte")
            if not 0 <= port.end_page < size or not 0 <= port.word_mode[0] < size:
                raise ValueError("data port end page or word-mode byte is outside the block")
            if not 0 <= port.word_mode[1] <= 0xFF:
                raise ValueError(f"word-mode bit {port.word_mode[1]:#x} is not a byte mask")
            if port.start_commands and not self.bank_mask:
                raise ValueError("data port start commands are writes of the bank-select byte: the window has none")
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
            starts = self.data_port is not None and not self.data_port.count_is_zero(block) and any(
                new & mask == value for mask, value in self.data_port.start_commands)
            if (new & new_mask != new_value and not starts) or old & old_mask != old_value:
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
            elif byte == irq.in_service:
                eoi_mask, eoi_value = irq.eoi
                if new & eoi_mask != eoi_value:
                    return None
                stored = old & ~(1 << (new & 7))
            status, enable = block[irq.status], block[irq.enable]
            before = irq.output(status, enable)
            after = irq.output(stored if byte == irq.status else status,
                               stored if byte == irq.enable else enable)
            quiet = (byte == irq.enable and irq.true_output != NOT_SERVED
                     and not block[irq.true_output] and irq.disables_only(old, new))
            if (before != after or (irq.idle_only and before)) and not quiet:
                return None
            if byte == irq.in_service and before:   # an EOI only while the output is low
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
            "pwin_status": NO_BYTE if irq is None else irq.status,
            "pwin_enable": NO_BYTE if irq is None else irq.enable,
            "pwin_irq_bits": 0 if irq is None else irq.bits,
            "pwin_enable_xor": 0xFF if irq is not None and irq.enable_is_mask else 0,
            "pwin_idle_only": 1 if irq is not None and irq.idle_only else 0,
            "pwin_clear_bits": 0 if irq is None else irq.clear_bits,
            "pwin_status_exits": 0 if irq is None else irq.status_exits,
            "pwin_enable_bits": 0 if irq is None else irq.enable_bits,
            "pwin_true_out": NO_BYTE if irq is None or irq.true_output == NOT_SERVED else irq.true_output,
            "pwin_in_service": NO_BYTE if irq is None or irq.in_service == NOT_SERVED else irq.in_service,
            "pwin_eoi_mask": 0 if irq is None else irq.eoi[0],
            "pwin_eoi_value": NO_BYTE if irq is None else irq.eoi[1],
            **self._data_port_fields(),
        }

    def _data_port_fields(self) -> dict[str, Any]:
        port = self.data_port
        if port is None:
            return {"pwin_dport": NO_DATA_PORT, "pwin_dmem": 0, "pwin_dmem_start": 0, "pwin_dmem_end": 0,
                    "pwin_daddr": 0, "pwin_dcount": 0, "pwin_dend": 0, "pwin_dword": 0, "pwin_dword_bit": 0,
                    "pwin_ddone": 0, "pwin_cmd_mask": [0xFF] * DATA_PORT_COMMANDS,
                    "pwin_cmd_value": [NO_BYTE] * DATA_PORT_COMMANDS}
        rules = list(port.start_commands) + [(0xFF, NO_BYTE)] * (DATA_PORT_COMMANDS - len(port.start_commands))
        return {"pwin_dport": port.offset, "pwin_dmem": port.memory_address,
                "pwin_dmem_start": port.memory_start, "pwin_dmem_end": port.memory_start + port.memory_size,
                "pwin_daddr": port.address, "pwin_dcount": port.count, "pwin_dend": port.end_page,
                "pwin_dword": port.word_mode[0], "pwin_dword_bit": port.word_mode[1],
                "pwin_ddone": port.done_bit,
                "pwin_cmd_mask": [mask for mask, _ in rules], "pwin_cmd_value": [value for _, value in rules]}

    def tables(self) -> tuple[bytes, bytes]:
        """The CPU's lookup tables: ``bank << 4 | offset`` -> byte, 0xFF where the device serves."""
        out = []
        for table in (self.reads, self.writes):
            flat = bytearray([NOT_SERVED]) * (BANKS * WINDOW_PORTS)
            for (bank, offset), byte in table.items():
                flat[bank << 4 | offset] = byte
            out.append(bytes(flat))
        return out[0], out[1]
