"""The MC146818 real-time clock and CMOS RAM (index port 0x70, data port 0x71, IRQ 8).

The RTC keeps time as an offset from the machine clock: ``rtc time = base + guest ns``.
With ``time = "host"`` the base is taken from the host's clock at power-on (the guest
sees the wall clock); with ``time = "2024-01-01T00:00:00"`` the guest starts at that UTC
instant, so runs in virtual clock mode replay exactly. Guest writes to the time registers
move the base.

Implemented: seconds/minutes/hours/weekday/day/month/year (+ century at 0x32) in BCD or
binary (register B DM) and 12- or 24-hour format (register B 24/12, PM in bit 7 of the
hour), the SET bit (updates frozen while the guest writes the time), the update-in-
progress bit (set during the last 244 us of each second), periodic (rate from register A
RS bits), alarm (with "don't care" values 0xC0-0xFF) and update-ended interrupts on IRQ 8
through register C (read clears it and lowers IRQ 8), register D VRT, and 114 bytes of
battery-backed RAM that hold the memory size bytes (0x15/0x16 base, 0x17/0x18 and
0x30/0x31 extended KiB, 0x34/0x35 64-KiB blocks above 16 MiB) as a BIOS leaves them.
Bit 7 of the index (NMI mask) is ignored for addressing.
"""
from __future__ import annotations

import calendar
import datetime as dt
import logging
import time
from typing import ClassVar

import attrs

from pyv86.devices.base import Device

log = logging.getLogger(__name__)

NS_PER_S = 1_000_000_000
UIP_NS = 244_000

SEC, SEC_ALARM, MIN, MIN_ALARM, HOUR, HOUR_ALARM = 0, 1, 2, 3, 4, 5
WEEKDAY, DAY, MONTH, YEAR = 6, 7, 8, 9
REG_A, REG_B, REG_C, REG_D = 0x0A, 0x0B, 0x0C, 0x0D
CENTURY = 0x32

B_SET, B_PIE, B_AIE, B_UIE, B_SQWE, B_DM, B_24H, B_DSE = 0x80, 0x40, 0x20, 0x10, 0x08, 0x04, 0x02, 0x01
C_IRQF, C_PF, C_AF, C_UF = 0x80, 0x40, 0x20, 0x10


def _parse_time(value: str) -> str:
    if value == "host":
        return value
    try:
        dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"time {value!r} is not \"host\" or an ISO date such as "
                         "\"2024-01-01T00:00:00\"") from None
    return value


@attrs.define(frozen=True)
class RtcConfig:
    time: str = attrs.field(default="host", validator=lambda _i, _a, v: _parse_time(v), metadata={
        "help": "\"host\" (the host's clock) or a fixed UTC start such as \"2024-01-01T00:00:00\" "
                "for deterministic runs"})
    irq: int = attrs.field(default=8, validator=attrs.validators.in_(range(16)),
                           metadata={"help": "IRQ line"})


@attrs.define
class RtcState:
    VERSION: ClassVar[int] = 1
    index: int = 0
    cmos: bytearray = attrs.field(factory=lambda: bytearray(128))
    base_ns: int = 0           # RTC time (Unix ns, UTC) at guest time 0
    frozen: bool = False       # register B SET: time registers hold what the guest wrote
    irq_level: bool = False


