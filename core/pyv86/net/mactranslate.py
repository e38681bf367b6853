"""MAC address translation between a restored guest and the wire (``mac_address_translation``).

After a state image is restored with ``mac_address_translation = true`` the guest keeps
the MAC it had when it was saved (its driver cached it), while the wire sees a new random
one so that clones of one image do not collide. :class:`MacTranslator` sits between the
NIC and its backend and rewrites every place a frame carries the MAC, in both directions:

* Ethernet destination and source (also behind 802.1Q / 802.1ad tags);
* ARP and RARP sender and target hardware addresses;
* DHCP (UDP 67/68): ``chaddr`` and option 61 (client identifier, hardware type 1), also
  in the ``file``/``sname`` fields when option 52 overloads them; the UDP checksum is
  updated incrementally (RFC 1624) — never zeroed — and IPv4 options (IHL > 5) are handled;
* IPv6 NDP (router/neighbour solicitation and advertisement, redirect): source/target
  link-layer address options, with the ICMPv6 checksum updated;
* DHCPv6 (UDP 546/547): client/server identifiers holding a DUID-LL or DUID-LLT.

Fragments (IPv4 MF/offset, IPv6 fragment header) and anything malformed are passed on
unchanged and counted. Unlike v86 this keeps two MACs (v86 keeps one variable for both
roles) and rewrites ARP targets and NDP options too. A frame that does not contain the
MAC being searched for anywhere is returned as is without being parsed.

This module is pure: bytes in, bytes out, counters on the side. The NIC calls
:meth:`MacTranslator.to_wire` before handing a frame to its backend and
:meth:`MacTranslator.to_guest` on every received frame before its address filter.
"""
from __future__ import annotations

import logging

import attrs

log = logging.getLogger(__name__)

ETH_P_IP, ETH_P_ARP, ETH_P_RARP, ETH_P_IPV6 = 0x0800, 0x0806, 0x8035, 0x86DD
VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)
DHCP_PORTS = (67, 68)
DHCP6_PORTS = (546, 547)
DHCP_MAGIC = b"\x63\x82\x53\x63"
NDP_OPTION_START = {133: 8, 134: 16, 135: 24, 136: 24, 137: 40}
IPV6_EXT_SKIP = (0, 43, 60)  # hop-by-hop, routing, destination options


def parse_mac(text: str | bytes) -> bytes:
    """``"52:54:00:12:34:56"`` (or 6 bytes) -> 6 bytes; ValueError otherwise."""
    if isinstance(text, (bytes, bytearray)):
        if len(text) != 6:
            raise ValueError(f"a MAC address is 6 bytes, not {len(text)}")
        return bytes(text)
    parts = text.replace("-", ":").split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise ValueError(f"{text!r} is not a MAC address (six hex pairs)")
    try:
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise ValueError(f"{text!r} is not a MAC address (six hex pairs)") from None


