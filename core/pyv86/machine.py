"""The machine: owns memory, buses, IRQ lines, the clock, devices and the CPU, and runs them.

Build one from a machine file with :func:`pyv86.config.load_machine_config` and
:meth:`Machine.from_config`, or by hand in tests (``Machine(memory=...)`` then
``add_device``). The lifecycle is ``realize`` (devices claim resources) -> ``reset`` ->
``run`` -> ``stop``. The machine is also the CPU's host: the CPU calls ``port_read`` and
``port_write`` (the port bus's own methods), :meth:`mmio_read`/... during a slice, and the
interrupt controller drives the CPU's INTR pin through :meth:`set_intr`.

The run loop executes the CPU in slices bounded by the next timer deadline, fires due
timers, and while the CPU halts either jumps virtual time to the next deadline or (in
realtime mode) sleeps until it or until another thread hands work over with
:meth:`call_soon_threadsafe`.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Protocol

from pyv86.bus import MmioBus, PortBus
from pyv86.clock import Clock, Scheduler
from pyv86.devices.base import Device
from pyv86.errors import ConfigError, GuestError
from pyv86.irq import IrqLines
from pyv86.memory import GuestMemory
from pyv86.pci import PciBus

if TYPE_CHECKING:
    from pyv86.config import MachineConfig
    from pyv86.net.base import NetBackend
    from pyv86.plugins.manager import PluginManager

log = logging.getLogger(__name__)

DEFAULT_SLICE = 200_000  # instructions per CPU slice when no timer is nearer


class InterruptController(Protocol):
    def acknowledge(self) -> int | None:
        """The CPU takes the interrupt: return its vector (None if none is pending)."""


class Machine:
    """A PC: memory, buses, IRQs, clock, devices, optionally a CPU."""

    def __init__(self, memory: int = 128 << 20, *, clock_mode: str = "virtual",
                 ns_per_insn: float = 1.0, plugins: PluginManager | None = None,
                 name: str = "machine") -> None:
        self.name = name
        self.memory = GuestMemory(memory)
        self.ports = PortBus()
        self.mmio = MmioBus()
        # the CPU's port exits go straight to the bus: a guest under network load makes
        # ~30 of them per frame, and each Python call level costs ~0.1 us of each
        self.port_read = self.ports.read
        self.port_write = self.ports.write
        self.irqs = IrqLines()
        self.pci = PciBus(self.ports, self.mmio, self.irqs)
        self.clock = Clock(clock_mode, ns_per_insn)
        self.scheduler = Scheduler(self.clock)
        self.plugins = plugins
        self.config: MachineConfig | None = None
        self.devices: dict[str, Device] = {}
        self.netdevs: dict[str, NetBackend] = {}
        self.cpu: Any = None
        self.interrupt_controller: InterruptController | None = None
        self.boot_hooks: list[Callable[[Machine], None]] = []
        self._intr = False
        self._realized = False
        self._stop_reason: str | None = None
        self.exit_status: int | None = None
        self._pending: collections.deque[Callable[[], None]] = collections.deque()
        self._after_slice: list[Callable[[], None]] = []
        self._in_slice = False
        self._wakeup = threading.Event()
        self._reset_requested: str | None = None
        self.thread: threading.Thread | None = None

    # construction -------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: MachineConfig, plugins: PluginManager) -> Machine:
        """Build and realize a machine from a validated machine file."""
        from pyv86.config import build_devices

        machine = cls(config.memory, clock_mode=config.clock, plugins=plugins,
                      name=config.name)
        machine.config = config
        build_devices(machine, config, plugins)
        if config.cpu_enabled:
            machine.attach_cpu()
        machine.realize()
        return machine

    def add_device(self, device: Device) -> Device:
        if device.id in self.devices:
            raise ConfigError(f"device id {device.id!r} is used twice")
        self.devices[device.id] = device
        if self._realized:
            device.realize(self)
            device.reset()
        return device

    def attach_cpu(self) -> Any:
        """Create the native CPU (compiles or loads the cached interpreter)."""
        from pyv86.cpu import CPU

        self.cpu = CPU(self.memory, self)
        self.cpu.set_intr(self._intr)
        from pyv86.cpu.state import PORT_WINDOWS
        self.ports.serve_windows(self.cpu.set_port_windows, PORT_WINDOWS)
        return self.cpu

    def realize(self) -> None:
        if self._realized:
            return
        for device in list(self.devices.values()):
            try:
                device.realize(self)
            except ValueError as exc:  # port/MMIO/PCI slot clashes and bad wiring
                raise ConfigError(f"device {device.id} ({device.kind}): {exc}") from None
        self.pci.assign_resources()
        self._realized = True
        if self.plugins is not None:
            self.plugins.hook.pyv86_machine_created(machine=self)
        self.reset("power-on")

    def reset(self, reason: str = "api") -> None:
        """Reset CPU and devices, then run the boot hooks (direct kernel boot)."""
        for device in self.devices.values():
            device.reset()
        self.pci.assign_resources()
        if self.cpu is not None:
            self.cpu.reset()
        for hook in self.boot_hooks:
            hook(self)
        if self.plugins is not None:
            self.plugins.hook.pyv86_machine_reset(machine=self, reason=reason)

    def request_reset(self, reason: str = "guest") -> None:
        """Ask for a reset at the end of the current slice (safe from device callbacks)."""
        self._reset_requested = reason
        if self.cpu is not None:
            self.cpu.request_stop()

    def request_save(self, path: str, done: Callable[..., None] | None = None) -> None:
        """Write a state image at the next slice boundary (safe from any thread, e.g. a console key)."""
        from pyv86.state.live import request_save

        request_save(self, path, done)

    def device(self, id: str) -> Device:
        return self.devices[id]

    def devices_of(self, kind: type) -> list[Any]:
        return [d for d in self.devices.values() if isinstance(d, kind)]

    # the CPU's host interface ----------------------------------------------------------
    def port_read_string(self, port: int, size: int, count: int) -> bytes:
        return self.ports.read_string(port, size, count)

    def port_write_string(self, port: int, size: int, data: bytes) -> None:
        self.ports.write_string(port, size, data)

    def mmio_read(self, addr: int, size: int) -> int:
        return self.mmio.read(addr, size)

    def mmio_write(self, addr: int, size: int, value: int) -> None:
        self.mmio.write(addr, size, value)

    def interrupt_ack(self) -> int | None:
        if self.interrupt_controller is None:
            return None
        return self.interrupt_controller.acknowledge()

    def set_interrupt_controller(self, controller: InterruptController) -> None:
        self.interrupt_controller = controller

    def set_intr(self, level: bool) -> None:
        """The interrupt controller's output, wired to the CPU's INTR pin."""
        self._intr = bool(level)
        if self.cpu is not None:
            self.cpu.set_intr(self._intr)
        if level and not self._wakeup.is_set():
            self._wakeup.set()

    # threads ---------------------------------------------------------------------
    def call_soon_threadsafe(self, fn: Callable[[], None], *, cut_slice: bool = True) -> None:
        """Run ``fn`` on the machine thread between two slices (backends use this).

        By default the running slice ends early so that ``fn`` runs at once. With
        ``cut_slice=False`` it runs when the slice ends by itself: at the next timer
        deadline, after at most ``DEFAULT_SLICE`` instructions (200 µs of virtual guest
        time), or at once if the guest is idle. Received frames are handed over this way:
        stopping the CPU for every frame cost more host time than the frame itself, and
        the guest then takes the frames that arrived during a slice in one interrupt, as
        a NIC with interrupt moderation delivers them."""
        self._pending.append(fn)
        self._wakeup.set()
        if cut_slice and self.cpu is not None and threading.current_thread() is not self.thread:
            try:
                self.cpu.request_stop()
            except Exception:  # noqa: BLE001 - the CPU may be mid-construction
                pass

    def after_slice(self, fn: Callable[[], None]) -> bool:
        """Have ``fn`` run once, on the machine thread, as soon as the running CPU slice ends.

        For work that costs less done once per slice than once per guest access: a backend
        sends the frames the NIC transmitted during a slice in one system call (the guest
        sees no difference: TX completion is signalled at once, and a slice is at most
        ``DEFAULT_SLICE`` instructions). Returns False, doing nothing, when not called on
        the machine thread during a slice (a test or tool driving a device without a
        running CPU): the caller then does the work at once."""
        if not self._in_slice or threading.current_thread() is not self.thread:
            return False
        self._after_slice.append(fn)
        return True

    def _run_after_slice(self) -> None:
        todo, self._after_slice = self._after_slice, []
        for fn in todo:
            fn()

    def _drain_pending(self) -> None:
        pending = self._pending
        while pending:
            fn = pending.popleft()
            fn()

    # running -----------------------------------------------------------------------
    def stop(self, reason: str = "user", exit_status: int | None = None) -> None:
        """Stop the run loop at the next slice boundary (safe from any thread)."""
        if self._stop_reason is None:
            self._stop_reason = reason
            self.exit_status = exit_status
        self._wakeup.set()
        if self.cpu is not None:
            self.cpu.request_stop()

    @property
    def stopped(self) -> bool:
        return self._stop_reason is not None

    @property
    def stop_reason(self) -> str | None:
        return self._stop_reason

    def run(self, *, until_ns: int | None = None, max_instructions: int | None = None,
            timeout_s: float | None = None) -> str:
        """Run until stopped, until guest time ``until_ns``, or a budget runs out.

        Returns the stop reason (``"until"``, ``"budget"``, ``"timeout"``, ``"idle"``
        or whatever :meth:`stop` was given).
        """
        self.realize()
        self.thread = threading.current_thread()
        clock, scheduler, cpu = self.clock, self.scheduler, self.cpu
        executed_total = 0
        wall_deadline = time.monotonic() + timeout_s if timeout_s is not None else None
        self._stop_reason = None
        while True:
            if self._pending:
                self._drain_pending()
            scheduler.run_due()
            if self._reset_requested is not None:
                reason, self._reset_requested = self._reset_requested, None
                self.reset(reason)
            if self._stop_reason is not None:
                break
            if until_ns is not None and clock.now >= until_ns:
                self._stop_reason = "until"
                break
            if max_instructions is not None and executed_total >= max_instructions:
                self._stop_reason = "budget"
                break
            if wall_deadline is not None and time.monotonic() >= wall_deadline:
                self._stop_reason = "timeout"
                break
            deadline = scheduler.next_deadline()
            if until_ns is not None:
                deadline = until_ns if deadline is None else min(deadline, until_ns)
            if cpu is None or (cpu.halted and not self._intr):
                if not self._idle(deadline, wall_deadline):
                    self._stop_reason = "idle"
                    break
                continue
            budget = clock.insns_until(deadline, DEFAULT_SLICE)
            if max_instructions is not None:
                budget = max(1, min(budget, max_instructions - executed_total))
            clock.start_slice()  # devices see this instant for the whole slice (both modes)
            if cpu.tsc < clock.now:  # the TSC counts guest ns; catch up after idle jumps
                cpu.tsc = clock.now
            self._in_slice = True
            try:
                executed = cpu.run(budget)
            except GuestError:
                raise
            except Exception as exc:
                if type(exc).__name__ == "TripleFault":
                    log.warning("%s: triple fault (%s); resetting", self.name, exc)
                    if self.config is not None and self.config.on_triple_fault == "stop":
                        self._stop_reason = "triple-fault"
                        break
                    self.reset("guest")
                    continue
                raise
            finally:  # (also after a triple fault or an exception from a device)
                self._in_slice = False
                if self._after_slice:
                    self._run_after_slice()
            executed_total += executed
            clock.advance_insns(executed)
            if not executed and cpu.halted and not self._pending:
                # HLT with IF=0 while INTR is high: only time (timers) can change anything
                if not self._idle(deadline, wall_deadline):
                    self._stop_reason = "idle"
                    break
        reason = self._stop_reason
        return reason

    def _idle(self, deadline: int | None, wall_deadline: float | None) -> bool:
        """Nothing to execute: move time to the next event. False if nothing can ever happen."""
        if self.clock.mode == "virtual":
            if self._pending:
                return True
            if deadline is None:
                if self.netdevs and self._has_external_sources():
                    return self._wait(None, wall_deadline)
                return False
            if self.netdevs and self._has_external_sources():
                # Connected to the outside: idle guest time passes in real time, so peers
                # (DHCP servers, relays) get the time to answer that the guest's timeouts
                # promise. A frame arriving ends the wait early; time moves by what passed.
                start_wall, start_ns = time.monotonic(), self.clock.now
                self._wait(deadline, wall_deadline)
                elapsed = int((time.monotonic() - start_wall) * 1e9)
                # Only what really passed: the wait also ends early on a wakeup left set by
                # an earlier interrupt (set_intr), and jumping to the deadline then made idle
                # guest time run ~14x faster than the host's (DHCP/TCP timeouts expired early).
                self.clock.advance_to(min(deadline, start_ns + elapsed))
                return True
            self.clock.advance_to(deadline)
            return True
        self.clock.follow_host()  # in case a slice ended without advance_insns (an exception)
        if deadline is None:
            return self._wait(None, wall_deadline) or bool(self.netdevs)
        return self._wait(deadline, wall_deadline)

    def _has_external_sources(self) -> bool:
        """True if a backend can deliver frames from outside this machine (not ``null:``)."""
        return any(getattr(b, "external", True) for b in self.netdevs.values())

    def _wait(self, deadline: int | None, wall_deadline: float | None) -> bool:
        timeout = None
        if deadline is not None:
            timeout = max(0.0, (deadline - self.clock.now) / 1e9)
        if wall_deadline is not None:
            left = max(0.0, wall_deadline - time.monotonic())
            timeout = left if timeout is None else min(timeout, left)
        if timeout is None:
            timeout = 0.05
        self._wakeup.wait(timeout)
        self._wakeup.clear()
        return True

    def shutdown(self, reason: str = "user") -> None:
        """Release every device and backend."""
        if self.plugins is not None:
            self.plugins.hook.pyv86_machine_stopped(machine=self, reason=reason)
        for device in self.devices.values():
            try:
                device.unrealize()
            except Exception:  # noqa: BLE001
                log.exception("%s: unrealize failed", device.id)
        for backend in self.netdevs.values():
            try:
                backend.close()
            except Exception:  # noqa: BLE001
                log.exception("netdev close failed")
        jit = getattr(self.cpu, "jit", None)
        if jit is not None:
            jit.close()
