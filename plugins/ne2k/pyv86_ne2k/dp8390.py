"""The DP8390 core of an NE2000-compatible card (RTL8029): registers, remote DMA, receive ring.

Bus-agnostic, as QEMU's ``ne2000.c``: the PCI wrapper (:mod:`pyv86_ne2k.pci`) maps
:meth:`Dp8390.io_read`/:meth:`Dp8390.io_write` on its I/O BAR and routes the interrupt.
Offsets: 0x00-0x0F the four register pages (CR bits 7:6), 0x10 the remote-DMA data port
(8/16/32-bit), 0x1F the reset port. The card's memory is 32 KiB of address space: the
station-address PROM at 0x0000-0x001F (16 bytes, each stored twice), 16 KiB of RAM at
0x4000-0x7FFF for transmit slots and the receive ring, and nothing elsewhere (reads 0,
writes ignored).

Behaviour follows the datasheet and what Linux's ``ne2k-pci``/``lib8390`` expect, and fixes
v86's gaps: the multicast hash filter (MAR) works, PAR is separate from the PROM and from
the wire MAC, a full ring never overwrites unread frames (reception stops one page short
of BNRY; BNRY == CURR means empty), a frame that cannot be stored is queued by the network
core and, when lost, counted in CNTR2 with ISR.OVW/ISR.CNT, RBCR saturates at 0 and RDC
fires once, RST survives ISR writes and clears on START, the IRQ is level while
``ISR & IMR & 0x7F``, and nothing a guest writes can raise an exception or make the core
allocate memory.
"""
from __future__ import annotations

import ctypes
import logging
from typing import Callable, ClassVar

import attrs

from pyv86.bus.window import DataPort, InterruptPair, RegisterWindow
from pyv86.errors import StateError
from pyv86.net.frame import BROADCAST, ETH_HEADER, ETH_VLAN_FRAME_MAX, ETH_ZLEN, multicast_hash_index
from pyv86.net.port import RxResult

log = logging.getLogger(__name__)

RAM_START = 0x4000
RAM_END = 0x8000
RAM_SIZE = RAM_END - RAM_START
RAM_FIRST_PAGE = RAM_START >> 8
RAM_END_PAGE = RAM_END >> 8
PROM_BYTES = 32  # 16 PROM bytes, each doubled
PROM_SIGNATURE = 0x57

DATA_PORT = 0x10
RESET_PORT = 0x1F
RTL8029_ID = (0x50, 0x43)  # 'P', 'C' at page-0 0x0A/0x0B


class CR:
    """Command register bits (plain ints, so registers stay plain ints)."""

    STP = 0x01
    STA = 0x02
    TXP = 0x04
    RD_READ = 0x08
    RD_WRITE = 0x10
    RD_SEND = 0x18
    RD_ABORT = 0x20


class ISR:
    PRX = 0x01
    PTX = 0x02
    RXE = 0x04
    TXE = 0x08
    OVW = 0x10
    CNT = 0x20
    RDC = 0x40
    RST = 0x80


class RCR:
    SEP = 0x01
    AR = 0x02
    AB = 0x04
    AM = 0x08
    PRO = 0x10
    MON = 0x20


class RSR:
    PRX = 0x01
    CRC = 0x02
    FAE = 0x04
    FO = 0x08
    MPA = 0x10
    PHY = 0x20
    DIS = 0x40
    DFR = 0x80


class TSR:
    PTX = 0x01
    ND = 0x02
    COL = 0x04
    ABT = 0x08


DCR_WTS = 0x01
RD_MASK = 0x38
COUNTER_MAX = 0xFF


def _bytes_field(length: int) -> attrs.Attribute:
    # no converter/validator: attrs would then hook every register write (__setattr__)
    return attrs.field(factory=lambda: bytes(length))


