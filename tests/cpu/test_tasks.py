"""Hardware task switches: far call/jmp to a TSS or through a task gate, IDT task gates
(interrupts and the #DF task Linux uses), iret with NT back to the previous task, busy bits,
the back link, CR0.TS, and faults raised while loading the new task's segments."""
from __future__ import annotations

import struct

import pytest

from helpers import GDT, desc, flat_cpu, load

pytestmark = pytest.mark.timeout(900)

IDT = 0x8000
TSS_A, TSS_B = 0x7000, 0x7100
CODE, CODE_B = 0x100000, 0x103000


def put_desc(mem, index, value):
    mem.write(GDT + 8 * index, struct.pack("<Q", value))


def task_gate(tss_sel, dpl=0):
    return (tss_sel << 16) | ((0x85 | (dpl << 5)) << 40)


def tss_image(eip, esp, eax, cs=0x10, ds=0x18, ss=0x18, eflags=2, ldt=0):
    t = bytearray(0x68)
    struct.pack_into("<II", t, 0x20, eip, eflags)
    struct.pack_into("<8I", t, 0x28, eax, 0, 0, 0, esp, 0, 0, 0)
    struct.pack_into("<6I", t, 0x48, ds, cs, ss, ds, ds, ds)
    struct.pack_into("<I", t, 0x60, ldt)
    return bytes(t)


def two_tasks(b_code: bytes, **b_kw):
    """Task A (current, TR=0x30) and task B (TSS 0x38, available) whose code is ``b_code``;
    GDT 0x40 is a task gate to B; the IDT is at 0x8000 (empty)."""
    cpu, mem, _ = flat_cpu()
    cpu.set_gdtr(GDT, 0x7F)
    put_desc(mem, 6, desc(TSS_A, 0x67, 0x8B, 0))      # busy: A is running
    put_desc(mem, 7, desc(TSS_B, 0x67, 0x89, 0))
    put_desc(mem, 8, task_gate(0x38))
    cpu.set_segment("tr", 0x30, TSS_A, 0x67, 0x8B)
    mem.write(TSS_B, tss_image(CODE_B, 0x60000, 0xB0B0, **b_kw))
    mem.write(CODE_B, b_code)
    cpu.set_idtr(IDT, 0x7FF)
    return cpu, mem


def type_of(mem, index):
    return mem.read(GDT + 8 * index + 5, 1)[0] & 0x1F


# task B: record eax, eflags, TR and esp, then return to the previous task
B_REPORT_IRET = bytes.fromhex("a300500000"          # mov [0x5000], eax
                              "9c" "8f0504500000"    # pushfd; pop dword [0x5004]
                              "0f000d08500000"       # str word [0x5008]
                              "89250c500000"         # mov [0x500c], esp
                              "cf")                  # iretd


@pytest.mark.parametrize("call", ["9a000000003800",     # call 0x38:0   (the TSS itself)
                                  "9a000000004000",     # call 0x40:0   (task gate)
                                  "cd40"])              # int 0x40      (IDT task gate)
def test_nested_task_and_iret_back(call):
    cpu, mem = two_tasks(B_REPORT_IRET)
    mem.write(IDT + 8 * 0x40, struct.pack("<Q", task_gate(0x38)))
    code = bytes.fromhex("b811110000" + call + "f4")    # mov eax, 0x1111; <call>; hlt
    load(cpu, mem, code)
    cpu.run(100)
    assert cpu.halted and cpu.get_reg("eip") == CODE + len(code)
    assert mem.read_u32(0x5000) == 0xB0B0                    # B's registers came from its TSS
    assert mem.read_u32(0x5004) & 0x4000                     # NT set in the nested task
    assert mem.read(0x5008, 2) == b"\x38\x00"
    assert mem.read_u32(0x500C) == 0x60000
    assert mem.read(TSS_B, 2) == b"\x30\x00"                 # back link to A
    assert mem.read_u32(TSS_B + 0x20) == CODE_B + len(B_REPORT_IRET)   # B saved at its iret
    assert cpu.get_reg("eax") == 0x1111 and cpu.get_reg("tr") == 0x30  # A restored
    assert cpu.get_reg("eflags") & 0x4000 == 0
    assert type_of(mem, 6) == 0xB and type_of(mem, 7) == 0x9  # B no longer busy after iret
    assert cpu.get_reg("cr0") & 8                              # CR0.TS


