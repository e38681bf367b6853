"""The relay server on loopback, driven by raw WebSocket clients at frame level."""
from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from websockets.sync.client import connect

from pyv86_relay_ws.server import RelayLimits, RelayServer
from relayhelp import BCAST, RawClient, eth, http_get, mac, wait_for

PYV86 = str(Path(sys.executable).with_name("pyv86"))


def joined(relay_server: RelayServer, n: int) -> list[RawClient]:
    clients = [RawClient(relay_server.port) for _ in range(n)]
    assert wait_for(lambda: relay_server.client_count == n)
    return clients


def announce(clients: list[RawClient]) -> None:
    """Each client i broadcasts once as mac(i+1); everyone drains the floods."""
    for i, c in enumerate(clients):
        c.send(eth(BCAST, mac(i + 1), payload=b"hello"))
    for c in clients:
        assert len(c.frames()) == len(clients) - 1


def test_learning_switch_floods_broadcast_without_echo_then_unicasts(relay):
    server = relay()
    a, b, c = joined(server, 3)
    a.send(eth(BCAST, mac(1), payload=b"who"))
    assert b.frames() == [eth(BCAST, mac(1), payload=b"who")]
    assert c.frames() == [eth(BCAST, mac(1), payload=b"who")]
    assert a.frames() == []  # no echo to the sender
    b.send(eth(mac(1), mac(2), payload=b"to-a"))
    assert a.frames() == [eth(mac(1), mac(2), payload=b"to-a")]
    assert c.frames() == []  # unicast to a learned MAC reaches only its owner
    c.send(eth(mac(9), mac(3), payload=b"unknown"))  # nobody is mac(9): flood
    assert a.frames() == [eth(mac(9), mac(3), payload=b"unknown")]
    assert b.frames() == [eth(mac(9), mac(3), payload=b"unknown")]
    stats = server.stats
    assert stats["clients"] == 3 and stats["fdb_size"] == 3
    assert stats["unicast"] == 1 and stats["flooded"] == 2


def test_frames_under_60_bytes_pass_unpadded(relay):
    server = relay()
    a, b = joined(server, 2)
    a.send(mac(2) + mac(1) + b"\x88\xb5")  # 14 bytes: legal on a relay link
    assert b.frames() == [mac(2) + mac(1) + b"\x88\xb5"]


def test_malformed_messages_are_counted_and_never_reach_another_client(relay):
    server = relay()
    a, b = joined(server, 2)
    a.send(b"hello relay", opcode=0x1)  # text
    a.send(bytes(13))  # runt
    a.send(bytes(12) + b"\x00\x00" + bytes(1586))  # 1600 bytes with no length to trust
    a.send(eth(BCAST, mac(1), payload=b"fine"))
    assert b.frames() == [eth(BCAST, mac(1), payload=b"fine")]
    port = server.stats["ports"]
    mine = next(p for p in port if p["rx_frames"] == 1)
    assert (mine["drop_text"], mine["drop_malformed"], mine["drop_oversize"]) == (1, 1, 1)


def test_a_protocol_violation_closes_only_that_client(relay):
    server = relay()
    a, b, c = joined(server, 3)
    a.send(eth(BCAST, mac(1), payload=b"x" * 30), masked=False)  # clients must mask
    assert a.closed_by_peer() == 1002
    assert wait_for(lambda: server.client_count == 2)
    assert b.frames() == [] and c.frames() == []
    b.send(eth(BCAST, mac(2)))
    assert c.frames() == [eth(BCAST, mac(2))]


def test_an_announced_giant_message_is_refused_before_it_is_buffered(relay):
    server = relay()
    a, b = joined(server, 2)
    a.send_raw(RawClient.encode(bytes(200_000))[:14])  # only the header of a 200 kB message
    assert a.closed_by_peer() == 1009
    assert b.frames() == []


def test_go_websockproxy_padding_is_trimmed_before_forwarding(relay):
    import struct

    server = relay()
    a, b = joined(server, 2)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 0, 0, 64, 17, 0, bytes(4), bytes(4)) + bytes(8)
    frame = BCAST + mac(1) + b"\x08\x00" + ip
    a.send(frame + b"\xee" * (1518 - len(frame)))
    assert b.frames() == [frame]


def test_fragmented_messages_and_pings_are_handled(relay):
    server = relay()
    a, b = joined(server, 2)
    frame = eth(BCAST, mac(1), payload=b"y" * 100)
    a.send(frame[:50], fin=False)
    a.send(b"are you there", opcode=0x9)
    a.send(frame[50:], opcode=0x0)
    msgs = a.recv_all()
    assert (0xA, b"are you there") in msgs
    assert b.frames() == [frame]