@attrs.define
class Dp8390State:
    """Everything the guest can observe in the chip; datasheet register names in lower case.

    ``rsar``/``rbcr`` are the *running* remote DMA address and count (CRDA reads ``rsar``);
    ``clda`` is the local DMA address the receiver last wrote. ``par`` is what the guest
    programmed on page 1, ``prom_mac`` the station address in the PROM, ``wire_mac`` the
    address this NIC has on the network (a MAC translator may map ``par`` to it). ``ram``
    is the 16 KiB at 0x4000-0x7FFF (transmit slots and receive ring).
    """

    VERSION: ClassVar[int] = 1

    cr: int = 0x21
    isr: int = 0x80
    imr: int = 0
    dcr: int = 0
    tcr: int = 0
    rcr: int = 0
    tsr: int = 0
    rsr: int = 0
    pstart: int = 0x40
    pstop: int = 0x80
    bnry: int = 0x4C
    curr: int = 0x4C
    tpsr: int = 0x40
    tbcr: int = 0
    rsar: int = 0
    rbcr: int = 0
    clda: int = 0
    cntr0: int = 0
    cntr1: int = 0
    cntr2: int = 0
    cr9346: int = 0
    config3: int = 0x40
    par: bytes = _bytes_field(6)
    mar: bytes = _bytes_field(8)
    prom_mac: bytes = _bytes_field(6)
    wire_mac: bytes = _bytes_field(6)
    ram: bytearray = attrs.field(factory=lambda: bytearray(RAM_SIZE))


_REGISTERS = ("cr", "isr", "imr", "dcr", "tcr", "rcr", "tsr", "rsr", "pstart", "pstop", "bnry",
              "curr", "tpsr", "cntr0", "cntr1", "cntr2", "cr9346", "config3")
_WORDS = ("tbcr", "rsar", "rbcr", "clda")
_FIELDS = tuple(f.name for f in attrs.fields(Dp8390State))


class LiveRegisters(ctypes.Structure):
    """The running chip's state: :class:`Dp8390State`'s fields, the registers in one block
    of memory that does not move, so that the CPU can serve the side-effect-free ones
    itself (:data:`WINDOW_READS`, :data:`WINDOW_WRITES`). ``par``, ``mar`` and the MACs
    are ordinary attributes; ``ram`` is one bytearray for the chip's lifetime (the CPU
    streams the data port into it, :data:`DATA_PORT_RULES`), written in place and never
    replaced. A chip keeps one of these for its lifetime; power-on and restore fill it in
    place."""

    _fields_ = [(name, ctypes.c_uint8) for name in _REGISTERS] + [(name, ctypes.c_uint16) for name in _WORDS]

    def __init__(self, state: Dp8390State) -> None:
        super().__init__()
        self.ram = bytearray(RAM_SIZE)
        # the buffer the CPU writes into: exporting it also keeps the bytearray from resizing
        self.ram_block = (ctypes.c_uint8 * RAM_SIZE).from_buffer(self.ram)
        self.fill(state)

    def fill(self, state: Dp8390State) -> None:
        for name in _FIELDS:
            if name == "ram":
                self.ram[:] = state.ram
            else:
                setattr(self, name, getattr(state, name))

    def snapshot(self, state_cls: type[Dp8390State]) -> Dp8390State:
        """A copy as ``state_cls`` (for a state image: nothing in it aliases the chip)."""
        state = state_cls(**{name: getattr(self, name) for name in _FIELDS})
        state.ram = bytearray(self.ram)
        return state


def _byte(name: str, high: bool = False) -> int:
    return getattr(LiveRegisters, name).offset + (1 if high else 0)


