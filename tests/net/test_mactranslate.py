"""MacTranslator on real-format frames; checksums verified by an independent computation."""
from __future__ import annotations

import struct

import pytest

from pyv86.net.mactranslate import MacTranslator, format_mac, parse_mac

GUEST = bytes.fromhex("002215aabbcc")
WIRE = bytes.fromhex("0a1b2c3d4e5f")
SERVER = bytes.fromhex("525400000001")
BCAST = b"\xff" * 6


# -- independent reference helpers ------------------------------------------------------
def inet_checksum(data: bytes) -> int:
    """RFC 1071 checksum written the long way (not the translator's code)."""
    if len(data) % 2:
        data += b"\x00"
    words = struct.unpack(f"!{len(data) // 2}H", data)
    s = 0
    for w in words:
        s += w
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def ipv4_header(payload_len: int, proto: int, src: bytes, dst: bytes, *, options: bytes = b"",
                frag: int = 0) -> bytes:
    ihl = 5 + len(options) // 4
    hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, ihl * 4 + payload_len, 0x1234, frag, 64, proto, 0,
                      src, dst) + options
    return hdr[:10] + struct.pack("!H", inet_checksum(hdr)) + hdr[12:]


def udp4(src_ip: bytes, dst_ip: bytes, sport: int, dport: int, payload: bytes, *, zero: bool = False) -> bytes:
    length = 8 + len(payload)
    head = struct.pack("!HHHH", sport, dport, length, 0)
    if zero:
        return head + payload
    pseudo = src_ip + dst_ip + struct.pack("!BBH", 0, 17, length)
    ck = inet_checksum(pseudo + head + payload) or 0xFFFF
    return head[:6] + struct.pack("!H", ck) + payload


def udp4_ok(ip: bytes) -> bool:
    ihl = (ip[0] & 15) * 4
    udp = ip[ihl:]
    length = struct.unpack("!H", udp[4:6])[0]
    if udp[6:8] == b"\0\0":
        return True
    pseudo = ip[12:16] + ip[16:20] + struct.pack("!BBH", 0, 17, length)
    return inet_checksum(pseudo + udp[:length]) == 0


def ipv4_header_ok(ip: bytes) -> bool:
    return inet_checksum(ip[: (ip[0] & 15) * 4]) == 0


def eth(dst: bytes, src: bytes, ethertype: int, payload: bytes, vlan: int | None = None) -> bytes:
    tag = struct.pack("!HH", 0x8100, vlan) if vlan is not None else b""
    return dst + src + tag + struct.pack("!H", ethertype) + payload


def dhcp(op: int, chaddr: bytes, options: list[tuple[int, bytes]], *, pad: bool = False) -> bytes:
    body = struct.pack("!BBBBIHH4s4s4s4s", op, 1, 6, 0, 0xDEADBEEF, 0, 0x8000,
                       bytes(4), bytes(4), bytes(4), bytes(4))
    body += chaddr + bytes(10) + bytes(64) + bytes(128) + b"\x63\x82\x53\x63"
    for code, data in options:
        if pad:
            body += b"\x00"       # a pad byte between options (v86 misparsed these)
        body += bytes([code, len(data)]) + data
    return body + b"\xff"


def dhcp_frame(src_mac: bytes, dst_mac: bytes, op: int, chaddr: bytes, client_id: bytes, *,
               ip_options: bytes = b"", pad: bool = False, msg: int = 1) -> bytes:
    payload = dhcp(op, chaddr, [(53, bytes([msg])), (61, b"\x01" + client_id),
                                (55, bytes([1, 3, 6]))], pad=pad)
    src_ip, dst_ip = (bytes(4), b"\xff" * 4) if op == 1 else (b"\x0a\0\0\x01", b"\x0a\0\0\x0f")
    sport, dport = (68, 67) if op == 1 else (67, 68)
    udp = udp4(src_ip, dst_ip, sport, dport, payload)
    ip = ipv4_header(len(udp), 17, src_ip, dst_ip, options=ip_options) + udp
    return eth(dst_mac, src_mac, 0x0800, ip)


def arp(op: int, sha: bytes, spa: bytes, tha: bytes, tpa: bytes) -> bytes:
    return struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + sha + spa + tha + tpa


# -- tests ------------------------------------------------------------------------------
@pytest.fixture
def tr() -> MacTranslator:
    return MacTranslator(GUEST, WIRE)


def test_arp_request_and_reply_rewrite_sender_and_target(tr):
    req = eth(BCAST, GUEST, 0x0806, arp(1, GUEST, b"\x0a\0\0\x0f", bytes(6), b"\x0a\0\0\x01"))
    out = tr.to_wire(req)
    assert out[6:12] == WIRE and out[14 + 8 : 14 + 14] == WIRE
    assert GUEST not in out
    reply = eth(WIRE, SERVER, 0x0806, arp(2, SERVER, b"\x0a\0\0\x01", WIRE, b"\x0a\0\0\x0f"))
    back = tr.to_guest(reply)
    assert back[:6] == GUEST and back[14 + 18 : 14 + 24] == GUEST and back[14 + 8 : 14 + 14] == SERVER
    assert tr.tx.rewritten == 1 and tr.tx.addresses == 2 and tr.rx.addresses == 2


