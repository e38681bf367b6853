"""The postcard plugin end to end: found through its entry point, named by a machine file,
driven through the port bus, saved and restored. Uses only pyv86's shipped fixtures.

The tests decode port 0x680 rather than the default 0x80 so they never depend on what
else a platform puts at 0x80.
"""
from __future__ import annotations

import pytest

from pyv86.errors import ConfigError

PORT = 0x680

MACHINE = f"""
[device.post]
type = "postcard"
port = {PORT:#x}
history = 4
"""


@pytest.fixture
def plugins(pyv86_plugins):
    # exactly what `pyv86` does for an installed distribution: load its entry point
    pyv86_plugins.load_entry_points(only=["postcard"])
    pyv86_plugins.collect()
    return pyv86_plugins


def test_entry_point_registers_the_postcard_kind_under_its_distribution(plugins):
    assert plugins.devices.provider("postcard") == "postcard"
    record = plugins.records["postcard"]
    assert record.distribution == "pyv86-postcard"
    assert record.module == "pyv86_postcard"
    info = {p["name"]: p for p in plugins.plugin_info()}["postcard"]
    assert info["devices"] == ["postcard"]
    assert set(info["hooks"]) == {"pyv86_register_devices", "pyv86_machine_stopped"}


def test_guest_write_is_recorded_and_read_back(plugins, make_machine):
    machine = make_machine(MACHINE)
    card = machine.device("post")
    assert machine.ports.inb(PORT) == 0xFF  # power-on value
    machine.ports.outb(PORT, 0x12)
    machine.ports.outb(PORT, 0x34)
    assert card.state.last_code == 0x34
    assert card.state.writes == 2
    assert card.state.recent == [0x12, 0x34]
    assert machine.ports.inb(PORT) == 0x34


def test_wide_write_reaches_the_card_as_its_low_byte(plugins, make_machine):
    machine = make_machine(MACHINE)
    machine.ports.outw(PORT, 0xBEEF)  # the bus splits it; 0x681 is unassigned
    card = machine.device("post")
    assert (card.state.last_code, card.state.writes) == (0xEF, 1)


def test_history_keeps_only_the_most_recent_codes(plugins, make_machine):
    machine = make_machine(MACHINE)
    for code in range(10):
        machine.ports.outb(PORT, code)
    card = machine.device("post")
    assert card.state.recent == [6, 7, 8, 9]
    assert card.state.writes == 10


def test_reset_returns_to_power_on_state(plugins, make_machine):
    machine = make_machine(MACHINE)
    machine.ports.outb(PORT, 0x55)
    machine.reset("api")
    card = machine.device("post")
    assert (card.state.last_code, card.state.writes, card.state.recent) == (0xFF, 0, [])


def test_state_round_trips(plugins, make_machine, assert_state_roundtrip):
    machine = make_machine(MACHINE)
    for code in (0x01, 0x02, 0xA5):
        machine.ports.outb(PORT, code)
    restored = assert_state_roundtrip(machine.device("post"))
    assert restored.recent == [0x01, 0x02, 0xA5]
    assert machine.ports.inb(PORT) == 0xA5  # the restored card answers the guest


def test_restore_clamps_an_image_longer_than_the_configured_history(plugins, make_machine):
    from pyv86_postcard import PostCardState

    machine = make_machine(MACHINE)
    card = machine.device("post")
    card.restore(PostCardState(last_code=0x1FF, writes=9, recent=list(range(9))))
    assert card.state.last_code == 0xFF
    assert card.state.recent == [5, 6, 7, 8]


def test_stop_on_code_stops_the_machine(plugins, make_machine):
    machine = make_machine(MACHINE + "stop_on = 0xfe\n")
    machine.ports.outb(PORT, 0x10)
    assert not machine.stopped
    machine.ports.outb(PORT, 0xFE)
    assert machine.stopped
    assert machine.stop_reason == "postcard post: code 0xfe"


def test_default_port_is_0x80(plugins, make_machine):
    config = make_machine.config('[device.post]\ntype = "postcard"\n')
    assert config.devices[0].type == "postcard"
    from pyv86_postcard import PostCardConfig

    assert PostCardConfig().port == 0x80


@pytest.mark.parametrize("line, key, fragment", [
    ("port = 0x10000", "port", "is not an I/O port"),
    ("history = 0", "history", "out of range"),
    ("stop_on = 256", "stop_on", "is not a byte"),
    ("port = \"0x80\"", "port", "expected integer"),
    ("colour = 1", "colour", "unknown key for device type 'postcard'"),
])
def test_bad_options_are_one_line_config_errors(plugins, make_machine, line, key, fragment):
    text = f'[device.post]\ntype = "postcard"\n{line}\n'
    with pytest.raises(ConfigError) as info:
        make_machine(text, path="post.toml")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"post.toml:3: device.post.{key}: ")
    assert fragment in message


def test_two_cards_on_one_port_conflict(plugins, make_machine):
    from pyv86.bus.ports import PortConflictError

    # today the bus's own error; a one-line ConfigError naming the device would do as well
    with pytest.raises((PortConflictError, ConfigError), match="port 0x680: post2 overlaps post"):
        make_machine(MACHINE + f'[device.post2]\ntype = "postcard"\nport = {PORT:#x}\n')
