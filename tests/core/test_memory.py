"""keep_freed_memory: big blocks are reused instead of re-faulted, measured in a fresh process."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

from crossforget.core.memory import keep_freed_memory

# 40 MB blocks: above glibc's largest dynamic mmap threshold (32 MiB), so by default every one gets
# fresh pages from the kernel (568 page faults each on this project's machine, fewer with huge pages),
# below MMAP_THRESHOLD once the setting is applied, so the freed block is reused.
_PROBE = """
import json, resource, sys
import numpy as np
if sys.argv[1] == "keep":
    from crossforget.core.memory import keep_freed_memory
    assert keep_freed_memory()
np.ones(5_000_000)  # warm-up
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    block = np.ones(5_000_000)
    del block
print(json.dumps((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10))
"""


def _faults_per_block(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True)
    return float(json.loads(out.stdout))


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt thresholds are glibc's")
def test_freed_blocks_are_reused_instead_of_faulted_in_again():
    assert keep_freed_memory() and keep_freed_memory()  # idempotent
    default, kept = _faults_per_block("default"), _faults_per_block("keep")
    assert kept < 10 and default > 10 * (kept + 1)