def test_a_mac_in_use_cannot_be_stolen_unless_allowed(relay):
    server = relay()
    a, b, c = joined(server, 3)
    announce([a, b, c])
    b.send(eth(BCAST, mac(1), payload=b"i am a now"))
    assert a.frames() == [] and c.frames() == []
    assert server.stats["totals"]["drop_mac_conflict"] == 1
    c.send(eth(mac(1), mac(3), payload=b"for a"))
    assert a.frames() == [eth(mac(1), mac(3), payload=b"for a")] and b.frames() == []

    moving = relay(allow_mac_move=True)
    x, y, z = joined(moving, 3)
    announce([x, y, z])
    y.send(eth(BCAST, mac(1), payload=b"moved"))
    z.send(eth(mac(1), mac(3), payload=b"for the new owner"))
    assert y.frames()[-1] == eth(mac(1), mac(3), payload=b"for the new owner")
    assert eth(mac(1), mac(3), payload=b"for the new owner") not in x.frames()


def test_a_disconnected_clients_macs_are_forgotten(relay):
    server = relay()
    a, b, c = joined(server, 3)
    announce([a, b, c])
    a.close()
    assert wait_for(lambda: server.client_count == 2)
    assert wait_for(lambda: server.stats["fdb_size"] == 2)
    b.send(eth(mac(1), mac(2)))  # unknown again: flooded to c
    assert c.frames() == [eth(mac(1), mac(2))]


def test_frame_rate_limit_drops_and_counts_the_excess(relay):
    server = relay(limits=RelayLimits(max_fps=20))
    a, b = joined(server, 2)
    for i in range(100):
        a.send(eth(BCAST, mac(1), payload=i.to_bytes(2, "big")))
    got = b.frames(0.5)
    totals = server.stats["totals"]
    assert 15 <= len(got) <= 25
    assert totals["drop_rate"] == 100 - len(got)


def test_byte_rate_limit_and_max_frame(relay):
    server = relay(limits=RelayLimits(max_bps=10_000, max_frame=600))
    a, b = joined(server, 2)
    for _ in range(40):
        a.send(eth(BCAST, mac(1), payload=bytes(486)))  # 500 bytes each
    a.send(eth(BCAST, mac(1), payload=bytes(700)))  # over max_frame
    got = b.frames(0.5)
    totals = server.stats["totals"]
    assert 18 <= len(got) <= 22  # about one second's worth
    assert totals["drop_rate"] == 40 - len(got) and totals["drop_oversize"] == 1


