"""The learning switch on its own: learning, flooding, no echo, aging, MAC ownership."""
from __future__ import annotations

from pyv86_relay_ws.switch import Port, Switch
from relayhelp import BCAST, eth, mac


class ListPort(Port):
    def __init__(self, name: str, max_macs: int = 16) -> None:
        super().__init__(name, max_macs)
        self.got: list[bytes] = []

    def deliver(self, frame: bytes, wire: bytes) -> None:
        assert wire.endswith(frame)
        self.got.append(frame)


def switch_with(n: int, **kw) -> tuple[Switch, list[ListPort]]:  # type: ignore[no-untyped-def]
    sw = Switch(**kw)
    ports = [ListPort(f"p{i}") for i in range(n)]
    for p in ports:
        sw.add_port(p)
    return sw, ports


def test_broadcast_floods_to_every_other_port_and_never_echoes():
    sw, (a, b, c) = switch_with(3)
    frame = eth(BCAST, mac(1))
    sw.input(a, frame, 0.0)
    assert a.got == [] and b.got == [frame] and c.got == [frame]


def test_multicast_is_flooded_like_broadcast():
    sw, (a, b, c) = switch_with(3)
    frame = eth(b"\x01\x00\x5e\x00\x00\x01", mac(1))
    sw.input(a, frame, 0.0)
    assert b.got == [frame] and c.got == [frame] and a.got == []


def test_unknown_unicast_floods_then_known_unicast_goes_to_the_learned_port_only():
    sw, (a, b, c) = switch_with(3)
    first = eth(mac(2), mac(1))
    sw.input(a, first, 0.0)  # nobody has said they are mac(2) yet
    assert b.got == [first] and c.got == [first]
    sw.input(b, eth(mac(1), mac(2)), 1.0)  # b learns as mac(2); mac(1) is known on a
    assert a.got == [eth(mac(1), mac(2))] and c.got == [first]
    second = eth(mac(2), mac(1), payload=b"two")
    sw.input(a, second, 2.0)
    assert b.got[-1] == second and c.got == [first]
    assert sw.unicast == 2 and sw.flooded == 1


def test_a_frame_for_a_mac_on_the_same_port_is_filtered():
    sw, (a, b) = switch_with(2)
    sw.input(a, eth(BCAST, mac(1)), 0.0)
    sw.input(a, eth(BCAST, mac(3)), 0.0)
    sw.input(a, eth(mac(3), mac(1)), 0.0)
    assert sw.filtered == 1 and b.got == [eth(BCAST, mac(1)), eth(BCAST, mac(3))]


def test_entries_age_out_and_then_unicast_floods_again():
    sw, (a, b, c) = switch_with(3, mac_age=10.0)
    sw.input(b, eth(BCAST, mac(2)), 0.0)
    sw.input(a, eth(mac(2), mac(1)), 5.0)
    assert c.got == [eth(BCAST, mac(2))]  # unicast went to b only
    sw.input(a, eth(mac(2), mac(1)), 20.0)  # mac(2) silent for 20 s > 10 s
    assert c.got[-1] == eth(mac(2), mac(1))
    assert sw.sweep(40.0) == 2 and sw.fdb == {} and a.macs == 0 and b.macs == 0


def test_a_live_clients_mac_cannot_be_stolen_by_another_client():
    sw, (a, b, c) = switch_with(3)
    sw.input(a, eth(BCAST, mac(1)), 0.0)
    spoof = eth(BCAST, mac(1), payload=b"spoof")
    sw.input(b, spoof, 1.0)
    assert b.drop_mac_conflict == 1 and spoof not in c.got and spoof not in a.got
    sw.input(c, eth(mac(1), mac(3)), 2.0)
    assert a.got[-1] == eth(mac(1), mac(3)) and b.got[-1] != eth(mac(1), mac(3))


def test_allow_mac_move_lets_a_client_take_over_and_a_closed_ports_mac_is_free():
    sw, (a, b, c) = switch_with(3, allow_mac_move=True)
    sw.input(a, eth(BCAST, mac(1)), 0.0)
    sw.input(b, eth(BCAST, mac(1)), 1.0)
    assert sw.moves == 1 and sw.fdb[mac(1)][0] is b
    sw2, (x, y) = switch_with(2)
    sw2.input(x, eth(BCAST, mac(1)), 0.0)
    sw2.remove_port(x)
    sw2.input(y, eth(BCAST, mac(1)), 1.0)
    assert sw2.fdb[mac(1)][0] is y and y.drop_mac_conflict == 0


def test_a_port_owns_at_most_max_macs_and_group_source_addresses_are_dropped():
    sw = Switch()
    a, b = ListPort("a", max_macs=2), ListPort("b")
    sw.add_port(a)
    sw.add_port(b)
    for i in range(5):
        sw.input(a, eth(BCAST, mac(10 + i)), 0.0)
    assert a.macs == 2 and a.drop_mac_limit == 3 and len(b.got) == 2
    sw.input(a, eth(BCAST, b"\x01" + mac(1)[1:]), 0.0)
    assert a.drop_bad_source == 1 and len(b.got) == 2


def test_removing_a_port_forgets_its_macs():
    sw, (a, b) = switch_with(2)
    sw.input(a, eth(BCAST, mac(1)), 0.0)
    sw.remove_port(a)
    assert sw.fdb == {} and sw.ports == [b]
