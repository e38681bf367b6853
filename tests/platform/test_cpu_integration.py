"""The platform with the real CPU: a halted CPU wakes on the PIT tick; TSC follows the clock;
work handed over from other threads (received frames) runs between slices, at once or
when the running slice ends."""
from __future__ import annotations

import threading
import time

import pytest

from pyv86.machine import DEFAULT_SLICE, Machine
from pyv86.net import handoff as handoff_mod
from pyv86.net.handoff import Handoff
from pyv86.platform.pc import add_pc_platform
from pyv86.testing.realmode import start_real_mode

# real-mode program at 0x1000: PIC vectors at 0x08, unmask IRQ0, PIT ch0 mode 2 at 1 kHz,
# then `sti; hlt; jmp $-3`. The IRQ0 handler at 0x1100 counts ticks in word [0x2000].
PROGRAM = bytes([
    0xB0, 0x11, 0xE6, 0x20, 0xB0, 0x08, 0xE6, 0x21, 0xB0, 0x04, 0xE6, 0x21, 0xB0, 0x01, 0xE6, 0x21,
    0xB0, 0xFE, 0xE6, 0x21,
    0xB0, 0x34, 0xE6, 0x43, 0xB0, 0xA9, 0xE6, 0x40, 0xB0, 0x04, 0xE6, 0x40,
    0xFB, 0xF4, 0xEB, 0xFD,
])
HANDLER = bytes([0xFF, 0x06, 0x00, 0x20, 0xB0, 0x20, 0xE6, 0x20, 0xCF])


def make(clock_mode: str) -> Machine:
    machine = Machine(4 << 20, clock_mode=clock_mode)
    machine.attach_cpu()
    add_pc_platform(machine)
    machine.realize()

    def boot(m: Machine) -> None:
        m.memory.write(0x1000, PROGRAM)
        m.memory.write(0x1100, HANDLER)
        m.memory.write(0x08 * 4, (0x1100).to_bytes(2, "little") + (0).to_bytes(2, "little"))
        m.memory.write_u16(0x2000, 0)
        start_real_mode(m.cpu)

    machine.boot_hooks.append(boot)
    machine.reset()
    return machine


@pytest.mark.slow
def test_halted_cpu_wakes_on_pit_ticks_in_virtual_mode():
    machine = make("virtual")
    machine.run(until_ns=20_000_000)
    ticks = machine.memory.read_u16(0x2000)
    assert 19 <= ticks <= 20
    assert machine.cpu.instructions < 2000  # it slept between ticks instead of spinning


@pytest.mark.slow
def test_tsc_counts_guest_nanoseconds_across_idle():
    machine = make("virtual")
    machine.run(until_ns=5_000_000)
    assert machine.clock.now - 10_000 <= machine.cpu.tsc <= machine.clock.now + 10_000


@pytest.mark.slow
def test_halted_cpu_wakes_on_pit_ticks_in_realtime_mode():
    machine = make("realtime")
    start = time.monotonic()
    machine.run(until_ns=machine.clock.now + 50_000_000, timeout_s=5)
    elapsed = time.monotonic() - start
    ticks = machine.memory.read_u16(0x2000)
    assert elapsed >= 0.045
    assert 10 <= ticks <= 51


SPIN = bytes([0xEB, 0xFE])                                  # jmp $
SPIN_ON_PORT = bytes([0xBA, 0x80, 0x00, 0xEC, 0xEB, 0xFD])  # mov dx, 0x80; l: in al, dx; jmp l


def spinning(program: bytes = SPIN) -> tuple[Machine, list[tuple[int, int]]]:
    """A machine whose CPU loops on ``program`` with no timer armed (every slice gets the
    whole DEFAULT_SLICE budget), and the (budget, executed) of every slice it ran."""
    machine = Machine(4 << 20, clock_mode="virtual")
    machine.attach_cpu()
    machine.realize()

    def boot(m: Machine) -> None:
        m.memory.write(0x1000, program)
        start_real_mode(m.cpu)

    machine.boot_hooks.append(boot)
    machine.reset()
    slices: list[tuple[int, int]] = []
    cpu_run = machine.cpu.run

    def run(budget: int) -> int:
        done = cpu_run(budget)
        slices.append((budget, done))
        return done
    machine.cpu.run = run  # type: ignore[method-assign]
    return machine, slices


