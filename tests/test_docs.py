"""The documentation matches the code: every hook is documented with its exact call and
signature, every machine-file key is in docs/machine-files.md, and the prose docs exist."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from pyv86.plugins import hookspecs
from pyv86.plugins.manager import PluginManager

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def hook_functions() -> list:
    manager = PluginManager()
    names = sorted(name for name in dir(manager.pm.hook) if name.startswith("pyv86_"))
    assert names, "no hooks found"
    return [getattr(hookspecs, name) for name in names]


def typed_signature(fn) -> str:
    """``name(arg: Type, ...) -> Ret`` as written in hookspecs.py (annotations are strings)."""
    ann = dict(fn.__annotations__)
    ret = ann.pop("return", "None")
    args = ", ".join(f"{name}: {ann[name]}" for name in fn.__code__.co_varnames[: fn.__code__.co_argcount])
    return f"{fn.__name__}({args}) -> {ret}"


def call(fn) -> str:
    return f"{fn.__name__}({', '.join(fn.__code__.co_varnames[: fn.__code__.co_argcount])})"


@pytest.fixture(scope="module")
def hooks_doc() -> str:
    return (DOCS / "plugin-hooks.md").read_text()


@pytest.mark.parametrize("fn", hook_functions(), ids=lambda fn: fn.__name__)
def test_plugin_hook_is_documented(fn, hooks_doc):
    headings = re.findall(r"^#{2,4} (pyv86_\w+\(.*\))\s*$", hooks_doc, flags=re.M)
    assert call(fn) in headings, (
        f"docs/plugin-hooks.md has no heading '### {call(fn)}' (hookspec in core/pyv86/plugins/hookspecs.py)")
    section = hooks_doc.split(f"### {call(fn)}", 1)[1].split("\n### ", 1)[0]
    assert typed_signature(fn) in section, (
        f"docs/plugin-hooks.md, section {call(fn)}: the signature '{typed_signature(fn)}' is missing")
    for param in fn.__code__.co_varnames[: fn.__code__.co_argcount]:
        assert f"- `{param}`" in section, f"docs/plugin-hooks.md, section {call(fn)}: parameter {param} undocumented"


def test_no_documented_hook_is_missing_from_the_code(hooks_doc):
    documented = set(re.findall(r"^#{2,4} (pyv86_\w+)\(", hooks_doc, flags=re.M))
    assert documented == {fn.__name__ for fn in hook_functions()}


def test_every_hookspec_has_a_docstring():
    for fn in hook_functions():
        assert fn.__doc__ and ":param" in fn.__doc__ or not fn.__code__.co_argcount, fn.__name__


# -- machine files ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def machine_doc() -> str:
    return (DOCS / "machine-files.md").read_text()


def test_machine_file_reference_is_up_to_date(machine_doc):
    from pyv86.testing import docgen

    generated = docgen.generate()
    assert docgen.BEGIN in machine_doc and docgen.END in machine_doc
    current = machine_doc[machine_doc.index(docgen.BEGIN): machine_doc.index(docgen.END) + len(docgen.END)]
    assert current == generated, (
        "docs/machine-files.md is out of date with the code; run "
        "`python -m pyv86.testing.docgen --write docs/machine-files.md`")


def rows(doc: str, heading: str) -> set[str]:
    """The keys in the first column of the table under ``### heading``."""
    section = doc.split(f"### {heading}\n", 1)[1].split("\n### ", 1)[0]
    return set(re.findall(r"^\| `([^`]+)` \|", section, flags=re.M))


def test_every_machine_file_key_is_documented(machine_doc):
    from pyv86 import config

    assert rows(machine_doc, "[machine]") == set(config.MACHINE_KEYS)
    assert rows(machine_doc, "[boot]") == set(config.BOOT_KEYS)
    assert rows(machine_doc, "[state]") == set(config.STATE_KEYS)
    assert rows(machine_doc, "[netdev.<id>]") == set(config.NETDEV_KEYS)
    aliases = rows(machine_doc, "v86 option names (top level)")
    assert aliases == {*config.V86_TOP_LEVEL, "network_relay_url"}
    tables = {"machine", "boot", "state", "device", "netdev"}
    assert rows(machine_doc, "top level") | aliases | tables == set(config.TOP_LEVEL_KEYS)


def test_every_builtin_device_option_is_documented(machine_doc, pyv86_plugins):
    import attrs

    for kind in pyv86_plugins.devices.kinds():
        cls = pyv86_plugins.devices.get(kind)
        section = machine_doc.split(f"#### `{kind}`\n", 1)
        assert len(section) == 2, f"docs/machine-files.md: device type {kind!r} is not documented"
        body = section[1].split("\n#### ", 1)[0].split("\n### ", 1)[0]
        for field in attrs.fields(cls.config_cls):
            assert f"| `{field.name}` |" in body, f"{kind}.{field.name} is not documented"
            assert field.metadata.get("help"), f"{kind}.{field.name} has no metadata help text"


def test_every_error_example_in_machine_files_md_is_real(machine_doc):
    """Error lines quoted in the docs come from tests/data/machines/ (one per file)."""
    quoted = re.findall(r"^pyv86: m\.toml:\d+: (\S+): ", machine_doc, flags=re.M)
    assert len(quoted) >= 8
    expects = " ".join(line for f in (ROOT / "tests" / "data" / "machines").glob("*.toml")
                       for line in f.read_text().splitlines() if line.startswith("# expect: "))
    for key in quoted:
        assert key in expects, f"docs/machine-files.md quotes an error for {key} that no test checks"


# -- prose docs ----------------------------------------------------------------------------

@pytest.mark.parametrize("name, must_mention", [
    ("architecture.md", ["PortBus", "call_soon_threadsafe", "Scheduler", "NetBackend", "pluggy", "State"]),
    ("writing-plugins.md", ["pyv86_postcard", "[project.entry-points.pyv86]", "make_machine",
                            "assert_state_roundtrip", "pyv86_plugins", "loopback_net", "port_bus"]),
    ("plugin-hooks.md", ["PYV86_DISABLE_PLUGIN_AUTOLOAD", "PYV86_LOAD_PLUGINS", "-p no:"]),
    ("machine-files.md", ["memory_size", "network_relay_url", "guest:"]),
])
def test_prose_docs_exist_and_cover_their_subject(name, must_mention):
    text = (DOCS / name).read_text()
    missing = [m for m in must_mention if m not in text]
    assert not missing, f"docs/{name} does not mention {missing}"


def test_writing_plugins_quotes_the_postcard_plugin_as_it_is():
    """Code blocks in writing-plugins.md that claim to be from a file must match that file."""
    text = (DOCS / "writing-plugins.md").read_text()
    blocks = re.findall(r"<!-- from (\S+) -->\n```\w*\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 3
    for path, block in blocks:
        source = (ROOT / path).read_text()
        assert block in source, f"docs/writing-plugins.md: the block quoted from {path} no longer matches it"
