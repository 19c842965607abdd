"""Shared helpers for the benchmarks: timing, memory, configs, data and baselines.

Every benchmark reports the median of ``repeat`` runs and a ratio against a
reference timed in the same process, because the machines these run on are
small (2 cores) and shared, so absolute numbers drift from run to run.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import resource
import socket
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from driftgauge.baseline import Baseline, build_baseline
from driftgauge.config import Config, config_from_mapping

__all__ = [
    "DATA_DIR",
    "REPO",
    "Timing",
    "bench_config",
    "current_rss",
    "field_names",
    "free_port",
    "heap_in_use",
    "human_bytes",
    "parquet_baseline",
    "peak_rss",
    "print_table",
    "synthetic_columns",
    "target_line",
    "time_interleaved",
    "time_median",
    "time_paired",
    "write_parquet",
]

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = REPO / "bench" / ".data"  # git-ignored

CATEGORIES = np.array([f"cat_{i:02d}" for i in range(30)])
# A skewed but fixed category mix, so the frozen top categories cover most traffic.
_CATEGORY_WEIGHTS = 1.0 / np.arange(1, len(CATEGORIES) + 1)
CATEGORY_P = _CATEGORY_WEIGHTS / _CATEGORY_WEIGHTS.sum()


@dataclass(frozen=True, slots=True)
class Timing:
    """Wall-clock seconds of each repetition; the median is what gets reported."""

    runs: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def spread(self) -> str:
        return f"{min(self.runs):.4g}–{max(self.runs):.4g}"


def time_median(
    fn: Callable[[], object],
    repeat: int = 5,
    setup: Callable[[], object] | None = None,
    warmup: int = 1,
) -> Timing:
    """Run ``fn`` ``warmup`` times untimed, then ``repeat`` times; ``setup`` runs untimed before each."""
    for _ in range(warmup):
        if setup is not None:
            setup()
        fn()
    runs = []
    for _ in range(repeat):
        if setup is not None:
            setup()
        gc.collect()
        started = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - started)
    return Timing(tuple(runs))


def time_interleaved(
    reference: Callable[[], object],
    subjects: Sequence[Callable[[], object]],
    repeat: int = 5,
    warmup: int = 1,
) -> tuple[Timing, list[Timing], list[float]]:
    """Time ``reference`` then each subject, ``repeat`` rounds; per subject the median ratio.

    Running each subject right beside a reference run and taking the median
    of the per-round ratios cancels most of the noise a shared machine adds
    (another job's burst slows both sides of a round).
    """
    for _ in range(warmup):
        reference()
        for subject in subjects:
            subject()
    reference_runs: list[float] = []
    subject_runs: list[list[float]] = [[] for _ in subjects]
    ratios: list[list[float]] = [[] for _ in subjects]
    for _ in range(repeat):
        gc.collect()
        started = time.perf_counter()
        reference()
        base = time.perf_counter() - started
        reference_runs.append(base)
        for index, subject in enumerate(subjects):
            gc.collect()
            started = time.perf_counter()
            subject()
            elapsed = time.perf_counter() - started
            subject_runs[index].append(elapsed)
            ratios[index].append(elapsed / base)
    return (
        Timing(tuple(reference_runs)),
        [Timing(tuple(runs)) for runs in subject_runs],
        [statistics.median(r) for r in ratios],
    )


def time_paired(
    subject: Callable[[], object],
    reference: Callable[[], object],
    repeat: int = 5,
    warmup: int = 1,
) -> tuple[Timing, Timing, float]:
    """One subject against a reference (see :func:`time_interleaved`): timings and median ratio."""
    reference_timing, subjects, ratios = time_interleaved(reference, [subject], repeat, warmup)
    return subjects[0], reference_timing, ratios[0]


def peak_rss() -> int:
    """Peak resident set size of this process, in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_rss() -> int:
    """Current resident set size of this process, in bytes."""
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _mallinfo2() -> Callable[[], _MallInfo2] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name)
    function = getattr(libc, "mallinfo2", None)
    if function is None:
        return None
    function.restype = _MallInfo2
    return function  # type: ignore[no-any-return]


