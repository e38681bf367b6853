"""``ne2k-pci``: the Realtek RTL8029 PCI function (10EC:8029) around the DP8390 core.

Defaults match v86: device 00:05.0, class 0x020000 (Ethernet), one I/O BAR of 32 bytes
(``io_size = 256`` gives QEMU's size), INTA. The interrupt is level-triggered through
:meth:`pyv86.pci.PciFunction.set_irq`. The MAC comes from the machine file (``mac``) or is
random in v86's 00:22:15 OUI; it is the *wire* MAC, written into the PROM and PAR at
power-on. The NIC reaches its backend only through a :class:`pyv86.net.port.NicPort`
(``device.port``): inject frames, observe them, or put a MAC translator in
``device.port.filters``.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, ClassVar

import attrs

from pyv86.devices.base import Device
from pyv86.errors import ConfigError, StateError
from pyv86.net.frame import mac_str, parse_unicast_mac, random_mac
from pyv86.net.port import DEFAULT_QUEUE_FRAMES, NicPort
from pyv86.pci import PciFunction
from pyv86_ne2k.dp8390 import Dp8390, Dp8390State

if TYPE_CHECKING:
    from pyv86.machine import Machine

log = logging.getLogger(__name__)

VENDOR_REALTEK = 0x10EC
DEVICE_RTL8029 = 0x8029
CLASS_ETHERNET = 0x020000
DEFAULT_SLOT = 5


def _check_mac(_inst: object, _attr: attrs.Attribute, value: str | None) -> None:
    if value is None:
        return
    try:
        parse_unicast_mac(value)
    except ValueError:
        if isinstance(value, str) and len(value.replace("-", ":").split(":")) == 6:
            try:
                first = int(value[:2], 16)
            except ValueError:
                first = 0
            if first & 1:
                raise ValueError(f"mac {value!r} is a multicast address (the first byte must be even)") from None
        raise ValueError(f"mac {value!r} is not a MAC address (six hex pairs, e.g. 00:22:15:12:34:56)") from None


def _check_slot(_inst: object, _attr: attrs.Attribute, value: int) -> None:
    if not 1 <= value <= 31:
        raise ValueError(f"slot {value} is not a PCI device number (1..31; 0 is the host bridge)")


def _check_io_size(_inst: object, _attr: attrs.Attribute, value: int) -> None:
    if value not in (32, 64, 128, 256):
        raise ValueError(f"io_size {value} must be 32 (RTL8029), 64, 128 or 256 (QEMU)")


def _check_queue(_inst: object, _attr: attrs.Attribute, value: int) -> None:
    if not 0 <= value <= 4096:
        raise ValueError(f"rx_queue {value} must be 0..4096 frames")


@attrs.define(frozen=True)
class Ne2kConfig:
    mac: str | None = attrs.field(default=None, validator=_check_mac, metadata={
        "help": "MAC address \"aa:bb:cc:dd:ee:ff\" (unicast); default: random in v86's 00:22:15 OUI"})
    slot: int = attrs.field(default=DEFAULT_SLOT, validator=_check_slot, metadata={
        "help": "PCI device number on bus 0 (5 gives 00:05.0, as in v86)"})
    io_size: int = attrs.field(default=32, validator=_check_io_size, metadata={
        "help": "size of the I/O BAR in bytes: 32 (RTL8029) or 256 (QEMU)"})
    rx_queue: int = attrs.field(default=DEFAULT_QUEUE_FRAMES, validator=_check_queue, metadata={
        "help": "frames the host keeps while the guest's receive ring is full (then they are "
                "dropped and counted in CNTR2)"})


@attrs.define
class Ne2kPciState(Dp8390State):
    """The chip's state plus this function's PCI configuration space (256 bytes, or empty)."""

    VERSION: ClassVar[int] = 1
    pci_config: bytes = b""


class Ne2kPci(Device):
    """An RTL8029 (NE2000-compatible) PCI Ethernet card."""

    kind = "ne2k-pci"
    config_cls = Ne2kConfig
    state_cls = Ne2kPciState
    uses_netdev = True
    description = "RTL8029 / NE2000-compatible PCI Ethernet card (Linux driver ne2k-pci)"

    netdev_id: str | None = None
    config: Ne2kConfig
    state: Ne2kPciState

    def __init__(self, id: str, config: Ne2kConfig | None = None) -> None:
        super().__init__(id, config)
        mac = parse_unicast_mac(self.config.mac) if self.config.mac else random_mac()
        self.port = NicPort(id, self._receive, queue_frames=self.config.rx_queue)
        self.chip = Dp8390(f"{self.kind}/{id}", mac, state_cls=Ne2kPciState)
        self.chip.transmit = self.port.transmit
        self.chip.rx_space = self.port.rx_space
        self.chip.rx_flush = self.port.clear_queue
        self.port._on_missed = self.chip.missed
        self.state = self.chip.state  # type: ignore[assignment]
        self.function: PciFunction | None = None

    def _receive(self, frame: bytes):  # indirection: the chip object may be replaced in tests
        return self.chip.receive(frame)

    # lifecycle -------------------------------------------------------------------
    def realize(self, machine: Machine) -> None:
        super().realize(machine)
        fn = PciFunction(f"{self.kind}/{self.id}", VENDOR_REALTEK, DEVICE_RTL8029, CLASS_ETHERNET,
                         subsystem_vendor_id=VENDOR_REALTEK, subsystem_id=DEVICE_RTL8029,
                         interrupt_pin=1)
        fn.add_io_bar(0, self.config.io_size, self.chip.io_read, self.chip.io_write,
                      name=f"{self.id}.io", read_string=self.chip.io_read_string,
                      write_string=self.chip.io_write_string, window=self.chip.window)
        try:
            machine.pci.attach(fn, self.config.slot)
        except ValueError as exc:
            raise ConfigError(f"device.{self.id}.slot: {exc}") from None
        self.function = fn
        self.chip.set_irq = fn.set_irq
        if self.netdev_id is not None:
            backend = machine.netdevs.get(self.netdev_id)
            if backend is None:
                raise ConfigError(f"device.{self.id}.netdev: netdev {self.netdev_id!r} is not open")
            self.port.attach(backend)
        log.info("%s: RTL8029 at 00:%02x.0, MAC %s%s", self.id, self.config.slot, mac_str(self.wire_mac),
                 f", netdev {self.netdev_id}" if self.netdev_id else ", no netdev")

    def reset(self) -> None:
        self.chip.power_on()
        self.state = self.chip.state  # type: ignore[assignment]

    def unrealize(self) -> None:
        self.port.detach()
        if self.function is not None and self.machine is not None:
            self.machine.pci.detach(self.function)
            self.function = None

    # state images ------------------------------------------------------------------
    def save(self) -> Ne2kPciState:
        state = self.chip.snapshot()
        if self.function is not None:
            state.pci_config = self.function.save()
        return state  # type: ignore[return-value]

    def restore(self, state: Ne2kPciState) -> None:
        if not isinstance(state, Dp8390State):
            raise StateError(f"{self.kind}/{self.id}: expected a {self.state_cls.__name__}, "
                             f"got {type(state).__name__}")
        pci_config = bytes(getattr(state, "pci_config", b""))
        if pci_config and len(pci_config) != 256:
            raise StateError(f"{self.kind}/{self.id}: pci_config must be 256 bytes, got {len(pci_config)}")
        if not isinstance(state, Ne2kPciState):
            state = Ne2kPciState(**attrs.asdict(state, recurse=False))
        self.chip.load_state(state)
        self.state = self.chip.state  # type: ignore[assignment]
        if pci_config and self.function is not None:
            self.function.restore(pci_config)
        self.port.rx_space()

    # the network side --------------------------------------------------------------
    @property
    def wire_mac(self) -> bytes:
        """The MAC this NIC has on the network (PROM at power-on)."""
        return self.chip.state.wire_mac

    @wire_mac.setter
    def wire_mac(self, mac: bytes) -> None:
        if len(mac) != 6 or mac[0] & 1:
            raise ValueError(f"{self.id}: wire MAC must be 6 bytes, unicast")
        self.chip.state.wire_mac = bytes(mac)

    @property
    def guest_mac(self) -> bytes:
        """The MAC the guest programmed into PAR (what its frames carry)."""
        return self.chip.state.par

    @property
    def irq_level(self) -> bool:
        return self.chip.irq_level

    @property
    def io_base(self) -> int | None:
        """Where the guest (or firmware) put BAR0, or None while it is not decoded."""
        if self.function is None:
            return None
        return self.function.bars[0].mapped_at
