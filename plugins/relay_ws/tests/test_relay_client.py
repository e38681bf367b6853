"""The ws:/wss: client backend: interoperability, padding, queueing, reconnection."""
from __future__ import annotations

import logging
import queue
import socket
import struct
import threading

import pytest

from pyv86.testing.net import SlicingMachine
from pyv86_relay_ws.client import WsBackend
from relayhelp import BCAST, RawClient, eth, mac, wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def collecting(backend: WsBackend) -> queue.Queue[bytes]:
    q: queue.Queue[bytes] = queue.Queue()
    backend.set_receiver(q.put)
    return q


def drained(q: queue.Queue[bytes], wait: float = 0.3) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(q.get(timeout=wait))
        except queue.Empty:
            return out


@pytest.fixture
def backends():
    made: list[WsBackend] = []

    def make(url: str, machine, **kw) -> WsBackend:  # type: ignore[no-untyped-def]
        b = WsBackend(url, machine, **kw)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


def test_frames_flow_both_ways_through_pyv86_relay(relay, backends, direct_machine):
    server = relay()
    vm = backends(server.url, direct_machine)
    got = collecting(vm)
    peer = RawClient(server.port)
    assert vm.wait_connected(5) and wait_for(lambda: server.client_count == 2)
    vm.send(eth(BCAST, mac(1), payload=b"dhcp discover"))
    assert peer.recv_frame() == eth(BCAST, mac(1), payload=b"dhcp discover")
    peer.send(eth(mac(1), mac(2), payload=b"offer"))
    assert got.get(timeout=3) == eth(mac(1), mac(2), payload=b"offer")
    stats = vm.stats
    assert stats["connected"] and stats["tx_frames"] == 1 and stats["rx_frames"] == 1


def test_client_sends_an_origin_header_and_no_subprotocol(peer_relay, backends, direct_machine):
    peer = peer_relay()
    vm = backends(f"ws://127.0.0.1:{peer.port}/relay?token=abc", direct_machine)
    assert vm.wait_connected(5)
    assert peer.headers[0]["origin"] == f"http://127.0.0.1:{peer.port}"
    assert "sec-websocket-protocol" not in peer.headers[0] and peer.subprotocols == [None]
    assert "token=***" in vm.name and "abc" not in vm.name


def test_text_runts_and_oversize_messages_are_dropped_and_padding_is_trimmed(peer_relay, backends,
                                                                            direct_machine):
    peer = peer_relay()
    vm = backends(f"ws://127.0.0.1:{peer.port}/", direct_machine)
    got = collecting(vm)
    assert vm.wait_connected(5) and wait_for(lambda: peer.connections == 1)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 48, 0, 0, 64, 17, 0, bytes(4), bytes(4)) + bytes(28)
    real = mac(1) + mac(2) + b"\x08\x00" + ip
    peer.send("a text message")
    peer.send(bytes(13))
    peer.send(bytes(1600))
    peer.send(real + b"\xcc" * (1518 - len(real)))  # go-websockproxy style
    peer.send(eth(mac(1), mac(2), payload=b"plain"))
    assert drained(got) == [real, eth(mac(1), mac(2), payload=b"plain")]
    s = vm.stats
    assert (s["rx_text_ignored"], s["rx_runt"], s["rx_oversize"], s["rx_trimmed"], s["rx_frames"]) == (1, 1, 1, 1, 2)


def test_while_disconnected_the_newest_frames_are_queued_and_sent_on_connect(peer_relay, backends,
                                                                            direct_machine):
    port = free_port()
    vm = backends(f"ws://127.0.0.1:{port}/", direct_machine, queue_frames=128, backoff_initial=0.05,
                  backoff_max=0.2)
    for i in range(300):
        vm.send(bytearray(eth(BCAST, mac(1), payload=i.to_bytes(2, "big"))))  # a reused NIC buffer
    assert vm.stats["tx_dropped"] == 172 and vm.stats["tx_queued"] == 128
    peer = peer_relay(port)
    assert vm.wait_connected(5)
    assert wait_for(lambda: len(peer.received) == 128)
    assert [int.from_bytes(m[14:16], "big") for m in peer.received] == list(range(172, 300))


