"""Canonical category spelling: one text per category, whatever the encoding."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
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
    ],
)
def test_every_encoding_of_a_category_is_one_text(values: list[object], text: str) -> None:
    """Booleans, integral numbers and their text forms share one spelling."""
    assert {canonical_category(v) for v in values} == {text}


@pytest.mark.parametrize("text", ["007", "1e3", "01.0", "1.5", "yes", "True ", "", "naïve", "1."])
def test_other_strings_stay_as_they_are(text: str) -> None:
    """Codes with leading zeros, exponents and free text are never merged with numbers."""
    assert canonical_category(text) == text


@given(st.integers(-(2**53), 2**53))
def test_integers_and_their_floats_agree(value: int) -> None:
    """n, float(n) and the text float formatting gives it are one category."""
    assert canonical_category(value) == canonical_category(float(value)) == str(value)
    assert canonical_category(str(float(value))) == str(value)


@given(st.lists(st.sampled_from(["True", "false", "1.0", "2", "x", "007", "-0.0"]), max_size=50))
def test_string_columns_map_like_single_values(values: list[str]) -> None:
    """The vectorised column form gives exactly the single-value form, in row order."""
    assert canonical_strings(np.asarray(values, dtype=np.str_)).tolist() == [
        canonical_category(v) for v in values
    ]
