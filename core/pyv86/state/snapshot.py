"""Saving and restoring a whole machine: which records an image holds and how they apply.

Records, in manifest order (each ``{kind, id, version, fields}``):

``machine/machine``   RAM size and the machine's name (a size mismatch is refused)
``clock/clock``       guest time in ns
``ram/ram``           guest RAM, a ``pages`` blob
``cpu/cpu0``          ``machine.cpu.save()`` (absent when the machine has no CPU)
``pci/00:05.0``       each PCI function's 256-byte configuration space, by slot
``<kind>/<id>``       one per device, from ``device.save()`` (its attrs State)
``hooks/extra``       what ``pyv86_before_save`` implementations added

Restoring checks the whole image first — checksums, versions, upgrade chain, that every
device in the image exists in the machine with the same kind and vice versa, RAM decoded
into a scratch buffer — and only then touches the machine, so a bad image changes
nothing. Backends (netdev URLs) are never in an image: restoring into a machine file that
differs only in its ``[netdev.*]`` tables works. The NIC MAC policy
(:mod:`pyv86.state.macpolicy`) runs after the devices are restored.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from pyv86.errors import StateError
from pyv86.state import pages
from pyv86.state.container import Blob, Image, decode_blob, read_image, write_image
from pyv86.state.fields import BlobSink, Decoder, fields_to_state, state_to_fields, upgrade_fields

if TYPE_CHECKING:
    from pyv86.machine import Machine

log = logging.getLogger(__name__)

MACHINE_VERSION = 1
CLOCK_VERSION = 1
RAM_VERSION = 1
PCI_VERSION = 1
HOOKS_VERSION = 1
RESERVED_KINDS = ("machine", "clock", "ram", "cpu", "pci", "hooks")


@attrs.define
class SaveResult:
    path: str
    image_bytes: int
    seconds: float


@attrs.define
class RestoreResult:
    path: str
    seconds: float
    mac_changes: list[str] = attrs.field(factory=list)


def _pci_id(devfn: int) -> str:
    return f"00:{devfn >> 3:02x}.{devfn & 7}"


def _cpu_version(cpu: Any) -> int:
    version = getattr(cpu, "STATE_VERSION", 1)
    return version if isinstance(version, int) and version >= 1 else 1


def build_records(machine: Machine, *, level: int = 1) -> tuple[list[dict[str, Any]], list[Blob]]:
    """Collect every record and blob of ``machine`` (stopped between instructions)."""
    sink = BlobSink(level)
    records: list[dict[str, Any]] = []

    def add(kind: str, rid: str, version: int, fields: dict[str, Any]) -> None:
        records.append({"kind": kind, "id": rid, "version": version, "fields": fields})

    add("machine", "machine", MACHINE_VERSION, {"memory": machine.memory.size, "name": machine.name})
    add("clock", "clock", CLOCK_VERSION, {"now": int(machine.clock.save()["now"])})
    sink.add_blob(Blob("ram", "pages", machine.memory.size, pages.encode_pages(machine.memory.ram, level=level)))
    add("ram", "ram", RAM_VERSION, {"size": machine.memory.size, "blob": "ram"})
    cpu = machine.cpu
    if cpu is not None:
        if not callable(getattr(cpu, "save", None)):
            raise StateError(f"{machine.name}: the CPU cannot be saved (it has no save())")
        add("cpu", "cpu0", _cpu_version(cpu), state_to_fields(cpu.save(), sink, "cpu0"))
    for devfn in sorted(machine.pci.functions):
        function = machine.pci.functions[devfn]
        add("pci", _pci_id(devfn), PCI_VERSION, {
            "name": function.name, "vendor_id": function.vendor_id, "device_id": function.device_id,
            "config": {"$hex": bytes(function.save()).hex(), "type": "bytes"}})
    for device in machine.devices.values():
        if device.kind in RESERVED_KINDS:
            raise StateError(f"device {device.id}: kind {device.kind!r} is reserved in state images")
        state = device.save()
        version = getattr(type(device).state_cls, "VERSION", 1)
        try:
            fields = state_to_fields(state, sink, f"{device.id}")
        except TypeError as exc:
            raise StateError(f"device {device.kind}/{device.id}: cannot be saved: {exc}") from None
        add(device.kind, device.id, version, fields)
    extra: dict[str, Any] = {}
    if machine.plugins is not None:
        machine.plugins.hook.pyv86_before_save(machine=machine, extra=extra)
    try:
        add("hooks", "extra", HOOKS_VERSION, state_to_fields(extra, sink, "extra"))
    except TypeError as exc:
        raise StateError(f"pyv86_before_save: {exc}") from None
    return records, sink.blobs


def save_machine(machine: Machine, path: str | Path, *, level: int = 1) -> SaveResult:
    """Write ``machine``'s complete state to ``path`` (atomically). Call between slices."""
    start = time.perf_counter()
    records, blobs = build_records(machine, level=level)
    size = write_image(path, records, blobs)
    took = time.perf_counter() - start
    log.info("%s: saved %s (%d bytes, %.2f s)", machine.name, path, size, took)
    return SaveResult(str(path), size, took)


