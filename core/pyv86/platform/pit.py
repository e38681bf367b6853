"""The 8254 programmable interval timer (ports 0x40-0x43) and system control port B (0x61).

Counters are not ticked one by one: each channel remembers when its count was loaded
(guest nanoseconds from ``machine.clock``) and derives the current count and its OUT pin
from the elapsed PIT input clocks (1.193182 MHz). So the counters agree with the clock in
both clock modes ("virtual": instruction-driven; "realtime": the host's monotonic clock)
and with a TSC derived from the same clock, which is what Linux's PIT/TSC calibration
compares.

Channel 0 drives IRQ 0 through a scheduler timer armed for the next OUT edge (modes 2 and
3 pulse it once per period; modes 0 and 4 once at terminal count). A one-shot edge (modes
0, 1, 4, 5) stays owed until it has been delivered (``oneshot_pending``): when the clock is
already past it (a realtime clock that moved on during a long slice or host stall, a state
image taken between the deadline and the timer run) the timer is armed in the past and
fires at once, as the hardware counter would have reached terminal count regardless. Channel 1 (DRAM
refresh) counts but drives nothing. Channel 2's GATE is port 0x61 bit 0, its OUT reads
back as port 0x61 bit 5; bit 1 (speaker data) and bits 2-3 are latches; bit 4 toggles
every 15 us (the refresh request some delay loops poll).

Implemented: modes 0-5 (1 and 5 triggered by a GATE rising edge), binary and BCD
counting, LSB/MSB/LSB-then-MSB access, counter latch, read-back (count and/or status of
several channels), null count.
"""
from __future__ import annotations

import logging
from typing import ClassVar

import attrs

from pyv86.devices.base import Device

log = logging.getLogger(__name__)

PIT_HZ = 1_193_182
NS_PER_S = 1_000_000_000
REFRESH_NS = 15_085  # port 0x61 bit 4 period/2

RW_LATCH, RW_LSB, RW_MSB, RW_WORD = 0, 1, 2, 3


@attrs.define(frozen=True)
class PitConfig:
    irq: int = attrs.field(default=0, validator=attrs.validators.in_(range(16)),
                           metadata={"help": "IRQ line of channel 0"})


def _three(value: int = 0) -> list[int]:
    return [value, value, value]


@attrs.define
class PitState:
    """Per-channel registers (lists indexed by channel 0-2) and port 0x61."""

    VERSION: ClassVar[int] = 2
    mode: list[int] = attrs.field(factory=_three)
    rw: list[int] = attrs.field(factory=lambda: [RW_WORD] * 3)   # access mode
    bcd: list[int] = attrs.field(factory=_three)
    count: list[int] = attrs.field(factory=lambda: [0x10000] * 3)  # reload value (0 means 65536)
    load_ns: list[int] = attrs.field(factory=_three)      # guest ns the count started counting
    counting: list[int] = attrs.field(factory=_three)     # count loaded (and triggered) yet
    gate: list[int] = attrs.field(factory=lambda: [1, 1, 0])
    held: list[int] = attrs.field(factory=_three)         # modes 0/4: counter value while GATE low
    write_lsb: list[int] = attrs.field(factory=_three)    # LSB waiting for its MSB
    write_phase: list[int] = attrs.field(factory=_three)  # 1 = next write is the MSB (RW_WORD)
    read_phase: list[int] = attrs.field(factory=_three)   # 1 = next read is the MSB (RW_WORD)
    latched: list[int] = attrs.field(factory=lambda: [-1] * 3)  # latched count, -1 = none
    latch_phase: list[int] = attrs.field(factory=_three)
    status: list[int] = attrs.field(factory=lambda: [-1] * 3)   # latched status, -1 = none
    null_count: list[int] = attrs.field(factory=lambda: [1] * 3)
    port61: int = 0                                       # bits 0-3 as written
    irq_out: bool = False                                 # channel 0 OUT as last driven
    # channel 0's one-shot edge (modes 0, 1, 4, 5) is owed: counting started, not yet fired
    oneshot_pending: bool = attrs.field(default=False, metadata={"since": 2})

    @staticmethod
    def upgrade_1_to_2(fields: dict) -> dict:
        """Version 1 did not record whether the one-shot fired: owe it when it may not have.

        Modes 0/1 tell by OUT; for modes 4/5 one more IRQ 0 is owed, which at worst is one
        interrupt too many (Linux's one-shot clockevent handler then just reprograms) and
        rescues images whose one-shot version 1 dropped.
        """
        mode = int(fields.get("mode", [0])[0])
        counting = bool(fields.get("counting", [0])[0])
        irq_out = bool(fields.get("irq_out", False))
        fields["oneshot_pending"] = counting and (mode in (4, 5) or mode in (0, 1) and not irq_out)
        return fields


