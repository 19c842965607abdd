"""Rows per second of ``driftgauge baseline``, its peak memory, and whylogs side by side.

Run from the repository root::

    .venv/bin/python -m bench.baseline                 # about 3 minutes on 2 shared cores
                                                       # (the first run also writes the data
                                                       # files and the whylogs venv: ~4 min more)
    .venv/bin/python -m bench.baseline --no-whylogs    # driftgauge only
    .venv/bin/python -m bench.baseline --quick         # small files, a smoke run
    .venv/bin/python -m bench.baseline --cpu --repeat 3  # one worker's CPU per build only

What it measures, on generated training data (20 numeric + 2 categorical
columns by default, 1% nulls in one column) written under ``bench/.data/``
(git-ignored) as CSV and Parquet:

* ``build_baseline`` in-process on 1M rows, CSV and Parquet: rows/s, median
  of 5 rounds; each round also times driftgauge's chunk reader alone (one
  pass of ``read_chunks``: the I/O and parsing floor; the baseline makes two
  passes) and one whylogs run, so every ratio compares runs made side by side;
* whylogs 1.6 profiling the same CSV (its first ``--whylogs-rows`` rows,
  200,000 by default so the script ends in bounded time; ``--whylogs-rows 0``
  for all of them), in its own venv (``bench/.data/whylogs-venv``, made on
  demand: whylogs needs numpy < 2), one long-lived worker process reading
  with pandas in chunks of 65,536 rows and timing only ``why.log(chunk)``
  and the profile merges;
* the real CLI, ``driftgauge baseline -c … --data … -o …``, once per file, in
  a subprocess: wall time and peak RSS (GNU ``time -v``), for 1M and 5M rows;
  constant memory means the 5M/1M RSS ratio stays ≈ 1.

Targets (from issue #14): driftgauge ≥ 20× whylogs' rows/s on CSV, ≥ 30× on Parquet; peak RSS flat
from 1M to 5M rows.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import (
    CATEGORIES,
    CATEGORY_P,
    DATA_DIR,
    REPO,
    bench_config,
    field_names,
    human_bytes,
    print_table,
    target_line,
)
from driftgauge.baseline import build_baseline
from driftgauge.baseline.datafiles import read_chunks
from driftgauge.config import Config
from driftgauge.cpu import VARIABLE as CPU_VARIABLE

WHYLOGS_VENV = DATA_DIR / "whylogs-venv"
WHYLOGS_REQUIREMENTS = ["whylogs==1.6.*", "numpy<2", "pandas", "pyarrow"]
TARGET_WHYLOGS_FACTOR = {"csv": 20.0, "parquet": 30.0}  # issue #14
FLAT_RSS_RATIO = 1.15  # 5M vs 1M rows: within 15% counts as flat
GNU_TIME = Path("/usr/bin/time")
GENERATION = 1  # bump when the generated data changes, so cached files are rebuilt


def data_paths(rows: int, numeric: int, categorical: int) -> dict[str, Path]:
    stem = f"train-v{GENERATION}-{numeric}n{categorical}c-{rows}"
    return {fmt: DATA_DIR / f"{stem}.{fmt}" for fmt in ("csv", "parquet")}


def generate(rows: int, numeric: int, categorical: int, regenerate: bool) -> dict[str, Path]:
    """Write the CSV and Parquet files (in 1M-row pieces, so memory stays small)."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    paths = data_paths(rows, numeric, categorical)
    if not regenerate and all(p.exists() for p in paths.values()):
        return paths
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    numeric_names, categorical_names = field_names(numeric, categorical)
    schema = pa.schema(
        [(n, pa.float64()) for n in numeric_names] + [(n, pa.string()) for n in categorical_names]
    )
    categories = pa.array(CATEGORIES.tolist())
    rng = np.random.default_rng(2024)
    temporary = {fmt: path.with_suffix(path.suffix + ".tmp") for fmt, path in paths.items()}
    csv_writer = pa_csv.CSVWriter(str(temporary["csv"]), schema)
    parquet_writer = pq.ParquetWriter(str(temporary["parquet"]), schema)
    try:
        done = 0
        while done < rows:
            piece = min(1_000_000, rows - done)
            arrays: list[Any] = []
            for index in range(numeric):
                values = rng.normal(float(index % 7), 1.0 + index % 3, piece).round(4)
                mask = rng.random(piece) < 0.01 if index == 0 else None
                arrays.append(pa.array(values, mask=mask))
            for _ in range(categorical):
                codes = rng.choice(len(CATEGORIES), piece, p=CATEGORY_P)
                arrays.append(categories.take(pa.array(codes)))
            table = pa.Table.from_arrays(arrays, schema=schema)
            csv_writer.write_table(table)
            parquet_writer.write_table(table, row_group_size=128 * 1024)
            done += piece
    finally:
        csv_writer.close()
        parquet_writer.close()
    for fmt, path in paths.items():
        temporary[fmt].replace(path)
    sizes = ", ".join(f"{p.name} {human_bytes(p.stat().st_size)}" for p in paths.values())
    print(f"generated {sizes} in {time.perf_counter() - started:.1f} s")
    return paths


