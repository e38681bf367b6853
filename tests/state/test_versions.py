"""Old images (tests/data/state/) load through the upgrade chain; newer ones are refused."""
from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import pytest

import state_helpers as helpers
from pyv86.errors import StateError
from pyv86.state import restore_machine, save_machine
from pyv86.state.container import HEADER_SIZE, dumps_manifest

DATA = Path(__file__).resolve().parent.parent / "data" / "state"


def resign(data: bytes, edit) -> bytes:
    mlen = struct.unpack_from("<Q", data, 16)[0]
    manifest = json.loads(data[HEADER_SIZE : HEADER_SIZE + mlen])
    edit(manifest)
    body = dumps_manifest(manifest)
    head = bytearray(data[:HEADER_SIZE])
    head[16:24] = struct.pack("<Q", len(body))
    head[24:28] = struct.pack("<I", zlib.crc32(body))
    head[28:32] = struct.pack("<I", zlib.crc32(bytes(head[:28])))
    return bytes(head) + body + data[HEADER_SIZE + mlen :]


def test_version_1_record_gets_defaults_and_the_upgrade_step(state_machines):
    m = state_machines()
    restore_machine(m, DATA / "rich-v1.pyv86state", preserve_mac=True)
    s = m.devices["rich0"].state
    assert s.imr == 0xFF and s.rxcr == 0x0C          # "since" defaults
    assert s.cr == 0x22 and s.flag is True           # upgrade_2_to_3 split bit 7 out of cr
    assert s.name == "scribbled" and len(s.mem) == 0x8000


def test_version_2_record_drops_retired_fields(state_machines):
    m = state_machines()
    restore_machine(m, DATA / "rich-v2.pyv86state", preserve_mac=True)
    s = m.devices["rich0"].state
    assert s.imr == 0x3F and s.rxcr == 0x0C and s.flag is True and s.cr == 0x22
    assert not hasattr(s, "old_latch")


def test_record_newer_than_the_code_is_refused_with_one_line(state_machines, tmp_path):
    a = state_machines()
    path = tmp_path / "new.pyv86state"
    save_machine(a, path)

    def bump(manifest):
        for r in manifest["records"]:
            if r["kind"] == "state-test-rich":
                r["version"] = 4
    path.write_bytes(resign(path.read_bytes(), bump))
    with pytest.raises(StateError, match=r"new.pyv86state: record state-test-rich/rich0: version 4 is "
                                         r"newer than this pyv86 supports \(3\); upgrade pyv86"):
        restore_machine(state_machines(), path)


def test_unknown_field_in_a_current_record_is_refused(state_machines, tmp_path):
    a = state_machines()
    path = tmp_path / "f.pyv86state"
    save_machine(a, path)

    def add(manifest):
        for r in manifest["records"]:
            if r["kind"] == "state-test-rich":
                r["fields"]["surprise"] = 1
    path.write_bytes(resign(path.read_bytes(), add))
    with pytest.raises(StateError, match=r"field 'surprise' is unknown to RichState"):
        restore_machine(state_machines(), path)


def test_missing_field_that_is_not_new_is_refused(state_machines, tmp_path):
    path = tmp_path / "g.pyv86state"
    save_machine(state_machines(), path)

    def drop(manifest):
        for r in manifest["records"]:
            if r["kind"] == "state-test-rich":
                del r["fields"]["name"]
    path.write_bytes(resign(path.read_bytes(), drop))
    with pytest.raises(StateError, match=r"record state-test-rich/rich0: field 'name' is missing"):
        restore_machine(state_machines(), path)


def test_wrong_type_and_wrong_buffer_size_are_refused(state_machines, tmp_path):
    path = tmp_path / "t.pyv86state"
    save_machine(state_machines(), path)

    def retype(manifest):
        for r in manifest["records"]:
            if r["kind"] == "state-test-rich":
                r["fields"]["cr"] = "0x21"
    bad = tmp_path / "bad.pyv86state"
    bad.write_bytes(resign(path.read_bytes(), retype))
    with pytest.raises(StateError, match=r"field cr: expected an integer"):
        restore_machine(state_machines(), bad)

    def shrink(manifest):
        for r in manifest["records"]:
            if r["kind"] == "state-test-rich":
                r["fields"]["mem"] = {"$hex": "00" * 16, "type": "bytearray"}
    bad.write_bytes(resign(path.read_bytes(), shrink))
    with pytest.raises(StateError, match=r"field mem: expected 32768 items, got 16"):
        restore_machine(state_machines(), bad)


@pytest.mark.parametrize("major,minor,flags,message", [
    (2, 0, 0, r"format 2.0 is not readable by this pyv86 \(reads 1.x\); upgrade pyv86"),
    (1, 9, 0, r"format 1.9 is newer than this pyv86 reads \(1.0\); upgrade pyv86"),
    (1, 0, 4, r"unknown flags 0x4"),
])
def test_newer_formats_are_refused(state_machines, tmp_path, major, minor, flags, message):
    path = tmp_path / "h.pyv86state"
    save_machine(state_machines(), path)
    data = bytearray(path.read_bytes())
    struct.pack_into("<HHI", data, 8, major, minor, flags)
    struct.pack_into("<I", data, 28, zlib.crc32(bytes(data[:28])))
    path.write_bytes(bytes(data))
    with pytest.raises(StateError, match=message):
        restore_machine(state_machines(), path)


@pytest.mark.parametrize("content,message", [
    (b"", "not a pyv86 state image"),
    (b"hello world, not an image at all but long enough", "bad magic"),
    (struct.pack("<4I", 0x86768676, 6, 100, 10) + b"{}" * 20, "looks like a v86 state file"),
    (b"\x28\xb5\x2f\xfd" + bytes(40), "zstd"),
    (b"\x89pyv86S\n\x01\x00", "truncated"),
])
def test_foreign_and_truncated_files(state_machines, tmp_path, content, message):
    path = tmp_path / "foreign.bin"
    path.write_bytes(content)
    with pytest.raises(StateError, match=message) as err:
        restore_machine(state_machines(), path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_every_truncation_of_a_real_image_is_a_clear_error(state_machines, tmp_path):
    a = state_machines()
    helpers.fill_ram(a)
    path = tmp_path / "cut.pyv86state"
    save_machine(a, path)
    data = path.read_bytes()
    b = state_machines()
    step = max(1, len(data) // 300)
    for cut in list(range(0, len(data), step)) + [len(data) - 1]:
        with pytest.raises(StateError) as err:
            restore_machine(b, "cut.pyv86state", data=data[:cut])
        assert str(err.value).startswith("cut.pyv86state: ")


def test_missing_file(state_machines, tmp_path):
    with pytest.raises(StateError, match="no such state image"):
        restore_machine(state_machines(), tmp_path / "nope.pyv86state")