def test_jmp_through_task_gate_saves_the_old_task_and_moves_the_busy_bit():
    cpu, mem = two_tasks(bytes.fromhex("a300500000" "f4"))   # mov [0x5000], eax; hlt
    load(cpu, mem, bytes.fromhex("b811110000" "ea000000004000"))   # mov eax, 0x1111; jmp 0x40:0
    cpu.set_reg("ebx", 0x2222)
    cpu.run(100)
    assert cpu.halted and cpu.get_reg("eip") == CODE_B + 6
    assert mem.read_u32(0x5000) == 0xB0B0 and cpu.get_reg("tr") == 0x38
    assert cpu.get_reg("eflags") & 0x4000 == 0                 # a jmp does not nest
    assert mem.read(TSS_B, 2) == b"\x00\x00"
    assert type_of(mem, 6) == 0x9 and type_of(mem, 7) == 0xB
    # task A's dynamic state in its TSS
    assert mem.read_u32(TSS_A + 0x20) == CODE + 12             # eip after the jmp
    assert struct.unpack("<4I", mem.read(TSS_A + 0x28, 16)) == (0x1111, 0, 0x673, 0x2222)   # edx: reset value
    assert mem.read_u32(TSS_A + 0x38) == 0x90000               # esp
    assert struct.unpack("<6I", mem.read(TSS_A + 0x48, 24)) == (0x18, 0x10, 0x18, 0x18, 0x18, 0x18)


def test_double_fault_through_an_idt_task_gate_like_linux():
    # #GP whose IDT gate is not present -> #NP while delivering -> #DF -> task gate to B
    b_code = bytes.fromhex("58"                  # pop eax (the #DF error code)
                           "a300500000"          # mov [0x5000], eax
                           "89250c500000"        # mov [0x500c], esp
                           "0f000d08500000"      # str word [0x5008]
                           "f4")
    cpu, mem = two_tasks(b_code)
    mem.write(IDT + 8 * 8, struct.pack("<Q", task_gate(0x38)))
    mem.write(IDT + 8 * 13, struct.pack("<Q", 0x00000E00_00100000))   # not present
    mem.write_u32(0x5000, 0xFFFFFFFF)
    load(cpu, mem, bytes.fromhex("66b80010" "8ed8"))   # mov ax, 0x1000; mov ds, ax -> #GP
    cpu.run(100)
    assert cpu.halted and cpu.get_reg("tr") == 0x38
    assert mem.read_u32(0x5000) == 0 and mem.read_u32(0x500C) == 0x60000
    assert mem.read(0x5008, 2) == b"\x38\x00"
    assert mem.read_u32(TSS_A + 0x20) == CODE + 4              # faulting instruction
    assert mem.read(TSS_B, 2) == b"\x30\x00"
    assert cpu.get_reg("eflags") & 0x4000


def test_switch_to_a_busy_task_faults_in_the_old_task():
    cpu, mem = two_tasks(b"\xf4")
    cpu.state["exc_exit"] = 1
    load(cpu, mem, bytes.fromhex("ea000000003000"))     # jmp 0x30:0 (A itself: busy)
    cpu.run(10)
    assert cpu.exit_reason == 5
    assert (int(cpu.state["exc_vector"]), int(cpu.state["exc_code"])) == (13, 0x30)
    assert cpu.get_reg("eip") == CODE and cpu.get_reg("tr") == 0x30


