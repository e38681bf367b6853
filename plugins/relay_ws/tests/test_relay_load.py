"""Load: 50 clients and a bounded frame storm through `pyv86 relay serve` in its own process."""
from __future__ import annotations

import json
import selectors
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pyv86_relay_ws.server import HIGH_WATER
from relayhelp import BCAST, RawClient, eth, http_get, mac, wait_for

PYV86 = str(Path(sys.executable).with_name("pyv86"))

CLIENTS = 50
FRAMES = 200  # valid broadcast frames per client
SIZE = 600
QUEUE = 64 * 1024


def rss_kib(pid: int) -> tuple[int, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


@pytest.mark.slow
def test_fifty_clients_frame_storm_stays_within_memory_limits_and_counts_drops():
    proc = subprocess.Popen([PYV86, "relay", "serve", "--port", "0", "--queue-bytes", str(QUEUE),
                             "--max-macs", "4"], stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        port = int(line.split("127.0.0.1:")[1].split("/")[0])
        base_rss, _ = rss_kib(proc.pid)
        readers = [RawClient(port) for _ in range(CLIENTS // 2)]
        sleepers = [RawClient(port, rcvbuf=4096) for _ in range(CLIENTS - len(readers))]
        clients = readers + sleepers
        assert wait_for(lambda: json.loads(http_get(port, "/stats")[1])["clients"] == CLIENTS, 10)

        received = {id(c): 0 for c in readers}
        bad: list[str] = []
        stop = threading.Event()

        def read_all() -> None:
            sel = selectors.DefaultSelector()
            for c in readers:
                c.sock.setblocking(False)
                sel.register(c.sock, selectors.EVENT_READ, c)
            while not stop.is_set():
                for key, _ in sel.select(0.1):
                    c = key.data
                    try:
                        chunk = c.sock.recv(1 << 20)
                    except BlockingIOError:
                        continue
                    c.buf += chunk
                    while (msg := c._parse_one()) is not None:
                        op, payload = msg
                        if op != 0x2 or len(payload) != SIZE or payload[:6] != BCAST:
                            bad.append(f"opcode {op}, {len(payload)} bytes")
                        received[id(c)] += 1

        reader_thread = threading.Thread(target=read_all, daemon=True)
        reader_thread.start()
        for i, c in enumerate(clients):
            good = RawClient.encode(eth(BCAST, mac(i + 1), payload=bytes(SIZE - 14)))
            storm = [good] * FRAMES
            storm[::20] = [RawClient.encode(b"not a frame", opcode=0x1)] * len(storm[::20])  # 10 text
            storm[1::20] = [RawClient.encode(bytes(13))] * len(storm[1::20])  # 10 runts
            storm[2::40] = [RawClient.encode(bytes(1600))] * len(storm[2::40])  # 5 oversize
            c.send_raw(b"".join(storm))
        sent_valid = FRAMES - 25

        def stats() -> dict:
            return json.loads(http_get(port, "/stats")[1])
        assert wait_for(lambda: stats()["totals"]["rx_frames"] == CLIENTS * sent_valid, 60, 0.2), stats()["totals"]
        stats_now = stats()
        by_name = {f"127.0.0.1:{c.sock.getsockname()[1]}": c for c in readers}
        expected = {id(by_name[p["name"]]): p["tx_frames"] for p in stats_now["ports"] if p["name"] in by_name}
        assert len(expected) == len(readers)
        assert wait_for(lambda: received == expected, 30, 0.2), (received, expected)
        stats_now = stats()
        rss, hwm = rss_kib(proc.pid)
        stop.set()
        reader_thread.join(5)

        assert proc.poll() is None, "the relay died"
        assert bad == []  # malformed messages never reached another client
        totals = stats_now["totals"]
        assert (totals["drop_text"], totals["drop_malformed"], totals["drop_oversize"]) == \
            (CLIENTS * 10, CLIENTS * 10, CLIENTS * 5)
        assert totals["drop_queue"] > 0  # the sleepers' queues overflowed...
        for p in stats_now["ports"]:  # ...and every flooded frame is either sent or counted
            assert p["tx_frames"] + p["drop_queue"] == (CLIENTS - 1) * sent_valid
            assert p["queued_bytes"] <= QUEUE
        bound_kib = CLIENTS * (2 * QUEUE + HIGH_WATER + 64 * 1024) // 1024 + 20 * 1024
        print(f"relay load: peak RSS +{hwm - base_rss} KiB (bound {bound_kib} KiB), "
              f"drop_queue {totals['drop_queue']}, delivered to readers {sum(received.values())}")
        assert hwm - base_rss < bound_kib, f"peak RSS grew {hwm - base_rss} KiB (bound {bound_kib})"

        late = RawClient(port)  # still serving
        late.send(eth(BCAST, mac(200)))
        for c in clients:
            c.close()
        assert wait_for(lambda: json.loads(http_get(port, "/stats")[1])["clients"] == 1, 10)
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
