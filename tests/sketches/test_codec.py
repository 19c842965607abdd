"""Summaries to JSON-ready dicts and back; float64 sketches read into float32 summaries."""

from __future__ import annotations

import json
import math

import datasketches as ds
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftgauge.sketches.codec import decode_summary, encode_summary, kll_doubles_to_floats
from driftgauge.sketches.summary import NumericBinning, NumericSummary, to_floats

BINNING = NumericBinning(np.array([0.0, 1.0]))
F32_MAX = float(np.finfo(np.float32).max)


def summary_of(values: list[float], items: str = "float64") -> NumericSummary:
    summary = NumericSummary(BINNING, k=64, items=items)  # type: ignore[arg-type]
    summary.update(*to_floats(values))
    return summary


values_lists = st.one_of(
    st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=3),
    st.lists(st.floats(-1e9, 1e9), min_size=0, max_size=2_000),
    st.integers(0, 40_000).map(lambda n: np.random.default_rng(n).lognormal(0.0, 2.0, n).tolist()),
)


@settings(max_examples=80, deadline=None)
@given(values_lists)
def test_a_doubles_sketch_converts_to_the_floats_sketch_of_its_rounded_items(
    values: list[float],
) -> None:
    """Same n, k, levels and weights; each item rounded to float32 (clamped beyond its range)."""
    doubles = ds.kll_doubles_sketch(64)
    if values:
        doubles.update(np.asarray(values))
    floats = ds.kll_floats_sketch.deserialize(kll_doubles_to_floats(doubles.serialize()))
    assert (floats.n, floats.k, floats.num_retained) == (doubles.n, doubles.k, doubles.num_retained)
    assert floats.is_estimation_mode() == doubles.is_estimation_mode()
    pairs = list(doubles)
    items = np.clip([item for item, _ in pairs], -F32_MAX, F32_MAX).astype(np.float32)
    assert [item for item, _ in floats] == items.astype(np.float64).tolist()
    assert [weight for _, weight in floats] == [weight for _, weight in pairs]
    if values:
        low, high = np.clip([min(values), max(values)], -F32_MAX, F32_MAX).astype(np.float32)
        assert (floats.get_min_value(), floats.get_max_value()) == (float(low), float(high))
        assert floats.normalized_rank_error(False) == doubles.normalized_rank_error(False)


@pytest.mark.parametrize(
    "data", [b"", b"\x05\x01\x0e\x00\xc8\x00\x08\x00", b"\x02\x02\x0f\x04\xc8\x00\x08\x00abc"]
)
def test_bytes_that_are_no_doubles_sketch_are_refused(data: bytes) -> None:
    """Too short, another family, or items that are not 8 bytes each: ValueError."""
    with pytest.raises(ValueError, match="KLL sketch|bytes of items"):
        kll_doubles_to_floats(data)


def test_a_float32_summary_round_trips_exactly_and_is_marked() -> None:
    """Encoded with ``kll_items: float32`` and decoded into the same sketch bytes."""
    summary = summary_of(np.random.default_rng(3).normal(size=5_000).tolist(), "float32")
    payload = encode_summary(summary)
    assert payload["kll_items"] == "float32"
    restored = NumericSummary(BINNING, k=64, items="float32")
    decode_summary(restored, payload)
    assert restored.kll.serialize() == summary.kll.serialize()
    assert np.array_equal(restored.bins, summary.bins)


def test_a_float64_payload_is_encoded_as_before() -> None:
    """Baselines (float64) keep their format: no new key, a doubles sketch."""
    payload = encode_summary(summary_of([0.5, 2.0]))
    assert "kll_items" not in payload
    restored = NumericSummary(BINNING, k=64)
    decode_summary(restored, payload)
    assert isinstance(restored.kll, ds.kll_doubles_sketch)


def test_an_old_float64_snapshot_entry_loads_into_a_float32_summary() -> None:
    """An entry written when live sketches held doubles reads as the float32 sketch of it."""
    old = summary_of(np.random.default_rng(4).lognormal(size=20_000).tolist())
    restored = NumericSummary(BINNING, k=64, items="float32")
    decode_summary(restored, encode_summary(old))
    assert isinstance(restored.kll, ds.kll_floats_sketch)
    assert (restored.count, restored.kll.n) == (old.count, old.kll.n)
    assert np.array_equal(restored.bins, old.bins)
    ranks = [0.01, 0.25, 0.5, 0.75, 0.99]
    expected = np.float32(old.kll.get_quantiles(ranks)).tolist()
    assert restored.kll.get_quantiles(ranks) == expected


def test_a_float32_payload_is_refused_by_a_float64_summary() -> None:
    """A baseline never takes a live float32 sketch: ValueError, not a silent mix."""
    payload = encode_summary(summary_of([1.0], "float32"))
    with pytest.raises(ValueError, match="'float32' items where float64"):
        decode_summary(NumericSummary(BINNING, k=64), payload)


def test_an_old_file_whose_sum_overflowed_gives_no_mean_rather_than_a_made_up_one() -> None:
    """A sum written as "inf" or "nan" without "scaled_sum" (older files): the mean is NaN."""
    for values in ([1.0e308, 1.5e308, 1.7e308], [1.7e308] * 2 + [-1.7e308] * 2 + [3.0]):
        payload = encode_summary(summary_of(values))
        assert "scaled_sum" in payload
        del payload["scaled_sum"]
        restored = NumericSummary(BINNING, k=64)
        decode_summary(restored, payload)
        assert math.isnan(restored.mean)
        restored.merge(summary_of([1.0, 2.0]))
        assert math.isnan(restored.mean)
        again = encode_summary(restored)  # and it is written again as it was read
        assert "scaled_sum" not in again
        json.dumps(again, allow_nan=False)
