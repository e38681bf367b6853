"""A Python model of Linux's ``ne2k-pci`` + ``lib8390`` driver, access by access.

Used by the tests and the benchmark to drive an emulated RTL8029 the way a Linux guest
does, without a CPU: the probe (8390 sanity check, reset, PROM read in word mode),
``NS8390_init``, the multicast list, transmission through two TX slots with the RDC
poll, the interrupt handler loop, ``ei_receive`` (4-byte header read with one ``inl``,
``next`` checks, payload read that runs across PSTOP) and ``ei_rx_overrun``. Messages a
real kernel would print go to :attr:`LinuxNe2kModel.messages` ("mismatched read page
pointers", "bogus packet size", "Card failure (no reset ack)"...), errors to
:attr:`LinuxNe2kModel.stats` with Linux's counter names.

The model talks to anything with the machine's CPU-host methods: ``port_read(port,
size)``, ``port_write(port, size, value)``, ``port_read_string(port, size, count)`` and
``port_write_string(port, size, data)`` (a :class:`pyv86.machine.Machine` has them).
"""
from __future__ import annotations

import collections
from typing import Callable, Protocol

from pyv86.net.frame import ETH_ZLEN, ether_crc_be


class PortIO(Protocol):
    def port_read(self, port: int, size: int) -> int: ...
    def port_write(self, port: int, size: int, value: int) -> None: ...
    def port_read_string(self, port: int, size: int, count: int) -> bytes: ...
    def port_write_string(self, port: int, size: int, data: bytes) -> None: ...


class DriverError(Exception):
    """The probe failed the way the Linux driver would report it."""


# 8390 register offsets (page 0 unless noted) and command values, as lib8390 names them
CMD, EN0_STARTPG, EN0_STOPPG, EN0_BOUNDARY = 0x00, 0x01, 0x02, 0x03
EN0_TSR, EN0_TPSR, EN0_TCNTLO, EN0_TCNTHI = 0x04, 0x04, 0x05, 0x06
EN0_ISR, EN0_RSARLO, EN0_RSARHI, EN0_RCNTLO, EN0_RCNTHI = 0x07, 0x08, 0x09, 0x0A, 0x0B
EN0_RXCR, EN0_TXCR, EN0_DCFG, EN0_IMR = 0x0C, 0x0D, 0x0E, 0x0F
EN0_COUNTER0, EN0_COUNTER1, EN0_COUNTER2 = 0x0D, 0x0E, 0x0F
EN1_PHYS, EN1_CURPAG, EN1_MULT = 0x01, 0x07, 0x08
NE_DATAPORT, NE_RESET = 0x10, 0x1F
E8390_STOP, E8390_START, E8390_TRANS, E8390_RREAD, E8390_RWRITE, E8390_NODMA = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
E8390_PAGE0, E8390_PAGE1 = 0x00, 0x40
ENISR_RX, ENISR_TX, ENISR_RX_ERR, ENISR_TX_ERR, ENISR_OVER, ENISR_COUNTERS, ENISR_RDC, ENISR_RESET = (
    0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80)
ENISR_ALL = 0x3F
ENRSR_RXOK = 0x01
E8390_RXCONFIG, E8390_RXOFF, E8390_TXCONFIG, E8390_TXOFF = 0x04, 0x20, 0x00, 0x02
TX_PAGES = 12
MAX_SERVICE = 12
RESET_POLLS = 64  # stands for "2 jiffies" of polling


