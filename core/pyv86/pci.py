"""The PCI bus: configuration mechanism #1 (ports 0xCF8/0xCFC), functions, BARs, INTx.

A device that lives on PCI creates a :class:`PciFunction`, declares its identity and
BARs, and attaches it to ``machine.pci`` at a slot. The bus implements what the guest
sees in configuration space: read-only identity registers, BAR sizing (writing all ones
reads back ``~(size-1) | type bits``) and relocation (the bus re-maps the device's port or
MMIO handlers when the guest moves a BAR or toggles the command register's decode bits),
and the interrupt pin/line registers.

Because pyv86 boots Linux without firmware, the bus also acts as firmware:
:meth:`PciBus.assign_resources` gives every BAR an address, enables decoding and writes
the Interrupt Line register with the ISA IRQ the platform routes the pin to.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable

from attrs import define

from pyv86.bus._region import ReadHandler, Region, WriteHandler

if TYPE_CHECKING:
    from pyv86.bus import MmioBus, PortBus
    from pyv86.bus.window import RegisterWindow
    from pyv86.irq import IrqLines, IrqSource

log = logging.getLogger(__name__)

CONFIG_ADDRESS = 0xCF8
CONFIG_DATA = 0xCFC

# standard header offsets
VENDOR_ID, DEVICE_ID, COMMAND, STATUS = 0x00, 0x02, 0x04, 0x06
REVISION, CLASS_PROG, HEADER_TYPE = 0x08, 0x09, 0x0E
BAR0 = 0x10
SUBSYSTEM_VENDOR_ID, SUBSYSTEM_ID = 0x2C, 0x2E
ROM_ADDRESS = 0x30
INTERRUPT_LINE, INTERRUPT_PIN = 0x3C, 0x3D

CMD_IO = 0x1
CMD_MEMORY = 0x2
CMD_MASTER = 0x4
CMD_INTX_DISABLE = 0x400
STATUS_INTX = 0x08


@define(eq=False)
class Bar:
    index: int
    size: int
    io: bool
    read: ReadHandler | None
    write: WriteHandler | None
    sizes: tuple[int, ...]
    name: str
    region: Region | None = None
    mapped_at: int | None = None
    read_string: Callable[[int, int, int], bytes] | None = None
    write_string: Callable[[int, int, bytes], None] | None = None
    window: RegisterWindow | None = None


class PciFunction:
    """One PCI function's configuration space and its BARs."""

    def __init__(self, name: str, vendor_id: int, device_id: int, class_code: int,
                 revision: int = 0, subsystem_vendor_id: int = 0, subsystem_id: int = 0,
                 header_type: int = 0, interrupt_pin: int = 0) -> None:
        self.name = name
        self.config = bytearray(256)
        self.writable = bytearray(256)  # per-byte mask of guest-writable bits
        self.bars: dict[int, Bar] = {}
        self.bus: PciBus | None = None
        self.devfn: int | None = None
        self.irq_source: IrqSource | None = None
        self._irq_level = False
        self.config_write_hook: Callable[[int, int, int], None] | None = None
        self._w16(VENDOR_ID, vendor_id)
        self._w16(DEVICE_ID, device_id)
        self.config[REVISION] = revision & 0xFF
        self.config[CLASS_PROG] = class_code & 0xFF
        self.config[0x0A] = (class_code >> 8) & 0xFF
        self.config[0x0B] = (class_code >> 16) & 0xFF
        self.config[HEADER_TYPE] = header_type & 0xFF
        self._w16(SUBSYSTEM_VENDOR_ID, subsystem_vendor_id)
        self._w16(SUBSYSTEM_ID, subsystem_id)
        self.config[INTERRUPT_PIN] = interrupt_pin & 0xFF
        # command: I/O, memory, bus master, INTx disable are writable
        self.writable[COMMAND] = CMD_IO | CMD_MEMORY | CMD_MASTER
        self.writable[COMMAND + 1] = CMD_INTX_DISABLE >> 8
        self.writable[0x0C] = 0xFF  # cache line size
        self.writable[0x0D] = 0xFF  # latency timer
        self.writable[INTERRUPT_LINE] = 0xFF

    # identity helpers -------------------------------------------------------------
    @property
    def vendor_id(self) -> int:
        return self._r16(VENDOR_ID)

    @property
    def device_id(self) -> int:
        return self._r16(DEVICE_ID)

    @property
    def interrupt_pin(self) -> int:
        return self.config[INTERRUPT_PIN]

    @property
    def command(self) -> int:
        return self._r16(COMMAND)

    def _r16(self, off: int) -> int:
        return self.config[off] | self.config[off + 1] << 8

    def _w16(self, off: int, value: int) -> None:
        self.config[off] = value & 0xFF
        self.config[off + 1] = (value >> 8) & 0xFF

    def _r32(self, off: int) -> int:
        return int.from_bytes(self.config[off : off + 4], "little")

    # BARs -----------------------------------------------------------------------
    def add_io_bar(self, index: int, size: int, read: ReadHandler | None, write: WriteHandler | None,
                   *, sizes: tuple[int, ...] = (1, 2, 4), name: str | None = None,
                   read_string: Callable[[int, int, int], bytes] | None = None,
                   write_string: Callable[[int, int, bytes], None] | None = None,
                   window: RegisterWindow | None = None) -> Bar:
        """An I/O BAR; ``read_string``/``write_string`` optionally serve ``rep ins``/``outs`` at
        once; ``window`` lists registers the CPU may serve itself (:mod:`pyv86.bus.window`)."""
        bar = self._add_bar(index, size, True, read, write, sizes, name)
        bar.read_string, bar.write_string, bar.window = read_string, write_string, window
        return bar

    def add_mem_bar(self, index: int, size: int, read: ReadHandler | None, write: WriteHandler | None,
                    *, sizes: tuple[int, ...] = (1, 2, 4), name: str | None = None) -> Bar:
        return self._add_bar(index, max(size, 16), False, read, write, sizes, name)

    def _add_bar(self, index: int, size: int, io: bool, read, write, sizes, name) -> Bar:
        if not 0 <= index < 6:
            raise ValueError(f"{self.name}: BAR index {index} is not 0..5")
        if size & (size - 1) or size < 4:
            raise ValueError(f"{self.name}: BAR{index} size {size} is not a power of two >= 4")
        bar = Bar(index, size, io, read, write, tuple(sizes), name or f"{self.name}.bar{index}")
        self.bars[index] = bar
        off = BAR0 + 4 * index
        mask = ~(size - 1) & 0xFFFFFFFF
        self.config[off : off + 4] = (1 if io else 0).to_bytes(4, "little")
        self.writable[off : off + 4] = mask.to_bytes(4, "little")
        if io:
            self.writable[off] &= 0xFC
        else:
            self.writable[off] &= 0xF0
        return bar

    def bar_address(self, index: int) -> int:
        raw = self._r32(BAR0 + 4 * index)
        return raw & (0xFFFFFFFC if self.bars[index].io else 0xFFFFFFF0)

    def set_bar_address(self, index: int, address: int) -> None:
        bar = self.bars[index]
        off = BAR0 + 4 * index
        mask = int.from_bytes(self.writable[off : off + 4], "little")
        raw = (self._r32(off) & ~mask) | (address & mask)
        self.config[off : off + 4] = (raw & 0xFFFFFFFF).to_bytes(4, "little")
        self._update_mappings()
        del bar

    # config access from the guest -----------------------------------------------------
    def config_read(self, offset: int, size: int) -> int:
        return int.from_bytes(self.config[offset : offset + size], "little")

    def config_write(self, offset: int, size: int, value: int) -> None:
        for i in range(size):
            off = offset + i
            if off >= 256:
                break
            byte = (value >> (8 * i)) & 0xFF
            mask = self.writable[off]
            if off == STATUS + 1 or off == STATUS:
                # status bits are write-one-to-clear in the upper byte; nothing to clear here
                continue
            self.config[off] = (self.config[off] & ~mask & 0xFF) | (byte & mask)
        if self.config_write_hook is not None:
            self.config_write_hook(offset, size, value)
        if offset < BAR0 + 24 and offset + size > COMMAND:
            self._update_mappings()
            if offset <= COMMAND + 1 < offset + size:
                self._drive_irq()

    def _update_mappings(self) -> None:
        if self.bus is None:
            return
        cmd = self.command
        for bar in self.bars.values():
            enabled = bool(cmd & (CMD_IO if bar.io else CMD_MEMORY))
            address = self.bar_address(bar.index)
            target = address if enabled and address else None
            if bar.io and target is not None and target + bar.size > 0x10000:
                target = None
            if target == bar.mapped_at:
                continue
            if bar.region is not None:
                (self.bus.ports if bar.io else self.bus.mmio).unmap(bar.region)
                bar.region = None
                bar.mapped_at = None
            if target is not None:
                bus = self.bus.ports if bar.io else self.bus.mmio
                try:
                    io_only = ({"read_string": bar.read_string, "write_string": bar.write_string,
                                "window": bar.window} if bar.io else {})
                    bar.region = bus.map(target, bar.size, bar.read, bar.write, self,
                                         name=bar.name, sizes=bar.sizes, **io_only)
                    bar.mapped_at = target
                except ValueError as exc:
                    log.warning("%s: BAR%d at %#x not decoded: %s", self.name, bar.index, target, exc)

    # interrupts ------------------------------------------------------------------
    def set_irq(self, level: bool) -> None:
        """Drive INTx (level-triggered; masked by the command register's INTx-disable bit)."""
        self._irq_level = bool(level)
        self._drive_irq()

    def _drive_irq(self) -> None:
        # Status bit 3 (Interrupt Status) shows the INTx level before INTx-disable masks it
        self.config[STATUS] = (self.config[STATUS] & ~STATUS_INTX & 0xFF) | (STATUS_INTX if self._irq_level else 0)
        if self.irq_source is not None:
            self.irq_source.set(self._irq_level and not (self.command & CMD_INTX_DISABLE))

    # state -----------------------------------------------------------------------
    def save(self) -> bytes:
        return bytes(self.config)

    def restore(self, config: bytes) -> None:
        if len(config) != 256:
            raise ValueError(f"{self.name}: PCI configuration space must be 256 bytes, not {len(config)}")
        self.config[:] = config
        self._irq_level = bool(self.config[STATUS] & STATUS_INTX)  # the saved INTx level
        self._update_mappings()
        self._drive_irq()


