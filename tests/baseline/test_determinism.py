"""The same data and config give the same baseline edges and counts, however it is built."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from driftgauge.baseline import Baseline, build_baseline, local
from driftgauge.config import Config
from driftgauge.sketches import NumericSummary
from tests._stats_helpers import make_config as config_of
from tests.helpers import training_rows, write_csv

ROWS = 200_000


def signature(baseline: Baseline) -> dict[str, Any]:
    """What must not change between builds: edges, bin counts, categories and their counts."""
    result: dict[str, Any] = {"rows": baseline.rows, "segments": {}}
    for name, held in baseline.fields.items():
        summary = held.summary
        binning = summary.binning
        edges = (
            binning.edges.tolist() if isinstance(summary, NumericSummary) else binning.categories
        )  # type: ignore[union-attr]
        result[name] = (
            edges,
            summary.bins.tolist(),
            held.category_counts,
            summary.count,
            summary.missing,
            held.live_items,
        )
    for name, tables in baseline.segments.items():
        result["segments"][name] = {p: t.tolist() for p, t in tables.items()}
    return result


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    directory = tmp_path_factory.mktemp("determinism")
    columns = training_rows(ROWS, seed=5)
    rng = np.random.default_rng(6)
    # A zero-inflated field: its zeros are a point mass with a bin of its own.
    ash = np.asarray(columns["ash"])
    ash[rng.random(ROWS) < 0.3] = 0.0
    columns["ash"] = ash.tolist()
    columns["alcohol"][::97] = [None] * len(columns["alcohol"][::97])
    table = pa.table(columns)
    pq.write_table(table, directory / "train.parquet", row_group_size=25_000)
    return {
        "csv": write_csv(directory / "train.csv", columns),
        "parquet": directory / "train.parquet",
        "columns": columns,
    }


def test_every_way_of_building_gives_the_same_edges_and_counts(
    data: dict[str, Any],
    make_config: Callable[..., Config],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = make_config(segments={"features": ["region"]})
    reference = signature(build_baseline(config, [data["csv"]], workers=1))
    assert signature(build_baseline(config, [data["csv"]], workers=1)) == reference
    assert signature(build_baseline(config, [data["csv"]], workers=2)) == reference
    assert signature(build_baseline(config, [data["parquet"]], workers=2)) == reference
    assert signature(build_baseline(config, [data["parquet"]], workers=1)) == reference
    monkeypatch.setattr(local, "PART_BYTES", 100_000)  # many parts, many merges
    assert len(local.split_parts([data["csv"]], 2)) > 2
    assert signature(build_baseline(config, [data["csv"]], workers=2, chunk_rows=7_000)) == (
        reference
    )


def test_counts_are_exact_and_sketches_within_their_error(
    data: dict[str, Any], make_config: Callable[..., Config]
) -> None:
    """Bin counts equal numpy's on the raw values; the KLL quantiles are within its rank error."""
    baseline = build_baseline(make_config(), [data["csv"]], workers=2)
    for name in ("alcohol", "ash"):
        raw = np.asarray([v for v in data["columns"][name] if v is not None], dtype=np.float64)
        summary = baseline.fields[name].summary
        assert isinstance(summary, NumericSummary)
        expected = np.bincount(
            np.searchsorted(summary.binning.edges, raw, side="right"),
            minlength=summary.binning.size,
        )
        assert np.array_equal(summary.bins, expected)
        error = summary.kll.normalized_rank_error(False)
        ranks = np.linspace(0.05, 0.95, 19)
        quantiles = np.asarray(summary.kll.get_quantiles(ranks.tolist()))
        ordered = np.sort(raw)
        low = np.searchsorted(ordered, quantiles, side="left") / len(raw)
        high = np.searchsorted(ordered, quantiles, side="right") / len(raw)
        # The sketch's quantile has the asked rank within its error (ties span a rank range).
        assert np.all((ranks >= low - 2.5 * error) & (ranks <= high + 2.5 * error)), name


def test_zero_inflated_field_keeps_its_point_mass_bin(
    data: dict[str, Any], make_config: Callable[..., Config]
) -> None:
    baseline = build_baseline(make_config(), [data["parquet"]], workers=2)
    summary = baseline.fields["ash"].summary
    assert isinstance(summary, NumericSummary)
    zeros = int(np.count_nonzero(np.asarray(data["columns"]["ash"]) == 0.0))
    assert summary.bins[0] == zeros
    assert baseline.fields["ash"].edge_rank_error == 0.0


