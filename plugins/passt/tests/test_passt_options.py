"""``passt:`` URLs: what they turn into on passt's command line, and what they refuse."""
from __future__ import annotations

import pytest

from pyv86_passt.options import parse_url


def test_a_bare_url_starts_passt_announcing_a_1500_mtu():
    opts = parse_url("passt:")
    assert opts.socket_path is None
    assert opts.argv() == ["--mtu", "1500"]
    assert parse_url("user:") == opts


def test_a_path_attaches_to_a_running_passt():
    assert parse_url("passt:/run/user/1000/passt.socket").socket_path == "/run/user/1000/passt.socket"
    assert parse_url("passt:///tmp/p.sock").socket_path == "/tmp/p.sock"
    assert parse_url("user:relative.sock").socket_path == "relative.sock"


def test_port_forwards_listen_on_loopback_unless_an_address_is_given():
    opts = parse_url("passt:?tcp=8080:80&tcp=2222:22&udp=5353:53&tcp=0.0.0.0/8443:443")
    assert opts.argv()[:8] == ["-t", "127.0.0.1/8080:80", "-t", "127.0.0.1/2222:22",
                               "-t", "0.0.0.0/8443:443", "-u", "127.0.0.1/5353:53"]
    assert parse_url("passt:?tcp=8000-8010,~8005").tcp == ("127.0.0.1/8000-8010,~8005",)
    assert parse_url("passt:?tcp=all&udp=none").argv()[:4] == ["-t", "all", "-u", "none"]


def test_addresses_and_everything_else_map_to_passt_options():
    opts = parse_url("passt:?address=10.0.2.15&address=fd00::15&netmask=24&gateway=10.0.2.2"
                     "&map_gw=0&dns=10.0.2.3&dns_forward=10.0.2.3&search=example.test&mtu=0"
                     "&host_mac=52:54:00:AA:BB:CC&ip=4&interface=eth0&outbound_if=eth0&debug=1")
    assert opts.argv() == [
        "--address", "10.0.2.15", "--address", "fd00::15", "--netmask", "24",
        "--gateway", "10.0.2.2", "--no-map-gw", "--dns", "10.0.2.3", "--dns-forward", "10.0.2.3",
        "--search", "example.test", "--mac-addr", "52:54:00:aa:bb:cc", "--ipv4-only",
        "--interface", "eth0", "--outbound-if4", "eth0", "--debug"]
    assert parse_url("passt:?dns=none").argv() == ["--dns", "none", "--mtu", "1500"]
    assert "--ipv6-only" in parse_url("passt:?ip=6").argv()


@pytest.mark.parametrize("url, message", [
    ("passt:?colour=blue", "unknown option 'colour'; known: address, debug,"),
    ("passt:?mtu=1500&mtu=576", "option 'mtu' given twice"),
    ("passt:?tcp=", "tcp='' is not a passt port spec; examples: tcp=8080:80"),
    ("passt:?udp=80;rm", "udp='80;rm' is not a passt port spec"),
    ("passt:?address=10.0.2.300", "address='10.0.2.300' is not an IPv4 or IPv6 address"),
    ("passt:?address=10.0.2.15&address=10.0.2.16", "address given twice for IPv4"),
    ("passt:?gateway=router", "gateway='router' is not an IPv4 or IPv6 address"),
    ("passt:?netmask=33", "netmask='33' is neither a prefix length (0-32) nor a dotted IPv4 mask"),
    ("passt:?netmask=255.0.255.0", "netmask='255.0.255.0' is neither"),
    ("passt:?map_gw=maybe", "map_gw='maybe' is not a yes/no value (use 1 or 0)"),
    ("passt:?mtu=40", "mtu='40' is not 0 (announce none) or a number from 68 to 65520"),
    ("passt:?host_mac=52:54:00", "host_mac='52:54:00' is not a MAC address"),
    ("passt:?ip=5", "ip='5' must be 4 (IPv4 only) or 6 (IPv6 only)"),
    ("passt:?interface=eth0;x", "interface='eth0;x' is not a network interface name"),
    ("passt:/tmp/p.sock?tcp=80", "options apply only when pyv86 starts passt itself"),
    ("tap:tap0", "not a passt: or user: URL"),
])
def test_bad_urls_give_one_line_reasons(url, message):
    with pytest.raises(ValueError) as err:
        parse_url(url)
    assert message in str(err.value)
    assert "\n" not in str(err.value)
