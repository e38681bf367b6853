"""An address range claimed by a device on a bus, shared by the port and MMIO buses."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from attrs import define, field

if TYPE_CHECKING:
    from pyv86.bus.window import RegisterWindow

ReadHandler = Callable[[int, int], int]
"""``read(offset, size) -> value``: offset is relative to the region base; size is 1, 2 or 4."""
WriteHandler = Callable[[int, int, int], None]
"""``write(offset, size, value)``: offset is relative to the region base; size is 1, 2 or 4."""
ReadStringHandler = Callable[[int, int, int], bytes]
"""``read_string(offset, size, count) -> bytes``: ``rep ins`` of ``count`` units in one call (optional)."""
WriteStringHandler = Callable[[int, int, bytes], None]
"""``write_string(offset, size, data)``: ``rep outs`` of ``len(data) // size`` units in one call (optional)."""

MASKS = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF, 8: 0xFFFFFFFFFFFFFFFF}


@define(eq=False)
class Region:
    base: int
    length: int
    read: ReadHandler | None
    write: WriteHandler | None
    owner: object
    name: str
    sizes: frozenset[int]
    read_string: ReadStringHandler | None = None
    write_string: WriteStringHandler | None = None
    window: RegisterWindow | None = None
    """Byte registers the CPU may serve itself (port regions only; see :mod:`pyv86.bus.window`)."""
    end: int = field(init=False)
    """``base + length``: a field, not a property, because every bus access reads it."""

    def __attrs_post_init__(self) -> None:
        self.end = self.base + self.length

    def describe(self) -> str:
        return f"{self.name} [{self.base:#x}-{self.end - 1:#x}]"


def owner_name(owner: object) -> str:
    return str(getattr(owner, "id", None) or getattr(owner, "name", None) or type(owner).__name__)
