"""Helpers for the ne2k-pci tests: machines without a CPU, a register-level accessor, ring reader.

Imported by the test modules as ``ne2k_testlib`` (a distinct name, so it never clashes with
another test folder's helpers); :mod:`conftest` exposes the fixtures.
"""
from __future__ import annotations

import itertools
import os
import tomllib
from typing import Iterator

import pytest

from pyv86.config import parse_machine_config
from pyv86.machine import Machine
from pyv86.plugins.manager import PluginManager, create_plugin_manager
from pyv86.testing.net import LoopbackNet, LoopbackPlugin
from pyv86_ne2k import plugin as ne2k_plugin
from pyv86_ne2k.pci import Ne2kPci

_hub_names = itertools.count()


def unique_hub(prefix: str = "t") -> str:
    """A hub name no other test (or concurrent run) uses."""
    return f"{prefix}{os.getpid()}x{next(_hub_names)}"


class Regs:
    """Port access relative to the NIC's I/O base, named like the datasheet."""

    def __init__(self, machine: Machine, nic: Ne2kPci) -> None:
        self.machine = machine
        self.nic = nic

    @property
    def base(self) -> int:
        base = self.nic.io_base
        assert base is not None, "BAR0 is not decoded"
        return base

    def inb(self, off: int) -> int:
        return self.machine.ports.read(self.base + off, 1)

    def inw(self, off: int) -> int:
        return self.machine.ports.read(self.base + off, 2)

    def inl(self, off: int) -> int:
        return self.machine.ports.read(self.base + off, 4)

    def outb(self, off: int, value: int) -> None:
        self.machine.ports.write(self.base + off, 1, value)

    def outw(self, off: int, value: int) -> None:
        self.machine.ports.write(self.base + off, 2, value)

    def outl(self, off: int, value: int) -> None:
        self.machine.ports.write(self.base + off, 4, value)

    def page(self, n: int, run: int = 0x20) -> None:
        """Select register page ``n`` keeping the run state (CR = no-DMA | page)."""
        self.outb(0, (n << 6) | run)

    def rd(self, page: int, off: int) -> int:
        """Read a register of ``page`` (no-DMA commands; the run state and page come back)."""
        cr = self.inb(0)
        self.outb(0, 0x20 | page << 6)
        value = self.inb(off)
        self.outb(0, 0x20 | (cr & 0xC0))
        return value

    def wr(self, page: int, off: int, value: int) -> None:
        cr = self.inb(0)
        self.outb(0, 0x20 | page << 6)
        self.outb(off, value)
        self.outb(0, 0x20 | (cr & 0xC0))

    def remote(self, addr: int, count: int, cmd: int) -> None:
        self.outb(0x0A, count & 0xFF)
        self.outb(0x0B, count >> 8)
        self.outb(0x08, addr & 0xFF)
        self.outb(0x09, addr >> 8)
        self.outb(0, cmd)

    def write_mem(self, addr: int, data: bytes) -> None:
        """Remote-write ``data`` in byte mode (DCR.WTS left as it is)."""
        self.remote(addr, len(data), 0x12)
        for b in data:
            self.outb(0x10, b)
        self.outb(0x07, 0x40)

    def read_mem(self, addr: int, count: int) -> bytes:
        dcr = self.rd(2, 0x0E)
        self.outb(0x0E, dcr & ~1)
        self.remote(addr, count, 0x0A)
        data = bytes(self.inb(0x10) for _ in range(count))
        self.outb(0x0E, dcr)
        self.outb(0x07, 0x40)
        return data

    def start_receiver(self, pstart: int = 0x4C, pstop: int = 0x80, rcr: int = 0x04,
                       par: bytes | None = None) -> None:
        """A Linux-like init: ring PSTART..PSTOP, BNRY = PSTOP-1, CURR = PSTART, started."""
        self.outb(0, 0x21)
        self.outb(0x0E, 0x49)
        self.outb(0x01, pstart)
        self.outb(0x02, pstop)
        self.outb(0x03, pstop - 1)
        self.outb(0x07, 0xFF)
        self.outb(0, 0x61)
        for i, b in enumerate(par if par is not None else self.nic.wire_mac):
            self.outb(1 + i, b)
        self.outb(0x07, pstart)
        self.outb(0, 0x22)
        self.outb(0x0D, 0x00)
        self.outb(0x0C, rcr)


