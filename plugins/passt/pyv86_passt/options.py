"""``passt:`` / ``user:`` URLs: what they may say, checked, and turned into passt's command line.

Forms::

    passt:                          start passt with its defaults
    passt:?tcp=8080:80&udp=5353:53  start passt with options (query syntax below)
    passt:/run/user/1000/vm.socket  attach to a passt someone else started
    user:...                        the same, under QEMU's name for user-mode networking

Query keys (``&``-separated; ``tcp``, ``udp``, ``address``, ``gateway`` and ``dns``
may repeat):

``tcp=SPEC`` / ``udp=SPEC``
    Inbound port forwards to the guest, in passt's ``-t``/``-u`` syntax:
    ``8080`` (host 8080 -> guest 8080), ``8080:80`` (host 8080 -> guest 80),
    ``8000-8010``, ``8000-8010:9000-9010``, ``22,80``, ``2000-3000,~2500``.
    Without a bind address the host side listens on 127.0.0.1 only; write
    ``0.0.0.0/8080:80`` (or another address followed by ``/``) to listen elsewhere.
    ``all`` forwards every free unprivileged port on all addresses; ``none`` nothing.
``address=IP``, ``netmask=BITS|MASK``, ``gateway=IP``
    What passt's DHCP/NDP tells the guest (default: the host's own address and
    default gateway, passt's choice). The gateway address is also the guest's way to
    reach the host's loopback (``map_gw``).
``map_gw=0``
    Don't map connections to the gateway address onto the host's 127.0.0.1
    (passt ``--no-map-gw``; newer passt calls the mapping ``--map-host-loopback``).
``dns=IP|none``, ``dns_forward=IP``, ``search=DOMAINS``
    DNS servers announced by DHCP; an address whose port-53 UDP passt forwards to the
    host's resolver; the search list.
``mtu=N``
    MTU announced by DHCP (default 1500, what an NE2000 can take; 0 announces none).
``host_mac=MAC``
    The MAC address passt uses as its own (the guest's gateway MAC).
``ip=4|6``
    IPv4 only or IPv6 only (default both, where the host has them).
``interface=NAME``, ``outbound_if=NAME``
    Host interface to take addresses and routes from; interface outbound sockets
    are bound to (IPv4).
``debug=1``
    passt logs every decision (shown at DEBUG level under ``pyv86_passt.process``).
"""
from __future__ import annotations

import ipaddress
import re
from urllib.parse import parse_qsl

from attrs import define, field

PORT_SPEC = re.compile(r"^[0-9A-Za-z.:%/,~\-\[\]]+$")
MAC = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")
IFNAME = re.compile(r"^[A-Za-z0-9_.\-@]{1,15}$")
DEFAULT_MTU = 1500
REPEATABLE = {"tcp", "udp", "address", "gateway", "dns"}
KNOWN = sorted(REPEATABLE | {"netmask", "map_gw", "dns_forward", "search", "mtu", "host_mac",
                             "ip", "interface", "outbound_if", "debug"})


@define(frozen=True)
class PasstOptions:
    """What a ``passt:`` URL asks for. ``socket_path`` set means attach, not start."""

    socket_path: str | None = None
    tcp: tuple[str, ...] = ()
    udp: tuple[str, ...] = ()
    addresses: tuple[str, ...] = ()
    netmask: str | None = None
    gateways: tuple[str, ...] = ()
    map_gw: bool = True
    dns: tuple[str, ...] = ()
    dns_forward: str | None = None
    search: str | None = None
    mtu: int = DEFAULT_MTU
    host_mac: str | None = None
    ip_version: int | None = None
    interface: str | None = None
    outbound_if: str | None = None
    debug: bool = False
    query: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    def argv(self) -> list[str]:
        """passt options for these settings (socket, foreground and lifetime options excluded)."""
        args: list[str] = []
        for spec in self.tcp:
            args += ["-t", spec]
        for spec in self.udp:
            args += ["-u", spec]
        for addr in self.addresses:
            args += ["--address", addr]
        if self.netmask is not None:
            args += ["--netmask", self.netmask]
        for addr in self.gateways:
            args += ["--gateway", addr]
        if not self.map_gw:
            args.append("--no-map-gw")
        for addr in self.dns:
            args += ["--dns", addr]
        if self.dns_forward is not None:
            args += ["--dns-forward", self.dns_forward]
        if self.search is not None:
            args += ["--search", self.search]
        if self.mtu:
            args += ["--mtu", str(self.mtu)]
        if self.host_mac is not None:
            args += ["--mac-addr", self.host_mac]
        if self.ip_version == 4:
            args.append("--ipv4-only")
        elif self.ip_version == 6:
            args.append("--ipv6-only")
        if self.interface is not None:
            args += ["--interface", self.interface]
        if self.outbound_if is not None:
            args += ["--outbound-if4", self.outbound_if]
        if self.debug:
            args.append("--debug")
        return args


