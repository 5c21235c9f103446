"""Keep freed memory in the process instead of handing it back to the kernel (glibc only).

Every training step frees and re-allocates the same few large buffers (a gradient of V*H^2
floats, the optimiser's temporaries: 6.5 MB each at H=256, V=25). glibc serves blocks that
large with a fresh ``mmap`` and returns them with ``munmap`` on free, so every step pays a
page fault for each 4 KiB page it touches again. On this project's (virtualised) machines that
was the largest single cost of the H=256 backward: ``benchmarks/bench_training.py`` measured
backward 38 ms -> 13 ms and forward+backward 58 -> 40 ms on a loaded core. Raising glibc's
mmap and trim thresholds keeps those blocks in the heap for reuse.
"""
from __future__ import annotations

import ctypes
import ctypes.util

# mallopt parameter numbers from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Blocks up to this size come from the heap.
MMAP_THRESHOLD = 2**30
#: Free memory kept at the top of the heap before glibc returns it to the kernel.
TRIM_THRESHOLD = 2**31 - 1

_done = False


def retain_freed_memory() -> bool:
    """Raise glibc's mmap/trim thresholds once per process; False where there is no glibc.

    Process-wide and permanent: memory the process freed stays reserved for its own next
    allocations (the peak resident size stays as it was; nothing else changes).
    """
    global _done
    if _done:
        return True
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):   # not glibc (musl, macOS): nothing to tune
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    ok = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    _done = ok
    return ok
