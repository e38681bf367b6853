"""System-level CPU behaviour: IDT delivery, rings, paging faults, I/O, real mode, FPU, state."""
from __future__ import annotations

import struct

import pytest

from helpers import Host, desc, flat_cpu, load

pytestmark = pytest.mark.timeout(900)

IDT = 0x8000


def gate(mem, vec, off, sel=0x10, access=0x8E):
    g = (off & 0xFFFF) | (sel << 16) | ((access << 8) << 32) | ((off >> 16) << 48)
    mem.write(IDT + 8 * vec, struct.pack("<Q", g))


def with_idt(cpu):
    cpu.set_idtr(IDT, 0x7FF)


def test_ring3_int80_switches_to_tss_stack_and_irets_back():
    cpu, mem, _ = flat_cpu()
    mem.write(0x6000 + 0x30, struct.pack("<Q", desc(0x7000, 0x67, 0x89, 0)))
    mem.write(0x6000 + 0x20, struct.pack("<Q", desc(0, 0xFFFFF, 0xFB)))
    mem.write(0x6000 + 0x28, struct.pack("<Q", desc(0, 0xFFFFF, 0xF3)))
    mem.write(0x7004, struct.pack("<II", 0x80000, 0x18))      # esp0, ss0
    with_idt(cpu)
    gate(mem, 0x80, 0x101000, access=0xEE)
    ring0 = bytes.fromhex("66b83000" "0f00d8" "6a2b" "6800000700" "6a02" "6a23" "6800201000" "cf")
    # (ss: override: DS is null here, iret to ring 3 nulled it, and a null DS faults)
    mem.write(0x101000, bytes.fromhex("83c001" "36892500500000" "cf"))
    mem.write(0x102000, bytes.fromhex("b82a000000" "cd80" "89c3" "ebfe"))
    load(cpu, mem, ring0)
    cpu.run(200)
    assert cpu.get_reg("cpl") == 3
    assert cpu.get_reg("cs") == 0x23
    assert cpu.get_reg("ebx") == 43
    assert mem.read_u32(0x5000) == 0x80000 - 20          # ss, esp, eflags, cs, eip pushed
    assert mem.read_u32(0x80000 - 20) == 0x102007        # return eip after int 0x80
    assert cpu.get_reg("esp") == 0x70000
    assert cpu.get_reg("ds") == 0                        # DPL0 data segment nulled on return


def _paged(wp):
    cpu, mem, _ = flat_cpu()
    pd, pt = 0x10000, 0x11000
    mem.write_u32(pd, pt | 3)
    for i in range(1024):
        mem.write_u32(pt + 4 * i, (i << 12) | (1 if i == 0x200 else 3))
    cpu.set_reg("cr3", pd)
    cpu.set_reg("cr0", 0x80000011 | (0x10000 if wp else 0))
    with_idt(cpu)
    gate(mem, 14, 0x101000)
    mem.write(0x101000, bytes.fromhex("58" "0f20d3" "f4"))   # pop eax; mov ebx, cr2; hlt
    load(cpu, mem, bytes.fromhex("c70500002000" "01000000" "f4"))
    return cpu, mem


def test_write_to_readonly_page_faults_in_ring0_when_wp_set():
    cpu, mem = _paged(wp=True)
    cpu.run(100)
    assert cpu.halted
    assert cpu.get_reg("eax") == 3                        # present | write
    assert cpu.get_reg("ebx") == 0x200000                 # CR2
    assert mem.read_u32(0x200000) == 0
    assert mem.read_u32(0x90000 - 12) == 0x100000         # precise: eip of the faulting mov
    assert mem.read_u32(0x11000 + 4 * 0x100) & 0x20                  # accessed bit of the code page's PTE


def test_write_to_readonly_page_succeeds_in_ring0_without_wp_and_sets_dirty():
    cpu, mem = _paged(wp=False)
    cpu.run(100)
    assert cpu.halted and cpu.get_reg("eip") == 0x10000B
    assert mem.read_u32(0x200000) == 1
    assert mem.read_u32(0x11000 + 4 * 0x200) & 0x60 == 0x60


