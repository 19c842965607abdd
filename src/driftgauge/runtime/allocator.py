"""The C allocator's per-thread arenas, bounded so the sidecar's memory stays flat; and the
objects built at startup kept out of the cyclic garbage collector's full passes.

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
import gc
import os
import sys

__all__ = ["ARENAS", "freeze_startup_objects", "limit_arenas", "unfreeze_objects"]

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


def freeze_startup_objects() -> None:
    """Leave what the sidecar built at startup (config, baseline, trackers, metric families)
    out of the cyclic garbage collector's passes from now on.

    The monitoring consumer allocates containers by the thousand (decoded
    bodies), so the collector runs often, and each full pass walked every
    object alive, startup's included: in the proxy benchmark about 38 ms per
    full pass, 7 µs per request.  Frozen objects are still freed when no
    longer referenced; only a reference cycle among them would now outlive
    its use.
    """
    gc.collect()
    gc.freeze()


def unfreeze_objects() -> None:
    """Hand the frozen objects back to the collector, once the sidecar has stopped.

    The collection at interpreter exit skips frozen objects: the sketches
    among them would outlive the DataSketches module, which then wrote about
    600 lines of "nanobind: leaked …" to stderr at every shutdown.
    """
    gc.unfreeze()
    gc.collect()
