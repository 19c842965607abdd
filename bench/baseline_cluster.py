"""Rows per second of ``build_baseline`` on Spark and on Dask, against the local build.

Run from the repository root (needs the ``spark`` and ``dask`` extras, and Java 17 for Spark)::

    .venv/bin/python -m bench.baseline_cluster                   # 1M rows, Spark local[2] and Dask
    .venv/bin/python -m bench.baseline_cluster --quick           # 200,000 rows, a smoke run
    .venv/bin/python -m bench.baseline_cluster --no-dask --spark local[4]

On the Parquet file ``bench.baseline`` generates (20 numeric + 2
categorical columns), each round builds the baseline three ways, side by
side: locally with ``--workers`` processes (the reference), on a Spark
DataFrame (``spark.read.parquet``, master ``--spark``, default ``local[2]``)
and on a Dask DataFrame (``dask.dataframe.read_parquet`` in 32 MiB
partitions, as ``--dask`` reads it) on a
``distributed.LocalCluster`` of ``--workers`` single-threaded worker
processes.  Reported: median rows/s over ``--repeat`` rounds and the
overhead against the local build (cluster seconds / local seconds), and
the CPU seconds of the whole process tree (this process, the JVM, Spark's
Python workers, the Dask and local worker processes: steadier than wall
time on a shared machine), after a first round timed apart (Spark's first jobs start its Python workers and
warm the JVM up); the session and the cluster are started once, outside
the timings.  Every
cluster build must equal the local build's edges, bin counts and category
counts, or the script stops.

Target (from the issue): the result identical to the local build, run
after run; rows/s and the overhead are stated.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from bench._common import print_table, target_line
from bench.baseline import generate, write_config
from driftgauge.baseline import Baseline, build_baseline
from driftgauge.baseline.dask import PARTITION_BYTES
from driftgauge.config import Config
from driftgauge.sketches import NumericSummary


def signature(baseline: Baseline) -> dict[str, Any]:
    """Edges, bin counts and category counts: what must equal the local build's."""
    result: dict[str, Any] = {"rows": baseline.rows}
    for name, held in baseline.fields.items():
        summary = held.summary
        binning = summary.binning
        edges = (
            binning.edges.tolist() if isinstance(summary, NumericSummary) else binning.categories
        )  # type: ignore[union-attr]
        result[name] = (edges, summary.bins.tolist(), held.category_counts)
    return result


@contextmanager
def spark_frame(master: str, path: Path) -> Iterator[Any]:
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (
        SparkSession.builder.master(master)
        .appName("driftgauge bench")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    try:
        yield session.read.parquet(str(path))
    finally:
        session.stop()


@contextmanager
def dask_frame(workers: int, path: Path) -> Iterator[Any]:
    import dask.dataframe as dd
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=workers,
            processes=True,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=None,
            # No dashboard, but the scheduler's HTTP server (/metrics, /health) still listens,
            # on 8787 unless told: two clusters at once (two test processes) then collide.
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        ) as cluster,
        Client(cluster),
    ):
        yield dd.read_parquet(str(path), blocksize=PARTITION_BYTES)  # as the CLI reads it


def tree_cpu() -> float:
    """CPU seconds of this process and of every process under it, reaped ones included."""
    import psutil

    me = psutil.Process()
    total = 0.0
    for process in [me, *me.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            used = process.cpu_times()
            total += used.user + used.system + used.children_user + used.children_system
    return total


def timed(build: Callable[[], Baseline]) -> tuple[float, float, Baseline]:
    """Wall and process-tree CPU seconds of one build, and the build."""
    started, cpu = time.perf_counter(), tree_cpu()
    built = build()
    return time.perf_counter() - started, tree_cpu() - cpu, built


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--numeric", type=int, default=20)
    parser.add_argument("--categorical", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="rounds")
    parser.add_argument("--workers", type=int, default=2, help="local and Dask worker processes")
    parser.add_argument("--spark", default="local[2]", metavar="MASTER")
    parser.add_argument("--no-spark", action="store_true")
    parser.add_argument("--no-dask", action="store_true")
    parser.add_argument("--quick", action="store_true", help="200,000 rows, 2 rounds")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.repeat = 200_000, 2
    started = time.perf_counter()
    path = generate(args.rows, args.numeric, args.categorical, False)["parquet"]
    config: Config = write_config(args.numeric, args.categorical)[0]
    print(f"build_baseline on {path.name}: {args.rows:,} rows, {len(config.fields)} columns")

    with ExitStack() as stack:
        builds: dict[str, Callable[[], Baseline]] = {
            f"local, --workers {args.workers}": lambda: build_baseline(
                config, [path], workers=args.workers
            )
        }
        if not args.no_spark:
            frame = stack.enter_context(spark_frame(args.spark, path))
            builds[f"Spark {args.spark}"] = lambda: build_baseline(config, frame)
        if not args.no_dask:
            dask = stack.enter_context(dask_frame(args.workers, path))
            builds[f"Dask LocalCluster, {args.workers} processes"] = lambda: build_baseline(
                config, dask
            )
        seconds: dict[str, list[float]] = {name: [] for name in builds}
        cpu: dict[str, list[float]] = {name: [] for name in builds}
        first: dict[str, float] = {}
        reference: dict[str, Any] | None = None
        identical = True
        for round_number in range(args.repeat + 1):
            for name, build in builds.items():
                elapsed, used, built = timed(build)
                if round_number == 0:
                    first[name] = elapsed
                else:
                    seconds[name].append(elapsed)
                    cpu[name].append(used)
                found = signature(built)
                reference = reference or found
                if found != reference:
                    identical = False
                    print(f"  {name}: edges or counts differ from the local build")
            what = (
                "first (cold) round" if round_number == 0 else f"round {round_number}/{args.repeat}"
            )
            print(f"  {what} done", flush=True)

    local = statistics.median(next(iter(seconds.values())))
    local_cpu = statistics.median(next(iter(cpu.values())))
    table = []
    for name, runs in seconds.items():
        median, used = statistics.median(runs), statistics.median(cpu[name])
        table.append(
            [
                name,
                f"{median:.2f}",
                f"{min(runs):.2f}–{max(runs):.2f}",
                f"{args.rows / median:,.0f}",
                f"{median / local:.2f}×",
                f"{used:.2f}",
                f"{used / local_cpu:.2f}×",
                f"{first[name]:.2f}",
            ]
        )
    print_table(
        f"build_baseline, median of {args.repeat} rounds after a first, cold one (session and "
        "cluster started once, outside the timings)",
        [
            "data",
            "median s",
            "spread s",
            "rows/s",
            "s vs local",
            "CPU s",
            "CPU vs local",
            "first build s",
        ],
        table,
    )
    print(f"\n(total {time.perf_counter() - started:.0f} s)")
    target_line(
        "Spark and Dask builds identical to the local build (edges, bin counts, categories), "
        "every round",
        identical,
        f"{len(builds) - 1} cluster builds × {args.repeat} rounds",
    )
    if not identical:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
