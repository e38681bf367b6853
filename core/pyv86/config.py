"""Machine files: TOML in, validated frozen configs out, every mistake one clear line.

Format (``version = 1``)::

    version = 1
    [machine]      memory = "128M", clock = "realtime"|"virtual", cpu = true,
                   on_triple_fault = "reset"|"stop"
    [boot]         kernel = "...", initrd = "...", cmdline = "..."   (paths relative to the file)
    [device.<id>]  type = "<kind>", netdev = "<netdev id>", <options of that kind>
    [netdev.<id>]  url = "<scheme>:...", pcap = "<file>" (optional recording)
    [state]        image = "...", preserve_mac_from_state_image, mac_address_translation

v86's option names are accepted at the top level where they map: ``memory_size``,
``bzimage``, ``initrd``, ``cmdline``, ``network_relay_url`` (adds an ``ne2k-pci`` NIC on
that relay), ``preserve_mac_from_state_image``, ``mac_address_translation``.

Errors read ``FILE:LINE: table.key: problem; hint`` and the CLI exits with status 2.
"""
from __future__ import annotations

import re
import tomllib
import types
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from pyv86.errors import ConfigError
from pyv86.net.base import url_scheme
from pyv86.paths import resolve_file

if TYPE_CHECKING:
    from pyv86.machine import Machine
    from pyv86.plugins.manager import PluginManager

FORMAT_VERSION = 1

V86_TOP_LEVEL = {
    "memory_size": ("machine", "memory"),
    "bzimage": ("boot", "kernel"),
    "initrd": ("boot", "initrd"),
    "cmdline": ("boot", "cmdline"),
    "preserve_mac_from_state_image": ("state", "preserve_mac_from_state_image"),
    "mac_address_translation": ("state", "mac_address_translation"),
}
TOP_LEVEL_KEYS = {"version", "name", "machine", "boot", "device", "netdev", "state",
                  "network_relay_url", *V86_TOP_LEVEL}
MACHINE_KEYS = {"memory": "size of guest RAM (\"128M\", \"1G\" or bytes)",
                "clock": "\"realtime\" (follow the host clock) or \"virtual\" (deterministic)",
                "cpu": "create the CPU (false: devices only, for device tests)",
                "on_triple_fault": "\"reset\" the machine (default) or \"stop\" it"}
BOOT_KEYS = {"kernel": "bzImage to boot directly (the 32-bit boot protocol)",
             "initrd": "initramfs loaded at the top of RAM",
             "cmdline": "kernel command line",
             "decompress": "\"host\" (the loader unpacks the kernel; falls back to \"guest\" when it "
                           "cannot) or \"guest\" (the bzImage's own decompressor runs in the guest)"}
STATE_KEYS = {"image": "state image to restore at start",
              "preserve_mac_from_state_image": "keep the NIC MAC saved in the image",
              "mac_address_translation": "guest keeps its saved MAC, the wire sees a new one"}
NETDEV_KEYS = {"url": "backend URL, chosen by scheme (hub:, pcap:, null:, ws://, tap:...)",
               "pcap": "also record every frame to this pcap file"}


@attrs.define(frozen=True)
class DeviceSpec:
    id: str
    type: str
    netdev: str | None
    options: dict[str, Any]


@attrs.define(frozen=True)
class NetdevSpec:
    id: str
    url: str
    pcap: str | None = None


@attrs.define(frozen=True)
class MachineConfig:
    """A validated machine file."""

    path: str | None = None
    name: str = "machine"
    memory: int = 128 << 20
    clock: str = "realtime"
    cpu_enabled: bool = True
    on_triple_fault: str = "reset"
    kernel: str | None = None
    initrd: str | None = None
    cmdline: str = ""
    decompress: str = "host"
    devices: tuple[DeviceSpec, ...] = ()
    netdevs: tuple[NetdevSpec, ...] = ()
    state_image: str | None = None
    preserve_mac_from_state_image: bool = False
    mac_address_translation: bool = False
    raw: dict[str, Any] = attrs.field(factory=dict, repr=False, eq=False)