def test_triple_fault_raises():
    from pyv86.cpu import TripleFault
    cpu, mem, _ = flat_cpu()
    cpu.set_idtr(0, 0)
    load(cpu, mem, bytes.fromhex("0f0b"))
    with pytest.raises(TripleFault):
        cpu.run(10)


def test_undefined_opcode_is_precise_ud():
    cpu, mem, _ = flat_cpu()
    cpu.state["exc_exit"] = 1
    load(cpu, mem, bytes.fromhex("40" "0f0b" "40"))
    cpu.run(10)
    assert cpu.exit_reason == 5 and int(cpu.state["exc_vector"]) == 6
    assert cpu.get_reg("eip") == 0x100001 and cpu.get_reg("eax") == 1


def test_hlt_then_intr_wakes_and_delivers_vector():
    host = Host()
    cpu, mem, _ = flat_cpu(host=host)
    with_idt(cpu)
    gate(mem, 0x20, 0x101000)
    mem.write(0x101000, bytes.fromhex("b834120000" "f4"))
    load(cpu, mem, bytes.fromhex("fb" "f4" "90"))
    cpu.run(100)
    assert cpu.halted
    assert cpu.run(100) == 0                              # no interrupt: stays halted
    host.vectors.append(0x20)
    cpu.set_intr(True)
    cpu.run(100)
    cpu.set_intr(False)
    assert cpu.get_reg("eax") == 0x1234
    assert mem.read_u32(0x90000 - 12) == 0x100002         # return address after the hlt


def test_sti_interrupt_shadow_delays_one_instruction():
    host = Host()
    cpu, mem, _ = flat_cpu(host=host)
    with_idt(cpu)
    gate(mem, 0x21, 0x101000)
    mem.write(0x101000, bytes.fromhex("f4"))
    load(cpu, mem, bytes.fromhex("fb" "40" "40" "40"))   # sti; inc eax x3
    host.vectors.append(0x21)
    cpu.set_intr(True)
    cpu.run(100)
    assert cpu.get_reg("eax") == 1                        # one inc ran inside the shadow


def test_rep_insw_is_one_host_call_per_page_chunk():
    host = Host()
    host.string_data = bytes(range(200))
    cpu, mem, _ = flat_cpu(host=host)
    load(cpu, mem, bytes.fromhex("bf00300000" "b964000000" "66baf001" "66f36d" "f4"))
    cpu.run(100)
    assert mem.read(0x3000, 200) == bytes(range(200))
    assert [x for x in host.log if x[0] == "ins"] == [("ins", 0x1F0, 2, 100)]
    assert cpu.get_reg("ecx") == 0 and cpu.get_reg("edi") == 0x3000 + 200


def test_rep_outsb_and_port_and_mmio_access():
    host = Host()
    host.port_values[0x61] = 0x20
    host.mmio[0x500000] = 0x12345678
    cpu, mem, _ = flat_cpu(host=host)
    mem.write(0x3000, b"hello")
    code = ("e680" "e461" "88c3" "a100005000" "c7050400500099000000"
            "be00300000" "b905000000" "66baf803" "f36e" "f4")
    load(cpu, mem, bytes.fromhex(code))
    cpu.run(100)
    assert ("out", 0x80, 1, 0) in host.log
    assert cpu.get_reg("ebx") & 0xFF == 0x20
    assert cpu.get_reg("eax") == 0x12345678
    assert ("mw", 0x500004, 4, 0x99) in host.log
    assert ("outs", 0x3F8, 1, b"hello") in host.log


def test_cpuid_rdtsc_and_msrs():
    cpu, mem, _ = flat_cpu()
    cpu.state["exc_exit"] = 1
    load(cpu, mem, bytes.fromhex("31c0" "0fa2" "89df" "b801000000" "0fa2" "89c6" "89d5" "0f31" "b93a000000" "0f32"))
    cpu.tsc = 1000
    cpu.run(100)
    assert cpu.get_reg("edi") == int.from_bytes(b"Genu", "little")
    assert cpu.get_reg("esi") == 0x673
    feat = cpu.get_reg("ebp")
    assert feat & (1 << 8) and feat & (1 << 15) and feat & 1 and not feat & (1 << 9)
    assert cpu.get_reg("eax") == 1000 + 7                 # rdtsc: tsc + retired instructions
    assert int(cpu.state["exc_vector"]) == 13             # rdmsr 0x3A: #GP(0)
    assert cpu.get_reg("eip") == 0x100018


