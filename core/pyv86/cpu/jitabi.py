"""What the interpreter and translated blocks agree on (kept apart from the translator so that
changing the translator does not change the interpreter's build key).

* helpers are exported as ``pyv86_<name>``; blocks call them by that symbol;
* a block is ``i32 blk(i8* state, i8* ram, i32 budget)`` returning instructions retired, with
  ``state.jit_status`` 0 (continue), :data:`JIT_FAULT` or :data:`JIT_EXIT`;
* after the control transfers in :data:`BRANCHES` the interpreter looks for a translation of
  the target.
"""
from __future__ import annotations

import llvmlite.ir as ir

HELPER_PREFIX = "pyv86_"
BLOCK_TYPE = ir.FunctionType(ir.IntType(32), [ir.IntType(8).as_pointer()] * 2 + [ir.IntType(32)])
JIT_FAULT, JIT_EXIT = 1, 2

# control transfers (one-byte map 0x00-0xFF, 0F map 0x100-0x1FF)
BRANCHES = (set(range(0x70, 0x80)) | set(range(0x180, 0x190)) | set(range(0xE0, 0xE4))
            | {0xE8, 0xE9, 0xEA, 0xEB, 0x9A, 0xC2, 0xC3, 0xCA, 0xCB, 0xCC, 0xCD, 0xCE, 0xCF,
               0xF1, 0xFF, 0x134, 0x135})


def helper_symbol(name: str) -> str:
    return HELPER_PREFIX + name
