"""Time of ``Monitor.compute()`` for 1,000 features in 2 windows, and where it goes.

Run from the repository root::

    .venv/bin/python -m bench.stats            # about 3 minutes on 2 shared cores
    .venv/bin/python -m bench.stats --quick    # a smoke run

Setup: 900 numeric + 100 categorical features (``--numeric``/``--categorical``),
windows [5m, 1h] of 10 slices each, a baseline built by ``build_baseline``
from a generated Parquet file.  Traffic is ingested at chosen clock times so
the 5m window holds ``--values`` values per feature in all 10 of its slices
and the 1h window holds those plus ``--values``·0.9 more spread over its
other 9 slices.

It reports the median of 5 ``compute()`` runs, each beside a reference run of
``numpy.sort`` over all the raw values of the 5m window (every feature's
array, numeric and categorical), and a breakdown of one compute into its
steps (window merges, quantiles, PSI/JS, KS, p-values, χ²) with the real
functions.  Target (from the issue): under 1 s.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from bench._common import (
    bench_config,
    parquet_baseline,
    print_table,
    synthetic_columns,
    target_line,
    time_interleaved,
    time_median,
)
from driftgauge import stats
from driftgauge.baseline import Baseline
from driftgauge.monitor import QUANTILES, Monitor
from driftgauge.sketches.summary import CategoricalSummary, NumericSummary
from driftgauge.typing import Extracted

TARGET_SECONDS = 1.0
COMPUTE_AT = 3_599.0  # the clock of compute(): inside the last slice of both windows


def fill(monitor: Monitor, numeric: int, categorical: int, values: int) -> list[npt.NDArray[Any]]:
    """Ingest so the 5m window holds ``values`` per feature in 10 slices; return its raw values."""
    per_slice = max(1, values // 10)
    five_minutes: list[dict[str, Any]] = []
    # The 1h window's slices 0-8 (6 minutes each) get one batch each ...
    for index in range(9):
        columns = synthetic_columns(per_slice, numeric, categorical, seed=1_000 + index, shift=0.2)
        monitor.ingest([Extracted(per_slice, columns)], now=index * 360.0 + 1.0)
    # ... and the last 5 minutes, the 5m window's 10 slices of 30 s (and the 1h window's slice 9).
    for index in range(10):
        columns = synthetic_columns(per_slice, numeric, categorical, seed=2_000 + index, shift=0.2)
        monitor.ingest([Extracted(per_slice, columns)], now=3_300.0 + index * 30.0 + 1.0)
        five_minutes.append(columns)
    return [np.concatenate([part[name] for part in five_minutes]) for name in five_minutes[0]]


def breakdown(monitor: Monitor, repeat: int) -> list[tuple[str, float]]:
    """Seconds per step of one compute(), each step timed alone over every field and window."""
    windows = monitor.merged_windows(COMPUTE_AT)
    names = [spec.name for spec in monitor.config.fields]
    held = {name: monitor.baseline.fields[name] for name in names}
    pairs: list[tuple[Any, Any]] = [
        (summaries[name], held[name].summary) for summaries in windows.values() for name in names
    ]
    numeric = [(a, b) for a, b in pairs if isinstance(a, NumericSummary)]
    categorical = [(a, b) for a, b in pairs if isinstance(a, CategoricalSummary)]

    def over(
        items: Sequence[tuple[Any, Any]], fn: Callable[[Any, Any], object]
    ) -> Callable[[], None]:
        def run() -> None:
            for live, base in items:
                fn(live, base)

        return run

    ks_values = {id(a): stats.ks_statistic(a.kll, b.kll) for a, b in numeric}
    steps: list[tuple[str, Callable[[], object]]] = [
        ("merge slices (merged_windows: KLL/HLL/frequent merges)", lambda: monitor.merged_windows(COMPUTE_AT)),
        ("numeric: live quantiles (kll.get_quantiles)", over(numeric, lambda a, b: a.kll.get_quantiles(list(QUANTILES)))),
        ("numeric: psi + noise floor", over(numeric, lambda a, b: (stats.psi(a.bins, b.bins), stats.psi_noise_floor(len(b.bins), a.count, b.count)))),
        ("numeric: js_distance", over(numeric, lambda a, b: stats.js_distance(a.bins, b.bins))),
        ("numeric: ks_statistic (all)", over(numeric, lambda a, b: stats.ks_statistic(a.kll, b.kll))),
        ("  ks: cdf_table of the live sketch (the baseline's is cached)", over(numeric, lambda a, b: stats.cdf_table(a.kll))),
        ("numeric: ks_pvalue (scipy.special.kolmogorov)", over(numeric, lambda a, b: stats.ks_pvalue(ks_values[id(a)], a.count, b.count))),
        ("categorical: psi + js", over(categorical, lambda a, b: (stats.psi(a.bins, b.bins), stats.js_distance(a.bins, b.bins)))),
        ("categorical: chi2_pvalue", over(categorical, lambda a, b: stats.chi2_pvalue(a.bins, b.bins))),
    ]  # fmt: skip
    results = []
    for label, step in steps:
        results.append((label, time_median(step, repeat).median))
    return results


def profile(monitor: Monitor) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    monitor.compute(COMPUTE_AT)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(14)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--numeric", type=int, default=900)
    parser.add_argument("--categorical", type=int, default=100)
    parser.add_argument("--values", type=int, default=20_000, help="per feature in the 5m window")
    parser.add_argument("--baseline-rows", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-breakdown", action="store_true")
    parser.add_argument("--profile", action="store_true", help="print cProfile even if MET")
    parser.add_argument("--quick", action="store_true", help="100 features, for a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.numeric, args.categorical, args.values, args.repeat = 90, 10, 5_000, 3
        args.baseline_rows = 5_000

    started = time.perf_counter()
    features = args.numeric + args.categorical
    config = bench_config(args.numeric, args.categorical, windows=("5m", "1h"), window_slices=10)
    baseline: Baseline = parquet_baseline(config, args.baseline_rows)
    print(
        f"driftgauge stats benchmark: {args.numeric} numeric + {args.categorical} categorical "
        f"features, windows 5m and 1h of 10 slices, baseline of {args.baseline_rows:,} rows "
        f"(built in {time.perf_counter() - started:.1f} s)"
    )
    monitor = Monitor(config, baseline, clock=lambda: COMPUTE_AT)
    filled = time.perf_counter()
    raw = fill(monitor, args.numeric, args.categorical, args.values)
    print(f"ingested in {time.perf_counter() - filled:.1f} s")
    snapshot = monitor.compute(COMPUTE_AT)
    counts: dict[str, list[int]] = {}
    for item in snapshot.fields:
        counts.setdefault(item.window, []).append(item.observations)
    ready = sum(1 for item in snapshot.fields if item.drift_ready)
    print(
        "per-feature window observations: "
        + ", ".join(f"{w} {int(np.median(c)):,}" for w, c in counts.items())
        + f"; drift figures in {ready:,} of {len(snapshot.fields):,} (feature, window) pairs"
    )

    def sort_window() -> None:
        for array in raw:
            np.sort(array)

    reference, (compute,), (ratio,) = time_interleaved(
        sort_window, [lambda: monitor.compute(COMPUTE_AT)], args.repeat
    )
    sorted_values = sum(len(a) for a in raw)
    print_table(
        f"Monitor.compute(), {features:,} features × 2 windows (median of {args.repeat}, each "
        "beside a reference run)",
        ["what", "median s", "spread s", "vs reference"],
        [
            ["compute()", f"{compute.median:.3f}", compute.spread, f"{ratio:.2f}×"],
            [
                f"reference: np.sort of the 5m window's raw values ({sorted_values:,})",
                f"{reference.median:.3f}",
                reference.spread,
                "1.00×",
            ],
            [
                "compute() per (feature, window)",
                f"{compute.median / (features * 2) * 1e6:.0f} µs",
                "",
                "",
            ],
        ],
    )
    met = compute.median < TARGET_SECONDS
    if not args.no_breakdown:
        steps = breakdown(monitor, args.repeat)
        total = sum(seconds for label, seconds in steps if not label.startswith("  "))
        print_table(
            "where compute() goes: each step alone over all fields and both windows "
            f"(median of {args.repeat})",
            ["step", "s", "share of the steps"],
            [[label, f"{s:.3f}", f"{s / total:.0%}"] for label, s in steps],
        )
        print(f"  (steps add up to {total:.3f} s; indented rows are parts of the row above)")
    if args.profile or not met:
        print("\ncProfile of one compute() (DataSketches calls are C++, counted in the caller):")
        print(profile(monitor))
    print(f"(total {time.perf_counter() - started:.0f} s)")
    target_line(
        f"Monitor.compute() for {features:,} features × 2 windows under 1 s",
        met,
        f"{compute.median:.3f} s, {ratio:.2f}× np.sort of one window",
    )


if __name__ == "__main__":
    main()