PirqRouter = Callable[[int, int], int]
"""``route(slot, pin) -> ISA IRQ`` for a device number and interrupt pin (1 = INTA)."""


def default_pirq_route(slot: int, pin: int) -> int:
    """PIIX3-style swizzle: PIRQ[(slot + pin - 2) & 3], PIRQA-D wired to IRQ 10, 10, 11, 11."""
    return (10, 10, 11, 11)[(slot + pin - 2) & 3]


class PciBus:
    """Bus 0 with configuration mechanism #1."""

    IO_WINDOW = (0xC000, 0x10000)
    MEM_WINDOW = (0xE0000000, 0xFEC00000)

    def __init__(self, ports: PortBus, mmio: MmioBus, irqs: IrqLines) -> None:
        self.ports = ports
        self.mmio = mmio
        self.irqs = irqs
        self.functions: dict[int, PciFunction] = {}
        self.config_address = 0
        self.route_irq: PirqRouter = default_pirq_route
        ports.map(CONFIG_ADDRESS, 4, self._addr_read, self._addr_write, self, name="pci-conf1-address")
        ports.map(CONFIG_DATA, 4, self._data_read, self._data_write, self, name="pci-conf1-data")

    # topology --------------------------------------------------------------------
    def attach(self, function: PciFunction, slot: int, fn: int = 0) -> None:
        if not 0 <= slot < 32 or not 0 <= fn < 8:
            raise ValueError(f"{function.name}: PCI address {slot:02x}.{fn} is out of range")
        devfn = slot << 3 | fn
        if devfn in self.functions:
            raise ValueError(
                f"{function.name}: PCI slot 00:{slot:02x}.{fn} is taken by {self.functions[devfn].name}"
            )
        self.functions[devfn] = function
        function.bus = self
        function.devfn = devfn
        # a guest scans functions 1..7 only if function 0 says it is multifunction
        siblings = [self.functions.get(slot << 3 | n) for n in range(8)]
        if siblings[0] is not None and sum(f is not None for f in siblings) > 1:
            siblings[0].config[HEADER_TYPE] |= 0x80
        if function.interrupt_pin:
            irq = self.route_irq(slot, function.interrupt_pin)
            function.irq_source = self.irqs[irq].source(function.name)
        function._update_mappings()

    def detach(self, function: PciFunction) -> None:
        if function.devfn is not None and self.functions.get(function.devfn) is function:
            del self.functions[function.devfn]
        for bar in function.bars.values():
            if bar.region is not None:
                (self.ports if bar.io else self.mmio).unmap(bar.region)
                bar.region = None
                bar.mapped_at = None
        if function.irq_source is not None:
            function.irq_source.line.release(function.irq_source)
            function.irq_source = None
        function.bus = None

    def assign_resources(self) -> None:
        """Act as firmware: place BARs, enable decoding, write Interrupt Line."""
        io_next, io_end = self.IO_WINDOW
        mem_next, mem_end = self.MEM_WINDOW
        for devfn in sorted(self.functions):
            function = self.functions[devfn]
            command = function.command
            for bar in sorted(function.bars.values(), key=lambda b: -b.size):
                if function.bar_address(bar.index):
                    command |= CMD_IO if bar.io else CMD_MEMORY
                    continue
                if bar.io:
                    base = (io_next + bar.size - 1) & ~(bar.size - 1)
                    if base + bar.size > io_end:
                        log.warning("%s: no I/O space left for BAR%d", function.name, bar.index)
                        continue
                    io_next = base + bar.size
                    command |= CMD_IO
                else:
                    base = (mem_next + bar.size - 1) & ~(bar.size - 1)
                    if base + bar.size > mem_end:
                        log.warning("%s: no memory space left for BAR%d", function.name, bar.index)
                        continue
                    mem_next = base + bar.size
                    command |= CMD_MEMORY
                off = BAR0 + 4 * bar.index
                raw = (function._r32(off) & 0xF) | base
                function.config[off : off + 4] = raw.to_bytes(4, "little")
            if function.interrupt_pin:
                function.config[INTERRUPT_LINE] = self.route_irq(devfn >> 3, function.interrupt_pin)
                command |= CMD_MASTER
            function._w16(COMMAND, command)
            function._update_mappings()

    # mechanism #1 ------------------------------------------------------------------
    def _addr_read(self, offset: int, size: int) -> int:
        return (self.config_address >> (8 * offset)) & ((1 << (8 * size)) - 1)

    def _addr_write(self, offset: int, size: int, value: int) -> None:
        # only a dword write at 0xCF8 changes the address (Linux's type-1 probe writes 0xCFB)
        if offset == 0 and size == 4:
            self.config_address = value & 0x80FFFFFC

    def _target(self, offset: int) -> tuple[PciFunction | None, int]:
        address = self.config_address
        if not address & 0x80000000:
            return None, 0
        bus = (address >> 16) & 0xFF
        if bus != 0:
            return None, 0
        devfn = (address >> 8) & 0xFF
        return self.functions.get(devfn), (address & 0xFC) + offset

    def _data_read(self, offset: int, size: int) -> int:
        function, reg = self._target(offset)
        if function is None:
            return (1 << (8 * size)) - 1
        return function.config_read(reg, size)

    def _data_write(self, offset: int, size: int, value: int) -> None:
        function, reg = self._target(offset)
        if function is not None:
            function.config_write(reg, size, value)

    # convenience for tests ----------------------------------------------------------
    def config_read(self, slot: int, fn: int, reg: int, size: int = 4) -> int:
        self.ports.write(CONFIG_ADDRESS, 4, 0x80000000 | slot << 11 | fn << 8 | (reg & 0xFC))
        return self.ports.read(CONFIG_DATA + (reg & 3), size)

    def config_write(self, slot: int, fn: int, reg: int, value: int, size: int = 4) -> None:
        self.ports.write(CONFIG_ADDRESS, 4, 0x80000000 | slot << 11 | fn << 8 | (reg & 0xFC))
        self.ports.write(CONFIG_DATA + (reg & 3), size, value)
