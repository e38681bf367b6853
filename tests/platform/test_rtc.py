"""MC146818 RTC/CMOS: one behaviour per test."""
from __future__ import annotations

import time

import pytest

from pyv86.machine import Machine
from pyv86.platform.pc import add_pc_platform
from pyv86.platform.rtc import Rtc, RtcConfig

NS = 1_000_000_000


@pytest.fixture
def rtc_pc(make_pc):
    """A PC whose RTC starts at a fixed instant (deterministic)."""
    return make_pc(64 << 20, devices=(Rtc("rtc", RtcConfig(time="2024-02-29T23:59:58")),))


def cmos(pc, reg: int) -> int:
    pc.outb(0x70, reg)
    return pc.inb(0x71)


def set_cmos(pc, reg: int, value: int) -> None:
    pc.outb(0x70, reg)
    pc.outb(0x71, value)


def test_fixed_time_reads_in_bcd_24h(rtc_pc):
    assert [cmos(rtc_pc, r) for r in (0, 2, 4, 7, 8, 9, 0x32)] == [0x58, 0x59, 0x23, 0x29, 0x02, 0x24, 0x20]


def test_weekday_register(rtc_pc):
    assert cmos(rtc_pc, 6) == 5  # 2024-02-29 was a Thursday (Sunday = 1)


def test_time_advances_with_guest_clock_across_leap_day(rtc_pc):
    rtc_pc.machine.run(until_ns=3 * NS)
    assert [cmos(rtc_pc, r) for r in (0, 2, 4, 7, 8)] == [0x01, 0x00, 0x00, 0x01, 0x03]


def test_binary_mode(rtc_pc):
    set_cmos(rtc_pc, 0x0B, 0x06)  # DM binary, 24h
    assert cmos(rtc_pc, 0) == 58
    assert cmos(rtc_pc, 4) == 23


def test_12_hour_mode_sets_pm_bit(rtc_pc):
    set_cmos(rtc_pc, 0x0B, 0x00)  # BCD, 12h
    assert cmos(rtc_pc, 4) == 0x80 | 0x11


def test_host_time_is_close_to_host_clock():
    machine = Machine(16 << 20)
    add_pc_platform(machine)
    machine.realize()
    rtc = machine.devices["rtc"]
    assert abs(rtc.rtc_ns() - time.time_ns()) < 2 * NS


def test_register_d_reports_valid_ram_and_time(rtc_pc):
    assert cmos(rtc_pc, 0x0D) == 0x80


def test_register_a_default_divider_and_rate(rtc_pc):
    assert cmos(rtc_pc, 0x0A) & 0x7F == 0x26


def test_update_in_progress_in_last_244us_of_second(rtc_pc):
    # fixed start is on a whole second: 1 s - 200 us later UIP is set
    rtc_pc.machine.run(until_ns=NS - 200_000)
    assert cmos(rtc_pc, 0x0A) & 0x80
    rtc_pc.machine.run(until_ns=NS + 1000)
    assert not cmos(rtc_pc, 0x0A) & 0x80


def test_nmi_mask_bit_of_index_is_ignored(rtc_pc):
    rtc_pc.outb(0x70, 0x80 | 0x0D)
    assert rtc_pc.inb(0x71) == 0x80


def test_nvram_bytes_read_back(rtc_pc):
    set_cmos(rtc_pc, 0x40, 0x5A)
    assert cmos(rtc_pc, 0x40) == 0x5A


def test_memory_size_bytes(rtc_pc):
    assert cmos(rtc_pc, 0x15) | cmos(rtc_pc, 0x16) << 8 == 640
    assert cmos(rtc_pc, 0x17) | cmos(rtc_pc, 0x18) << 8 == 63 * 1024
    assert cmos(rtc_pc, 0x30) | cmos(rtc_pc, 0x31) << 8 == 63 * 1024
    assert cmos(rtc_pc, 0x34) | cmos(rtc_pc, 0x35) << 8 == (48 << 20) >> 16


def test_set_bit_freezes_time_and_write_sets_it(rtc_pc):
    set_cmos(rtc_pc, 0x0B, 0x82)
    set_cmos(rtc_pc, 0x09, 0x30)
    set_cmos(rtc_pc, 0x08, 0x06)
    set_cmos(rtc_pc, 0x07, 0x15)
    set_cmos(rtc_pc, 0x04, 0x12)
    set_cmos(rtc_pc, 0x02, 0x00)
    set_cmos(rtc_pc, 0x00, 0x00)
    rtc_pc.machine.run(until_ns=5 * NS)
    assert cmos(rtc_pc, 0x00) == 0x00  # frozen while SET
    set_cmos(rtc_pc, 0x0B, 0x02)
    rtc_pc.machine.run(until_ns=7 * NS)
    assert [cmos(rtc_pc, r) for r in (9, 8, 7, 4, 2, 0)] == [0x30, 0x06, 0x15, 0x12, 0x00, 0x02]


