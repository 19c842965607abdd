"""Window-update throughput of ``Monitor.ingest`` and the memory a window's sketches hold.

Run from the repository root::

    .venv/bin/python -m bench.ingest            # about 1-2 minutes on 2 shared cores
    .venv/bin/python -m bench.ingest --quick    # a smoke run

What it measures:

* feature values per second through ``Monitor.ingest`` (KLL sketch + exact bin
  counts + counters, every configured window) for 20 numeric + 2 categorical
  features in batches of 8,192 rows, the columns given as numpy arrays (the
  fast path) and as Python lists (what JSON parsing yields); with the default
  2 windows [5m, 1h] and with 1 window, so the cost of one window shows;
* the reference: ``numpy.sort`` of the same arrays, timed beside each run;
* a breakdown of one batch into the steps ``ingest`` takes, to show where the
  time goes (``--no-breakdown`` skips it; ``--profile`` adds cProfile);
* memory: bytes per feature per window after 1M values per feature spread
  over the window's 10 slices, serialized and in memory.

Target (from the issue): ≥ 10 million feature values/s on one core with the
default two windows, i.e. no slower than ``numpy.sort`` of the same values.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np

from bench._common import (
    bench_config,
    heap_in_use,
    parquet_baseline,
    print_table,
    synthetic_columns,
    target_line,
    time_interleaved,
    time_median,
)
from driftgauge.baseline import Baseline
from driftgauge.monitor import Monitor
from driftgauge.sketches.summary import (
    LIVE_ITEMS,
    CategoricalSummary,
    NumericSummary,
    split_finite,
    to_categories,
    to_floats,
)
from driftgauge.typing import Extracted

TARGET_VALUES_PER_SECOND = 10e6
NUMPY_TRACEMALLOC_DOMAIN = 389047  # numpy reports its data buffers to tracemalloc under this
PYMALLOC_LIMIT = 512  # CPython's small-request threshold: larger requests go to malloc
Columns = dict[str, Any]


def _batches(
    count: int, rows: int, numeric: int, categorical: int, as_lists: bool
) -> list[Extracted]:
    batches = []
    for seed in range(count):
        arrays = synthetic_columns(rows, numeric, categorical, seed=100 + seed, shift=0.1)
        columns: Columns = {k: v.tolist() for k, v in arrays.items()} if as_lists else arrays
        batches.append(Extracted(rows, columns))
    return batches


def _sort_reference(batches: list[Extracted]) -> Callable[[], None]:
    """``numpy.sort`` of every column of every batch, the arrays made up front."""
    arrays = [np.asarray(column) for b in batches for column in b.columns.values()]

    def run() -> None:
        for array in arrays:
            np.sort(array)

    return run


def _ingest_run(monitor: Monitor, batches: list[Extracted], passes: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(passes):
            for batch in batches:
                monitor.ingest([batch], now=1_000.0)

    return run


def throughput(args: argparse.Namespace, baseline: Baseline) -> tuple[float, float]:
    """The table of values/s per format and window count; the default case's rate and ratio."""
    numeric, categorical, rows = args.numeric, args.categorical, args.rows
    fields = numeric + categorical
    table: list[list[object]] = []
    costs: list[list[object]] = []
    headline = (0.0, 0.0)
    for fmt in ("numpy", "lists"):
        batches = _batches(args.distinct_batches, rows, numeric, categorical, fmt == "lists")
        passes = max(1, args.batches // len(batches))
        values = passes * len(batches) * rows * fields
        reference = _sort_reference(batches)

        def sort_all(reference: Callable[[], None] = reference, passes: int = passes) -> None:
            for _ in range(passes):
                reference()

        window_sets = (("5m", "1h"), ("5m",))
        runs = [
            _ingest_run(
                Monitor(bench_config(numeric, categorical, windows=w), baseline), batches, passes
            )
            for w in window_sets
        ]
        ref, subjects, ratios = time_interleaved(sort_all, runs, args.repeat)
        for windows, subject, ratio in zip(window_sets, subjects, ratios, strict=True):
            rate = values / subject.median
            if fmt == "numpy" and len(windows) == 2:
                headline = (rate, ratio)
            table.append(
                [
                    fmt,
                    len(windows),
                    f"{values:,}",
                    f"{subject.median * 1e3:.0f}",
                    subject.spread,
                    f"{rate / 1e6:.2f}",
                    f"{values / ref.median / 1e6:.1f}",
                    f"{ratio:.2f}×",
                ]
            )
        # Costs from the ratios (each measured beside a sort) scaled by the median sort time:
        # steadier on a noisy machine than subtracting two separately timed medians.
        sort_ns = ref.median / values * 1e9
        two, one = ratios[0] * sort_ns, ratios[1] * sort_ns
        costs.append(
            [
                fmt,
                f"{sort_ns:.1f}",
                f"{one:.1f}",
                f"{two:.1f}",
                f"{two - one:.1f}",
                f"{2 * one - two:.1f}",
            ]
        )
    print_table(
        f"Monitor.ingest, {numeric} numeric + {categorical} categorical features, "
        f"batches of {rows:,} rows (median of {args.repeat}, each run beside a numpy.sort run)",
        [
            "columns",
            "windows",
            "values/rep",
            "ingest ms",
            "spread s",
            "ingest M values/s",
            "np.sort M values/s",
            "time vs np.sort",
        ],
        table,
    )
    print_table(
        "cost per feature value in ns (median ratio to np.sort × np.sort's time): "
        "one extra window, and the part all windows share",
        ["columns", "np.sort", "1 window", "2 windows", "per extra window", "shared"],
        costs,
    )
    return headline


def breakdown(args: argparse.Namespace, baseline: Baseline) -> None:
    """Time each step ``ingest`` takes on one batch, with the real functions, to show the split."""
    numeric, categorical, rows = args.numeric, args.categorical, args.rows
    arrays = synthetic_columns(rows, numeric, categorical, seed=7, shift=0.1)
    lists = {k: v.tolist() for k, v in arrays.items()}
    numeric_names = [n for n in arrays if n.startswith("n")]
    categorical_names = [n for n in arrays if n.startswith("c")]
    held = {name: baseline.fields[name].summary for name in arrays}
    fresh = {  # as the windows hold them
        name: summary.empty_like(LIVE_ITEMS)
        if isinstance(summary, NumericSummary)
        else summary.empty_like()
        for name, summary in held.items()
    }
    steps: list[tuple[str, int, Callable[[], object]]] = []

    def numeric_step(fn: Callable[[str], object]) -> Callable[[], None]:
        def run() -> None:
            for name in numeric_names:
                fn(name)

        return run

    def categorical_step(fn: Callable[[str], object]) -> Callable[[], None]:
        def run() -> None:
            for name in categorical_names:
                fn(name)

        return run

    def binning(name: str) -> object:
        summary = held[name]
        assert isinstance(summary, NumericSummary)
        return summary.binning.count(arrays[name])

    def kll(name: str) -> object:
        summary = fresh[name]
        assert isinstance(summary, NumericSummary)
        summary.kll.update(arrays[name])
        return None

    def moments(name: str) -> object:
        values = arrays[name]
        return float(values.sum()), float(values.min()), float(values.max())

    def out_of_range(name: str) -> object:
        values = arrays[name]
        return np.count_nonzero((values < -5.0) | (values > 5.0))

    def unique(name: str) -> object:
        return np.unique(arrays[name], return_counts=True)

    uniques = {name: np.unique(arrays[name], return_counts=True) for name in categorical_names}

    def count_table(name: str) -> object:
        summary = held[name]
        assert isinstance(summary, CategoricalSummary)
        distinct, tally = uniques[name]
        return summary.binning.count_table(
            dict(zip(distinct.tolist(), tally.tolist(), strict=True))
        )

    def frequent_hll(name: str) -> object:
        summary = fresh[name]
        assert isinstance(summary, CategoricalSummary)
        distinct, tally = uniques[name]
        for value, n in zip(distinct.tolist(), tally.tolist(), strict=True):
            summary.frequent.update(value, n)
            summary.hll.update(value)
        return None

    steps += [
        ("numeric: to_floats(list) [lists only]", numeric, numeric_step(lambda n: to_floats(lists[n]))),
        ("numeric: to_floats(ndarray)", numeric, numeric_step(lambda n: to_floats(arrays[n]))),
        ("numeric: split_finite", numeric, numeric_step(lambda n: split_finite(arrays[n]))),
        ("numeric: bins (searchsorted+bincount)", numeric, numeric_step(binning)),
        ("numeric: kll.update  (per window)", numeric, numeric_step(kll)),
        ("numeric: sum/min/max (per window)", numeric, numeric_step(moments)),
        ("numeric: out-of-range count", numeric, numeric_step(out_of_range)),
        ("numeric: np.sort (reference)", numeric, numeric_step(lambda n: np.sort(arrays[n]))),
        ("categ.: to_categories(list) [lists]", categorical, categorical_step(lambda n: to_categories(lists[n]))),
        ("categ.: np.unique(return_counts)", categorical, categorical_step(unique)),
        ("categ.: count_table", categorical, categorical_step(count_table)),
        ("categ.: frequent+hll (per window)", categorical, categorical_step(frequent_hll)),
        ("categ.: np.sort (reference)", categorical, categorical_step(lambda n: np.sort(arrays[n]))),
    ]  # fmt: skip
    if not categorical:
        steps = [s for s in steps if not s[0].startswith("categ")]
    table = []
    loops = 20
    for label, columns, step in steps:

        def repeated(step: Callable[[], object] = step) -> None:
            for _ in range(loops):
                step()

        timing = time_median(repeated, args.repeat)
        per_value = timing.median / (loops * columns * rows)
        table.append([label, f"{per_value * 1e9:.1f}", f"{1 / per_value / 1e6:.1f}"])
    print_table(
        f"where one batch's time goes: each step of ingest alone, batch of {rows:,} rows "
        f"(median of {args.repeat})",
        ["step", "ns/value", "M values/s"],
        table,
    )


def profile(args: argparse.Namespace, baseline: Baseline) -> None:
    config = bench_config(args.numeric, args.categorical)
    monitor = Monitor(config, baseline)
    batches = _batches(args.distinct_batches, args.rows, args.numeric, args.categorical, False)
    run = _ingest_run(monitor, batches, max(1, args.batches // len(batches)))
    run()
    profiler = cProfile.Profile()
    profiler.enable()
    run()
    profiler.disable()
    print("\ncProfile of Monitor.ingest, numpy columns, 2 windows (the KLL update is C code")
    print("called from NumericSummary.add, so it shows as add's own time):")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(12)


def _slice_bytes(monitor: Monitor) -> tuple[int, int, int]:
    """Serialized bytes of all slices of all windows, items retained by KLL, and slice count."""
    total = retained = slices = 0
    for window in monitor.windows.values():
        for piece in window.slices():
            slices += 1
            for summary in piece.summaries.values():
                total += summary.bins.nbytes
                if isinstance(summary, NumericSummary):
                    total += len(summary.kll.serialize())
                    retained += summary.kll.num_retained
                else:
                    total += len(summary.frequent.serialize())
                    total += len(summary.hll.serialize_updatable())
    return total, retained, slices


def memory(args: argparse.Namespace, baseline_for: Callable[[int, int], Baseline]) -> float:
    """Bytes per feature per window after ``--memory-values`` values per feature in all slices.

    The sketches live in C++ (DataSketches), which tracemalloc cannot see, and
    small Python objects live in pymalloc's mmap'd arenas, which malloc
    statistics cannot see; so the in-memory figure is glibc's in-use delta
    (``mallinfo2``, less tracemalloc's own) plus tracemalloc's delta of the
    allocations pymalloc serves (512 bytes or less, numpy's buffers left
    out).  Larger Python allocations (a sealed slice's sketch bytes, big
    dicts) are malloc'd and already in the first.  Readings are taken before
    the monitor is built, once it is built and after the ingest: "window"
    is what the slices added, "fixed" what every field holds once whatever
    the windows (the baseline's CDF table, counters, bin tables).
    """
    per_feature = args.memory_values
    results = []
    window_bytes = 0.0
    for kind, features in (
        ("numeric", args.memory_numeric),
        ("categorical", args.memory_categorical),
    ):
        if features == 0:
            continue
        numeric = features if kind == "numeric" else 0
        categorical = features if kind == "categorical" else 0
        baseline = baseline_for(numeric, categorical)
        config = bench_config(numeric, categorical, windows=("1h",), window_slices=10)
        slices = config.windows[0].slices
        slice_seconds = config.windows[0].slice_seconds
        batch = _batches(1, args.rows, numeric, categorical, False)[0]
        batches_per_slice = max(1, per_feature // slices // args.rows)
        # A throwaway monitor first: one-time lazy set-ups (imports, numpy's caches) are not
        # the monitor's state.
        Monitor(config, baseline).ingest([batch], now=0.0)
        gc.collect()
        tracemalloc.start()
        before = _reading()
        monitor = Monitor(config, baseline)
        gc.collect()
        built = _reading()
        started = time.perf_counter()
        for index in range(slices):
            now = 10_000.0 + index * slice_seconds
            for _ in range(batches_per_slice):
                monitor.ingest([batch], now=now)
        elapsed = time.perf_counter() - started
        gc.collect()
        after = _reading()
        tracemalloc.stop()
        serialized, retained, slice_count = _slice_bytes(monitor)
        values = slices * batches_per_slice * args.rows
        assert slice_count == slices
        heap, python = (after[0] - built[0]) / features, (after[1] - built[1]) / features
        fixed = (built[0] + built[1] - before[0] - before[1]) / features
        if kind == "numeric":
            window_bytes = heap + python
        results.append(
            [
                kind,
                features,
                f"{values:,}",
                f"{serialized / features:,.0f}",
                f"{heap:,.0f}",
                f"{python:,.0f}",
                f"{heap + python:,.0f}",
                f"{fixed:,.0f}",
                f"{heap + python + fixed:,.0f}",
                f"{retained / features / slices:,.0f}" if kind == "numeric" else "-",
                f"{elapsed:.1f}",
            ]
        )
        del monitor
    print_table(
        f"memory per feature per window: 1 window of {slices} slices, "
        f"~{per_feature:,} values per feature spread evenly over the slices",
        [
            "fields",
            "features",
            "values/feature",
            "serialized B",
            "C heap Δ B",
            "Python Δ B",
            "window B",
            "fixed B",
            "window + fixed B",
            "KLL items/slice",
            "ingest s",
        ],
        results,
    )
    print(
        "  serialized = DataSketches serialize() of every slice's sketches + bin arrays; "
        "C heap Δ = glibc mallinfo2 in-use delta (C++ sketches, numpy buffers, Python objects "
        "over 512 B) less tracemalloc's own; Python Δ = tracemalloc delta of pymalloc's "
        "allocations (≤ 512 B, no numpy buffers); window = what the ingest added to the "
        "built monitor; fixed = the monitor built, before any value; all per feature"
    )
    return window_bytes


def _reading() -> tuple[float, int]:
    """(C heap in use less tracemalloc's own, pymalloc bytes traced), after a collection."""
    heap = heap_in_use()
    own = tracemalloc.get_tracemalloc_memory()
    return (float("nan") if heap is None else float(heap - own)), _python_bytes()


def _python_bytes() -> int:
    """Bytes of the traced allocations pymalloc serves (larger ones are malloc's)."""
    traces = tracemalloc.take_snapshot().traces
    return sum(
        trace.size
        for trace in traces
        if trace.size <= PYMALLOC_LIMIT and trace.domain != NUMPY_TRACEMALLOC_DOMAIN
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--numeric", type=int, default=20)
    parser.add_argument("--categorical", type=int, default=2)
    parser.add_argument("--rows", type=int, default=8_192, help="rows per batch")
    parser.add_argument(
        "--batches", type=int, default=32, help="batches ingested per timed repetition"
    )
    parser.add_argument("--distinct-batches", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--baseline-rows", type=int, default=50_000)
    parser.add_argument("--memory-values", type=int, default=1_000_000)
    parser.add_argument(
        "--memory-numeric", type=int, default=64, help="features for the memory run"
    )
    parser.add_argument("--memory-categorical", type=int, default=16)
    parser.add_argument("--no-breakdown", action="store_true")
    parser.add_argument("--no-throughput", action="store_true", help="skip the timed runs")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of ingest")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.batches, args.distinct_batches, args.repeat = 4, 2, 3
        args.memory_values, args.memory_numeric, args.memory_categorical = 100_000, 8, 4
        args.baseline_rows = 10_000

    started = time.perf_counter()
    baselines: dict[tuple[int, int], Baseline] = {}

    def baseline_for(numeric: int, categorical: int) -> Baseline:
        key = (numeric, categorical)
        if key not in baselines:
            baselines[key] = parquet_baseline(bench_config(*key), args.baseline_rows)
        return baselines[key]

    baseline = baseline_for(args.numeric, args.categorical)
    print(
        f"driftgauge ingest benchmark: {args.numeric} numeric + {args.categorical} categorical "
        f"features, baseline of {args.baseline_rows:,} rows, KLL k={baseline.kll_k}"
    )
    rate, ratio = (0.0, 0.0) if args.no_throughput else throughput(args, baseline)
    if not args.no_breakdown:
        breakdown(args, baseline)
    if args.profile:
        profile(args, baseline)
    if not args.no_memory:
        memory(args, baseline_for)
    print(f"\n(total {time.perf_counter() - started:.0f} s)")
    if args.no_throughput:
        return
    target_line(
        "window update ≥ 10M feature values/s (numpy columns, 2 windows)",
        rate >= TARGET_VALUES_PER_SECOND,
        f"{rate / 1e6:.2f}M values/s",
    )
    target_line(
        "window update no slower than numpy.sort of the same values (numpy columns, 2 windows)",
        ratio <= 1.0,
        f"{ratio:.2f}× the time of numpy.sort",
    )


if __name__ == "__main__":
    main()
