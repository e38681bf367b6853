"""pcap recording: the file format byte by byte, reading it back, tcpdump reading it, the tap beside a hub."""
from __future__ import annotations

import shutil
import struct
import subprocess

import pytest

from pyv86.net.hub import open_hub
from pyv86.net.null import NullBackend
from pyv86.net.pcap import PcapTap, PcapWriter, open_pcap, read_pcap

ARP = bytes.fromhex("ffffffffffff" "020000000001" "0806" "0001080006040001" "020000000001" "0a000001"
                    "000000000000" "0a000002")


def test_header_and_record_layout(tmp_path):
    path = tmp_path / "x.pcap"
    w = PcapWriter(path)
    w.write(ARP, timestamp=1700000000.25)
    w.close()
    data = path.read_bytes()
    # global header: magic, version 2.4, zone 0, sigfigs 0, snaplen 65535, LINKTYPE_ETHERNET
    assert data[:24] == struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    assert data[24:40] == struct.pack("<IIII", 1700000000, 250000, len(ARP), len(ARP))
    assert data[40:] == ARP


def test_read_back(tmp_path):
    path = tmp_path / "y.pcap"
    w = PcapWriter(path)
    frames = [ARP, bytes(60), bytes(range(256)) * 5]
    for f in frames:
        w.write(f)
    w.close()
    records = read_pcap(path)
    assert [r.frame for r in records] == frames
    assert all(r.original_length == len(r.frame) for r in records)


def test_oversized_frames_are_truncated_to_snaplen(tmp_path):
    path = tmp_path / "z.pcap"
    w = PcapWriter(path)
    w.write(bytes(70000))
    w.close()
    (rec,) = read_pcap(path)
    assert len(rec.frame) == 65535 and rec.original_length == 70000


def test_read_pcap_rejects_garbage(tmp_path):
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"not a pcap file at all, really not")
    with pytest.raises(ValueError, match="not a pcap file"):
        read_pcap(bad)
    good = tmp_path / "t.pcap"
    w = PcapWriter(good)
    w.write(ARP)
    w.close()
    good.write_bytes(good.read_bytes()[:-5])
    with pytest.raises(ValueError, match="truncated frame"):
        read_pcap(good)


def test_tcpdump_reads_our_files(tmp_path):
    tcpdump = shutil.which("tcpdump")
    if tcpdump is None:
        pytest.fail("tcpdump is not installed (apt-get install tcpdump; .ci/run installs it)")
    path = tmp_path / "arp.pcap"
    w = PcapWriter(path)
    w.write(ARP)
    w.close()
    out = subprocess.run([tcpdump, "-nn", "-e", "-r", str(path)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff" in out.stdout
    assert "Request who-has 10.0.0.2 tell 10.0.0.1" in out.stdout


def test_tap_records_both_directions_beside_a_hub(tmp_path):
    path = tmp_path / "hub.pcap"
    name = f"pcaptest{id(path)}?scope=process"
    inner = open_hub(f"hub:{name}")
    tap = PcapTap(inner, path)
    peer = open_hub(f"hub:{name}")
    got: list[bytes] = []
    tap.set_receiver(got.append)
    peer.set_receiver(lambda f: None)
    try:
        tap.send(ARP)
        reply = bytes.fromhex("020000000001" "020000000002" "0806") + bytes(28)
        peer.send(reply)
        assert got == [reply]
        assert tap.external  # passes through the wrapped backend's property
    finally:
        tap.close()
        peer.close()
    assert [r.frame for r in read_pcap(path)] == [ARP, reply]


def test_pcap_scheme_records_what_the_nic_sends(tmp_path):
    tap = open_pcap(f"pcap:{tmp_path / 'n.pcap'}")
    assert isinstance(tap.inner, NullBackend)
    tap.send(ARP)
    tap.close()
    assert [r.frame for r in read_pcap(tmp_path / "n.pcap")] == [ARP]


def test_pcap_scheme_without_file_is_an_error():
    with pytest.raises(ValueError, match="pcap: needs a file name"):
        open_pcap("pcap:")
