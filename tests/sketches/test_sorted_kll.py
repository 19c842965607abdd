"""A KLL sketch compacted from a sorted chunk: DataSketches' own layout, ranks within bound."""

from __future__ import annotations

import multiprocessing
import struct
from concurrent.futures import ProcessPoolExecutor

import datasketches as ds
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from driftgauge.sketches import sorted_kll as module
from driftgauge.sketches.sorted_kll import CHUNK_K, sorted_kll, total_capacity
from driftgauge.sketches.summary import ItemType


def _halvings(n: int) -> int:
    """How many times a chunk of ``n`` values is halved before it fits :data:`CHUNK_K`."""
    h = 0
    while n > CHUNK_K:
        n //= 2
        h += 1
    return h


def _rank_errors(sketch: object, values: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Each query's rank (inclusive) in the sketch less its exact rank, in items."""
    exact = np.searchsorted(np.sort(values), queries, side="right")
    got = np.array([sketch.get_rank(float(q), True) for q in queries]) * len(values)  # type: ignore[attr-defined]
    return np.asarray(got - exact)


@pytest.mark.parametrize("k", [8, 200, 1000, CHUNK_K])
@pytest.mark.parametrize("n", [10, 3_000, 70_000, 1_000_000])
def test_total_capacity_is_datasketches_own(k: int, n: int) -> None:
    """The capacity formula puts the first item where DataSketches' own sketches put it."""
    sketch = ds.kll_doubles_sketch(k)
    sketch.update(np.random.default_rng(n).random(n))
    data = sketch.serialize()
    if not sketch.is_estimation_mode():
        return  # exact sketches are written without levels
    levels = data[18]
    first = struct.unpack_from("<I", data, 20)[0]
    assert first + sketch.num_retained == total_capacity(k, levels)


@pytest.mark.parametrize("items", ["float64", "float32"])
def test_a_chunk_sketch_reads_back_with_its_count_and_extremes(items: ItemType) -> None:
    """n, min and max are the chunk's; the items are kept as the summary keeps them."""
    values = np.sort(np.random.default_rng(3).lognormal(size=65_536))
    sketch = sorted_kll(values, items)
    expected = ds.kll_floats_sketch if items == "float32" else ds.kll_doubles_sketch
    assert isinstance(sketch, expected)
    assert sketch.n == len(values)
    assert sketch.num_retained <= CHUNK_K + _halvings(len(values))
    assert sketch.get_min_value() == values[0].astype(np.float32 if items == "float32" else float)
    assert sketch.get_max_value() == values[-1].astype(np.float32 if items == "float32" else float)
    assert type(sketch).deserialize(sketch.serialize()).n == len(values)


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(
        np.float64,
        st.integers(1, 3 * CHUNK_K + 7),
        elements=st.floats(-1e6, 1e6, allow_nan=False, width=64),
    )
)
def test_every_rank_is_within_the_halvings_worst_case(values: np.ndarray) -> None:
    """No rank moves by more than 2^h − 1 items, h the halvings; a small chunk is exact."""
    ordered = np.sort(values)
    sketch = sorted_kll(ordered, "float64")
    queries = np.concatenate([ordered, ordered - 0.5, [ordered[-1] + 1]])
    errors = _rank_errors(sketch, values, queries)
    bound = 2 ** _halvings(len(values)) - 1
    assert np.abs(errors).max() <= bound + 1e-6 * len(values)


def test_chunks_merged_into_a_k200_sketch_stay_within_its_stated_error() -> None:
    """Sixteen 65,536-value chunks merged: every decile within normalized_rank_error, k kept."""
    rng = np.random.default_rng(11)
    for _ in range(5):
        chunks = [rng.normal(size=65_536) * (1 + i % 3) for i in range(16)]
        merged = ds.kll_doubles_sketch(200)
        for chunk in chunks:
            merged.merge(sorted_kll(np.sort(chunk), "float64"))
        values = np.concatenate(chunks)
        assert merged.n == len(values)
        assert merged.k == 200
        bound = merged.normalized_rank_error(False)
        queries = np.quantile(values, np.linspace(0.01, 0.99, 99))
        errors = _rank_errors(merged, values, queries) / len(values)
        assert np.abs(errors).max() <= bound


def test_the_compaction_is_unbiased() -> None:
    """Over many chunks a rank's error averages to about zero (random halvings)."""
    rng = np.random.default_rng(5)
    values = np.sort(rng.normal(size=65_536))
    query = np.array([values[1000]])  # 1,001 values up to it: odd, so every halving can err
    # Each of 4 halvings moves the rank by 0 or ±2^l; 400 draws: mean within 4σ of 0.
    errors = [_rank_errors(sorted_kll(values, "float64"), values, query)[0] for _ in range(400)]
    sigma = np.sqrt(sum(4**level for level in range(_halvings(len(values)))) / 400)
    assert abs(np.mean(errors)) <= 4 * sigma
    assert np.std(errors) > 0  # the halvings are random, not one fixed offset


def _bits(_: object = None) -> list[int]:
    return [module._offset() for _ in range(64)]


def test_forked_workers_halve_with_their_own_random_bits() -> None:
    """Two workers forked from one parent draw different bits (the same ones would correlate parts)."""
    context = multiprocessing.get_context("fork")
    drawn = []
    for _ in range(2):
        with ProcessPoolExecutor(1, mp_context=context) as pool:
            drawn.append(pool.submit(_bits).result())
    assert drawn[0] != drawn[1]
