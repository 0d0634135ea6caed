"""utils.env.keep_large_blocks: glibc keeps freed large blocks in its heap instead of unmapping
them."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import ctypes, resource, sys
sys.path.insert(0, {root!r})
from utils.env import keep_large_blocks
if {keep}:
    assert keep_large_blocks()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
def faults_of_a_fresh_100_mb_block():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(100 * 2**20)
    ctypes.memset(block, 1, 100 * 2**20)  # touched, then freed
    libc.free(block)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults_of_a_fresh_100_mb_block()
print(faults_of_a_fresh_100_mb_block())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keep_large_blocks_stops_the_page_faults_of_reallocated_blocks():
    def faults(keep):
        out = subprocess.run(
            [sys.executable, "-c", CHILD.format(root=str(ROOT), keep=keep)],
            capture_output=True,
            text=True,
            check=True,
        )
        return int(out.stdout.split()[-1])

    pages = 100 * 2**20 // 4096
    # glibc's default: unmapped on free, faulted in again (25,600 pages)
    assert faults(False) > pages // 2
    # kept in the heap: the second block reuses the first one's pages
    assert faults(True) < pages // 20
