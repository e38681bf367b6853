"""The 16550A UART (COM1 at 0x3F8, IRQ 4 by default).

Transmission is instantaneous: a byte written to THR goes straight to the connected
character backend (see :mod:`pyv86.platform.chardev`) and THR is empty again, so the
THRE interrupt is pending right after every write, as the 8250 driver expects. Received
bytes enter a 16-byte FIFO; bytes that arrive while it is full wait in a host-side
backlog (bounded) and move in as the guest reads, so pasted or scripted input is never
lost. The chardev edge (terminal, file, socket, callback) lives outside this module.

Registers: RBR/THR, IER (bits 0-3), IIR (priority LS > RX data / RX timeout > THRE > MS,
FIFO bits 7:6), FCR (enable, clear, trigger level 1/4/8/14), LCR (DLAB), MCR (DTR, RTS,
OUT1, OUT2 gates the IRQ as on a PC, LOOP), LSR (DR, OE, THRE, TEMT; errors clear on
read), MSR (CTS/DSR/DCD asserted; loopback maps RTS/DTR/OUT1/OUT2; delta bits), SCR,
DLL/DLM.
"""
from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING, Callable, ClassVar

import attrs

from pyv86.devices.base import Device

if TYPE_CHECKING:
    from pyv86.platform.chardev import CharBackend

log = logging.getLogger(__name__)

RBR, IER, IIR, LCR, MCR, LSR, MSR, SCR = range(8)
IER_RDI, IER_THRI, IER_RLSI, IER_MSI = 1, 2, 4, 8
IIR_NO_INT, IIR_MSI, IIR_THRI, IIR_RDI, IIR_RLSI, IIR_TIMEOUT = 0x01, 0x00, 0x02, 0x04, 0x06, 0x0C
LCR_DLAB = 0x80
MCR_DTR, MCR_RTS, MCR_OUT1, MCR_OUT2, MCR_LOOP = 1, 2, 4, 8, 0x10
LSR_DR, LSR_OE, LSR_PE, LSR_FE, LSR_BI, LSR_THRE, LSR_TEMT, LSR_FIFOE = 1, 2, 4, 8, 0x10, 0x20, 0x40, 0x80
MSR_DCTS, MSR_DDSR, MSR_TERI, MSR_DDCD, MSR_CTS, MSR_DSR, MSR_RI, MSR_DCD = 1, 2, 4, 8, 0x10, 0x20, 0x40, 0x80
FIFO_SIZE = 16
TRIGGER = (1, 4, 8, 14)
BACKLOG_LIMIT = 1 << 20
CHAR_NS = 87_000  # one character at 115200 baud, 10 bits


def _chardev_spec(value: str) -> str:
    from pyv86.platform.chardev import check_spec

    check_spec(value)
    return value


@attrs.define(frozen=True)
class UartConfig:
    iobase: int = attrs.field(default=0x3F8, metadata={"help": "first I/O port (8 ports)"})
    irq: int = attrs.field(default=4, validator=attrs.validators.in_(range(16)), metadata={"help": "IRQ line"})
    chardev: str = attrs.field(default="console", validator=lambda _i, _a, v: _chardev_spec(v), metadata={
        "help": "where the port is connected: \"console\" (the run command decides: the terminal, or "
                "the --exec session), \"null\", \"file:PATH\" (output to PATH), "
                "\"tcp:127.0.0.1:PORT\" (listen on loopback, one client at a time)"})


@attrs.define
class UartState:
    VERSION: ClassVar[int] = 1
    rx_fifo: list[int] = attrs.field(factory=list)
    ier: int = 0
    fcr: int = 0
    lcr: int = 0
    mcr: int = 0
    lsr: int = LSR_THRE | LSR_TEMT
    msr: int = MSR_DCD | MSR_DSR | MSR_CTS
    scr: int = 0
    dll: int = 0x01
    dlm: int = 0x00
    thr_ipending: bool = False
    timeout_pending: bool = False
    irq_level: bool = False