def test_real_mode_to_protected_mode_switch():
    cpu, mem, _ = flat_cpu()
    cpu.reset()
    assert cpu.get_reg("eip") == 0xFFF0 and cpu.get_reg("cr0") == 0x60000010 and cpu.get_reg("edx") == 0x673
    cpu.set_segment("cs", 0x1000, 0x10000, 0xFFFF, 0x9B)
    cpu.set_reg("eip", 0)
    mem.write(0x20100, struct.pack("<HI", 0x3F, 0x6000))
    code = bytes.fromhex("b80020" "8ed8" "c70610003412" "0f01160001" "0f20c0" "6683c801" "0f22c0"
                         "66ea" + struct.pack("<I", 0x10100).hex() + "1000")
    mem.write(0x10000, code)
    mem.write(0x10100, bytes.fromhex("b8efbeadde" "f4"))
    cpu.run(100)
    assert mem.read_u16(0x20010) == 0x1234
    assert cpu.get_reg("eax") == 0xDEADBEEF
    assert cpu.get_reg("cs") == 0x10 and int(cpu.state["code32"]) == 1


def test_x87_arithmetic_conversions_and_fnsave_roundtrip():
    cpu, mem, _ = flat_cpu()
    mem.write(0x2000, struct.pack("<dd", 1.5, 2.25))
    mem.write(0x2018, struct.pack("<i", -7))
    code = ("dbe3" "dd0500200000" "dc0d08200000" "dd1d10200000" "db0518200000" "d9c0" "dec9"
            "db1d1c200000" "dfe0" "89c3" "d93d20200000"
            "d9e8" "dd3500300000" "dd2500300000" "dd1d28200000" "f4")
    load(cpu, mem, bytes.fromhex(code))
    cpu.run(100)
    assert struct.unpack("<d", mem.read(0x2010, 8))[0] == 3.375
    assert struct.unpack("<i", mem.read(0x201C, 4))[0] == 49
    assert cpu.get_reg("ebx") & 0xFFFF == 0               # fnstsw ax after fninit and balanced stack
    assert mem.read_u16(0x2020) == 0x37F                  # fnstcw
    assert struct.unpack("<d", mem.read(0x2028, 8))[0] == 1.0   # fld1; fnsave; frstor; fstp


def test_fpu_instruction_with_cr0_ts_raises_nm():
    cpu, mem, _ = flat_cpu()
    cpu.state["exc_exit"] = 1
    cpu.set_reg("cr0", 0x19)
    load(cpu, mem, bytes.fromhex("d9e8"))
    cpu.run(10)
    assert int(cpu.state["exc_vector"]) == 7


def test_divide_error_and_host_safe_int_min_division():
    cpu, mem, _ = flat_cpu()
    cpu.state["exc_exit"] = 1
    load(cpu, mem, bytes.fromhex("b800000080" "99" "b9ffffffff" "f7f9"))
    cpu.run(10)
    assert int(cpu.state["exc_vector"]) == 0 and cpu.get_reg("eip") == 0x10000B


def test_save_restore_roundtrip():
    cpu, mem, _ = flat_cpu()
    load(cpu, mem, bytes.fromhex("40" * 10 + "f4"))
    cpu.run(3)
    snap = cpu.save()
    assert all(isinstance(v, (int, bytes, list)) for v in snap.values())
    cpu.run(100)
    assert cpu.get_reg("eax") == 10
    cpu.restore(snap)
    assert cpu.get_reg("eax") == 3 and not cpu.halted
    cpu.run(100)
    assert cpu.get_reg("eax") == 10