class _Locator:
    """Finds the line of a table or key in the TOML text, for error messages."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()

    def line_of(self, table: tuple[str, ...], key: str | None) -> int | None:
        header = re.compile(r"^\s*\[\s*" + r"\s*\.\s*".join(re.escape(p) for p in table) + r"\s*\]")
        start = 0
        if table:
            for i, line in enumerate(self.lines):
                if header.match(line):
                    start = i
                    break
            else:
                dotted = ".".join(table)
                for i, line in enumerate(self.lines):
                    if line.lstrip().startswith(dotted):
                        return i + 1
                return None
        if key is None:
            return start + 1
        key_re = re.compile(r"^\s*" + re.escape(key) + r"\s*=")
        for i in range(start + (1 if table else 0), len(self.lines)):
            if table and self.lines[i].lstrip().startswith("["):
                break
            if not table and self.lines[i].lstrip().startswith("["):
                break
            if key_re.match(self.lines[i]):
                return i + 1
        if not table:
            # a top-level key may be a table header ([key], [key.sub]) or a dotted key (key.sub = ...)
            as_table = re.compile(r"^\s*(\[\s*" + re.escape(key) + r"\s*[\].]|" + re.escape(key) + r"\s*\.)")
            for i, line in enumerate(self.lines):
                if as_table.match(line):
                    return i + 1
        return start + 1 if table else None

    def error(self, table: tuple[str, ...], key: str | None, message: str) -> ConfigError:
        line = self.line_of(table, key)
        where = self.path + (f":{line}" if line else "")
        name = ".".join([*table, *([key] if key else [])]) or "(top level)"
        return ConfigError(f"{where}: {name}: {message}")


SIZE_RE = re.compile(r"^\s*(\d+)\s*([kmgKMG]?)(i?[bB])?\s*$")


def parse_size(value: Any) -> int:
    """``"128M"`` / ``"1G"`` / ``134217728`` -> bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as \"128M\", not a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        m = SIZE_RE.match(value)
        if m:
            return int(m.group(1)) << {"": 0, "k": 10, "m": 20, "g": 30}[m.group(2).lower()]
    raise ValueError(f"{value!r} is not a size (e.g. \"128M\", \"1G\" or a number of bytes)")


def load_machine_config(path: str | Path, plugins: PluginManager | None = None,
                        text: str | None = None) -> MachineConfig:
    """Read and validate a machine file; raises :class:`ConfigError` with one line."""
    path = Path(path)
    shown = str(path)
    if text is None:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{shown}: no such machine file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{shown}: cannot read machine file: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        where = re.search(r"\(at line (\d+), column \d+\)$", str(exc))
        raise ConfigError(f"{shown}{':' + where.group(1) if where else ''}: not valid TOML: {exc}") from None
    return parse_machine_config(data, shown, text, base_dir=path.parent, plugins=plugins)