def _from_bcd(value: int) -> int:
    return (value >> 12 & 0xF) * 1000 + (value >> 8 & 0xF) * 100 + (value >> 4 & 0xF) * 10 + (value & 0xF)


def _to_bcd(value: int) -> int:
    return (value // 1000 % 10) << 12 | (value // 100 % 10) << 8 | (value // 10 % 10) << 4 | value % 10


class Pit(Device):
    """Intel 8254 PIT plus port 0x61."""

    kind = "i8254"
    config_cls = PitConfig
    state_cls = PitState
    description = "8254 PIT (IRQ 0, channel 2 gate/output on port 0x61)"

    def realize(self, machine) -> None:  # type: ignore[override]
        super().realize(machine)
        machine.ports.map(0x40, 4, self.io_read, self.io_write, self, name="pit", sizes=(1,))
        machine.ports.map(0x61, 1, self._read_61, self._write_61, self, name="port61", sizes=(1,))
        self._irq = machine.irqs[self.config.irq].source(f"{self.id}.ch0")
        self._timer = machine.scheduler.timer(f"{self.id}.ch0", self._on_timer)

    def reset(self) -> None:
        super().reset()
        if self.machine is not None:
            self._timer.cancel()
            self._irq.set(False)

    def restore(self, state: PitState) -> None:
        self.state = state
        if self.machine is not None:
            self._irq.set(state.irq_out)
            self._schedule()

    def unrealize(self) -> None:
        if self.machine is not None:
            self._timer.cancel()

    # time -------------------------------------------------------------------------
    def _now(self) -> int:
        assert self.machine is not None
        return self.machine.clock.now

    @staticmethod
    def ticks_to_ns(ticks: int) -> int:
        return -(-ticks * NS_PER_S // PIT_HZ)  # round up: the edge has happened at that ns

    def _elapsed(self, ch: int) -> int:
        """PIT input clocks since the channel started counting."""
        return max(0, (self._now() - self.state.load_ns[ch]) * PIT_HZ // NS_PER_S)

    def _period(self, ch: int) -> int:
        count = self.state.count[ch]
        if self.state.bcd[ch]:
            count = _from_bcd(count & 0xFFFF) or 10000
        return count

    # counter and OUT ------------------------------------------------------------------
    def counter(self, ch: int) -> int:
        """The value the counting element holds now (what a latch would capture)."""
        value = self._value(ch)
        if self.state.bcd[ch]:
            return _to_bcd(value % 10000)
        return value & 0xFFFF

    def _value(self, ch: int) -> int:
        """The current count as a binary number."""
        s = self.state
        mode = s.mode[ch]
        if not s.counting[ch] or mode in (0, 4) and not s.gate[ch]:
            return s.held[ch]
        n = self._period(ch)
        if mode in (2, 3) and not s.gate[ch]:
            return n
        d = self._elapsed(ch)
        if mode == 2:
            return n - d % n
        if mode == 3:
            # counts down by two twice per period
            half = d % n
            value = n - 2 * half if 2 * half < n else n - 2 * (half - n // 2)
            return max(value, 0) & ~1 if n > 1 else 0
        modulus = 10000 if s.bcd[ch] else 0x10000
        return (n - d) % modulus  # 0, 1, 4, 5: count down once, then wrap

    def out(self, ch: int) -> bool:
        """Level of the channel's OUT pin now."""
        s = self.state
        mode = s.mode[ch]
        if not s.counting[ch]:
            return mode != 0  # after a control word: low in mode 0, high otherwise
        n = self._period(ch)
        d = self._elapsed(ch)
        if mode == 0:
            if not s.gate[ch]:
                return False
            return d >= n
        if mode == 1:
            return d >= n
        if mode == 2:
            if not s.gate[ch]:
                return True
            return d % n != n - 1  # low for one clock when the count reaches 1
        if mode == 3:
            if not s.gate[ch]:
                return True
            return (d % n) < (n + 1) // 2
        # modes 4 and 5: one clock low at terminal count
        if mode == 4 and not s.gate[ch]:
            return True
        return d != n

    # channel 0 interrupt -------------------------------------------------------------
    def _schedule(self) -> None:
        """Arm the timer for channel 0's next rising OUT edge (the IRQ 0 edge).

        A one-shot edge that is still owed is armed even when its time has passed (the
        timer then fires at the next ``run_due``): it is never judged "over" by comparing
        the clock with it, since the clock may have moved past it before anyone looked.
        """
        s = self.state
        self._timer.cancel()
        mode = s.mode[0]
        if not s.counting[0] or not s.gate[0] and mode in (0, 2, 3, 4):
            return  # GATE low holds modes 0 and 4 and keeps 2 and 3 high; 1 and 5 ignore it
        n = self._period(0)
        if mode in (2, 3):
            target = (self._elapsed(0) // n + 1) * n  # OUT rises when a period completes
        elif not s.oneshot_pending:
            return
        elif mode in (0, 1):
            target = n  # OUT rises at terminal count
        else:
            target = n + 1  # modes 4, 5: the low strobe is at n, it ends at n + 1
        self._timer.arm(s.load_ns[0] + self.ticks_to_ns(target))

    def _on_timer(self) -> None:
        s = self.state
        mode = s.mode[0]
        if mode in (0, 1):
            self._set_irq(True)  # OUT stays high until the channel is reprogrammed
        else:
            self._set_irq(True)
            self._set_irq(False)
        if mode not in (2, 3):
            s.oneshot_pending = False
        self._schedule()

    def _set_irq(self, level: bool) -> None:
        self.state.irq_out = level
        self._irq.set(level)

    # guest access ------------------------------------------------------------------
    def io_read(self, offset: int, size: int) -> int:
        if offset == 3:
            return 0xFF  # the control word register cannot be read
        return self._read_counter(offset)

    def io_write(self, offset: int, size: int, value: int) -> None:
        value &= 0xFF
        if offset == 3:
            self._control(value)
        else:
            self._write_counter(offset, value)

    def _read_counter(self, ch: int) -> int:
        s = self.state
        if s.status[ch] >= 0:
            value, s.status[ch] = s.status[ch], -1
            return value
        if s.latched[ch] >= 0:
            value = s.latched[ch]
            if s.rw[ch] == RW_LSB:
                s.latched[ch] = -1
                return value & 0xFF
            if s.rw[ch] == RW_MSB:
                s.latched[ch] = -1
                return value >> 8 & 0xFF
            if s.latch_phase[ch] == 0:
                s.latch_phase[ch] = 1
                return value & 0xFF
            s.latch_phase[ch] = 0
            s.latched[ch] = -1
            return value >> 8 & 0xFF
        value = self.counter(ch)
        if s.rw[ch] == RW_LSB:
            return value & 0xFF
        if s.rw[ch] == RW_MSB:
            return value >> 8 & 0xFF
        s.read_phase[ch] ^= 1
        return value & 0xFF if s.read_phase[ch] else value >> 8 & 0xFF

    def _control(self, value: int) -> None:
        s = self.state
        ch = value >> 6
        if ch == 3:  # read-back
            for c in range(3):
                if value & (2 << c):
                    if not value & 0x20 and s.latched[c] < 0:
                        s.latched[c] = self.counter(c)
                        s.latch_phase[c] = 0
                    if not value & 0x10 and s.status[c] < 0:
                        s.status[c] = self._status(c)
            return
        rw = value >> 4 & 3
        if rw == RW_LATCH:
            if s.latched[ch] < 0:
                s.latched[ch] = self.counter(ch)
                s.latch_phase[ch] = 0
            return
        mode = value >> 1 & 7
        if mode > 5:
            mode -= 4  # 6 and 7 are aliases of 2 and 3
        s.mode[ch] = mode
        s.rw[ch] = rw
        s.bcd[ch] = value & 1
        s.write_phase[ch] = 0
        s.read_phase[ch] = 0
        s.latched[ch] = -1
        s.status[ch] = -1
        s.null_count[ch] = 1
        # a control word stops the counter until a new count is written; OUT takes its
        # initial level (low in mode 0, high otherwise)
        s.held[ch] = self._value(ch) if s.counting[ch] else s.held[ch]
        s.counting[ch] = 0
        if ch == 0:
            self._timer.cancel()
            s.oneshot_pending = False
            # OUT's new initial level is not passed on as an edge: the line idles low
            self._set_irq(False)

    def _status(self, ch: int) -> int:
        s = self.state
        out = self.out(ch) if s.counting[ch] else s.mode[ch] != 0
        return (int(out) << 7 | s.null_count[ch] << 6 | s.rw[ch] << 4 | s.mode[ch] << 1 | s.bcd[ch])

    def _write_counter(self, ch: int, value: int) -> None:
        s = self.state
        rw = s.rw[ch]
        if rw == RW_LSB:
            self._load(ch, value)
        elif rw == RW_MSB:
            self._load(ch, value << 8)
        elif s.write_phase[ch] == 0:
            s.write_lsb[ch] = value
            s.write_phase[ch] = 1
            if s.mode[ch] == 0 and ch == 0:
                # writing the first byte in mode 0 stops counting (OUT stays low)
                self._timer.cancel()
        else:
            s.write_phase[ch] = 0
            self._load(ch, s.write_lsb[ch] | value << 8)

    def _load(self, ch: int, count: int) -> None:
        s = self.state
        s.count[ch] = count or 0x10000
        if s.bcd[ch] and count == 0:
            s.count[ch] = 0
        s.null_count[ch] = 0
        mode = s.mode[ch]
        if mode in (1, 5) and not (s.counting[ch] and s.gate[ch]):
            # hardware-triggered modes wait for a GATE rising edge
            s.held[ch] = self._period(ch)
            return
        s.counting[ch] = 1
        s.load_ns[ch] = self._now()
        if mode in (0, 4) and not s.gate[ch]:
            s.held[ch] = self._period(ch)
        if ch == 0:
            if mode == 0:
                self._set_irq(False)
            s.oneshot_pending = mode not in (2, 3)
            self._schedule()

    # GATE (channel 2 via port 0x61) --------------------------------------------------
    def set_gate(self, ch: int, level: bool) -> None:
        s = self.state
        level = int(bool(level))
        if level == s.gate[ch]:
            return
        mode = s.mode[ch]
        if mode in (0, 4) and s.counting[ch]:
            if not level:
                s.held[ch] = self._value(ch)
                s.gate[ch] = 0
            else:
                # resume where it stopped: pretend the count started earlier
                done = (self._period(ch) - s.held[ch]) % (10000 if s.bcd[ch] else 0x10000)
                s.gate[ch] = 1
                s.load_ns[ch] = self._now() - done * NS_PER_S // PIT_HZ
        else:
            s.gate[ch] = level
            if level and (mode in (1, 2, 3, 5)):
                # rising edge (re)starts the count
                if s.counting[ch] or mode in (1, 5) and s.null_count[ch] == 0:
                    s.counting[ch] = 1
                    s.load_ns[ch] = self._now()
                    if ch == 0 and mode in (1, 5):
                        s.oneshot_pending = True  # a trigger starts a new one-shot
                        if mode == 1:
                            self._set_irq(False)  # mode 1: OUT low until terminal count
        if ch == 0:
            self._schedule()

    def _read_61(self, offset: int, size: int) -> int:
        s = self.state
        value = s.port61 & 0x0F
        if (self._now() // REFRESH_NS) & 1:
            value |= 0x10
        if self.out(2):
            value |= 0x20
        return value

    def _write_61(self, offset: int, size: int, value: int) -> None:
        self.state.port61 = value & 0x0F
        self.set_gate(2, bool(value & 1))
