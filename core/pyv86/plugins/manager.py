"""Finding, loading and listing plugins; filling the device and backend registries.

Plugins are modules registered on a pluggy manager: first the built-ins
(:mod:`pyv86.plugins.builtin`), then every entry point of group ``pyv86`` (unless
autoload is off), then modules named with ``-p``. Settings:

``PYV86_DISABLE_PLUGIN_AUTOLOAD=1``
    skip entry points; built-ins and ``-p``/``PYV86_LOAD_PLUGINS`` still load.
``PYV86_LOAD_PLUGINS=a,b``
    load exactly these entry points (by entry-point or distribution name); empty = none.
``PYV86_BLOCK_PLUGINS=a,b`` / ``-p no:NAME``
    block plugins by name.
``PYV86_TRACE_PLUGINS=1``
    print every hook call to stderr.

Every failure becomes a one-line :class:`~pyv86.errors.PluginError` naming the plugin and
its distribution.
"""
from __future__ import annotations

import importlib
import importlib.metadata as md
import logging
import os
import sys
from typing import Any, Iterable

import attrs
import pluggy

from pyv86.devices.base import DeviceRegistry
from pyv86.errors import PluginError
from pyv86.net.base import NetBackendRegistry
from pyv86.plugins import hookspecs

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "pyv86"


@attrs.define
class PluginRecord:
    """What pyv86 knows about one loaded (or failed) plugin."""

    name: str
    module: str
    builtin: bool
    distribution: str | None = None
    version: str | None = None
    error: str | None = None
    plugin: object | None = None


def _split_names(value: str | None) -> list[str]:
    if not value:
        return []
    return [part.strip() for part in value.split(",") if part.strip()]


class PluginManager:
    """A pluggy manager plus pyv86's registries and load bookkeeping."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("pyv86")
        self.pm.add_hookspecs(hookspecs)
        self.records: dict[str, PluginRecord] = {}
        self.devices = DeviceRegistry()
        self.net_backends = NetBackendRegistry()
        self._collected = False
        self.tolerant = False
        """Record failing plugins (``error`` in :meth:`plugin_info`) instead of raising."""

    @property
    def hook(self) -> Any:
        return self.pm.hook

    # loading -----------------------------------------------------------------------
    def register_module(self, module: object, name: str, *, builtin: bool = False,
                        distribution: str | None = None, version: str | None = None) -> None:
        """Register an imported plugin module (or any object with hookimpls)."""
        label = self._label(name, distribution, version)
        if self.pm.is_blocked(name):
            return
        try:
            self.pm.register(module, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {label}: invalid hook implementation: {_one_line(exc)}") from exc
        except ValueError as exc:
            raise PluginError(f"plugin {label}: {_one_line(exc)}") from exc
        self.records[name] = PluginRecord(name, getattr(module, "__name__", repr(module)), builtin,
                                          distribution, version, plugin=module)
        self._collected = False

    def load_builtins(self) -> None:
        from pyv86.plugins.builtin import BUILTIN_MODULES

        for name, module_name in BUILTIN_MODULES:
            if self.pm.is_blocked(name):
                continue
            module = importlib.import_module(module_name)
            self.register_module(module, name, builtin=True, distribution="pyv86",
                                 version=_dist_version("pyv86"))

    def load_entry_points(self, only: list[str] | None = None) -> None:
        """Load entry points of group ``pyv86``; ``only`` restricts to those names."""
        found: set[str] = set()
        for ep in md.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist is not None else None
            version = ep.dist.version if ep.dist is not None else None
            names = {ep.name, dist} if dist else {ep.name}
            if only is not None and not names & set(only):
                continue
            found |= names
            if self.pm.is_blocked(ep.name) or (dist and self.pm.is_blocked(dist)):
                continue
            if ep.name in self.records:
                continue
            try:
                module = ep.load()
            except Exception as exc:  # noqa: BLE001 - any import failure is the plugin's
                message = f"plugin {self._label(ep.name, dist, version)} failed to import: {_one_line(exc)}"
                self.records[ep.name] = PluginRecord(ep.name, ep.value, False, dist, version, error=message)
                if self.tolerant:
                    log.error("%s", message)
                    continue
                raise PluginError(message) from exc
            self.register_module(module, ep.name, distribution=dist, version=version)
        if only is not None:
            missing = [n for n in only if n not in found]
            if missing:
                raise PluginError(
                    f"PYV86_LOAD_PLUGINS: plugin {missing[0]!r} could not be found "
                    f"(installed: {', '.join(sorted(e.name for e in md.entry_points(group=ENTRY_POINT_GROUP))) or 'none'})"
                )

    def load_module_by_name(self, spec: str) -> None:
        """``-p NAME``: an entry-point name, a distribution name or a module path."""
        for ep in md.entry_points(group=ENTRY_POINT_GROUP):
            if spec in (ep.name, ep.dist.name if ep.dist else None):
                self.load_entry_points(only=[spec])
                return
        try:
            module = importlib.import_module(spec)
        except Exception as exc:  # noqa: BLE001
            raise PluginError(f"-p {spec}: plugin {spec!r} failed to import: {_one_line(exc)}") from exc
        self.register_module(module, spec)

    def block(self, name: str) -> None:
        self.pm.set_blocked(name)
        if name in self.records:
            del self.records[name]
            self._collected = False

    def check(self) -> None:
        """Fail on hook implementations that match no specification (typos)."""
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            plugin = getattr(exc, "plugin", None)
            name = self.pm.get_name(plugin) if plugin is not None else "?"
            record = self.records.get(name or "")
            label = self._label(name or "?", record.distribution if record else None,
                                record.version if record else None)
            raise PluginError(f"plugin {label}: {_one_line(exc)}") from exc

    # registries --------------------------------------------------------------------
    def collect(self) -> None:
        """Call the registration hooks once, remembering which plugin added what."""
        if self._collected:
            return
        self.devices = DeviceRegistry()
        self.net_backends = NetBackendRegistry()
        self.devices.describe = self.net_backends.describe = self.describe
        self._call_per_plugin("pyv86_register_devices", registry=self.devices)
        self._call_per_plugin("pyv86_register_net_backends", registry=self.net_backends)
        self._collected = True

    def _call_per_plugin(self, hook_name: str, **kwargs: Any) -> None:
        caller = getattr(self.pm.hook, hook_name)
        registry = kwargs.get("registry")
        for impl in caller.get_hookimpls():  # registration order: built-ins first, so a clash names the newcomer
            name = impl.plugin_name
            record = self.records.get(name)
            label = self._label(name, record.distribution if record else None,
                                record.version if record else None)
            if registry is not None:
                registry.current_plugin = name
            try:
                impl.function(**{arg: kwargs[arg] for arg in impl.argnames})
            except PluginError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise PluginError(f"plugin {label}: {hook_name} failed: {_one_line(exc)}") from exc

    def plugin_info(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per plugin (for ``pyv86 plugins --json``)."""
        self.collect()
        out = []
        for name, record in self.records.items():
            hooks = []
            if record.plugin is not None:
                hooks = sorted(
                    caller.name for caller in self.pm.get_hookcallers(record.plugin) or []
                )
            out.append({
                "name": name,
                "distribution": record.distribution,
                "version": record.version,
                "module": record.module,
                "builtin": record.builtin,
                "hooks": hooks,
                "devices": self.devices.by_plugin(name),
                "net_schemes": self.net_backends.by_plugin(name),
                **({"error": record.error} if record.error else {}),
            })
        return out

    def enable_tracing(self) -> None:
        def before(hook_name: str, hook_impls: Any, kwargs: dict) -> None:
            print(f"pyv86 trace: {hook_name}({', '.join(kwargs)}) -> "
                  f"{[i.plugin_name for i in hook_impls]}", file=sys.stderr)

        def after(outcome: Any, hook_name: str, hook_impls: Any, kwargs: dict) -> None:
            pass

        self.pm.add_hookcall_monitoring(before, after)

    def describe(self, name: str) -> str:
        """A plugin's label for messages: its name, distribution and version."""
        record = self.records.get(name)
        return self._label(name, record.distribution if record else None,
                           record.version if record else None)

    @staticmethod
    def _label(name: str, distribution: str | None, version: str | None) -> str:
        if distribution and distribution != name:
            return f'"{name}" ({distribution} {version or "?"})'
        if distribution:
            return f'"{name}" ({version or "?"})'
        return f'"{name}"'


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, pluggy.PluginValidationError):
        # pluggy spreads the reason over several lines: the hook, the definition, the problem
        return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    if isinstance(exc, (ImportError, SyntaxError)) and type(exc).__name__ not in first:
        return f"{type(exc).__name__}: {first}" if not first.startswith("No module") else first
    return first


