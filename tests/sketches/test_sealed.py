"""Sealed slices: a closed slice kept compact reads and merges as its live summaries did."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftgauge.sketches.block import share_bins
from driftgauge.sketches.sealed import SealedSlice, SliceSealer
from driftgauge.sketches.summary import (
    CategoricalBinning,
    CategoricalSummary,
    NumericBinning,
    NumericSummary,
    Summary,
    to_categories,
    to_floats,
)

BINNING = NumericBinning(np.array([-1.0, 0.0, 2.5]))
NARROW = NumericBinning(np.array([10.0]))
COLORS = CategoricalBinning(("red", "blue"), frozenset({"red", "blue", "green"}))


def fresh() -> dict[str, Summary]:
    summaries: dict[str, Summary] = {
        "x": NumericSummary(BINNING, items="float32"),
        "color": CategoricalSummary(COLORS),
        "y": NumericSummary(NARROW, items="float32"),
    }
    share_bins([summaries["x"], summaries["y"]])  # type: ignore[list-item]
    return summaries


def fill(summaries: dict[str, Summary], x: list[Any], y: list[Any], colors: list[Any]) -> None:
    for name, column in (("x", x), ("y", y)):
        summary = summaries[name]
        assert isinstance(summary, NumericSummary)
        summary.update(*to_floats(column))
    color = summaries["color"]
    assert isinstance(color, CategoricalSummary)
    color.update(*to_categories(colors))


def same_summary(got: Summary, expected: Summary) -> None:
    assert type(got) is type(expected)
    assert np.array_equal(got.bins, expected.bins)
    assert (got.count, got.missing) == (expected.count, expected.missing)
    if isinstance(got, NumericSummary) and isinstance(expected, NumericSummary):
        assert (got.wrong_type, got.nan, got.inf) == (
            expected.wrong_type,
            expected.nan,
            expected.inf,
        )
        assert (got.total, got.minimum, got.maximum) == (
            expected.total,
            expected.minimum,
            expected.maximum,
        )
        assert got.items == expected.items
        assert got.kll.serialize() == expected.kll.serialize()
    elif isinstance(got, CategoricalSummary) and isinstance(expected, CategoricalSummary):
        assert got.frequent.serialize() == expected.frequent.serialize()
        assert got.hll.get_estimate() == expected.hll.get_estimate()


numbers = st.lists(
    st.one_of(st.floats(-1e6, 1e6), st.none(), st.just(float("nan")), st.just(float("inf"))),
    max_size=400,
)
colors = st.lists(st.sampled_from(["red", "blue", "green", "mauve", None]), max_size=50)


@settings(max_examples=60, deadline=None)
@given(numbers, numbers, colors)
def test_sealed_entries_are_the_live_summaries(x: list[Any], y: list[Any], c: list[Any]) -> None:
    """Every entry read back from a sealed slice equals the live summary it was sealed from."""
    live = fresh()
    fill(live, x, y, c)
    sealed = SliceSealer()(live)
    assert list(sealed) == list(live)
    for name, summary in live.items():
        same_summary(sealed[name], summary)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(numbers, numbers, colors), min_size=1, max_size=4))
def test_merging_sealed_slices_gives_what_merging_live_ones_does(
    parts: list[tuple[list[Any], list[Any], list[Any]]],
) -> None:
    """Bins and counters exactly, sketches holding the same values (n) and extremes."""
    seal = SliceSealer()
    live_result, sealed_result = fresh(), fresh()
    for x, y, c in parts:
        piece = fresh()
        fill(piece, x, y, c)
        sealed = seal(piece)
        sealed.merge_into(sealed_result)
        for name, summary in piece.items():
            live_result[name].merge(summary)  # type: ignore[arg-type]
    for name, expected in live_result.items():
        got = sealed_result[name]
        assert np.array_equal(got.bins, expected.bins)
        assert (got.count, got.missing) == (expected.count, expected.missing)
        if isinstance(got, NumericSummary) and isinstance(expected, NumericSummary):
            assert got.total == pytest.approx(expected.total, rel=1e-12)
            assert (got.minimum, got.maximum) == (expected.minimum, expected.maximum)
            assert (got.nan, got.inf, got.wrong_type) == (
                expected.nan,
                expected.inf,
                expected.wrong_type,
            )
            assert got.kll.n == expected.kll.n == got.count
            if not got.kll.is_estimation_mode():
                assert sorted(got.kll) == sorted(expected.kll)
        elif isinstance(got, CategoricalSummary) and isinstance(expected, CategoricalSummary):
            assert got.hll.get_estimate() == pytest.approx(expected.hll.get_estimate())
            assert got.frequent.total_weight == expected.frequent.total_weight
            for value in ("red", "blue", "green", "mauve"):
                assert got.frequent.get_estimate(value) == expected.frequent.get_estimate(value)


def test_bins_of_a_shared_table_are_added_in_one_piece() -> None:
    """Merged into summaries sharing a table, the sealed rows land in the right fields."""
    piece = fresh()
    fill(piece, [-5.0, 1.0, 1.0, 3.0], [20.0], ["red"])
    result = fresh()
    SliceSealer()(piece).merge_into(result)
    assert result["x"].bins.tolist() == [1, 0, 2, 1]
    assert result["y"].bins.tolist() == [0, 1]


def test_a_sealed_slice_holds_no_summary_objects() -> None:
    """Sealing keeps bytes and arrays, not the live summaries (that is the memory it saves)."""
    live = fresh()
    fill(live, list(np.linspace(-3.0, 3.0, 5000)), [1.0], ["red"])
    sealed = SliceSealer()(live)
    assert isinstance(sealed, SealedSlice)
    assert not any(isinstance(v, NumericSummary | CategoricalSummary) for v in vars_of(sealed))
    assert sealed["x"] is not live["x"]


def vars_of(sealed: SealedSlice) -> list[Any]:
    return [getattr(sealed, slot) for slot in SealedSlice.__slots__]


def test_only_known_summaries_are_sealed() -> None:
    """Anything but numeric and categorical summaries is refused, not silently dropped."""

    class Other:
        def merge(self, other: Any) -> None:
            pass

    with pytest.raises(TypeError):
        SliceSealer()({"x": Other()})  # type: ignore[dict-item]
