"""The Linux 32-bit boot protocol loader: bzImage parsing, zero page, layout, CPU state."""
from __future__ import annotations

import struct
from pathlib import Path

import pytest

from pyv86.boot.linux import (CMDLINE_ADDR, DEFAULT_CMDLINE, GDT_ADDR, KERNEL_ADDR, TSC_KHZ,
                              ZERO_PAGE, BzImage, LinuxBoot, e820_map)
from pyv86.errors import BootError
from pyv86.machine import Machine
from pyv86.paths import guest_dir

MiB = 1 << 20


def synthetic_bzimage(protocol: int = 0x020F, loadflags: int = 0x01, setup_sects: int = 4,
                      payload: bytes = b"\x90" * 4096, magic: bytes = b"HdrS",
                      boot_flag: int = 0xAA55) -> bytes:
    """A bzImage-shaped file: boot sector + setup header + a protected-mode 'kernel'."""
    setup = bytearray(((setup_sects or 4) + 1) * 512)
    setup[0x1EF] = 0x5A  # sentinel the loader must not copy
    setup[0x1F1] = setup_sects
    struct.pack_into("<H", setup, 0x1FE, boot_flag)
    setup[0x200] = 0xEB
    setup[0x201] = 0x6A  # header ends at 0x26C
    setup[0x202:0x206] = magic
    struct.pack_into("<H", setup, 0x206, protocol)
    struct.pack_into("<H", setup, 0x20E, 0x300)  # kernel_version string at 0x300 + 0x200
    setup[0x500:0x510] = b"6.1.0-test #1\0\0\0"
    setup[0x211] = loadflags
    struct.pack_into("<I", setup, 0x214, KERNEL_ADDR)
    struct.pack_into("<I", setup, 0x22C, 0x7FFFFFFF)
    struct.pack_into("<I", setup, 0x230, 0x1000000)
    setup[0x234] = 1
    struct.pack_into("<I", setup, 0x238, 2047)
    struct.pack_into("<Q", setup, 0x258, 0x1000000)
    struct.pack_into("<I", setup, 0x260, 0x0100C000)
    return bytes(setup) + payload


class FakeCpu:
    """Records the register API calls the loader makes."""

    def __init__(self) -> None:
        self.regs: dict[str, int] = {}
        self.segments: dict[str, tuple[int, int, int, int]] = {}
        self.gdtr = self.idtr = None

    def set_reg(self, name, value):
        self.regs[name] = value

    def set_segment(self, name, selector, base, limit, flags):
        self.segments[name] = (selector, base, limit, flags)

    def set_gdtr(self, base, limit):
        self.gdtr = (base, limit)

    def set_idtr(self, base, limit):
        self.idtr = (base, limit)


@pytest.fixture
def machine():
    m = Machine(128 * MiB)
    m.cpu = FakeCpu()
    return m


def write(tmp_path: Path, data: bytes, name: str = "bzImage") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


# parsing --------------------------------------------------------------------------------

def test_parse_reads_setup_header():
    image = BzImage.parse(synthetic_bzimage(), "k")
    assert image.protocol == 0x020F and image.protocol_text == "2.15"
    assert image.pm_offset == 5 * 512 and image.pm_size == 4096
    assert image.init_size == 0x0100C000 and image.kernel_alignment == 0x1000000
    assert image.version_string == "6.1.0-test #1"


def test_setup_sects_zero_means_four():
    assert BzImage.parse(synthetic_bzimage(setup_sects=0, payload=b"\x90" * 8192), "k").pm_offset == 5 * 512


@pytest.mark.parametrize("data, message", [
    (synthetic_bzimage(boot_flag=0), "not a bzImage (no 0xAA55 boot signature"),
    (synthetic_bzimage(magic=b"ELF!"), "not a bzImage (no \"HdrS\""),
    (b"\x7fELF" + bytes(100), "too short"),
    (synthetic_bzimage(protocol=0x0204), "boot protocol 2.04 is too old"),
    (synthetic_bzimage(loadflags=0), "a zImage"),
    (synthetic_bzimage(setup_sects=30, payload=b""), "truncated"),
])
def test_bad_kernels_give_one_line_error_naming_the_file(tmp_path, data, message):
    path = write(tmp_path, data)
    with pytest.raises(BootError) as err:
        BzImage.load(path)
    text = str(err.value)
    assert text.startswith(path + ": ") and message in text and "\n" not in text


