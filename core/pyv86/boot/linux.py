"""Direct Linux boot: the x86 32-bit boot protocol, no BIOS.

:class:`BzImage` parses and validates a kernel file (boot sector signature, "HdrS",
protocol >= 2.06, LOADED_HIGH); every problem is one :class:`~pyv86.errors.BootError`
line naming the file. :class:`LinuxBoot` is a machine boot hook (it runs after every
reset) that lays out guest memory and CPU state the way ``Documentation/arch/x86/boot.rst``
("32-bit Boot Protocol") asks:

========== ====================================================================
0x6000     boot GDT: null, null, 0x10 flat code, 0x18 flat data
0x7000     zero page (struct boot_params): zeroed, header copied from 0x1F1,
           type_of_loader 0xFF, ramdisk, cmd_line_ptr, e820 table
0x20000    command line (NUL-terminated)
0x100000   protected-mode part of the bzImage
top of RAM initrd, page aligned, below initrd_addr_max
========== ====================================================================

and enters the kernel at ``code32_start`` (0x100000) in flat 32-bit protected mode with
paging off, interrupts off, ESI = zero page, EBX = EBP = EDI = 0.

With ``decompress="host"`` (the default) the loader does the bzImage decompressor's work
itself: :func:`host_kernel` unpacks the XZ payload (setup header ``payload_offset`` /
``payload_length``) with :mod:`lzma`, checks that the result is the 32-bit ``vmlinux`` ELF
linked at the address the decompressor would run it from (so its relocations are a no-op,
as with ``nokaslr``), and the loader copies its PT_LOAD segments to their physical
addresses, zeroes the rest of each segment and enters the kernel proper's ``startup_32``
(the ELF entry) with the same CPU state. That skips ~2.3 G guest instructions of XZ
decoding. A kernel whose payload is not like that falls back to ``"guest"`` (the
decompressor runs in the guest) with an INFO log line. Unpacked kernels are kept in
memory per process, keyed by the bzImage's sha256.

:data:`DEFAULT_CMDLINE` is used when the machine file gives none; its
``tsc_early_khz`` matches the CPU's virtual TSC rate (:data:`TSC_KHZ`), so the kernel
skips PIT calibration.
"""
from __future__ import annotations

import hashlib
import logging
import lzma
import struct
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from pyv86.errors import BootError

if TYPE_CHECKING:
    from pyv86.machine import Machine

log = logging.getLogger(__name__)

GDT_ADDR = 0x6000
ZERO_PAGE = 0x7000
CMDLINE_ADDR = 0x20000
KERNEL_ADDR = 0x100000
LOW_RAM_END = 0x9FC00
MIN_PROTOCOL = 0x0206

BOOT_CS, BOOT_DS = 0x10, 0x18
GDT_ENTRIES = (0, 0, 0x00CF9B000000FFFF, 0x00CF93000000FFFF)  # accessed bits preset
CODE_FLAGS = 0xC09B  # G, D/B, P, DPL0, code exec/read accessed  ((desc_hi >> 8) & 0xF0FF)
DATA_FLAGS = 0xC093

TSC_KHZ = 1_000_000
"""The virtual TSC runs at 1 GHz: one tick per guest nanosecond (see the pc platform)."""

DEFAULT_CMDLINE = (
    "console=ttyS0 earlyprintk=serial,ttyS0,115200 acpi=off nolapic noapic nokaslr pci=conf1 "
    f"tsc_early_khz={TSC_KHZ} tsc=reliable 8250.nr_uarts=1 i8042.noaux dis_ucode_ldr "
    "mitigations=off panic=-1 cryptomgr.notests noisapnp"
)
"""``cryptomgr.notests`` skips the crypto self-tests: they are most of a headless boot's work
(measured with QEMU ``-icount``: /init at 0.71 s instead of 4.39 s of instruction time).
``noisapnp``: the PC has no ISA Plug and Play cards, and probing for them is a chain of
``mdelay`` busy-waits: 350 M of the 766 M instructions to the ready marker were spent there."""