@attrs.define
class _Plan:
    """Everything decoded from an image, ready to apply without further checks."""

    ram: np.ndarray
    clock_now: int
    cpu: dict[str, Any] | None
    pci: list[tuple[Any, bytes]]
    devices: list[tuple[Any, Any]]
    extra: dict[str, Any]


def _blob_getter(image: Image, where: str):
    def get(name: str) -> bytes:
        blob = image.blobs.get(name)
        if blob is None:
            raise StateError(f"{where}: refers to blob {name!r}, which the image does not have")
        return decode_blob(image.path, blob)
    return get


def plan_restore(machine: Machine, image: Image) -> _Plan:
    """Check and decode every record of ``image`` against ``machine``; change nothing."""
    shown = image.path
    by_key: dict[tuple[str, str], dict[str, Any]] = {}
    for record in image.records:
        key = (record["kind"], record["id"])
        if key in by_key:
            raise StateError(f"{shown}: record {key[0]}/{key[1]}: appears twice")
        by_key[key] = record

    def need(kind: str, rid: str) -> dict[str, Any]:
        record = by_key.get((kind, rid))
        if record is None:
            raise StateError(f"{shown}: record {kind}/{rid} is missing (not a complete machine image)")
        return record

    def simple(record: dict[str, Any], current: int, keys: dict[str, type]) -> dict[str, Any]:
        where = f"{shown}: record {record['kind']}/{record['id']}"
        fields = upgrade_fields(where, None, record["version"], current, record["fields"])
        for key, typ in keys.items():
            value = fields.get(key)
            if not isinstance(value, typ) or isinstance(value, bool) and typ is not bool:
                raise StateError(f"{where}: field {key}: missing or not a {typ.__name__}")
        return fields

    mrec = simple(need("machine", "machine"), MACHINE_VERSION, {"memory": int})
    if mrec["memory"] != machine.memory.size:
        raise StateError(f"{shown}: record machine/machine: the image has {mrec['memory'] >> 20} MiB of RAM, "
                         f"this machine {machine.memory.size >> 20} MiB; set [machine] memory to match")
    device_records = [r for r in image.records if r["kind"] not in RESERVED_KINDS]
    image_ids = {r["id"]: r for r in device_records}
    for record in device_records:
        kind, rid = record["kind"], record["id"]
        device = machine.devices.get(rid)
        if device is None:
            raise StateError(f"{shown}: record {kind}/{rid}: the machine has no device {rid!r} "
                             f"(its devices: {', '.join(machine.devices) or 'none'})")
        if device.kind != kind:
            raise StateError(f"{shown}: record {kind}/{rid}: device {rid!r} is a {device.kind!r} in "
                             f"the machine, a {kind!r} in the image")
    for did, device in machine.devices.items():
        if did not in image_ids:
            raise StateError(f"{shown}: the image has no record for device {did!r} ({device.kind}); "
                             f"was it added to the machine file after the save?")

    now = simple(need("clock", "clock"), CLOCK_VERSION, {"now": int})["now"]
    if now < 0:
        raise StateError(f"{shown}: record clock/clock: field now: negative time")
    ram_rec = simple(need("ram", "ram"), RAM_VERSION, {"size": int, "blob": str})
    blob = image.blobs.get(ram_rec["blob"])
    if blob is None or blob.encoding != "pages":
        raise StateError(f"{shown}: record ram/ram: blob {ram_rec['blob']!r} is missing or not page data")
    ram = pages.decode_pages(f"{shown}: blob {blob.name}", blob.data, machine.memory.size)

    cpu_fields = None
    cpu_records = [r for r in image.records if r["kind"] == "cpu"]
    if machine.cpu is not None:
        record = need("cpu", "cpu0")
        where = f"{shown}: record cpu/cpu0"
        fields = upgrade_fields(where, machine.cpu, record["version"], _cpu_version(machine.cpu),
                                record["fields"])
        decoder = Decoder(where, _blob_getter(image, where))
        cpu_fields = {k: decoder.value(v, k) for k, v in fields.items()}
        _check_cpu_fields(where, machine.cpu.save(), cpu_fields)
    elif cpu_records:
        raise StateError(f"{shown}: record cpu/{cpu_records[0]['id']}: the image has a CPU, this machine "
                         f"has none ([machine] cpu = false)")

    pci_plan = []
    pci_records = {r["id"]: r for r in image.records if r["kind"] == "pci"}
    for devfn in sorted(machine.pci.functions):
        function = machine.pci.functions[devfn]
        rid = _pci_id(devfn)
        record = pci_records.pop(rid, None)
        if record is None:
            raise StateError(f"{shown}: the image has no PCI function at {rid} ({function.name}); "
                             f"the machine file has a device the saved machine did not")
        where = f"{shown}: record pci/{rid}"
        fields = upgrade_fields(where, None, record["version"], PCI_VERSION, record["fields"])
        config = Decoder(where, _blob_getter(image, where)).value(fields.get("config"), "config")
        if not isinstance(config, bytes) or len(config) != 256:
            raise StateError(f"{where}: field config: not 256 bytes of configuration space")
        ident = (config[0] | config[1] << 8, config[2] | config[3] << 8)
        if ident != (function.vendor_id, function.device_id):
            raise StateError(f"{where}: the image has {ident[0]:04x}:{ident[1]:04x} "
                             f"({fields.get('name', '?')}) here, the machine "
                             f"{function.vendor_id:04x}:{function.device_id:04x} ({function.name})")
        pci_plan.append((function, config))
    if pci_records:
        rid = sorted(pci_records)[0]
        raise StateError(f"{shown}: record pci/{rid}: the machine has no PCI function at {rid}")

    device_plan = []
    for record in device_records:
        kind, rid = record["kind"], record["id"]
        where = f"{shown}: record {kind}/{rid}"
        device = machine.devices[rid]
        decoder = Decoder(where, _blob_getter(image, where))
        state_cls = type(device).state_cls
        if attrs.has(state_cls):
            state = fields_to_state(where, state_cls, record["version"], record["fields"], decoder)
        else:
            fields = upgrade_fields(where, state_cls, record["version"], getattr(state_cls, "VERSION", 1),
                                    record["fields"])
            state = {k: decoder.value(v, k) for k, v in fields.items()}
        device_plan.append((device, state))
    hooks = by_key.get(("hooks", "extra"))
    extra: dict[str, Any] = {}
    if hooks is not None:
        where = f"{shown}: record hooks/extra"
        fields = upgrade_fields(where, None, hooks["version"], HOOKS_VERSION, hooks["fields"])
        decoder = Decoder(where, _blob_getter(image, where))
        extra = {k: decoder.value(v, k) for k, v in fields.items()}
    return _Plan(ram, now, cpu_fields, pci_plan, device_plan, extra)


