"""Numeric and categorical summaries: conversion, exact bins, counters and merging."""

from __future__ import annotations

import math
from collections import Counter
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftgauge.sketches.block import (
    NumericBlock,
    StackedBinning,
    add_block,
    bin_table,
    share_bins,
)
from driftgauge.sketches.summary import (
    OTHER,
    UNSEEN,
    CategoricalBinning,
    CategoricalSummary,
    NumericBinning,
    NumericSummary,
    split_finite,
    to_categories,
    to_floats,
)
from tests._stats_helpers import exact_bin_counts

EDGES = np.array([-1.0, 0.0, 0.5, 2.0])


def numeric(values: Any, edges: np.ndarray[Any, Any] = EDGES) -> NumericSummary:
    summary = NumericSummary(NumericBinning(edges))
    summary.update(*to_floats(values))
    return summary


# -- conversion -------------------------------------------------------------------


def test_mixed_column_counts_each_kind_of_bad_value_once() -> None:
    """1, None, "x", NaN, inf → one value, one missing, one wrong type, one NaN, one inf."""
    summary = numeric([1, None, "x", float("nan"), float("inf")])
    assert summary.count == 1
    assert (summary.missing, summary.wrong_type, summary.nan, summary.inf) == (1, 1, 1, 1)
    assert summary.total == 1.0
    assert summary.minimum == summary.maximum == 1.0


def test_booleans_are_of_the_wrong_type_even_among_numbers() -> None:
    """True/False count as wrong type whether or not numbers share the column."""
    assert to_floats([True, False])[2] == 2
    values, missing, wrong = to_floats([True, 1.5, 2])
    assert (missing, wrong) == (0, 1)
    assert np.isnan(values[0])
    assert values[1:].tolist() == [1.5, 2.0]


def test_all_missing_column_converts_to_nan_placeholders() -> None:
    """A column of None is all NaN slots, every one counted missing, none NaN."""
    summary = numeric([None] * 7)
    assert (summary.count, summary.missing, summary.nan, summary.wrong_type) == (0, 7, 0, 0)
    assert summary.bins.sum() == 0
    assert summary.kll.is_empty()
    assert summary.minimum == math.inf


def test_integers_beyond_float_range_become_infinite() -> None:
    """A huge integer is counted as ±inf rather than raising OverflowError."""
    summary = numeric([10**400, -(10**400), None])
    assert (summary.count, summary.inf, summary.missing) == (0, 2, 1)


def test_numeric_arrays_take_the_fast_path_unchanged() -> None:
    """An int or float array converts in one call with no missing or wrong-type counts."""
    values, missing, wrong = to_floats(np.arange(5, dtype=np.int32))
    assert values.dtype == np.float64
    assert values.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert (missing, wrong) == (0, 0)


def classify(value: Any) -> str:
    """The counter an independent reading of the rules puts ``value`` in."""
    if value is None:
        return "missing"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "wrong_type"
    as_float = float(value) if not isinstance(value, int) or abs(value) < 2**1000 else math.inf
    if math.isnan(as_float):
        return "nan"
    if math.isinf(as_float):
        return "inf"
    return "count"


cells = st.one_of(
    st.none(),
    st.booleans(),
    st.text(max_size=3),
    st.integers(-(2**70), 2**70),
    st.just(10**400),
    st.floats(allow_nan=True, allow_infinity=True),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(cells, max_size=40))
def test_counters_match_an_independent_classification(column: list[Any]) -> None:
    """count, missing, wrong_type, nan and inf partition any JSON-like column exactly."""
    summary = numeric(column)
    expected = Counter(classify(v) for v in column)
    assert summary.count == expected["count"]
    assert summary.missing == expected["missing"]
    assert summary.wrong_type == expected["wrong_type"]
    assert summary.nan == expected["nan"]
    assert summary.inf == expected["inf"]
    assert int(summary.bins.sum()) == summary.count
    assert summary.kll.n == summary.count


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=50))
def test_split_finite_counts_nan_and_inf_in_float_arrays(values: list[float]) -> None:
    """split_finite keeps the finite values in order and counts NaN and ±inf apart."""
    array = np.asarray(values, dtype=np.float64)
    finite, nan, inf = split_finite(array)
    assert finite.tolist() == [v for v in values if math.isfinite(v)]
    assert nan == sum(1 for v in values if math.isnan(v))
    assert inf == sum(1 for v in values if math.isinf(v))


