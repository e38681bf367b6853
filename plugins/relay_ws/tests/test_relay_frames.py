"""Unit tests of frame checks (runts, oversize, go-websockproxy padding) and the wire codec."""
from __future__ import annotations

import struct

import pytest

from pyv86_relay_ws.frames import OK, OVERSIZE, RUNT, TRIMMED, check_frame, real_length, redact_url
from pyv86_relay_ws.wire import (OP_BINARY, OP_CLOSE, OP_PING, OP_TEXT, FrameParser, WireError,
                                 encode_binary, handshake_response, parse_request)
from relayhelp import RawClient, eth, mac


def ipv4_frame(payload_len: int) -> bytes:
    total = 20 + payload_len
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 1, 0, 64, 17, 0, b"\x0a\0\0\1", b"\x0a\0\0\2")
    return mac(2) + mac(1) + b"\x08\x00" + ip + bytes(i & 0xFF for i in range(payload_len))


def test_check_frame_passes_frames_of_14_to_1514_bytes_unchanged():
    for n in (14, 60, 1514):
        msg = bytes(n)
        frame, verdict = check_frame(msg)
        assert verdict == OK and frame is msg


def test_check_frame_drops_runts_below_the_ethernet_header():
    assert check_frame(bytes(13)) == (None, RUNT)
    assert check_frame(b"") == (None, RUNT)


def test_check_frame_trims_a_1518_byte_ipv4_message_to_the_ip_total_length():
    frame = ipv4_frame(100)
    padded = frame + b"\xaa" * (1518 - len(frame))
    out, verdict = check_frame(padded)
    assert verdict == TRIMMED and out == frame and len(out) == 14 + 120


def test_check_frame_trims_a_padded_arp_message_to_42_bytes():
    arp = eth(b"\xff" * 6, mac(1), 0x0806, struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + bytes(20))
    out, verdict = check_frame(arp[:42] + b"\x55" * (1518 - 42))
    assert verdict == TRIMMED and out == arp[:42]


def test_check_frame_trims_ipv6_by_its_payload_length():
    ip6 = struct.pack("!IHBB16s16s", 0x60000000, 8, 17, 64, bytes(16), bytes(16)) + bytes(8)
    frame = mac(2) + mac(1) + b"\x86\xdd" + ip6
    assert check_frame(frame + bytes(1600 - len(frame))) == (frame, TRIMMED)


def test_check_frame_drops_oversize_messages_whose_header_does_not_vouch_for_them():
    assert check_frame(bytes(1515)) == (None, OVERSIZE)  # EtherType 0: no length to trust
    big_ip = ipv4_frame(1600)  # the IP header itself says 1620 bytes
    assert check_frame(big_ip) == (None, OVERSIZE)
    assert real_length(big_ip) == 14 + 1620


def test_redact_url_hides_the_token_value():
    assert redact_url("ws://h:1/?a=1&token=s3cret") == "ws://h:1/?a=1&token=***"
    assert redact_url("ws://h:1/") == "ws://h:1/"


def test_handshake_uses_the_rfc6455_accept_key():
    req = parse_request(b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n"
                        b"Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                        b"Sec-WebSocket-Version: 13")
    assert req.is_websocket and req.path == "/chat"
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in handshake_response(req)


def test_handshake_refuses_other_versions_and_bad_request_lines():
    req = parse_request(b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8")
    with pytest.raises(WireError) as info:
        handshake_response(req)
    assert info.value.code == 426
    with pytest.raises(WireError):
        parse_request(b"HELLO")


def test_parser_reassembles_fragments_and_passes_control_frames_between_them():
    enc = RawClient.encode
    data = (enc(b"abc", OP_BINARY, fin=False) + enc(b"ping!", OP_PING) + enc(b"def", 0x0, fin=False)
            + enc(b"gh", 0x0) + enc(b"hi", OP_TEXT))
    parser = FrameParser()
    out = []
    for i in range(len(data)):  # one byte at a time: every split point
        out += parser.feed(data[i:i + 1])
    assert out == [(OP_PING, b"ping!"), (OP_BINARY, b"abcdefgh"), (OP_TEXT, b"hi")]


def test_parser_refuses_unmasked_frames_and_oversize_messages_before_buffering_them():
    with pytest.raises(WireError) as info:
        FrameParser().feed(RawClient.encode(b"x" * 20, masked=False))
    assert info.value.code == 1002
    parser = FrameParser(max_message=1000)
    header_only = RawClient.encode(b"x" * 5000)[:8]
    with pytest.raises(WireError) as info:
        parser.feed(header_only)
    assert info.value.code == 1009
    parser = FrameParser(max_message=1000)
    parser.feed(RawClient.encode(b"x" * 600, fin=False))
    with pytest.raises(WireError):
        parser.feed(RawClient.encode(b"x" * 600, 0x0))


def test_parser_refuses_reserved_bits_and_continuations_out_of_place():
    frame = bytearray(RawClient.encode(b"x"))
    frame[0] |= 0x40
    with pytest.raises(WireError):
        FrameParser().feed(bytes(frame))
    with pytest.raises(WireError):
        FrameParser().feed(RawClient.encode(b"x", 0x0))
    with pytest.raises(WireError):
        FrameParser().feed(RawClient.encode(b"x" * 200, OP_CLOSE))


def test_encode_binary_uses_the_short_and_16_bit_length_forms():
    assert encode_binary(b"x" * 125)[:2] == b"\x82\x7d"
    assert encode_binary(b"x" * 1514)[:4] == b"\x82\x7e\x05\xea"
