"""Run where a relay listens: get a DHCP lease through it at frame level; print JSON.

    python dhcp_probe.py ws://127.0.0.1:8086/

Sends DISCOVER, waits for an OFFER, sends REQUEST, waits for the ACK (the frames are
built by hand: this is the traffic a guest's DHCP client would send through the NIC).
"""
from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from websockets.sync.client import connect  # noqa: E402

from relayhelp import dhcp_frame, mac, parse_dhcp_reply  # noqa: E402


def exchange(ws, frame: bytes, xid: int, want: int, timeout: float = 10.0) -> dict:  # type: ignore[no-untyped-def, type-arg]
    deadline = time.monotonic() + timeout
    next_send = 0.0
    while time.monotonic() < deadline:
        if time.monotonic() >= next_send:
            ws.send(frame)
            next_send = time.monotonic() + 1.0
        try:
            msg = ws.recv(timeout=0.2)
        except TimeoutError:
            continue
        if isinstance(msg, bytes):
            reply = parse_dhcp_reply(msg, xid)
            if reply is not None and reply.get("type") == want:
                return reply
    raise SystemExit(f"no DHCP reply of type {want} within {timeout} s")


def main() -> int:
    url = sys.argv[1]
    client = mac(0x42)
    xid = random.getrandbits(32)
    with connect(url, compression=None, open_timeout=10) as ws:
        offer = exchange(ws, dhcp_frame(client, xid, 1), xid, 2)
        request = dhcp_frame(client, xid, 3, {50: bytes(map(int, str(offer["yiaddr"]).split("."))),
                                              54: bytes(map(int, str(offer["server"]).split(".")))})
        ack = exchange(ws, request, xid, 5)
    print(json.dumps({"offer": offer, "ack": ack, "mac": client.hex(":")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
