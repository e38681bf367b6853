"""The block JIT tier: same results as the interpreter, self-modifying code, host writes to
translated code, and the differential suite against unicorn on translated code."""
from __future__ import annotations

import struct

import pytest

from helpers import flat_cpu, load

SYNC = {"sync": True, "threshold": 1, "verbose": False}
CODE = 0x100000


def run_to_halt(cpu, limit=50_000_000):
    n = 0
    while not cpu.halted and n < limit:
        n += cpu.run(1_000_000)
    assert cpu.halted, "program did not reach HLT"
    return n


def both_tiers(code: bytes, setup=None):
    out = []
    for jit in (False, SYNC):
        cpu, mem, host = flat_cpu(ram=8 << 20)
        cpu.set_jit(jit)
        load(cpu, mem, code, at=CODE)
        if setup:
            setup(cpu, mem)
        n = run_to_halt(cpu)
        regs = [cpu.get_reg(r) for r in ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "eip")]
        out.append((n, regs, cpu.get_reg("eflags"), mem.ram[0x200000:0x201000].tobytes(),
                    cpu.jit.report() if cpu.jit else None))
    return out


def test_loop_runs_translated_with_the_interpreters_results():
    # ecx = 100000; eax = 0; L: add eax, ecx; xor edx, eax; mov [0x200000 + (ecx & 0x3ff)*4], edx;
    #                           dec ecx; jnz L; hlt
    code = (b"\xb9" + struct.pack("<I", 100_000) + b"\x31\xc0"
            + b"\x01\xc8\x31\xc2\x89\xcb\x81\xe3\xff\x03\x00\x00\x89\x14\x9d" + struct.pack("<I", 0x200000)
            + b"\x49\x75\xe8\xf4")
    (n1, r1, f1, m1, _), (n2, r2, f2, m2, rep) = both_tiers(code)
    assert (n1, r1, f1, m1) == (n2, r2, f2, m2)
    assert rep["jit_instructions"] > 0.99 * n2, rep      # the loop ran inside translated code
    assert rep["blocks_entered"] < 100, rep               # ...looping inside one block


LOOP = (b"\xb9" + struct.pack("<I", 100_000) + b"\x31\xc0"
        + b"\x01\xc8\x31\xc2\x89\xcb\x81\xe3\xff\x03\x00\x00\x89\x14\x9d"
        + struct.pack("<I", 0x200000) + b"\x49\x75\xe8\xf4")


def test_translations_are_kept_on_disk_and_reused_by_the_next_cpu(tmp_path, monkeypatch):
    monkeypatch.setenv("PYV86_CACHE_DIR", str(tmp_path))
    reports, results = [], []
    for _ in range(2):
        cpu, mem, host = flat_cpu(ram=8 << 20)
        cpu.set_jit(dict(SYNC, cache=True))
        load(cpu, mem, LOOP, at=CODE)
        n = run_to_halt(cpu)
        results.append((n, cpu.get_reg("eax"), cpu.get_reg("edx"), mem.ram[0x200000:0x201000].tobytes()))
        reports.append(cpu.jit.report())
    assert results[0] == results[1]
    assert reports[0]["translated"] >= 1 and reports[0]["cache_hits"] == 0, reports[0]
    assert reports[1]["translated"] == 0 and reports[1]["cache_hits"] >= 1, reports[1]
    assert reports[1]["jit_instructions"] > 0.99 * results[1][0], reports[1]
    # a damaged entry is not used: the block is translated again
    for entry in tmp_path.glob("jit/*/*.e"):
        entry.write_text("garbage")
    cpu, mem, host = flat_cpu(ram=8 << 20)
    cpu.set_jit(dict(SYNC, cache=True))
    load(cpu, mem, LOOP, at=CODE)
    assert run_to_halt(cpu) == results[0][0] and cpu.get_reg("eax") == results[0][1]
    rep = cpu.jit.report()
    assert rep["cache_hits"] == 0 and rep["translated"] >= 1, rep


def test_code_that_rewrites_its_own_block():
    # L0: mov ebx, imm32 ; add eax, ebx ; inc dword [L0+1] ; dec ecx ; jnz L0 ; hlt
    code = (b"\xbb\x00\x00\x00\x00" + b"\x01\xd8" + b"\xff\x05" + struct.pack("<I", CODE + 1)
            + b"\x49\x75\xf0\xf4")

    def setup(cpu, mem):
        cpu.set_reg("ecx", 3000)
    (n1, r1, f1, _, _), (n2, r2, f2, _, rep) = both_tiers(code, setup)
    assert r1[0] == sum(range(3000)) & 0xFFFFFFFF          # eax: every iteration saw the new immediate
    assert (n1, r1, f1) == (n2, r2, f2)
    assert rep["invalidations"] >= 1 and rep["jit_instructions"] > 0, rep