# zero page offsets (struct boot_params)
BP_ACPI_RSDP = 0x070
BP_EXT_RAMDISK_IMAGE, BP_EXT_RAMDISK_SIZE, BP_EXT_CMD_LINE_PTR = 0x0C0, 0x0C4, 0x0C8
BP_E820_ENTRIES = 0x1E8
BP_SENTINEL = 0x1EF
BP_HDR = 0x1F1
BP_E820_TABLE = 0x2D0
E820_MAX = 128
# setup header offsets (same in the file and in boot_params)
HDR_SETUP_SECTS = 0x1F1
HDR_VID_MODE = 0x1FA
HDR_BOOT_FLAG = 0x1FE
HDR_JUMP = 0x200
HDR_MAGIC = 0x202
HDR_VERSION = 0x206
HDR_KERNEL_VERSION = 0x20E
HDR_TYPE_OF_LOADER = 0x210
HDR_LOADFLAGS = 0x211
HDR_CODE32_START = 0x214
HDR_RAMDISK_IMAGE = 0x218
HDR_RAMDISK_SIZE = 0x21C
HDR_HEAP_END_PTR = 0x224
HDR_CMD_LINE_PTR = 0x228
HDR_INITRD_ADDR_MAX = 0x22C
HDR_KERNEL_ALIGNMENT = 0x230
HDR_RELOCATABLE = 0x234
HDR_CMDLINE_SIZE = 0x238
HDR_HARDWARE_SUBARCH = 0x23C
HDR_PAYLOAD_OFFSET = 0x248
HDR_PAYLOAD_LENGTH = 0x24C
HDR_SETUP_DATA = 0x250
HDR_PREF_ADDRESS = 0x258
HDR_INIT_SIZE = 0x260

LOADED_HIGH = 0x01
KASLR_FLAG = 0x02
DECOMPRESS_MODES = ("host", "guest")
XZ_MAGIC = b"\xfd7zXZ\x00"
CAN_USE_HEAP = 0x80
E820_RAM, E820_RESERVED = 1, 2


def _u8(data: bytes, off: int) -> int:
    return data[off]


def _u16(data: bytes, off: int) -> int:
    return struct.unpack_from("<H", data, off)[0]


def _u32(data: bytes, off: int) -> int:
    return struct.unpack_from("<I", data, off)[0]


@attrs.define(frozen=True)
class BzImage:
    """A validated bzImage: its setup header and protected-mode part."""

    path: str
    data: bytes = attrs.field(repr=False)
    setup_sects: int
    protocol: int
    loadflags: int
    header_end: int
    pm_offset: int
    code32_start: int
    initrd_addr_max: int
    kernel_alignment: int
    relocatable: bool
    cmdline_size: int
    pref_address: int
    init_size: int
    version_string: str

    @property
    def pm_size(self) -> int:
        return len(self.data) - self.pm_offset

    @property
    def protocol_text(self) -> str:
        return f"{self.protocol >> 8}.{self.protocol & 0xFF:02d}"

    @classmethod
    def load(cls, path: str | Path) -> BzImage:
        shown = str(path)
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            raise BootError(f"{shown}: no such kernel file; build the guest with `pyv86 guest build` "
                            "or set [boot] kernel") from None
        except IsADirectoryError:
            raise BootError(f"{shown}: is a directory, not a kernel file") from None
        except OSError as exc:
            raise BootError(f"{shown}: cannot read kernel: {exc.strerror}") from None
        return cls.parse(data, shown)

    @classmethod
    def parse(cls, data: bytes, shown: str = "<kernel>") -> BzImage:
        if len(data) < 0x400:
            raise BootError(f"{shown}: not a bzImage ({len(data)} bytes is too short for a Linux boot header)")
        if _u16(data, HDR_BOOT_FLAG) != 0xAA55:
            raise BootError(f"{shown}: not a bzImage (no 0xAA55 boot signature at 0x1FE); "
                            "pass the kernel's bzImage/vmlinuz, not an ELF vmlinux")
        if data[HDR_MAGIC:HDR_MAGIC + 4] != b"HdrS":
            raise BootError(f"{shown}: not a bzImage (no \"HdrS\" setup header at 0x202); "
                            "kernels older than 1.3.73 are not supported")
        protocol = _u16(data, HDR_VERSION)
        text = f"{protocol >> 8}.{protocol & 0xFF:02d}"
        if protocol < MIN_PROTOCOL:
            raise BootError(f"{shown}: boot protocol {text} is too old; pyv86 needs 2.06 or newer "
                            "(Linux 2.6.22+)")
        loadflags = _u8(data, HDR_LOADFLAGS)
        if not loadflags & LOADED_HIGH:
            raise BootError(f"{shown}: a zImage (loads at 0x10000); pyv86 boots only bzImages")
        setup_sects = _u8(data, HDR_SETUP_SECTS) or 4
        pm_offset = (setup_sects + 1) * 512
        if pm_offset >= len(data):
            raise BootError(f"{shown}: truncated: setup_sects={setup_sects} says the kernel starts at "
                            f"{pm_offset:#x} but the file has {len(data)} bytes")
        header_end = 0x202 + _u8(data, HDR_JUMP + 1)
        version = ""
        kv = _u16(data, HDR_KERNEL_VERSION)
        if kv and kv + 0x200 < len(data):
            raw = data[kv + 0x200 : kv + 0x200 + 256]
            version = raw.split(b"\0", 1)[0].decode("ascii", "replace")
        return cls(
            path=shown, data=data, setup_sects=setup_sects, protocol=protocol, loadflags=loadflags,
            header_end=header_end, pm_offset=pm_offset, code32_start=_u32(data, HDR_CODE32_START),
            initrd_addr_max=_u32(data, HDR_INITRD_ADDR_MAX),
            kernel_alignment=_u32(data, HDR_KERNEL_ALIGNMENT) if protocol >= 0x0205 else 0x100000,
            relocatable=bool(_u8(data, HDR_RELOCATABLE)) if protocol >= 0x0205 else False,
            cmdline_size=_u32(data, HDR_CMDLINE_SIZE) if protocol >= 0x0206 else 255,
            pref_address=_u32(data, HDR_PREF_ADDRESS) if protocol >= 0x020A else KERNEL_ADDR,
            init_size=_u32(data, HDR_INIT_SIZE) if protocol >= 0x020A else 0,
            version_string=version,
        )


