"""How long the monitoring consumer holds the proxy's event loop, and what it costs per record.

Run from the repository root::

    .venv/bin/python -m bench.consumer            # about 1 minute
    .venv/bin/python -m bench.consumer --quick    # a smoke run

At one connection every hold of the loop delays the only client, so the
consumer's longest holds are the sidecar's added tail latency at low traffic.
This benchmark runs the real consumer (``runtime.consumer.consume``) on an
asyncio loop in this process, with the real router, monitor and sampler of
``bench.proxy``'s sidecar (20 numeric features and a numeric prediction,
windows ``[5m, 1h]``) and its KServe v2 body (8 rows × 20 features). A
producer on the same loop puts records at a steady rate, as the proxy does,
and measures how late its own 1 ms timer fires: a request arriving then
would have waited as long.

Each trial runs in a fresh interpreter. A round runs this tree, and with
``--reference CHECKOUT`` that checkout's ``src/`` too (say, main: before
and after), or this tree with each slice length of ``--slices`` (the CPU a
read slice is sized to, ``SLICE_SECONDS``; a batch's observe is sized to
twice it), in an order that reverses every other round. It reports, per
run, the holds (each read slice and each batch observed, wall time), the
producer's timer lateness, and the CPU per record of the consumer, the
producer and the loop together; then each figure's ratio to the first run's
in the same round, as medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

from bench._common import DATA_DIR, REPO, print_table
from bench._proxy_upstream import REQUEST_BODY, RESPONSE_BODY, ROUTE
from bench.proxy import make_baseline, sidecar_config
from driftgauge.app import build_sidecar
from driftgauge.config import load_config
from driftgauge.runtime import consumer
from driftgauge.runtime.allocator import freeze_startup_objects
from driftgauge.sources.proxy import RecordQueue
from driftgauge.sources.sampling import Sampler
from driftgauge.typing import Record

TICK = 0.001  # the producer's period


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


async def _trial(config: Path, slice_seconds: float, records: int, rate: float) -> dict[str, float]:
    sidecar = build_sidecar(load_config(config))
    freeze_startup_objects()  # as serve does once listening
    monitor = sidecar.monitors[0]
    queue = RecordQueue(100_000, monitor.count_dropped)
    sampler = Sampler(
        sidecar.config.source.cpu_budget,  # type: ignore[union-attr]
        lambda: queue.backlog(consumer.BEHIND_SECONDS),
        monitor.count_dropped,
    )
    metrics: Any = SimpleNamespace(
        queue_depth=SimpleNamespace(set=lambda value: None),
        sampling_rate=SimpleNamespace(set=lambda value: None),
    )
    holds: list[float] = []

    def timed(step: Callable[..., float]) -> Callable[..., float]:
        def wrapper(*args: Any) -> float:
            started = time.perf_counter()
            try:
                return step(*args)
            finally:
                holds.append(time.perf_counter() - started)

        return wrapper

    # Each trial runs in its own interpreter (see _run_trial): nothing to put back after.
    consumer.SLICE_SECONDS, consumer.OBSERVE_SECONDS = slice_seconds, 2 * slice_seconds
    consumer._read_timed = timed(consumer._read_timed)
    consumer._observe_timed = timed(consumer._observe_timed)
    late: list[float] = []
    task = asyncio.ensure_future(consumer.consume(queue, sidecar.batcher, metrics, sampler))
    cpu = time.process_time()
    try:
        per_tick, owed, put = rate * TICK, 0.0, 0
        due = time.perf_counter()
        while put < records:
            due += TICK
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            late.append(max(0.0, time.perf_counter() - due))
            owed += per_tick
            while owed >= 1 and put < records:
                queue.put(Record(time.time(), REQUEST_BODY, RESPONSE_BODY, path=ROUTE))
                owed, put = owed - 1, put + 1
        for _ in range(6_000):  # the consumer catches up (a minute at most)
            if monitor.rows_total >= 8 * records:
                break
            await asyncio.sleep(0.01)
        cpu = time.process_time() - cpu
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert monitor.rows_total == 8 * records, (monitor.rows_total, records)
    return {
        "hold p50 ms": _percentile(holds, 0.5) * 1e3,
        "hold p99 ms": _percentile(holds, 0.99) * 1e3,
        "hold max ms": max(holds) * 1e3,
        "late p99 ms": _percentile(late, 0.99) * 1e3,
        "late p99.9 ms": _percentile(late, 0.999) * 1e3,
        "CPU µs/record": cpu / records * 1e6,
    }


def _run_trial(src: Path, slice_seconds: float | None, records: int, rate: float) -> Any:
    """One trial in a fresh interpreter running ``src``'s driftgauge; its figures."""
    argv = [sys.executable, "-m", "bench.consumer", "--trial", f"--records={records}"]
    argv += [f"--rate={rate}"] + ([f"--slices={slice_seconds}"] if slice_seconds else [])
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{REPO}"}
    done = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"trial failed ({src}):\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--slices", default="", help="slice lengths in s, comma-separated (default: the tree's)"
    )
    parser.add_argument("--reference", type=Path, help="also run another checkout's src/")
    parser.add_argument("--records", type=int, default=20_000, help="records per trial")
    parser.add_argument("--rate", type=float, default=5_000, help="records per second put")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 round of 2,000 records")
    parser.add_argument("--trial", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    path = DATA_DIR / "consumer-bench.yaml"
    if args.trial:
        slice_seconds = float(args.slices) if args.slices else consumer.SLICE_SECONDS
        print(json.dumps(asyncio.run(_trial(path, slice_seconds, args.records, args.rate))))
        return
    if args.quick:
        args.rounds, args.records = 1, 2_000
    path.write_text(yaml.safe_dump(sidecar_config("kserve-v2", 0, 0, 0, make_baseline())))
    runs: list[tuple[str, Path, float | None]] = []
    if args.reference is not None:
        runs.append(("reference", args.reference.resolve() / "src", None))
    own = REPO / "src"
    slices = [float(each) for each in args.slices.split(",")] if args.slices else [None]
    runs += [("this tree" if each is None else f"{each * 1e3:g} ms", own, each) for each in slices]
    print(
        f"consumer: {args.records:,} records of the 8 × 20 KServe v2 body per trial at "
        f"{args.rate:,.0f}/s, {args.rounds} round(s); runs: {[label for label, _, _ in runs]}"
    )
    results: dict[str, list[dict[str, float]]] = {label: [] for label, _, _ in runs}
    for round_index in range(args.rounds):
        for label, src, each in runs if round_index % 2 == 0 else runs[::-1]:
            results[label].append(_run_trial(src, each, args.records, args.rate))
    first = runs[0][0]
    names = list(results[first][0])
    rows = [
        [label, *(f"{statistics.median(r[n] for r in results[label]):.2f}" for n in names)]
        for label in results
    ]
    print_table("medians of the rounds", ["run", *names], rows)
    ratio_rows = [
        [
            label,
            *(
                f"{statistics.median(a[n] / b[n] for a, b in zip(results[label], results[first], strict=True)):.2f}×"
                for n in names
            ),
        ]
        for label in list(results)[1:]
    ]
    if ratio_rows:
        title = f"ratios to {first} (medians of per-round ratios)"
        print_table(title, ["run", *names], ratio_rows)


if __name__ == "__main__":
    main()