def test_to_categories_drops_missing_and_spells_booleans() -> None:
    """None is missing; booleans are "true"/"false"; numbers keep their text."""
    values, missing = to_categories(["a", None, True, False, 3, 1.5, None])
    assert missing == 2
    assert values.tolist() == ["a", "true", "false", "3", "1.5"]
    empty, none_missing = to_categories([None, None])
    assert (len(empty), none_missing) == (0, 2)


# -- binning ---------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.floats(-3.0, 3.0), max_size=60),
    st.lists(st.floats(-3.0, 3.0), min_size=0, max_size=8, unique=True),
)
def test_numeric_bins_are_left_closed_intervals_between_edges(
    values: list[float], edges: list[float]
) -> None:
    """A value equal to an edge goes to the bin that edge opens; every value lands once."""
    binning = NumericBinning(np.sort(np.asarray(edges, dtype=np.float64)))
    array = np.asarray(values + edges, dtype=np.float64)
    counts = binning.count(array)
    assert len(counts) == binning.size == len(edges) + 1
    assert counts.tolist() == exact_bin_counts(array, binning.edges).tolist()


def test_single_bin_without_edges_holds_everything() -> None:
    """No edges (a constant baseline) means one bin for every finite value."""
    summary = numeric([3.0, -1e300, 1e300], edges=np.empty(0))
    assert summary.bins.tolist() == [3]


def test_categorical_binning_separates_known_others_from_unseen() -> None:
    """Outside the top categories, a value the baseline knew is __other__, a new one __unseen__."""
    binning = CategoricalBinning(("a", "b"), frozenset({"a", "b", "c"}))
    assert binning.labels() == ["a", "b", OTHER, UNSEEN]
    counts = binning.count(np.asarray(["a", "c", "c", "z", "b", "a"]))
    assert counts.tolist() == [2, 1, 2, 1]
    assert CategoricalBinning(("a",)).count(np.asarray(["a", "q"])).tolist() == [1, 1, 0]
    assert binning.count(np.empty(0, dtype=np.str_)).tolist() == [0, 0, 0, 0]


def test_categorical_summary_counts_unseen_and_missing() -> None:
    """Updates add bucket counts, missing values and the unseen tally."""
    summary = CategoricalSummary(CategoricalBinning(("a",), frozenset({"a", "b"})))
    summary.update(*to_categories(["a", "b", "new", None, "new"]))
    summary.update(*to_categories([]))
    assert summary.bins.tolist() == [1, 1, 2]
    assert (summary.count, summary.missing, summary.unseen) == (4, 1, 2)


# -- blocks of fields ---------------------------------------------------------------

# A few values again and again, so that values fall on edges and ties are common.
block_cells = st.one_of(
    st.sampled_from([-1.0, -0.0, 0.0, 0.5, 2.0, 7.25]),
    st.floats(-10.0, 10.0),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e300, -1e300, 1.7e308]),
)
field_edges = st.lists(st.sampled_from([-1.0, 0.0, 0.5, 2.0, 3.5]), max_size=5, unique=True).map(
    lambda edges: np.sort(np.asarray(edges, dtype=np.float64))
)


@st.composite
def blocks(draw: st.DrawFn) -> tuple[np.ndarray[Any, Any], list[NumericBinning]]:
    """A rows × fields matrix and one binning per field (of differing sizes)."""
    fields = draw(st.integers(1, 6))
    rows = draw(st.integers(0, 40))
    cells = draw(st.lists(block_cells, min_size=rows * fields, max_size=rows * fields))
    binnings = [NumericBinning(draw(field_edges)) for _ in range(fields)]
    return np.asarray(cells, dtype=np.float64).reshape(rows, fields), binnings


@settings(max_examples=200, deadline=None)
@given(blocks())
def test_stacked_bins_count_each_field_as_its_own_binning(
    block: tuple[np.ndarray[Any, Any], list[NumericBinning]],
) -> None:
    """Side-by-side binary searches give every field the counts of its own binning."""
    matrix, binnings = block
    stacked = StackedBinning.of(binnings)
    ordered = np.sort(np.where(np.isfinite(matrix), matrix, np.nan).T, axis=1)
    valid = np.count_nonzero(np.isfinite(matrix), axis=0)
    counts = stacked.split(stacked.count(ordered, valid))
    for j, binning in enumerate(binnings):
        column = matrix[:, j]
        expected = binning.count(column[np.isfinite(column)])
        assert counts[j].tolist() == expected.tolist()
        assert counts[j].tolist() == exact_bin_counts(column, binning.edges).tolist()