def run_in_thread(machine: Machine) -> threading.Thread:
    thread = threading.Thread(target=machine.run, kwargs={"timeout_s": 30}, daemon=True)
    thread.start()
    return thread


def wait_for(cond, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.001)


def test_work_handed_over_without_cutting_the_slice_runs_at_its_end():
    machine, slices = spinning()
    seen: list[list[tuple[int, int]]] = []

    def work() -> None:
        seen.append(list(slices))
        machine.stop("test")

    thread = run_in_thread(machine)
    wait_for(lambda: len(slices) >= 2)
    machine.call_soon_threadsafe(work, cut_slice=False)
    thread.join(30)
    assert seen, "the work never ran"
    before = seen[0]
    assert all(budget == DEFAULT_SLICE and done == budget for budget, done in before)
    assert len(slices) == len(before)  # it ran right at the end of the slice, not later


def test_work_handed_over_by_default_ends_the_slice_early():
    # a slice of port reads (a host call each) lasts tens of milliseconds: the request
    # lands while it runs, however late this thread gets a host CPU
    machine, slices = spinning(SPIN_ON_PORT)
    seen: list[int] = []
    in_slice = threading.Event()
    cpu_run = machine.cpu.run

    def run(budget: int) -> int:
        if len(slices) >= 2:
            in_slice.set()      # (the native run releases the GIL: this thread goes on then)
        return cpu_run(budget)
    machine.cpu.run = run  # type: ignore[method-assign]

    def work() -> None:
        seen.append(len(slices))
        machine.stop("test")

    thread = run_in_thread(machine)
    assert in_slice.wait(10)
    machine.call_soon_threadsafe(work)
    thread.join(30)
    assert seen == [len(slices)]
    budget, done = slices[-1]
    assert done < budget // 2   # the slice in progress stopped well before its budget


def test_frames_of_a_stream_wait_for_the_end_of_the_slice(monkeypatch):
    """A backend thread's frames that follow each other closely wait for the end of the
    running slice (no CPU stop per frame) and are handed over there, in order, on the
    machine thread."""
    monkeypatch.setattr(handoff_mod, "QUIET_S", 3600.0)   # every frame after the first: a stream
    machine, slices = spinning(SPIN_ON_PORT)               # slices of ~70 ms
    started = [0]
    cpu_run = machine.cpu.run

    def run(budget: int) -> int:
        started[0] += 1
        return cpu_run(budget)
    machine.cpu.run = run  # type: ignore[method-assign]
    handoff = Handoff(machine)
    got: list[tuple[bytes, bool, int]] = []

    def receiver(frame: bytes) -> None:
        got.append((frame, threading.current_thread() is machine.thread, len(slices)))
        if len(got) == 3:
            machine.stop("test")
    handoff.set_receiver(receiver)
    thread = run_in_thread(machine)
    wait_for(lambda: len(slices) >= 1)
    handoff.deliver(bytes([0]) * 60)        # the first frame after a quiet spell: at once
    wait_for(lambda: len(got) == 1 and started[0] > len(slices))   # a new slice is running
    running = started[0] - 1                # its index
    sender = threading.Thread(target=lambda: [handoff.deliver(bytes([i]) * 60) for i in (1, 2)])
    sender.start()
    sender.join()
    thread.join(30)
    assert [f for f, _, _ in got] == [bytes([i]) * 60 for i in range(3)]
    assert all(on_machine for _, on_machine, _ in got)
    assert got[2][2] > running              # handed over after that slice ended...
    assert all(done == budget for budget, done in slices[running:])   # ...which ran in full


def test_a_frame_after_a_quiet_spell_ends_the_slice_early():
    """A lone frame (a ping, a keystroke) reaches the guest at once, not at the slice's end."""
    machine, slices = spinning(SPIN_ON_PORT)
    handoff = Handoff(machine)
    in_slice = threading.Event()
    cpu_run = machine.cpu.run

    def run(budget: int) -> int:
        if len(slices) >= 2:
            in_slice.set()
        return cpu_run(budget)
    machine.cpu.run = run  # type: ignore[method-assign]
    got: list[int] = []

    def receiver(frame: bytes) -> None:
        got.append(len(slices))
        machine.stop("test")
    handoff.set_receiver(receiver)
    thread = run_in_thread(machine)
    assert in_slice.wait(10)
    handoff.deliver(bytes(60))
    thread.join(30)
    assert got == [len(slices)]
    budget, done = slices[-1]
    assert done < budget // 2