def parse_machine_config(data: dict[str, Any], shown: str = "<machine>", text: str = "",
                         base_dir: Path | None = None,
                         plugins: PluginManager | None = None) -> MachineConfig:
    loc = _Locator(shown, text)
    base_dir = base_dir or Path(".")

    def expect(value: Any, typ: type | tuple[type, ...], table: tuple[str, ...], key: str, what: str) -> Any:
        if isinstance(value, bool) and typ in (int, float):
            raise loc.error(table, key, f"expected {what}, got a boolean")
        if not isinstance(value, typ):
            raise loc.error(table, key, f"expected {what}, got {type(value).__name__} {value!r}")
        return value

    def check_keys(table: dict, allowed: dict[str, str] | set[str], where: tuple[str, ...]) -> None:
        for key in table:
            if key not in allowed:
                raise loc.error(where, key, f"unknown key; valid keys: {', '.join(sorted(allowed))}")

    def as_table(value: Any, where: tuple[str, ...]) -> dict:
        if not isinstance(value, dict):
            raise loc.error(where[:-1], where[-1], f"expected a table [{'.'.join(where)}], got {type(value).__name__}")
        return value

    check_keys(data, TOP_LEVEL_KEYS, ())
    if "version" not in data:
        raise loc.error((), None, f"missing 'version = {FORMAT_VERSION}' at the top of the file")
    version = expect(data["version"], int, (), "version", "an integer")
    if version > FORMAT_VERSION:
        raise loc.error((), "version", f"format version {version} is newer than this pyv86 reads "
                                       f"({FORMAT_VERSION}); upgrade pyv86")
    if version < 1:
        raise loc.error((), "version", f"format version {version} does not exist (use {FORMAT_VERSION})")

    machine = as_table(data.get("machine", {}), ("machine",))
    boot = as_table(data.get("boot", {}), ("boot",))
    state = as_table(data.get("state", {}), ("state",))
    check_keys(machine, MACHINE_KEYS, ("machine",))
    check_keys(boot, BOOT_KEYS, ("boot",))
    check_keys(state, STATE_KEYS, ("state",))

    # v86 aliases at the top level
    merged = {"machine": dict(machine), "boot": dict(boot), "state": dict(state)}
    for alias, (table, key) in V86_TOP_LEVEL.items():
        if alias in data:
            if key in merged[table]:
                raise loc.error((), alias, f"also set as [{table}] {key}; set it once")
            merged[table][key] = data[alias]

    m, b, s = merged["machine"], merged["boot"], merged["state"]
    kwargs: dict[str, Any] = {"path": shown, "raw": data}
    if "name" in data:
        kwargs["name"] = expect(data["name"], str, (), "name", "a string")
    if "memory" in m:
        where = ("machine",) if "memory" in machine else ()
        key = "memory" if where else "memory_size"
        try:
            memory = parse_size(m["memory"])
        except ValueError as exc:
            raise loc.error(where, key, str(exc)) from None
        if memory < 1 << 20 or memory % 4096 or memory > 3 << 30:
            raise loc.error(where, key, f"{memory} bytes is not a multiple of 4 KiB between 1 MiB and 3 GiB")
        kwargs["memory"] = memory
    if "clock" in m:
        clock = expect(m["clock"], str, ("machine",), "clock", "a string")
        if clock not in ("realtime", "virtual"):
            raise loc.error(("machine",), "clock", f"{clock!r} is not \"realtime\" or \"virtual\"")
        kwargs["clock"] = clock
    if "cpu" in m:
        kwargs["cpu_enabled"] = expect(m["cpu"], bool, ("machine",), "cpu", "true or false")
    if "on_triple_fault" in m:
        action = expect(m["on_triple_fault"], str, ("machine",), "on_triple_fault", "a string")
        if action not in ("reset", "stop"):
            raise loc.error(("machine",), "on_triple_fault", f"{action!r} is not \"reset\" or \"stop\"")
        kwargs["on_triple_fault"] = action

    for key in ("kernel", "initrd"):
        if key in b:
            where = ("boot",) if key in boot else ()
            shown_key = key if where else {"kernel": "bzimage", "initrd": "initrd"}[key]
            value = expect(b[key], str, where, shown_key, "a file path")
            kwargs[key] = str(resolve_file(value, base_dir))
    if "cmdline" in b:
        where = ("boot",) if "cmdline" in boot else ()
        cmdline = expect(b["cmdline"], str, where, "cmdline", "a string")
        if len(cmdline) > 2047:
            raise loc.error(where, "cmdline", f"{len(cmdline)} characters; Linux takes at most 2047")
        kwargs["cmdline"] = cmdline
    if "decompress" in boot:
        mode = expect(boot["decompress"], str, ("boot",), "decompress", "a string")
        if mode not in ("host", "guest"):
            raise loc.error(("boot",), "decompress", f"{mode!r} is not \"host\" or \"guest\"")
        kwargs["decompress"] = mode
    if "initrd" in kwargs and "kernel" not in kwargs:
        raise loc.error(("boot",), "initrd", "an initrd needs a kernel ([boot] kernel = ...)")

    if "image" in s:
        kwargs["state_image"] = str(resolve_file(expect(s["image"], str, ("state",), "image", "a file path"), base_dir))
    for key in ("preserve_mac_from_state_image", "mac_address_translation"):
        if key in s:
            where = ("state",) if key in state else ()
            kwargs[key] = expect(s[key], bool, where, key, "true or false")

    # netdevs ------------------------------------------------------------------------
    netdevs: dict[str, NetdevSpec] = {}
    for nid, table in as_table(data.get("netdev", {}), ("netdev",)).items():
        where = ("netdev", nid)
        table = as_table(table, where)
        check_keys(table, NETDEV_KEYS, where)
        if "url" not in table:
            raise loc.error(where, None, "missing 'url' (e.g. url = \"hub:lan\")")
        url = expect(table["url"], str, where, "url", "a URL string")
        scheme = url_scheme(url)
        if not scheme:
            raise loc.error(where, "url", f"{url!r} has no scheme (e.g. \"hub:lan\", \"ws://host:port/\")")
        if plugins is not None and scheme not in plugins.net_backends:
            raise loc.error(where, "url", f"unknown network URL scheme {scheme!r}; installed: "
                                          f"{', '.join(plugins.net_backends.schemes()) or 'none'}")
        pcap = None
        if "pcap" in table:
            pcap = str(resolve_file(expect(table["pcap"], str, where, "pcap", "a file path"), base_dir))
        netdevs[nid] = NetdevSpec(nid, url, pcap)

    # devices ------------------------------------------------------------------------
    devices: list[DeviceSpec] = []
    used_netdevs: dict[str, str] = {}
    for did, table in as_table(data.get("device", {}), ("device",)).items():
        where = ("device", did)
        table = as_table(table, where)
        if "type" not in table:
            raise loc.error(where, None, "missing 'type' (the device kind, e.g. type = \"ne2k-pci\")")
        kind = expect(table["type"], str, where, "type", "a device type name")
        cls = None
        if plugins is not None:
            cls = plugins.devices.get(kind)
            if cls is None:
                raise loc.error(where, "type", f"unknown device type {kind!r}; installed: "
                                               f"{', '.join(plugins.devices.kinds()) or 'none'}")
        netdev = table.get("netdev")
        if netdev is not None:
            netdev = expect(netdev, str, where, "netdev", "a netdev id")
            if cls is not None and not cls.uses_netdev:
                raise loc.error(where, "netdev", f"device type {kind!r} has no network port")
            if netdev not in netdevs:
                raise loc.error(where, "netdev", f"refers to [netdev.{netdev}], which is not defined"
                                                 + (f" (defined: {', '.join(netdevs)})" if netdevs else ""))
            if netdev in used_netdevs:
                raise loc.error(where, "netdev", f"[netdev.{netdev}] is already used by device {used_netdevs[netdev]!r}")
            used_netdevs[netdev] = did
        options = {k: v for k, v in table.items() if k not in ("type", "netdev")}
        if cls is not None:
            build_device_config(cls, options, lambda key, msg, w=where: loc.error(w, key, msg))
        devices.append(DeviceSpec(did, kind, netdev, options))

    if "network_relay_url" in data:
        url = expect(data["network_relay_url"], str, (), "network_relay_url", "a ws:// or wss:// URL")
        if plugins is not None and url_scheme(url) not in plugins.net_backends:
            raise loc.error((), "network_relay_url", f"unknown network URL scheme {url_scheme(url)!r}; "
                            f"installed: {', '.join(plugins.net_backends.schemes()) or 'none'}")
        if "relay" in netdevs:
            raise loc.error((), "network_relay_url", "a [netdev.relay] is already defined")
        netdevs["relay"] = NetdevSpec("relay", url)
        nic = next((d for d in devices if d.netdev is None and d.type == "ne2k-pci"), None)
        if nic is not None:
            devices[devices.index(nic)] = attrs.evolve(nic, netdev="relay")
        else:
            if plugins is not None and "ne2k-pci" not in plugins.devices:
                raise loc.error((), "network_relay_url", "needs the ne2k-pci NIC (pip install pyv86-ne2k)")
            devices.append(DeviceSpec("net0" if "net0" not in {d.id for d in devices} else "relaynic",
                                      "ne2k-pci", "relay", {}))

    kwargs["devices"] = tuple(devices)
    kwargs["netdevs"] = tuple(netdevs.values())
    return MachineConfig(**kwargs)


