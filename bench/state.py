"""Event-loop stalls while a state snapshot of many held predictions is written.

Run from the repository root::

    .venv/bin/python -m bench.state                  # 100,000 held predictions, 5 repetitions
    .venv/bin/python -m bench.state --held 20000     # a smaller store
    .venv/bin/python -m bench.state --quick          # a smoke run

Setup: a KServe v1 config with three features, a categorical prediction
``class`` and ``feedback`` on it, a baseline from ``build_baseline`` on a
generated CSV, and ``--held`` predictions ingested through the ``Batcher`` in
requests of 1,000 rows (so every row is held as ``<request id>:<row>``).

While ``StateStore.save()`` runs in a worker thread (as the sidecar's
snapshot task runs it), a ticker thread standing in for the proxy's event
loop sleeps 0.5 ms at a time and records each gap; a gap is how long it
waited for the GIL.  Reported per repetition: the save's duration, the
largest gap and the sum of gaps over 2 ms (the time the loop stood still).
The in-run reference is the same document written as state format 2 did it
(held columns as base64 and the ids as one text inside the JSON, through
the same per-member ``json.dumps`` of ``pack``), timed and ticked the same way.
"""

from __future__ import annotations

import argparse
import base64
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench._common import DATA_DIR, print_table
from driftgauge.atomic import write_atomically
from driftgauge.baseline import Baseline, build_baseline
from driftgauge.config import Config, config_from_mapping
from driftgauge.monitor import Monitor
from driftgauge.monitor.batch import Batcher
from driftgauge.protocols import make_adapter
from driftgauge.runtime.state import StateStore, pack
from driftgauge.typing import Record

ROWS_PER_REQUEST = 1_000
TICK = 0.0005
STALL = 0.002


@dataclass(frozen=True)
class Stalls:
    """One timed save: its duration, the ticker's largest gap, the sum of gaps over STALL."""

    duration: float
    largest: float
    stood_still: float


def ticked(work: Callable[[], object]) -> Stalls:
    """Run ``work`` in a worker thread while this thread ticks; the gaps it saw."""
    done = threading.Event()

    def run() -> None:
        work()
        done.set()

    worker = threading.Thread(target=run)
    gaps: list[float] = []
    started = last = time.perf_counter()
    worker.start()
    while not done.is_set():
        time.sleep(TICK)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now
    worker.join()
    duration = time.perf_counter() - started
    return Stalls(duration, max(gaps), sum(gap for gap in gaps if gap > STALL))


def _config(directory: Path) -> tuple[Config, Baseline]:
    rng = np.random.default_rng(3)
    rows = 5_000
    training = directory / "state-train.csv"
    alcohol, ash = rng.normal(13, 0.8, rows), rng.normal(2.4, 0.3, rows)
    region = rng.choice(["north", "south", "east"], rows)
    classes = np.where(alcohol > 13.3, "a", np.where(alcohol > 12.6, "b", "c"))
    lines = ["alcohol,ash,region,class"]
    lines += [
        f"{a:.4f},{s:.4f},{r},{c}" for a, s, r, c in zip(alcohol, ash, region, classes, strict=True)
    ]
    training.write_text("\n".join(lines) + "\n")
    quiet_log = directory / "unused-requests.jsonl"
    quiet_log.touch()
    raw = {
        "model": "bench",
        "protocol": "kserve-v1",
        "source": {"tail": {"path": str(quiet_log), "start_at": "end"}},
        "metrics": {"listen": "127.0.0.1:0"},
        "baseline": str(directory / "state-bench.dgb"),
        "features": [
            {"name": "alcohol", "type": "numeric"},
            {"name": "ash", "type": "numeric"},
            {"name": "region", "type": "categorical"},
        ],
        "predictions": [{"name": "class", "type": "categorical"}],
        "feedback": {"prediction": "class", "max_pending": 1_000_000},
    }
    config = config_from_mapping(raw, base=directory)
    return config, build_baseline(config, [training])


def _requests(held: int) -> list[Record]:
    rng = np.random.default_rng(4)
    records = []
    for index in range(held // ROWS_PER_REQUEST):
        alcohol = rng.normal(13, 0.8, ROWS_PER_REQUEST).round(3).tolist()
        request = {"instances": [{"alcohol": a, "ash": 2.4, "region": "north"} for a in alcohol]}
        answer = {"predictions": [{"class": "a" if a > 13.3 else "b"} for a in alcohol]}
        records.append(
            Record(time.time(), request, answer, "/v1/models/bench:predict", f"r{index}")
        )
    return records


def _format_2(store: StateStore) -> None:
    """The same snapshot as state format 2 wrote it: everything inside one JSON text.

    ``pack`` of a document without bytes is exactly that file (its JSON alone).
    """
    document = store._document()
    pending = document["pending"]
    pending["ids"] = pending["ids"].decode("utf-8", "surrogatepass")
    for name in ("ts", "predicted", "probability", "segments"):
        pending[name]["data"] = base64.b64encode(pending[name]["data"]).decode("ascii")
    write_atomically(store.path.with_suffix(".format2"), pack(document))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--held", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="10,000 held, 3 repetitions")
    args = parser.parse_args()
    if args.quick:
        args.held, args.repeat = 10_000, 3
    directory = DATA_DIR / "state"
    directory.mkdir(parents=True, exist_ok=True)
    config, baseline = _config(directory)
    monitor = Monitor(config, baseline)
    Batcher(make_adapter(config.protocol, config.features, config.predictions), monitor).ingest(
        _requests(args.held)
    )
    assert monitor.outcomes is not None
    held = monitor.outcomes.pending
    store = StateStore(directory, monitor)
    store.save()  # warm-up, and the file's size
    _format_2(store)
    runs: dict[str, list[Stalls]] = {"format 3 (save)": [], "format 2 (reference)": []}
    for _ in range(args.repeat):  # interleaved, so both see the same machine
        runs["format 3 (save)"].append(ticked(store.save))
        runs["format 2 (reference)"].append(ticked(lambda: _format_2(store)))

    def median(name: str, part: Callable[[Stalls], float]) -> float:
        return statistics.median(part(run) for run in runs[name]) * 1000

    rows = []
    for name in runs:
        durations = median(name, lambda run: run.duration)
        largest = median(name, lambda run: run.largest)
        still = median(name, lambda run: run.stood_still)
        rows.append((name, f"{durations:.1f}", f"{largest:.1f}", f"{still:.1f}"))
    print_table(
        f"State snapshot of {held:,} held predictions, median of {args.repeat} "
        f"(file {store.path.stat().st_size / 1e6:.2f} MB; "
        f"format 2: {store.path.with_suffix('.format2').stat().st_size / 1e6:.2f} MB)",
        (
            "write",
            "duration ms",
            "largest loop gap ms",
            f"loop still (gaps > {STALL * 1e3:.0f} ms) ms",
        ),
        rows,
    )
    ratio = median("format 3 (save)", lambda r: r.stood_still) / median(
        "format 2 (reference)", lambda r: r.stood_still
    )
    print(f"loop standing still, format 3 / format 2: {ratio:.2f}")


if __name__ == "__main__":
    main()