def test_missing_kernel_file(tmp_path):
    with pytest.raises(BootError, match=r"vmlinuz: no such kernel file"):
        BzImage.load(tmp_path / "vmlinuz")


def test_missing_initrd_file(tmp_path):
    kernel = write(tmp_path, synthetic_bzimage())
    with pytest.raises(BootError, match=r"initrd.gz: no such initrd file"):
        LinuxBoot.from_files(kernel, str(tmp_path / "initrd.gz"))


# zero page ---------------------------------------------------------------------------------

def zero_page(machine) -> bytes:
    return machine.memory.read(ZERO_PAGE, 4096)


def test_zero_page_copies_header_but_not_sentinel(machine):
    data = synthetic_bzimage()
    LinuxBoot(BzImage.parse(data)).load(machine)
    zp = zero_page(machine)
    assert zp[0x1EF] == 0
    assert zp[0x202:0x206] == b"HdrS"
    assert zp[0x230:0x238] == data[0x230:0x238]
    assert zp[0x26C:0x2D0] == bytes(0x64)


def test_zero_page_loader_fields(machine):
    LinuxBoot(BzImage.parse(synthetic_bzimage()), cmdline="console=ttyS0").load(machine)
    zp = zero_page(machine)
    assert zp[0x210] == 0xFF  # type_of_loader
    assert zp[0x211] & 0x01  # LOADED_HIGH kept
    assert struct.unpack_from("<I", zp, 0x228)[0] == CMDLINE_ADDR
    assert zp[0:0x40] == bytes(0x40)  # screen_info left zero: headless
    assert struct.unpack_from("<Q", zp, 0x70)[0] == 0  # no ACPI RSDP


def test_zero_page_e820_table(machine):
    LinuxBoot(BzImage.parse(synthetic_bzimage())).load(machine)
    zp = zero_page(machine)
    count = zp[0x1E8]
    entries = [struct.unpack_from("<QQI", zp, 0x2D0 + 20 * i) for i in range(count)]
    assert entries == [(0, 0x9FC00, 1), (0x9FC00, 0x400, 2), (0xF0000, 0x10000, 2),
                       (0x100000, 127 * MiB, 1)]


def test_e820_never_marks_the_legacy_hole_as_ram():
    for addr, size, kind in e820_map(64 * MiB):
        if kind == 1:
            assert addr + size <= 0xA0000 or addr >= 0x100000


def test_command_line_written_nul_terminated(machine):
    LinuxBoot(BzImage.parse(synthetic_bzimage()), cmdline="console=ttyS0 quiet").load(machine)
    assert machine.memory.read(CMDLINE_ADDR, 20) == b"console=ttyS0 quiet\0"


def test_default_command_line_when_none_given(machine):
    boot = LinuxBoot(BzImage.parse(synthetic_bzimage()))
    boot.load(machine)
    assert boot.cmdline == DEFAULT_CMDLINE
    for option in ("console=ttyS0", "acpi=off", "nolapic", "nokaslr", "pci=conf1",
                   f"tsc_early_khz={TSC_KHZ}"):
        assert option in DEFAULT_CMDLINE.split()


def test_command_line_longer_than_kernel_accepts_is_an_error():
    with pytest.raises(BootError, match="at most 2047"):
        LinuxBoot(BzImage.parse(synthetic_bzimage(), "k"), cmdline="x" * 3000)


def test_protected_mode_part_loaded_at_1mib(machine):
    payload = bytes(range(256)) * 16
    LinuxBoot(BzImage.parse(synthetic_bzimage(payload=payload))).load(machine)
    assert machine.memory.read(KERNEL_ADDR, len(payload)) == payload


def test_boot_gdt_has_flat_code_and_data(machine):
    LinuxBoot(BzImage.parse(synthetic_bzimage())).load(machine)
    gdt = struct.unpack("<4Q", machine.memory.read(GDT_ADDR, 32))
    assert gdt[2] & ~(1 << 40) == 0x00CF9A000000FFFF
    assert gdt[3] & ~(1 << 40) == 0x00CF92000000FFFF


# initrd --------------------------------------------------------------------------------------

