"""Compile the generated IR with llvmlite and cache the object code on disk.

Cache: ``pyv86.paths.cache_dir('cpu')`` (default ``~/.cache/pyv86/cpu/``; honours ``PYV86_CACHE_DIR``), file name =
sha256(IR text + llvmlite version + target CPU/features + opt level).  ``PYV86_CPU_OPT=0``
skips the IR optimisation passes (fast builds while developing).
"""
from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path

from pyv86 import paths

TARGET_CPU = "x86-64-v2"
_cache: dict = {}


def cache_dir() -> Path:
    return paths.cache_dir("cpu")


def _llvm():
    import llvmlite.binding as llvm
    if not _cache.get("init"):
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        _cache["init"] = True
    return llvm


def _tm(llvm, opt, reloc="pic", codemodel="jitdefault"):
    target = llvm.Target.from_default_triple()
    return target.create_target_machine(cpu=TARGET_CPU, features="", opt=opt, reloc=reloc,
                                        codemodel=codemodel, jit=True)


def opt_level() -> int:
    """0: no IR passes; 1 (default): a light pipeline (SROA, instcombine, simplifycfg, DCE)
    that keeps the first compile short; 2: LLVM's full O2 pipeline (very slow on the one huge
    interpreter function)."""
    return int(os.environ.get("PYV86_CPU_OPT", "1"))


def light_passes(llvm, tm, mod, rounds: int) -> None:
    """The light function pipeline: SROA, instcombine, simplifycfg (and with ``rounds=2`` a
    second round plus jump threading and aggressive DCE) on every defined function."""
    pb = llvm.create_pass_builder(tm, llvm.create_pipeline_tuning_options(speed_level=1))
    fpm = llvm.create_new_function_pass_manager()
    fpm.add_sroa_pass()
    fpm.add_instruction_combine_pass()
    fpm.add_simplify_cfg_pass()
    if rounds > 1:
        fpm.add_sroa_pass()
        fpm.add_instruction_combine_pass()
        fpm.add_jump_threading_pass()
        fpm.add_simplify_cfg_pass()
        fpm.add_aggressive_dce_pass()
    for fn in mod.functions:
        if not fn.is_declaration:
            fpm.run(fn, pb)


def get_ir():
    if "ir" not in _cache:
        from .codegen import generate
        _cache["ir"] = generate()
    return _cache["ir"]


SOURCES = ("state.py", "dsl.py", "flags.py", "isa.py", "system.py", "fpu.py", "cpuid.py",
           "codegen.py", "build.py", "jitabi.py")


def cache_key() -> str:
    """sha256 over the ISA description sources (the IR is a pure function of them), the
    llvmlite version, target CPU, opt level and triple: a warm start needs no IR generation."""
    import llvmlite
    llvm = _llvm()
    h = hashlib.sha256()
    here = Path(__file__).parent
    for name in SOURCES:
        h.update(name.encode() + b"\0" + (here / name).read_bytes())
    h.update("\0".join([llvmlite.__version__, TARGET_CPU, str(opt_level()),
                        llvm.get_process_triple()]).encode())
    return h.hexdigest()


def object_code(verbose=True) -> bytes:
    """Return the object code for the interpreter (from the cache or freshly compiled)."""
    llvm = _llvm()
    opt = opt_level()
    path = cache_dir() / f"interp-{cache_key()[:32]}.o"
    check = path.with_suffix(".sha256")
    if path.exists():
        # the linker trusts what it links: a damaged file would crash the process, so the
        # object is used only if it matches the hash written beside it
        obj = path.read_bytes()
        try:
            ok = check.read_text().strip() == hashlib.sha256(obj).hexdigest()
        except OSError:
            ok = False
        if ok:
            return obj
        if verbose:
            print(f"pyv86: {path} does not match its checksum; compiling it again",
                  file=sys.stderr, flush=True)
    ir_text, info = get_ir()
    nlines = ir_text.count("\n")
    if verbose:
        est = max(1, int(nlines * {0: 60e-6, 1: 150e-6}.get(opt, 1500e-6)))
        print(f"pyv86: compiling CPU interpreter (first run, ~{est} s, {nlines} IR lines)...",
              file=sys.stderr, flush=True)
    t0 = time.time()
    mod = llvm.parse_assembly(ir_text)
    mod.verify()
    tm = _tm(llvm, 3)
    mod.triple = llvm.get_process_triple()
    if opt == 1:
        light_passes(llvm, tm, mod, rounds=2)
    elif opt >= 2:
        pto = llvm.create_pipeline_tuning_options(speed_level=opt)
        pb = llvm.create_pass_builder(tm, pto)
        pb.getModulePassManager().run(mod, pb)
    obj = tm.emit_object(mod)
    path.parent.mkdir(parents=True, exist_ok=True)
    paths.write_atomic(path, obj)
    paths.write_atomic(check, (hashlib.sha256(obj).hexdigest() + "\n").encode())
    if verbose:
        print(f"pyv86: CPU interpreter compiled in {time.time() - t0:.1f} s (cached in {path})",
              file=sys.stderr, flush=True)
    return obj


def load():
    """Return (engine, address of pyv86_run).  The engine must be kept alive."""
    if "engine" in _cache:
        return _cache["engine"]
    llvm = _llvm()
    obj = object_code()
    tm = _tm(llvm, 3)
    ee = llvm.create_mcjit_compiler(llvm.parse_assembly(""), tm)
    ee.add_object_file(llvm.ObjectFileRef.from_data(obj))
    ee.finalize_object()
    from .codegen import RUN_NAME
    addr = ee.get_function_address(RUN_NAME)
    if not addr:
        raise RuntimeError("pyv86: CPU interpreter symbol not found")
    # translated blocks (jit.py) call the interpreter's helpers by name
    from . import system
    from .jitabi import helper_symbol
    for name in list(system.HELPERS) + ["cc_compute"]:
        sym = helper_symbol(name)
        llvm.add_symbol(sym, ee.get_function_address(sym))
    _cache["engine"] = (ee, addr)
    if os.environ.get("PYV86_PERF_MAP"):
        write_perf_map(obj, addr, RUN_NAME)
    return _cache["engine"]


def write_perf_map(obj: bytes, run_addr: int, run_name: str) -> None:
    """``PYV86_PERF_MAP=1``: name the interpreter's functions for ``perf report`` in
    ``/tmp/perf-PID.map`` (perf's convention for JIT code; needs binutils' ``nm``)."""
    import subprocess
    import tempfile
    with tempfile.NamedTemporaryFile(suffix=".o") as f:
        f.write(obj)
        f.flush()
        try:
            out = subprocess.run(["nm", "-S", "--defined-only", f.name], capture_output=True,
                                 text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError) as exc:
            print(f"pyv86: PYV86_PERF_MAP: cannot list the interpreter's symbols ({exc})",
                  file=sys.stderr)
            return
    syms = [(int(p[0], 16), int(p[1], 16), p[3]) for p in (ln.split() for ln in out.splitlines())
            if len(p) == 4 and p[2] in "tT"]
    base = run_addr - next(off for off, _, name in syms if name == run_name)
    with open(f"/tmp/perf-{os.getpid()}.map", "a") as m:
        for off, size, name in syms:
            m.write(f"{base + off:x} {size:x} pyv86:{name}\n")
