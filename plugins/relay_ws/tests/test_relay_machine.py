"""A machine file's network_relay_url: the ne2k-pci NIC's port on a ws: backend, end to end."""
from __future__ import annotations

import threading

import pytest

from relayhelp import BCAST, RawClient, eth, mac, wait_for


def test_network_relay_url_connects_the_nic_port_to_the_relay_both_ways(relay, tmp_path):
    from pyv86.config import load_machine_config
    from pyv86.machine import Machine
    from pyv86.plugins.manager import create_plugin_manager

    plugins = create_plugin_manager()
    if "ne2k-pci" not in plugins.devices:
        pytest.fail("this test needs the pyv86-ne2k plugin: pip install -e plugins/ne2k")
    server = relay()
    path = tmp_path / "v86.toml"
    path.write_text(f'version = 1\nnetwork_relay_url = "{server.url}"\n'
                    '[machine]\nmemory = "16M"\ncpu = false\nclock = "realtime"\n')
    machine = Machine.from_config(load_machine_config(str(path), plugins), plugins)
    nic = next(d for d in machine.devices.values() if d.kind == "ne2k-pci")
    seen: list[tuple[str, bytes, threading.Thread]] = []
    nic.port.add_observer(lambda direction, frame: seen.append((direction, frame, threading.current_thread())))
    peer = RawClient(server.port)
    from_peer = eth(BCAST, mac(2), payload=b"from the relay")
    from_nic = eth(mac(2), nic.wire_mac, payload=b"from the nic")

    def drive() -> None:
        try:
            assert wait_for(lambda: server.client_count == 2, 10)
            peer.send(from_peer)
            assert wait_for(lambda: any(d == "rx" for d, _, _ in seen), 10)
            machine.call_soon_threadsafe(lambda: nic.port.transmit(from_nic))
            assert peer.recv_frame(5) == from_nic
        finally:
            machine.stop("test")

    driver = threading.Thread(target=drive)
    driver.start()
    try:
        assert machine.run(timeout_s=30) == "test"
    finally:
        machine.shutdown("test")
        driver.join(10)
    assert [(d, f) for d, f, _ in seen] == [("rx", from_peer), ("tx", from_nic)]
    assert all(t is threading.main_thread() for _, _, t in seen)  # the NIC is only touched on its thread
    assert nic.port.counters.rx_frames == 1 and nic.port.counters.tx_frames == 1
    assert wait_for(lambda: server.client_count == 1)  # shutdown closed the backend