def _dist_version(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def create_plugin_manager(
    *,
    autoload: bool | None = None,
    load: Iterable[str] | None = None,
    block: Iterable[str] = (),
    extra: Iterable[str] = (),
    builtins: bool = True,
    environ: dict[str, str] | None = None,
    tolerant: bool = False,
) -> PluginManager:
    """Make a manager and load plugins according to arguments and environment.

    :param autoload: load entry points; default: unless ``PYV86_DISABLE_PLUGIN_AUTOLOAD``.
    :param load: load only these entry points (``PYV86_LOAD_PLUGINS`` if None).
    :param block: names to block (added to ``PYV86_BLOCK_PLUGINS``).
    :param extra: ``-p NAME`` plugins to load in addition.
    :param tolerant: keep going past plugins that fail to import, recording the error
        (for listing what is installed); everything else still raises.
    """
    env = os.environ if environ is None else environ
    manager = PluginManager()
    manager.tolerant = tolerant
    for name in [*_split_names(env.get("PYV86_BLOCK_PLUGINS")), *block]:
        manager.block(name)
    if builtins:
        manager.load_builtins()
    if autoload is None:
        autoload = env.get("PYV86_DISABLE_PLUGIN_AUTOLOAD", "") in ("", "0", "false", "no")
    only = list(load) if load is not None else (
        _split_names(env["PYV86_LOAD_PLUGINS"]) if "PYV86_LOAD_PLUGINS" in env else None
    )
    if only is not None:
        if only:
            manager.load_entry_points(only=only)
    elif autoload:
        manager.load_entry_points()
    for spec in extra:
        manager.load_module_by_name(spec)
    manager.check()
    if env.get("PYV86_TRACE_PLUGINS", "") not in ("", "0"):
        manager.enable_tracing()
    manager.collect()
    return manager