def make_plugins(loopback: LoopbackNet | None = None) -> PluginManager:
    plugins = create_plugin_manager(autoload=False, load=None, environ={})
    plugins.register_module(ne2k_plugin, "ne2k")
    if loopback is not None:
        plugins.register_module(LoopbackPlugin(loopback), "loopback")
    plugins.collect()
    return plugins


def build_machine(text: str, plugins: PluginManager) -> Machine:
    data = tomllib.loads(text)
    data.setdefault("version", 1)
    config = parse_machine_config(data, "<ne2k-test>", text, plugins=plugins)
    return Machine.from_config(config, plugins)


NIC_TEXT = """version = 1
name = "{name}"
[machine]
memory = "2M"
cpu = false
clock = "virtual"
[netdev.lan]
url = "{url}"
[device.net0]
type = "ne2k-pci"
netdev = "lan"
{options}
"""


@pytest.fixture
def wire() -> LoopbackNet:
    return LoopbackNet("wire")


@pytest.fixture
def machine(wire: LoopbackNet) -> Iterator[Machine]:
    m = build_machine(NIC_TEXT.format(name="m", url="loopback:", options='mac = "00:22:15:aa:bb:cc"'),
                      make_plugins(wire))
    yield m
    m.shutdown("test")


@pytest.fixture
def nic(machine: Machine) -> Ne2kPci:
    return machine.devices["net0"]  # type: ignore[return-value]


@pytest.fixture
def regs(machine: Machine, nic: Ne2kPci) -> Regs:
    return Regs(machine, nic)


MAC = bytes.fromhex("002215aabbcc")
OTHER = bytes.fromhex("525400123456")


def frame_to(dst: bytes, length: int = 60, src: bytes = OTHER, ethertype: int = 0x0800,
             fill: int | None = None) -> bytes:
    """A frame of ``length`` bytes; the payload is a counter pattern (or ``fill``)."""
    head = dst + src + ethertype.to_bytes(2, "big")
    body_len = max(0, length - 14)
    if fill is None:
        body = bytes((i * 7 + length) & 0xFF for i in range(body_len))
    else:
        body = bytes([fill]) * body_len
    return (head + body)[:length]

def ring_read(regs: Regs, page: int) -> tuple[tuple[int, int, int], bytes]:
    """Read one frame the way lib8390's ei_receive does: 4-byte header, then a payload read
    that may run across PSTOP (relying on the remote-DMA wrap)."""
    regs.outb(0x0E, 0x49)
    regs.remote(page << 8, 4, 0x0A)
    word = regs.inl(0x10)
    status, nxt, count = word & 0xFF, (word >> 8) & 0xFF, word >> 16
    length = count - 4
    regs.remote((page << 8) + 4, length, 0x0A)
    data = regs.machine.port_read_string(regs.base + 0x10, 4, length >> 2)
    if length & 2:
        data += regs.inw(0x10).to_bytes(2, "little")
    if length & 1:
        data += bytes((regs.inb(0x10),))
    regs.outb(0x07, 0x40)
    return (status, nxt, count), data


def upload(regs: Regs, data: bytes, page: int = 0x40) -> None:
    regs.outb(0x0E, 0x49)
    regs.remote(page << 8, len(data) + (len(data) & 1), 0x12)
    padded = data + b"\0" * (len(data) & 1)
    for i in range(0, len(padded), 2):
        regs.outw(0x10, int.from_bytes(padded[i : i + 2], "little"))
    regs.outb(0x07, 0x40)


def transmit(regs: Regs, length: int, page: int = 0x40) -> None:
    regs.outb(0x00, 0x22)
    regs.outb(0x05, length & 0xFF)
    regs.outb(0x06, length >> 8)
    regs.outb(0x04, page)
    regs.outb(0x00, 0x26)
