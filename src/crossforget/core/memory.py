"""Keep freed memory for reuse (glibc), so that CPU training steps stop re-faulting their pages.

glibc serves blocks above a threshold (128 KiB at start, raised as large blocks are freed, up to
32 MiB) with fresh pages from the kernel, and returns the freed top of the heap to it. A training step
of the small model frees and re-allocates its activations and gradients (a few MiB each) every step,
so by default each step takes about 3,200 page faults on this project's machine, and with them a
quarter of its CPU time. With fixed thresholds, blocks up to ``MMAP_THRESHOLD`` come from the heap
and up to ``TRIM_THRESHOLD`` of freed memory stays there for the next step: no faults after the first.

This changes no number (only where memory comes from) and lets the process keep up to
``TRIM_THRESHOLD`` more than it uses. It is process-wide, so it is applied where programs start (the
command line) and by ``train_model``; elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
import sys

MMAP_THRESHOLD = 64 << 20  # bytes: larger blocks (e.g. a whole decoded image set) still get their own pages
TRIM_THRESHOLD = 512 << 20  # bytes of free heap kept before any is returned to the kernel
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters in glibc's <malloc.h>
_state: dict[str, bool] = {}


def keep_freed_memory() -> bool:
    """Apply the thresholds once per process; returns whether they are in effect (False off glibc)."""
    if "applied" not in _state:
        _state["applied"] = _apply()
    return _state["applied"]


def _apply() -> bool:
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; the mmap threshold first, as it also stops the dynamic adjustment.
    return mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
