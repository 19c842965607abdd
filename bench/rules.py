"""How ``driftgauge rules`` scales with the number of fields: 2,000 against 200.

Run from the repository root::

    .venv/bin/python -m bench.rules                    # 2,000 against 200 fields (about 2 minutes)
    .venv/bin/python -m bench.rules --features 5000    # a wider model
    .venv/bin/python -m bench.rules --quick            # 500 against 50, for a smoke run

Setup: ``bench_config`` with ``--features`` fields, 90% numeric and 10%
categorical, windows [5m, 1h], and per-field alerting overrides for one
field in 50 (a stricter PSI and ``for: 30m``), as a wide model's config has
some.  The reference is the same config with a tenth of the fields (and of
the overrides), timed in the same run.

It times ``write_assets`` (what ``driftgauge rules`` runs once the config is
loaded: the rules, the ``PrometheusRule`` and the dashboard, rendered and
written) on each config, interleaved, and reports the medians of
``--repeat`` runs, their ratio, and the ratio divided by the ratio of the
field counts: 1.0 is linear, 10 would be quadratic at a tenth.  For the wide
config it then times the parts (rendering the rules, dumping them as YAML,
rendering the dashboard, dumping it as JSON) and reports the rule count and
the files' sizes of both: the rule count grows with the overrides (each gets
rules of its own), never with the fields.

Last, the dashboard's size (JSON as written) at 20, 21, 200 and ``--features``
fields, against the same fields each in a row of its own (the layout below
FIELD_ROWS_MAX fields, and of every width before 2,000 fields made a 95 MB
dashboard), rendered in the same run.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import yaml

from bench._common import bench_config, field_names, human_bytes, print_table, time_paired
from driftgauge.config import Config
from driftgauge.rules.alerts import models_of, render_rules
from driftgauge.rules.dashboards import FIELD_ROWS_MAX, render_dashboard
from driftgauge.rules.writing import dump_yaml, write_assets

OVERRIDE_EVERY = 50
T = TypeVar("T")


def wide_config(features: int) -> Config:
    """``features`` fields, 90% numeric, with an override for one field in OVERRIDE_EVERY."""
    categorical = features // 10
    numeric_names, categorical_names = field_names(features - categorical, categorical)
    names = numeric_names + categorical_names
    overrides = {
        name: {"psi": {"warning": 0.05, "critical": 0.3}, "for": "30m"}
        for name in names[::OVERRIDE_EVERY]
    }
    return bench_config(features - categorical, categorical, alerting={"features": overrides})


def _cpu(fn: Callable[[], T]) -> tuple[T, float, float]:
    """``fn()``, and the wall and CPU seconds it took (CPU moves less on a shared machine)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def _parts(config: Config) -> list[list[str]]:
    """Wall and CPU seconds of each part of write_assets on ``config``, one run each."""
    (model,) = models_of(config)
    rules, *rules_time = _cpu(lambda: render_rules([model]))
    _, *yaml_time = _cpu(lambda: dump_yaml(rules))
    board, *board_time = _cpu(lambda: render_dashboard(model.model, model.fields, model.alerting))
    _, *json_time = _cpu(lambda: json.dumps(board, indent=2, sort_keys=True, ensure_ascii=False))
    parts = {
        "render the rules": rules_time,
        "dump them as YAML": yaml_time,
        "render the dashboard": board_time,
        "dump it as JSON": json_time,
    }
    return [[name, f"{wall:.3f}", f"{cpu:.3f}"] for name, (wall, cpu) in parts.items()]


def _shape(paths: list[Path]) -> dict[str, Any]:
    """Rule count and file sizes of what write_assets wrote."""
    rules = yaml.safe_load(paths[0].read_text(encoding="utf-8"))
    return {
        "rules": sum(len(group["rules"]) for group in rules["groups"]),
        "rules file": human_bytes(paths[0].stat().st_size),
        "dashboard": human_bytes(paths[2].stat().st_size),
    }


def _dashboard_sizes(widths: list[int]) -> list[list[str]]:
    """Each width's dashboard size as written, with one row per field and as rendered."""
    table = []
    for width in widths:
        (model,) = models_of(wide_config(width))
        sizes = [
            len(
                json.dumps(
                    render_dashboard(model.model, model.fields, model.alerting, rows_up_to),
                    indent=2,
                    sort_keys=True,
                    ensure_ascii=False,
                ).encode()
            )
            for rows_up_to in (width, FIELD_ROWS_MAX)
        ]
        layout = "a row each" if width <= FIELD_ROWS_MAX else "shared rows"
        ratio = f"{sizes[1] / sizes[0]:.3f}"
        table.append([f"{width:,}", human_bytes(sizes[0]), human_bytes(sizes[1]), layout, ratio])
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--features", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="500 against 50 fields, 3 runs")
    args = parser.parse_args()
    features = 500 if args.quick else args.features
    repeat = 3 if args.quick else args.repeat
    reference_features = max(features // 10, 1)
    wide, narrow = wide_config(features), wide_config(reference_features)
    with tempfile.TemporaryDirectory() as scratch:
        wide_dir, narrow_dir = Path(scratch) / "wide", Path(scratch) / "narrow"
        subject, reference, ratio = time_paired(
            lambda: write_assets(wide, wide_dir),
            lambda: write_assets(narrow, narrow_dir),
            repeat=repeat,
        )
        shapes = []
        for config, directory in ((narrow, narrow_dir), (wide, wide_dir)):
            paths, _, cpu = _cpu(partial(write_assets, config, directory))
            shapes.append([f"{cpu:.3f}", *_shape(paths).values()])
    scale = features / reference_features
    print_table(
        f"write_assets (driftgauge rules after loading the config), median of {repeat}",
        ["fields", "seconds", "spread", "CPU s (one run)", "rules", "rules file", "dashboard"],
        [
            [reference_features, f"{reference.median:.3f}", reference.spread, *shapes[0]],
            [features, f"{subject.median:.3f}", subject.spread, *shapes[1]],
        ],
    )
    print(
        f"\n{features:,} against {reference_features:,} fields: {ratio:.1f}x the time "
        f"for {scale:.0f}x the fields ({ratio / scale:.2f} of linear)"
    )
    print_table(
        f"the parts, {features:,} fields, one run", ["part", "seconds", "CPU s"], _parts(wide)
    )
    widths = sorted({FIELD_ROWS_MAX, FIELD_ROWS_MAX + 1, reference_features, features})
    print_table(
        "the dashboard's size",
        ["fields", "a row each", "rendered", "layout", "ratio"],
        _dashboard_sizes(widths),
    )


if __name__ == "__main__":
    main()
