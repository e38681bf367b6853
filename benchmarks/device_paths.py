"""The Python cost of the port accesses a Linux guest's network path still makes.

    python benchmarks/device_paths.py [--json]

Builds a CPU-less PC with an NE2000 (no guest), programs the chip as Linux's ne2k-pci does,
and times, through the port bus as the CPU's callback would reach it, each kind of access
that is *not* served by a register window: NE2000 commands, ISR/IMR writes, the data port,
and one whole interrupt's worth of 8259 work (raise IRQ 10, INTA, mask, mask read, two EOIs,
lower, unmask). The peer is an access to an unassigned port (the bus alone), timed in the
same process, so ratios survive the machine's speed changes. Figures are warm-cache: in a
running guest each access costs 2-4 times more.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import timeit

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "..", "core"), os.path.join(HERE, "..", "plugins", "ne2k"),
                os.path.join(HERE, "..", "plugins", "ne2k", "tests")]


def build():
    from ne2k_testlib import NIC_TEXT, LoopbackNet, Regs, build_machine, make_plugins
    from pyv86.platform.pc import add_pc_platform

    machine = build_machine(NIC_TEXT.format(name="bench", url="loopback:", options='mac = "00:22:15:aa:bb:cc"'),
                            make_plugins(LoopbackNet("bench")))
    if "pic" not in machine.devices:
        add_pc_platform(machine)
    nic = machine.devices["net0"]
    regs = Regs(machine, nic)
    # what ne2k-pci's open does: stop, DCR, RCR, ring, PAR, CURR, start, IMR
    for off, value in ((0, 0x21), (0x0E, 0x49), (0x0A, 0), (0x0B, 0), (0x0C, 0x04), (0x0D, 0), (1, 0x4C),
                       (2, 0x80), (3, 0x4C), (0, 0x61), (7, 0x4D), (0, 0x22), (7, 0xFF), (0x0F, 0x3F)):
        regs.outb(off, value)
    for port, value in ((0x20, 0x11), (0x21, 0x30), (0x21, 0x04), (0x21, 0x01),
                        (0xA0, 0x11), (0xA1, 0x38), (0xA1, 0x02), (0xA1, 0x01), (0x21, 0), (0xA1, 0)):
        machine.ports.write(port, 1, value)
    return machine, nic.io_base


def cases(machine, base):
    write, read = machine.ports.write, machine.ports.read
    irq10 = machine.irqs[10].source("bench")
    frame = bytes(1512)

    def interrupt():
        irq10.set(True)
        machine.interrupt_ack()
        write(0xA1, 1, 0x04)
        read(0xA1, 1)
        write(0xA0, 1, 0x62)
        write(0x20, 1, 0x62)
        irq10.set(False)
        write(0xA1, 1, 0x00)

    return {
        "peer: unassigned port write": lambda: write(0x3E0, 1, 0),
        "NE2000 IMR write": lambda: write(base + 0x0F, 1, 0x3F),
        "NE2000 ISR acknowledge": lambda: write(base + 0x07, 1, 0x02),
        "NE2000 command (remote write)": lambda: write(base, 1, 0x12),
        "NE2000 outsl of 1512 bytes": lambda: machine.ports.write_string(base + 0x10, 4, frame),
        "NE2000 outw": lambda: write(base + 0x10, 2, 0x1234),
        "8259: one interrupt (8 operations)": interrupt,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--number", type=int, default=20000, help="calls per timing (best of 5)")
    args = parser.parse_args(argv)
    machine, base = build()
    out = {}
    for name, fn in cases(machine, base).items():
        out[name] = min(timeit.repeat(fn, number=args.number, repeat=5)) / args.number * 1e6
    peer = out["peer: unassigned port write"]
    if args.json:
        print(json.dumps({"benchmark": "device_paths", "us": out, "ratio_vs_peer": {
            name: round(us / peer, 2) for name, us in out.items()}}))
    else:
        for name, us in out.items():
            print(f"{name:38s} {us:6.2f} us   x{us / peer:5.1f} the peer")
    machine.shutdown("benchmark")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
