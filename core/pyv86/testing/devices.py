"""``test-nic``: the smallest NIC, for testing network backends and machine files.

It has no registers: a test calls :meth:`TestNic.transmit` to send a frame through the
device's netdev and reads :attr:`TestNicState.received` for frames the backend delivered.
Load it with ``-p pyv86.testing.plugin`` on the command line or
``pyv86_plugins.register_module(pyv86.testing.plugin, "pyv86.testing")`` in a test.
"""
from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, ClassVar

import attrs

from pyv86.devices.base import Device

if TYPE_CHECKING:
    from pyv86.machine import Machine

log = logging.getLogger(__name__)

MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
MAX_KEPT = 64


def _check_mac(_inst: object, _attr: attrs.Attribute, value: str) -> None:
    if not MAC_RE.match(value):
        raise ValueError(f"mac {value!r} is not a MAC address (six hex pairs, e.g. 52:54:00:12:34:56)")
    if int(value[:2], 16) & 1:
        raise ValueError(f"mac {value!r} is a multicast address (the first byte must be even)")


@attrs.define(frozen=True)
class TestNicConfig:
    mac: str = attrs.field(default="52:54:00:12:34:56", validator=_check_mac,
                           metadata={"help": "the NIC's MAC address"})


@attrs.define
class TestNicState:
    VERSION: ClassVar[int] = 1
    received: list[bytes] = attrs.field(factory=list)  # newest last, at most MAX_KEPT
    sent: int = 0
    dropped: int = 0


class TestNic(Device):
    """A NIC with no registers, driven by the test."""

    __test__ = False  # not a pytest test class
    kind = "test-nic"
    config_cls = TestNicConfig
    state_cls = TestNicState
    uses_netdev = True
    description = "test NIC: transmit() sends a frame, state.received collects arrivals"

    netdev_id: str | None = None
    state: TestNicState

    def realize(self, machine: Machine) -> None:
        super().realize(machine)
        if self.netdev_id is not None:
            machine.netdevs[self.netdev_id].set_receiver(self._receive)

    def unrealize(self) -> None:
        if self.machine is not None and self.netdev_id is not None:
            self.machine.netdevs[self.netdev_id].set_receiver(None)

    @property
    def mac(self) -> bytes:
        return bytes.fromhex(self.config.mac.replace(":", ""))

    def transmit(self, frame: bytes) -> None:
        if self.machine is None or self.netdev_id is None:
            raise RuntimeError(f"{self.id}: not realized or no netdev")
        self.state.sent += 1
        self.machine.netdevs[self.netdev_id].send(bytes(frame))

    def _receive(self, frame: bytes) -> None:
        received = self.state.received
        received.append(bytes(frame))
        if len(received) > MAX_KEPT:
            del received[0]
            self.state.dropped += 1