def test_rep_movs_over_translated_code_makes_it_stale():
    """A page-chunked rep movsb whose destination holds translated code: the new code runs."""
    code = bytes.fromhex(
        "b914000000"          # mov ecx, 20
        "e8f6ff0f00"          # L: call 0x200000 (mov eax, 1; ret -- later mov eax, 2; ret)
        "01c3"                # add ebx, eax
        "83f90b" "7513"       # cmp ecx, 11; jne N
        "51"                  # push ecx
        "be00002100" "bf00002000" "b940000000" "f3a4"   # rep movsb 64 bytes 0x210000 -> 0x200000
        "59"                  # pop ecx
        "49" "75de"           # N: dec ecx; jnz L
        "f4")

    def setup(cpu, mem):
        mem.write(0x200000, bytes.fromhex("b801000000" "c3"))
        mem.write(0x210000, bytes.fromhex("b802000000" "c3") + b"\x90" * 58)
    (n1, r1, f1, _, _), (n2, r2, f2, _, rep) = both_tiers(code, setup)
    assert r1[3] == 10 * 1 + 10 * 2                        # ebx: ten old calls, ten new ones
    assert (n1, r1, f1) == (n2, r2, f2)
    assert rep["invalidations"] >= 1 and rep["jit_instructions"] > 0, rep


def test_host_write_to_translated_code_is_seen():
    # jmp $+2 ; mov eax, N ; hlt -- the block at the jump's target is translated, then the
    # host rewrites it (like a device's DMA) and the next run must see the new code
    cpu, mem, host = flat_cpu(ram=8 << 20)
    cpu.set_jit(SYNC)
    load(cpu, mem, b"\xeb\x00\xb8\x01\x00\x00\x00\xf4", at=CODE)
    seen = []
    for step in range(3):
        if step == 2:
            mem.write(CODE + 2, b"\xb8\x02\x00\x00\x00")
        cpu.set_reg("eip", CODE)
        cpu.halted = False
        run_to_halt(cpu)
        seen.append(cpu.get_reg("eax"))
    assert seen == [1, 1, 2]
    rep = cpu.jit.report()
    assert rep["host_invalidations"] == 1 and rep["jit_instructions"] >= 4, rep


def test_differential_suite_on_translated_code():
    from pyv86.cpu import jitdifftest
    for mode, seed in (("pm", 11), ("real", 12)):
        r = jitdifftest.run(13 * 8, seed, mode=mode)
        assert r["mismatches"] == 0, r["failures"]
        assert r["translated_insns"] > r["cases"], r       # the cases really ran translated


@pytest.mark.linux
@pytest.mark.slow
def test_linux_boot_is_the_same_on_both_tiers(tmp_path):
    from pyv86.cpu import tiercheck
    from pyv86.paths import guest_dir
    if not (guest_dir() / "vmlinuz").exists():
        pytest.fail("guest image not built: run `pyv86 guest build` (make guest)")
    machine = tmp_path / "tiercheck.toml"
    machine.write_text(tiercheck.default_machine_text())
    r = tiercheck.compare(machine, every=3_000_000, until=12_000_000, threshold=50)
    assert r["mismatch"] is None, r["mismatch"]
    assert r["checkpoints"] == 4
    assert r["jit"]["jit_instructions"] > 5_000_000, r["jit"]


def test_code_reached_only_by_a_blocks_side_exit_becomes_hot():
    # mov ecx, 20000 ; xor eax, eax
    # L: cmp ecx, 5000 ; jb T ; dec ecx ; jmp L        (one block that loops on itself)
    # T: add eax, ecx ; dec ecx ; jnz L ; hlt          (reached only once ecx < 5000, through
    #                                                   the translated L's side exit)
    code = (b"\xb9" + struct.pack("<I", 20_000) + b"\x31\xc0"
            + b"\x81\xf9" + struct.pack("<I", 5000) + b"\x72\x03\x49\xeb\xf5"
            + b"\x01\xc8\x49\x75\xf0\xf4")
    out = []
    for jit in (False, dict(SYNC, threshold=50)):
        cpu, mem, host = flat_cpu(ram=8 << 20)
        cpu.set_jit(jit)
        load(cpu, mem, code, at=CODE)
        n = run_to_halt(cpu)
        out.append((n, cpu.get_reg("eax"), cpu.get_reg("eflags"), cpu.jit.report() if cpu.jit else None))
    (n1, eax1, f1, _), (n2, eax2, f2, rep) = out
    assert (n1, eax1, f1) == (n2, eax2, f2) and eax1 == sum(range(5000))
    # T was counted at the side exit and translated: almost nothing ran interpreted
    assert rep["jit_instructions"] > 0.97 * n2, rep