def test_bad_segment_in_the_new_task_faults_in_the_new_task():
    cpu, mem = two_tasks(b"\xf4", ss=0)                # null SS in B's TSS
    cpu.state["exc_exit"] = 1
    load(cpu, mem, bytes.fromhex("ea000000003800"))     # jmp 0x38:0
    cpu.run(10)
    assert cpu.exit_reason == 5
    assert (int(cpu.state["exc_vector"]), int(cpu.state["exc_code"])) == (10, 0)
    assert cpu.get_reg("tr") == 0x38 and cpu.get_reg("eip") == CODE_B   # after the commit point
    assert cpu.get_reg("eax") == 0xB0B0


def test_iret_with_nt_to_a_non_busy_task_raises_ts():
    cpu, mem = two_tasks(b"\xf4")
    cpu.state["exc_exit"] = 1
    mem.write(TSS_A, b"\x38\x00")                       # back link to B, which is not busy
    load(cpu, mem, bytes.fromhex("cf"))
    cpu.set_reg("eflags", 0x4002)
    cpu.run(10)
    assert (int(cpu.state["exc_vector"]), int(cpu.state["exc_code"])) == (10, 0x38)
    assert cpu.get_reg("eip") == CODE


def test_chain_of_failing_task_switches_ends_in_a_triple_fault():
    """#GP -> task gate to B (null SS: #TS in B) -> task gate to C (same) -> ... : the host
    survives and run() reports a triple fault."""
    from pyv86.cpu import TripleFault
    cpu, mem = two_tasks(b"\xf4", ss=0)
    tss_c = 0x7200
    put_desc(mem, 9, desc(tss_c, 0x67, 0x89, 0))                  # 0x48: task C
    mem.write(tss_c, tss_image(CODE_B, 0x60000, 0xC0C0, ss=0))
    for vec in range(32):
        target = 0x48 if vec in (8, 10) else 0x38
        mem.write(IDT + 8 * vec, struct.pack("<Q", task_gate(target)))
    load(cpu, mem, bytes.fromhex("66b80010" "8ed8"))              # mov ds, 0x1000 -> #GP
    with pytest.raises(TripleFault):
        cpu.run(100)
    assert cpu.state["task_nest"] == 0


def test_task_switch_to_and_from_a_286_tss():
    """call to a 16-bit TSS (task C) and iret back: 16-bit save/load layout, FS/GS null."""
    tss_c = 0x7200
    c_code = bytes.fromhex("a300500000"          # mov [0x5000], eax
                           "8ce0" "a304500000"   # mov eax, fs; mov [0x5004], eax
                           "cf")                 # iret (NT: back to A)
    cpu, mem = two_tasks(b"\xf4")
    put_desc(mem, 9, desc(tss_c, 0x2B, 0x81, 0))                   # 0x48: 286 TSS, available
    t = bytearray(0x2C)
    struct.pack_into("<HH", t, 0xE, 0x3000, 0x0002)                # ip, flags
    struct.pack_into("<8H", t, 0x12, 0x1234, 0, 0, 0, 0x7000, 0, 0, 0)
    struct.pack_into("<4H", t, 0x22, 0x18, 0x10, 0x18, 0x18)        # es cs ss ds
    mem.write(tss_c, bytes(t))
    mem.write(0x3000, c_code)
    code = bytes.fromhex("b811110000" "9a000000004800" "f4")       # mov eax, 0x1111; call 0x48:0; hlt
    load(cpu, mem, code)
    cpu.run(100)
    assert cpu.halted and cpu.get_reg("eip") == CODE + len(code)
    assert mem.read_u32(0x5000) == 0xFFFF1234                    # upper half of a 286 register: ones
    assert mem.read_u32(0x5004) & 0xFFFF == 0                    # FS null in a 286 task
    assert mem.read(tss_c, 2) == b"\x30\x00"                     # back link
    assert struct.unpack("<H", mem.read(tss_c + 0xE, 2))[0] == 0x3000 + len(c_code)   # saved ip
    assert type_of(mem, 9) == 0x1 and type_of(mem, 6) == 0xB
    assert cpu.get_reg("eax") == 0x1111 and cpu.get_reg("tr") == 0x30
