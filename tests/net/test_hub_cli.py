"""Two ``pyv86 run`` processes whose machine files name the same ``hub:NAME`` join one switch."""
from __future__ import annotations

import os
import subprocess
import sys
import time

MACHINE = """version = 1
name = "{name}"
[machine]
memory = "2M"
cpu = false
clock = "realtime"
[netdev.lan]
url = "hub:{hub}"
"""


def test_two_runs_on_one_hub(tmp_path):
    hub = f"clitest{os.getpid()}"
    files = []
    for name in ("vm1", "vm2"):
        path = tmp_path / f"{name}.toml"
        path.write_text(MACHINE.format(name=name, hub=hub))
        files.append(path)
    cmd = [sys.executable, "-m", "pyv86.cli", "-v", "run", "--headless", "--timeout", "4"]
    first = subprocess.Popen([*cmd, str(files[0])], stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        second = subprocess.run([*cmd, "--timeout", "1", str(files[1])], stderr=subprocess.PIPE, text=True,
                                timeout=60)
        assert second.returncode == 0, second.stderr
        assert f"hub:{hub}: joined the hub hosted by another process" in second.stderr
    finally:
        first.wait(60)
    err = first.stderr.read()
    assert f"hub:{hub}: hosting" in err
    assert f"hub:{hub}: another process joined" in err
