"""CSV files split across workers: cuts that fall in quoted values, line ends, cells that
are not numbers; every way gives the baseline the standard library's reader gives."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from driftgauge.baseline import Baseline, build, build_baseline, datafiles, local
from driftgauge.baseline.chunks import CSV_NUMERIC_NULLS
from driftgauge.baseline.passes import SketchPass
from driftgauge.config import Config, config_from_mapping
from driftgauge.sketches import NumericSummary
from tests._stats_helpers import make_config
from tests.baseline.test_determinism import signature
from tests.helpers import base_config, write_csv

FIELDS = [("a", "numeric"), ("c", "categorical")]


def config(tmp_path: Path) -> Config:
    return make_config(tmp_path, FIELDS)


def counts(baseline: Baseline) -> dict[str, Any]:
    """The signature, with each numeric field's counts of NaN, inf and not-numbers."""
    result = signature(baseline)
    for name, held in baseline.fields.items():
        summary = held.summary
        if isinstance(summary, NumericSummary):
            result[f"{name} invalid"] = (summary.nan, summary.inf, summary.wrong_type)
    return result


def stdlib(tmp_path: Path, path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The reference: the standard library's csv module, on one core."""
    with monkeypatch.context() as patch:
        patch.setattr(datafiles, "pa", None)
        return counts(build_baseline(config(tmp_path), [path], workers=1))


def many_parts(monkeypatch: pytest.MonkeyPatch, path: Path, least: int) -> None:
    """Parts of a few KB, so that small files are cut many times."""
    monkeypatch.setattr(local, "PART_BYTES", 4_096)
    monkeypatch.setattr(local, "MIN_PART_BYTES", 1_024)
    assert len(local.split_parts([path], 2)) >= least


def write_rows(path: Path, rows: list[list[str]], terminator: str = "\n") -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator=terminator)
        writer.writerow(["a", "c"])
        writer.writerows(rows)
    return path


def test_cuts_inside_quoted_line_ends_are_moved_and_every_row_read_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Quoted values holding line ends that look like rows: a cut between two of their lines
    used to make rows of the fragments (60,002 rows of 60,000, categories 'inner2"')."""
    rng = np.random.default_rng(3)
    notes = ["note\n5,1,inner\n6,0,inner2", 'say "hi"\r\n7,x', "plain"]
    rows = [[f"{rng.normal():.6f}", notes[i % 3]] for i in range(3_000)]
    path = write_rows(tmp_path / "notes.csv", rows)
    reference = stdlib(tmp_path, path, monkeypatch)
    assert reference["rows"] == 3_000
    assert reference["c"][2] == dict.fromkeys(notes, 1_000)
    many_parts(monkeypatch, path, 20)
    for workers in (1, 2):
        assert counts(build_baseline(config(tmp_path), [path], workers=workers)) == reference


@pytest.mark.parametrize("terminator", ["\r", "\r\n"])
def test_lines_ended_by_cr_or_crlf_give_the_rows_of_lf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, terminator: str
) -> None:
    """A file with old Mac line ends (CR alone) was one header line: a baseline of 0 rows."""
    rows = [[f"{i / 7:.5f}", f"k{i % 5}"] for i in range(5_000)]
    path = write_rows(tmp_path / "cr.csv", rows, terminator)
    reference = stdlib(tmp_path, write_rows(tmp_path / "lf.csv", rows), monkeypatch)
    assert reference["rows"] == 5_000
    many_parts(monkeypatch, path, 1)
    for workers in (1, 2):
        assert counts(build_baseline(config(tmp_path), [path], workers=workers)) == reference


CELLS = ["1.5", "-2", "1e3", "", "NA", "N/A", "null", "NULL", "#N/A", "NaN", "nan", "inf"]
CELLS += ["-inf", "Infinity", "1e400", "abc", "TRUE", "1_000x"]


def test_missing_spellings_and_cells_that_are_not_numbers_count_as_in_every_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a numeric column "NA", "null", "#N/A"… are missing, "NaN" is NaN and "abc" is not a
    number (it used to stop pyarrow's reader: exit 4); in a categorical one only an empty
    cell is missing and "NA" is a category, as for the sidecar and in Parquet."""
    rng = np.random.default_rng(8)
    numbers = [f"{x:.4f}" for x in rng.normal(size=4_000)]
    pick = rng.integers(0, len(CELLS), 4_000)
    # Mostly numbers, a few of every other spelling, the first non-number far into the file.
    a = [CELLS[p] if i > 2_000 and i % 9 == 0 else numbers[i] for i, p in enumerate(pick)]
    c = ["", "NA", "null", "x", "N/A"] * 800
    path = write_rows(tmp_path / "cells.csv", [list(row) for row in zip(a, c, strict=True)])
    reference = stdlib(tmp_path, path, monkeypatch)
    chosen = [cell for i, cell in enumerate(a) if i > 2_000 and i % 9 == 0]
    invalid = reference["a invalid"]
    assert invalid[2] == sum(cell in {"abc", "TRUE", "1_000x"} for cell in chosen) > 0
    assert invalid[0] == sum(cell in {"NaN", "nan"} for cell in chosen) > 0
    assert reference["a"][4] == sum(cell in CSV_NUMERIC_NULLS for cell in chosen) > 0
    assert reference["c"][2] == {"NA": 800, "null": 800, "x": 800, "N/A": 800}
    assert reference["c"][4] == 800
    many_parts(monkeypatch, path, 6)
    for workers in (1, 2):
        assert counts(build_baseline(config(tmp_path), [path], workers=workers)) == reference


