"""8254 PIT and port 0x61: one behaviour per test."""
from __future__ import annotations

from pyv86.platform.pit import PIT_HZ, Pit

NS = 1_000_000_000


def ticks_ns(ticks: int) -> int:
    return Pit.ticks_to_ns(ticks)


def program(pc, ch: int, mode: int, count: int, rw: int = 3, bcd: int = 0) -> None:
    pc.outb(0x43, ch << 6 | rw << 4 | mode << 1 | bcd)
    if rw in (1, 3):
        pc.outb(0x40 + ch, count & 0xFF)
    if rw in (2, 3):
        pc.outb(0x40 + ch, count >> 8 & 0xFF)


def latch(pc, ch: int) -> int:
    pc.outb(0x43, ch << 6)
    return pc.inb(0x40 + ch) | pc.inb(0x40 + ch) << 8


def irq0_edges(pc, duration_ns: int) -> list[int]:
    times = []
    pic = pc.pic
    pic.set_irq = lambda line, level, orig=pic.set_irq: (
        times.append(pc.machine.clock.now) if line == 0 and level else None, orig(line, level))
    pc.advance(duration_ns)
    return times


def test_mode2_channel0_fires_irq0_every_period(pc):
    program(pc, 0, 2, 4773)  # Linux's 250 Hz tick
    edges = irq0_edges(pc, 20_000_000)
    assert len(edges) == 4
    period = edges[1] - edges[0]
    assert abs(period - 4773 * NS / PIT_HZ) < 2


def test_irq0_edges_reach_the_pic(pc):
    pc.init_pics()
    program(pc, 0, 2, 1193)
    pc.advance(1_100_000)
    assert pc.pic.intr
    assert pc.pic.acknowledge() == 0x30


def test_mode3_square_wave_fires_once_per_period(pc):
    program(pc, 0, 3, 11931)  # 9.9993 ms
    edges = irq0_edges(pc, 50_000_000)
    assert len(edges) == 5


def test_mode0_fires_once_at_terminal_count(pc):
    program(pc, 0, 0, 1193)
    edges = irq0_edges(pc, 10_000_000)
    assert len(edges) == 1
    assert abs(edges[0] - ticks_ns(1193)) < 2


def test_mode0_out_stays_high_until_reprogrammed(pc):
    program(pc, 0, 0, 100)
    pc.advance(ticks_ns(200))
    assert pc.machine.irqs[0].level
    program(pc, 0, 0, 100)
    assert not pc.machine.irqs[0].level


def test_mode4_fires_once(pc):
    program(pc, 0, 4, 500)
    edges = irq0_edges(pc, 5_000_000)
    assert len(edges) == 1


def test_control_word_stops_channel0(pc):
    program(pc, 0, 2, 1193)
    pc.advance(1_500_000)
    pc.outb(0x43, 0x30)  # mode 0, no count yet: Linux's shutdown
    edges = irq0_edges(pc, 10_000_000)
    assert edges == []


def test_counter_counts_down_with_guest_time(pc):
    program(pc, 0, 2, 0xFFFF)
    pc.advance(ticks_ns(1000))
    value = latch(pc, 0)
    assert 0xFFFF - 1001 <= value <= 0xFFFF - 999


def test_mode2_counter_reloads(pc):
    program(pc, 0, 2, 1000)
    pc.advance(ticks_ns(2500))
    assert 499 <= latch(pc, 0) <= 501


def test_mode3_counter_decrements_by_two(pc):
    program(pc, 2, 3, 1000)
    pc.outb(0x61, 0x01)
    pc.advance(ticks_ns(100))
    value = latch(pc, 2)
    assert value % 2 == 0
    assert 798 <= value <= 802


def test_latch_freezes_value_until_read(pc):
    program(pc, 0, 2, 50000)
    pc.outb(0x43, 0x00)
    pc.advance(ticks_ns(5000))
    first = pc.inb(0x40) | pc.inb(0x40) << 8
    assert first == 50000


def test_second_latch_before_read_is_ignored(pc):
    program(pc, 0, 2, 50000)
    pc.outb(0x43, 0x00)
    pc.advance(ticks_ns(5000))
    pc.outb(0x43, 0x00)
    assert pc.inb(0x40) | pc.inb(0x40) << 8 == 50000


def test_lsb_only_access(pc):
    program(pc, 2, 0, 0x80, rw=1)
    pc.outb(0x61, 0x01)
    assert pc.inb(0x42) == 0x80


def test_msb_only_access(pc):
    program(pc, 2, 0, 0x1200, rw=2)
    assert pc.inb(0x42) == 0x12


def test_word_read_alternates_lsb_msb(pc):
    program(pc, 1, 2, 0x1234)
    assert pc.inb(0x41) == 0x34
    assert pc.inb(0x41) == 0x12


def test_readback_latches_status(pc):
    program(pc, 2, 3, 1000)
    pc.outb(0x43, 0xE8)  # read-back: status only, channel 2
    status = pc.inb(0x42)
    assert status & 0x3F == 0x36  # rw=3, mode 3, binary


