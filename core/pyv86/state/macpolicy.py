"""What happens to NIC MAC addresses when a state image is restored (v86's three options).

A NIC takes part in one of two ways (and, for translation, has a ``port``, the
:class:`pyv86.net.port.NicPort` between it and its backend):

* methods ``mac_addresses() -> (guest_mac, wire_mac)`` and
  ``set_mac_addresses(guest_mac, wire_mac)`` (guest_mac goes to the PROM and PAR); or
* a State with the DP8390 fields ``par``, ``prom_mac`` and ``wire_mac`` (as ``ne2k-pci``
  has): the guest MAC is ``par``, and setting it writes ``par`` and ``prom_mac``.

The guest MAC is what the guest can see and cached at driver load (PROM, PAR); the wire
MAC is the source address the network sees. Both are saved in the NIC's record. After
the devices are restored:

``default``
    guest and wire MAC become one new random MAC, so clones of one image do not collide.
    The guest's driver still uses its cached MAC until it is reloaded (``rmmod``/
    ``modprobe ne2k-pci`` or unbind/bind ``0000:00:05.0`` for Linux), as with v86.
``preserve_mac_from_state_image = true``
    both MACs stay as saved (a translation that was active when saving stays active).
``mac_address_translation = true``
    the guest MAC stays as saved, the wire gets a new random MAC, and a
    :class:`~pyv86.net.mactranslate.MacTranslator` on the NIC's port rewrites between them.

``preserve`` wins when both options are set (as in v86).
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable

from pyv86.errors import StateError
from pyv86.net.frame import random_mac
from pyv86.net.mactranslate import MacTranslator, format_mac

if TYPE_CHECKING:
    from pyv86.machine import Machine

log = logging.getLogger(__name__)

MacSource = Callable[[], bytes]


_DP8390_FIELDS = ("par", "prom_mac", "wire_mac")


def is_mac_nic(device: Any) -> bool:
    if callable(getattr(device, "mac_addresses", None)) and callable(getattr(device, "set_mac_addresses", None)):
        return True
    state = getattr(device, "state", None)
    return state is not None and all(hasattr(state, f) for f in _DP8390_FIELDS)


def get_macs(device: Any) -> tuple[bytes, bytes]:
    """(guest MAC, wire MAC) of a NIC."""
    if callable(getattr(device, "mac_addresses", None)):
        guest, wire = device.mac_addresses()
        return bytes(guest), bytes(wire)
    return bytes(device.state.par), bytes(device.state.wire_mac)


def set_macs(device: Any, guest: bytes, wire: bytes) -> None:
    if callable(getattr(device, "set_mac_addresses", None)):
        device.set_mac_addresses(guest, wire)
        return
    state = device.state
    if bytes(state.par) != guest:
        state.par, state.prom_mac = bytes(guest), bytes(guest)
    state.wire_mac = bytes(wire)


def install_translator(device: Any, guest_mac: bytes, wire_mac: bytes) -> MacTranslator | None:
    """Put a translator for ``device`` on its port (replacing an older one); None removes it."""
    port = getattr(device, "port", None)
    if port is None or not hasattr(port, "add_filter"):
        if guest_mac != wire_mac:
            raise StateError(f"device {device.id}: MAC translation needs a NIC with a network port")
        return None
    for old in [f for f in getattr(port, "filters", []) if isinstance(f, MacTranslator)]:
        port.remove_filter(old)
    if guest_mac == wire_mac:
        return None
    translator = MacTranslator(guest_mac, wire_mac)
    port.add_filter(translator, first=True)
    return translator


def apply_mac_policy(machine: Machine, *, preserve: bool, translate: bool,
                     new_mac: MacSource = random_mac) -> list[str]:
    """Apply the options to every NIC of ``machine``; returns one line per NIC for logs."""
    mode = "preserve" if preserve else "translate" if translate else "default"
    lines = []
    for device in machine.devices.values():
        if not is_mac_nic(device):
            continue
        guest, wire = get_macs(device)
        if mode == "preserve":
            new_guest, new_wire = guest, wire
        elif mode == "translate":
            new_guest, new_wire = guest, new_mac()
        else:
            new_guest = new_wire = new_mac()
        if (new_guest, new_wire) != (guest, wire):
            set_macs(device, new_guest, new_wire)
        install_translator(device, new_guest, new_wire)
        line = (f"{device.id}: {mode}: guest MAC {format_mac(new_guest)}, wire MAC {format_mac(new_wire)}"
                + (f" (saved {format_mac(guest)})" if new_guest != guest else ""))
        log.info("%s", line)
        lines.append(line)
    return lines
