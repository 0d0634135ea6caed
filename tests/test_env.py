"""utils.env.keep_large_blocks: freed large CPU tensors are reused instead of page-faulted in again."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import resource, sys, torch
sys.path.insert(0, {root!r})
from utils.env import keep_large_blocks
if {keep}:
    assert keep_large_blocks()
def faults_of_a_fresh_100_mb_tensor():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.empty(25 * 2**20).fill_(1.0)  # allocated, touched, freed
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults_of_a_fresh_100_mb_tensor()
print(faults_of_a_fresh_100_mb_tensor())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keep_large_blocks_stops_the_page_faults_of_reallocated_tensors():
    def faults(keep):
        out = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT), keep=keep)], capture_output=True,
                             text=True, check=True)
        return int(out.stdout.split()[-1])
    pages = 100 * 2**20 // 4096
    assert faults(False) > pages // 2  # glibc's default: unmapped on free, faulted in again (25,600 pages)
    assert faults(True) < pages // 20  # kept in the heap: the second tensor reuses the first one's pages