def _field_type(cls: type, field: attrs.Attribute) -> Any:
    typ = field.type
    if isinstance(typ, str):
        try:
            attrs.resolve_types(cls)
            typ = attrs.fields_dict(cls)[field.name].type
        except Exception:  # noqa: BLE001 - unresolvable annotations are not checked
            return None
    return typ


def _type_ok(value: Any, typ: Any) -> tuple[bool, str]:
    if typ is None or typ is Any:
        return True, ""
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(typ)
        ok = [_type_ok(value, t) for t in options]
        return any(o for o, _ in ok), " or ".join(d for _, d in ok if d)
    if origin is not None:
        return isinstance(value, origin), origin.__name__
    if typ is type(None):
        return value is None, "none"
    if not isinstance(typ, type):
        return True, ""
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return True, "number"
    if typ is int and isinstance(value, bool):
        return False, "integer"
    names = {int: "integer", str: "string", bool: "true or false", float: "number",
             list: "array", dict: "table"}
    return isinstance(value, typ), names.get(typ, typ.__name__)


def build_device_config(cls: type, options: dict[str, Any], error: Any) -> Any:
    """Turn a ``[device.<id>]`` table (minus type/netdev) into ``cls.config_cls``.

    ``error(key, message)`` makes the ConfigError. Unknown keys list the valid ones;
    values are type-checked against the field annotations, then run through the
    field converters and validators (whose ValueError becomes the message).
    """
    config_cls = cls.config_cls
    fields = attrs.fields_dict(config_cls)
    for key, value in options.items():
        if key not in fields:
            valid = ", ".join(["type", *(["netdev"] if cls.uses_netdev else []), *sorted(fields)])
            raise error(key, f"unknown key for device type {cls.kind!r}; valid keys: {valid}")
        field = fields[key]
        if field.converter is None:
            ok, what = _type_ok(value, _field_type(config_cls, field))
            if not ok:
                raise error(key, f"expected {what}, got {type(value).__name__} {value!r}")
    try:
        return config_cls(**options)
    except (ValueError, TypeError) as exc:
        # attrs' own validators raise ValueError(message, attribute, ...): keep the message
        text = exc.args[0] if len(exc.args) > 1 and isinstance(exc.args[0], str) else str(exc)
        bad = next((k for k in options if k in text), None)
        raise error(bad, text) from None


def build_devices(machine: Machine, config: MachineConfig, plugins: PluginManager) -> None:
    """Instantiate the devices and open the backends a config names (not yet realized)."""
    from pyv86.net.attach import open_netdev

    for spec in config.netdevs:
        machine.netdevs[spec.id] = open_netdev(spec, machine, plugins)
    for spec in config.devices:
        cls = plugins.devices.get(spec.type)
        if cls is None:
            raise ConfigError(f"{config.path}: device.{spec.id}.type: unknown device type {spec.type!r}")
        dev_config = build_device_config(
            cls, spec.options,
            lambda key, msg, s=spec: ConfigError(f"{config.path}: device.{s.id}.{key}: {msg}"))
        device = cls(spec.id, dev_config)
        if spec.netdev is not None:
            device.netdev_id = spec.netdev  # type: ignore[attr-defined]
        machine.add_device(device)