def e820_map(memory_size: int) -> list[tuple[int, int, int]]:
    """The BIOS-style memory map for a machine with ``memory_size`` bytes of RAM."""
    entries = [(0, LOW_RAM_END, E820_RAM),
               (LOW_RAM_END, 0xA0000 - LOW_RAM_END, E820_RESERVED),
               (0xF0000, 0x10000, E820_RESERVED)]
    if memory_size > 0x100000:
        entries.append((0x100000, memory_size - 0x100000, E820_RAM))
    return entries


ELF_HEADER = struct.Struct("<16sHHIIIIIHHHHHH")
ELF_PHDR = struct.Struct("<IIIIIIII")
PT_LOAD = 1
EM_386 = 3
ET_EXEC = 2


@attrs.define(frozen=True)
class UnpackedKernel:
    """The ``vmlinux`` inside a bzImage: where its pieces go and where it starts."""

    entry: int
    segments: tuple[tuple[int, bytes, int], ...] = attrs.field(repr=False)
    """(physical address, file bytes, memory size) of each PT_LOAD segment"""

    @property
    def start(self) -> int:
        return min(addr for addr, _, _ in self.segments)

    @property
    def end(self) -> int:
        return max(addr + memsz for addr, _, memsz in self.segments)


class NotUnpackable(Exception):
    """The payload is not what :func:`unpack_payload` knows how to load (reason in the text)."""


