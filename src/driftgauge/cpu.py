"""numpy's sort on AMD Zen 4: its AVX-512 path, ten times slower than AVX2 there.

numpy's AVX-512 sort (x86-simd-sort) stores with ``vpcompress``, which Zen 4
runs as slow microcode (numpy/x86-simd-sort#6): on this project's 2-core Zen 4
machines ``np.sort`` of 65,536 float32 values takes 1.4–1.9 ms against
0.25–0.35 ms with AVX-512 dispatch off, and the baseline build's first pass
sorts every numeric chunk (docs/performance.md, issue #14).  numpy reads which
features to leave out from ``NPY_DISABLE_CPU_FEATURES`` once, when it is first
imported, so :func:`prefer_avx2_sort` sets it before that, on Zen 4 only (its
family 25 with AVX-512; Intel's AVX-512 sort is the faster one), and never
over a value the user set (an empty one keeps numpy's choice).  The variable
passes to the build's workers and any child process.
"""

from __future__ import annotations

import os
import sys
from importlib import metadata

__all__ = ["prefer_avx2_sort", "zen4"]

VARIABLE = "NPY_DISABLE_CPU_FEATURES"
# numpy 2.4 groups its x86 targets (X86_V4); earlier releases name each AVX-512 target, and
# warn about (then ignore) a name they do not dispatch.
_GROUPED = "X86_V4 AVX512_ICL AVX512_SPR"
_NAMED = "AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL"


def zen4(cpuinfo: str) -> bool:
    """Whether ``/proc/cpuinfo``'s first processor is an AMD Zen 4 (family 25 with AVX-512)."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            break  # the first processor's block ends
        name, _, value = line.partition(":")
        fields[name.strip()] = value.strip()
    return (
        fields.get("vendor_id") == "AuthenticAMD"
        and fields.get("cpu family") == "25"
        and "avx512f" in fields.get("flags", "").split()
    )


def _numpy_features() -> str:
    try:
        major, minor = (int(part) for part in metadata.version("numpy").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        return _GROUPED
    return _GROUPED if (major, minor) >= (2, 4) else _NAMED


def prefer_avx2_sort(cpuinfo_path: str = "/proc/cpuinfo") -> bool:
    """Leave numpy's AVX-512 targets out on Zen 4, if numpy is not imported yet and the user
    set nothing; whether it did."""
    if VARIABLE in os.environ or "numpy" in sys.modules:
        return False
    try:
        with open(cpuinfo_path, encoding="utf-8", errors="replace") as handle:
            found = zen4(handle.read(1 << 16))
    except OSError:  # not Linux
        return False
    if found:
        os.environ[VARIABLE] = _numpy_features()
    return found
