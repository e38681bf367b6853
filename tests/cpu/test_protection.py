"""Protected-mode checks: TSS I/O permission bitmap, null selectors, segment limits and types,
call gates.  Small guest programs (hand-assembled; the assembly is in the comments) run in
a flat protected-mode machine with extra GDT entries; the tests assert the architectural
results (registers, stacks, port traffic, exception vector/error code/EIP)."""
from __future__ import annotations

import struct

import pytest

from helpers import GDT, Host, desc, flat_cpu, load

pytestmark = pytest.mark.timeout(900)

TSS = 0x7000
CODE = 0x100000
IDT = 0x8000


def put_desc(mem, index, value):
    mem.write(GDT + 8 * index, struct.pack("<Q", value))


def gate_desc(sel, off, typ, dpl=0, params=0, present=True):
    """A call gate (typ 0xC 32-bit, 0x4 16-bit) or task gate (0x5)."""
    access = (0x80 if present else 0) | (dpl << 5) | typ
    return ((off & 0xFFFF) | (sel << 16) | ((params & 0x1F) << 32) | (access << 40)
            | ((off >> 16) << 48))


def big_gdt(cpu):
    cpu.set_gdtr(GDT, 0x7F)     # 16 entries (helpers.flat_cpu fills 0..5)


def stop_on_exceptions(cpu):
    cpu.state["exc_exit"] = 1


def exc(cpu):
    """(vector, error code, eip) of the exception that stopped run(), or None."""
    if cpu.exit_reason != 5:
        return None
    return int(cpu.state["exc_vector"]), int(cpu.state["exc_code"]), cpu.get_reg("eip")


def prog(*parts: str) -> bytes:
    return bytes.fromhex("".join(parts))


# ------------------------------------------------------------------ I/O permission bitmap