def test_pass_two_counts_the_spilled_class_keys_as_it_would_the_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A numeric column no later pass reads row by row is spilled as pass 1's sorted class
    keys, not as values (the multivariate features, and a numeric prediction with segments,
    stay rows); the baseline is the one the spilled values give, NaN, inf, missing and
    not-a-number cells included."""
    raw = base_config(
        tmp_path,
        features=[
            {"name": "x1", "type": "numeric"},
            {"name": "x2", "type": "numeric"},
            {"name": "x3", "type": "numeric"},
            {"name": "c", "type": "categorical"},
        ],
        predictions=[{"name": "p", "type": "numeric"}],
        multivariate={"features": ["x1", "x2"]},
        segments={"features": ["c"]},
    )
    config = config_from_mapping(raw, base=tmp_path)
    assert build._keyed(config) == ["x3"]
    rng = np.random.default_rng(3)
    n = 6_000
    x1 = rng.normal(10.0, 2.0, n)
    x3: list[Any] = np.where(rng.random(n) < 0.2, 0.0, rng.lognormal(0.0, 1.0, n)).tolist()
    cells = ["nan", "inf", "-inf", "", "oops", "NA"]
    for i, index in enumerate(range(7, n, 401)):
        x3[index] = cells[i % len(cells)]
    path = write_csv(
        tmp_path / "train.csv",
        {
            "x1": x1.round(3).tolist(),
            "x2": (0.5 * x1 + rng.normal(0.0, 1.0, n)).round(3).tolist(),
            "x3": x3,
            "c": rng.choice(["a", "b", "c"], n).tolist(),
            "p": rng.normal(0.0, 1.0, n).round(2).tolist(),
        },
    )
    many_parts(monkeypatch, path, 4)
    with local.LocalRunner([path], config.columns, workers=2, keyed=["x3"]) as runner:
        runner.run(SketchPass(config), "pass 1")
        # The last attempt's ("oops" made x3 text; a part of the first may still be in its folder).
        spill = runner._spill / str(runner._attempt)
        spilled = pa.ipc.open_file(next(spill.iterdir())).schema
    assert spilled.names == ["x1", "x2", "c", "p", "x3"]
    assert spilled.field("x3").type == pa.uint32() and spilled.field("x1").type == pa.float64()
    with local.LocalRunner([path], config.columns, workers=2) as runner:
        from_values = counts(build._build(config, runner))
    assert counts(build_baseline(config, [path], workers=2)) == from_values
    assert counts(build_baseline(config, [path], workers=1)) == from_values
    assert from_values["x3 invalid"] == (3, 6, 2)  # nan; inf and -inf; oops
