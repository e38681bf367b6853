"""pyv86_postcard: a POST-code card, the example of an out-of-tree pyv86 plugin.

PC firmware and some kernels write progress codes to an I/O port (0x80 on most PCs) so a
diagnostic card can show where a boot stopped. This device decodes one such port and
remembers the last code, how many were written and the most recent ones. Reads return the
last code, as many real cards do.

Machine file::

    [device.post]
    type = "postcard"
    port = 0x80          # the I/O port to decode (default 0x80)
    history = 16         # how many recent codes to keep (1..256)
    stop_on = 0xfe       # optional: stop the machine when the guest writes this code

``docs/writing-plugins.md`` in the pyv86 repository walks through this file.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, ClassVar

import attrs

from pyv86 import hookimpl
from pyv86.devices import Device, DeviceRegistry

if TYPE_CHECKING:
    from pyv86.machine import Machine

__version__ = "0.1.0"

log = logging.getLogger(__name__)


def _check_port(_inst: object, _attr: attrs.Attribute, value: int) -> None:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"port {value:#x} is not an I/O port (0..0xffff)")


def _check_history(_inst: object, _attr: attrs.Attribute, value: int) -> None:
    if not 1 <= value <= 256:
        raise ValueError(f"history {value} is out of range (1..256)")


def _check_code(_inst: object, _attr: attrs.Attribute, value: int | None) -> None:
    if value is not None and not 0 <= value <= 0xFF:
        raise ValueError(f"stop_on {value:#x} is not a byte (0..0xff)")


@attrs.define(frozen=True)
class PostCardConfig:
    """What a ``[device.<id>] type = "postcard"`` table may set."""

    port: int = attrs.field(default=0x80, validator=_check_port,
                            metadata={"help": "I/O port the card decodes"})
    history: int = attrs.field(default=16, validator=_check_history,
                               metadata={"help": "how many recent codes to remember (1..256)"})
    stop_on: int | None = attrs.field(default=None, validator=_check_code,
                                      metadata={"help": "stop the machine when the guest writes this code"})


@attrs.define
class PostCardState:
    """What the guest can observe, and all a state image stores."""

    VERSION: ClassVar[int] = 1
    last_code: int = 0xFF
    writes: int = 0
    recent: list[int] = attrs.field(factory=list)  # oldest first, at most config.history long


class PostCard(Device):
    """One byte-wide port; writes are POST codes, reads return the last one."""

    kind = "postcard"
    config_cls = PostCardConfig
    state_cls = PostCardState
    description = "POST-code card: records the progress codes the guest writes to a port"

    config: PostCardConfig
    state: PostCardState

    def realize(self, machine: Machine) -> None:
        super().realize(machine)
        # one port, byte handlers: wider accesses are split into bytes by the bus
        self._region = machine.ports.map(self.config.port, 1, self.io_read, self.io_write,
                                         owner=self, sizes=(1,))

    def unrealize(self) -> None:
        if self.machine is not None:
            self.machine.ports.unmap_owner(self)

    def io_read(self, offset: int, size: int) -> int:
        return self.state.last_code

    def io_write(self, offset: int, size: int, value: int) -> None:
        code = value & 0xFF
        state = self.state
        state.last_code = code
        state.writes += 1
        state.recent.append(code)
        if len(state.recent) > self.config.history:
            del state.recent[: len(state.recent) - self.config.history]
        log.debug("%s: POST code %#04x", self.id, code)
        if self.config.stop_on is not None and code == self.config.stop_on and self.machine is not None:
            self.machine.stop(f"postcard {self.id}: code {code:#04x}")

    def restore(self, state: PostCardState) -> None:
        # trust nothing from an image: keep the invariants a guest could not break
        state.last_code &= 0xFF
        state.recent = [c & 0xFF for c in state.recent][-self.config.history :]
        self.state = state


@hookimpl
def pyv86_register_devices(registry: DeviceRegistry) -> None:
    registry.add(PostCard)


@hookimpl
def pyv86_machine_stopped(machine: Machine, reason: str) -> None:
    for card in machine.devices_of(PostCard):
        if card.state.writes:
            log.info("%s: last POST code %#04x after %d writes (machine stopped: %s)",
                     card.id, card.state.last_code, card.state.writes, reason)