def summaries_of(binnings: list[NumericBinning]) -> list[NumericSummary]:
    return [NumericSummary(binning) for binning in binnings]


def assert_same_summary(got: NumericSummary, expected: NumericSummary) -> None:
    assert (got.count, got.missing, got.wrong_type, got.nan, got.inf) == (
        expected.count,
        expected.missing,
        expected.wrong_type,
        expected.nan,
        expected.inf,
    )
    assert got.bins.tolist() == expected.bins.tolist()
    assert (got.total, got.minimum, got.maximum) == (
        expected.total,
        expected.minimum,
        expected.maximum,
    )
    # Below k values the sketch keeps them all: the same quantiles (a sort may put -0.0 and
    # 0.0, which compare equal, in either order, so the bytes may differ in a sign bit).
    assert got.kll.n == expected.kll.n
    if got.count:
        ranks = np.linspace(0.0, 1.0, 21).tolist()
        assert got.kll.get_quantiles(ranks) == expected.kll.get_quantiles(ranks)


def add_column(summary: NumericSummary, column: np.ndarray[Any, Any], missing: int) -> None:
    """One field's batch the way the monitor adds a single column: sorted, then counted."""
    finite, nan, inf = split_finite(column)
    ordered = np.sort(finite)
    summary.add(ordered, summary.binning.count_sorted(ordered), missing, 0, nan, inf)


@settings(max_examples=200, deadline=None)
@given(blocks(), st.integers(0, 3), st.booleans())
def test_a_block_adds_to_each_field_what_its_column_would(
    block: tuple[np.ndarray[Any, Any], list[NumericBinning]], missing: int, shared: bool
) -> None:
    """Counters, bins, moments and sketch match each column's own, bins shared or not."""
    matrix, binnings = block
    expected, got = summaries_of(binnings), summaries_of(binnings)
    table = share_bins(got) if shared else None
    for _ in range(2):  # a second batch adds to the first
        for j, summary in enumerate(expected):
            add_column(summary, matrix[:, j], missing)
        result = NumericBlock.of(matrix, StackedBinning.of(binnings))
        add_block(got, result, missing, rows=np.arange(len(got)) if shared else None)
    for got_one, expected_one in zip(got, expected, strict=True):
        assert_same_summary(got_one, expected_one)
    if table is not None:
        assert all(summary.bins.base is table for summary in got)


@settings(max_examples=100, deadline=None)
@given(blocks())
def test_a_block_counts_values_outside_the_bounds_among_the_finite(
    block: tuple[np.ndarray[Any, Any], list[NumericBinning]],
) -> None:
    """``outside`` counts finite values strictly below low or above high, field by field."""
    matrix, binnings = block
    low = np.linspace(-1.0, 0.0, len(binnings))
    high = np.linspace(0.5, 2.0, len(binnings))
    result = NumericBlock.of(matrix, StackedBinning.of(binnings), low, high)
    for j in range(len(binnings)):
        finite = matrix[:, j][np.isfinite(matrix[:, j])]
        assert result.outside[j] == np.count_nonzero((finite < low[j]) | (finite > high[j]))
        assert result.counts[j] == len(finite)
        assert result.values[j].tolist() == np.sort(finite).tolist()


def test_a_block_whose_values_sum_beyond_float_range_totals_inf_quietly() -> None:
    """Finite values summing past float range give an infinite total, no overflow warning."""
    binnings = [NumericBinning(np.array([0.0]))] * 2
    summaries = summaries_of(binnings)
    matrix = np.array([[1.7e308, 1.0], [1.7e308, 2.0]])
    add_block(summaries, NumericBlock.of(matrix, StackedBinning.of(binnings)))
    assert [s.total for s in summaries] == [float("inf"), 3.0]
    assert summaries[0].count == 2


