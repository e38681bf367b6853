"""The length-prefixed stream framing, byte for byte."""
from __future__ import annotations

import struct

from pyv86_passt.framing import ETH_MAX, FrameDecoder, encode


def frame(n: int, fill: int = 0xAB) -> bytes:
    return bytes([fill]) * n


def test_encode_prefixes_the_big_endian_32_bit_length():
    assert encode(frame(60)) == b"\x00\x00\x00\x3c" + frame(60)
    assert encode(frame(1514))[:4] == struct.pack(">I", 1514)


def test_frames_split_anywhere_come_out_whole():
    frames = [frame(60, 1), frame(1514, 2), frame(14, 3), frame(9000, 4)]
    stream = b"".join(encode(f) for f in frames)
    d = FrameDecoder()
    out = []
    for i in range(len(stream)):
        out += d.feed(stream[i : i + 1])
    assert out == frames
    assert d.pending == 0
    assert d.counters.frames == 4 and d.counters.bytes == 60 + 1514 + 14 + 9000


def test_many_frames_in_one_chunk_come_out_in_order():
    frames = [frame(60 + i, i) for i in range(50)]
    assert FrameDecoder().feed(b"".join(encode(f) for f in frames)) == frames


def test_a_runt_is_dropped_and_counted_and_the_stream_stays_in_step():
    d = FrameDecoder()
    stream = encode(frame(13)) + encode(frame(0)) + encode(frame(60, 7))
    assert d.feed(stream) == [frame(60, 7)]
    assert d.counters.runts == 2 and d.counters.frames == 1
    assert d.counters.last_bad_length == 0


def test_a_giant_is_skipped_without_buffering_it():
    d = FrameDecoder()
    giant = 65536 + 100
    out = d.feed(struct.pack(">I", giant) + frame(1000))
    assert out == [] and d.counters.giants == 1 and d.pending == 0
    # the rest of the giant arrives in pieces and is discarded, then a good frame follows
    rest = giant - 1000
    out += d.feed(frame(rest // 2))
    assert d.pending == 0
    out += d.feed(frame(rest - rest // 2) + encode(frame(42, 9)))
    assert out == [frame(42, 9)]
    assert d.counters.last_bad_length == giant


def test_a_huge_length_field_costs_no_memory():
    d = FrameDecoder()
    assert d.feed(struct.pack(">I", 0xFFFFFFFF) + frame(4096)) == []
    assert d.pending == 0 and d.counters.giants == 1


def test_frames_above_1514_bytes_are_delivered_but_counted():
    d = FrameDecoder()
    assert d.feed(encode(frame(ETH_MAX)) + encode(frame(ETH_MAX + 1))) == [frame(ETH_MAX), frame(ETH_MAX + 1)]
    assert d.counters.oversize == 1


def test_reset_forgets_a_partial_frame():
    d = FrameDecoder()
    d.feed(encode(frame(100))[:50])
    assert d.pending == 50
    d.reset()
    assert d.feed(encode(frame(20, 5))) == [frame(20, 5)]