class LinuxNe2kModel:
    """One ``eth0``: an RTL8029 driven as ``ne2k-pci`` drives it."""

    def __init__(self, io: PortIO, base: int, *, irq_pending: Callable[[], bool] | None = None,
                 mdelay: Callable[[int], None] | None = None, on_receive: Callable[[bytes], None] | None = None,
                 keep_received: int = 1024) -> None:
        self.io = io
        self.base = base
        self.irq_pending = irq_pending
        self.mdelay = mdelay
        self.on_receive = on_receive
        self.received: collections.deque[bytes] = collections.deque(maxlen=keep_received)
        self.messages: list[str] = []
        self.stats: collections.Counter[str] = collections.Counter()
        self.mac = b""
        self.dev_addr = b""
        self.tx_start_page = 0x40
        self.stop_page = 0x80
        self.rx_start_page = self.tx_start_page + TX_PAGES
        self.current_page = self.rx_start_page
        self.running = False
        self.promisc = False
        self.allmulti = False
        self.multicast: list[bytes] = []
        self.tx1 = self.tx2 = 0
        self.txing = False
        self.txqueue = 0
        self.lasttx = 0
        self.irqlock = False

    # port helpers ------------------------------------------------------------------
    def outb(self, value: int, reg: int) -> None:
        self.io.port_write(self.base + reg, 1, value & 0xFF)

    def inb(self, reg: int) -> int:
        return self.io.port_read(self.base + reg, 1)

    def log(self, text: str) -> None:
        self.messages.append(text)

    # probe -------------------------------------------------------------------------
    def probe(self) -> bytes:
        """``ne2k_pci_init_one``: find the card, reset it, read the station address."""
        reg0 = self.inb(0)
        if reg0 == 0xFF:
            raise DriverError("ne2k-pci: no card (register 0 reads 0xff)")
        self.outb(E8390_NODMA + E8390_PAGE1 + E8390_STOP, CMD)
        regd = self.inb(0x0D)
        self.outb(0xFF, 0x0D)
        self.outb(E8390_NODMA + E8390_PAGE0, CMD)
        self.inb(EN0_COUNTER0)
        if self.inb(EN0_COUNTER0) != 0:
            self.outb(reg0, 0)
            self.outb(regd, 0x0D)
            raise DriverError("ne2k-pci: not an 8390 (counter did not clear on read)")
        self.outb(self.inb(NE_RESET), NE_RESET)
        for _ in range(RESET_POLLS):
            if self.inb(EN0_ISR) & ENISR_RESET:
                break
        else:
            self.log("ne2k-pci: Card failure (no reset ack).")
            raise DriverError("ne2k-pci: Card failure (no reset ack).")
        self.outb(0xFF, EN0_ISR)
        for value, reg in ((E8390_NODMA + E8390_PAGE0 + E8390_STOP, CMD), (0x49, EN0_DCFG),
                           (0, EN0_RCNTLO), (0, EN0_RCNTHI), (0, EN0_IMR), (0xFF, EN0_ISR),
                           (E8390_RXOFF, EN0_RXCR), (E8390_TXOFF, EN0_TXCR), (32, EN0_RCNTLO),
                           (0, EN0_RCNTHI), (0, EN0_RSARLO), (0, EN0_RSARHI),
                           (E8390_RREAD + E8390_START, CMD)):
            self.outb(value, reg)
        prom = bytes(self.inb(NE_DATAPORT) for _ in range(32))
        self.prom = prom
        self.outb(0x49, EN0_DCFG)
        self.mac = self.dev_addr = prom[:6]
        self.log(f"ne2k-pci: RealTek RTL-8029 found at {self.base:#x}, {':'.join(f'{b:02x}' for b in self.mac)}")
        self.ns8390_init(False)
        return self.mac

    def reset_8390(self) -> None:
        """``ne2k_pci_reset_8390``."""
        self.outb(self.inb(NE_RESET), NE_RESET)
        for _ in range(RESET_POLLS):
            if self.inb(EN0_ISR) & ENISR_RESET:
                break
        else:
            self.log("ne2k-pci: ne2k_pci_reset_8390() did not complete.")
        self.outb(ENISR_RESET, EN0_ISR)
        self.tx1 = self.tx2 = 0
        self.txing = False

    # init, open, close ---------------------------------------------------------------
    def ns8390_init(self, startp: bool) -> None:
        self.outb(E8390_NODMA + E8390_PAGE0 + E8390_STOP, CMD)
        self.outb(0x49, EN0_DCFG)
        self.outb(0, EN0_RCNTLO)
        self.outb(0, EN0_RCNTHI)
        self.outb(E8390_RXOFF, EN0_RXCR)
        self.outb(E8390_TXOFF, EN0_TXCR)
        self.outb(self.tx_start_page, EN0_TPSR)
        self.outb(self.rx_start_page, EN0_STARTPG)
        self.outb(self.stop_page - 1, EN0_BOUNDARY)
        self.current_page = self.rx_start_page
        self.outb(self.stop_page, EN0_STOPPG)
        self.outb(0xFF, EN0_ISR)
        self.outb(0x00, EN0_IMR)
        self.outb(E8390_NODMA + E8390_PAGE1 + E8390_STOP, CMD)
        for i in range(6):
            self.outb(self.dev_addr[i], EN1_PHYS + i)
            if self.inb(EN1_PHYS + i) != self.dev_addr[i]:
                self.log(f"Hw. address read/write mismap {i}")
        self.outb(self.rx_start_page, EN1_CURPAG)
        self.outb(E8390_NODMA + E8390_PAGE0 + E8390_STOP, CMD)
        self.tx1 = self.tx2 = 0
        self.txing = False
        if startp:
            self.outb(0xFF, EN0_ISR)
            self.outb(ENISR_ALL, EN0_IMR)
            self.outb(E8390_NODMA + E8390_PAGE0 + E8390_START, CMD)
            self.outb(E8390_TXCONFIG, EN0_TXCR)
            self.outb(E8390_RXCONFIG, EN0_RXCR)
            self.set_multicast_list()

    def open(self) -> None:
        """``ip link set eth0 up`` (``ei_open``)."""
        self.running = True
        self.ns8390_init(True)

    def close(self) -> None:
        """``ip link set eth0 down`` (``ei_close``)."""
        self.ns8390_init(False)
        self.running = False

    def set_multicast_list(self, multicast: list[bytes] | None = None, *, promisc: bool | None = None,
                           allmulti: bool | None = None) -> None:
        """``do_set_multicast_list``: hash the list into MAR0-7 and set RCR."""
        if multicast is not None:
            self.multicast = list(multicast)
        if promisc is not None:
            self.promisc = promisc
        if allmulti is not None:
            self.allmulti = allmulti
        if self.promisc or self.allmulti:
            mc_filter = bytearray(b"\xff" * 8)
        else:
            mc_filter = bytearray(8)
            for addr in self.multicast:
                crc = ether_crc_be(addr)
                mc_filter[crc >> 29] |= 1 << ((crc >> 26) & 7)
        if self.running:
            self.outb(E8390_RXCONFIG, EN0_RXCR)
        self.outb(E8390_NODMA + E8390_PAGE1, CMD)
        for i in range(8):
            self.outb(mc_filter[i], EN1_MULT + i)
            if self.inb(EN1_MULT + i) != mc_filter[i]:
                self.log(f"Multicast filter read/write mismap {i}")
        self.outb(E8390_NODMA + E8390_PAGE0, CMD)
        if self.promisc:
            self.outb(E8390_RXCONFIG | 0x18, EN0_RXCR)
        elif self.allmulti or self.multicast:
            self.outb(E8390_RXCONFIG | 0x08, EN0_RXCR)
        else:
            self.outb(E8390_RXCONFIG, EN0_RXCR)

    # remote DMA ------------------------------------------------------------------------
    def _setup_dma(self, count: int, address: int, command: int) -> None:
        self.outb(E8390_NODMA + E8390_PAGE0 + E8390_START, CMD)
        self.outb(count & 0xFF, EN0_RCNTLO)
        self.outb(count >> 8, EN0_RCNTHI)
        self.outb(address & 0xFF, EN0_RSARLO)
        self.outb(address >> 8, EN0_RSARHI)
        self.outb(command + E8390_START, CMD)

    def get_hdr(self, ring_page: int) -> tuple[int, int, int]:
        """``ne2k_pci_get_8390_hdr``: (status, next, count) with one 32-bit read."""
        self._setup_dma(4, ring_page << 8, E8390_RREAD)
        word = self.io.port_read(self.base + NE_DATAPORT, 4)
        self.outb(ENISR_RDC, EN0_ISR)
        return word & 0xFF, (word >> 8) & 0xFF, word >> 16

    def block_input(self, count: int, ring_offset: int) -> bytes:
        """``ne2k_pci_block_input``: insl, then inw/inb for the tail."""
        self._setup_dma(count, ring_offset, E8390_RREAD)
        data = self.io.port_read_string(self.base + NE_DATAPORT, 4, count >> 2)
        if count & 3:
            tail = b""
            if count & 2:
                tail += self.io.port_read(self.base + NE_DATAPORT, 2).to_bytes(2, "little")
            if count & 1:
                tail += bytes((self.io.port_read(self.base + NE_DATAPORT, 1),))
            data += tail
        self.outb(ENISR_RDC, EN0_ISR)
        return data

    def block_output(self, data: bytes, start_page: int) -> bool:
        """``ne2k_pci_block_output``: outsl + outw, then poll RDC (False on timeout)."""
        count = len(data)
        if count & 1:
            count += 1
            data = data + b"\0"
        self.outb(E8390_PAGE0 + E8390_START + E8390_NODMA, CMD)
        self.outb(ENISR_RDC, EN0_ISR)
        self.outb(count & 0xFF, EN0_RCNTLO)
        self.outb(count >> 8, EN0_RCNTHI)
        self.outb(0x00, EN0_RSARLO)
        self.outb(start_page, EN0_RSARHI)
        self.outb(E8390_RWRITE + E8390_START, CMD)
        whole = count & ~3
        self.io.port_write_string(self.base + NE_DATAPORT, 4, data[:whole])
        if count & 3:
            self.io.port_write(self.base + NE_DATAPORT, 2, int.from_bytes(data[whole : whole + 2], "little"))
        for _ in range(RESET_POLLS):
            if self.inb(EN0_ISR) & ENISR_RDC:
                break
        else:
            self.log("ne2k-pci: timeout waiting for Tx RDC.")
            self.stats["tx_rdc_timeouts"] += 1
            self.reset_8390()
            self.ns8390_init(True)
            return False
        self.outb(ENISR_RDC, EN0_ISR)
        return True

    # transmit --------------------------------------------------------------------------
    def trigger_send(self, length: int, start_page: int) -> None:
        self.outb(E8390_NODMA + E8390_PAGE0, CMD)
        if self.inb(CMD) & E8390_TRANS:
            self.log("trigger_send() called with the transmitter busy")
            return
        self.outb(length & 0xFF, EN0_TCNTLO)
        self.outb(length >> 8, EN0_TCNTHI)
        self.outb(start_page, EN0_TPSR)
        self.outb(E8390_NODMA + E8390_TRANS + E8390_START, CMD)

    def start_xmit(self, frame: bytes) -> bool:
        """``__ei_start_xmit``; False when both TX slots are busy (the queue is stopped)."""
        if len(frame) < ETH_ZLEN:
            frame = frame + bytes(ETH_ZLEN - len(frame))
        send_length = len(frame)
        self.outb(0x00, EN0_IMR)
        self.irqlock = True
        if self.tx1 == 0:
            output_page = self.tx_start_page
            self.tx1 = send_length
        elif self.tx2 == 0:
            output_page = self.tx_start_page + TX_PAGES // 2
            self.tx2 = send_length
        else:
            self.stats["tx_busy"] += 1
            self.irqlock = False
            self.outb(ENISR_ALL, EN0_IMR)
            return False
        self.block_output(frame, output_page)
        if not self.txing:
            self.txing = True
            self.trigger_send(send_length, output_page)
            if output_page == self.tx_start_page:
                self.tx1 = -1
                self.lasttx = -1
            else:
                self.tx2 = -1
                self.lasttx = -2
        else:
            self.txqueue += 1
        self.irqlock = False
        self.outb(ENISR_ALL, EN0_IMR)
        return True

    def _tx_intr(self) -> None:
        status = self.inb(EN0_TSR)
        self.outb(ENISR_TX, EN0_ISR)
        self.txqueue -= 1
        if self.tx1 < 0:
            self.tx1 = 0
            if self.tx2 > 0:
                self.txing = True
                self.trigger_send(self.tx2, self.tx_start_page + TX_PAGES // 2)
                self.tx2 = -1
                self.lasttx = 2
            else:
                self.lasttx = 20
                self.txing = False
        elif self.tx2 < 0:
            self.tx2 = 0
            if self.tx1 > 0:
                self.txing = True
                self.trigger_send(self.tx1, self.tx_start_page)
                self.tx1 = -1
                self.lasttx = 1
            else:
                self.lasttx = 10
                self.txing = False
        else:
            self.log(f"unexpected TX-done interrupt, lasttx={self.lasttx}")
        if status & 0x01:
            self.stats["tx_packets"] += 1
        else:
            self.stats["tx_errors"] += 1

    @property
    def tx_busy(self) -> bool:
        return self.tx1 != 0 and self.tx2 != 0

    # receive ---------------------------------------------------------------------------
    def ei_receive(self) -> int:
        num_rx_pages = self.stop_page - self.rx_start_page
        got = 0
        for _ in range(9):
            self.outb(E8390_NODMA + E8390_PAGE1, CMD)
            rxing_page = self.inb(EN1_CURPAG)
            self.outb(E8390_NODMA + E8390_PAGE0, CMD)
            this_frame = self.inb(EN0_BOUNDARY) + 1
            if this_frame >= self.stop_page:
                this_frame = self.rx_start_page
            if this_frame != self.current_page and (this_frame != 0 or rxing_page != 0xFF):
                self.log(f"mismatched read page pointers {this_frame:2x} vs {self.current_page:2x}")
                self.stats["mismatched_pointers"] += 1
            if this_frame == rxing_page:
                break
            current_offset = this_frame << 8
            status, nxt, count = self.get_hdr(this_frame)
            pkt_len = count - 4
            next_frame = this_frame + 1 + ((pkt_len + 4) >> 8)
            if nxt not in (next_frame, next_frame + 1, next_frame - num_rx_pages, next_frame + 1 - num_rx_pages):
                self.current_page = self.rx_start_page
                self.outb(self.current_page - 1, EN0_BOUNDARY)
                self.stats["rx_errors"] += 1
                self.stats["rx_frame_next_errors"] += 1
                continue
            if pkt_len < 60 or pkt_len > 1518:
                self.log(f"bogus packet size: {pkt_len}, status={status:#x} nxpg={nxt:#x}")
                self.stats["rx_errors"] += 1
                self.stats["rx_length_errors"] += 1
            elif status & 0x0F == ENRSR_RXOK:
                data = self.block_input(pkt_len, current_offset + 4)
                self.stats["rx_packets"] += 1
                self.stats["rx_bytes"] += pkt_len
                if self.on_receive is not None:
                    self.on_receive(data)
                else:
                    self.received.append(data)
                got += 1
            else:
                self.stats["rx_errors"] += 1
            next_frame = nxt
            if next_frame >= self.stop_page:
                self.log(f"next frame inconsistency, {next_frame:#x}")
                next_frame = self.rx_start_page
            self.current_page = next_frame
            self.outb(next_frame - 1, EN0_BOUNDARY)
        self.outb(ENISR_RX + ENISR_RX_ERR, EN0_ISR)
        return got

    def rx_overrun(self) -> None:
        was_txing = self.inb(CMD) & E8390_TRANS
        self.outb(E8390_NODMA + E8390_PAGE0 + E8390_STOP, CMD)
        self.stats["rx_over_errors"] += 1
        if self.mdelay is not None:
            self.mdelay(10)
        self.outb(0x00, EN0_RCNTLO)
        self.outb(0x00, EN0_RCNTHI)
        must_resend = bool(was_txing) and not self.inb(EN0_ISR) & (ENISR_TX + ENISR_TX_ERR)
        self.outb(E8390_TXOFF, EN0_TXCR)
        self.outb(E8390_NODMA + E8390_PAGE0 + E8390_START, CMD)
        self.ei_receive()
        self.outb(ENISR_OVER, EN0_ISR)
        self.outb(E8390_TXCONFIG, EN0_TXCR)
        if must_resend:
            self.outb(E8390_NODMA + E8390_PAGE0 + E8390_START + E8390_TRANS, CMD)

    # interrupts ------------------------------------------------------------------------
    def interrupt(self) -> int:
        """``__ei_interrupt``: service until ISR is clear; returns the passes made."""
        self.outb(E8390_NODMA + E8390_PAGE0, CMD)
        passes = 0
        interrupts = 0
        while True:
            interrupts = self.inb(EN0_ISR)
            if not interrupts:
                break
            passes += 1
            if passes >= MAX_SERVICE:
                break
            if not self.running:
                self.outb(interrupts, EN0_ISR)
                interrupts = 0
                break
            if interrupts & ENISR_OVER:
                self.rx_overrun()
            elif interrupts & (ENISR_RX + ENISR_RX_ERR):
                self.ei_receive()
            if interrupts & ENISR_TX:
                self._tx_intr()
            elif interrupts & ENISR_TX_ERR:
                self.outb(ENISR_TX_ERR, EN0_ISR)
                self.stats["tx_errors"] += 1
            if interrupts & ENISR_COUNTERS:
                self.stats["rx_frame_errors"] += self.inb(EN0_COUNTER0)
                self.stats["rx_crc_errors"] += self.inb(EN0_COUNTER1)
                self.stats["rx_missed_errors"] += self.inb(EN0_COUNTER2)
                self.outb(ENISR_COUNTERS, EN0_ISR)
            if interrupts & ENISR_RDC:
                self.outb(ENISR_RDC, EN0_ISR)
            self.outb(E8390_NODMA + E8390_PAGE0 + E8390_START, CMD)
        if interrupts and passes >= MAX_SERVICE:
            if interrupts != 0xFF:
                self.log(f"Too much work at interrupt, status {interrupts:#04x}")
            self.outb(ENISR_ALL, EN0_ISR)
        return passes

    def poll(self) -> bool:
        """Run the interrupt handler if the card asserts its interrupt; True if it did."""
        if self.irq_pending is not None and not self.irq_pending():
            return False
        self.interrupt()
        return True

    def read_counters(self) -> None:
        """``ei_get_stats``: fold the tally counters into the statistics."""
        self.outb(E8390_NODMA + E8390_PAGE0, CMD)
        self.stats["rx_frame_errors"] += self.inb(EN0_COUNTER0)
        self.stats["rx_crc_errors"] += self.inb(EN0_COUNTER1)
        self.stats["rx_missed_errors"] += self.inb(EN0_COUNTER2)