@pytest.mark.parametrize("msg", [1, 3], ids=["DISCOVER", "REQUEST"])
@pytest.mark.parametrize("pad", [False, True], ids=["packed", "pad-bytes"])
def test_dhcp_client_messages_rewrite_chaddr_and_option_61_with_valid_checksum(tr, msg, pad):
    frame = dhcp_frame(GUEST, BCAST, 1, GUEST, GUEST, pad=pad, msg=msg)
    out = tr.to_wire(frame)
    ip = out[14:]
    assert GUEST not in out
    assert out[6:12] == WIRE
    body = ip[20 + 8 :]
    assert body[28:34] == WIRE
    i = body.index(b"\x3d\x07\x01")
    assert body[i + 3 : i + 9] == WIRE
    assert ip[26:28] != b"\0\0", "the UDP checksum must be recomputed, not zeroed"
    assert udp4_ok(ip) and ipv4_header_ok(ip)
    assert tr.tx.addresses == 3


def test_dhcp_offer_from_server_is_rewritten_back_for_the_guest(tr):
    frame = dhcp_frame(SERVER, WIRE, 2, WIRE, WIRE, msg=2)
    out = tr.to_guest(frame)
    ip = out[14:]
    assert out[:6] == GUEST and WIRE not in out and udp4_ok(ip)


def test_ipv4_options_shift_the_udp_header(tr):
    router_alert = b"\x94\x04\x00\x00"
    frame = dhcp_frame(GUEST, BCAST, 1, GUEST, GUEST, ip_options=router_alert + b"\x01\x01\x01\x00")
    out = tr.to_wire(frame)
    ip = out[14:]
    assert ip[0] & 15 == 7 and GUEST not in out and udp4_ok(ip) and ipv4_header_ok(ip)


def test_udp_without_checksum_stays_without(tr):
    payload = dhcp(1, GUEST, [(61, b"\x01" + GUEST)])
    udp = udp4(bytes(4), b"\xff" * 4, 68, 67, payload, zero=True)
    frame = eth(BCAST, GUEST, 0x0800, ipv4_header(len(udp), 17, bytes(4), b"\xff" * 4) + udp)
    out = tr.to_wire(frame)
    assert out[14 + 26 : 14 + 28] == b"\0\0" and GUEST not in out


def test_fragments_pass_unchanged_and_are_counted(tr):
    payload = dhcp(1, GUEST, [(61, b"\x01" + GUEST)])
    udp = udp4(bytes(4), b"\xff" * 4, 68, 67, payload)
    first = ipv4_header(200, 17, bytes(4), b"\xff" * 4, frag=0x2000) + udp[:200]   # MF set
    out = tr.to_wire(eth(BCAST, GUEST, 0x0800, first))
    assert out[6:12] == WIRE                       # the Ethernet header is still ours to fix
    assert out[14:] == first                       # the datagram is left alone
    assert tr.tx.fragments == 1


def test_vlan_tagged_arp(tr):
    frame = eth(BCAST, GUEST, 0x0806, arp(1, GUEST, b"\x0a\0\0\x0f", bytes(6), b"\x0a\0\0\x01"), vlan=42)
    out = tr.to_wire(frame)
    assert out[12:16] == b"\x81\x00\x00\x2a" and GUEST not in out


def test_vlan_tagged_dhcp_keeps_udp_checksum_valid(tr):
    plain = dhcp_frame(GUEST, BCAST, 1, GUEST, GUEST)
    tagged = plain[:12] + b"\x81\x00\x00\x07" + plain[12:]
    out = tr.to_wire(tagged)
    assert GUEST not in out and udp4_ok(out[18:])


def icmpv6(src: bytes, dst: bytes, body: bytes) -> bytes:
    pseudo = src + dst + struct.pack("!IxxxB", len(body), 58)
    ck = inet_checksum(pseudo + body[:2] + b"\0\0" + body[4:])
    body = body[:2] + struct.pack("!H", ck) + body[4:]
    return struct.pack("!IHBB", 0x60000000, len(body), 58, 255) + src + dst + body


def icmpv6_ok(ip6: bytes) -> bool:
    plen = struct.unpack("!H", ip6[4:6])[0]
    pseudo = ip6[8:24] + ip6[24:40] + struct.pack("!IxxxB", plen, 58)
    return inet_checksum(pseudo + ip6[40 : 40 + plen]) == 0


LL_GUEST = bytes.fromhex("fe80000000000000022215fffeaabbcc")
LL_PEER = bytes.fromhex("fe800000000000005054fffe000001aa")


def test_ipv6_neighbour_solicitation_source_lla_option(tr):
    ns = struct.pack("!BBHI", 135, 0, 0, 0) + LL_PEER + b"\x01\x01" + GUEST
    frame = eth(b"\x33\x33\xff\x00\x01\xaa", GUEST, 0x86DD, icmpv6(LL_GUEST, LL_PEER, ns))
    out = tr.to_wire(frame)
    assert GUEST not in out and out[-6:] == WIRE and icmpv6_ok(out[14:])


