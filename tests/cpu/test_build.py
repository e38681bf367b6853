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