def run_address(image: BzImage) -> int:
    """Where the bzImage's own decompressor would put the kernel (no KASLR).

    It aligns its load address (0x100000) up to ``kernel_alignment`` when the kernel is
    relocatable, and never goes below the link address (``pref_address``).
    """
    run = image.pref_address
    if image.relocatable and image.kernel_alignment:
        align = image.kernel_alignment
        run = max(run, (KERNEL_ADDR + align - 1) // align * align)
    return run


def parse_vmlinux(elf: bytes, link_address: int) -> UnpackedKernel:
    """The PT_LOAD segments and entry of a 32-bit x86 ``vmlinux`` linked at ``link_address``."""
    if len(elf) < ELF_HEADER.size or elf[:4] != b"\x7fELF":
        raise NotUnpackable("the payload does not unpack to an ELF file")
    (ident, e_type, machine, _version, entry, phoff, _shoff, _flags, _ehsize, phentsize, phnum,
     _shentsize, _shnum, _shstrndx) = ELF_HEADER.unpack_from(elf)
    if ident[4] != 1 or ident[5] != 1 or machine != EM_386 or e_type != ET_EXEC:
        raise NotUnpackable(f"the unpacked ELF is not a 32-bit little-endian i386 executable "
                            f"(class {ident[4]}, data {ident[5]}, machine {machine}, type {e_type})")
    if phentsize < ELF_PHDR.size or phoff + phnum * phentsize > len(elf):
        raise NotUnpackable("the unpacked ELF's program headers lie outside the file")
    segments = []
    for i in range(phnum):
        p_type, offset, _vaddr, paddr, filesz, memsz, _flags, _align = ELF_PHDR.unpack_from(elf, phoff + i * phentsize)
        if p_type != PT_LOAD or memsz == 0:
            continue
        if filesz > memsz or offset + filesz > len(elf):
            raise NotUnpackable(f"PT_LOAD segment {i} (paddr {paddr:#x}) has inconsistent sizes "
                                f"(file {filesz:#x}, memory {memsz:#x}, offset {offset:#x})")
        segments.append((paddr, elf[offset:offset + filesz], memsz))
    if not segments:
        raise NotUnpackable("the unpacked ELF has no PT_LOAD segment")
    kernel = UnpackedKernel(entry, tuple(segments))
    if kernel.start != link_address:
        raise NotUnpackable(f"the kernel is linked at {kernel.start:#x} but the decompressor would run it "
                            f"at {link_address:#x} (it would need relocating)")
    if not any(a <= entry < a + len(d) for a, d, _ in segments):
        raise NotUnpackable(f"the ELF entry {entry:#x} is not inside a loaded segment")
    return kernel


def unpack_payload(image: BzImage) -> UnpackedKernel:
    """Decompress the bzImage's XZ payload into the kernel's load segments (may be slow: ~0.6 s)."""
    if image.protocol < 0x0208:
        raise NotUnpackable(f"boot protocol {image.protocol_text} has no payload fields (needs 2.08)")
    base = image.pm_offset + _u32(image.data, HDR_PAYLOAD_OFFSET)
    length = _u32(image.data, HDR_PAYLOAD_LENGTH)
    if not length or base + length > len(image.data):
        raise NotUnpackable(f"payload {base:#x}+{length:#x} lies outside the file")
    payload = memoryview(image.data)[base:base + length]
    if bytes(payload[:6]) != XZ_MAGIC:
        raise NotUnpackable(f"the payload is not XZ (starts {bytes(payload[:6]).hex()})")
    decoder = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    try:
        elf = decoder.decompress(payload)  # the build appends the 4-byte size after the stream
    except lzma.LZMAError as exc:
        raise NotUnpackable(f"the XZ payload does not decode: {exc}") from None
    if not decoder.eof:
        raise NotUnpackable("the XZ payload ends before its end-of-stream marker")
    return parse_vmlinux(elf, run_address(image))


_unpacked: dict[str, UnpackedKernel | str] = {}
_unpacked_lock = threading.Lock()


def host_kernel(image: BzImage) -> UnpackedKernel | None:
    """The unpacked kernel of ``image``, or None (logged at INFO) when it cannot be loaded so.

    Results (and reasons) are cached per process by the file's sha256.
    """
    key = hashlib.sha256(image.data).hexdigest()
    with _unpacked_lock:
        found = _unpacked.get(key)
        if found is None:
            try:
                found = unpack_payload(image)
            except NotUnpackable as exc:
                found = str(exc)
                log.info("%s: decompressing in the guest: %s", image.path, found)
            else:
                log.debug("%s: unpacked on the host: entry %#x, %#x..%#x", image.path, found.entry,
                          found.start, found.end)
            _unpacked[key] = found
    return found if isinstance(found, UnpackedKernel) else None


@attrs.define
class BootLayout:
    """Where the loader put things (for tests, logs and monitors)."""

    kernel: tuple[int, int]
    initrd: tuple[int, int] | None
    cmdline: str
    zero_page: int = ZERO_PAGE


class LinuxBoot:
    """A boot hook: ``hook(machine)`` loads the kernel, initrd and command line, sets the CPU."""

    def __init__(self, kernel: BzImage, initrd: bytes | None = None, cmdline: str | None = None,
                 initrd_path: str | None = None, decompress: str = "host") -> None:
        if decompress not in DECOMPRESS_MODES:
            raise BootError(f"{kernel.path}: decompress={decompress!r} is not \"host\" or \"guest\"")
        self.kernel = kernel
        self.unpacked = host_kernel(kernel) if decompress == "host" else None
        """the host-decompressed kernel, or None when the guest runs the decompressor"""
        self.initrd = initrd
        self.initrd_path = initrd_path or "<initrd>"
        self.cmdline = DEFAULT_CMDLINE if cmdline is None else cmdline
        if len(self.cmdline) > kernel.cmdline_size:
            raise BootError(f"{kernel.path}: command line is {len(self.cmdline)} characters; "
                            f"this kernel takes at most {kernel.cmdline_size}")
        self.layout: BootLayout | None = None

    @classmethod
    def from_files(cls, kernel: str, initrd: str | None = None, cmdline: str | None = None,
                   decompress: str = "host") -> LinuxBoot:
        image = BzImage.load(kernel)
        data = None
        if initrd:
            try:
                data = Path(initrd).read_bytes()
            except FileNotFoundError:
                raise BootError(f"{initrd}: no such initrd file; build the guest with `pyv86 guest build` "
                                "or fix [boot] initrd") from None
            except OSError as exc:
                raise BootError(f"{initrd}: cannot read initrd: {exc.strerror}") from None
        log.info("%s: Linux %s, boot protocol %s, %d KiB", kernel, image.version_string or "?",
                 image.protocol_text, len(image.data) >> 10)
        return cls(image, data, cmdline, initrd_path=initrd, decompress=decompress)

    def __call__(self, machine: Machine) -> None:
        self.load(machine)

    # memory ---------------------------------------------------------------------------
    def place_initrd(self, memory_size: int) -> int | None:
        """Physical address for the initrd: page aligned at the top of usable RAM."""
        if not self.initrd:
            return None
        k = self.kernel
        top = min(memory_size, k.initrd_addr_max + 1)
        start = (top - len(self.initrd)) & ~0xFFF
        # keep clear of the kernel image and of the decompressor's run area
        run = max(k.pref_address, KERNEL_ADDR)
        if k.relocatable and k.kernel_alignment:
            run = max(run, (KERNEL_ADDR + k.kernel_alignment - 1) // k.kernel_alignment * k.kernel_alignment)
        low_limit = max(KERNEL_ADDR + k.pm_size, run + k.init_size)
        if start < low_limit:
            need = (low_limit + len(self.initrd) + (1 << 20) - 1) >> 20
            raise BootError(f"{self.initrd_path}: initrd of {len(self.initrd) >> 10} KiB does not fit "
                            f"above the kernel in {memory_size >> 20} MiB of RAM; "
                            f"give the machine at least {need + 1} MiB ([machine] memory)")
        return start

    def load(self, machine: Machine) -> BootLayout:
        k = self.kernel
        mem = machine.memory
        if KERNEL_ADDR + k.pm_size > mem.size:
            raise BootError(f"{k.path}: the kernel ({k.pm_size >> 10} KiB) does not fit in "
                            f"{mem.size >> 20} MiB of RAM")
        initrd_at = self.place_initrd(mem.size)

        unpacked = self.unpacked
        if unpacked is not None:
            if unpacked.end > mem.size:
                raise BootError(f"{k.path}: the unpacked kernel ends at {unpacked.end >> 20} MiB; give the "
                                f"machine more RAM than {mem.size >> 20} MiB ([machine] memory)")
            for addr, data, memsz in unpacked.segments:
                mem.write(addr, data)
                if memsz > len(data):
                    mem.write(addr + len(data), bytes(memsz - len(data)))
        else:
            mem.write(KERNEL_ADDR, memoryview(k.data)[k.pm_offset:])
        if initrd_at is not None and self.initrd is not None:
            mem.write(initrd_at, self.initrd)
        cmd = self.cmdline.encode("ascii", "replace") + b"\0"
        mem.write(CMDLINE_ADDR, cmd)
        mem.write(ZERO_PAGE, self.zero_page(mem.size, initrd_at))
        mem.write(GDT_ADDR, b"".join(struct.pack("<Q", d) for d in GDT_ENTRIES))
        if machine.cpu is None:
            raise BootError(f"{k.path}: booting a kernel needs a CPU ([machine] cpu = true)")
        self.set_cpu_state(machine.cpu)
        kernel_range = ((unpacked.start, unpacked.end - unpacked.start) if unpacked is not None
                        else (KERNEL_ADDR, k.pm_size))
        self.layout = BootLayout(kernel_range,
                                 None if initrd_at is None else (initrd_at, len(self.initrd or b"")),
                                 self.cmdline)
        log.info("linux: %s kernel at %#x (%d KiB), initrd %s, cmdline %r",
                 "unpacked" if unpacked is not None else "compressed", kernel_range[0], kernel_range[1] >> 10,
                 f"at {initrd_at:#x} ({len(self.initrd or b'') >> 10} KiB)" if initrd_at is not None else "none",
                 self.cmdline)
        return self.layout

    def zero_page(self, memory_size: int, initrd_at: int | None) -> bytes:
        """The 4 KiB struct boot_params for this kernel, initrd and RAM size."""
        k = self.kernel
        zp = bytearray(4096)
        zp[BP_HDR:k.header_end] = k.data[BP_HDR:k.header_end]
        zp[BP_SENTINEL] = 0
        zp[HDR_TYPE_OF_LOADER] = 0xFF
        # KASLR_FLAG is the decompressor's report to the kernel; it clears it unless it randomized
        zp[HDR_LOADFLAGS] = (k.loadflags | CAN_USE_HEAP) & ~KASLR_FLAG & 0xFF
        struct.pack_into("<H", zp, HDR_HEAP_END_PTR, 0xDE00)
        struct.pack_into("<H", zp, HDR_VID_MODE, 0xFFFF)
        struct.pack_into("<I", zp, HDR_CMD_LINE_PTR, CMDLINE_ADDR)
        if initrd_at is not None and self.initrd:
            struct.pack_into("<II", zp, HDR_RAMDISK_IMAGE, initrd_at, len(self.initrd))
        else:
            struct.pack_into("<II", zp, HDR_RAMDISK_IMAGE, 0, 0)
        if k.protocol >= 0x0207:
            struct.pack_into("<I", zp, HDR_HARDWARE_SUBARCH, 0)
        if k.protocol >= 0x0209:
            struct.pack_into("<Q", zp, HDR_SETUP_DATA, 0)
        entries = e820_map(memory_size)
        zp[BP_E820_ENTRIES] = len(entries)
        for i, (addr, size, kind) in enumerate(entries[:E820_MAX]):
            struct.pack_into("<QQI", zp, BP_E820_TABLE + 20 * i, addr, size, kind)
        return bytes(zp)

    # CPU -----------------------------------------------------------------------------
    def set_cpu_state(self, cpu: Any) -> None:
        """Flat 32-bit protected mode at code32_start (or the unpacked kernel's entry),
        paging and interrupts off.

        Uses the CPU API: ``set_reg(name, value)`` for general, control registers, EIP
        and EFLAGS, ``set_segment(name, selector, base, limit, flags)`` for the hidden
        descriptor caches, ``set_gdtr``/``set_idtr``.
        """
        cpu.set_reg("cr0", 0x00000011)  # PE | ET; before CS so the CPL is derived in PM
        for cr in ("cr2", "cr3", "cr4"):
            cpu.set_reg(cr, 0)
        cpu.set_gdtr(GDT_ADDR, len(GDT_ENTRIES) * 8 - 1)
        cpu.set_idtr(0, 0)
        cpu.set_segment("cs", BOOT_CS, 0, 0xFFFFFFFF, CODE_FLAGS)
        for seg in ("ds", "es", "ss", "fs", "gs"):
            cpu.set_segment(seg, BOOT_DS, 0, 0xFFFFFFFF, DATA_FLAGS)
        cpu.set_reg("eflags", 0x00000002)
        for reg, value in (("eax", 0), ("ecx", 0), ("edx", 0), ("ebx", 0), ("esp", 0),
                           ("ebp", 0), ("esi", ZERO_PAGE), ("edi", 0)):
            cpu.set_reg(reg, value)
        if self.unpacked is not None:
            cpu.set_reg("eip", self.unpacked.entry)  # the kernel proper's startup_32
        else:
            cpu.set_reg("eip", self.kernel.code32_start or KERNEL_ADDR)
