"""Run inside a namespace: open a tap: URL with the backend, ARP for an address, print JSON.

    python tap_probe.py 'tap:NAME?bridge=br0' 10.77.0.2
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from taphelp import Collector, DirectMachine, arp_request, mac, parse_arp_reply  # noqa: E402

from pyv86_relay_tap.ifctl import bridge_of, link_is_up  # noqa: E402
from pyv86_relay_tap.tap import TapBackend  # noqa: E402


def main() -> int:
    url, target = sys.argv[1], sys.argv[2]
    backend = TapBackend(url, DirectMachine())
    got = Collector()
    backend.set_receiver(got)
    request = arp_request(mac(1), "10.77.0.1", target, padded=True)
    try:
        reply = got.wait(lambda f: parse_arp_reply(f, target), 10, resend=lambda: backend.send(request))
        print(json.dumps({"ifname": backend.ifname, "bridge": bridge_of(backend.ifname),
                          "up": link_is_up(backend.ifname), "reply_mac": reply[22:28].hex(),
                          "stats": backend.stats}))
    finally:
        backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