def test_readback_status_shows_null_count_before_load(pc):
    pc.outb(0x43, 0xB0)  # ch2, word, mode 0
    pc.outb(0x43, 0xE8)
    assert pc.inb(0x42) & 0x40


def test_readback_count_and_status_status_first(pc):
    program(pc, 1, 2, 0x4321)
    pc.outb(0x43, 0xC4)  # read-back count+status of channel 1
    status = pc.inb(0x41)
    assert status & 0x0E == 0x04
    assert pc.inb(0x41) | pc.inb(0x41) << 8 == 0x4321


def test_readback_multiple_channels(pc):
    program(pc, 1, 2, 0x1111)
    program(pc, 2, 2, 0x2222)
    pc.outb(0x61, 0x01)
    pc.outb(0x43, 0xDC)  # count of channels 1 and 2
    pc.advance(ticks_ns(100))
    assert pc.inb(0x41) | pc.inb(0x41) << 8 == 0x1111
    assert pc.inb(0x42) | pc.inb(0x42) << 8 == 0x2222


def test_bcd_counting(pc):
    program(pc, 1, 2, 0x1000, bcd=1)  # 1000 decimal
    pc.advance(ticks_ns(250))
    value = latch(pc, 1)
    assert value in (0x0750, 0x0749, 0x0751)


def test_port61_reads_back_gate_and_speaker_bits(pc):
    pc.outb(0x61, 0x03)
    assert pc.inb(0x61) & 0x0F == 0x03


def test_port61_bit5_is_channel2_out_in_mode0(pc):
    pc.outb(0x61, 0x01)
    program(pc, 2, 0, 11932)  # 10 ms: what pit_calibrate_tsc does
    assert not pc.inb(0x61) & 0x20
    pc.advance(9_000_000)
    assert not pc.inb(0x61) & 0x20
    pc.advance(2_000_000)
    assert pc.inb(0x61) & 0x20


def test_channel2_gate_low_holds_mode0_count(pc):
    program(pc, 2, 0, 0xFFFF)
    pc.outb(0x61, 0x00)
    pc.advance(ticks_ns(3000))
    assert latch(pc, 2) == 0xFFFF


def test_channel2_gate_high_counts(pc):
    pc.outb(0x61, 0x01)
    program(pc, 2, 0, 0xFFFF)
    pc.advance(ticks_ns(256 * 3))
    assert latch(pc, 2) >> 8 == 0xFC


def test_gate_pause_and_resume_mode0(pc):
    pc.outb(0x61, 0x01)
    program(pc, 2, 0, 10000)
    pc.advance(ticks_ns(1000))
    pc.outb(0x61, 0x00)
    pc.advance(ticks_ns(5000))
    pc.outb(0x61, 0x01)
    pc.advance(ticks_ns(1000))
    assert 7998 <= latch(pc, 2) <= 8002


def test_msb_steps_like_quick_pit_calibrate_expects(pc):
    pc.outb(0x61, (pc.inb(0x61) & ~0x02) | 0x01)
    pc.outb(0x43, 0xB0)
    pc.outb(0x42, 0xFF)
    pc.outb(0x42, 0xFF)
    msbs = []
    for _ in range(5):
        pc.advance(ticks_ns(256))
        pc.inb(0x42)
        msbs.append(pc.inb(0x42))
    assert msbs == [0xFE, 0xFD, 0xFC, 0xFB, 0xFA]


def test_port61_refresh_bit_toggles(pc):
    seen = set()
    for _ in range(4):
        seen.add(pc.inb(0x61) & 0x10)
        pc.advance(15_085)
    assert seen == {0, 0x10}


def test_mode1_waits_for_gate_trigger(pc):
    program(pc, 2, 1, 1000)
    pc.advance(ticks_ns(2000))
    assert latch(pc, 2) == 1000
    pc.outb(0x61, 0x01)
    pc.advance(ticks_ns(100))
    assert 899 <= latch(pc, 2) <= 901


def test_irq0_works_in_realtime_clock_mode():
    import time

    from pyv86.machine import Machine
    from pyv86.platform.pc import add_pc_platform

    machine = Machine(16 << 20, clock_mode="realtime")
    add_pc_platform(machine)
    machine.realize()
    machine.ports.outb(0x43, 0x34)
    machine.ports.outb(0x40, 0xA9)  # 1193: 1 kHz
    machine.ports.outb(0x40, 0x04)
    count = []
    pic = machine.devices["pic"]
    pic.set_irq = lambda line, level, orig=pic.set_irq: (count.append(1) if line == 0 and level else None,
                                                         orig(line, level))
    start = time.monotonic()
    machine.run(until_ns=machine.clock.now + 50_000_000, timeout_s=5)
    elapsed = time.monotonic() - start
    assert 0.045 <= elapsed < 1.0
    assert 10 <= len(count) <= 51  # late wake-ups under load skip ticks, never add any


def test_state_roundtrip_keeps_counting(pc, assert_state_roundtrip):
    program(pc, 0, 2, 4773)
    pc.advance(1_000_000)
    before = latch(pc, 0)
    assert_state_roundtrip(pc.pit)
    assert latch(pc, 0) == before
    assert pc.pit._timer.armed
