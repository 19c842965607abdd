"""A test pass for the Spark and Dask runners, and the training data they read.

``TallyState`` is a ``PassState`` whose merge is exact whatever the split:
the multiset of every field's values, the missing counts, the rows, plus a
KLL sketch of one numeric field (merged like the build's sketches).  It
lives in an importable module because Spark's Python workers and Dask's
worker processes unpickle it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasketches as ds
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from driftgauge.baseline import Baseline
from driftgauge.baseline.chunks import Chunk
from driftgauge.baseline.datafiles import read_chunks
from driftgauge.config import Config, FieldSpec
from driftgauge.sketches import NumericSummary
from tests._stats_helpers import make_config
from tests.baseline.test_determinism import signature
from tests.helpers import training_rows, write_csv

FIELDS = (
    FieldSpec("alcohol", "numeric", "input"),
    FieldSpec("ash", "numeric", "input"),
    FieldSpec("region", "categorical", "input"),
    FieldSpec("class", "categorical", "prediction"),
)
# `driftgauge baseline`'s arguments for each runner (the conftest's `runners` adds Dask's
# scheduler address).
RUNNERS = {"local": ["--workers", "2"], "spark": ["--spark", "local[2]"], "dask": ["--dask"]}
KLL_K = 200  # small: a few thousand rows already put the sketch in estimation mode


class TallyState:
    """Exact per-field tallies of every chunk, and a KLL sketch of ``alcohol``."""

    def __init__(self, fields: Sequence[FieldSpec] = FIELDS) -> None:
        self.fields = tuple(fields)
        self.rows = 0
        self.chunks = 0
        self.values: dict[str, Counter[Any]] = {f.name: Counter() for f in self.fields}
        self.missing: dict[str, int] = dict.fromkeys(self.values, 0)
        self.kll = ds.kll_doubles_sketch(KLL_K)

    @property
    def reads(self) -> Sequence[FieldSpec]:
        return self.fields

    def empty(self) -> TallyState:
        return TallyState(self.fields)

    def add(self, chunk: Chunk) -> None:
        self.rows += chunk.rows
        self.chunks += 1
        for spec in self.fields:
            column = chunk.columns[spec.name]
            self.missing[spec.name] += column.missing
            values = column.values
            if spec.type == "numeric":
                values = values[np.isfinite(values)]
                if spec.name == "alcohol":
                    self.kll.update(values)
            self.values[spec.name].update(values.tolist())

    def merge(self, other: TallyState, /) -> None:
        self.rows += other.rows
        self.chunks += other.chunks
        for name, counts in other.values.items():
            self.values[name].update(counts)
            self.missing[name] += other.missing[name]
        self.kll.merge(other.kll)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["kll"] = self.kll.serialize()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state["kll"] = ds.kll_doubles_sketch.deserialize(state["kll"])
        self.__dict__.update(state)


def local_tally(files: Sequence[Path], fields: Sequence[FieldSpec] = FIELDS) -> TallyState:
    """The tally filled by reading ``files`` in this process (what a local build reads)."""
    state = TallyState(fields)
    for path in files:
        for chunk in read_chunks(path, fields):
            state.add(chunk)
    return state


def assert_same_tally(cluster: TallyState, local: TallyState) -> None:
    """Equal rows and exact tallies; the merged sketch within KLL's rank error of the local one."""
    assert cluster.rows == local.rows
    assert cluster.missing == local.missing
    assert cluster.values == local.values
    assert cluster.kll.n == local.kll.n
    assert cluster.kll.get_min_value() == local.kll.get_min_value()
    assert cluster.kll.get_max_value() == local.kll.get_max_value()
    error = cluster.kll.normalized_rank_error(False) + local.kll.normalized_rank_error(False)
    grid = np.quantile(sorted(local.values["alcohol"].elements()), np.linspace(0.05, 0.95, 19))
    ranks = np.subtract(cluster.kll.get_cdf(grid.tolist()), local.kll.get_cdf(grid.tolist()))
    assert np.abs(ranks).max() <= error


