"""Machine files: defaults, every table, v86's option names, paths, and error shapes."""
from __future__ import annotations

from pathlib import Path

import pytest

from pyv86.config import FORMAT_VERSION, load_machine_config, parse_size
from pyv86.errors import ConfigError


@pytest.fixture
def plugins(pyv86_plugins):
    import pyv86.testing.plugin

    pyv86_plugins.register_module(pyv86.testing.plugin, "pyv86.testing")
    pyv86_plugins.collect()
    return pyv86_plugins


def load(tmp_path: Path, text: str, plugins=None, name: str = "m.toml"):
    path = tmp_path / name
    path.write_text(text)
    return load_machine_config(path, plugins)


def error(tmp_path: Path, text: str, plugins=None) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, plugins)
    message = str(info.value)
    assert "\n" not in message
    return message.removeprefix(str(tmp_path / "m.toml"))


def test_minimal_file_gets_the_defaults(tmp_path):
    config = load(tmp_path, "version = 1\n")
    assert FORMAT_VERSION == 1
    assert (config.memory, config.clock, config.cpu_enabled, config.on_triple_fault) == (
        128 << 20, "realtime", True, "reset")
    assert (config.kernel, config.initrd, config.cmdline) == (None, None, "")
    assert config.devices == () and config.netdevs == ()
    assert (config.preserve_mac_from_state_image, config.mac_address_translation) == (False, False)
    assert config.path == str(tmp_path / "m.toml")


def test_every_table(tmp_path, plugins):
    config = load(tmp_path, """
version = 1
name = "lab"
[machine]
memory = "256M"
clock = "virtual"
cpu = false
on_triple_fault = "stop"
[boot]
kernel = "bzImage"
initrd = "sub/initrd.img"
cmdline = "console=ttyS0"
[device.nic]
type = "test-nic"
netdev = "lan"
mac = "52:54:00:00:00:02"
[netdev.lan]
url = "null:"
pcap = "lan.pcap"
[state]
image = "saved.pyv86"
preserve_mac_from_state_image = true
mac_address_translation = true
""", plugins)
    assert config.name == "lab"
    assert (config.memory, config.clock, config.cpu_enabled, config.on_triple_fault) == (
        256 << 20, "virtual", False, "stop")
    assert config.kernel == str(tmp_path / "bzImage")  # relative to the machine file
    assert config.initrd == str(tmp_path / "sub" / "initrd.img")
    assert config.cmdline == "console=ttyS0"
    (nic,) = config.devices
    assert (nic.id, nic.type, nic.netdev, nic.options) == ("nic", "test-nic", "lan", {"mac": "52:54:00:00:00:02"})
    (lan,) = config.netdevs
    assert (lan.id, lan.url, lan.pcap) == ("lan", "null:", str(tmp_path / "lan.pcap"))
    assert config.state_image == str(tmp_path / "saved.pyv86")
    assert config.preserve_mac_from_state_image and config.mac_address_translation


def test_v86_option_names_map_onto_the_tables(tmp_path):
    config = load(tmp_path, """
version = 1
memory_size = 67108864
bzimage = "vmlinuz"
initrd = "initrd.img"
cmdline = "quiet"
preserve_mac_from_state_image = true
mac_address_translation = true
""")
    assert config.memory == 64 << 20
    assert config.kernel == str(tmp_path / "vmlinuz")
    assert config.initrd == str(tmp_path / "initrd.img")
    assert config.cmdline == "quiet"
    assert config.preserve_mac_from_state_image and config.mac_address_translation


def test_network_relay_url_adds_a_relay_netdev(tmp_path):
    config = load(tmp_path, 'version = 1\nnetwork_relay_url = "wss://relay.invalid/"\n')
    assert [(n.id, n.url) for n in config.netdevs] == [("relay", "wss://relay.invalid/")]
    assert [(d.id, d.type, d.netdev) for d in config.devices] == [("net0", "ne2k-pci", "relay")]


