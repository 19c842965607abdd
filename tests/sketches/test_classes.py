"""The edge rule on exact float32-class counts: against the rule computed on the raw data."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from driftgauge.sketches.classes import (
    BUCKETS,
    NO_CLASS,
    ClassCounts,
    FineClasses,
    KeyCounts,
    MergedClasses,
    add_sorted_bucket_counts,
    class_edges,
    class_keys,
    class_values,
    float32_classes,
    float32_normal,
    occupied,
)
from driftgauge.sketches.edges import float32_ceiling, float32_floor
from tests.sketches.test_edges import BINS, SHAPES, counts, exact_rule_edges, shapes

FloatArray = np.ndarray[Any, np.dtype[np.float64]]


def bucket_counts(values: FloatArray) -> Any:
    """Every bucket's count by ``bincount``: a bucket is a class key's top 16 bits."""
    return np.bincount(class_keys(values) >> 16, minlength=BUCKETS).astype(np.int64)


def dense(counts: KeyCounts) -> Any:
    """Every bucket's count from counts held sparse."""
    held, n = occupied(counts)
    result = np.zeros(BUCKETS, dtype=np.int64)
    result[held] = n
    return result


finite = st.floats(allow_nan=False, allow_infinity=False)
samples = st.lists(
    st.one_of(finite, st.sampled_from([0.0, -0.0, 1.0, 0.1, 2.5, 1e300, -1e300])),
    min_size=1,
    max_size=300,
)


def edges_from_counts(values: FloatArray, bins: int = BINS) -> tuple[FloatArray, Any]:
    """The rule on the complete class counts of ``values`` (every bucket counted)."""
    classes = ClassCounts.of(np.arange(BUCKETS))
    classes.add(values)
    found = class_edges(
        bucket_counts(values), classes, bins, float(values.min()), float(values.max())
    )
    assert not found.needed
    return found.edges, found.counts


@given(st.lists(finite, min_size=2, max_size=200))
def test_class_keys_order_values_as_their_float32_roundings(values: list[float]) -> None:
    array = np.asarray(values)
    single = np.clip(array, -3.4028234663852886e38, 3.4028234663852886e38).astype(np.float32)
    order = np.argsort(single, kind="stable")
    keys = class_keys(array)
    assert np.all(np.diff(keys[order].astype(np.int64)) >= 0)
    # Equal keys exactly when the float32 roundings are equal (-0.0 equals 0.0).
    assert np.array_equal(keys[:, None] == keys[None, :], single[:, None] == single[None, :])
    assert np.array_equal(class_values(keys), single.astype(np.float64))


@pytest.mark.parametrize("shape", SHAPES)
def test_edges_cut_the_data_exactly_where_the_rule_does(shape: str) -> None:
    """On float32 data (one value per class) the cuts are the exact rule's; counts are exact."""
    values = shapes(np.random.default_rng(1))[shape].astype(np.float32).astype(np.float64)
    edges, tally = edges_from_counts(values)
    assert np.array_equal(tally, counts(values, edges))
    masses, quantiles = exact_rule_edges(values)
    reference = np.unique(
        np.concatenate([float32_floor(quantiles), float32_floor(masses), float32_ceiling(masses)])
    )
    reference = reference[(reference > values.min()) & (reference <= values.max())]
    expected = counts(values, reference)
    # The same partition of the data; the rule closes the empty bins between levels.
    assert np.array_equal(tally, expected[expected > 0]), shape
    for mass in masses:  # each point mass alone in its bin
        assert np.count_nonzero(values == mass) in tally


@given(samples, st.integers(2, 20), st.integers(0, 300))
def test_result_does_not_depend_on_how_the_data_is_split(
    values: list[float], bins: int, cut: int
) -> None:
    array = np.asarray(values)
    edges, tally = edges_from_counts(array, bins)
    assert np.array_equal(tally, counts(array, edges))
    assert len(tally) <= bins
    left, right = ClassCounts.of(np.arange(BUCKETS)), ClassCounts.of(np.arange(BUCKETS))
    left.add(array[:cut])
    right.add(array[cut:])
    right.merge(left)
    buckets = bucket_counts(array[cut:]) + bucket_counts(array[:cut])
    found = class_edges(buckets, right, bins, float(array.min()), float(array.max()))
    assert np.array_equal(found.edges, edges)
    assert np.array_equal(found.counts, tally)