def assert_same_baseline(cluster: Baseline, local: Baseline) -> None:
    """Identical edges, bin counts, categories, counts and segments; sketches within their error."""
    assert signature(cluster) == signature(local)
    for name, held in local.fields.items():
        summary, other = held.summary, cluster.fields[name].summary
        if not isinstance(summary, NumericSummary):
            continue
        assert isinstance(other, NumericSummary)
        if held.spec.role == "multivariate":
            # The PCA is fitted from float moments summed in another order: its errors
            # agree to rounding (their float32-class edges and counts exactly, above).
            assert other.minimum == pytest.approx(summary.minimum, rel=1e-9)
            assert other.maximum == pytest.approx(summary.maximum, rel=1e-9)
        else:
            assert (other.minimum, other.maximum) == (summary.minimum, summary.maximum)
        error = summary.kll.normalized_rank_error(False) + other.kll.normalized_rank_error(False)
        edges = summary.binning.edges.tolist()
        ranks = np.subtract(summary.kll.get_cdf(edges), other.kll.get_cdf(edges))
        assert np.abs(ranks).max() <= error, name


def training_columns(n: int, seed: int = 0) -> dict[str, list[Any]]:
    """``training_rows`` with missing values in a numeric and a categorical field,
    and a point mass (zeros) in ``ash``."""
    columns = training_rows(n, seed)
    for index in range(3, n, 4):
        columns["ash"][index] = 0.0
    for index in range(0, n, 97):
        columns["alcohol"][index] = None
    for index in range(5, n, 131):
        columns["region"][index] = None
    return columns


def write_parts(directory: Path, n: int, parts: int) -> list[Path]:
    """``n`` training rows as ``parts`` Parquet files (several row groups each) of ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    columns = training_columns(n)
    table = pa.table(columns)
    size = math.ceil(n / parts)
    paths = []
    for part in range(parts):
        path = directory / f"part-{part}.parquet"
        pq.write_table(table.slice(part * size, size), path, row_group_size=1_000)
        paths.append(path)
    return paths


def write_training_csv(path: Path, n: int, seed: int = 0) -> Path:
    return write_csv(path, training_columns(n, seed))


def float64_parts(directory: Path, rows: int, parts: int) -> tuple[Config, list[Path]]:
    """Parquet files of fields float32 merges (nanosecond timestamps, 1e9 and cents, values
    within 1e-9 of 1, beyond float32's range) and an ordinary one, and a config of them."""
    rng = np.random.default_rng(9)
    spread = {"ts": (1.7e18, 1e6), "amount": (1e9, 0.05), "near_one": (1.0, 1e-9)}
    columns = {name: rng.normal(mu, sd, rows) for name, (mu, sd) in spread.items()}
    columns |= {"huge": rng.normal(5e39, 1e39, rows), "x": rng.normal(10.0, 2.0, rows)}
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, part in enumerate(np.array_split(np.arange(rows), parts)):
        path = directory / f"part-{i}.parquet"
        pq.write_table(pa.table({name: values[part] for name, values in columns.items()}), path)
        paths.append(path)
    return make_config(directory, [(name, "numeric") for name in columns]), paths


def assert_float64_fields(baseline: Baseline) -> None:
    """The fields of :func:`float64_parts` float32 merges keep float64 live sketches."""
    items = {name: held.live_items for name, held in baseline.fields.items()}
    assert items == dict.fromkeys(["ts", "amount", "near_one", "huge"], "float64") | {
        "x": "float32"
    }


def our_lines(stderr: str) -> list[str]:
    """driftgauge's own lines of ``stderr`` (an in-process cluster's log lines may be there too)."""
    return [line for line in stderr.splitlines() if line.startswith("driftgauge: ")]