def write_config(numeric: int, categorical: int) -> tuple[Config, Path]:
    """The config as a YAML file for the CLI, and loaded for the in-process runs."""
    import yaml

    config = bench_config(numeric, categorical, baseline=DATA_DIR / "bench-baseline.dgb")
    path = DATA_DIR / f"baseline-config-{numeric}n{categorical}c.yaml"
    raw = {
        "model": config.model,
        "protocol": config.protocol,
        "source": {"tail": {"path": "unused-requests.jsonl"}},
        "baseline": "bench-baseline.dgb",
        "features": [{"name": f.name, "type": f.type} for f in config.features],
    }
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return config, path


class WhylogsWorker:
    """A whylogs process in its own venv that profiles the CSV each time it is asked."""

    def __init__(self, python: Path, csv_path: Path, rows: int) -> None:
        environment = dict(os.environ, WHYLOGS_NO_ANALYTICS="True")
        # whylogs as its users run it: numpy's own choice of CPU features (driftgauge.cpu).
        environment.pop(CPU_VARIABLE, None)
        self.process = subprocess.Popen(
            [str(python), "-c", _WHYLOGS_SCRIPT, str(csv_path), "65536", str(rows)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=environment,
        )
        hello = self._answer()
        self.version = str(hello["version"])  # and its venv's pandas and numpy: they move its speed
        print(f"whylogs {self.version}", flush=True)

    def _answer(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"whylogs worker exited ({self.process.wait()})")
        return dict(json.loads(line))

    def run(self) -> dict[str, Any]:
        """One profiling run: rows, profiling seconds, seconds with pandas' reading, columns."""
        assert self.process.stdin is not None
        self.process.stdin.write("run\n")
        self.process.stdin.flush()
        return self._answer()

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass(frozen=True, slots=True)
class InProcess:
    rates: dict[str, float]  # driftgauge build_baseline rows/s per format
    whylogs: float | None  # whylogs profiling-only rows/s
    whylogs_factors: dict[
        str, float
    ]  # per format: median over rounds of driftgauge / whylogs rows/s


def in_process(
    config: Config, paths: dict[str, Path], rows: int, repeat: int, whylogs: WhylogsWorker | None
) -> InProcess:
    """Rounds of: read-only pass and build per format, then one whylogs run."""
    builds: dict[str, list[float]] = {fmt: [] for fmt in paths}
    reads: dict[str, list[float]] = {fmt: [] for fmt in paths}
    whylogs_runs: list[dict[str, Any]] = []
    factors: dict[str, list[float]] = {fmt: [] for fmt in paths}
    for round_number in range(repeat):
        for fmt, path in paths.items():
            started = time.perf_counter()
            for _ in read_chunks(path, config.fields):
                pass
            middle = time.perf_counter()
            built = build_baseline(config, [path])
            ended = time.perf_counter()
            assert built.rows == rows, built.rows
            reads[fmt].append(middle - started)
            builds[fmt].append(ended - middle)
        if whylogs is not None:
            run = whylogs.run()
            whylogs_runs.append(run)
            for fmt in paths:
                factors[fmt].append((rows / builds[fmt][-1]) / (run["rows"] / run["profiling"]))
        print(f"  round {round_number + 1}/{repeat} done", flush=True)
    table = []
    for fmt in paths:
        build = statistics.median(builds[fmt])
        read = statistics.median(reads[fmt])
        ratio = statistics.median(b / r for b, r in zip(builds[fmt], reads[fmt], strict=True))
        table.append(
            [
                f"driftgauge build_baseline, {fmt}",
                f"{rows:,}",
                f"{build:.2f}",
                f"{min(builds[fmt]):.2f}–{max(builds[fmt]):.2f}",
                f"{rows / build:,.0f}",
                f"{read:.2f}",
                f"{ratio:.2f}×",
            ]
        )
    whylogs_rate = None
    medians: dict[str, float] = {}
    if whylogs_runs:
        profiling = [r["profiling"] for r in whylogs_runs]
        total = [r["total"] for r in whylogs_runs]
        wl_rows = whylogs_runs[0]["rows"]
        whylogs_rate = wl_rows / statistics.median(profiling)
        medians = {fmt: statistics.median(values) for fmt, values in factors.items()}
        table.append(
            [
                f"whylogs {whylogs.version if whylogs else ''} profiling only",
                f"{wl_rows:,}",
                f"{statistics.median(profiling):.2f}",
                f"{min(profiling):.2f}–{max(profiling):.2f}",
                f"{whylogs_rate:,.0f}",
                "",
                "",
            ]
        )
        table.append(
            [
                "whylogs with pandas read_csv",
                f"{wl_rows:,}",
                f"{statistics.median(total):.2f}",
                f"{min(total):.2f}–{max(total):.2f}",
                f"{wl_rows / statistics.median(total):,.0f}",
                "",
                "",
            ]
        )
    print_table(
        f"in-process, {len(config.fields)} columns, median of {repeat} rounds (each round: "
        "read-only pass and build per format, then whylogs)",
        ["what", "rows", "median s", "spread s", "rows/s", "read-only s", "build / read"],
        table,
    )
    return InProcess(
        {fmt: rows / statistics.median(b) for fmt, b in builds.items()}, whylogs_rate, medians
    )


@dataclass(frozen=True, slots=True)
class CliRun:
    seconds: float
    max_rss: int
    output: str


def run_cli(config_path: Path, data: Path, output: Path) -> CliRun:
    """``driftgauge baseline`` in a subprocess; wall time and that child's own peak RSS.

    Linux carries a process's peak RSS across ``execve`` from the memory it
    was forked from, so a child forked straight from this (large) process
    reports at least this process's size.  GNU time forks from a tiny
    process and reads the child's real peak; without it, ``os.wait4``'s
    figure is only an upper bound.
    """
    executable = Path(sys.executable).with_name("driftgauge")
    command = [str(executable), "baseline", "-c", str(config_path), "--data", str(data)]
    command += ["-o", str(output)]
    report = DATA_DIR / "time-v.txt"
    if GNU_TIME.exists():
        command = [str(GNU_TIME), "-v", "-o", str(report), *command]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert process.stdout is not None
    text = process.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"driftgauge baseline failed ({process.returncode}): {text.strip()}")
    max_rss = usage.ru_maxrss * 1024
    if GNU_TIME.exists():
        for line in report.read_text(encoding="utf-8").splitlines():
            if "Maximum resident set size" in line:
                max_rss = int(line.rsplit(":", 1)[1]) * 1024
    return CliRun(elapsed, max_rss, text.strip())