def test_reconnects_with_capped_backoff_logging_each_attempt_once(backends, direct_machine, caplog):
    caplog.set_level(logging.INFO, logger="pyv86_relay_ws.client")
    port = free_port()
    vm = backends(f"ws://127.0.0.1:{port}/", direct_machine, backoff_initial=0.05, backoff_max=0.2)
    threading.Event().wait(1.5)
    failures = vm.stats["connect_failures"]
    # 0.05 + 0.1 + 0.2 + 0.2 + ... : about 8 attempts in 1.5 s; uncapped doubling would give 5
    assert 6 <= failures <= 14
    attempts = [r for r in caplog.records if "connecting (attempt" in r.getMessage()]
    failed = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(failed) == failures and len(attempts) in (failures, failures + 1)
    assert all(r.levelno == logging.INFO for r in attempts + failed)


def test_client_survives_a_relay_restart_and_traffic_resumes(relay, backends, direct_machine, caplog):
    caplog.set_level(logging.INFO, logger="pyv86_relay_ws.client")
    first = relay()
    port = first.port
    vm = backends(first.url, direct_machine, backoff_initial=0.1, backoff_max=0.5)
    got = collecting(vm)
    peer = RawClient(port)
    assert vm.wait_connected(5) and wait_for(lambda: first.client_count == 2)
    peer.send(eth(BCAST, mac(2), payload=b"before"))
    assert got.get(timeout=3) == eth(BCAST, mac(2), payload=b"before")
    first.stop()
    assert wait_for(lambda: not vm.connected)
    second = relay(port=port)
    assert vm.wait_connected(10)
    peer2 = RawClient(port)
    assert wait_for(lambda: second.client_count == 2)
    peer2.send(eth(BCAST, mac(2), payload=b"after"))
    assert got.get(timeout=3) == eth(BCAST, mac(2), payload=b"after")
    vm.send(eth(mac(2), mac(1), payload=b"reply"))
    assert peer2.recv_frame() == eth(mac(2), mac(1), payload=b"reply")
    assert vm.stats["connects"] == 2 and vm.stats["disconnects"] == 1
    messages = [r.getMessage() for r in caplog.records]
    assert any("disconnected" in m for m in messages) and sum("connected" == m.split(": ")[-1] for m in messages) == 2


def test_wss_to_a_tls_relay(relay, backends, direct_machine, tmp_path):
    import ssl

    from test_relay_server import make_cert

    cert, key = make_cert(tmp_path)
    server = relay(cert=cert, key=key)
    vm = backends(server.url, direct_machine, ssl_context=ssl.create_default_context(cafile=cert))
    got = collecting(vm)
    assert vm.wait_connected(5)
    other = backends(server.url, direct_machine, ssl_context=ssl.create_default_context(cafile=cert))
    assert other.wait_connected(5) and wait_for(lambda: server.client_count == 2)
    other.send(eth(BCAST, mac(7), payload=b"over tls"))
    assert got.get(timeout=3) == eth(BCAST, mac(7), payload=b"over tls")


def test_bad_urls_are_refused_in_one_line(direct_machine):
    for url, msg in [("ws://", "has no host"), ("http://x/", "not a ws:// or wss:// URL"),
                     ("ws://h:99999/", "invalid port")]:
        with pytest.raises(ValueError, match=msg):
            WsBackend(url, direct_machine)


def test_received_frames_run_on_the_machine_thread(relay):
    from pyv86.machine import Machine
    from pyv86_relay_ws.client import make_backend

    server = relay()
    machine = Machine(memory=1 << 20, clock_mode="realtime")
    backend = make_backend(server.url, machine)
    machine.netdevs["relay"] = backend
    seen: list[tuple[bytes, threading.Thread]] = []

    def receive(frame: bytes) -> None:
        seen.append((frame, threading.current_thread()))
        if len(seen) == 3:
            machine.stop("test")

    backend.set_receiver(receive)
    assert backend.wait_connected(5)
    peer = RawClient(server.port)
    assert wait_for(lambda: server.client_count == 2)
    for i in range(3):
        peer.send(eth(BCAST, mac(2), payload=bytes([i])))
    try:
        assert machine.run(timeout_s=10) == "test"
    finally:
        machine.shutdown("test")
    assert [f for f, _ in seen] == [eth(BCAST, mac(2), payload=bytes([i])) for i in range(3)]
    assert all(t is threading.main_thread() for _, t in seen)
    assert not backend.connected