def test_values_near_float64s_largest_of_both_signs_sum_quietly_to_their_mean() -> None:
    """+1.7e308 and -1.7e308 together: a NaN total, no 'invalid value' warning, their mean."""
    column = [1.7e308] * 4 + [-1.7e308] * 4 + [1.0e308] * 2
    binning = NumericBinning(np.array([0.0]))
    summary = NumericSummary(binning)
    summary.update(*to_floats(column))
    summaries = summaries_of([binning])
    add_block(summaries, NumericBlock.of(np.array([column]).T, StackedBinning.of([binning])))
    for got in (summary, summaries[0]):
        assert math.isnan(got.total)
        assert got.count == 10
        assert got.mean == pytest.approx(float(sum(map(Fraction, column)) / 10), rel=1e-12)


def test_a_summary_whose_bins_were_replaced_stops_sharing_but_still_adds_up() -> None:
    """After one summary's bins are replaced (a restored snapshot), every field still counts."""
    binnings = [NumericBinning(np.array([0.0])), NumericBinning(np.array([0.0, 1.0]))]
    summaries = summaries_of(binnings)
    table = share_bins(summaries)
    summaries[1].bins = np.array([5, 0, 0], dtype=np.int64)  # as decode_summary does
    matrix = np.array([[-1.0, 0.5], [2.0, 3.0]])
    add_block(summaries, NumericBlock.of(matrix, StackedBinning.of(binnings)), rows=slice(0, 2))
    assert summaries[0].bins.tolist() == [1, 1]
    assert summaries[1].bins.tolist() == [5, 1, 1]
    assert summaries[0].bins.base is table
    assert table.tolist() == [[1, 1, 0], [0, 0, 0]]


def test_a_bin_table_hands_out_views_as_long_as_each_field_has_bins() -> None:
    """One zeroed row per field; adding to the table adds to every view."""
    table, views = bin_table([1, 3, 2])
    assert [len(view) for view in views] == [1, 3, 2]
    table += 1
    assert [view.tolist() for view in views] == [[1], [1, 1, 1], [1, 1]]


# -- merging ------------------------------------------------------------------------

finite_columns = st.lists(
    st.one_of(
        st.floats(-1e6, 1e6),
        st.sampled_from([None, float("nan"), float("inf"), "x"]),
    ),
    max_size=400,
)
large_parts = st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 3000))


def merged(parts: list[NumericSummary], order: tuple[int, ...]) -> NumericSummary:
    result = parts[0].empty_like()
    for index in order:
        result.merge(parts[index])
    return result


def grouped(parts: list[NumericSummary]) -> list[NumericSummary]:
    """(a + b) + c and a + (b + c) and (c + a) + b as three fresh summaries."""
    a, b, c = parts
    left = a.empty_like()
    left.merge(a)
    left.merge(b)
    left.merge(c)
    bc = b.empty_like()
    bc.merge(b)
    bc.merge(c)
    right = a.empty_like()
    right.merge(a)
    right.merge(bc)
    ca = c.empty_like()
    ca.merge(c)
    ca.merge(a)
    rotated = b.empty_like()
    rotated.merge(ca)
    rotated.merge(b)
    return [left, right, rotated]


@settings(max_examples=80, deadline=None)
@given(st.lists(finite_columns, min_size=3, max_size=3))
def test_numeric_merge_is_associative_and_commutative(columns: list[list[Any]]) -> None:
    """Any grouping or order of merges gives the same counts, bins, moments and extremes."""
    parts = [numeric(column) for column in columns]
    results = grouped(parts)
    whole = numeric([v for column in columns for v in column])
    for result in results:
        assert result.count == whole.count
        assert result.bins.tolist() == whole.bins.tolist()
        assert (result.missing, result.wrong_type, result.nan, result.inf) == (
            whole.missing,
            whole.wrong_type,
            whole.nan,
            whole.inf,
        )
        assert result.minimum == whole.minimum
        assert result.maximum == whole.maximum
        assert result.total == pytest.approx(whole.total, rel=1e-9, abs=1e-3)
        assert result.kll.n == whole.count


