"""Host-side kernel decompression: XZ payload -> vmlinux ELF -> segments at their physical addresses."""
from __future__ import annotations

import logging
import lzma
import struct

import pytest

from pyv86.boot import linux
from pyv86.boot.linux import (KERNEL_ADDR, ZERO_PAGE, BzImage, LinuxBoot, NotUnpackable, host_kernel,
                              parse_vmlinux, run_address, unpack_payload)
from pyv86.errors import BootError
from pyv86.machine import Machine
from pyv86.paths import guest_dir

from test_linux_loader import FakeCpu, synthetic_bzimage

MiB = 1 << 20
LINK = 0x1000000


def tiny_elf(entry: int = LINK, text_at: int = LINK, machine: int = 3, elf_class: int = 1) -> bytes:
    """A 32-bit i386 ELF executable: text segment + data segment with a .bss tail."""
    text = b"\xfa\xf4" + bytes(range(256)) * 4  # cli; hlt; pattern
    data = b"DATA" * 64
    phoff, phnum = 52, 3
    text_off, data_off = 0x1000, 0x2000
    hdr = struct.pack("<4sBBBB8sHHIIIIIHHHHHH", b"\x7fELF", elf_class, 1, 1, 0, bytes(8), 2, machine, 1,
                      entry, phoff, 0, 0, 52, 32, phnum, 40, 0, 0)
    ph = (struct.pack("<IIIIIIII", 1, text_off, 0xC0000000 + text_at, text_at, len(text), len(text), 5, 0x1000)
          + struct.pack("<IIIIIIII", 1, data_off, 0xC0000000 + text_at + 0x10000, text_at + 0x10000,
                        len(data), len(data) + 0x3000, 6, 0x1000)
          + struct.pack("<IIIIIIII", 4, text_off, 0, 0, 16, 16, 4, 4))  # PT_NOTE: ignored
    out = bytearray(data_off + len(data))
    out[:len(hdr)] = hdr
    out[phoff:phoff + len(ph)] = ph
    out[text_off:text_off + len(text)] = text
    out[data_off:] = data
    return bytes(out)


def xz_payload(raw: bytes) -> bytes:
    """What the kernel build makes: XZ with the x86 BCJ filter, then the 4-byte uncompressed size."""
    packed = lzma.compress(raw, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32,
                           filters=[{"id": lzma.FILTER_X86}, {"id": lzma.FILTER_LZMA2, "preset": 6}])
    return packed + struct.pack("<I", len(raw))


def bzimage_with_payload(payload: bytes, lead: bytes = b"\x90" * 0x94) -> bytes:
    image = bytearray(synthetic_bzimage(payload=lead + payload))
    struct.pack_into("<II", image, 0x248, len(lead), len(payload))
    return bytes(image)


@pytest.fixture(autouse=True)
def fresh_cache(monkeypatch):
    monkeypatch.setattr(linux, "_unpacked", {})


@pytest.fixture
def machine():
    m = Machine(64 * MiB)
    m.cpu = FakeCpu()
    yield m



def test_synthetic_payload_is_loaded_at_physical_addresses(machine):
    elf = tiny_elf()
    image = BzImage.parse(bzimage_with_payload(xz_payload(elf)), "tiny")
    machine.memory.write(LINK + 0x10000, b"\xee" * 0x4000)  # garbage where .bss goes
    boot = LinuxBoot(image)
    assert boot.unpacked is not None
    layout = boot.load(machine)
    assert machine.memory.read(LINK, 0x402) == elf[0x1000:0x1402]
    assert machine.memory.read(LINK + 0x10000, 256) == elf[0x2000:0x2100]
    assert machine.memory.read(LINK + 0x10100, 0x3000) == bytes(0x3000)  # zeroed to p_memsz
    assert machine.memory.read(LINK + 0x13100, 16) == b"\xee" * 16  # nothing beyond p_memsz
    assert machine.memory.read(KERNEL_ADDR, 16) == bytes(16)  # compressed image not placed
    assert layout.kernel == (LINK, 0x10000 + 0x100 + 0x3000)
    assert machine.cpu.regs["eip"] == LINK
    assert machine.cpu.regs["esi"] == ZERO_PAGE
    assert machine.cpu.regs["eflags"] == 2
    assert machine.memory.read(ZERO_PAGE + 0x211, 1)[0] & 0x02 == 0  # KASLR_FLAG clear


def test_guest_mode_places_the_compressed_image(machine):
    image = BzImage.parse(bzimage_with_payload(xz_payload(tiny_elf())), "tiny")
    boot = LinuxBoot(image, decompress="guest")
    assert boot.unpacked is None
    boot.load(machine)
    assert machine.memory.read(KERNEL_ADDR, 8) == image.data[image.pm_offset:image.pm_offset + 8]
    assert machine.cpu.regs["eip"] == KERNEL_ADDR


def test_bad_mode_is_a_one_line_error():
    with pytest.raises(BootError, match=r"k: decompress='fast' is not \"host\" or \"guest\""):
        LinuxBoot(BzImage.parse(synthetic_bzimage(), "k"), decompress="fast")