def test_ipv6_neighbour_advertisement_target_lla_option_both_ways(tr):
    na = struct.pack("!BBHI", 136, 0, 0, 0x60000000) + LL_GUEST + b"\x02\x01" + GUEST
    out = tr.to_wire(eth(SERVER, GUEST, 0x86DD, icmpv6(LL_GUEST, LL_PEER, na)))
    assert out[-6:] == WIRE and icmpv6_ok(out[14:])
    back = tr.to_guest(out[:6].replace(SERVER, WIRE) + out[6:])
    assert back[-6:] == GUEST and icmpv6_ok(back[14:])


def test_router_solicitation_with_hop_by_hop_header(tr):
    rs = struct.pack("!BBHI", 133, 0, 0, 0) + b"\x01\x01" + GUEST
    ip6 = icmpv6(LL_GUEST, LL_PEER, rs)
    # insert a hop-by-hop header (8 bytes, next header 58) and fix the lengths
    hbh = bytes([58, 0, 5, 2, 0, 0, 1, 0])
    hdr = bytearray(ip6[:40])
    hdr[4:6] = struct.pack("!H", len(ip6) - 40 + 8)
    hdr[6] = 0
    out = tr.to_wire(eth(BCAST, GUEST, 0x86DD, bytes(hdr) + hbh + ip6[40:]))
    assert GUEST not in out
    icmp = out[14 + 48 :]
    pseudo = LL_GUEST + LL_PEER + struct.pack("!IxxxB", len(icmp), 58)
    assert inet_checksum(pseudo + icmp) == 0


def test_malformed_ndp_option_is_passed_with_only_the_ethernet_rewrite(tr):
    ns = struct.pack("!BBHI", 135, 0, 0, 0) + LL_PEER + b"\x01\x00" + GUEST   # length 0: illegal
    ip6 = icmpv6(LL_GUEST, LL_PEER, ns)
    out = tr.to_wire(eth(BCAST, GUEST, 0x86DD, ip6))
    assert out[6:12] == WIRE and out[14:] == ip6 and tr.tx.malformed == 1


def test_dhcpv6_duid_ll(tr):
    duid = struct.pack("!HH", 3, 1) + GUEST
    msg = bytes([1, 0, 0, 1]) + struct.pack("!HH", 1, len(duid)) + duid
    src, dst = LL_GUEST, bytes.fromhex("ff020000000000000000000000010002")
    udp_len = 8 + len(msg)
    pseudo = src + dst + struct.pack("!IxxxB", udp_len, 17)
    head = struct.pack("!HHHH", 546, 547, udp_len, 0)
    ck = inet_checksum(pseudo + head + msg) or 0xFFFF
    udp = head[:6] + struct.pack("!H", ck) + msg
    ip6 = struct.pack("!IHBB", 0x60000000, len(udp), 17, 1) + src + dst + udp
    out = tr.to_wire(eth(b"\x33\x33\0\x01\0\x02", GUEST, 0x86DD, ip6))
    assert GUEST not in out
    ip = out[14:]
    assert inet_checksum(ip[8:40] + struct.pack("!IxxxB", udp_len, 17) + ip[40:]) == 0


def test_frames_without_the_mac_are_returned_untouched(tr):
    frame = eth(SERVER, bytes.fromhex("020000000002"), 0x0800, b"\x45" + bytes(40))
    assert tr.to_wire(frame) is frame
    assert tr.tx.frames == 1 and tr.tx.rewritten == 0


def test_mac_inside_an_unparsed_payload_is_counted(tr):
    tcp = bytes(20) + b"payload " + GUEST
    ip = ipv4_header(len(tcp), 6, b"\x0a\0\0\x0f", b"\x0a\0\0\x01") + tcp
    out = tr.to_wire(eth(SERVER, GUEST, 0x0800, ip))
    assert out[6:12] == WIRE and out[14:] == ip and tr.tx.unsupported == 1


@pytest.mark.parametrize("cut", [0, 5, 13, 14, 20, 30, 40, 60, 200, 300])
def test_truncated_frames_never_raise(tr, cut):
    frame = dhcp_frame(GUEST, BCAST, 1, GUEST, GUEST)[:cut]
    out = tr.to_wire(frame)
    assert len(out) == len(frame)


def test_truncated_dhcp_options_leave_the_payload_alone(tr):
    frame = bytearray(dhcp_frame(GUEST, BCAST, 1, GUEST, GUEST))
    # make the last option claim more bytes than the packet has, keeping lengths consistent
    i = frame.index(b"\x37\x03")
    frame[i + 1] = 0x40
    out = tr.to_wire(bytes(frame))
    assert out[14:] == bytes(frame[14:]) and tr.tx.malformed == 1


def test_mac_helpers():
    assert parse_mac("00:22:15:AA:bb:cc") == GUEST and format_mac(GUEST) == "00:22:15:aa:bb:cc"
    with pytest.raises(ValueError):
        parse_mac("00:22:15:aa:bb")
