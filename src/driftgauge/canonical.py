"""One spelling per category, whatever encoding it arrived in.

A categorical value reaches driftgauge in many encodings: a pandas boolean
written to CSV as ``True``, the same value as JSON ``true`` or a Parquet
boolean; an integer code as ``1`` in the training CSV and ``1.0`` in any
float tensor, or ``"1.0"`` where a column with missing values went through a
float dtype.  The baseline build and the sidecar both map every value to its
canonical text before it meets a category, so these are one category:

- booleans (and the strings ``true``/``false`` in any letter case) are
  ``"true"`` and ``"false"``;
- integral numbers (``1``, ``1.0``, ``np.float32(1)``, the string ``"1.0"``)
  are their integer digits, ``"1"``; ``-0.0`` is ``"0"``; so are those from
  1e16 on, which Python and numpy write with an exponent: the float ``1e16``
  and its text ``"1e+16"`` are ``"10000000000000000"``, as the integer is (a
  float's exact value: ``1e23``, which no float64 holds, is the float's
  ``"99999999999999991611392"``, as a float32 code above 2**24 is its float32's);
- other numbers are Python's shortest round-trip text (``0.5``, ``inf``), a
  float32 its own (``np.float32(0.1)`` is ``0.1``);
- so is a float32 widened to float64 on the way: numpy's ``tolist()`` and
  ``json`` write the float32 0.1 as ``0.10000000149011612``, which a KServe v1
  row, a TF Serving instance, an FP64 tensor or a float64 column then carry.
  A float64 (or its Python text) that is exactly a float32 value spells as
  that float32 (``0.1``).  Only a float64 code that is itself an exact float32
  with more digits than the float32's own text, which no decimal code is, could
  meet another code so;
- any other string is itself.

A float NaN is no category but a missing value (:func:`is_missing`), as
``None`` is: pandas holds a gap in any column as NaN, and Python's ``json``
writes it ``NaN``, where the training file the baseline came from held an
empty cell or a null.  The string ``"nan"`` is a string.

The rule is deliberately narrow: ``"007"`` stays ``"007"`` and ``"1e3"``
stays ``"1e3"``, so distinct codes are never merged.

Row ids (:func:`row_id`) have one spelling too, so that a request log's ids and
the delayed labels' ids meet however their writers typed them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "canonical_category",
    "canonical_counts",
    "canonical_strings",
    "category_strings",
    "is_missing",
    "row_id",
]

# Digits with a zero fraction, as float formatting writes an integral value ("3.0", "-12.00").
_INTEGRAL_TEXT = re.compile(r"-?(?:0|[1-9][0-9]*)\.0+")
_BOOLEAN_TEXT = {"true": "true", "false": "false"}
# Python's (and numpy's) text of a float from 1e16 on, all of which are integral: 1e+16.
_EXPONENT_TEXT = re.compile(r"-?[1-9](?:\.[0-9]+)?e\+[0-9]+")
# A float32's shortest text has at most 9 significant digits: a longer float text may be one
# widened to float64 (0.10000000149011612, 20 characters, is the float32 0.1).
_FLOAT32_TEXT = 11
_FLOAT_START = frozenset("-0123456789")
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def is_missing(value: Any) -> bool:
    """Whether a categorical value is missing: None, or a float NaN (a pandas gap)."""
    return value is None or (isinstance(value, float | np.floating) and bool(value != value))


def canonical_category(value: Any) -> str:
    """The canonical text of one (non-missing) categorical value."""
    if isinstance(value, str):
        return _canonical_text(value)
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        number = float(value)
        if number.is_integer():
            return str(int(number))
        if isinstance(value, np.floating) and value.itemsize < 8:
            return str(value)  # a float32's own shortest text: 0.1, not 0.10000000149011612
        return _widened_float32(repr(number)) if math.isfinite(number) else str(number)
    return str(value)


def row_id(value: Any) -> str:
    """A row id as text; a whole number in float spelling is the integer's text.

    So a label id 12345.0 (a float column of ids, as pandas makes one with a gap,
    writes 12345 so) names the request whose id is 12345, and so does a request
    log's id 12345.0.
    """
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _canonical_text(text: str) -> str:
    if len(text) <= 5:
        spelled = _BOOLEAN_TEXT.get(text.lower())
        if spelled is not None:
            return spelled
    if text[-1:] == "0" and _INTEGRAL_TEXT.fullmatch(text):
        digits = text.partition(".")[0]
        return "0" if digits == "-0" else digits
    if "e+" in text and _EXPONENT_TEXT.fullmatch(text):
        number = float(text)
        if repr(number) == text:  # Python's own spelling only: "1e16" and "1.0e+16" stay
            return str(int(number))
    if len(text) >= _FLOAT32_TEXT and text[0] in _FLOAT_START:
        return _widened_float32(text)
    return text


def _widened_float32(text: str) -> str:
    """A float64's shortest text, as the float32's own when the value is exactly a float32.

    Only Python's (and numpy's) own spelling of a float is read so: ``"1e3"`` or
    ``"0.100000001490116120"`` stay as they are.
    """
    try:
        number = float(text)
    except ValueError:
        return text
    if not abs(number) <= _FLOAT32_MAX or repr(number) != text:
        return text
    single = np.float32(number)
    return str(single) if float(single) == number else text


def canonical_strings(values: npt.NDArray[np.str_] | Sequence[str]) -> npt.NDArray[np.str_]:
    """A string column with every value in canonical form (one Python call per distinct value)."""
    array = np.asarray(values, dtype=np.str_)
    if array.size == 0:
        return array.ravel()
    distinct, inverse = np.unique(array.ravel(), return_inverse=True)
    spelled = [_canonical_text(text) for text in distinct.tolist()]
    if spelled == distinct.tolist():
        return array.ravel()
    return np.asarray(spelled, dtype=np.str_)[inverse.ravel()]


def category_strings(values: Any) -> tuple[npt.NDArray[np.str_], bool]:
    """A column as a string array in one numpy call, and whether that worked.

    It does not for a column with ``None`` or NaN (missing values), ragged lists or
    booleans among numbers: those go value by value (:func:`canonical_category`).
    The strings are not canonical yet: spell their distinct values with
    :func:`canonical_counts` or the whole column with :func:`canonical_strings`.
    Numbers are printed as :func:`canonical_category` spells them: a float32
    ``0.1`` as ``0.1``, its own shortest text.
    """
    try:
        array = values if isinstance(values, np.ndarray) else np.asarray(values)
    except ValueError:  # ragged nested lists
        return np.empty(0, dtype=np.str_), False
    if array.dtype.kind not in "Uifub" or array.ndim == 0:
        return np.empty(0, dtype=np.str_), False
    # numpy reads booleans mixed with numbers as 0/1: such a column goes value by value.
    mixed = array.dtype.kind in "iuf" and not isinstance(values, np.ndarray)
    if mixed and bool in set(map(type, values)):
        return np.empty(0, dtype=np.str_), False
    array = array.ravel()
    if array.dtype.kind != "f":
        return array.astype(np.str_, copy=False), True
    if np.isnan(array).any():  # missing values (is_missing): value by value
        return np.empty(0, dtype=np.str_), False
    wide = array.astype(np.float64, copy=False)
    texts = wide.astype(np.str_)
    if array.itemsize < 8:  # float32 or float16: its own shortest text, but whole numbers' digits
        own = wide != np.trunc(wide)
        texts[own] = array[own].astype(np.str_)
    return texts, True


def canonical_counts(
    distinct: npt.NDArray[np.str_], tally: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.str_], npt.NDArray[np.int64]]:
    """``np.unique``'s distinct strings and counts, spelled canonically (counts of one spelling added)."""
    texts = distinct.tolist()
    spelled = [_canonical_text(text) for text in texts]
    if spelled == texts:
        return distinct, tally
    merged: dict[str, int] = {}
    for text, n in zip(spelled, tally.tolist(), strict=True):
        merged[text] = merged.get(text, 0) + n
    keys = sorted(merged)
    return np.asarray(keys, dtype=np.str_), np.asarray([merged[k] for k in keys], dtype=np.int64)
