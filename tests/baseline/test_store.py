"""Baseline files written by earlier driftgauge versions (driftgauge.baseline.store)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from driftgauge.baseline import build_baseline, load_baseline, save_baseline
from driftgauge.exceptions import BaselineError
from driftgauge.monitor import Monitor
from driftgauge.sketches import NumericSummary
from driftgauge.typing import Extracted
from tests._stats_helpers import make_config, write_csv

# Files an earlier driftgauge wrote, each made once by the tree at the commit named.
DATA = Path(__file__).parent / "data"


def test_a_baseline_spelling_integral_floats_from_1e16_as_python_prints_them_is_refused() -> None:
    """Before 348f50f an integral float from 1e16 on was the category '1e+16', which live
    traffic no longer spells so (every such value unseen_category, PSI far past the rules):
    loading it says to rebuild it, where it used to load silently.

    codes-1e16.dgb: at f3af90e, ``driftgauge baseline -c codes.yaml --data codes.jsonl -o
    codes-1e16.dgb --workers 1``, codes.jsonl 12 rows ``{"code": 1e+16 | 2e+16 | 3.0,
    "class": "a" | "b"}``, codes.yaml the categorical feature ``code`` and prediction
    ``class`` (kserve-v1).
    """
    path = DATA / "codes-1e16.dgb"
    with pytest.raises(BaselineError) as raised:
        load_baseline(path)
    assert str(raised.value) == (
        f"{path}: 'code' holds the category '1e+16', which this driftgauge spells "
        "'10000000000000000' (a baseline built by an earlier version); rebuild it"
    )


def test_a_multivariate_baseline_of_the_training_rows_own_errors_is_refused() -> None:
    """Before d9d44cf the multivariate field's baseline held the training rows' own
    reconstruction errors, smaller than any new row's, and such a file loaded silently: on 20
    correlated features (1,000 training rows) undrifted live rows then read PSI 0.098 and KS
    0.137 after the upgrade, 0.011 and 0.026 on a rebuilt baseline; loading it says to rebuild.

    pairs-own-errors.dgb: at f3af90e, ``driftgauge baseline -c pairs.yaml --data pairs.csv
    -o pairs-own-errors.dgb --workers 1``, pairs.csv 12 rows of three standard normal
    columns a, b, c (numpy default_rng(3), rounded to 3 decimals), pairs.yaml the numeric
    features a, b, c and ``multivariate: {features: [a, b, c], components: 1}`` (kserve-v1).
    """
    path = DATA / "pairs-own-errors.dgb"
    with pytest.raises(BaselineError) as raised:
        load_baseline(path)
    assert str(raised.value) == (
        f"{path}: its multivariate field holds the training rows' own reconstruction errors "
        "(a baseline built by an earlier version), which read undrifted traffic as drift; "
        "rebuild it"
    )


def test_a_baseline_from_before_fields_could_need_float64_keeps_float32_live_sketches(
    tmp_path: Path,
) -> None:
    """A baseline written before fields could need float64 items has no ``live_items``: its
    edges are float32 class boundaries and its sketches of float32-rounded values, so its
    fields keep float32 live sketches in a Monitor over it, as before (a field float32 merges
    needs the baseline rebuilt, as README says); a rebuilt one marks such a field float64 and
    the mark survives a save.

    ns-timestamps-float32.dgb: at d20f314, ``driftgauge baseline -c ts.yaml --data ts.csv -o
    ns-timestamps-float32.dgb --workers 1``, ts.csv 300 rows of ``ts`` N(1.7e18, 1e6) and ``x``
    N(10, 2) (numpy default_rng(1)), ts.yaml the two numeric features (kserve-v1).
    """
    old = load_baseline(DATA / "ns-timestamps-float32.dgb")
    assert {name: held.live_items for name, held in old.fields.items()} == {
        "ts": "float32",
        "x": "float32",
    }
    ts = old.fields["ts"].summary
    assert isinstance(ts, NumericSummary) and len(ts.binning.edges) == 2  # one float32's bins
    config = make_config(tmp_path, [("ts", "numeric"), ("x", "numeric")])
    monitor = Monitor(config, old)
    monitor.ingest([Extracted(150, {"ts": [1.7e18] * 150, "x": [10.0] * 150})], now=0.0)
    assert all(f.observations == 150 for f in monitor.compute(now=0.0).fields)
    windows = monitor.merged_windows(0.0)["1m"]
    assert all(getattr(windows[name], "items", None) == "float32" for name in ("ts", "x"))
    rng = np.random.default_rng(1)
    columns = {"ts": rng.normal(1.7e18, 1e6, 300).tolist(), "x": rng.normal(10, 2, 300).tolist()}
    rebuilt = build_baseline(config, [write_csv(tmp_path / "ts.csv", columns)], workers=1)
    save_baseline(rebuilt, tmp_path / "ts.dgb")
    again = load_baseline(tmp_path / "ts.dgb")
    assert {name: held.live_items for name, held in again.fields.items()} == {
        "ts": "float64",
        "x": "float32",
    }