def _to_bcd(v: int) -> int:
    return (v // 10) << 4 | v % 10


def _from_bcd(v: int) -> int:
    return (v >> 4) * 10 + (v & 0xF)


class Rtc(Device):
    """MC146818 RTC + 128 bytes of CMOS."""

    kind = "mc146818"
    config_cls = RtcConfig
    state_cls = RtcState
    description = "MC146818 RTC/CMOS (ports 0x70/0x71, IRQ 8)"

    def realize(self, machine) -> None:  # type: ignore[override]
        super().realize(machine)
        machine.ports.map(0x70, 2, self.io_read, self.io_write, self, name="rtc", sizes=(1,))
        self._irq = machine.irqs[self.config.irq].source(self.id)
        self._periodic = machine.scheduler.timer(f"{self.id}.periodic", self._on_periodic)
        self._second = machine.scheduler.timer(f"{self.id}.update", self._on_update)

    def reset(self) -> None:
        # the RTC is battery-backed: a guest reset keeps time and RAM, only the
        # interrupt enables and flags clear (as the RESET pin does)
        if self.machine is None or self.state.base_ns == 0 and not any(self.state.cmos):
            self.state = self._power_on()
        else:
            s = self.state
            s.cmos[REG_B] &= ~(B_PIE | B_AIE | B_UIE | B_SQWE) & 0xFF
            s.cmos[REG_C] = 0
        self._reschedule()
        self._update_irq()

    def _power_on(self) -> RtcState:
        state = RtcState()
        now = self.machine.clock.now if self.machine is not None else 0
        if self.config.time == "host":
            state.base_ns = time.time_ns() - now
        else:
            start = dt.datetime.fromisoformat(self.config.time)
            if start.tzinfo is not None:
                start = start.astimezone(dt.timezone.utc).replace(tzinfo=None)
            state.base_ns = calendar.timegm(start.timetuple()) * NS_PER_S + start.microsecond * 1000 - now
        cmos = state.cmos
        cmos[REG_A] = 0x26  # 32.768 kHz time base, 1024 Hz periodic rate
        cmos[REG_B] = B_24H
        cmos[REG_D] = 0x80  # valid RAM and time
        memory = self.machine.memory.size if self.machine is not None else 0
        self._write_memory_size(cmos, memory)
        cmos[0x10] = 0x00   # no floppy drives
        cmos[0x14] = 0x06   # equipment: FPU present, no display adapter initialised
        return state

    @staticmethod
    def _write_memory_size(cmos: bytearray, memory: int) -> None:
        base_kb = 640
        cmos[0x15], cmos[0x16] = base_kb & 0xFF, base_kb >> 8
        ext_kb = min(max(0, memory - (1 << 20)) >> 10, 0xFFFF)
        cmos[0x17], cmos[0x18] = ext_kb & 0xFF, ext_kb >> 8
        cmos[0x30], cmos[0x31] = ext_kb & 0xFF, ext_kb >> 8
        above16 = min(max(0, memory - (16 << 20)) >> 16, 0xFFFF)
        cmos[0x34], cmos[0x35] = above16 & 0xFF, above16 >> 8

    def restore(self, state: RtcState) -> None:
        self.state = state
        self._reschedule()
        self._update_irq()

    def unrealize(self) -> None:
        if self.machine is not None:
            self._periodic.cancel()
            self._second.cancel()

    # time ---------------------------------------------------------------------------
    def _now_ns(self) -> int:
        assert self.machine is not None
        return self.machine.clock.now

    def rtc_ns(self) -> int:
        """The RTC's current time as Unix ns (UTC)."""
        return self.state.base_ns + self._now_ns()

    def _fields(self, unix_ns: int) -> list[int]:
        """Binary values of registers 0..9 and the century for ``unix_ns``."""
        t = dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=unix_ns // 1000)
        weekday = (t.weekday() + 1) % 7 + 1  # 1 = Sunday
        return [t.second, t.minute, t.hour, weekday, t.day, t.month, t.year % 100, t.year // 100]

    def _encode(self, reg: int, value: int) -> int:
        b = self.state.cmos[REG_B]
        pm = 0
        if reg in (HOUR, HOUR_ALARM) and not b & B_24H:
            pm = 0x80 if value >= 12 else 0
            value = value % 12 or 12
        if not b & B_DM:
            value = _to_bcd(value)
        return value | pm

    def _decode(self, reg: int, value: int) -> int:
        b = self.state.cmos[REG_B]
        pm = False
        if reg in (HOUR, HOUR_ALARM) and not b & B_24H:
            pm = bool(value & 0x80)
            value &= 0x7F
        if not b & B_DM:
            value = _from_bcd(value)
        if reg in (HOUR, HOUR_ALARM) and not b & B_24H:
            value = value % 12 + (12 if pm else 0)
        return value

    def _snapshot(self) -> None:
        """Copy the running time into the time registers (as encoded bytes)."""
        sec, mnt, hour, wday, day, month, year, century = self._fields(self.rtc_ns())
        cmos = self.state.cmos
        for reg, value in ((SEC, sec), (MIN, mnt), (HOUR, hour), (WEEKDAY, wday), (DAY, day),
                           (MONTH, month), (YEAR, year)):
            cmos[reg] = self._encode(reg, value)
        cmos[CENTURY] = _to_bcd(century) if not cmos[REG_B] & B_DM else century

    def _commit(self) -> None:
        """Make the time registers the running time."""
        cmos = self.state.cmos
        try:
            century = cmos[CENTURY]
            century = century if cmos[REG_B] & B_DM else _from_bcd(century)
            if not 19 <= century <= 29:
                century = 20
            new = dt.datetime(century * 100 + self._decode(YEAR, cmos[YEAR]),
                              self._decode(MONTH, cmos[MONTH]), self._decode(DAY, cmos[DAY]),
                              self._decode(HOUR, cmos[HOUR]), self._decode(MIN, cmos[MIN]),
                              self._decode(SEC, cmos[SEC]))
        except ValueError as exc:
            log.info("%s: guest wrote an invalid date (%s); time unchanged", self.id, exc)
            return
        sub_second = self.rtc_ns() % NS_PER_S
        unix_ns = calendar.timegm(new.timetuple()) * NS_PER_S + sub_second
        self.state.base_ns = unix_ns - self._now_ns()

    def _uip(self) -> bool:
        s = self.state
        if s.frozen or (s.cmos[REG_A] >> 4 & 7) != 2:
            return False
        return self.rtc_ns() % NS_PER_S >= NS_PER_S - UIP_NS

    # guest access -------------------------------------------------------------------
    def io_read(self, offset: int, size: int) -> int:
        s = self.state
        if offset == 0:
            return 0xFF  # the index register is write-only
        reg = s.index
        if reg in (SEC, MIN, HOUR, WEEKDAY, DAY, MONTH, YEAR) or reg == CENTURY:
            if not s.frozen:
                self._snapshot()
            return s.cmos[reg]
        if reg == REG_A:
            return (s.cmos[REG_A] & 0x7F) | (0x80 if self._uip() else 0)
        if reg == REG_C:
            value = s.cmos[REG_C]
            s.cmos[REG_C] = 0
            self._update_irq()
            return value
        return s.cmos[reg]

    def io_write(self, offset: int, size: int, value: int) -> None:
        s = self.state
        value &= 0xFF
        if offset == 0:
            s.index = value & 0x7F
            return
        reg = s.index
        if reg in (SEC, MIN, HOUR, WEEKDAY, DAY, MONTH, YEAR) or reg == CENTURY:
            if not s.frozen:
                self._snapshot()
            s.cmos[reg] = value
            if not s.frozen:
                self._commit()
            return
        if reg == REG_A:
            s.cmos[REG_A] = value & 0x7F
            self._reschedule()
        elif reg == REG_B:
            old = s.cmos[REG_B]
            if value & B_SET and not s.frozen:
                self._snapshot()
                s.frozen = True
                value &= ~B_UIE
            s.cmos[REG_B] = value
            if not value & B_SET and s.frozen:
                s.frozen = False
                self._commit()
            if (old ^ value) & (B_DM | B_24H):
                pass  # the registers are re-encoded on the next read
            self._reschedule()
            self._update_irq()
        elif reg in (REG_C, REG_D):
            pass  # read-only
        else:
            s.cmos[reg] = value

    # interrupts -----------------------------------------------------------------------
    def _period_ns(self) -> int | None:
        rs = self.state.cmos[REG_A] & 0x0F
        if rs == 0 or (self.state.cmos[REG_A] >> 4 & 7) != 2:
            return None
        if rs <= 2:
            rs += 7
        return (1 << (rs - 1)) * NS_PER_S // 32768

    def _reschedule(self) -> None:
        if self.machine is None:
            return
        s = self.state
        period = self._period_ns()
        if s.cmos[REG_B] & B_PIE and period is not None:
            now = self._now_ns()
            rtc = self.rtc_ns()
            self._periodic.arm(now + period - rtc % period)
        else:
            self._periodic.cancel()
        if s.cmos[REG_B] & (B_AIE | B_UIE) and not s.frozen:
            self._second.arm(self._now_ns() + NS_PER_S - self.rtc_ns() % NS_PER_S)
        else:
            self._second.cancel()

    def _on_periodic(self) -> None:
        self.state.cmos[REG_C] |= C_PF
        self._update_irq()
        self._reschedule()

    def _on_update(self) -> None:
        s = self.state
        s.cmos[REG_C] |= C_UF
        fields = self._fields(self.rtc_ns())
        if self._alarm_matches(fields):
            s.cmos[REG_C] |= C_AF
        self._update_irq()
        self._reschedule()

    def _alarm_matches(self, fields: list[int]) -> bool:
        cmos = self.state.cmos
        for alarm_reg, reg, value in ((SEC_ALARM, SEC, fields[0]), (MIN_ALARM, MIN, fields[1]),
                                      (HOUR_ALARM, HOUR, fields[2])):
            raw = cmos[alarm_reg]
            if raw >= 0xC0:
                continue  # don't care
            if self._decode(reg, raw) != value:
                return False
        return True

    def _update_irq(self) -> None:
        s = self.state
        c = s.cmos[REG_C] & 0x70
        enabled = c & s.cmos[REG_B] & (B_PIE | B_AIE | B_UIE)
        if enabled:
            s.cmos[REG_C] |= C_IRQF
        else:
            s.cmos[REG_C] &= ~C_IRQF & 0xFF
        s.irq_level = bool(enabled)
        if self.machine is not None:
            self._irq.set(s.irq_level)
