"""Guest-side network steps and frame checks shared by the e2e tests.

Every guest function here types a few busybox commands into a
:class:`pyv86.testing.guest.GuestMachine`; guest commands are slow (~27 MIPS), so each
step is one line. Frame helpers read what a pcap file or a NIC saw.
"""
from __future__ import annotations

import itertools
import os
import re
import struct
import time
from typing import Any, Iterable

PCI_NIC = "0000:00:05.0"
DRIVER_DIR = "/sys/bus/pci/drivers/ne2k-pci"

_hub_ids = itertools.count(1)


def hub_url() -> str:
    """A hub name used by nobody else (kept inside this process)."""
    return f"hub:e2e-{os.getpid()}-{next(_hub_ids)}?scope=process"


RELOADS = {
    "modprobe": "rmmod ne2k-pci && modprobe ne2k-pci",
    "unbind": f"echo {PCI_NIC} > {DRIVER_DIR}/unbind && echo {PCI_NIC} > {DRIVER_DIR}/bind",
}


def fmt_mac(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def nic_macs(guest: Any) -> tuple[str, str]:
    """(guest MAC, wire MAC) the emulated NIC holds."""
    state = guest.machine.devices["net0"].state
    return fmt_mac(bytes(state.par)), fmt_mac(bytes(state.wire_mac))


def guest_mac(guest: Any) -> str:
    """The MAC the guest's eth0 uses."""
    return guest.sh("cat /sys/class/net/eth0/address").strip()


def reload_driver(guest: Any, how: str, cidr: str | None = None, timeout: float = 120) -> str:
    """Reload the NIC driver (``modprobe`` or ``unbind``), bring eth0 up; returns its MAC."""
    line = f"{RELOADS[how]} && ip link set eth0 up"
    if cidr:
        line += f" && ip addr add {cidr} dev eth0"
    return guest.sh(line + " && cat /sys/class/net/eth0/address", timeout=timeout).strip().splitlines()[-1]


def set_ipv4(guest: Any, cidr: str) -> None:
    guest.sh(f"ip -4 addr flush dev eth0 && ip addr add {cidr} dev eth0 && ip link set eth0 up")


def ping(guest: Any, target: str, *, count: int = 1, deadline: int = 20, v6: bool = False) -> str:
    """Ping ``target`` from the guest; fails with the output unless a reply came back."""
    cmd = f"ping{' -6' if v6 else ''} -c {count} -w {deadline} {target}"
    result = guest.run(cmd, timeout=deadline + 60, check=False)
    assert result.status == 0 and re.search(r"\b[1-9]\d* packets received", result.output), (
        f"{guest.name}: {cmd} got no reply (status {result.status}):\n{result.output}")
    return result.output


def link_local(guest: Any, timeout: float = 30) -> str:
    """eth0's IPv6 link-local address once duplicate address detection has finished."""
    end = time.monotonic() + timeout
    while True:
        out = guest.sh("ip -6 addr show dev eth0 scope link")
        found = re.search(r"inet6 (fe80::[0-9a-f:]+)/64", out)
        if found and "tentative" not in out:
            return found.group(1)
        if time.monotonic() > end:
            raise AssertionError(f"{guest.name}: no usable IPv6 link-local address on eth0:\n{out}")
        time.sleep(0.5)


def eui64_link_local(mac: str) -> str:
    b = [int(x, 16) for x in mac.split(":")]
    b[0] ^= 2
    words = [(b[0] << 8) | b[1], (b[2] << 8) | 0xFF, 0xFE00 | b[3], (b[4] << 8) | b[5]]
    return "fe80::" + ":".join(f"{w:x}" for w in words)


def udhcpc(guest: Any, timeout: float = 90) -> str:
    """Ask for a DHCP lease on eth0 (busybox udhcpc); returns the leased address."""
    # Debian's busybox looks for /etc/udhcpc/default.script; the image has the hook here:
    out = guest.sh("ip -4 addr flush dev eth0; udhcpc -i eth0 -s /usr/share/udhcpc/default.script "
                   "-n -q -t 6 -T 2 >/dev/null 2>&1; ip -4 addr show dev eth0", timeout=timeout)
    found = re.findall(r"inet (\d+\.\d+\.\d+\.\d+)/", out)
    assert found, f"{guest.name}: udhcpc left no IPv4 address on eth0:\n{out}"
    return found[-1]


# frames -------------------------------------------------------------------------------
ETH_ARP, ETH_IP4, ETH_IP6 = 0x0806, 0x0800, 0x86DD


def parse_mac(text: str) -> bytes:
    return bytes(int(x, 16) for x in text.split(":"))


def ethertype(frame: bytes) -> int:
    return struct.unpack_from("!H", frame, 12)[0] if len(frame) >= 14 else -1


def arp_fields(frame: bytes) -> tuple[int, bytes, bytes, bytes, bytes] | None:
    """(op, sender MAC, sender IP, target MAC, target IP) of an ARP frame."""
    if ethertype(frame) != ETH_ARP or len(frame) < 42:
        return None
    op = struct.unpack_from("!H", frame, 20)[0]
    return op, frame[22:28], frame[28:32], frame[32:38], frame[38:42]


def icmp4(frame: bytes) -> tuple[bytes, bytes, int] | None:
    """(source IP, destination IP, ICMP type) of an IPv4 ICMP frame."""
    if ethertype(frame) != ETH_IP4 or len(frame) < 34 or frame[23] != 1:
        return None
    ihl = (frame[14] & 0x0F) * 4
    return frame[26:30], frame[30:34], frame[14 + ihl]


def icmp6_type(frame: bytes) -> int | None:
    if ethertype(frame) != ETH_IP6 or len(frame) < 55 or frame[20] != 58:
        return None
    return frame[54]


def ip4(text: str) -> bytes:
    return bytes(int(x) for x in text.split("."))


def summarize(frames: Iterable[bytes], limit: int = 30) -> str:
    lines = []
    for frame in list(frames)[-limit:]:
        lines.append(f"{fmt_mac(frame[6:12])} > {fmt_mac(frame[0:6])} type {ethertype(frame):#06x} "
                     f"len {len(frame)}")
    return "\n".join(lines)
