"""The C allocator's per-thread arenas, bounded so the sidecar's memory stays flat.

glibc's malloc gives each thread that allocates while another holds an
arena a new arena of its own, up to eight per core.  The sidecar's worker
threads (recompute, snapshots, slow ingest slices, /metrics rendering) come
and go in a shared pool, so over minutes more threads each grow their own
arena, and freed memory in one arena is not reused by the others: the soak
run (``bench/soak.py``, 150 s) ended at 163 MiB with the default and at
144 MiB with two arenas, and grew 23% over its second half against 5%.

``MALLOC_ARENA_MAX`` set in the environment wins (glibc reads it at start);
otherwise :func:`limit_arenas` asks for ``ARENAS`` through ``mallopt``
before any worker thread exists.  Other C libraries (musl) have no such
arenas and no ``mallopt``: nothing to do there.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["ARENAS", "limit_arenas"]

ARENAS = 2
_M_ARENA_MAX = -8  # glibc's malloc.h


def limit_arenas(arenas: int = ARENAS) -> bool:
    """Bound glibc's malloc arenas for threads started from now on; True when applied."""
    if sys.platform != "linux" or "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, arenas))
