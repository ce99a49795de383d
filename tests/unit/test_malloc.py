"""The C heap: large blocks freed go back to the system, not into holes in the heap."""

from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest

# What a busy server does: a large block mapped and freed (which raises glibc's thresholds by
# default), then blocks the size of a transaction table needed while the heap holds others.
PROBE = """
import ctypes, sys
from sentral.app import tune_malloc
libc = ctypes.CDLL(None)
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = MallInfo2
first = bytearray(1024 * 1024)
del first
if sys.argv[1] == "tuned":
    assert tune_malloc()
before = libc.mallinfo2().hblks
blocks = [bytearray(256 * 1024) for _ in range(50)]
print(libc.mallinfo2().hblks - before)
"""


def _glibc() -> bool:
    try:
        ctypes.CDLL(None).gnu_get_libc_version  # noqa: B018
    except AttributeError:
        return False
    return True


def _blocks_mapped(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=60, check=True)
    return int(done.stdout)


@pytest.mark.skipif(not _glibc(), reason="the thresholds are glibc's")
def test_large_blocks_get_mappings_of_their_own_after_a_large_free() -> None:
    # By default the 1 MiB block freed raised the threshold to 1 MiB: every later 256 KiB block is
    # cut from the heap. Held fixed, those the heap's holes cannot take are mapped (and given
    # back when freed).
    assert _blocks_mapped("default") == 0
    assert _blocks_mapped("tuned") >= 25
