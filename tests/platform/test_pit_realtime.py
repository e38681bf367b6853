"""Channel 0 one-shots (Linux's clockevent) are never lost, whatever the clock does.

Regression tests for the realtime-mode boot hang: Linux programs the PIT in mode 4 with
short counts (``pit_next_event``: count 15 = 12.6 us is its minimum) and halts until IRQ 0.
A realtime clock moves between any two reads; the one-shot used to be judged "already
over" and dropped when it had moved past the terminal count, and the guest slept forever.
"""
from __future__ import annotations

import pytest

from pyv86.clock import Clock, Scheduler
from pyv86.machine import Machine
from pyv86.platform.pc import add_pc_platform
from pyv86.platform.pit import PitState
from pyv86.state.fields import upgrade_fields
from pyv86.testing.realmode import start_real_mode

US = 1_000


class ScriptedHost:
    """A host monotonic clock that moves ``step`` ns at every read, plus explicit jumps."""

    def __init__(self, step: int = 0) -> None:
        self.t = 1_000_000_000
        self.step = step

    def __call__(self) -> int:
        self.t += self.step
        return self.t


def realtime_pc(host: ScriptedHost) -> Machine:
    machine = Machine(16 << 20, clock_mode="realtime")
    machine.clock = Clock("realtime", host_ns=host)
    machine.scheduler = Scheduler(machine.clock)
    add_pc_platform(machine)
    machine.realize()
    # Linux's init_8259A: vectors 0x30/0x38, cascade on IR2; then IRQ 0 unmasked
    for port, value in ((0x20, 0x11), (0x21, 0x30), (0x21, 0x04), (0x21, 0x01),
                        (0xA0, 0x11), (0xA1, 0x38), (0xA1, 0x02), (0xA1, 0x01),
                        (0x21, 0xFE), (0xA1, 0xFF)):
        machine.ports.outb(port, value)
    return machine


def pit_set_oneshot(machine: Machine) -> None:
    machine.ports.outb(0x43, 0x38)  # channel 0, LSB then MSB, mode 4


def pit_next_event(machine: Machine, delta: int) -> None:
    machine.ports.outb(0x40, delta & 0xFF)
    machine.ports.outb(0x40, delta >> 8)


def run_briefly(machine: Machine) -> None:
    machine.run(until_ns=machine.clock.now + 1_000_000, timeout_s=2)


def test_short_oneshot_fires_when_the_clock_moves_during_the_write():
    host = ScriptedHost(step=20 * US)  # every read of the host clock is 20 us later
    machine = realtime_pc(host)
    pic = machine.devices["pic"]
    pit_set_oneshot(machine)
    pit_next_event(machine, 15)  # 12.6 us: over before the PIT looks at the clock again
    assert machine.devices["pit"]._timer.armed
    run_briefly(machine)
    assert pic.intr
    assert pic.acknowledge() == 0x30


def test_oneshot_the_clock_jumped_over_fires_at_once():
    host = ScriptedHost()
    machine = realtime_pc(host)
    pic = machine.devices["pic"]
    pit_set_oneshot(machine)
    pit_next_event(machine, 1193)  # 1 ms
    host.t += 50_000_000  # the host stalls for 50 ms before the machine looks again
    machine.scheduler.run_due()
    assert pic.intr
    assert pic.acknowledge() == 0x30


def test_linux_like_oneshot_loop_keeps_ticking_in_realtime_mode():
    """Reprogram from every IRQ 0 (as the clockevent handler does) with the minimum delta."""
    host = ScriptedHost(step=15 * US)  # the PIT looks again after its 12.6 us are over
    machine = realtime_pc(host)
    pic = machine.devices["pic"]
    ticks = []

    def deliver_and_reprogram() -> None:
        if pic.intr:
            ticks.append(pic.acknowledge())
            machine.ports.outb(0x20, 0x20)  # EOI
            pit_next_event(machine, 15)

    pic_set_irq = pic.set_irq
    pic.set_irq = lambda line, level: (pic_set_irq(line, level), machine.call_soon_threadsafe(
        deliver_and_reprogram) if line == 0 and level else None)
    pit_set_oneshot(machine)
    pit_next_event(machine, 15)
    machine.run(until_ns=machine.clock.now + 20_000_000, timeout_s=5)
    assert len(ticks) >= 50
    assert set(ticks) == {0x30}


def test_second_oneshot_written_while_one_is_pending_replaces_it():
    host = ScriptedHost()
    machine = realtime_pc(host)
    pit = machine.devices["pit"]
    pit_set_oneshot(machine)
    pit_next_event(machine, 0xFFFF)  # 55 ms
    pit_next_event(machine, 15)      # reprogrammed before it fired
    assert pit._timer.deadline == pit.state.load_ns[0] + pit.ticks_to_ns(16)
    host.t += 20 * US
    machine.scheduler.run_due()
    assert machine.devices["pic"].intr