def io_machine(iomap_allowed=(), iopl=0, iomap_base=0x68, ports=0x400):
    """Ring 3 with a 32-bit TSS whose bitmap allows exactly ``iomap_allowed``."""
    host = Host()
    cpu, mem, _ = flat_cpu(host=host)
    big_gdt(cpu)
    bitmap = bytearray(b"\xff" * (ports // 8)) + b"\xff"
    for p in iomap_allowed:
        bitmap[p >> 3] &= ~(1 << (p & 7)) & 0xFF
    mem.write(TSS + 0x66, struct.pack("<H", iomap_base))
    mem.write(TSS + iomap_base, bytes(bitmap))
    limit = iomap_base + len(bitmap) - 1
    put_desc(mem, 6, desc(TSS, limit, 0x89, 0))
    cpu.set_segment("tr", 0x30, TSS, limit, 0x8B)
    cpu.set_segment("cs", 0x23, 0, 0xFFFFFFFF, 0xC0FB)
    for s in ("ds", "es", "ss", "fs", "gs"):
        cpu.set_segment(s, 0x2B, 0, 0xFFFFFFFF, 0xC0F3)
    cpu.set_reg("eflags", 0x202 | (iopl << 12))
    assert cpu.get_reg("cpl") == 3
    stop_on_exceptions(cpu)
    return cpu, mem, host


def test_io_bitmap_allows_cleared_ports_and_faults_on_a_set_bit():
    cpu, mem, host = io_machine(iomap_allowed=[0x80, 0x3F8, 0x60, 0x61, 0x62, 0x63])
    code = prog("b055",          # mov al, 0x55
                "e680",          # out 0x80, al
                "66baf803",      # mov dx, 0x3f8
                "ee",            # out dx, al
                "e560",          # in eax, 0x60      (0x60-0x63 all allowed)
                "e681")          # out 0x81, al      -> #GP(0)
    load(cpu, mem, code)
    cpu.run(100)
    assert exc(cpu) == (13, 0, CODE + len(code) - 2)
    assert host.log == [("out", 0x80, 1, 0x55), ("out", 0x3F8, 1, 0x55), ("in", 0x60, 4)]


def test_io_bitmap_multi_byte_access_needs_every_port_bit_clear():
    cpu, mem, host = io_machine(iomap_allowed=[0x62, 0x63, 0x64])
    load(cpu, mem, prog("e462",      # in al, 0x62
                        "66e562",    # in ax, 0x62
                        "e562"))     # in eax, 0x62  (0x65 is denied) -> #GP(0)
    cpu.run(100)
    assert exc(cpu) == (13, 0, CODE + 5)
    assert host.log == [("in", 0x62, 1), ("in", 0x62, 2)]


def test_io_bitmap_check_spans_a_byte_boundary_and_covers_string_io():
    # ports 0x3FF and 0x400: the word read covers bitmap bytes 0x7F and 0x80
    cpu, mem, host = io_machine(iomap_allowed=[0x3FF, 0x400], ports=0x408)
    mem.write(0x3000, b"ab")
    load(cpu, mem, prog("66baff03",   # mov dx, 0x3ff
                        "66ed",       # in ax, dx        (0x3ff, 0x400)
                        "be00300000",  # mov esi, 0x3000
                        "6e",         # outsb             (0x3ff)
                        "66ba0104",   # mov dx, 0x401
                        "6e"))        # outsb -> #GP(0)
    cpu.run(100)
    assert exc(cpu) == (13, 0, CODE + 16)
    assert host.log == [("in", 0x3FF, 2), ("out", 0x3FF, 1, ord("a"))]
    assert cpu.get_reg("esi") == 0x3001


def test_io_bitmap_beyond_the_tss_limit_denies():
    # the I/O map base points past the TSS limit: no port is allowed
    cpu, mem, host = io_machine(iomap_base=0x68)
    cpu.set_segment("tr", 0x30, TSS, 0x67, 0x8B)
    load(cpu, mem, prog("e680"))
    cpu.run(10)
    assert exc(cpu) == (13, 0, CODE)
    assert host.log == []


def test_iopl_3_skips_the_bitmap():
    cpu, mem, host = io_machine(iopl=3)
    load(cpu, mem, prog("e681", "f4"))   # out 0x81, al; (hlt: #GP in ring 3)
    cpu.run(10)
    assert host.log == [("out", 0x81, 1, 0)]
    assert exc(cpu) == (13, 0, CODE + 2)


# ------------------------------------------------------------------ null selectors


def test_null_data_segment_faults_on_use_not_on_load():
    cpu, mem, _ = flat_cpu()
    stop_on_exceptions(cpu)
    mem.write_u32(0x1000, 0xCAFEBABE)
    load(cpu, mem, prog("8b1d00100000",   # mov ebx, [0x1000]   (ds flat: ok)
                        "31c0",           # xor eax, eax
                        "8ed8",           # mov ds, ax          (null load: allowed)
                        "8b0d00100000"))  # mov ecx, [0x1000]   -> #GP(0)
    cpu.run(100)
    assert cpu.get_reg("ebx") == 0xCAFEBABE
    assert exc(cpu) == (13, 0, CODE + 10)
    assert cpu.get_reg("ds") == 0 and cpu.get_reg("ecx") == 0


@pytest.mark.parametrize("code,at", [
    (prog("31c0", "8ec0", "bf00100000", "aa"), 9),                 # es=0; mov edi, 0x1000; stosb
    (prog("31c0", "8ee0", "64a110000000"), 4),                     # fs=0; mov eax, fs:[0x10]
    (prog("31c0", "8ee8", "65a310000000"), 4),                     # gs=0; mov gs:[0x10], eax
    (prog("31c0", "8ed8", "50", "8f0510000000"), 5),               # ds=0; push eax; pop [0x10]
])
def test_null_es_fs_gs_and_ds_writes_fault(code, at):
    cpu, mem, _ = flat_cpu()
    stop_on_exceptions(cpu)
    load(cpu, mem, code)
    cpu.run(100)
    assert exc(cpu) == (13, 0, CODE + at)
    assert mem.read_u32(0x1000) == 0 and mem.read_u32(0x10) == 0


def test_null_ss_load_faults_and_reloading_a_segment_makes_it_usable_again():
    cpu, mem, _ = flat_cpu()
    stop_on_exceptions(cpu)
    mem.write_u32(0x1000, 7)
    load(cpu, mem, prog("31c0",            # xor eax, eax
                        "8ed8",            # mov ds, ax
                        "66b81800",        # mov ax, 0x18
                        "8ed8",            # mov ds, ax
                        "8b1d00100000",    # mov ebx, [0x1000]
                        "31c0",            # xor eax, eax
                        "8ed0"))           # mov ss, ax -> #GP(0)
    cpu.run(100)
    assert cpu.get_reg("ebx") == 7
    assert exc(cpu) == (13, 0, CODE + 18)
    assert cpu.get_reg("ss") == 0x18


def test_ring3_with_ds_nulled_by_iret_faults_on_a_data_access():
    cpu, mem, _ = flat_cpu()
    stop_on_exceptions(cpu)
    # ring 0: push ss, esp, eflags, cs, eip; iret to ring 3 (ds stays the DPL0 selector 0x18)
    ring0 = prog("6a2b", "6800000700", "6a02", "6a23", "6800201000", "cf")
    mem.write(0x102000, prog("8b0500100000"))    # mov eax, [0x1000]
    load(cpu, mem, ring0)
    cpu.run(100)
    assert cpu.get_reg("cpl") == 3 and cpu.get_reg("ds") == 0
    assert exc(cpu) == (13, 0, 0x102000)


# ------------------------------------------------------------------ limits and types


def seg_machine(access, limit, base=0x200000, flags=0x4):
    """Flat machine with GDT entry 6 (selector 0x30) = a data segment; code loads DS."""
    cpu, mem, _ = flat_cpu()
    big_gdt(cpu)
    stop_on_exceptions(cpu)
    put_desc(mem, 6, desc(base, limit, access, flags))
    return cpu, mem


LOAD_DS = "66b83000" "8ed8"     # mov ax, 0x30; mov ds, ax


def test_expand_up_limit_is_checked_on_the_last_byte():
    cpu, mem = seg_machine(0x93, 0xFFF)
    mem.write_u32(0x200FFC, 0x11223344)
    load(cpu, mem, prog(LOAD_DS,
                        "a1fc0f0000",    # mov eax, [0xffc]   (last dword: ok)
                        "8a1dff0f0000",  # mov bl, [0xfff]    (last byte: ok)
                        "a1fd0f0000"))   # mov eax, [0xffd]   -> #GP(0)
    cpu.run(100)
    assert cpu.get_reg("eax") == 0x11223344 and cpu.get_reg("ebx") & 0xFF == 0x11
    assert exc(cpu) == (13, 0, CODE + 17)


def test_page_granular_limit_and_flat_segment_with_base_use_the_fast_path():
    cpu, mem = seg_machine(0x93, 0xFFFFF, base=0x1000, flags=0xC)   # 4 GiB, base 0x1000
    mem.write_u32(0x3000, 0xAABBCCDD)
    load(cpu, mem, prog(LOAD_DS, "a100200000", "f4"))    # mov eax, [0x2000]; hlt
    cpu.run(100)
    assert cpu.halted and cpu.get_reg("eax") == 0xAABBCCDD
    assert int(cpu.state["seg_chk"][3]) == 0 and int(cpu.state["seg_chk"][8 + 3]) == 0


def test_segment_loaded_by_the_host_is_checked_like_one_the_guest_loaded():
    """``CPU.set_segment`` (boot loaders, state tools) computes the check flags too: a
    host-set limit and a read-only type are enforced; a host-set flat segment stays fast."""
    cpu, mem = seg_machine(0x93, 0xFFF)
    cpu.set_segment("ds", 0x30, 0x200000, 0xFFF, 0x4093)
    assert int(cpu.state["seg_chk"][3]) == 2
    load(cpu, mem, prog("a1fc0f0000",       # mov eax, [0xffc]   (last dword: ok)
                        "a1fd0f0000"))      # mov eax, [0xffd]   -> #GP(0)
    cpu.run(100)
    assert exc(cpu) == (13, 0, CODE + 5)
    cpu, mem = seg_machine(0x93, 0xFFF)
    cpu.set_segment("es", 0x30, 0, 0xFFFFFFFF, 0xC091)          # flat, read-only
    assert int(cpu.state["seg_chk"][0]) == 0 and int(cpu.state["seg_chk"][8]) == 2
    load(cpu, mem, prog("26a310000000"))    # mov es:[0x10], eax -> #GP(0)
    cpu.run(100)
    assert exc(cpu) == (13, 0, CODE)
    cpu.set_segment("es", 0x10, 0, 0xFFFFFFFF, 0xC093)          # flat, writable: fast path
    assert int(cpu.state["seg_chk"][0]) == 0 and int(cpu.state["seg_chk"][8]) == 0


def test_read_only_data_segment_faults_on_write():
    cpu, mem = seg_machine(0x91, 0xFFFFF, base=0, flags=0xC)
    mem.write_u32(0x10, 5)
    load(cpu, mem, prog(LOAD_DS,
                        "a110000000",    # mov eax, [0x10]
                        "a314000000"))   # mov [0x14], eax -> #GP(0)
    cpu.run(100)
    assert cpu.get_reg("eax") == 5
    assert exc(cpu) == (13, 0, CODE + 11)
    assert mem.read_u32(0x14) == 0


def test_expand_down_segment():
    cpu, mem = seg_machine(0x97, 0xFFF, base=0x200000)   # valid offsets 0x1000..0xFFFFFFFF
    mem.write_u32(0x201000, 0x12345678)
    load(cpu, mem, prog(LOAD_DS,
                        "a100100000",    # mov eax, [0x1000]
                        "a000080000"))   # mov al, [0x800] -> #GP(0)
    cpu.run(100)
    assert cpu.get_reg("eax") == 0x12345678
    assert exc(cpu) == (13, 0, CODE + 11)


def test_stack_segment_limit_raises_ss():
    # (explicit SS operands are checked; implicit push/pop are not, see docs/cpu.md)
    cpu, mem = seg_machine(0x93, 0x8FFF, base=0)
    load(cpu, mem, prog("66b83000", "8ed0",    # mov ax, 0x30; mov ss, ax
                        "bcfc8f0000",           # mov esp, 0x8ffc
                        "890424",               # mov [esp], eax     (0x8ffc..0x8fff: ok)
                        "bcfe8f0000",           # mov esp, 0x8ffe
                        "890424"))              # mov [esp], eax -> #SS(0) (0x8ffe..0x9001)
    cpu.set_reg("eax", 0x12345678)
    cpu.run(100)
    assert exc(cpu) == (12, 0, CODE + 19)
    assert mem.read_u32(0x8FFC) == 0x12340030 and mem.read_u32(0x8FFE) == 0x1234   # ax = 0x30


def test_write_through_cs_override_faults():
    cpu, mem, _ = flat_cpu()
    stop_on_exceptions(cpu)
    # (CPU.set_segment does not derive the checked-path flags: load CS with a far jmp)
    load(cpu, mem, prog("ea071010001000",    # jmp 0x10:0x101007 (the next instruction)
                        "2ea100100000",      # mov eax, cs:[0x1000]  (readable code: ok)
                        "2ea300100000"), at=0x101000)   # mov cs:[0x1000], eax -> #GP(0)
    cpu.run(100)
    assert exc(cpu) == (13, 0, 0x101000 + 13)


# ------------------------------------------------------------------ call gates


def test_call_gate_same_privilege_and_jmp_through_gate():
    cpu, mem, _ = flat_cpu()
    big_gdt(cpu)
    put_desc(mem, 6, gate_desc(0x10, 0x101000, 0xC))        # 0x30: 32-bit call gate
    mem.write(0x101000, prog("b834120000", "cb"))          # mov eax, 0x1234; retf
    mem.write(0x102000, prog("b921430000", "f4"))          # mov ecx, 0x4321; hlt
    put_desc(mem, 7, gate_desc(0x10, 0x102000, 0xC))        # 0x38
    load(cpu, mem, prog("9a000000003000",                   # call 0x30:0
                        "ea000000003800"))                  # jmp 0x38:0
    cpu.run(100)
    assert cpu.halted and cpu.get_reg("eip") == 0x102006
    assert cpu.get_reg("eax") == 0x1234 and cpu.get_reg("ecx") == 0x4321
    assert cpu.get_reg("esp") == 0x90000
    assert mem.read_u32(0x90000 - 8) == CODE + 7 and mem.read_u32(0x90000 - 4) == 0x10


def test_16bit_call_gate_pushes_words():
    cpu, mem, _ = flat_cpu()
    big_gdt(cpu)
    put_desc(mem, 6, gate_desc(0x10, 0x5000, 0x4))          # 16-bit call gate to 0x10:0x5000
    mem.write(0x5000, prog("89e3", "66cb"))                  # mov ebx, esp; o16 retf
    load(cpu, mem, prog("9a000000003000", "f4"), at=0x4000)   # a 16-bit gate keeps only IP
    cpu.run(100)
    assert cpu.halted and cpu.get_reg("eip") == 0x4008
    assert cpu.get_reg("ebx") == 0x90000 - 4
    assert mem.read(0x90000 - 4, 4) == struct.pack("<HH", 0x4007, 0x10)


def test_call_gate_from_ring3_switches_stack_copies_parameters_and_retf_returns():
    cpu, mem, _ = flat_cpu()
    big_gdt(cpu)
    put_desc(mem, 6, desc(TSS, 0x67, 0x89, 0))
    mem.write(TSS + 4, struct.pack("<II", 0x80000, 0x18))   # esp0, ss0
    cpu.set_segment("tr", 0x30, TSS, 0x67, 0x8B)
    put_desc(mem, 7, gate_desc(0x10, 0x101000, 0xC, dpl=3, params=2))   # 0x38
    mem.write(0x101000, prog("8b442408",        # mov eax, [esp+8]
                             "8b5c240c",        # mov ebx, [esp+12]
                             "8cd2",            # mov edx, ss
                             "89e6",            # mov esi, esp
                             "ca0800"))         # retf 8
    cpu.set_segment("cs", 0x23, 0, 0xFFFFFFFF, 0xC0FB)
    for s in ("ds", "es", "ss"):
        cpu.set_segment(s, 0x2B, 0, 0xFFFFFFFF, 0xC0F3)
    cpu.set_reg("esp", 0x70000)
    load(cpu, mem, prog("6811111111",           # push 0x11111111
                        "6822222222",           # push 0x22222222
                        "9a000000003b00",       # call 0x3b:0
                        "b977000000",           # mov ecx, 0x77
                        "ebfe"))                # jmp $
    cpu.run(100)
    assert cpu.get_reg("ecx") == 0x77 and cpu.get_reg("cpl") == 3
    assert cpu.get_reg("eax") == 0x22222222 and cpu.get_reg("ebx") == 0x11111111
    assert cpu.get_reg("edx") == 0x18
    assert cpu.get_reg("esi") == 0x80000 - 24
    # frame on the ring-0 stack: eip, cs, param0, param1, esp, ss
    assert struct.unpack("<6I", mem.read(0x80000 - 24, 24)) == (
        CODE + 17, 0x23, 0x22222222, 0x11111111, 0x70000 - 8, 0x2B)
    assert cpu.get_reg("esp") == 0x70000 and cpu.get_reg("ss") == 0x2B and cpu.get_reg("cs") == 0x23


@pytest.mark.parametrize("gate,code", [
    (gate_desc(0x10, 0x101000, 0xC, dpl=0), (13, 0x38)),          # gate DPL < CPL 3
    (gate_desc(0x10, 0x101000, 0xC, dpl=3, present=False), (11, 0x38)),
    (gate_desc(0x00, 0x101000, 0xC, dpl=3), (13, 0)),             # null target selector
    (gate_desc(0x2B, 0x101000, 0xC, dpl=3), (13, 0x28)),          # target is a data segment
])
def test_call_gate_faults(gate, code):
    cpu, mem, _ = flat_cpu()
    big_gdt(cpu)
    stop_on_exceptions(cpu)
    put_desc(mem, 7, gate)
    cpu.set_segment("cs", 0x23, 0, 0xFFFFFFFF, 0xC0FB)
    cpu.set_segment("ss", 0x2B, 0, 0xFFFFFFFF, 0xC0F3)
    load(cpu, mem, prog("9a000000003b00"))
    cpu.run(10)
    assert exc(cpu) == (*code, CODE)


def test_inner_call_gate_takes_the_stack_from_a_16bit_tss():
    cpu, mem, _ = flat_cpu()
    big_gdt(cpu)
    mem.write(TSS + 2, struct.pack("<HH", 0x8000, 0x18))     # sp0, ss0 of a 286 TSS
    cpu.set_segment("tr", 0x30, TSS, 0x2B, 0x83)
    put_desc(mem, 7, gate_desc(0x10, 0x101000, 0xC, dpl=3))
    mem.write(0x101000, prog("89e6", "f4"))                  # mov esi, esp; hlt
    cpu.set_segment("cs", 0x23, 0, 0xFFFFFFFF, 0xC0FB)
    cpu.set_segment("ss", 0x2B, 0, 0xFFFFFFFF, 0xC0F3)
    load(cpu, mem, prog("9a000000003b00"))
    cpu.run(10)
    assert cpu.halted and cpu.get_reg("cpl") == 0
    assert cpu.get_reg("esi") == 0x8000 - 16 and cpu.get_reg("ss") == 0x18
    assert struct.unpack("<4I", mem.read(0x8000 - 16, 16)) == (CODE + 7, 0x23, 0x90000, 0x2B)


def test_rep_insb_into_a_limited_es_faults_at_the_limit_element():
    host = Host()
    host.port_values[0x300] = 0x5A
    cpu, mem, _ = flat_cpu(host=host)
    big_gdt(cpu)
    stop_on_exceptions(cpu)
    put_desc(mem, 6, desc(0x200000, 0x7, 0x93, 0x4))           # 8-byte data segment
    load(cpu, mem, prog("66b83000", "8ec0",                     # mov ax, 0x30; mov es, ax
                        "31ff",                                 # xor edi, edi
                        "b910000000",                           # mov ecx, 16
                        "66ba0003",                             # mov dx, 0x300
                        "f36c"))                                # rep insb -> #GP(0) at edi = 8
    cpu.run(100)
    assert exc(cpu) == (13, 0, CODE + 17)
    assert cpu.get_reg("edi") == 8 and cpu.get_reg("ecx") == 8
    assert mem.read(0x200000, 9) == b"\x5a" * 8 + b"\x00"
    assert host.log == [("in", 0x300, 1)] * 8       # element by element, none past the limit
