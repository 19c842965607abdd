"""False alarms and power of the design effect's tail correction at few requests a window.

Each window is a few requests whose rows share an offset carrying ``--shared``
of a standard normal feature's variance (a batch scoring one customer's
transactions), ingested by the real :class:`~driftgauge.monitor.Monitor` into a
1m window over a 20,000-row baseline built by ``build_baseline``.  A window
warns when the shipped warning's condition holds on it: ready (each baseline
bin expects 8 draws, the window's rows over its design effect), PSI > 0.02 and
PSI > noise floor × the 99.9% gate (Wilson–Hilferty, as the rules compute it).

The columns are the F tail's denominator choices, the same seeded windows for
each (``sketches.requests.DIRECTIONS_PER_DF``): ``all ν`` credits every
direction of ν with the requests' df (Thomas–Rao, before), ``one`` a single
direction (F(ν, R − 1)), ``shipped`` the current constant::

    .venv/bin/python -m bench.design_effect            # ~2 min on 2 shared cores
    .venv/bin/python -m bench.design_effect --quick    # ~20 s, noisy
"""

from __future__ import annotations

import argparse
import math
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from bench._common import print_table, write_parquet
from driftgauge.baseline import Baseline, build_baseline
from driftgauge.config import Config, config_from_mapping
from driftgauge.monitor import Monitor
from driftgauge.rules.gate import MIN_EXPECTED
from driftgauge.sketches import requests
from driftgauge.typing import Extracted

BASELINE_ROWS = 20_000
WINDOW = 120.0  # past the 1m window: each window starts empty
CHOICES = {"all ν": math.inf, "one": 0.0, "shipped": requests.DIRECTIONS_PER_DF}


def baseline(workdir: Path) -> tuple[Config, Baseline]:
    config = config_from_mapping(
        {
            "model": "design",
            "protocol": "kserve-v2",
            "source": {"tail": {"path": str(workdir / "unused.jsonl")}},
            "baseline": str(workdir / "unused.dgb"),
            "features": [{"name": "x", "type": "numeric"}],
            "windows": ["1m"],
            "min_observations": 100,
        },
        base=workdir,
    )
    rng = np.random.default_rng(11)
    path = write_parquet(workdir / "x.parquet", {"x": rng.normal(size=BASELINE_ROWS)})
    return config, build_baseline(config, [path])


@contextmanager
def directions_per_df(value: float) -> Iterator[None]:
    kept = requests.DIRECTIONS_PER_DF
    requests.DIRECTIONS_PER_DF = value
    try:
        yield
    finally:
        requests.DIRECTIONS_PER_DF = kept


def warnings(
    built: tuple[Config, Baseline],
    choice: float,
    sizes: tuple[int, int],
    counts: tuple[int, int],
    shared: float,
    shift: float,
    windows: int,
    seed: int,
) -> int:
    """Windows of ``counts`` (lo, hi) requests of ``sizes`` (lo, hi) rows meeting the warning."""
    monitor = Monitor(*built)
    held = built[1].fields["x"].summary.bins
    shares = held[held > 0] / held.sum()
    df = len(shares) - 1
    gate = (1 - 2 / (9 * df) + 3.09 * math.sqrt(2 / (9 * df))) ** 3
    rng = np.random.default_rng(seed)
    alarms = 0
    with directions_per_df(choice):
        for window in range(windows):
            now = 1_000_000.0 + WINDOW * window
            pieces = []
            for _ in range(int(rng.integers(counts[0], counts[1] + 1))):
                rows = int(rng.integers(sizes[0], sizes[1] + 1))
                offset = rng.normal() * math.sqrt(shared)
                values = offset + rng.normal(size=rows) * math.sqrt(1 - shared) + shift
                pieces.append(Extracted(rows, {"x": values.tolist()}))
            monitor.ingest(pieces, now=now)
            [x] = monitor.compute(now).fields
            assert x.psi is not None and x.psi_noise_floor is not None
            assert x.design_effect is not None
            ready = x.observations / x.design_effect >= MIN_EXPECTED / shares.min()
            alarms += bool(ready and x.psi > 0.02 and x.psi > x.psi_noise_floor * gate)
    return alarms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a quarter of the windows")
    parser.add_argument("--shared", type=float, default=0.2, help="the offset's variance share")
    args = parser.parse_args()
    undrifted, drifted = (500, 100) if args.quick else (2000, 400)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        built = baseline(Path(tmp))
        for count in (2, 3, 4, 5, 8, 20):
            cells: list[object] = [count]
            cases = (
                ((100, 300), args.shared, 0.0, undrifted),  # false alarms
                ((200, 200), args.shared, 0.5, drifted),  # power, alike rows
                ((50, 50), 0.0, 0.5, drifted),  # power, independent rows
            )
            for sizes, shared, shift, windows in cases:
                for choice in CHOICES.values():
                    found = warnings(
                        built, choice, sizes, (count, count), shared, shift, windows, count
                    )
                    cells.append(f"{found}/{windows}")
            rows.append(cells)
    names = list(CHOICES)
    header = [
        "requests",
        *(f"FA {n}" for n in names),
        *(f"0.5sd x200 {n}" for n in names),
        *(f"0.5sd x50 iid {n}" for n in names),
    ]
    print_table(
        f"warnings: undrifted 100-300 rows a request (offset {args.shared:g} of the variance), "
        "drifted 0.5 sd",
        header,
        rows,
    )


if __name__ == "__main__":
    main()