def format_mac(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


@attrs.define
class TranslatorCounters:
    """What one direction of a translator did."""

    frames: int = 0          # frames seen
    rewritten: int = 0       # frames with at least one address replaced
    addresses: int = 0       # addresses replaced
    fragments: int = 0       # fragments holding the MAC, passed on unchanged
    malformed: int = 0       # truncated or inconsistent headers, passed on unchanged
    unsupported: int = 0     # other places the MAC was found but not rewritten


def _sum16(data: bytes | bytearray | memoryview) -> int:
    """Ones-complement sum (not inverted) of ``data`` as big-endian 16-bit words."""
    if len(data) & 1:
        data = bytes(data) + b"\0"
    total = sum(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


class _Checksum:
    """Incremental update of one Internet checksum field (RFC 1624, eqn. 3)."""

    def __init__(self, buf: bytearray, start: int, end: int, field: int, udp: bool) -> None:
        self.buf, self.start, self.end, self.field, self.udp = buf, start, end, field, udp
        self.old: list[int] = []
        self.new: list[int] = []

    def window(self, pos: int, length: int) -> tuple[int, int]:
        lo = self.start + ((pos - self.start) & ~1)
        hi = pos + length
        hi += (hi - self.start) & 1
        return lo, hi

    def before(self, pos: int, length: int) -> None:
        lo, hi = self.window(pos, length)
        self.old.append(_sum16(self._padded(lo, hi)))

    def after(self, pos: int, length: int) -> None:
        lo, hi = self.window(pos, length)
        self.new.append(_sum16(self._padded(lo, hi)))

    def _padded(self, lo: int, hi: int) -> bytes:
        chunk = bytes(self.buf[lo : min(hi, self.end)])
        return chunk + b"\0" * (hi - lo - len(chunk))

    def commit(self) -> None:
        if not self.old:
            return
        f = self.field
        current = int.from_bytes(self.buf[f : f + 2], "big")
        if self.udp and current == 0:
            return  # IPv4 UDP without a checksum stays without one
        total = (~current & 0xFFFF)
        for m in self.old:
            total += ~m & 0xFFFF
        for m in self.new:
            total += m
        while total >> 16:
            total = (total & 0xFFFF) + (total >> 16)
        value = ~total & 0xFFFF
        if self.udp and value == 0:
            value = 0xFFFF
        self.buf[f : f + 2] = value.to_bytes(2, "big")


class MacTranslator:
    """Rewrites ``guest_mac`` <-> ``wire_mac`` in frames; see the module docstring."""

    def __init__(self, guest_mac: bytes | str, wire_mac: bytes | str) -> None:
        self.guest_mac = parse_mac(guest_mac)
        self.wire_mac = parse_mac(wire_mac)
        self.tx = TranslatorCounters()   # guest -> wire
        self.rx = TranslatorCounters()   # wire -> guest

    def __repr__(self) -> str:
        return f"<MacTranslator guest={format_mac(self.guest_mac)} wire={format_mac(self.wire_mac)}>"

    def to_wire(self, frame: bytes) -> bytes:
        """A frame the guest sent, as the wire must see it."""
        return self._translate(frame, self.guest_mac, self.wire_mac, self.tx)

    def to_guest(self, frame: bytes) -> bytes:
        """A frame from the wire, as the guest must see it."""
        return self._translate(frame, self.wire_mac, self.guest_mac, self.rx)

    def counters(self) -> dict[str, dict[str, int]]:
        return {"to_wire": attrs.asdict(self.tx), "to_guest": attrs.asdict(self.rx)}

    # ------------------------------------------------------------------------------
    def _translate(self, frame: bytes, search: bytes, replace: bytes, count: TranslatorCounters) -> bytes:
        count.frames += 1
        if search == replace or search not in frame:
            return frame
        buf = bytearray(frame)
        self._n = 0
        self._l2: tuple[bytes, int] | None = None
        try:
            self._ethernet(buf, search, replace)
        except _Skip as skip:
            setattr(count, skip.reason, getattr(count, skip.reason) + 1)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("mac translation: %s frame passed on (%s)", skip.reason, skip.detail)
            if self._l2 is None or not self._l2[1]:
                return frame
            # keep the Ethernet-level rewrite, drop any half-done rewrite of the payload
            buf, self._n = bytearray(self._l2[0]), self._l2[1]
        if self._n:
            count.rewritten += 1
            count.addresses += self._n
            return bytes(buf)
        return frame

    def _swap(self, buf: bytearray, pos: int, search: bytes, replace: bytes,
              checksum: _Checksum | None = None) -> None:
        if buf[pos : pos + 6] == search:
            if checksum is not None:
                checksum.before(pos, 6)
            buf[pos : pos + 6] = replace
            if checksum is not None:
                checksum.after(pos, 6)
            self._n += 1

    def _ethernet(self, buf: bytearray, search: bytes, replace: bytes) -> None:
        if len(buf) < 14:
            raise _Skip("malformed", "shorter than an Ethernet header")
        self._swap(buf, 0, search, replace)
        self._swap(buf, 6, search, replace)
        self._l2 = (bytes(buf), self._n)
        off = 12
        ethertype = int.from_bytes(buf[off : off + 2], "big")
        tags = 0
        while ethertype in VLAN_TPIDS:
            off += 4
            tags += 1
            if off + 2 > len(buf) or tags > 4:
                raise _Skip("malformed", "truncated VLAN tag")
            ethertype = int.from_bytes(buf[off : off + 2], "big")
        off += 2
        if search not in buf[off:]:
            return
        if ethertype in (ETH_P_ARP, ETH_P_RARP):
            self._arp(buf, off, search, replace)
        elif ethertype == ETH_P_IP:
            self._ipv4(buf, off, search, replace)
        elif ethertype == ETH_P_IPV6:
            self._ipv6(buf, off, search, replace)
        else:
            raise _Skip("unsupported", f"ethertype {ethertype:#06x}")

    def _arp(self, buf: bytearray, off: int, search: bytes, replace: bytes) -> None:
        if len(buf) < off + 8:
            raise _Skip("malformed", "truncated ARP header")
        htype = int.from_bytes(buf[off : off + 2], "big")
        hlen, plen = buf[off + 4], buf[off + 5]
        if htype != 1 or hlen != 6:
            raise _Skip("unsupported", f"ARP hardware type {htype}/{hlen}")
        if len(buf) < off + 8 + 2 * (6 + plen):
            raise _Skip("malformed", "truncated ARP addresses")
        self._swap(buf, off + 8, search, replace)
        self._swap(buf, off + 8 + 6 + plen, search, replace)

    def _ipv4(self, buf: bytearray, off: int, search: bytes, replace: bytes) -> None:
        if len(buf) < off + 20 or buf[off] >> 4 != 4:
            raise _Skip("malformed", "truncated or non-IPv4 header")
        ihl = (buf[off] & 0x0F) * 4
        total = int.from_bytes(buf[off + 2 : off + 4], "big")
        if ihl < 20 or total < ihl or off + total > len(buf):
            raise _Skip("malformed", f"IPv4 IHL {ihl} / total length {total}")
        end = off + total  # Ethernet padding after the datagram is not ours
        frag = int.from_bytes(buf[off + 6 : off + 8], "big")
        if frag & 0x3FFF:
            raise _Skip("fragments", "IPv4 fragment")
        if buf[off + 9] != 17:
            raise _Skip("unsupported", f"IPv4 protocol {buf[off + 9]}")
        udp = off + ihl
        ulen = _udp_length(buf, udp, end, DHCP_PORTS)
        checksum = _Checksum(buf, udp, udp + ulen, udp + 6, udp=True)
        self._dhcp(buf, udp + 8, udp + ulen, search, replace, checksum)
        checksum.commit()

    def _dhcp(self, buf: bytearray, body: int, end: int, search: bytes, replace: bytes,
              checksum: _Checksum) -> None:
        if end - body < 240 or buf[body + 236 : body + 240] != DHCP_MAGIC:
            raise _Skip("unsupported", "BOOTP without the DHCP magic cookie")
        if buf[body + 1] == 1 and buf[body + 2] == 6:
            self._swap(buf, body + 28, search, replace, checksum)
        overload = self._dhcp_options(buf, body + 240, end, search, replace, checksum)
        if overload & 1:
            self._dhcp_options(buf, body + 108, body + 236, search, replace, checksum)
        if overload & 2:
            self._dhcp_options(buf, body + 44, body + 108, search, replace, checksum)

    def _dhcp_options(self, buf: bytearray, pos: int, end: int, search: bytes, replace: bytes,
                      checksum: _Checksum) -> int:
        overload = 0
        while pos < end:
            code = buf[pos]
            if code == 0:
                pos += 1
                continue
            if code == 255:
                break
            if pos + 2 > end or pos + 2 + buf[pos + 1] > end:
                raise _Skip("malformed", "DHCP option runs past the packet")
            length = buf[pos + 1]
            data = pos + 2
            if code == 61 and length >= 7 and buf[data] == 1:
                self._swap(buf, data + 1, search, replace, checksum)
            elif code == 52 and length == 1:
                overload = buf[data] & 3
            pos = data + length
        return overload

    def _ipv6(self, buf: bytearray, off: int, search: bytes, replace: bytes) -> None:
        if len(buf) < off + 40 or buf[off] >> 4 != 6:
            raise _Skip("malformed", "truncated or non-IPv6 header")
        plen = int.from_bytes(buf[off + 4 : off + 6], "big")
        end = off + 40 + plen
        if end > len(buf):
            raise _Skip("malformed", f"IPv6 payload length {plen}")
        nxt = buf[off + 6]
        pos = off + 40
        hops = 0
        while nxt in IPV6_EXT_SKIP:
            if pos + 8 > end or hops > 8:
                raise _Skip("malformed", "truncated IPv6 extension header")
            nxt, pos = buf[pos], pos + (buf[pos + 1] + 1) * 8
            hops += 1
        if pos > end:
            raise _Skip("malformed", "IPv6 extension header runs past the packet")
        if nxt == 44:
            raise _Skip("fragments", "IPv6 fragment")
        if nxt == 58:
            self._icmpv6(buf, pos, end, search, replace)
        elif nxt == 17:
            self._udp6(buf, pos, end, search, replace)
        else:
            raise _Skip("unsupported", f"IPv6 next header {nxt}")

    def _icmpv6(self, buf: bytearray, pos: int, end: int, search: bytes, replace: bytes) -> None:
        if pos + 4 > end:
            raise _Skip("malformed", "truncated ICMPv6 header")
        start = NDP_OPTION_START.get(buf[pos])
        if start is None:
            raise _Skip("unsupported", f"ICMPv6 type {buf[pos]}")
        checksum = _Checksum(buf, pos, end, pos + 2, udp=False)
        opt = pos + start
        while opt + 2 <= end:
            units = buf[opt + 1]
            if units == 0 or opt + units * 8 > end:
                raise _Skip("malformed", "NDP option with a bad length")
            if buf[opt] in (1, 2) and units == 1:
                self._swap(buf, opt + 2, search, replace, checksum)
            opt += units * 8
        checksum.commit()

    def _udp6(self, buf: bytearray, udp: int, end: int, search: bytes, replace: bytes) -> None:
        ulen = _udp_length(buf, udp, end, DHCP6_PORTS)
        msg = udp + 8
        if msg + 4 > udp + ulen or buf[msg] in (12, 13):
            raise _Skip("unsupported", "DHCPv6 relay message or empty")
        checksum = _Checksum(buf, udp, udp + ulen, udp + 6, udp=True)
        pos, stop = msg + 4, udp + ulen
        while pos + 4 <= stop:
            code = int.from_bytes(buf[pos : pos + 2], "big")
            length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
            data = pos + 4
            if data + length > stop:
                raise _Skip("malformed", "DHCPv6 option runs past the packet")
            if code in (1, 2) and length >= 4:
                duid_type = int.from_bytes(buf[data : data + 2], "big")
                hwtype = int.from_bytes(buf[data + 2 : data + 4], "big")
                lladdr = {1: data + 8, 3: data + 4}.get(duid_type)
                if hwtype == 1 and lladdr is not None and lladdr + 6 == data + length:
                    self._swap(buf, lladdr, search, replace, checksum)
            pos = data + length
        checksum.commit()


class _Skip(Exception):
    """Stop parsing: pass the frame on (with its Ethernet-level rewrite only) and count why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _udp_length(buf: bytearray, udp: int, end: int, ports: tuple[int, ...]) -> int:
    """Check the UDP header at ``udp`` (ending by ``end``) and that one port is in ``ports``.

    Returns the UDP length; raises :class:`_Skip` for a truncated header, a bad length or
    other ports.
    """
    if udp + 8 > end:
        raise _Skip("malformed", "truncated UDP header")
    sport = int.from_bytes(buf[udp : udp + 2], "big")
    dport = int.from_bytes(buf[udp + 2 : udp + 4], "big")
    ulen = int.from_bytes(buf[udp + 4 : udp + 6], "big")
    if ulen < 8 or udp + ulen > end:
        raise _Skip("malformed", f"UDP length {ulen}")
    if sport not in ports and dport not in ports:
        raise _Skip("unsupported", f"UDP ports {sport}->{dport}")
    return ulen
