"""Build/cache behaviour and import lightness."""
import subprocess
import sys


def test_importing_pyv86_cpu_does_not_import_llvmlite():
    code = "import sys, pyv86.cpu; print('llvmlite' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cached_object_loads_quickly():
    code = ("import time; t=time.time(); from pyv86.cpu import build; build.load(); "
            "print(time.time()-t)")
    subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "compiling" not in out.stderr
    assert float(out.stdout) < 5.0


def test_opcode_coverage_report_lists_groups():
    from pyv86.cpu import coverage
    rep = coverage.report()
    assert "one-byte map" in rep and "0F map" in rep and "cmpxchg8b" in rep


def test_a_damaged_cached_interpreter_is_compiled_again_not_linked(tmp_path, monkeypatch):
    """The linker trusts what it links (garbage would crash the process): a cached object
    that does not match the checksum beside it is rebuilt."""
    import pytest
    from pyv86.cpu import build
    monkeypatch.setenv("PYV86_CACHE_DIR", str(tmp_path))
    path = build.cache_dir() / f"interp-{build.cache_key()[:32]}.o"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x7fELF damaged")
    path.with_suffix(".sha256").write_text("0" * 64 + "\n")

    class Rebuilt(Exception):
        pass

    def get_ir():
        raise Rebuilt

    monkeypatch.setattr(build, "get_ir", get_ir)
    with pytest.raises(Rebuilt):
        build.object_code(verbose=False)
    good = b"\x7fELF fine"
    import hashlib
    path.write_bytes(good)
    path.with_suffix(".sha256").write_text(hashlib.sha256(good).hexdigest() + "\n")
    assert build.object_code(verbose=False) == good
