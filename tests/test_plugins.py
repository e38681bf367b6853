"""Plugin loading: entry points, the environment switches, ``-p``, blocking, listing, and a
one-line error naming the distribution for every kind of broken plugin.

Throw-away distributions are written to ``tmp_path`` (a module plus a ``.dist-info`` with
``entry_points.txt``) and the manager is shown only those entry points, so the tests do
not depend on which real plugins happen to be installed.
"""
from __future__ import annotations

import importlib
import importlib.metadata as md
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import pyv86.plugins.manager as manager_mod
from pyv86.errors import PluginError
from pyv86.plugins.manager import create_plugin_manager

GOOD = """
from pyv86 import hookimpl
from pyv86.devices import Device

class {cls}(Device):
    kind = "{kind}"

@hookimpl
def pyv86_register_devices(registry):
    registry.add({cls})
"""


class Site:
    """A directory on sys.path holding throw-away plugin distributions."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.modules: list[str] = []
        self.only_here = True
        monkeypatch.syspath_prepend(str(root))
        real = md.entry_points

        def entry_points(**params):
            if not self.only_here:
                return real(**params)
            found = []
            for dist in md.distributions(path=[str(self.root)]):
                found += [ep for ep in dist.entry_points if ep.group == params.get("group", ep.group)]
            return md.EntryPoints(found)

        monkeypatch.setattr(manager_mod.md, "entry_points", entry_points)

    def add(self, dist: str, ep_name: str, source: str, *, module: str | None = None,
            version: str = "1.0") -> str:
        module = module or f"t_{ep_name}_{abs(hash(self.root)) % 10**8}"
        (self.root / f"{module}.py").write_text(textwrap.dedent(source))
        info = self.root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[pyv86]\n{ep_name} = {module}\n")
        self.modules.append(module)
        importlib.invalidate_caches()
        return module

    def good(self, dist: str, ep_name: str, kind: str) -> str:
        return self.add(dist, ep_name, GOOD.format(cls=f"Dev{abs(hash(kind))}", kind=kind))


@pytest.fixture
def site(tmp_path, monkeypatch):
    s = Site(tmp_path / "site", monkeypatch) if (tmp_path / "site").mkdir() is None else None
    yield s
    for module in s.modules:
        sys.modules.pop(module, None)


def names(manager) -> set[str]:
    return {r.name for r in manager.records.values() if not r.builtin}


# -- loading and the environment ----------------------------------------------------------

def test_autoload_registers_entry_points_with_their_distribution(site):
    site.good("pyv86-alpha", "alpha", "alpha-dev")
    manager = create_plugin_manager(environ={})
    assert names(manager) == {"alpha"}
    record = manager.records["alpha"]
    assert (record.distribution, record.version, record.builtin) == ("pyv86-alpha", "1.0", False)
    assert manager.devices.provider("alpha-dev") == "alpha"
    assert "isa-debug-exit" in manager.devices  # built-ins always load


def test_disable_autoload_skips_entry_points(site):
    site.good("pyv86-alpha", "alpha", "alpha-dev")
    manager = create_plugin_manager(environ={"PYV86_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert names(manager) == set()
    assert "alpha-dev" not in manager.devices
    assert "isa-debug-exit" in manager.devices


def test_disable_autoload_still_honours_the_allow_list_and_p(site):
    site.good("pyv86-alpha", "alpha", "alpha-dev")
    site.good("pyv86-beta", "beta", "beta-dev")
    env = {"PYV86_DISABLE_PLUGIN_AUTOLOAD": "1", "PYV86_LOAD_PLUGINS": "alpha"}
    assert names(create_plugin_manager(environ=env)) == {"alpha"}
    env = {"PYV86_DISABLE_PLUGIN_AUTOLOAD": "1"}
    assert names(create_plugin_manager(environ=env, extra=["beta"])) == {"beta"}


def test_load_plugins_loads_exactly_those_by_entry_point_or_distribution_name(site):
    site.good("pyv86-alpha", "alpha", "alpha-dev")
    site.good("pyv86-beta", "beta", "beta-dev")
    site.good("pyv86-gamma", "gamma", "gamma-dev")
    assert names(create_plugin_manager(environ={"PYV86_LOAD_PLUGINS": "alpha,pyv86-gamma"})) == {"alpha", "gamma"}
    assert names(create_plugin_manager(environ={"PYV86_LOAD_PLUGINS": " beta , "})) == {"beta"}


def test_empty_load_plugins_loads_none(site):
    site.good("pyv86-alpha", "alpha", "alpha-dev")
    assert names(create_plugin_manager(environ={"PYV86_LOAD_PLUGINS": ""})) == set()


def test_load_plugins_with_an_unknown_name_is_an_error(site):
    site.good("pyv86-alpha", "alpha", "alpha-dev")
    with pytest.raises(PluginError) as info:
        create_plugin_manager(environ={"PYV86_LOAD_PLUGINS": "alpha,omega"})
    assert str(info.value) == "PYV86_LOAD_PLUGINS: plugin 'omega' could not be found (installed: alpha)"


def test_p_loads_a_plain_module_that_is_no_entry_point(site):
    module = site.add("pyv86-unused", "unused", GOOD.format(cls="Mod", kind="mod-dev"), module="t_plain_mod")
    (site.root / "pyv86_unused-1.0.dist-info" / "entry_points.txt").write_text("")  # not an entry point
    manager = create_plugin_manager(environ={"PYV86_DISABLE_PLUGIN_AUTOLOAD": "1"}, extra=[module])
    assert manager.devices.provider("mod-dev") == module


def test_p_with_an_unimportable_module_names_it(site):
    with pytest.raises(PluginError, match=r"^-p no_such_mod_xyz: plugin 'no_such_mod_xyz' failed to import: "
                                          r"No module named 'no_such_mod_xyz'$"):
        create_plugin_manager(environ={}, extra=["no_such_mod_xyz"])


def test_p_no_blocks_an_entry_point_and_env_blocks_too(site):
    site.good("pyv86-alpha", "alpha", "alpha-dev")
    site.good("pyv86-beta", "beta", "beta-dev")
    assert names(create_plugin_manager(environ={}, block=["alpha"])) == {"beta"}
    assert names(create_plugin_manager(environ={}, block=["pyv86-beta"])) == {"alpha"}
    assert names(create_plugin_manager(environ={"PYV86_BLOCK_PLUGINS": "alpha,beta"})) == set()


def test_blocking_a_builtin_removes_what_it_registers(site):
    manager = create_plugin_manager(environ={}, block=["pyv86.platform"])
    assert "isa-debug-exit" not in manager.devices
    assert "pyv86.platform" not in manager.records


def test_trace_plugins_prints_hook_calls(site, capsys):
    manager = create_plugin_manager(environ={"PYV86_TRACE_PLUGINS": "1"})
    manager.hook.pyv86_machine_stopped(machine=None, reason="test")
    assert "pyv86 trace: pyv86_machine_stopped(machine, reason)" in capsys.readouterr().err


# -- failures: one line naming the distribution --------------------------------------------

def one_line_error(**kwargs) -> str:
    with pytest.raises(PluginError) as info:
        create_plugin_manager(**kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_import_error_names_plugin_distribution_and_cause(site):
    site.add("pyv86-broken", "broken", "import no_such_dependency_xyz\n", version="0.3")
    message = one_line_error(environ={})
    assert message == ('plugin "broken" (pyv86-broken 0.3) failed to import: '
                       "No module named 'no_such_dependency_xyz'")


def test_syntax_error_in_a_plugin(site):
    site.add("pyv86-typo", "typo", "def oops(:\n")
    message = one_line_error(environ={})
    assert message.startswith('plugin "typo" (pyv86-typo 1.0) failed to import: SyntaxError')


def test_hookimpl_with_an_argument_the_hook_lacks(site):
    site.add("pyv86-badargs", "badargs", """
        from pyv86 import hookimpl

        @hookimpl
        def pyv86_register_devices(registry, colour):
            pass
        """)
    message = one_line_error(environ={})
    assert message.startswith('plugin "badargs" (pyv86-badargs 1.0): invalid hook implementation: ')
    assert "colour" in message


def test_unknown_hook_name_is_caught_by_check_pending(site):
    site.add("pyv86-misspelt", "misspelt", """
        from pyv86 import hookimpl

        @hookimpl
        def pyv86_register_device(registry):
            pass
        """)
    message = one_line_error(environ={})
    assert message.startswith('plugin "misspelt" (pyv86-misspelt 1.0): ')
    assert "pyv86_register_device" in message


def test_device_kind_registered_twice_names_both_distributions(site):
    site.good("pyv86-first", "first", "same-kind")
    site.good("pyv86-second", "second", "same-kind")
    message = one_line_error(environ={})
    assert "device type 'same-kind' is already registered by plugin" in message
    assert '"first" (pyv86-first 1.0)' in message and '"second" (pyv86-second 1.0)' in message


def test_device_kind_clashing_with_a_builtin(site):
    site.good("pyv86-clash", "clash", "isa-debug-exit")
    message = one_line_error(environ={})
    assert message == ('plugin "clash" (pyv86-clash 1.0): device type \'isa-debug-exit\' is already '
                       'registered by plugin "pyv86.platform" (pyv86 0.1.0)')


def test_net_scheme_registered_twice(site):
    site.add("pyv86-nulls", "nulls", """
        from pyv86 import hookimpl

        @hookimpl
        def pyv86_register_net_backends(registry):
            registry.add("null", lambda url, machine: None)
        """)
    message = one_line_error(environ={})
    assert message.startswith('plugin "nulls" (pyv86-nulls 1.0): network URL scheme \'null\' is already '
                              'registered by plugin "pyv86.net"')


def test_registering_something_that_is_not_a_device(site):
    site.add("pyv86-notdev", "notdev", """
        from pyv86 import hookimpl

        @hookimpl
        def pyv86_register_devices(registry):
            registry.add(object)
        """)
    assert one_line_error(environ={}) == ("plugin \"notdev\" (pyv86-notdev 1.0): <class 'object'> is "
                                          "not a pyv86 Device subclass")


def test_exception_inside_a_registration_hook(site):
    site.add("pyv86-raises", "raises", """
        from pyv86 import hookimpl

        @hookimpl
        def pyv86_register_devices(registry):
            raise RuntimeError("table is missing")
        """)
    assert one_line_error(environ={}) == ('plugin "raises" (pyv86-raises 1.0): pyv86_register_devices '
                                          "failed: table is missing")


def test_cli_prints_plugin_errors_in_one_line_with_status_2(site, capsys, tmp_path):
    from pyv86.cli import main

    site.add("pyv86-broken", "broken", "import no_such_dependency_xyz\n", version="0.3")
    machine = tmp_path / "m.toml"
    machine.write_text("version = 1\n[machine]\ncpu = false\n")
    assert main(["check", str(machine)]) == 2
    assert capsys.readouterr().err == ('pyv86: plugin "broken" (pyv86-broken 0.3) failed to import: '
                                       "No module named 'no_such_dependency_xyz'\n")


def test_plugins_listing_shows_a_broken_plugin_with_its_error(site, capsys):
    import json

    from pyv86.cli import main

    site.add("pyv86-broken", "broken", "import no_such_dependency_xyz\n", version="0.3")
    assert main(["plugins", "--json"]) == 0
    info = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    assert info["broken"]["error"] == ('plugin "broken" (pyv86-broken 0.3) failed to import: '
                                       "No module named 'no_such_dependency_xyz'")
    assert info["broken"]["devices"] == []
    assert info["pyv86.net"]["builtin"] is True


# -- listing -------------------------------------------------------------------------------

def test_plugin_info_reports_what_each_plugin_provides(site):
    site.good("pyv86-alpha", "alpha", "alpha-dev")
    info = {p["name"]: p for p in create_plugin_manager(environ={}).plugin_info()}
    assert info["alpha"] == {
        "name": "alpha", "distribution": "pyv86-alpha", "version": "1.0", "module": site.modules[0],
        "builtin": False, "hooks": ["pyv86_register_devices"], "devices": ["alpha-dev"],
        "net_schemes": [],
    }
    assert info["pyv86.net"]["builtin"] is True
    assert "null" in info["pyv86.net"]["net_schemes"]


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PYV86_")}
    return subprocess.run([sys.executable, "-m", "pyv86.cli", *args], capture_output=True, text=True,
                          env={**clean, **env}, timeout=60)


def plugin_names(proc: subprocess.CompletedProcess) -> set[str]:
    assert proc.returncode == 0, proc.stderr
    return {p["name"] for p in json.loads(proc.stdout)}


def test_installed_postcard_plugin_is_listed_by_the_real_cli():
    """Needs `pip install -e examples/plugins/postcard` (make install-test does it)."""
    try:
        md.distribution("pyv86-postcard")
    except md.PackageNotFoundError:
        pytest.fail("pyv86-postcard is not installed: run `make install-test` "
                    "(or pip install --no-build-isolation -e examples/plugins/postcard)")
    listed = json.loads(run_cli("plugins", "--json").stdout)
    postcard = next(p for p in listed if p["name"] == "postcard")
    assert postcard["distribution"] == "pyv86-postcard"
    assert postcard["devices"] == ["postcard"]
    assert "pyv86_register_devices" in postcard["hooks"]


def test_cli_autoload_switch_and_p_no_remove_the_postcard_plugin():
    assert "postcard" not in plugin_names(run_cli("plugins", "--json", PYV86_DISABLE_PLUGIN_AUTOLOAD="1"))
    assert "postcard" not in plugin_names(run_cli("-p", "no:postcard", "plugins", "--json"))
    assert plugin_names(run_cli("plugins", "--json", PYV86_LOAD_PLUGINS="postcard")) >= {"postcard", "pyv86.net"}
    assert "postcard" in plugin_names(run_cli("-p", "postcard", "plugins", "--json",
                                              PYV86_DISABLE_PLUGIN_AUTOLOAD="1"))