def _same_set_code():
    """A loop calling A and B, two functions whose physical addresses share a translation
    table set (with a direct-mapped table they evicted each other at every call)."""
    from pyv86.cpu.state import jit_slot
    a, b = 0x110000, 0x120000
    while jit_slot(b) != jit_slot(a):
        b += 1
    # mov ecx, 20000 ; xor eax, eax ; xor edx, edx ; L: call A ; call B ; dec ecx ; jnz L ; hlt
    main = b"\xb9" + struct.pack("<I", 20_000) + b"\x31\xc0\x31\xd2"
    call_a = CODE + len(main)
    main += b"\xe8" + struct.pack("<i", a - (call_a + 5))
    main += b"\xe8" + struct.pack("<i", b - (call_a + 10))
    main += b"\x49\x75" + bytes([((call_a - CODE) - (len(main) + 3)) & 0xFF]) + b"\xf4"
    return main, a, b


def test_hot_blocks_that_hash_alike_both_stay_translated():
    main, a, b = _same_set_code()
    out = []
    for jit in (False, SYNC):
        cpu, mem, host = flat_cpu(ram=8 << 20)
        cpu.set_jit(jit)
        load(cpu, mem, main, at=CODE)
        load(cpu, mem, b"\x83\xc0\x01\xc3", at=a)     # A: add eax, 1 ; ret
        load(cpu, mem, b"\x83\xc2\x03\xc3", at=b)     # B: add edx, 3 ; ret
        cpu.set_reg("eip", CODE)
        n = run_to_halt(cpu)
        out.append((n, cpu.get_reg("eax"), cpu.get_reg("edx"), cpu.jit.report() if cpu.jit else None))
    (n1, a1, d1, _), (n2, a2, d2, rep) = out
    assert (n1, a1, d1) == (n2, a2, d2) == (n1, 20_000, 60_000)
    assert rep["evicted"] == 0 and rep["translated"] < 10, rep
    assert rep["jit_instructions"] > 0.99 * n2, rep


def test_every_compiled_batch_is_kept_on_disk(tmp_path, monkeypatch):
    # sync mode compiles each block in a batch of its own: all of them must be stored (every
    # object is linked into one shared engine, and the store once followed only the first)
    monkeypatch.setenv("PYV86_CACHE_DIR", str(tmp_path))
    main, a, b = _same_set_code()
    reports = []
    for _ in range(2):
        cpu, mem, host = flat_cpu(ram=8 << 20)
        cpu.set_jit(dict(SYNC, cache=True))
        load(cpu, mem, main, at=CODE)
        load(cpu, mem, b"\x83\xc0\x01\xc3", at=a)
        load(cpu, mem, b"\x83\xc2\x03\xc3", at=b)
        cpu.set_reg("eip", CODE)
        run_to_halt(cpu)
        assert (cpu.get_reg("eax"), cpu.get_reg("edx")) == (20_000, 60_000)
        reports.append(cpu.jit.report())
    assert reports[0]["translated"] >= 4 and reports[0]["batches"] >= 4, reports[0]
    assert reports[1]["translated"] == 0, reports[1]
    assert reports[1]["cache_hits"] >= reports[0]["translated"], reports[1]


def test_group5_memory_forms_do_not_end_a_block():
    # L: inc dword [0x200000] ; push dword [0x200000] ; pop eax ; dec dword [0x200004]
    #    dec ecx ; jnz L ; hlt       -- one block (only call/jmp through group 5 end one)
    from pyv86.cpu.blockdecode import decode_block
    body = (b"\xff\x05" + struct.pack("<I", 0x200000) + b"\xff\x35" + struct.pack("<I", 0x200000)
            + b"\x58\xff\x0d" + struct.pack("<I", 0x200004) + b"\x49\x75\xea\xf4")
    assert [d.opcode for d in decode_block(body, 0, CODE + 5, True, 48)] == [0xFF, 0xFF, 0x58, 0xFF,
                                                                          0x49, 0x75, 0xF4]
    call_ind = b"\xff\xd0\x90"                     # call eax ; nop
    assert len(decode_block(call_ind, 0, CODE, True, 48)) == 1

    def setup(cpu, mem):
        cpu.set_reg("ecx", 10_000)
    (n1, r1, f1, m1, _), (n2, r2, f2, m2, rep) = both_tiers(b"\xb9" + struct.pack("<I", 10_000) + body,
                                                            setup)
    assert (n1, r1, f1, m1) == (n2, r2, f2, m2)
    assert r1[0] == 10_000 and m1[:8] == struct.pack("<II", 10_000, (-10_000) & 0xFFFFFFFF)
    assert rep["jit_instructions"] > 0.99 * n2 and rep["blocks_entered"] < 100, rep
