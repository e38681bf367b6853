"""Linux interface control for TAP devices: open one, bring it up, put it on a bridge.

Owns the ioctls (``TUNSETIFF`` on ``/dev/net/tun``, ``SIOCGIFFLAGS``/``SIOCSIFFLAGS``,
``SIOCBRADDIF``) and turns their errno values into one-line :class:`TapError` messages
that say what to do. Used by the ``tap:`` backend and by ``pyv86 relay serve --tap``.
"""
from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct

from pyv86.errors import ConfigError

TUN_PATH = "/dev/net/tun"
TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCBRADDIF = 0x89A2
IFF_UP = 0x1
IFNAMSIZ = 16


class TapError(ConfigError):
    """A TAP device or bridge cannot be used; the message says why and what to do."""


def check_ifname(name: str, where: str) -> None:
    if not name or len(name.encode()) >= IFNAMSIZ or "/" in name or any(c.isspace() for c in name) \
            or name in (".", ".."):
        raise TapError(f"{where}: {name!r} is not a valid interface name (1-15 characters, "
                       "no '/' or spaces)")


def _permission_hint(name: str) -> str:
    return (f"tap:{name}: permission denied opening {TUN_PATH}; run as root or give "
            f"CAP_NET_ADMIN / create it with `ip tuntap add {name} mode tap user $USER`")


def open_tap(name: str) -> tuple[int, str]:
    """Attach to (or create) TAP ``name``; returns ``(non-blocking fd, interface name)``."""
    check_ifname(name, f"tap:{name}")
    try:
        fd = os.open(TUN_PATH, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise TapError(f"tap:{name}: {TUN_PATH} does not exist; load the tun module "
                       "(`modprobe tun`) or, in a container, pass the device in") from None
    except PermissionError:
        raise TapError(_permission_hint(name)) from None
    try:
        ifr = struct.pack("16sH22x", name.encode(), IFF_TAP | IFF_NO_PI)
        result = fcntl.ioctl(fd, TUNSETIFF, ifr)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EPERM, errno.EACCES):
            raise TapError(_permission_hint(name)) from None
        if exc.errno == errno.EBUSY:
            raise TapError(f"tap:{name}: device is busy; another program has it open "
                           "(a single-queue TAP takes one reader)") from None
        if exc.errno == errno.EINVAL:
            raise TapError(f"tap:{name}: cannot attach; an interface with this name exists and "
                           "is not a single-queue TAP without packet info "
                           f"(check `ip -d link show {name}`)") from None
        raise TapError(f"tap:{name}: TUNSETIFF failed: {exc.strerror}") from None
    actual = result[:IFNAMSIZ].split(b"\0", 1)[0].decode()
    return fd, actual


def _ifreq_flags(sock: socket.socket, name: str) -> int:
    res = fcntl.ioctl(sock, SIOCGIFFLAGS, struct.pack("16sH22x", name.encode(), 0))
    return int(struct.unpack_from("H", res, IFNAMSIZ)[0])


def link_is_up(name: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        return bool(_ifreq_flags(sock, name) & IFF_UP)


def set_link_up(name: str) -> None:
    """Set IFF_UP on ``name`` (no-op when already up)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            flags = _ifreq_flags(sock, name)
            if flags & IFF_UP:
                return
            fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH22x", name.encode(), flags | IFF_UP))
        except PermissionError:
            raise TapError(f"tap:{name}: the interface is down and bringing it up needs "
                           f"CAP_NET_ADMIN; run `ip link set {name} up` as root") from None
        except OSError as exc:
            raise TapError(f"tap:{name}: cannot bring the interface up: {exc.strerror}") from None


def bridge_of(name: str) -> str | None:
    """The bridge ``name`` is enslaved to, if any."""
    try:
        return os.path.basename(os.readlink(f"/sys/class/net/{name}/master"))
    except OSError:
        return None


def add_to_bridge(name: str, bridge: str) -> None:
    """Enslave interface ``name`` to Linux bridge ``bridge`` (no-op if it already is)."""
    check_ifname(bridge, f"tap:{name}: bridge")
    if bridge_of(name) == bridge:
        return
    if not os.path.exists(f"/sys/class/net/{bridge}"):
        raise TapError(f"tap:{name}: bridge {bridge} does not exist; create it with "
                       f"`ip link add {bridge} type bridge && ip link set {bridge} up`")
    if not os.path.exists(f"/sys/class/net/{bridge}/bridge"):
        raise TapError(f"tap:{name}: {bridge} is not a Linux bridge")
    index = socket.if_nametoindex(name)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            fcntl.ioctl(sock, SIOCBRADDIF, struct.pack("16si20x", bridge.encode(), index))
        except PermissionError:
            raise TapError(f"tap:{name}: adding it to bridge {bridge} needs CAP_NET_ADMIN; run "
                           f"`ip link set {name} master {bridge}` as root") from None
        except OSError as exc:
            raise TapError(f"tap:{name}: cannot add it to bridge {bridge}: {exc.strerror}") from None