@pytest.mark.parametrize("workers", [1, 2, 3, 8])
def test_a_file_splits_into_a_multiple_of_the_workers(
    data: dict[str, Any], workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No worker idles while another fills a last, odd part (Parquet: as far as row groups go)."""
    monkeypatch.setattr(local, "PART_BYTES", 200_000)
    monkeypatch.setattr(local, "MIN_PART_BYTES", 10_000)
    size = data["csv"].stat().st_size
    csv_parts = local.split_parts([data["csv"]], workers)
    assert len(csv_parts) % workers == 0
    assert len(csv_parts) >= size / 200_000
    header = len(data["csv"].read_bytes().split(b"\n")[0]) + 1
    assert sum(p.size for p in csv_parts) + header == size  # every byte in one part
    groups = pq.ParquetFile(data["parquet"]).metadata.num_row_groups
    parquet_parts = local.split_parts([data["parquet"]], workers)
    assert len(parquet_parts) % workers == 0 or len(parquet_parts) == groups
    assert sorted(g for p in parquet_parts for g in p.row_groups) == list(range(groups))


def _arrow_pool(_: object = None) -> str:
    return str(pa.default_memory_pool().backend_name)


def test_workers_allocate_from_jemalloc_and_the_parent_keeps_its_pool() -> None:
    """mimalloc kept what each part freed, so a worker's peak grew with the parts it filled."""
    try:
        pa.jemalloc_memory_pool()
    except NotImplementedError:
        pytest.skip("this pyarrow is built without jemalloc")
    parent = _arrow_pool()
    with local.LocalRunner([], [], workers=2) as runner:
        pool = runner._executor()
        assert set(pool.map(_arrow_pool, range(4))) == {"jemalloc"}
    assert _arrow_pool() == parent


def test_fields_float32_merges_get_the_same_float64_edges_and_exact_counts_every_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nanosecond timestamps, 1e9 and cents, values within 1e-9 of 1 and beyond float32's
    range are built with float64 classes, sketches and live sketches: the same edges and
    counts from CSV and Parquet, on one worker, two, and many parts; counts numpy's on the raw
    values, each of the ten bins a tenth of them (but ties: 1.7e18's float64 values are 256
    apart); an ordinary field keeps float32."""
    rng = np.random.default_rng(8)
    rows = 60_000
    spread = {"ts": (1.7e18, 1e6), "amount": (1e9, 0.05), "near_one": (1.0, 1e-9)}
    columns = {name: rng.normal(mu, sd, rows).tolist() for name, (mu, sd) in spread.items()}
    columns["huge"] = rng.normal(5e39, 1e39, rows).tolist()
    columns["x"] = rng.normal(10.0, 2.0, rows).tolist()
    config = config_of(tmp_path, [(name, "numeric") for name in columns])
    csv = write_csv(tmp_path / "train.csv", columns)
    pq.write_table(pa.table(columns), tmp_path / "train.parquet", row_group_size=10_000)
    baseline = build_baseline(config, [csv], workers=1)
    reference = signature(baseline)
    assert signature(build_baseline(config, [csv], workers=2)) == reference
    assert signature(build_baseline(config, [tmp_path / "train.parquet"], workers=2)) == reference
    monkeypatch.setattr(local, "PART_BYTES", 1_000_000)  # many parts, many merges
    assert len(local.split_parts([csv], 2)) > 2
    assert signature(build_baseline(config, [csv], workers=2, chunk_rows=7_000)) == reference
    for name, values in columns.items():
        held = baseline.fields[name]
        summary = held.summary
        assert isinstance(summary, NumericSummary)
        assert held.live_items == ("float32" if name == "x" else "float64"), name
        raw = np.asarray(values)
        expected = np.bincount(
            np.searchsorted(summary.binning.edges, raw, side="right"),
            minlength=summary.binning.size,
        )
        assert np.array_equal(summary.bins, expected), name
        assert np.all(np.abs(summary.bins - rows / 10) <= rows / 1_000), name  # ties only