def test_uncounted_buckets_are_named_not_guessed() -> None:
    """With only some buckets counted class by class, the rule names the ones it lacks."""
    values = np.random.default_rng(4).normal(0.0, 1.0, 10_000)
    buckets = bucket_counts(values)
    partial = ClassCounts.of([])
    partial.add(values)
    found = class_edges(buckets, partial, BINS, float(values.min()), float(values.max()))
    assert found.needed
    complete = ClassCounts.of(sorted(found.needed))
    complete.add(values)
    again = class_edges(buckets, complete, BINS, float(values.min()), float(values.max()))
    assert not again.needed
    edges, tally = edges_from_counts(values)
    assert np.array_equal(again.edges, edges) and np.array_equal(again.counts, tally)


@given(samples, samples)
def test_sorted_values_counted_run_by_run_equal_the_bincount(
    first: list[float], second: list[float]
) -> None:
    """Bucket counts added run by run from sorted values, over two calls, equal numpy's bincount."""
    counts = KeyCounts()
    for values in (first, second, []):
        add_sorted_bucket_counts(counts, np.sort(np.asarray(values, dtype=np.float64)))
    expected = bucket_counts(np.asarray(first + second, dtype=np.float64))
    assert np.array_equal(dense(counts), expected)
    assert np.array_equal(counts.keys, np.flatnonzero(expected))  # only the occupied held


@given(samples)
def test_sorted_float32_classes_count_the_same_buckets_as_the_sorted_values(
    values: list[float],
) -> None:
    """Sorting the float32 classes (the build's cheaper sort) gives the buckets exactly;
    float32_normal says when the rounding is within 2^-24."""
    array = np.asarray(values, dtype=np.float64)
    counts = KeyCounts()
    add_sorted_bucket_counts(counts, np.sort(float32_classes(array)))
    assert np.array_equal(dense(counts), bucket_counts(array))
    if float32_normal(array):
        single = float32_classes(array).astype(np.float64)
        assert np.all(np.abs(single - array) <= np.abs(array) * 2.0**-24)


@pytest.mark.parametrize(
    ("values", "normal"),
    [([0.0, -0.0, 0.1, -3e38, 1.2e-38], True), ([1.0, 1e300], False), ([1.0, -1e-300], False)],
)
def test_float32_normal_is_false_beyond_float32s_range_or_normal_range(
    values: list[float], normal: bool
) -> None:
    """Values float32 clamps or flushes towards 0 are not rounded within 2^-24."""
    assert float32_normal(np.asarray(values)) is normal


def test_merging_many_parts_holds_few_staged_classes() -> None:
    """A parent merging 200 parts of the same 30,000 classes holds at most about twice
    those classes at any time (it held every part's until 1M were staged), and counts exactly."""
    rng = np.random.default_rng(11)
    population = rng.normal(0.0, 1.0, 30_000)
    wanted = np.arange(BUCKETS)
    total = ClassCounts.of(wanted)
    drawn = []
    for _ in range(200):
        part = ClassCounts.of(wanted)
        values = rng.choice(population, 20_000)
        part.add(values)
        drawn.append(values)
        total.merge(part)
        assert total._pending_size + len(total.keys) <= 2 * (1 << 16) + 20_000
    total.compact()
    keys, counts = np.unique(class_keys(np.concatenate(drawn)), return_counts=True)
    assert np.array_equal(total.keys, keys) and np.array_equal(total.counts, counts)


@given(
    samples, st.lists(st.integers(0, BUCKETS - 1), max_size=20), st.integers(0, 3), st.booleans()
)
def test_sorted_keys_count_the_classes_their_values_do(
    values: list[float], extra: list[int], padding: int, single: bool
) -> None:
    """Pass 2 from pass 1's sorted keys (padded as the spill pads them) counts what it counts
    from the values: every other occupied bucket wanted, and some others, the last included."""
    array = np.asarray(values)
    occupied = np.unique(class_keys(array) >> 16)
    wanted = np.union1d(occupied[::2], [*extra, BUCKETS - 1])
    by_value = ClassCounts.of(wanted)
    by_value.add(array)
    buckets = KeyCounts()
    keys = add_sorted_bucket_counts(buckets, np.sort(float32_classes(array) if single else array))
    assert np.array_equal(dense(buckets), bucket_counts(array))
    by_key = ClassCounts.of(wanted)
    by_key.add_sorted(np.concatenate([keys, np.full(padding, NO_CLASS)]))
    by_value.compact()
    by_key.compact()
    assert np.array_equal(by_key.keys, by_value.keys)
    assert np.array_equal(by_key.counts, by_value.counts)


# The live sketch's rank error at k = 200: the share MergedClasses decides by.
SHARE = 0.013294757464848584


def merged_of(parts: list[FloatArray]) -> MergedClasses:
    """A field's MergedClasses over ``parts`` as a build's chunks, each added to its own."""
    merged = MergedClasses(SHARE)
    for part in parts:
        each = MergedClasses(SHARE)
        classes = float32_classes(part)
        each.add(part, classes, np.sort(classes))
        merged.merge(each)
    return merged


