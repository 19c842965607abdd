"""Baseline files written by earlier driftgauge versions (driftgauge.baseline.store)."""

from __future__ import annotations

from pathlib import Path

import pytest

from driftgauge.baseline import load_baseline
from driftgauge.exceptions import BaselineError

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