def _port_spec(key: str, value: str) -> str:
    if not value or not PORT_SPEC.match(value):
        raise ValueError(f"{key}={value!r} is not a passt port spec; "
                         f"examples: {key}=8080:80, {key}=8000-8010, {key}=0.0.0.0/8080:80")
    if value in ("all", "none"):
        return value
    if "/" not in value:
        value = "127.0.0.1/" + value
    return value


def _ip(key: str, value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{key}={value!r} is not an IPv4 or IPv6 address") from None


def _two_families(key: str, values: list[str]) -> tuple[str, ...]:
    addrs = tuple(_ip(key, v) for v in values)
    versions = [ipaddress.ip_address(a).version for a in addrs]
    if len(versions) != len(set(versions)):
        raise ValueError(f"{key} given twice for IPv{versions[-1]}; give at most one IPv4 and one IPv6")
    return addrs


def _flag(key: str, value: str) -> bool:
    low = value.lower()
    if low in ("1", "yes", "true", "on"):
        return True
    if low in ("0", "no", "false", "off"):
        return False
    raise ValueError(f"{key}={value!r} is not a yes/no value (use 1 or 0)")


def _netmask(value: str) -> str:
    try:
        if value.isdigit():
            if not 0 <= int(value) <= 32:
                raise ValueError
            return value
        ipaddress.IPv4Network(f"0.0.0.0/{value}")
        return value
    except ValueError:
        raise ValueError(f"netmask={value!r} is neither a prefix length (0-32) nor a dotted IPv4 mask") from None


def parse_url(url: str) -> PasstOptions:
    """Check a ``passt:``/``user:`` URL; raises ``ValueError`` with a one-line reason."""
    scheme, sep, rest = url.partition(":")
    if not sep or scheme.lower() not in ("passt", "user"):
        raise ValueError(f"not a passt: or user: URL (got {url!r})")
    path, _, query = rest.partition("?")
    if path.startswith("//"):
        path = path[2:]
    pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=False) if query else []
    if path:
        if pairs:
            raise ValueError("options apply only when pyv86 starts passt itself "
                             "(use passt:?... without a socket path)")
        return PasstOptions(socket_path=path)
    values: dict[str, list[str]] = {}
    for key, value in pairs:
        key = key.strip().lower().replace("-", "_")
        if key not in KNOWN:
            raise ValueError(f"unknown option {key!r}; known: {', '.join(KNOWN)}")
        if key in values and key not in REPEATABLE:
            raise ValueError(f"option {key!r} given twice")
        values.setdefault(key, []).append(value.strip())

    def one(key: str) -> str | None:
        got = values.get(key)
        return got[0] if got else None

    kwargs: dict[str, object] = {"query": tuple(pairs)}
    kwargs["tcp"] = tuple(_port_spec("tcp", v) for v in values.get("tcp", []))
    kwargs["udp"] = tuple(_port_spec("udp", v) for v in values.get("udp", []))
    kwargs["addresses"] = _two_families("address", values.get("address", []))
    kwargs["gateways"] = _two_families("gateway", values.get("gateway", []))
    if (v := one("netmask")) is not None:
        kwargs["netmask"] = _netmask(v)
    if (v := one("map_gw")) is not None:
        kwargs["map_gw"] = _flag("map_gw", v)
    dns = values.get("dns", [])
    if dns == ["none"]:
        kwargs["dns"] = ("none",)
    else:
        kwargs["dns"] = tuple(_ip("dns", v) for v in dns)
    if (v := one("dns_forward")) is not None:
        kwargs["dns_forward"] = _ip("dns_forward", v)
    if (v := one("search")) is not None:
        if not v or any(c.isspace() and c != " " for c in v):
            raise ValueError(f"search={v!r} is not a space-separated list of domains")
        kwargs["search"] = v
    if (v := one("mtu")) is not None:
        if not v.isdigit() or not (int(v) == 0 or 68 <= int(v) <= 65520):
            raise ValueError(f"mtu={v!r} is not 0 (announce none) or a number from 68 to 65520")
        kwargs["mtu"] = int(v)
    if (v := one("host_mac")) is not None:
        if not MAC.match(v):
            raise ValueError(f"host_mac={v!r} is not a MAC address (six hex pairs separated by ':')")
        kwargs["host_mac"] = v.lower()
    if (v := one("ip")) is not None:
        if v not in ("4", "6"):
            raise ValueError(f"ip={v!r} must be 4 (IPv4 only) or 6 (IPv6 only)")
        kwargs["ip_version"] = int(v)
    for key in ("interface", "outbound_if"):
        if (v := one(key)) is not None:
            if not IFNAME.match(v):
                raise ValueError(f"{key}={v!r} is not a network interface name")
            kwargs[key] = v
    if (v := one("debug")) is not None:
        kwargs["debug"] = _flag("debug", v)
    return PasstOptions(**kwargs)  # type: ignore[arg-type]