def lost_shares(values: FloatArray) -> FloatArray:
    """The share of the data each float32 class holds beyond its most common value: what
    rounding to float32 merges into that value."""
    classes = float32_classes(values)
    lost = []
    for single in np.unique(classes):
        _, tally = np.unique(values[classes == single], return_counts=True)
        lost.append(tally.sum() - tally.max())
    return np.asarray(lost, dtype=np.float64) / len(values)


# Values float32 rounds alike that differ: around 1.7e18 (nanoseconds), 1e9 (cents), 1, beyond
# float32's range and below its smallest subnormal; ties and ordinary values besides.
close = st.sampled_from([1.7e18, 1e9, 1.0, 5e39, -5e39, 1e-300, 0.0]).flatmap(
    lambda centre: st.lists(
        st.integers(-50, 50).map(lambda i: centre + i * max(abs(centre) * 1e-10, 1e-301)),
        min_size=1,
        max_size=60,
    )
)
fields = st.lists(
    st.one_of(close, st.lists(st.one_of(finite, st.sampled_from([0.0, 1.0, 2.5])), max_size=60)),
    min_size=1,
    max_size=6,
)


@given(fields, st.lists(st.integers(0, 400), max_size=5))
@example([[0.0, 9.899899887681881e-170]], [1])  # one value a chunk: each chunk keeps its class
@settings(max_examples=300)
def test_a_field_kept_in_float32_classes_loses_no_distinction_above_the_rank_error(
    runs: list[list[float]], cuts: list[int]
) -> None:
    """Whatever the data and however it is cut into chunks, a field MergedClasses keeps in
    float32 classes has no class holding the live sketch's rank error or more of the data
    beyond its most common value; a field it moves to fine classes had values float32
    merged."""
    values = np.asarray([v for run in runs for v in run], dtype=np.float64)
    if not len(values):
        return
    bounds = sorted({0, len(values), *(min(c, len(values)) for c in cuts)})
    merged = merged_of([values[a:b] for a, b in itertools.pairwise(bounds)])
    assert merged.total == len(values)
    lost = lost_shares(values)
    if not merged.fine:
        assert lost.max() < SHARE
    else:
        assert lost.max() > 0


@pytest.mark.parametrize("shape", SHAPES)
def test_ordinary_fields_keep_float32_classes(shape: str) -> None:
    """Fields float32 tells apart as float64 does (or whose ties are equal values) are not
    fine: their edges, sketches and memory are as before."""
    values = shapes(np.random.default_rng(2))[shape]
    assert not merged_of(np.array_split(values, 3)).fine
    assert not merged_of([values.astype(np.float32).astype(np.float64)]).fine


@pytest.mark.parametrize(
    ("centre", "spread"),
    [(1.7e18, 1e6), (1e9, 0.05), (1.0, 1e-9), (5e39, 1e39), (-5e39, 1e39), (0.0, 1e-300)],
)
def test_fields_float32_merges_get_fine_classes_that_cut_where_the_rule_does(
    centre: float, spread: float
) -> None:
    """Nanosecond timestamps, 1e9 and cents, values within 1e-9 of 1, beyond float32's range
    or below its subnormals: float32 merges them (one or a few classes hold the whole field),
    fine classes of the field's range do not, and the edge rule on them cuts the data into
    equal-mass bins exactly, as on the raw values."""
    values = np.random.default_rng(3).normal(centre, spread, 5_000)
    assert merged_of(np.array_split(values, 2)).fine
    fine = FineClasses.spanning(float(values.min()), float(values.max()))
    keys = fine.keys(values)
    order = np.argsort(values, kind="stable")
    assert np.all(np.diff(keys[order].astype(np.int64)) >= 0)
    assert len(np.unique(keys)) > 0.99 * len(np.unique(values))
    # Each class's lower boundary is its least value: x >= floor(k) exactly when key(x) >= k.
    probes = np.unique(keys)[:: max(1, len(keys) // 50)]
    floors = fine.floors(probes)
    assert np.array_equal(values[:, None] >= floors[None, :], keys[:, None] >= probes[None, :])
    classes = ClassCounts.of(np.arange(BUCKETS), fine)
    classes.add(values)
    buckets = KeyCounts()
    add_sorted_bucket_counts(buckets, np.sort(values), fine)
    found = class_edges(buckets, classes, BINS, float(values.min()), float(values.max()))
    assert not found.needed
    assert np.array_equal(found.counts, counts(values, found.edges))
    assert len(found.counts) == BINS
    assert np.all(np.abs(found.counts - len(values) / BINS) <= 1)