def test_request_stop_from_a_device_callback():
    class StopHost(Host):
        def port_write(self, port, size, value):
            super().port_write(port, size, value)
            cpu.request_stop()
    cpu, mem, _ = flat_cpu(host=StopHost())
    load(cpu, mem, bytes.fromhex("e680" + "40" * 10))
    n = cpu.run(1000)
    assert n == 1 and cpu.get_reg("eax") == 0


def test_sysenter_sysexit_round_trip():
    cpu, mem, _ = flat_cpu()
    code = ("b974010000" "b810000000" "31d2" "0f30" "b975010000" "b800000800" "0f30"
            "b976010000" "b800101000" "0f30" "b900000700" "ba00201000" "0f35")
    mem.write(0x102000, bytes.fromhex("0f34"))
    mem.write(0x101000, bytes.fromhex("89e3" "8cc8" "b900000600" "ba10201000" "0f35"))
    mem.write(0x102010, bytes.fromhex("ebfe"))
    load(cpu, mem, bytes.fromhex(code))
    cpu.run(100)
    assert cpu.get_reg("cpl") == 3 and cpu.get_reg("cs") == 0x23 and cpu.get_reg("ss") == 0x2B
    assert cpu.get_reg("ebx") == 0x80000 and cpu.get_reg("eax") & 0xFFFF == 0x10
    assert cpu.get_reg("esp") == 0x60000 and cpu.get_reg("eip") == 0x102010


def test_popf_iopl_and_if_rules_by_privilege():
    cpu, mem, _ = flat_cpu()
    cpu.state["exc_exit"] = 1
    ring0 = ("6802320000" "9d" "9c" "5a" "6802000000" "9d"      # ring 0 may set IOPL and IF
             "6a2b" "6800000700" "6a02" "6a23" "6800201000" "cf")
    mem.write(0x102000, bytes.fromhex("9c" "58" "0d00320000" "50" "9d" "9c" "5b" "fa"))
    load(cpu, mem, bytes.fromhex(ring0))
    cpu.run(100)
    assert cpu.get_reg("edx") & 0x3200 == 0x3200
    assert cpu.get_reg("cpl") == 3
    assert cpu.get_reg("ebx") & 0x3200 == 0                 # ring 3, IOPL 0: both ignored
    assert int(cpu.state["exc_vector"]) == 13 and cpu.get_reg("eip") == 0x10200B   # cli -> #GP


def test_far_call_and_retf():
    cpu, mem, _ = flat_cpu()
    mem.write(0x101000, bytes.fromhex("b801000000" "cb"))
    load(cpu, mem, bytes.fromhex("9a00101000" "1000" "f4"))
    cpu.run(100)
    assert cpu.get_reg("eax") == 1 and cpu.halted
    assert cpu.get_reg("eip") == 0x100008 and cpu.get_reg("esp") == 0x90000


def test_lar_lsl_verr():
    cpu, mem, _ = flat_cpu()
    load(cpu, mem, bytes.fromhex("66b81800" "0f02d8" "0f03c8" "0f00e0" "9c" "5a" "f4"))
    cpu.run(100)
    assert cpu.get_reg("ebx") == 0x00C09300
    assert cpu.get_reg("ecx") == 0xFFFFFFFF
    assert cpu.get_reg("edx") & 0x40                        # verr: readable -> ZF


def test_pse_4m_page_and_global_page_survives_cr3_reload():
    cpu, mem, _ = flat_cpu()
    pd = 0x10000
    mem.write_u32(pd + 4 * 0, 0x00000183)                  # 4 MiB identity, global
    mem.write_u32(pd + 4 * 0x300, 0x00000083)              # 0xC0000000 -> 0 (4 MiB, not global)
    cpu.set_reg("cr3", pd)
    cpu.set_reg("cr4", 0x90)                              # PSE | PGE
    cpu.set_reg("cr0", 0x80000011)
    code = ("c70500300000" "78563412"                       # mov [0x3000], 0x12345678
            "a1003000c0"                                    # mov eax, [0xC0003000]
            "0f20db" "0f22db"                               # mov ebx, cr3; mov cr3, ebx
            "f4")
    load(cpu, mem, bytes.fromhex(code))
    cpu.run(100)
    assert cpu.get_reg("eax") == 0x12345678
    assert mem.read_u32(pd) & 0x60 == 0x60                  # accessed + dirty on the 4 MiB PDE
    assert mem.read_u32(pd + 4 * 0x300) & 0x60 == 0x20      # read only: accessed, not dirty
    tags = cpu.state["tlb_tag"]
    assert any(int(t) == 0x100001 for t in tags)            # global code page kept after CR3 load
    assert not any(int(t) == 0xC0003001 for t in tags)      # non-global entry flushed


