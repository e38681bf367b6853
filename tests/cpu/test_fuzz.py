"""Random bytes as code under random page tables must never crash or hang the host."""
from pyv86.cpu import fuzz


def test_guest_fuzz_one_million_instructions():
    r = fuzz.run(1_000_000, seed=7)
    assert r["instructions"] >= 1_000_000
    assert r["resets"] >= 1