_MALLINFO2 = _mallinfo2()


def heap_in_use() -> int | None:
    """Bytes the C heap (glibc malloc: C++ sketches, numpy buffers) holds right now, if known."""
    if _MALLINFO2 is None:
        return None
    info = _MALLINFO2()
    return int(info.uordblks + info.hblkhd)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def field_names(numeric: int, categorical: int) -> tuple[list[str], list[str]]:
    """Column names: ``n000…`` numeric, ``c000…`` categorical."""
    return [f"n{i:03d}" for i in range(numeric)], [f"c{i:03d}" for i in range(categorical)]


def bench_config(
    numeric: int,
    categorical: int,
    *,
    windows: Sequence[str] = ("5m", "1h"),
    window_slices: int = 10,
    baseline: Path | None = None,
    min_observations: int = 100,
    recompute_interval: str = "1h",
    alerting: dict[str, Any] | None = None,
) -> Config:
    """A config of ``numeric`` + ``categorical`` features (tail source; nothing is tailed),
    with ``alerting`` as its ``alerting:`` section if given."""
    numeric_names, categorical_names = field_names(numeric, categorical)
    # A sidecar built from this config tails an empty file: no traffic but the benchmark's own.
    quiet_log = DATA_DIR / "unused-requests.jsonl"
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    quiet_log.touch()
    raw: dict[str, Any] = {
        "model": "bench",
        "protocol": "kserve-v2",
        "source": {"tail": {"path": str(quiet_log), "poll_interval": "1s", "start_at": "end"}},
        "metrics": {"listen": "127.0.0.1:0", "recompute_interval": recompute_interval},
        "baseline": str(baseline or DATA_DIR / "unused.dgb"),
        "features": [{"name": n, "type": "numeric"} for n in numeric_names]
        + [{"name": n, "type": "categorical"} for n in categorical_names],
        "windows": list(windows),
        "window_slices": window_slices,
        "min_observations": min_observations,
    }
    if alerting is not None:
        raw["alerting"] = alerting
    return config_from_mapping(raw, base=DATA_DIR)


def synthetic_columns(
    rows: int, numeric: int, categorical: int, seed: int = 0, shift: float = 0.0
) -> dict[str, Any]:
    """One numpy array per field: normals with per-column location/scale, skewed categories.

    Typed ``Any`` per column because ``Extracted.columns`` is typed as sequences,
    which numpy arrays are at run time but not to a type checker.
    """
    rng = np.random.default_rng(seed)
    numeric_names, categorical_names = field_names(numeric, categorical)
    columns: dict[str, npt.NDArray[Any]] = {}
    for index, name in enumerate(numeric_names):
        location, scale = float(index % 7), 1.0 + (index % 3)
        columns[name] = rng.normal(location + shift, scale, rows)
    for name in categorical_names:
        columns[name] = rng.choice(CATEGORIES, rows, p=CATEGORY_P)
    return columns


def write_parquet(path: Path, columns: dict[str, npt.NDArray[Any]]) -> Path:
    """``columns`` as a Parquet file (pyarrow)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({name: pa.array(values) for name, values in columns.items()})
    pq.write_table(table, path)
    return path


def parquet_baseline(config: Config, rows: int, seed: int = 1) -> Baseline:
    """A baseline built with the real ``build_baseline`` from a generated Parquet file."""
    numeric = sum(1 for f in config.fields if f.type == "numeric")
    categorical = len(config.fields) - numeric
    path = DATA_DIR / f"baseline-train-{numeric}n{categorical}c-{rows}.parquet"
    if not path.exists():
        write_parquet(path, synthetic_columns(rows, numeric, categorical, seed=seed))
    return build_baseline(config, [path])


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A plain aligned text table on stdout."""
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    print(f"\n{title}")
    line = "  ".join("-" * w for w in widths)
    for index, row in enumerate(cells):
        print(
            "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if index == 0:
            print(line)
    sys.stdout.flush()


def target_line(description: str, met: bool, value: str) -> str:
    """The final one-line verdict of a target, printed and returned."""
    line = f"target {description}: {'MET' if met else 'MISSED'} ({value})"
    print(line)
    return line