def _check_cpu_fields(where: str, template: dict[str, Any], fields: dict[str, Any]) -> None:
    """The CPU's save() dict: same keys, same kinds, same lengths, integers in 64 bits."""
    from pyv86.state.fields import _incompatible

    for key, value in fields.items():
        if key not in template:
            raise StateError(f"{where}: field {key!r} is unknown to this CPU")
        default = template[key]
        problem = _incompatible(default, value)
        if problem is None and isinstance(default, (bytes, bytearray)) and len(value) != len(default):
            problem = f"expected {len(default)} bytes, got {len(value)}"
        values = value if isinstance(value, list) else [value]
        if problem is None and any(isinstance(v, int) and not -(1 << 63) <= v < (1 << 64) for v in values):
            problem = "integer out of range"
        if problem is None and isinstance(value, list) and not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value):
            problem = "expected a list of integers"
        if problem:
            raise StateError(f"{where}: field {key}: {problem}")


def restore_machine(machine: Machine, path: str | Path, *, preserve_mac: bool | None = None,
                    mac_translation: bool | None = None, data: bytes | None = None,
                    image: Image | None = None) -> RestoreResult:
    """Load the image at ``path`` into ``machine`` (realized, not running).

    MAC options default to the machine file's ``preserve_mac_from_state_image`` /
    ``mac_address_translation`` (both false without a machine file): by default every NIC
    gets a new random MAC. Raises :class:`StateError` (one line) and leaves the machine
    untouched if anything in the image is wrong.
    """
    start = time.perf_counter()
    machine.realize()
    if image is None:
        image = read_image(path, data)
    plan = plan_restore(machine, image)
    config = machine.config
    if preserve_mac is None:
        preserve_mac = bool(config and config.preserve_mac_from_state_image)
    if mac_translation is None:
        mac_translation = bool(config and config.mac_address_translation)

    np.copyto(machine.memory.ram, plan.ram)
    machine.clock.restore({"now": plan.clock_now})
    for function, config_space in plan.pci:
        function.restore(config_space)
    for device, state in plan.devices:
        try:
            device.restore(state)
        except StateError:
            raise
        except Exception as exc:  # noqa: BLE001 - a plugin refused its state
            raise StateError(f"{image.path}: record {device.kind}/{device.id}: restore failed: "
                             f"{type(exc).__name__}: {exc}") from None
    if machine.cpu is not None and plan.cpu is not None:
        try:
            machine.cpu.restore(plan.cpu)
        except StateError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise StateError(f"{image.path}: record cpu/cpu0: restore failed: {type(exc).__name__}: {exc}") from None
        machine.cpu.set_intr(machine._intr)
    from pyv86.state.macpolicy import apply_mac_policy

    changes = apply_mac_policy(machine, preserve=preserve_mac, translate=mac_translation)
    if machine.plugins is not None:
        machine.plugins.hook.pyv86_after_restore(machine=machine, extra=plan.extra)
    took = time.perf_counter() - start
    log.info("%s: restored %s (%.2f s)", machine.name, path, took)
    return RestoreResult(str(path), took, changes)