def test_oneshot_fires_once_and_is_not_owed_again():
    host = ScriptedHost()
    machine = realtime_pc(host)
    pit = machine.devices["pit"]
    pic = machine.devices["pic"]
    pit_set_oneshot(machine)
    pit_next_event(machine, 15)
    host.t += 1_000_000
    assert machine.scheduler.run_due() == 1
    assert pic.acknowledge() == 0x30
    machine.ports.outb(0x20, 0x20)
    host.t += 100_000_000
    assert machine.scheduler.run_due() == 0
    assert not pit._timer.armed and not pit.state.oneshot_pending
    assert not pic.intr


def test_shutdown_control_word_cancels_an_owed_oneshot():
    host = ScriptedHost()
    machine = realtime_pc(host)
    pit_set_oneshot(machine)
    pit_next_event(machine, 15)
    machine.ports.outb(0x43, 0x30)  # Linux's pit_shutdown: mode 0, no count
    host.t += 1_000_000
    assert machine.scheduler.run_due() == 0
    assert not machine.devices["pic"].intr


def test_restored_image_with_a_due_oneshot_fires_it():
    """A state taken after the deadline but before the timer ran still owes the edge."""
    host = ScriptedHost()
    machine = realtime_pc(host)
    pit = machine.devices["pit"]
    pit_set_oneshot(machine)
    pit_next_event(machine, 15)
    host.t += 10_000_000  # deadline long past; the timer has not run yet
    saved = pit.save()
    pit.restore(saved)
    machine.scheduler.run_due()
    assert machine.devices["pic"].intr


@pytest.mark.parametrize(("mode", "irq_out", "owed"), [(4, False, True), (5, False, True),
                                                       (0, False, True), (0, True, False),
                                                       (2, False, False)])
def test_version1_images_owe_the_oneshot_when_it_may_not_have_fired(mode, irq_out, owed):
    fields = {"mode": [mode, 2, 3], "counting": [1, 1, 0], "irq_out": irq_out}
    upgraded = upgrade_fields("i8254/pit", PitState, 1, PitState.VERSION, fields)
    assert upgraded["oneshot_pending"] is owed


# real mode at 0x1000: PIT ch0 mode 2 count 0xFFFF; latch and read it into [0x2000];
# 65535 x `loop $`; latch and read it into [0x2002]; rdtsc low dword into [0x2004]; cli; hlt
SAME_SLICE_PROGRAM = bytes([
    0xFA,
    0xB0, 0x34, 0xE6, 0x43, 0xB0, 0xFF, 0xE6, 0x40, 0xE6, 0x40,
    0xB0, 0x00, 0xE6, 0x43, 0xE4, 0x40, 0xA2, 0x00, 0x20, 0xE4, 0x40, 0xA2, 0x01, 0x20,
    0xB9, 0xFF, 0xFF, 0xE2, 0xFE,
    0xB0, 0x00, 0xE6, 0x43, 0xE4, 0x40, 0xA2, 0x02, 0x20, 0xE4, 0x40, 0xA2, 0x03, 0x20,
    0x0F, 0x31, 0x66, 0xA3, 0x04, 0x20,
    0xF4,
])


@pytest.mark.slow
def test_pit_reads_within_one_realtime_slice_agree_with_each_other_and_the_tsc():
    """The CPU spins 65k instructions between two PIT reads inside one slice: in both
    clock modes the device time is the slice's start, so the count has not moved, and the
    TSC (which started the slice at that instant) is ahead of it, never behind."""
    machine = Machine(4 << 20, clock_mode="realtime")
    machine.attach_cpu()
    add_pc_platform(machine)
    machine.realize()
    machine.memory.write(0x1000, SAME_SLICE_PROGRAM)
    cpu = machine.cpu
    start_real_mode(cpu)
    slices: list[tuple[int, int]] = []  # (device time, instructions) of each slice
    cpu_run = cpu.run
    cpu.run = lambda budget: slices.append((machine.clock.now, cpu_run(budget))) or slices[-1][1]
    machine.run(until_ns=machine.clock.now + 1_000_000, timeout_s=5)
    assert cpu.halted
    assert slices[0][1] == 65535 + 22, "the whole program (22 instructions and the loop) in one slice"
    first, second = machine.memory.read_u16(0x2000), machine.memory.read_u16(0x2002)
    assert first == second == 0xFFFF
    tsc_low = int.from_bytes(machine.memory.read(0x2004, 4), "little")
    assert tsc_low - (slices[0][0] & 0xFFFFFFFF) & 0xFFFFFFFF >= 65535  # one ns per instruction