# What the CPU serves from LiveRegisters without calling the chip (pyv86.bus.window), as
# (page, offset) -> byte: exactly the accesses whose handling below is "return the byte",
# "store the byte" or, for ISR, "clear the bits written as 1". CR (offset 0) reads on every
# page; a CR write only when the chip is started and the new value has RD = abort, no TXP
# and no STP: then _command only stores it with the run bits kept (STA given or kept), so
# that only the page changes. ISR and IMR writes only while the interrupt stays as it was
# (INTERRUPT). Reads that clear (CNTR0-2), writes that take frames in (BNRY, CURR), masked
# writes and commands go to the chip.
WINDOW_READS = {
    **{(page, 0x00): _byte("cr") for page in range(4)},
    (0, 0x01): _byte("clda"), (0, 0x02): _byte("clda", True), (0, 0x03): _byte("bnry"),
    (0, 0x04): _byte("tsr"), (0, 0x07): _byte("isr"), (0, 0x08): _byte("rsar"),
    (0, 0x09): _byte("rsar", True), (0, 0x0C): _byte("rsr"),
    (1, 0x07): _byte("curr"),
    (2, 0x01): _byte("pstart"), (2, 0x02): _byte("pstop"), (2, 0x03): _byte("bnry"),
    (2, 0x04): _byte("tpsr"), (2, 0x05): _byte("curr"), (2, 0x06): _byte("clda", True),
    (2, 0x07): _byte("clda"), (2, 0x0C): _byte("rcr"), (2, 0x0D): _byte("tcr"),
    (2, 0x0E): _byte("dcr"), (2, 0x0F): _byte("imr"),
    (3, 0x01): _byte("cr9346"), (3, 0x06): _byte("config3"),
}
WINDOW_WRITES = {
    (0, 0x00): _byte("cr"), (1, 0x00): _byte("cr"), (2, 0x00): _byte("cr"), (3, 0x00): _byte("cr"),
    (0, 0x01): _byte("pstart"), (0, 0x02): _byte("pstop"), (0, 0x04): _byte("tpsr"),
    (0, 0x05): _byte("tbcr"), (0, 0x06): _byte("tbcr", True),
    (0, 0x08): _byte("rsar"), (0, 0x09): _byte("rsar", True),
    (0, 0x0A): _byte("rbcr"), (0, 0x0B): _byte("rbcr", True),
    (0, 0x07): _byte("isr"), (0, 0x0F): _byte("imr"),   # only by the INTERRUPT rule below
}
CR_PAGE_ONLY = (RD_MASK | CR.TXP | CR.STP, CR.RD_ABORT)   # (mask, value) of a new CR
CR_STARTED = (CR.STP | CR.STA, CR.STA)                      # ... and of the old one
# ISR and IMR writes are served while the interrupt (ISR & IMR & 0x7F) stays as it was:
# an ISR write that acknowledges neither PRX nor OVW (those take waiting frames in) and
# an IMR write of 7 bits; RST (bit 7) is not cleared by writes
# The data port is streamed by the CPU (pyv86.bus.window.DataPort) while an access stays
# inside the RAM below PSTOP (where the ring wraps) and inside RBCR, and does not raise the
# interrupt by setting RDC: then _data_read/_data_write/io_*_string only move the bytes,
# advance RSAR and count RBCR down. Byte accesses in word mode (each moves a word) go to
# the chip. The remote read and write commands only store CR while RBCR is not zero.
DATA_PORT_RULES = dict(offset=DATA_PORT, memory_start=RAM_START, address=_byte("rsar"),
                       count=_byte("rbcr"), end_page=_byte("pstop"), done_bit=ISR.RDC,
                       word_mode=(_byte("dcr"), DCR_WTS),
                       start_commands=((RD_MASK | CR.TXP | CR.STP, CR.RD_READ),
                                       (RD_MASK | CR.TXP | CR.STP, CR.RD_WRITE)))
INTERRUPT = InterruptPair(status=_byte("isr"), enable=_byte("imr"), bits=0x7F, clear_bits=0x7F,
                          status_exits=ISR.PRX | ISR.OVW, enable_bits=0x7F)


def check_state(state: Dp8390State, where: str) -> None:
    """Raise :class:`StateError` if ``state`` cannot be a chip's state (from a corrupt image)."""
    for name in _REGISTERS:
        value = getattr(state, name)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0xFF:
            raise StateError(f"{where}: {name} = {value!r} is not a byte")
    for name, limit in (("tbcr", 0xFFFF), ("rsar", 0xFFFF), ("rbcr", 0xFFFF), ("clda", 0xFFFF)):
        value = getattr(state, name)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= limit:
            raise StateError(f"{where}: {name} = {value!r} is not a 16-bit value")
    for name, length in (("par", 6), ("mar", 8), ("prom_mac", 6), ("wire_mac", 6)):
        value = getattr(state, name)
        if not isinstance(value, (bytes, bytearray)) or len(value) != length:
            raise StateError(f"{where}: {name} must be {length} bytes, got {value!r:.40}")
    if not isinstance(state.ram, (bytes, bytearray)) or len(state.ram) != RAM_SIZE:
        size = len(state.ram) if isinstance(state.ram, (bytes, bytearray)) else type(state.ram).__name__
        raise StateError(f"{where}: ram must be {RAM_SIZE} bytes, got {size}")


@attrs.define
class ChipStats:
    """Host-side counters (not guest state; not saved)."""

    rx_stored: int = 0
    rx_filtered: int = 0
    rx_stopped: int = 0
    rx_bad_length: int = 0
    rx_monitor: int = 0
    rx_missed: int = 0
    tx_frames: int = 0
    tx_loopback: int = 0
    tx_aborted: int = 0
    dma_writes_ignored: int = 0


def _noop_irq(level: bool) -> None:
    pass