def test_a_client_that_does_not_read_fills_only_its_own_queue(relay):
    server = relay(limits=RelayLimits(queue_bytes=64 * 1024))
    sender, reader = joined(server, 2)
    sleeper = RawClient(server.port, rcvbuf=4096)
    assert wait_for(lambda: server.client_count == 3)
    announce([sender, reader, sleeper])
    frame = eth(BCAST, mac(1), payload=bytes(1000))
    n = 8000  # 8 MB towards a client that never reads
    received = 0
    for i in range(n // 100):
        sender.send_raw(b"".join(RawClient.encode(frame) for _ in range(100)))
        received += len(reader.frames(0.0))
    received += len(reader.frames(0.5))
    stats = server.stats
    sleepy = next(p for p in stats["ports"] if p["drop_queue"] > 0)
    assert received == n  # the reading client got every frame
    assert sleepy["queued_bytes"] <= 64 * 1024
    assert sleepy["drop_queue"] > n // 2


def test_token_is_required_when_configured(relay):
    server = relay(token="s3cret")
    assert RawClient(server.port, expect=401).status == 401
    assert RawClient(server.port, "/?token=wrong", expect=403).status == 403
    a = RawClient(server.port, "/?token=s3cret")
    b = RawClient(server.port, headers={"Authorization": "Bearer s3cret"})
    c = RawClient(server.port, headers={"X-Relay-Token": "s3cret"})
    assert wait_for(lambda: server.client_count == 3)
    a.send(eth(BCAST, mac(1)))
    assert b.frames() == [eth(BCAST, mac(1))] and c.frames() == [eth(BCAST, mac(1))]
    assert http_get(server.port, "/stats")[0] == 401
    status, body = http_get(server.port, "/stats?token=s3cret")
    assert status == 200 and json.loads(body)["rejected_auth"] == 3


def test_stats_endpoint_serves_json_and_text(relay):
    server = relay()
    a, b = joined(server, 2)
    a.send(eth(BCAST, mac(1)))
    assert b.frames()
    status, body = http_get(server.port, "/stats")
    data = json.loads(body)
    assert status == 200 and data["clients"] == 2 and data["totals"]["rx_frames"] == 1
    status, text = http_get(server.port, "/stats.txt")
    assert status == 200 and "2 clients" in text
    assert http_get(server.port, "/other")[0] == 426


def test_websockets_library_client_interoperates(relay):
    server = relay()
    with connect(server.url, compression=None) as one, connect(server.url) as two:
        assert wait_for(lambda: server.client_count == 2)
        one.send(eth(BCAST, mac(1), payload=b"lib"))
        assert two.recv(timeout=2) == eth(BCAST, mac(1), payload=b"lib")
        one.send("text is ignored")
        two.send(eth(mac(1), mac(2)))
        assert one.recv(timeout=2) == eth(mac(1), mac(2))


def make_cert(tmp_path: Path) -> tuple[str, str]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    proc = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                           "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                           "-keyout", str(key), "-out", str(cert)], capture_output=True, text=True)
    assert proc.returncode == 0, f"openssl failed (apt-get install openssl): {proc.stderr}"
    return str(cert), str(key)


def test_tls_with_a_self_signed_certificate(relay, tmp_path):
    cert, key = make_cert(tmp_path)
    server = relay(cert=cert, key=key)
    assert server.url.startswith("wss://")
    ctx = ssl.create_default_context(cafile=cert)
    with connect(server.url, ssl=ctx) as one, connect(server.url, ssl=ctx) as two:
        one.send(eth(BCAST, mac(1), payload=b"secret"))
        assert two.recv(timeout=3) == eth(BCAST, mac(1), payload=b"secret")
    with pytest.raises(ssl.SSLError):  # an untrusting client refuses the self-signed cert
        connect(server.url, ssl=ssl.create_default_context(), open_timeout=3)


def test_bad_tls_files_and_busy_ports_give_one_line_errors(relay, tmp_path):
    from pyv86_relay_ws.server import RelayError

    with pytest.raises(RelayError, match=r"--cert .*cannot load"):
        RelayServer(port=0, cert=str(tmp_path / "missing.pem")).start()
    server = relay()
    with pytest.raises(RelayError, match=r"cannot listen on 127.0.0.1:\d+"):
        RelayServer(port=server.port).start()


def test_cli_serves_reports_on_sigusr1_and_stops_cleanly_on_sigterm(tmp_path):
    proc = subprocess.Popen([PYV86, "relay", "serve", "--port", "0", "--max-fps", "1000"],
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        assert line.startswith("relay: serving ws://127.0.0.1:"), line
        port = int(line.split("127.0.0.1:")[1].split("/")[0])
        a, b = RawClient(port), RawClient(port)
        a.send(eth(BCAST, mac(1)))
        assert b.frames(1.0) == [eth(BCAST, mac(1))]
        proc.send_signal(signal.SIGUSR1)
        report = proc.stderr.readline()
        assert "2 clients" in report and "rx 1 frames" in report
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert b.closed_by_peer() == 1001
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_cli_rejects_bad_options_in_one_line():
    proc = subprocess.run([PYV86, "relay", "serve", "--max-frame", "9000"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["pyv86: relay serve: max_frame must be between 14 and 1514"]
    proc = subprocess.run([PYV86, "relay", "serve", "--bridge", "br0"], capture_output=True, text=True)
    assert proc.returncode == 2 and "--bridge needs --tap" in proc.stderr
    env = dict(os.environ)
    proc = subprocess.run([PYV86, "relay", "serve", "--token-file", "/nonexistent/t"], capture_output=True,
                          text=True, env=env)
    assert proc.returncode == 2 and "--token-file /nonexistent/t" in proc.stderr


def test_clients_beyond_max_clients_are_refused_with_503(relay):
    server = relay(limits=RelayLimits(max_clients=2))
    first = joined(server, 2)
    extra = RawClient(server.port, expect=503)
    assert extra.status == 503 and server.stats["rejected"] == 1
    first[0].close()
    assert wait_for(lambda: server.client_count == 1)
    RawClient(server.port)  # room again


def test_silent_clients_are_pinged_then_closed_but_answering_ones_stay(relay):
    server = relay(limits=RelayLimits(idle_timeout=1.0))
    silent = RawClient(server.port)
    with connect(server.url) as lively:  # the websockets library answers pings by itself
        assert wait_for(lambda: server.client_count == 2)
        pings = [m for m in silent.recv_all(0.8) if m[0] == 0x9]
        assert pings, "the relay did not ping a silent client"
        assert silent.closed_by_peer(3.0) is not None
        assert wait_for(lambda: server.client_count == 1, 3)
        lively.send(eth(BCAST, mac(5)))
        assert server.client_count == 1


def test_an_incomplete_http_request_times_out(relay, monkeypatch):
    import socket

    from pyv86_relay_ws import server as server_module

    monkeypatch.setattr(server_module, "HANDSHAKE_TIMEOUT", 0.3)
    server = relay()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=3)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finished
    assert sock.recv(100) == b""
    assert wait_for(lambda: server.stats["rejected"] == 1)
