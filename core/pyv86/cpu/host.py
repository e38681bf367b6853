"""The boundary between the CPU and the machine kernel."""
from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class CpuHost(Protocol):
    """What the CPU calls synchronously from inside :meth:`CPU.run`.

    * ``port_read(port, size)`` / ``port_write(port, size, value)``: ``size`` in bytes 1/2/4.
    * ``port_read_string(port, size, count)`` returns ``count*size`` bytes for ``rep ins``;
      ``port_write_string(port, size, data)`` receives the bytes of ``rep outs``.  A whole
      page-bounded chunk of a ``rep ins/outs`` (DF=0, RAM destination) is one call.
    * ``mmio_read(addr, size)`` / ``mmio_write(addr, size, value)``: physical addresses at or
      above the RAM size.  Accesses complete synchronously (never restarted).
    * ``interrupt_ack()``: called when the CPU accepts INTR (IF=1, no interrupt shadow);
      returns the vector or None (spurious: nothing is delivered).
    """

    def port_read(self, port: int, size: int) -> int: ...
    def port_write(self, port: int, size: int, value: int) -> None: ...
    def port_read_string(self, port: int, size: int, count: int) -> bytes: ...
    def port_write_string(self, port: int, size: int, data: bytes) -> None: ...
    def mmio_read(self, addr: int, size: int) -> int: ...
    def mmio_write(self, addr: int, size: int, value: int) -> None: ...
    def interrupt_ack(self) -> int | None: ...
