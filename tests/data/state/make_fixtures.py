"""Writes the old-format fixtures once; they are kept in git permanently (never regenerate them
to make a test pass: they stand for images written by older pyv86 releases).

    cd tests/state && python ../data/state/make_fixtures.py

rich-v1.pyv86state: the state-test-rich record at version 1 (no imr, no rxcr).
rich-v2.pyv86state: version 2 (imr, cr bit 7 still meaning "flag", retired old_latch).
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "state"))

import state_helpers as helpers  # noqa: E402
from pyv86.config import parse_machine_config  # noqa: E402
from pyv86.machine import Machine  # noqa: E402
from pyv86.plugins.manager import create_plugin_manager  # noqa: E402
from pyv86.state.container import read_image, write_image  # noqa: E402
from pyv86.state.snapshot import build_records  # noqa: E402


def machine() -> Machine:
    import tomllib

    plugins = create_plugin_manager(autoload=False, load=None, environ={})
    helpers.register(plugins)
    data = tomllib.loads(helpers.MACHINE)
    data["version"] = 1
    config = parse_machine_config(data, "fixture", helpers.MACHINE, plugins=plugins)
    return Machine.from_config(config, plugins)


def write(name: str, version: int, drop: list[str], extra: dict) -> None:
    m = machine()
    m.devices["rich0"].scribble()
    m.devices["rich0"].state.cr = 0xA2            # bit 7: "flag" before version 3
    records, blobs = build_records(m)
    for record in records:
        if record["kind"] == "state-test-rich":
            record["version"] = version
            for key in drop:
                record["fields"].pop(key)
            record["fields"].update(extra)
    write_image(HERE / name, records, blobs)
    read_image(HERE / name)


if __name__ == "__main__":
    write("rich-v1.pyv86state", 1, ["imr", "rxcr", "flag"], {})
    write("rich-v2.pyv86state", 2, ["rxcr", "flag"], {"old_latch": 3})