def test_network_relay_url_with_a_scheme_nobody_provides(tmp_path, plugins):
    assert error(tmp_path, 'version = 1\nnetwork_relay_url = "gopher://x/"\n', plugins) == (
        ":2: network_relay_url: unknown network URL scheme 'gopher'; installed: " + ", ".join(
            plugins.net_backends.schemes()))


def test_guest_paths_resolve_to_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PYV86_CACHE_DIR", str(tmp_path / "cache"))
    config = load(tmp_path, 'version = 1\n[boot]\nkernel = "guest:vmlinuz"\n')
    assert config.kernel == str(tmp_path / "cache" / "guest" / "vmlinuz")


@pytest.mark.parametrize("text, size", [
    ("16M", 16 << 20), ("1G", 1 << 30), ("2048k", 2 << 20), ("64MiB", 64 << 20), ("32 MB", 32 << 20),
    (1 << 21, 1 << 21),
])
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["12Q", "", "1.5G", True, None, [16]])
def test_bad_sizes(bad):
    with pytest.raises(ValueError):
        parse_size(bad)


@pytest.mark.parametrize("text, expected", [
    ("version = 1\nmemory_size = 1000\n", ":2: memory_size: 1000 bytes is not a multiple of 4 KiB"),
    ("version = 1\n[machine]\nmemory = \"4G\"\n", ":3: machine.memory: 4294967296 bytes"),
    ("version = 0\n", ":1: version: format version 0 does not exist (use 1)"),
    ("version = \"1\"\n", ":1: version: expected an integer, got str '1'"),
    ("version = true\n", ":1: version: expected an integer, got a boolean"),
    ("version = 1\nname = 3\n", ":2: name: expected a string, got int 3"),
    ("version = 1\nmachine = 3\n", ":2: machine: expected a table [machine], got int"),
    ("version = 1\n[boot]\ncmdline = \"" + "x" * 2048 + "\"\n", ":3: boot.cmdline: 2048 characters"),
    ("version = 1\n[boot]\nkernel = 5\n", ":3: boot.kernel: expected a file path, got int 5"),
    ("version = 1\n[state]\nimage = \"a\"\nmac_address_translation = 1\n",
     ":4: state.mac_address_translation: expected true or false, got int 1"),
    ("version = 1\n[netdev.lan]\nurl = \"lan\"\n", ":3: netdev.lan.url: 'lan' has no scheme"),
    ("version = 1\n[netdev.lan]\nurl = \"null:\"\nspeed = 10\n", ":4: netdev.lan.speed: unknown key; valid keys: pcap, url"),
    ("version = 1\n[device.a]\ntype = 7\n", ":3: device.a.type: expected a device type name, got int 7"),
    ("version = 1\n[device.a]\ntype = \"test-nic\"\nnetdev = 1\n", ":4: device.a.netdev: expected a netdev id, got int 1"),
    ("version = 1\n[machine]\non_triple_fault = \"explode\"\n", ":3: machine.on_triple_fault: 'explode' is not"),
])
def test_errors_name_file_line_table_and_key(tmp_path, plugins, text, expected):
    assert error(tmp_path, text, plugins).startswith(expected)


def test_without_plugins_device_types_are_not_checked(tmp_path):
    config = load(tmp_path, 'version = 1\n[device.x]\ntype = "from-a-plugin"\ncolour = "red"\n')
    assert config.devices[0].options == {"colour": "red"}


def test_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "bin.toml"
    path.write_bytes(b"version = 1\nname = \"\xff\xfe\"\n")
    with pytest.raises(ConfigError, match=r"bin.toml: cannot read machine file: 'utf-8' codec"):
        load_machine_config(path)


def test_missing_version_is_reported_at_line_1(tmp_path):
    assert error(tmp_path, "[machine]\nmemory = \"16M\"\n") == (
        ":1: (top level): missing 'version = 1' at the top of the file")