def test_real_mode_software_interrupt_through_ivt_and_iret():
    cpu, mem, _ = flat_cpu()
    cpu.reset()
    cpu.set_segment("cs", 0x1000, 0x10000, 0xFFFF, 0x9B)
    cpu.set_segment("ss", 0x0000, 0, 0xFFFF, 0x93)
    cpu.set_reg("esp", 0x7000)
    cpu.set_reg("eip", 0)
    mem.write(0x10 * 4, struct.pack("<HH", 0x0100, 0x2000))       # int 10h -> 2000:0100
    mem.write(0x20100, bytes.fromhex("bb3412" "cf"))               # mov bx, 1234h; iret
    mem.write(0x10000, bytes.fromhex("fb" "cd10" "b90100" "f4"))   # sti; int 10h; mov cx, 1; hlt
    cpu.run(100)
    assert cpu.halted
    assert cpu.get_reg("ebx") & 0xFFFF == 0x1234 and cpu.get_reg("ecx") & 0xFFFF == 1
    assert cpu.get_reg("esp") == 0x7000 and cpu.get_reg("eflags") & 0x200   # IF restored by iret
    assert mem.read_u16(0x7000 - 6) == 3                                    # pushed IP after int


def test_invlpg_drops_a_stale_translation():
    cpu, mem, _ = flat_cpu()
    pd, pt = 0x10000, 0x11000
    mem.write_u32(pd, pt | 3)
    for i in range(1024):
        mem.write_u32(pt + 4 * i, (i << 12) | 3)
    mem.write_u32(0x5000, 0x55555555)
    mem.write_u32(0x6000, 0x66666666)
    cpu.set_reg("cr3", pd)
    cpu.set_reg("cr0", 0x80000011)
    code = ("a100500000"                          # mov eax, [0x5000]   (fills the TLB)
            "c70514100100" "03600000"             # mov dword [0x11014], 0x6003  (PTE 5 -> page 6)
            "8b1d00500000"                        # mov ebx, [0x5000]   (stale TLB: old page)
            "0f013d00500000"                      # invlpg [0x5000]
            "8b0d00500000"                        # mov ecx, [0x5000]   (new mapping)
            "f4")
    load(cpu, mem, bytes.fromhex(code))
    cpu.run(100)
    assert cpu.get_reg("eax") == 0x55555555
    assert cpu.get_reg("ebx") == 0x55555555
    assert cpu.get_reg("ecx") == 0x66666666


def test_tsc_is_current_at_port_and_mmio_callbacks():
    """Devices read exact guest time mid-slice: state.tsc = tsc at the start of the I/O insn."""
    seen = []

    class TscHost(Host):
        def port_write(self, port, size, value):
            seen.append(("out", cpu.tsc))

        def mmio_read(self, addr, size):
            seen.append(("mr", cpu.tsc))
            return 0

    cpu, mem, _ = flat_cpu(host=TscHost())
    cpu.tsc_per_insn = 3
    # nop; nop; out 0x80,al; nop; mov eax,[0x500000] (MMIO: beyond the 4 MiB of RAM); hlt
    load(cpu, mem, bytes.fromhex("90" "90" "e680" "90" "a100005000" "f4"))
    cpu.tsc = 5000
    n = cpu.run(100)
    assert seen == [("out", 5000 + 2 * 3), ("mr", 5000 + 4 * 3)]
    assert n == 6 and cpu.tsc == 5000 + 6 * 3