def cli(
    config_path: Path, small: dict[str, Path], large: dict[str, Path], rows: tuple[int, int]
) -> dict[str, float]:
    """One CLI run per file; returns the large/small peak-RSS ratio per format."""
    table = []
    ratios: dict[str, float] = {}
    for fmt in small:
        runs = []
        for n, paths in zip(rows, (small, large), strict=True):
            run = run_cli(config_path, paths[fmt], DATA_DIR / f"cli-{fmt}-{n}.dgb")
            runs.append(run)
            table.append(
                [
                    fmt,
                    f"{n:,}",
                    f"{run.seconds:.2f}",
                    f"{n / run.seconds:,.0f}",
                    human_bytes(run.max_rss),
                    "",
                ]
            )
        ratios[fmt] = runs[1].max_rss / runs[0].max_rss
        table[-1][-1] = f"{ratios[fmt]:.3f}"
        print(f"  cli {fmt}: {runs[-1].output}")
    how = "GNU time -v" if GNU_TIME.exists() else "os.wait4 (an upper bound: see run_cli)"
    print_table(
        "driftgauge baseline CLI (one run each, in a subprocess; seconds include interpreter "
        f"start; peak RSS from {how})",
        ["file", "rows", "wall s", "rows/s", "peak RSS", f"RSS {rows[1] // rows[0]}×rows / 1×"],
        table,
    )
    return ratios


