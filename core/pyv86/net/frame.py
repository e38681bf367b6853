"""Ethernet frame facts shared by NICs and backends: sizes, MAC addresses, the multicast hash.

Frames are plain ``bytes`` (destination MAC first, no preamble, no FCS). Nothing here
copies a frame; helpers take any bytes-like object.
"""
from __future__ import annotations

import re
import secrets
import zlib

ETH_HEADER = 14
"""Destination, source and EtherType: the shortest frame the network core passes on."""
ETH_ZLEN = 60
"""Minimum frame length without FCS; receivers pad shorter frames with zeros."""
ETH_FRAME_MAX = 1514
ETH_VLAN_FRAME_MAX = 1518
"""Longest frame without FCS (with one 802.1Q tag); longer frames are dropped and counted."""

BROADCAST = b"\xff" * 6

V86_OUI = b"\x00\x22\x15"
"""The OUI v86 uses for its NE2000's random MAC (pyv86 keeps it for compatibility)."""

_MAC_RE = re.compile(r"^[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}$")


def parse_mac(text: str) -> bytes:
    """``"aa:bb:cc:dd:ee:ff"`` (or with ``-``) -> 6 bytes; ValueError with a hint otherwise."""
    if not isinstance(text, str) or not _MAC_RE.match(text.strip()):
        raise ValueError(f"{text!r} is not a MAC address (six hex pairs, e.g. \"00:22:15:12:34:56\")")
    return bytes(int(part, 16) for part in re.split(r"[:-]", text.strip()))


def parse_unicast_mac(text: str) -> bytes:
    """As :func:`parse_mac`, and refuse group (multicast/broadcast) addresses."""
    mac = parse_mac(text)
    if mac[0] & 1:
        raise ValueError(f"{text!r} is a multicast address (bit 0 of the first octet is set); "
                         "a NIC needs a unicast MAC")
    return mac


def mac_str(mac: bytes | bytearray | memoryview) -> str:
    """6 bytes -> ``"aa:bb:cc:dd:ee:ff"``."""
    return ":".join(f"{b:02x}" for b in bytes(mac[:6]))


def is_group(mac: bytes | bytearray | memoryview) -> bool:
    """True for multicast and broadcast destinations (the I/G bit)."""
    return bool(mac[0] & 1)


def random_mac(oui: bytes = V86_OUI) -> bytes:
    """A MAC with the given 3-byte OUI and three random bytes (0x00..0xff each)."""
    if len(oui) != 3:
        raise ValueError("an OUI is 3 bytes")
    return bytes(oui) + secrets.token_bytes(3)


def ether_crc_be(data: bytes | bytearray | memoryview) -> int:
    """The big-endian Ethernet CRC32 that 8390-family chips hash multicast addresses with.

    Equal to the reflected CRC (``zlib.crc32``) before its final inversion, bit-reversed:
    the bits are the same polynomial division read in the other order.
    """
    crc = zlib.crc32(bytes(data)) ^ 0xFFFFFFFF
    return int(f"{crc:032b}"[::-1], 2)


def multicast_hash_index(mac: bytes | bytearray | memoryview) -> int:
    """Index 0..63 into the 64-bit multicast filter (MAR0..7): the CRC's top 6 bits."""
    return ether_crc_be(bytes(mac[:6])) >> 26


def multicast_filter(macs: list[bytes]) -> bytes:
    """The 8 MAR bytes that accept exactly the hash buckets of ``macs`` (as Linux computes them)."""
    mar = bytearray(8)
    for mac in macs:
        idx = multicast_hash_index(mac)
        mar[idx >> 3] |= 1 << (idx & 7)
    return bytes(mar)


ETH_HEADER = 14


def real_length(frame: bytes | bytearray | memoryview) -> int | None:
    """The frame length its network header announces (IPv4, IPv6, ARP), or None.

    Ethernet pads short frames to 60 bytes and some relays pad every message to 1518;
    the IP or ARP header says where the real frame ends.
    """
    n = len(frame)
    if n < ETH_HEADER:
        return None
    ethertype = (frame[12] << 8) | frame[13]
    if ethertype == 0x0800 and n >= ETH_HEADER + 20:
        total = (frame[16] << 8) | frame[17]
        if total >= 20:
            return ETH_HEADER + total
    elif ethertype == 0x86DD and n >= ETH_HEADER + 40:
        return ETH_HEADER + 40 + ((frame[18] << 8) | frame[19])
    elif ethertype == 0x0806 and n >= ETH_HEADER + 8:
        hlen, plen = frame[18], frame[19]
        return ETH_HEADER + 8 + 2 * (hlen + plen)
    return None


def strip_padding(frame: bytes) -> bytes:
    """``frame`` without the bytes after the end its IPv4/IPv6/ARP header announces."""
    real = real_length(frame)
    if real is not None and ETH_HEADER < real < len(frame):
        return frame[:real]
    return frame