class Uart16550(Device):
    """A 16550A serial port."""

    kind = "uart16550"
    config_cls = UartConfig
    state_cls = UartState
    description = "16550A UART (COM1 0x3F8 IRQ 4), connectable to terminal/file/TCP/callback"

    def __init__(self, id: str, config: UartConfig | None = None) -> None:
        super().__init__(id, config)
        self.backend: CharBackend | None = None
        self._backlog: deque[int] = deque()
        self._output_taps: list[Callable[[bytes], None]] = []

    def realize(self, machine) -> None:  # type: ignore[override]
        super().realize(machine)
        machine.ports.map(self.config.iobase, 8, self.io_read, self.io_write, self,
                          name=self.id, sizes=(1,))
        self._irq = machine.irqs[self.config.irq].source(self.id)
        self._timeout_timer = machine.scheduler.timer(f"{self.id}.rx-timeout", self._on_rx_timeout)
        if self.config.chardev not in ("console", "null"):
            from pyv86.platform.chardev import open_chardev

            self.connect(open_chardev(self.config.chardev, f"device.{self.id}.chardev"))

    def unrealize(self) -> None:
        if self.backend is not None:
            self.backend.close()
            self.backend = None

    def reset(self) -> None:
        super().reset()
        self._backlog.clear()
        if self.machine is not None:
            self._timeout_timer.cancel()
            self._irq.set(False)

    def restore(self, state: UartState) -> None:
        self.state = state
        self._update_irq()

    # the host side -------------------------------------------------------------------
    def connect(self, backend: CharBackend | None) -> None:
        """Connect a character backend (replacing any earlier one) and take its input."""
        if self.backend is not None and self.backend is not backend:
            self.backend.close()
        self.backend = backend
        if backend is not None:
            backend.set_receiver(self._receive_threadsafe)

    def add_output_tap(self, tap: Callable[[bytes], None]) -> None:
        """Also hand every transmitted byte string to ``tap`` (monitors, --exec)."""
        self._output_taps.append(tap)

    def _receive_threadsafe(self, data: bytes) -> None:
        machine = self.machine
        if machine is None:
            return
        machine.call_soon_threadsafe(lambda: self.receive(data))

    def receive(self, data: bytes) -> None:
        """Bytes from the host arrive on the line (call on the machine thread)."""
        if len(self._backlog) + len(data) > BACKLOG_LIMIT:
            log.warning("%s: input backlog full; dropping %d bytes", self.id, len(data))
            return
        self._backlog.extend(data)
        self._fill_fifo()

    def _fill_fifo(self) -> None:
        s = self.state
        limit = FIFO_SIZE if s.fcr & 1 else 1
        moved = False
        while self._backlog and len(s.rx_fifo) < limit:
            s.rx_fifo.append(self._backlog.popleft())
            moved = True
        if moved:
            s.lsr |= LSR_DR
            self._arm_timeout()
            self._update_irq()

    def _transmit(self, byte: int) -> None:
        s = self.state
        if s.mcr & MCR_LOOP:
            if len(s.rx_fifo) < (FIFO_SIZE if s.fcr & 1 else 1):
                s.rx_fifo.append(byte)
                s.lsr |= LSR_DR
                self._arm_timeout()
            else:
                s.lsr |= LSR_OE
            return
        data = bytes((byte,))
        if self.backend is not None:
            try:
                self.backend.write(data)
            except OSError as exc:
                log.warning("%s: console backend failed (%s); disconnecting it", self.id, exc)
                self.backend = None
        for tap in self._output_taps:
            tap(data)

    # receive timeout (FIFO mode: data below the trigger level, nobody reading) ----------
    def _arm_timeout(self) -> None:
        if self.machine is None:
            return
        self.state.timeout_pending = False
        if self.state.fcr & 1 and self.state.rx_fifo:
            self._timeout_timer.arm_in(4 * CHAR_NS)
        else:
            self._timeout_timer.cancel()

    def _on_rx_timeout(self) -> None:
        if self.state.rx_fifo:
            self.state.timeout_pending = True
            self._update_irq()

    # interrupt logic --------------------------------------------------------------------
    def _rx_ready(self) -> bool:
        s = self.state
        if not s.rx_fifo:
            return False
        if not s.fcr & 1:
            return True
        return len(s.rx_fifo) >= TRIGGER[s.fcr >> 6]

    def interrupt_id(self) -> int:
        """IIR bits 3:0 for the highest-priority pending source."""
        s = self.state
        if s.ier & IER_RLSI and s.lsr & (LSR_OE | LSR_PE | LSR_FE | LSR_BI):
            return IIR_RLSI
        if s.ier & IER_RDI and self._rx_ready():
            return IIR_RDI
        if s.ier & IER_RDI and s.timeout_pending and s.rx_fifo:
            return IIR_TIMEOUT
        if s.ier & IER_THRI and s.thr_ipending:
            return IIR_THRI
        if s.ier & IER_MSI and s.msr & 0x0F:
            return IIR_MSI
        return IIR_NO_INT

    def _update_irq(self) -> None:
        s = self.state
        pending = self.interrupt_id() != IIR_NO_INT
        # OUT2 gates the interrupt onto the ISA bus on PCs; in loopback it is internal
        level = pending and bool(s.mcr & MCR_OUT2) and not s.mcr & MCR_LOOP
        s.irq_level = level
        if self.machine is not None:
            self._irq.set(level)

    # guest access -----------------------------------------------------------------------
    def io_read(self, offset: int, size: int) -> int:
        s = self.state
        if offset == RBR:
            if s.lcr & LCR_DLAB:
                return s.dll
            value = s.rx_fifo.pop(0) if s.rx_fifo else 0
            if self._backlog:
                self._fill_fifo()
            if not s.rx_fifo:
                s.lsr &= ~LSR_DR
            self._arm_timeout()
            self._update_irq()
            return value
        if offset == IER:
            return s.dlm if s.lcr & LCR_DLAB else s.ier
        if offset == IIR:
            iid = self.interrupt_id()
            if iid == IIR_THRI:
                s.thr_ipending = False  # reading IIR with THRE as the source clears it
                self._update_irq()
            return iid | (0xC0 if s.fcr & 1 else 0)
        if offset == LCR:
            return s.lcr
        if offset == MCR:
            return s.mcr
        if offset == LSR:
            value = s.lsr
            if s.lsr & (LSR_OE | LSR_PE | LSR_FE | LSR_BI):
                s.lsr &= ~(LSR_OE | LSR_PE | LSR_FE | LSR_BI | LSR_FIFOE)
                self._update_irq()
            return value
        if offset == MSR:
            value = self._msr_lines() | (s.msr & 0x0F)
            if s.msr & 0x0F:
                s.msr &= 0xF0
                self._update_irq()
            return value
        return s.scr

    def _msr_lines(self) -> int:
        mcr = self.state.mcr
        if mcr & MCR_LOOP:
            return ((MSR_CTS if mcr & MCR_RTS else 0) | (MSR_DSR if mcr & MCR_DTR else 0)
                    | (MSR_RI if mcr & MCR_OUT1 else 0) | (MSR_DCD if mcr & MCR_OUT2 else 0))
        return MSR_DCD | MSR_DSR | MSR_CTS

    def io_write(self, offset: int, size: int, value: int) -> None:
        s = self.state
        value &= 0xFF
        if offset == RBR:
            if s.lcr & LCR_DLAB:
                s.dll = value
                return
            self._transmit(value)
            s.lsr |= LSR_THRE | LSR_TEMT
            s.thr_ipending = True
            self._update_irq()
        elif offset == IER:
            if s.lcr & LCR_DLAB:
                s.dlm = value
                return
            s.ier = value & 0x0F
            if s.ier & IER_THRI and s.lsr & LSR_THRE:
                s.thr_ipending = True
            self._update_irq()
        elif offset == IIR:
            self._write_fcr(value)
        elif offset == LCR:
            s.lcr = value
        elif offset == MCR:
            old_lines = self._msr_lines()
            s.mcr = value & 0x1F
            new_lines = self._msr_lines()
            changed = old_lines ^ new_lines
            if changed & MSR_CTS:
                s.msr |= MSR_DCTS
            if changed & MSR_DSR:
                s.msr |= MSR_DDSR
            if changed & MSR_DCD:
                s.msr |= MSR_DDCD
            if old_lines & MSR_RI and not new_lines & MSR_RI:
                s.msr |= MSR_TERI
            s.msr = (s.msr & 0x0F) | new_lines
            self._update_irq()
        elif offset == LSR:
            pass  # factory test register; writes ignored
        elif offset == MSR:
            pass
        else:
            s.scr = value

    def _write_fcr(self, value: int) -> None:
        s = self.state
        if (value ^ s.fcr) & 1:
            s.rx_fifo.clear()  # toggling the FIFO enable clears both FIFOs
        if value & 0x02:
            s.rx_fifo.clear()
            s.timeout_pending = False
        s.fcr = value & 0xC9 if value & 1 else 0
        if not s.rx_fifo:
            s.lsr &= ~LSR_DR
        if self._backlog:
            self._fill_fifo()
        self._update_irq()