_WHYLOGS_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    import pandas as pd
    import whylogs as why

    path, chunk_rows, rows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    versions = f"{why.__version__} (pandas {pd.__version__}, numpy {np.__version__})"
    print(json.dumps({"version": versions}), flush=True)
    for command in sys.stdin:
        if command.strip() != "run":
            break
        profiling, seen, merged = 0.0, 0, None
        started = time.perf_counter()
        for frame in pd.read_csv(path, chunksize=chunk_rows, nrows=rows or None):
            begin = time.perf_counter()
            view = why.log(frame).view()
            merged = view if merged is None else merged.merge(view)
            profiling += time.perf_counter() - begin
            seen += len(frame)
        total = time.perf_counter() - started
        columns = len(merged.get_columns()) if merged is not None else 0
        print(json.dumps({"rows": seen, "profiling": profiling, "total": total,
                          "columns": columns}), flush=True)
    """
)


def whylogs_python() -> Path | None:
    """The whylogs venv's interpreter, creating the venv on first use; None (and why) on failure."""
    python = WHYLOGS_VENV / "bin" / "python"
    marker = WHYLOGS_VENV / ".driftgauge-bench-ready"
    if marker.exists():
        return python
    base = shutil.which("python3")
    if base is None:
        print("whylogs: skipped, no python3 on PATH to make its venv")
        return None
    print(f"whylogs: creating {WHYLOGS_VENV} and installing {' '.join(WHYLOGS_REQUIREMENTS)} …")
    try:
        subprocess.run([base, "-m", "venv", "--clear", str(WHYLOGS_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *WHYLOGS_REQUIREMENTS],
            check=True,
            timeout=600,
        )
        subprocess.run([str(python), "-c", "import whylogs, pandas"], check=True, timeout=120)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        print(f"whylogs: skipped, could not install it: {exc}")
        return None
    marker.write_text("ok\n", encoding="utf-8")
    return python


def one_worker_cpu(config: Config, paths: dict[str, Path], repeat: int) -> None:
    """CPU seconds of in-process builds on one worker, per format, after a warm-up build.

    ``process_time`` counts pyarrow's threads too.  CPU moves less than wall time with
    the machine's other load; compare trees by running this in each, alternately.
    """
    for fmt, path in paths.items():
        build_baseline(config, [path], workers=1)
        seconds = []
        for _ in range(repeat):
            started = time.process_time()
            build_baseline(config, [path], workers=1)
            seconds.append(time.process_time() - started)
        each = ", ".join(f"{s:.3f}" for s in seconds)
        print(f"one-worker CPU, {fmt}: median {statistics.median(seconds):.3f} s ({each})")


def profile_build(config: Config, path: Path) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    build_baseline(config, [path])
    profiler.disable()
    print(
        f"\ncProfile of one build_baseline on {path.name} (pyarrow's CSV parsing runs inside the "
        "reader's iterator, so it shows as _batches_to_chunks' own time; KLL updates are C++ "
        "called from NumericSummary.add):"
    )
    pstats.Stats(profiler).sort_stats("tottime").print_stats(12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--large-rows", type=int, default=5_000_000, help="for the RSS check")
    parser.add_argument("--numeric", type=int, default=20)
    parser.add_argument("--categorical", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5, help="rounds of the in-process runs")
    parser.add_argument(
        "--whylogs-rows",
        type=int,
        default=200_000,
        help="rows of the CSV whylogs profiles each round (0: all)",
    )
    parser.add_argument("--no-whylogs", action="store_true", help="skip the whylogs comparison")
    parser.add_argument("--no-cli", action="store_true", help="skip the CLI subprocess runs")
    parser.add_argument("--no-profile", action="store_true", help="no cProfile on a missed target")
    parser.add_argument("--regenerate", action="store_true", help="rewrite the data files")
    parser.add_argument("--quick", action="store_true", help="small files, for a smoke run")
    parser.add_argument(
        "--cpu", action="store_true", help="only one-worker CPU per build (--repeat builds)"
    )
    args = parser.parse_args()
    if args.quick:
        args.rows, args.large_rows, args.repeat, args.whylogs_rows = 100_000, 300_000, 3, 50_000

    started = time.perf_counter()
    numeric, categorical = args.numeric, args.categorical
    print(
        f"driftgauge baseline benchmark: {numeric} numeric + {categorical} categorical columns, "
        f"{args.rows:,} rows (RSS also at {args.large_rows:,}); data in {DATA_DIR.relative_to(REPO)}"
    )
    small = generate(args.rows, numeric, categorical, args.regenerate)
    config, config_path = write_config(numeric, categorical)
    if args.cpu:
        one_worker_cpu(config, small, args.repeat)
        return
    worker = None
    if not args.no_whylogs and (python := whylogs_python()) is not None:
        try:
            worker = WhylogsWorker(python, small["csv"], min(args.whylogs_rows, args.rows))
        except (OSError, RuntimeError, ValueError) as exc:
            print(f"whylogs: skipped, its worker did not start: {exc}")
    try:
        measured = in_process(config, small, args.rows, args.repeat, worker)
    finally:
        if worker is not None:
            worker.close()

    rss_ratios: dict[str, float] = {}
    if not args.no_cli:
        large = generate(args.large_rows, numeric, categorical, args.regenerate)
        rss_ratios = cli(config_path, small, large, (args.rows, args.large_rows))

    if measured.whylogs is not None:
        table = [
            ["whylogs profiling only (pandas read excluded)", f"{measured.whylogs:,.0f}", "1.0×"]
        ]
        for fmt, rate in measured.rates.items():
            table.append(
                [f"driftgauge build_baseline, {fmt} (reading included)", f"{rate:,.0f}",
                 f"{rate / measured.whylogs:.1f}×"]
            )  # fmt: skip
        print_table(
            f"rows/s side by side, {numeric + categorical} columns (driftgauge on {args.rows:,} "
            "rows, whylogs on the first rows of the same CSV)",
            ["what", "median rows/s", "vs whylogs"],
            table,
        )

    factors = measured.whylogs_factors
    missed = any(
        factors[fmt] < target for fmt, target in TARGET_WHYLOGS_FACTOR.items() if fmt in factors
    )
    if missed and not args.no_profile:
        profile_build(config, small["csv"])
    print(f"\n(total {time.perf_counter() - started:.0f} s)")
    for fmt, target in TARGET_WHYLOGS_FACTOR.items():
        what = (
            f"driftgauge baseline ≥ {target:.0f}× whylogs rows/s ({fmt}, reading included, vs "
            "whylogs profiling only; median of per-round ratios)"
        )
        if fmt not in factors or measured.whylogs is None:
            print(f"target {what}: NOT MEASURED (whylogs skipped)")
            continue
        target_line(
            what,
            factors[fmt] >= target,
            f"{factors[fmt]:.1f}×: {measured.rates[fmt]:,.0f} vs {measured.whylogs:,.0f} rows/s",
        )
    for fmt, ratio in rss_ratios.items():
        target_line(
            f"baseline CLI peak RSS flat from {args.rows:,} to {args.large_rows:,} rows ({fmt})",
            ratio <= FLAT_RSS_RATIO,
            f"{args.large_rows // args.rows}× rows → {ratio:.3f}× RSS",
        )


if __name__ == "__main__":
    main()