@settings(max_examples=40, deadline=None)
@given(st.lists(large_parts, min_size=3, max_size=3))
def test_merged_kll_ranks_stay_within_the_reported_rank_error(
    specs: list[tuple[int, int]],
) -> None:
    """Whatever the merge grouping, the sketch's ranks are within its normalized rank error."""
    columns = [np.random.default_rng(seed).lognormal(0.0, 1.0, size) for seed, size in specs]
    parts = [numeric(column) for column in columns]
    data = np.sort(np.concatenate(columns))
    if len(data) == 0:
        return
    points = np.quantile(data, [0.05, 0.25, 0.5, 0.75, 0.95])
    exact = np.searchsorted(data, points, side="right") / len(data)
    for result in grouped(parts):
        error = result.kll.normalized_rank_error(False)
        ranks = np.asarray([result.kll.get_rank(p, True) for p in points])
        assert np.max(np.abs(ranks - exact)) <= error
        if not result.kll.is_estimation_mode():
            assert ranks.tolist() == pytest.approx(exact.tolist(), abs=1e-12)


def test_merging_empty_summaries_keeps_the_other_side() -> None:
    """An empty summary is the identity of merge."""
    full = numeric([1.0, 2.0, None])
    result = full.empty_like()
    result.merge(full.empty_like())
    result.merge(full)
    result.merge(full.empty_like())
    assert (result.count, result.missing, result.minimum, result.maximum) == (2, 1, 1.0, 2.0)
    assert result.bins.tolist() == full.bins.tolist()


category_columns = st.lists(st.one_of(st.none(), st.sampled_from("abcdefg")), max_size=60)


@settings(max_examples=60, deadline=None)
@given(st.lists(category_columns, min_size=3, max_size=3))
def test_categorical_merge_is_associative_and_commutative(columns: list[list[Any]]) -> None:
    """Any grouping or order of merges gives the same buckets, counts and frequent items."""
    binning = CategoricalBinning(("a", "b"), frozenset("abcde"))

    def summary(values: list[Any]) -> CategoricalSummary:
        result = CategoricalSummary(binning)
        result.update(*to_categories(values))
        return result

    a, b, c = (summary(column) for column in columns)
    whole = summary([v for column in columns for v in column])
    left = a.empty_like()
    for part in (a, b, c):
        left.merge(part)
    bc = b.empty_like()
    bc.merge(b)
    bc.merge(c)
    right = a.empty_like()
    right.merge(a)
    right.merge(bc)
    rotated = c.empty_like()
    for part in (c, a, b):
        rotated.merge(part)
    tally = Counter(v for column in columns for v in column if v is not None)
    for result in (left, right, rotated):
        assert result.bins.tolist() == whole.bins.tolist()
        assert (result.count, result.missing, result.unseen) == (
            whole.count,
            whole.missing,
            whole.unseen,
        )
        for category, n in tally.items():
            assert result.frequent.get_estimate(category) == n
        assert result.hll.get_estimate() == pytest.approx(len(tally), abs=0.5)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 40_000), st.sampled_from([1.0, 10.0, 1e-3]))
def test_float32_quantiles_stay_within_the_rank_error_of_the_rounded_data(
    seed: int, n: int, scale: float
) -> None:
    """A float32 summary's quantiles have, in the float32-rounded raw data, ranks within ε."""
    values = np.round(np.random.default_rng(seed).lognormal(0.0, 1.0, n) / scale, 1) * scale
    summary = NumericSummary(NumericBinning(np.array([1.0])), items="float32")
    for part in np.array_split(values, 7):
        piece = summary.empty_like()
        piece.update(part)
        summary.merge(piece)
    error = summary.kll.normalized_rank_error(False) if summary.kll.is_estimation_mode() else 0.0
    data = np.sort(values.astype(np.float32))
    ranks = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99]
    for q, value in zip(ranks, summary.kll.get_quantiles(ranks), strict=True):
        low = np.searchsorted(data, np.float32(value), side="left") / n
        high = np.searchsorted(data, np.float32(value), side="right") / n
        assert low - error - 1 / n <= q <= high + error
    assert summary.count == n
    assert np.array_equal(summary.bins, [np.sum(values < 1.0), np.sum(values >= 1.0)])


def test_values_beyond_float32_range_are_clamped_in_a_float32_sketch() -> None:
    """1e300 and -1e300 enter a float32 sketch as ± the largest float32, not as infinities."""
    summary = numeric([1e300, -1e300, 0.0])
    live = summary.empty_like("float32")
    live.update(*to_floats([1e300, -1e300, 0.0]))
    top = float(np.finfo(np.float32).max)
    assert (live.kll.get_min_value(), live.kll.get_max_value()) == (-top, top)
    assert (live.minimum, live.maximum) == (-1e300, 1e300)  # moments stay float64