def test_non_xz_payload_falls_back_to_guest_with_info(machine, caplog):
    image = BzImage.parse(bzimage_with_payload(b"\x1f\x8b\x08" + bytes(64)), "gz-kernel")
    with caplog.at_level(logging.INFO, logger="pyv86.boot.linux"):
        boot = LinuxBoot(image)
    assert boot.unpacked is None
    assert "gz-kernel: decompressing in the guest: the payload is not XZ" in caplog.text
    boot.load(machine)
    assert machine.cpu.regs["eip"] == KERNEL_ADDR


@pytest.mark.parametrize("elf, reason", [
    (tiny_elf(text_at=0x2000000, entry=0x2000000), "linked at 0x2000000 but the decompressor would run it at 0x1000000"),
    (tiny_elf(entry=0x1800000), "entry 0x1800000 is not inside a loaded segment"),
    (tiny_elf(machine=62), "not a 32-bit little-endian i386 executable"),
    (b"not an elf" * 10, "does not unpack to an ELF file"),
])
def test_unexpected_elf_is_refused(elf, reason):
    image = BzImage.parse(bzimage_with_payload(xz_payload(elf)), "k")
    with pytest.raises(NotUnpackable, match=reason):
        unpack_payload(image)
    assert host_kernel(image) is None


def test_truncated_xz_is_refused():
    payload = xz_payload(tiny_elf())
    image = BzImage.parse(bzimage_with_payload(payload[: len(payload) // 2]), "k")
    with pytest.raises(NotUnpackable, match="XZ payload"):
        unpack_payload(image)


def test_payload_outside_file_is_refused():
    data = bytearray(bzimage_with_payload(xz_payload(tiny_elf())))
    struct.pack_into("<I", data, 0x24C, 0x7FFFFFFF)
    with pytest.raises(NotUnpackable, match="lies outside the file"):
        unpack_payload(BzImage.parse(bytes(data), "k"))


def test_unpacked_kernel_is_cached_per_process(monkeypatch):
    image = BzImage.parse(bzimage_with_payload(xz_payload(tiny_elf())), "k")
    first = host_kernel(image)
    monkeypatch.setattr(linux, "unpack_payload", lambda _: pytest.fail("decompressed twice"))
    assert host_kernel(BzImage.parse(image.data, "again")) is first


def test_kernel_bigger_than_ram_is_a_clear_error():
    image = BzImage.parse(bzimage_with_payload(xz_payload(tiny_elf())), "k")
    m = Machine(16 * MiB)
    m.cpu = FakeCpu()
    try:
        with pytest.raises(BootError, match="k: the unpacked kernel ends at 16 MiB; give the machine more RAM"):
            LinuxBoot(image).load(m)
    finally:
        pass


def test_parse_vmlinux_skips_non_load_segments():
    kernel = parse_vmlinux(tiny_elf(), LINK)
    assert [(a, len(d), m) for a, d, m in kernel.segments] == [(LINK, 0x402, 0x402),
                                                               (LINK + 0x10000, 256, 0x3100)]


def real_kernel_image() -> BzImage:
    path = guest_dir() / "vmlinuz"
    if not path.exists():
        pytest.fail(f"{path} not built: run `pyv86 guest build` (.ci/run builds it)")
    return BzImage.load(path)


def test_real_kernel_unpacks_to_its_link_address(machine):
    image = real_kernel_image()
    assert run_address(image) == image.pref_address == LINK
    kernel = unpack_payload(image)
    assert kernel.entry == LINK
    assert kernel.start == LINK
    assert kernel.end <= run_address(image) + image.init_size  # inside the decompressor's own area
    assert len(kernel.segments) >= 2
    text = kernel.segments[0][1]
    assert image.version_string.split()[0].encode() in text  # "6.1.0-...-686" in linux_banner


def test_real_kernel_loads_unpacked_into_128mib():
    image = real_kernel_image()
    m = Machine(128 * MiB)
    m.cpu = FakeCpu()
    try:
        boot = LinuxBoot(image)
        assert boot.unpacked is not None, "the Debian kernel should unpack on the host"
        layout = boot.load(m)
        addr, data, memsz = boot.unpacked.segments[-1]
        assert m.memory.read(addr, 64) == data[:64]
        assert m.memory.read(addr + len(data), memsz - len(data)) == bytes(memsz - len(data))
        assert layout.kernel[0] == LINK
        assert m.cpu.regs["eip"] == LINK
    finally:
        pass


def test_machine_file_key():
    from pyv86.config import parse_machine_config
    from pyv86.errors import ConfigError

    base = {"version": 1, "boot": {"kernel": "/k"}}
    assert parse_machine_config(base).decompress == "host"
    assert parse_machine_config({**base, "boot": {"kernel": "/k", "decompress": "guest"}}).decompress == "guest"
    with pytest.raises(ConfigError, match="decompress.*'fast' is not \"host\" or \"guest\""):
        parse_machine_config({**base, "boot": {"kernel": "/k", "decompress": "fast"}})
