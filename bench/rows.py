"""How long one large KServe v1 body holds the monitoring consumer: rows of numbers and a
category string against rows of numbers only.

Run from the repository root::

    .venv/bin/python -m bench.rows            # about 30 s on 2 shared cores
    .venv/bin/python -m bench.rows --quick    # a smoke run

Setup: a config of two numeric features and one categorical, one numeric
prediction, its baseline built with ``build_baseline`` from generated
rows.  It times ``Batcher.ingest`` (JSON decode, adapter, monitor ingest) of
one ``{"instances": [[x1, x2, "region"], ...]}`` body of ``--rows`` rows with
its response, interleaved with the same body whose category is a number
code (``[[x1, x2, 3], ...]``: the all-numbers matrix path, the reference),
and prints the median of each and their ratio.  The proxy's event loop runs
this ingest, so it is also how long such a body holds the loop.  Before
the column-by-column reading of mixed rows, the mixed body of 50,000 rows
cost 0.48-0.52 s (about 10 µs a value).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from bench._common import print_table, time_interleaved
from driftgauge.baseline import build_baseline
from driftgauge.config import config_from_mapping
from driftgauge.monitor import Monitor
from driftgauge.monitor.batch import Batcher
from driftgauge.protocols import make_adapter
from driftgauge.typing import Record

REGIONS = ["north", "south", "east", "west"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.repeat = 2_000, 3
    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory() as directory:
        tmp = Path(directory)
        raw = {
            "model": "rows",
            "protocol": "kserve-v1",
            "source": {"tail": {"path": str(tmp / "requests.jsonl")}},
            "baseline": str(tmp / "baseline.dgb"),
            "features": [
                {"name": "x1", "type": "numeric"},
                {"name": "x2", "type": "numeric"},
                {"name": "region", "type": "categorical"},
            ],
            "predictions": [{"name": "score", "type": "numeric"}],
            "windows": ["5m", "1h"],
        }
        config = config_from_mapping(raw, base=tmp)
        train = tmp / "train.csv"
        codes = rng.integers(0, len(REGIONS), 20_000)
        lines = ["x1,x2,region,score"]
        lines += [
            f"{a:.4f},{b:.4f},{REGIONS[c]},{s:.4f}"
            for a, b, c, s in zip(
                rng.normal(size=20_000),
                rng.normal(size=20_000),
                codes,
                rng.random(20_000),
                strict=True,
            )
        ]
        train.write_text("\n".join(lines) + "\n")
        baseline = build_baseline(config, [train], workers=1)
    adapter = make_adapter(config.protocol, config.features, config.predictions)
    batcher = Batcher(adapter, Monitor(config, baseline))
    x1, x2 = rng.normal(size=args.rows).round(4), rng.normal(size=args.rows).round(4)
    picks = rng.integers(0, len(REGIONS), args.rows)
    answer = json.dumps({"predictions": rng.random(args.rows).round(4).tolist()}).encode()

    def body(category: list[object]) -> bytes:
        rows = [[a, b, c] for a, b, c in zip(x1.tolist(), x2.tolist(), category, strict=True)]
        return json.dumps({"instances": rows}).encode()

    mixed = body([REGIONS[p] for p in picks])
    numbers = body(picks.tolist())
    route = "/v1/models/rows:predict"

    def ingest(request: bytes) -> None:
        batcher.ingest([Record(time.time(), request, answer, route)])

    reference, (subject,), (ratio,) = time_interleaved(
        lambda: ingest(numbers), [lambda: ingest(mixed)], repeat=args.repeat
    )
    values = 4 * args.rows
    print_table(
        f"Batcher.ingest of one KServe v1 body of {args.rows:,} rows ({len(mixed) / 1e6:.1f} MB)"
        f", median of {args.repeat}",
        ["body", "seconds", "spread", "µs per value"],
        [
            [
                "numbers only (reference)",
                f"{reference.median:.3f}",
                reference.spread,
                f"{reference.median / values * 1e6:.2f}",
            ],
            [
                "numbers and a category string",
                f"{subject.median:.3f}",
                subject.spread,
                f"{subject.median / values * 1e6:.2f}",
            ],
        ],
    )
    print(f"\nmixed / numbers only: {ratio:.2f}×")


if __name__ == "__main__":
    main()