def test_periodic_interrupt_sets_pf_and_irq8(rtc_pc):
    set_cmos(rtc_pc, 0x0A, 0x26)  # 1024 Hz
    set_cmos(rtc_pc, 0x0B, 0x42)  # PIE
    rtc_pc.machine.run(until_ns=rtc_pc.machine.clock.now + 1_000_000)
    assert rtc_pc.machine.irqs[8].level
    assert cmos(rtc_pc, 0x0C) == 0xC0


def test_reading_register_c_clears_flags_and_lowers_irq8(rtc_pc):
    set_cmos(rtc_pc, 0x0B, 0x42)
    rtc_pc.machine.run(until_ns=rtc_pc.machine.clock.now + 1_000_000)
    cmos(rtc_pc, 0x0C)
    assert cmos(rtc_pc, 0x0C) == 0
    assert not rtc_pc.machine.irqs[8].level


def test_periodic_rate_follows_register_a(rtc_pc):
    set_cmos(rtc_pc, 0x0A, 0x2F)  # rate 15: 2 Hz
    set_cmos(rtc_pc, 0x0B, 0x42)
    rtc_pc.machine.run(until_ns=rtc_pc.machine.clock.now + 400_000_000)
    assert not rtc_pc.machine.irqs[8].level
    rtc_pc.machine.run(until_ns=rtc_pc.machine.clock.now + 200_000_000)
    assert rtc_pc.machine.irqs[8].level


def test_update_ended_interrupt_once_per_second(rtc_pc):
    set_cmos(rtc_pc, 0x0B, 0x12)  # UIE
    rtc_pc.machine.run(until_ns=NS + 1000)
    assert cmos(rtc_pc, 0x0C) == 0x90


def test_alarm_interrupt_when_time_matches(rtc_pc):
    set_cmos(rtc_pc, 0x01, 0x00)  # alarm 00:00:00 (the clock starts at 23:59:58)
    set_cmos(rtc_pc, 0x03, 0x00)
    set_cmos(rtc_pc, 0x05, 0x00)
    set_cmos(rtc_pc, 0x0B, 0x22)  # AIE
    rtc_pc.machine.run(until_ns=NS + 1000)
    assert not rtc_pc.machine.irqs[8].level
    rtc_pc.machine.run(until_ns=2 * NS + 1000)
    assert cmos(rtc_pc, 0x0C) & 0xA0 == 0xA0


def test_alarm_dont_care_values_match_every_second(rtc_pc):
    for reg in (1, 3, 5):
        set_cmos(rtc_pc, reg, 0xFF)
    set_cmos(rtc_pc, 0x0B, 0x22)
    rtc_pc.machine.run(until_ns=NS + 1000)
    assert cmos(rtc_pc, 0x0C) & 0xA0 == 0xA0


def test_irq8_reaches_pic_as_vector_0x38(rtc_pc):
    rtc_pc.init_pics()
    set_cmos(rtc_pc, 0x0B, 0x42)
    rtc_pc.machine.run(until_ns=rtc_pc.machine.clock.now + 1_000_000)
    assert rtc_pc.pic.acknowledge() == 0x38


def test_guest_reset_keeps_time_and_clears_enables(rtc_pc):
    set_cmos(rtc_pc, 0x0B, 0x42)
    set_cmos(rtc_pc, 0x50, 0x77)
    rtc_pc.machine.reset("guest")
    assert cmos(rtc_pc, 0x50) == 0x77
    assert cmos(rtc_pc, 0x0B) == 0x02
    assert cmos(rtc_pc, 0x00) == 0x58


def test_config_rejects_bad_time():
    with pytest.raises(ValueError, match="not \"host\" or an ISO date"):
        RtcConfig(time="yesterday")


def test_state_roundtrip(rtc_pc, assert_state_roundtrip):
    set_cmos(rtc_pc, 0x20, 0x42)
    assert_state_roundtrip(rtc_pc.rtc)
    assert cmos(rtc_pc, 0x20) == 0x42
    assert cmos(rtc_pc, 0x00) == 0x58
