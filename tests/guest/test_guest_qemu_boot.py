"""Boot the real guest image (Debian i686 kernel + our initramfs) under QEMU TCG.

This checks the image and its /init, independently of pyv86's own CPU: the marker, eth0 from
the ne2k-pci module, a DHCP lease from QEMU's user-mode network (``restrict=on``: nothing
leaves the QEMU process), a job-control shell on ttyS0, and a user script with a static
address. Needs the image built by ``pyv86 guest build`` (.ci/run does it) and QEMU.
"""
from __future__ import annotations

import re
import shutil

import pytest

from pyv86 import paths
from pyv86.guest import scripts
from pyv86.guest.builder import BuildOptions, build_guest
from pyv86.guest.qemu import QEMU_BINARY, QemuGuest

pytestmark = pytest.mark.slow

CMDLINE = "console=ttyS0 acpi=off nolapic"


@pytest.fixture(scope="module")
def image():
    if shutil.which(QEMU_BINARY) is None:
        pytest.fail(f"{QEMU_BINARY} not found: install Debian's qemu-system-x86 (.ci/run does)")
    guest = paths.guest_dir()
    kernel, initrd = guest / "vmlinuz", guest / "initramfs.cpio.gz"
    if not (kernel.is_file() and initrd.is_file()):
        pytest.fail(f"no guest image in {guest}: run `pyv86 guest build` first (.ci/run does)")
    return kernel, initrd


def test_boots_to_marker_with_dhcp_and_a_shell(image):
    kernel, initrd = image
    with QemuGuest(kernel, initrd, CMDLINE) as q:
        q.wait_ready(timeout_s=240)
        net = q.wait_for(re.compile(r"^pyv86-init: net eth0 (\S+) (\S+) gw=\S+ mac=(\S+)\r?$", re.M), 5)
        assert net.group(1) == "10.0.2.15/24" and net.group(2) == "dhcp"
        assert net.group(3) == "52:54:00:12:34:56"
        assert "ne2k-pci" in q.output and "RTL-8029" in q.output

        out, status = q.run("uname -m")
        assert (out, status) == ("i686", 0)
        out, status = q.run("cat /run/dhcp-lease")
        assert status == 0 and out.startswith("ip=10.0.2.15/24 ") and "server=10.0.2.2" in out
        out, status = q.run("ip -o link show eth0")
        assert status == 0 and "LOWER_UP" in out
        # Builtins only, so the shell itself is the foreground job while it reads its stat.
        out, _ = q.run("tty; read s < /proc/$$/stat; set -- $s; echo $$ $5 $6 $8")
        assert len(out.split()) == 5, out
        tty, pid, pgrp, session, tpgid = out.split()
        assert tty == "/dev/ttyS0"
        assert pid == pgrp == session, "the shell does not lead its own session (setsid)"
        assert tpgid == pgrp, "the shell does not own its terminal (no job control)"
        # Ctrl-C interrupts a foreground command and the shell carries on.
        mark = len(q.output)
        q.send("sleep 60; echo slept\n")
        q.wait_for("sleep 60; echo slept", 10, mark)
        import time
        time.sleep(1.0)
        q.send("\x03")
        out, status = q.run("echo after-ctrl-c", timeout_s=20)
        assert out == "after-ctrl-c"
        assert not re.search(r"^slept\r?$", q.output[mark:], re.M), "Ctrl-C did not interrupt sleep"
        out, status = q.run("lsmod | cut -d' ' -f1 | sort | tr '\\n' ' '")
        assert "8390" in out and "ne2k_pci" in out
        out, status = q.run("dmesg | grep -iE 'BUG|Oops|unable to handle' | wc -l")
        assert out == "0"
        out, status = q.run("false")
        assert status == 1


def test_user_script_static_address_and_reboot(image, tmp_path):
    kernel, _ = image
    debs = paths.guest_dir() / "debs"
    script = tmp_path / "probe.sh"
    script.write_text("echo probe: $(ip -4 -o addr show dev eth0 | awk '{print $4}')\n"
                      "echo probe: $(ip route | awk '$1 == \"default\" {print $3}')\n"
                      "exit 7\n")
    out = tmp_path / "img"
    build_guest(BuildOptions(kernel=kernel, debs=debs, out_dir=out,
                             add=((script, "/root/probe.sh"),)))
    cmdline = (f"{CMDLINE} pyv86.dhcp=0 pyv86.ip=192.168.77.5/24 pyv86.gw=192.168.77.1 "
               "pyv86.script=/root/probe.sh pyv86.after=reboot")
    with QemuGuest(out / "vmlinuz", out / "initramfs.cpio.gz", cmdline) as q:
        q.wait_for(f"{scripts.SCRIPT_EXIT_PREFIX} 7", 240)
        assert "probe: 192.168.77.5/24" in q.output
        assert "probe: 192.168.77.1" in q.output
        assert "pyv86-init: net eth0 192.168.77.5/24 static gw=192.168.77.1" in q.output
        assert q.wait_exit(60) == 0, "pyv86.after=reboot did not reset the machine"
        assert "pyv86-init: rebooting" in q.output
        assert scripts.READY_MARKER not in q.output
