"""Other emulators run beside pyv86 as peers: for benchmarks (same guest, same run) and for
interop tests. Nothing here is used by pyv86's own emulation.

* :mod:`pyv86.peers.v86` — the real v86 (npm package ``v86``) under Node.js.
* QEMU lives in :mod:`pyv86.guest.qemu` (it also checks the guest image).
"""