def test_initrd_at_top_of_ram_page_aligned(machine):
    initrd = b"\x1f\x8b" + bytes(1_000_000)
    LinuxBoot(BzImage.parse(synthetic_bzimage()), initrd).load(machine)
    zp = zero_page(machine)
    start, size = struct.unpack_from("<II", zp, 0x218)
    assert size == len(initrd)
    assert start == (128 * MiB - len(initrd)) & ~0xFFF
    assert machine.memory.read(start, 2) == b"\x1f\x8b"


def test_no_initrd_leaves_ramdisk_fields_zero(machine):
    LinuxBoot(BzImage.parse(synthetic_bzimage())).load(machine)
    assert struct.unpack_from("<II", zero_page(machine), 0x218) == (0, 0)


def test_initrd_too_big_for_ram_is_an_error():
    m = Machine(40 * MiB)
    m.cpu = FakeCpu()
    boot = LinuxBoot(BzImage.parse(synthetic_bzimage()), bytes(16 * MiB), initrd_path="big.cpio")
    with pytest.raises(BootError, match=r"big.cpio: initrd of 16384 KiB does not fit .* at least"):
        boot.load(m)


def test_kernel_bigger_than_ram_is_an_error():
    m = Machine(2 * MiB)
    m.cpu = FakeCpu()
    with pytest.raises(BootError, match="does not fit"):
        LinuxBoot(BzImage.parse(synthetic_bzimage(payload=bytes(2 * MiB)), "k")).load(m)


# CPU -----------------------------------------------------------------------------------------

def test_cpu_state_is_flat_protected_mode_at_entry(machine):
    LinuxBoot(BzImage.parse(synthetic_bzimage())).load(machine)
    cpu = machine.cpu
    assert cpu.regs["cr0"] == 0x11 and cpu.regs["cr3"] == 0 and cpu.regs["cr4"] == 0
    assert cpu.regs["eip"] == KERNEL_ADDR
    assert cpu.regs["esi"] == ZERO_PAGE
    assert cpu.regs["ebx"] == cpu.regs["ebp"] == cpu.regs["edi"] == 0
    assert cpu.regs["eflags"] == 0x2
    assert cpu.segments["cs"] == (0x10, 0, 0xFFFFFFFF, 0xC09B)
    for seg in ("ds", "es", "ss", "fs", "gs"):
        assert cpu.segments[seg] == (0x18, 0, 0xFFFFFFFF, 0xC093)
    assert cpu.gdtr == (GDT_ADDR, 31)


def test_boot_without_cpu_is_an_error():
    m = Machine(64 * MiB)
    with pytest.raises(BootError, match="needs a CPU"):
        LinuxBoot(BzImage.parse(synthetic_bzimage(), "k")).load(m)


def test_boot_hook_runs_after_each_reset(machine):
    boot = LinuxBoot(BzImage.parse(synthetic_bzimage()))
    machine.boot_hooks.append(boot)
    machine.cpu.reset = lambda: machine.cpu.regs.clear()
    machine.reset("guest")
    assert machine.cpu.regs["eip"] == KERNEL_ADDR


# the real Debian kernel ------------------------------------------------------------------------

def real_kernel() -> Path:
    path = guest_dir() / "vmlinuz"
    if not path.exists():
        pytest.skip(f"{path} not built (run `pyv86 guest build`); the synthetic header tests cover the loader")
    return path


def test_real_debian_kernel_header():
    image = BzImage.load(real_kernel())
    assert image.protocol >= 0x020F
    assert image.loadflags & 1
    assert image.pm_offset == (image.setup_sects + 1) * 512
    assert image.init_size > 8 * MiB
    assert "686" in image.version_string


def test_real_kernel_loads_into_128mib(machine):
    path = real_kernel()
    initrd = guest_dir() / "initramfs.cpio.gz"
    boot = LinuxBoot.from_files(str(path), str(initrd) if initrd.exists() else None, decompress="guest")
    layout = boot.load(machine)
    data = path.read_bytes()
    pm = (data[0x1F1] + 1) * 512
    assert machine.memory.read(KERNEL_ADDR, 64) == data[pm : pm + 64]
    if layout.initrd is not None:
        assert layout.initrd[0] >= 0x0200C000
        assert layout.initrd[0] + layout.initrd[1] <= 128 * MiB