def test_the_plugin_registers_ws_wss_and_the_relay_command():
    from pyv86.config import NetdevSpec
    from pyv86.errors import ConfigError
    from pyv86.machine import Machine
    from pyv86.net.attach import open_netdev
    from pyv86.plugins.manager import create_plugin_manager

    plugins = create_plugin_manager(load=["relay_ws"])
    assert {"ws", "wss"} <= set(plugins.net_backends.schemes())
    assert plugins.net_backends.provider("ws") == "relay_ws"
    with pytest.raises(ConfigError, match=r"netdev.lan.url: ws://: 'ws://' has no host"):
        open_netdev(NetdevSpec("lan", "ws://"), Machine(memory=1 << 20), plugins)


def test_frames_sent_during_a_cpu_slice_leave_together_when_it_ends(relay, backends, monkeypatch):
    from pyv86.net import handoff
    monkeypatch.setattr(handoff, "QUIET_S", 3600.0)   # after the first frame, all is a stream
    server = relay()
    machine = SlicingMachine()
    vm = backends(server.url, machine)
    peer = RawClient(server.port)
    assert vm.wait_connected(5) and wait_for(lambda: server.client_count == 2)
    vm.send(eth(BCAST, mac(1), payload=b"first"))         # the first frame: at once
    assert peer.recv_frame() == eth(BCAST, mac(1), payload=b"first")
    machine.in_slice = True
    sent = [eth(BCAST, mac(1), payload=b"slice frame %d" % i) for i in range(3)]
    for f in sent:
        vm.send(f)
    assert peer.frames(timeout=0.3) == []      # the writer was not woken during the slice
    machine.end_slice()
    assert [peer.recv_frame() for _ in sent] == sent
    vm.send(eth(BCAST, mac(1), payload=b"no slice"))   # not in a slice: at once
    assert peer.recv_frame() == eth(BCAST, mac(1), payload=b"no slice")


def test_a_full_nic_holds_frames_in_the_inbox_then_they_are_dropped_and_counted(relay, backends,
                                                                                  direct_machine):
    """The NIC's port holds the client back (``rx_resume``): frames wait in the client's
    inbox, beyond it they are dropped and counted by the client, never by the NIC's port
    (whose overflow the NE2000 would report to the guest as a receive overrun)."""
    from pyv86.net.port import NicPort, RxResult

    server = relay()
    vm = backends(server.url, direct_machine, rx_backlog=32)
    room = {"frames": 5}
    stored: list[bytes] = []

    def receive(frame: bytes) -> RxResult:
        if not room["frames"]:
            return RxResult.NO_ROOM
        room["frames"] -= 1
        stored.append(frame)
        return RxResult.STORED
    port = NicPort("nic", receive)
    port.attach(vm)
    peer = RawClient(server.port)
    assert vm.wait_connected(5) and wait_for(lambda: server.client_count == 2)
    sent = [eth(BCAST, mac(2), payload=i.to_bytes(2, "big")) for i in range(100)]
    for frame in sent:
        peer.send(frame)
    assert wait_for(lambda: len(stored) + port.queued + vm._handoff.pending
                    + vm.stats["rx_dropped_backlog"] == 100)
    assert (len(stored), port.queued, vm._handoff.pending, vm.stats["rx_dropped_backlog"]) == (5, 1, 32, 62)
    assert port.counters.rx_queue_drops == 0 and port.counters.rx_pauses == 1
    room["frames"] = 1000
    port.rx_space()                       # the guest read its ring: what waited goes in, in order
    assert stored == sent[:38] and vm._handoff.pending == 0