class Dp8390:
    """One NE2000-compatible NIC chip."""

    def __init__(self, name: str, mac: bytes, *,
                 set_irq: Callable[[bool], None] = _noop_irq,
                 transmit: Callable[[bytes], None] | None = None,
                 rx_space: Callable[[], None] | None = None,
                 rx_flush: Callable[[], None] | None = None,
                 state_cls: type[Dp8390State] = Dp8390State) -> None:
        if len(mac) != 6:
            raise ValueError(f"{name}: a MAC is 6 bytes")
        self.name = name
        self.set_irq = set_irq
        self.transmit = transmit
        self.rx_space = rx_space
        self.rx_flush = rx_flush
        self.state_cls = state_cls
        self.stats = ChipStats()
        self._irq = False
        self.state = LiveRegisters(state_cls())
        self.window = RegisterWindow(self.state, WINDOW_READS, WINDOW_WRITES, bank_offset=_byte("cr"),
                                     bank_shift=6, bank_mask=3, bank_write_new=CR_PAGE_ONLY,
                                     bank_write_old=CR_STARTED, bank_write_keeps=CR.STP | CR.STA,
                                     interrupt=INTERRUPT,
                                     data_port=DataPort(memory=self.state.ram_block, **DATA_PORT_RULES))
        """The registers the CPU may serve itself; the bus wrapper maps it with the I/O range."""
        self.power_on(bytes(mac))

    # lifecycle -------------------------------------------------------------------
    def power_on(self, mac: bytes | None = None) -> None:
        """Power-on / machine reset: registers and RAM to defaults, PAR loaded from the PROM.

        With ``mac`` (a new card) the PROM, PAR and wire MAC all become ``mac``. Without
        it the PROM (the card's identity) and the wire MAC are kept: after a restore with
        MAC translation the PROM holds the guest's MAC and must survive a guest reboot.
        """
        old = self.state
        state = self.state_cls()
        if mac is not None:
            state.wire_mac = state.prom_mac = state.par = bytes(mac)
        else:
            state.wire_mac, state.prom_mac, state.par = old.wire_mac, old.prom_mac, old.prom_mac
        self.state.fill(state)
        if self.rx_flush is not None:
            self.rx_flush()
        self._update_irq(force=True)

    def reset_pulse(self) -> None:
        """The reset port was read: stop, RST set, interrupts masked, PROM reloaded.

        Ring pointers, PAR, MAR, RAM and the PROM survive (the PROM is read-only
        memory; v86 and the real chip keep it, QEMU reloads it from its fixed MAC).
        """
        s = self.state
        s.cr = CR.STP | CR.RD_ABORT
        s.isr = ISR.RST
        s.imr = 0
        s.rbcr = 0
        s.tcr = 0
        if self.rx_flush is not None:
            self.rx_flush()
        self._update_irq()

    def load_state(self, state: Dp8390State) -> None:
        """Install a state from an image (checked first) and re-derive the IRQ line."""
        check_state(state, self.name)
        state.par, state.mar = bytes(state.par), bytes(state.mar)
        state.prom_mac, state.wire_mac = bytes(state.prom_mac), bytes(state.wire_mac)
        self.state.fill(state)
        # ISR.RST reads 1 exactly while the chip is stopped (a started chip's CR writes that
        # only change the page are served by the CPU and would not clear it)
        self.state.isr = self.state.isr & ~ISR.RST | (ISR.RST if self.state.cr & CR.STP else 0)
        if self.rx_flush is not None:
            self.rx_flush()
        self._update_irq(force=True)

    def snapshot(self) -> Dp8390State:
        """The chip's state as a ``state_cls`` instance (a copy)."""
        return self.state.snapshot(self.state_cls)

    @property
    def irq_level(self) -> bool:
        return self._irq

    @property
    def stopped(self) -> bool:
        return bool(self.state.cr & CR.STP)

    def _update_irq(self, force: bool = False) -> None:
        s = self.state
        level = bool(s.isr & s.imr & 0x7F)
        if level != self._irq or force:
            self._irq = level
            self.set_irq(level)

    # the guest's view --------------------------------------------------------------
    def io_read(self, offset: int, size: int) -> int:
        """A guest ``in`` at ``offset`` from the I/O base."""
        if size == 1 and offset < 0x10:  # the common case: one register
            return self._reg_read(offset)
        if offset == DATA_PORT:
            return self._data_read(size)
        if size == 1:
            return self._read_byte(offset)
        value = 0
        for i in range(size):
            value |= self._read_byte(offset + i) << (8 * i)
        return value

    def io_write(self, offset: int, size: int, value: int) -> None:
        """A guest ``out`` at ``offset`` from the I/O base."""
        if size == 1 and offset < 0x10:  # the common case: one register
            self._reg_write(offset, value)
            return
        if offset == DATA_PORT:
            self._data_write(size, value)
            return
        for i in range(size):
            self._write_byte(offset + i, (value >> (8 * i)) & 0xFF)

    def io_read_string(self, offset: int, size: int, count: int) -> bytes:
        """A guest ``rep ins``: the data port moves the whole block at once."""
        if offset != DATA_PORT or count <= 0:
            return b"".join(self.io_read(offset, size).to_bytes(size, "little") for _ in range(count))
        s = self.state
        if s.dcr & DCR_WTS:
            s.rsar &= 0xFFFE
            if size == 1:  # each inb moves a word and returns its low byte
                return self._dma_read(2 * count)[::2]
        return self._dma_read(size * count)

    def io_write_string(self, offset: int, size: int, data: bytes) -> None:
        """A guest ``rep outs``: the data port takes the whole block at once."""
        units = len(data) // size
        if offset != DATA_PORT:
            for i in range(units):
                self.io_write(offset, size, int.from_bytes(data[i * size : (i + 1) * size], "little"))
            return
        s = self.state
        word = s.dcr & DCR_WTS
        step = 2 if word and size == 1 else size
        # a unit is written only while RBCR > 0 before it: the first ceil(RBCR/step) units
        allowed = min(units, -(-s.rbcr // step))
        if allowed < units:
            self.stats.dma_writes_ignored += units - allowed
        if not allowed:
            return
        if word:
            s.rsar &= 0xFFFE
        if step != size:  # byte writes in word mode: each fills a low lane and moves a word
            for i in range(allowed):
                self._dma_write(data[i : i + 1], 2)
            return
        self._dma_write(bytes(data[: allowed * size]), allowed * size)

    def _read_byte(self, offset: int) -> int:
        if offset < 0x10:
            return self._reg_read(offset)
        if offset == DATA_PORT:
            return self._data_read(1) & 0xFF
        if offset == RESET_PORT:
            self.reset_pulse()
            return 0
        return 0xFF

    def _write_byte(self, offset: int, value: int) -> None:
        if offset < 0x10:
            self._reg_write(offset, value)
        elif offset == DATA_PORT:
            self._data_write(1, value)
        # the reset port ignores writes (end of the reset pulse); others are unassigned

    # registers -------------------------------------------------------------------
    def _reg_read(self, reg: int) -> int:
        s = self.state
        if reg == 0:
            return s.cr
        page = s.cr >> 6
        if page == 0:
            if reg == 0x07:
                return s.isr
            if reg == 0x01:
                return s.clda & 0xFF
            if reg == 0x02:
                return s.clda >> 8
            if reg == 0x03:
                return s.bnry
            if reg == 0x04:
                return s.tsr
            if reg == 0x08:
                return s.rsar & 0xFF
            if reg == 0x09:
                return s.rsar >> 8
            if reg == 0x0A:
                return RTL8029_ID[0]
            if reg == 0x0B:
                return RTL8029_ID[1]
            if reg == 0x0C:
                return s.rsr
            if reg == 0x0D:
                value, s.cntr0 = s.cntr0, 0
                return value
            if reg == 0x0E:
                value, s.cntr1 = s.cntr1, 0
                return value
            if reg == 0x0F:
                value, s.cntr2 = s.cntr2, 0
                return value
            return 0  # NCR (0x05), FIFO (0x06)
        if page == 1:
            if reg <= 0x06:
                return s.par[reg - 1]
            if reg == 0x07:
                return s.curr
            return s.mar[reg - 8]
        if page == 2:
            return {0x01: s.pstart, 0x02: s.pstop, 0x03: s.bnry, 0x04: s.tpsr, 0x05: s.curr,
                    0x06: s.clda >> 8, 0x07: s.clda & 0xFF, 0x0C: s.rcr, 0x0D: s.tcr,
                    0x0E: s.dcr, 0x0F: s.imr}.get(reg, 0)
        # page 3: RTL8029 configuration registers
        if reg == 0x01:
            return s.cr9346
        if reg == 0x05:
            return 0x40  # CONFIG2: 10BASE-T link
        if reg == 0x06:
            return s.config3
        return 0  # CONFIG0 (0x03) and reserved registers

    def _reg_write(self, reg: int, value: int) -> None:
        s = self.state
        if reg == 0:
            self._command(value)
            return
        page = s.cr >> 6
        if page == 0:
            # ISR, IMR and BNRY first: with the CPU serving the register window, they are
            # most of the page-0 writes that still come here
            if reg == 0x07:
                s.isr &= ~(value & 0x7F)
                if value & ISR.PRX and self._ring_has_frames():
                    # lib8390 acks PRX after reading at most 9 frames and would leave the
                    # rest until the next arrival: while unread frames remain, PRX stays
                    s.isr |= ISR.PRX
                self._update_irq()
                if value & (ISR.PRX | ISR.OVW) and self.rx_space is not None and not s.cr & CR.STP:
                    self.rx_space()  # frames that waited for room come in now
            elif reg == 0x0F:
                s.imr = value & 0x7F
                self._update_irq()
            elif reg == 0x03:
                s.bnry = value
                if self.rx_space is not None and not s.cr & CR.STP:
                    self.rx_space()
            elif reg == 0x01:
                s.pstart = value
            elif reg == 0x02:
                s.pstop = value
            elif reg == 0x04:
                s.tpsr = value
            elif reg == 0x05:
                s.tbcr = (s.tbcr & 0xFF00) | value
            elif reg == 0x06:
                s.tbcr = (s.tbcr & 0x00FF) | value << 8
            elif reg == 0x08:
                s.rsar = (s.rsar & 0xFF00) | value
            elif reg == 0x09:
                s.rsar = (s.rsar & 0x00FF) | value << 8
            elif reg == 0x0A:
                s.rbcr = (s.rbcr & 0xFF00) | value
            elif reg == 0x0B:
                s.rbcr = (s.rbcr & 0x00FF) | value << 8
            elif reg == 0x0C:
                s.rcr = value & 0x3F
            elif reg == 0x0D:
                s.tcr = value & 0x1F
            elif reg == 0x0E:
                s.dcr = value & 0x7F
        elif page == 1:
            if reg <= 0x06:
                par = bytearray(s.par)
                par[reg - 1] = value
                s.par = bytes(par)
            elif reg == 0x07:
                s.curr = value
                if self.rx_space is not None and not s.cr & CR.STP:
                    self.rx_space()
            else:
                mar = bytearray(s.mar)
                mar[reg - 8] = value
                s.mar = bytes(mar)
        elif page == 3:
            if reg == 0x01:
                s.cr9346 = value & 0xC0 | (s.cr9346 & 0x3F)
            elif reg == 0x06 and s.cr9346 & 0xC0 == 0xC0:
                s.config3 = value
        # page 2 is read-only diagnostics here

    def _command(self, value: int) -> None:
        s = self.state
        was_stopped = bool(s.cr & CR.STP)
        if value & CR.STP:
            run = CR.STP
        elif value & CR.STA:
            run = CR.STA
        else:
            run = s.cr & (CR.STP | CR.STA)  # 0x20/0x60 keep the run state
        s.cr = (value & 0xF8 & ~CR.TXP) | run
        if run & CR.STP:
            s.isr |= ISR.RST
        else:
            s.isr &= ~ISR.RST
        rd = value & RD_MASK
        if rd in (CR.RD_READ, CR.RD_WRITE) and s.rbcr == 0:
            s.isr |= ISR.RDC
        elif rd == CR.RD_SEND:
            self._send_packet_command()
        frame = None
        if value & CR.TXP and not run & CR.STP:
            frame = self._transmit()
        self._update_irq()
        if frame is not None and self.transmit is not None:
            self.transmit(frame)
        if was_stopped and not run & CR.STP and self.rx_space is not None:
            self.rx_space()

    def _send_packet_command(self) -> None:
        """RD=011: set up a remote read of the packet at BNRY (length from its header)."""
        s = self.state
        s.rsar = s.bnry << 8
        start = s.rsar
        s.rbcr = self._mem_byte(start + 2) | self._mem_byte(start + 3) << 8
        if s.rbcr == 0:
            s.isr |= ISR.RDC

    # transmit ---------------------------------------------------------------------
    def _transmit(self) -> bytes | None:
        """Send TBCR bytes from page TPSR; returns the frame for the wire (None if not)."""
        s = self.state
        start = s.tpsr << 8
        length = s.tbcr
        if length == 0 or length > ETH_VLAN_FRAME_MAX or start < RAM_START or start + length > RAM_END:
            self.stats.tx_aborted += 1
            s.tsr = TSR.ABT
            s.isr |= ISR.TXE
            log.debug("%s: transmit of %d bytes at %#06x aborted", self.name, length, start)
            return None
        frame = bytes(s.ram[start - RAM_START : start - RAM_START + length])
        s.tsr = TSR.PTX
        s.isr |= ISR.PTX
        self.stats.tx_frames += 1
        if (s.tcr >> 1) & 3 in (1, 2):  # internal / ENDEC loopback: back into our receiver
            self.stats.tx_loopback += 1
            self.receive(frame)
            return None
        return frame

    # remote DMA --------------------------------------------------------------------
    def _mem_byte(self, addr: int) -> int:
        """One byte of the card's memory as the remote DMA sees it."""
        addr &= 0xFFFF
        if RAM_START <= addr < RAM_END:
            return self.state.ram[addr - RAM_START]
        if addr < PROM_BYTES:
            return self._prom_byte(addr >> 1)
        return 0

    def _prom_byte(self, index: int) -> int:
        if index < 6:
            return self.state.prom_mac[index]
        if index >= 14:
            return PROM_SIGNATURE
        return 0

    def _ring_has_frames(self) -> bool:
        """True if the ring certainly holds unread frames under either driver convention.

        Drivers keep BNRY at the next frame to read (empty: CURR == BNRY) or, like Linux,
        at the page before it (empty: CURR == BNRY + 1, wrapping at PSTOP).
        """
        s = self.state
        if self._wrap_point() is None or not s.pstart <= s.curr < s.pstop:
            return False
        ring = s.pstop - s.pstart
        if not s.pstart - 1 <= s.bnry < s.pstop:
            return False
        return (s.curr - s.bnry) % ring not in (0, 1)

    def _wrap_point(self) -> tuple[int, int] | None:
        """(PSTOP<<8, PSTART<<8) when the ring registers describe a usable ring."""
        s = self.state
        if RAM_FIRST_PAGE <= s.pstart < s.pstop <= RAM_END_PAGE:
            return s.pstop << 8, s.pstart << 8
        return None

    def _chunk(self, addr: int, wrap: tuple[int, int] | None, remaining: int) -> int:
        """How many bytes from ``addr`` lie in one region before a wrap or region edge."""
        if RAM_START <= addr < RAM_END:
            limit = wrap[0] if wrap is not None and addr < wrap[0] else RAM_END
        elif addr < PROM_BYTES:
            limit = addr + 1
        elif addr < RAM_START:
            limit = RAM_START
        else:
            limit = 0x10000
        return min(remaining, limit - addr)

    def _dma_read(self, count: int) -> bytes:
        """Read ``count`` bytes at the remote DMA address, wrapping at PSTOP like the chip."""
        s = self.state
        addr = s.rsar
        wrap = self._wrap_point()
        ram = s.ram
        end = addr + count
        if RAM_START <= addr and end <= RAM_END and (wrap is None or end <= wrap[0] or addr >= wrap[0]):
            data = bytes(ram[addr - RAM_START : end - RAM_START])  # the common case: one slice
            addr = end & 0xFFFF
        else:
            out = bytearray()
            remaining = count
            while remaining:
                n = self._chunk(addr, wrap, remaining)
                if RAM_START <= addr < RAM_END:
                    out += ram[addr - RAM_START : addr - RAM_START + n]
                elif addr < PROM_BYTES:
                    out.append(self._prom_byte(addr >> 1))
                else:
                    out += bytes(n)
                remaining -= n
                addr = (addr + n) & 0xFFFF
                if wrap is not None and addr == wrap[0]:
                    addr = wrap[1]
            data = bytes(out)
        if wrap is not None and addr == wrap[0]:
            addr = wrap[1]
        s.rsar = addr
        self._dma_count(count)
        return data

    def _dma_write(self, data: bytes, count: int) -> None:
        """Write ``count`` bytes (``data``, padded by untouched bytes) at the remote DMA address."""
        s = self.state
        if s.rbcr == 0:
            self.stats.dma_writes_ignored += 1
            return
        addr = s.rsar
        wrap = self._wrap_point()
        ram = s.ram
        pos = 0
        while pos < count:
            n = self._chunk(addr, wrap, count - pos)
            if RAM_START <= addr < RAM_END and pos < len(data):
                piece = data[pos : pos + n]
                ram[addr - RAM_START : addr - RAM_START + len(piece)] = piece
            pos += n
            addr = (addr + n) & 0xFFFF
            if wrap is not None and addr == wrap[0]:
                addr = wrap[1]
        s.rsar = addr
        self._dma_count(count)

    def _dma_count(self, count: int) -> None:
        s = self.state
        if s.rbcr:
            s.rbcr = max(0, s.rbcr - count)
            if s.rbcr == 0:
                s.isr |= ISR.RDC
                self._update_irq()

    def _data_read(self, size: int) -> int:
        s = self.state
        if s.dcr & DCR_WTS:
            s.rsar &= 0xFFFE
            data = self._dma_read(max(size, 2))
        else:
            data = self._dma_read(size)
        return int.from_bytes(data[:size], "little")

    def _data_write(self, size: int, value: int) -> None:
        s = self.state
        data = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
        if s.dcr & DCR_WTS:
            s.rsar &= 0xFFFE
            # a byte write in word mode lands in the low byte lane and moves a whole word
            self._dma_write(data, max(size, 2))
        else:
            self._dma_write(data, size)

    # receive -------------------------------------------------------------------------
    def accepts(self, frame: bytes) -> bool:
        """The address filter: would the receiver take a frame with this destination?"""
        s = self.state
        rcr = s.rcr
        if rcr & RCR.PRO:
            return True
        dst = frame[0:6]
        if dst[0] & 1:
            if dst == BROADCAST:
                return bool(rcr & RCR.AB)
            if not rcr & RCR.AM:
                return False
            idx = multicast_hash_index(dst)
            return bool(s.mar[idx >> 3] & (1 << (idx & 7)))
        return dst == s.par

    def receive(self, frame: bytes) -> RxResult:
        """Store one frame from the wire in the ring (the network core calls this)."""
        s = self.state
        if s.cr & CR.STP:
            self.stats.rx_stopped += 1
            return RxResult.DROPPED
        n = len(frame)
        if n < ETH_HEADER or n > ETH_VLAN_FRAME_MAX:
            self.stats.rx_bad_length += 1
            return RxResult.DROPPED
        if not self.accepts(frame):
            self.stats.rx_filtered += 1
            return RxResult.FILTERED
        if s.rcr & RCR.MON:  # checked, counted, not buffered
            self.stats.rx_monitor += 1
            self._count_missed(overflow=False)
            return RxResult.DROPPED
        wrap = self._wrap_point()
        if wrap is None or not s.pstart <= s.curr < s.pstop:
            return RxResult.NO_ROOM
        pstart, pstop, curr = s.pstart, s.pstop, s.curr
        ring_pages = pstop - pstart
        count = max(n, ETH_ZLEN) + 4
        needed = 1 + (count >> 8)
        bnry = s.bnry
        if pstart - 1 <= bnry < pstop:
            free = (bnry - curr) % ring_pages or ring_pages
        else:
            free = ring_pages  # BNRY outside the ring (e.g. ReactOS leaves 0): ring empty
        if needed >= free:
            # The ring holds unread frames: keep PRX asserted so the driver comes back for
            # them (lib8390 acks PRX after at most 9 frames); the frame waits in the host
            # queue instead of costing an overrun (ISR.OVW makes Linux stop the NIC 10 ms).
            if not s.isr & ISR.PRX:
                s.isr |= ISR.PRX
                self._update_irq()
            return RxResult.NO_ROOM
        nxt = curr + needed
        if nxt >= pstop:
            nxt -= ring_pages
        status = RSR.PRX | (RSR.PHY if frame[0] & 1 else 0)
        ram = s.ram
        base = (curr << 8) - RAM_START
        ram[base : base + 4] = bytes((status, nxt, count & 0xFF, count >> 8))
        data_start = base + 4
        stop = (pstop << 8) - RAM_START
        first = min(n, stop - data_start)
        ram[data_start : data_start + first] = frame[:first]
        if first < n:
            rest = n - first
            ring_start = (pstart << 8) - RAM_START
            ram[ring_start : ring_start + rest] = frame[first:]
            end = ring_start + rest
        else:
            end = data_start + n
            if n < ETH_ZLEN:  # short frames fit in the first page: pad with zeros
                pad = ETH_ZLEN - n
                ram[end : end + pad] = bytes(pad)
                end += pad
        s.clda = (end + RAM_START) & 0xFFFF
        s.curr = nxt
        s.rsr = status
        s.isr |= ISR.PRX
        self.stats.rx_stored += 1
        self._update_irq()
        return RxResult.STORED

    def missed(self) -> None:
        """A frame for this NIC was lost (the ring and the host queue were full)."""
        self.stats.rx_missed += 1
        self._count_missed(overflow=True)

    def _count_missed(self, overflow: bool) -> None:
        s = self.state
        if s.cntr2 < COUNTER_MAX:
            s.cntr2 += 1
        if s.cntr2 & 0x80:
            s.isr |= ISR.CNT
        s.rsr = RSR.MPA | (s.rsr & RSR.PHY)
        if overflow:
            s.isr |= ISR.OVW
        self._update_irq()
