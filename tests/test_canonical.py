"""Canonical category spelling: one text per category, whatever the encoding."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from driftgauge.canonical import canonical_category, canonical_strings


@pytest.mark.parametrize(
    ("values", "text"),
    [
        ([True, "True", "true", "TRUE", np.bool_(True)], "true"),
        ([False, "False", "false", np.bool_(False)], "false"),
        ([1, 1.0, "1", "1.0", "1.00", np.int64(1), np.float32(1.0)], "1"),
        ([0, -0.0, "0.0", "-0.0", "0"], "0"),
        ([-12, -12.0, "-12.0"], "-12"),
        ([0.5, np.float32(0.5), "0.5"], "0.5"),
        ([0.1, np.float32(0.1), np.float16(0.1), "0.1"], "0.1"),
    ],
)
def test_every_encoding_of_a_category_is_one_text(values: list[object], text: str) -> None:
    """Booleans, integral numbers and their text forms share one spelling."""
    assert {canonical_category(v) for v in values} == {text}


@given(st.floats(allow_nan=False, width=32))
def test_a_float32_widened_to_float64_is_the_float32(value: float) -> None:
    """numpy's tolist() and json write the float32 0.1 as 0.10000000149011612 (a KServe v1 row, a
    TF Serving instance, an FP64 tensor): as a float or its text, it is the float32's category."""
    single = np.float32(value)
    expected = canonical_category(single)
    widened = float(single)
    assert canonical_category(widened) == expected
    assert canonical_category(repr(widened)) == expected
    assert canonical_strings(np.asarray([widened]).astype(np.str_)).tolist() == [expected]


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_a_float64_that_is_no_float32_keeps_its_own_text(value: float) -> None:
    """Only an exact float32 is spelled as one: other float64 codes are never merged."""
    exact = abs(value) <= float(np.finfo(np.float32).max) and float(np.float32(value)) == value
    if exact or value.is_integer():
        return
    assert canonical_category(value) == canonical_category(repr(value)) == repr(value)


@pytest.mark.parametrize(
    "text",
    [
        "007",
        "1e3",
        "01.0",
        "1.5",
        "yes",
        "True ",
        "",
        "naïve",
        "1.",
        "0.100000001490116120",
        "2024-01-01T00:00:00",
        "-0.10000000149011612x",
    ],
)
def test_other_strings_stay_as_they_are(text: str) -> None:
    """Codes with leading zeros, exponents and free text are never merged with numbers."""
    assert canonical_category(text) == text


@given(st.integers(-(2**53), 2**53))
def test_integers_and_their_floats_agree(value: int) -> None:
    """n, float(n) and the text float formatting gives it are one category."""
    assert canonical_category(value) == canonical_category(float(value)) == str(value)
    assert canonical_category(str(float(value))) == str(value)


@pytest.mark.parametrize(
    "values",
    [
        [10**16, 1e16, np.float64(1e16), "1e+16", "10000000000000000", "10000000000000000.0"],
        [-(3 * 10**20), -3e20, "-3e+20"],
        [2**60, float(2**60), np.float32(2**60), "1.152921504606847e+18"],
        [12345678901234568, 1.2345678901234568e16, "1.2345678901234568e+16"],
    ],
)
def test_integral_numbers_from_1e16_on_are_their_digits_as_integers_are(
    values: list[object],
) -> None:
    """An integer code from 10**16 on sent as an integer or as a float (JSON 1e16, an FP64
    tensor, a float column's text) is one category, not the digits and the float's 1e+16."""
    assert {canonical_category(v) for v in values} == {canonical_category(values[0])}
    texts = [v for v in values if isinstance(v, str)]
    assert canonical_strings(np.asarray(texts, dtype=np.str_)).tolist() == [
        canonical_category(values[0])
    ] * len(texts)


@given(st.floats(min_value=1e16, allow_infinity=False) | st.floats(max_value=-1e16))
def test_floats_from_1e16_on_spell_as_the_integer_they_are(value: float) -> None:
    """Every float from 1e16 on is integral: it, its text and numpy's column of it read as
    the integer's digits, in float64 and in float32 columns alike."""
    assume(math.isfinite(value))
    digits = str(int(value))
    assert canonical_category(value) == canonical_category(repr(value)) == digits
    assert canonical_strings(np.asarray([value]).astype(np.str_)).tolist() == [digits]
    if abs(value) <= float(np.finfo(np.float32).max):
        from driftgauge.sketches.summary import to_categories

        single = np.float32(value)
        spelled, _ = to_categories(np.asarray([single]))
        assert spelled.tolist() == [canonical_category(single)] == [str(int(single))]


@given(st.lists(st.sampled_from(["True", "false", "1.0", "2", "x", "007", "-0.0"]), max_size=50))
def test_string_columns_map_like_single_values(values: list[str]) -> None:
    """The vectorised column form gives exactly the single-value form, in row order."""
    assert canonical_strings(np.asarray(values, dtype=np.str_)).tolist() == [
        canonical_category(v) for v in values
    ]


@given(
    st.lists(
        st.one_of(
            st.booleans(),
            st.integers(-(10**6), 10**6),
            st.floats(allow_nan=False, allow_infinity=False, width=32),
            st.sampled_from(["True", "1.0", "x", "007"]),
        ),
        max_size=30,
    )
)
def test_columns_spell_like_single_values(values: list[object]) -> None:
    """A column read whole (numpy) and spelled by distinct value agrees with the per-value rule."""
    from driftgauge.canonical import canonical_counts
    from driftgauge.sketches.summary import to_categories

    expected = sorted(canonical_category(v) for v in values)
    spelled, _ = to_categories(values)
    assert sorted(spelled.tolist()) == expected
    raw, _ = to_categories(values, spell=False)
    distinct, tally = canonical_counts(*np.unique(raw, return_counts=True))
    assert (
        sorted(t for t, n in zip(distinct.tolist(), tally.tolist(), strict=True) for _ in range(n))
        == expected
    )


@given(st.lists(st.floats(width=32), max_size=30))
def test_float32_columns_spell_like_single_float32_values(values: list[float]) -> None:
    """A float32 array (a Parquet float column, an FP32 tensor) reads as its values one by one;
    NaN, a missing value, is left out (to_categories counts it missing)."""
    from driftgauge.sketches.summary import to_categories

    column = np.asarray(values, dtype=np.float32)
    spelled, missing = to_categories(column)
    kept = [v for v in column if not np.isnan(v)]
    assert spelled.tolist() == [canonical_category(v) for v in kept]
    assert missing == len(column) - len(kept)


@pytest.mark.parametrize(
    ("value", "missing"),
    [
        (None, True),
        (float("nan"), True),
        (np.float32("nan"), True),
        (np.float64("nan"), True),
        ("nan", False),
        (float("inf"), False),
        (0.0, False),
        ("", False),
    ],
)
def test_none_and_float_nan_are_missing(value: object, missing: bool) -> None:
    from driftgauge.canonical import is_missing

    assert is_missing(value) is missing
