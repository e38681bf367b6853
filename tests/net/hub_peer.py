"""A process joining ``hub:NAME`` for the cross-process hub tests (not a test module).

Usage: ``python hub_peer.py NAME MAC`` — joins the hub with a port whose address is MAC,
answers every unicast frame sent to MAC with a frame back to its sender carrying the same
payload prefixed by b"echo:", prints "ready" once joined and "role ROLE" lines, and exits
when it receives a frame whose payload starts with b"bye".
"""
from __future__ import annotations

import sys
import threading

from pyv86.net.hub import open_hub


def main() -> int:
    name, mac_text = sys.argv[1], sys.argv[2]
    mac = bytes.fromhex(mac_text.replace(":", ""))
    port = open_hub(f"hub:{name}")
    done = threading.Event()

    def receive(frame: bytes) -> None:
        if frame[0:6] != mac:
            return
        payload = frame[14:]
        if payload.startswith(b"bye"):
            done.set()
            return
        port.send(frame[6:12] + mac + frame[12:14] + b"echo:" + payload)

    port.set_receiver(receive)
    print(f"ready {port.hub.role}", flush=True)
    # announce ourselves so the switch learns where MAC lives
    port.send(b"\xff" * 6 + mac + b"\x88\xb5" + b"hello")
    done.wait(30)
    port.close()
    print("bye", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
