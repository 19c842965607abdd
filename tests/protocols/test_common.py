"""Shared adapter helpers: JSON scalars, nested lists, server errors and pairing."""

from __future__ import annotations

import pytest

from driftgauge.exceptions import ProtocolError
from driftgauge.protocols._common import Part, flatten, pair, raise_if_error, scalar

from .helpers import plain


def test_flatten_is_row_major_and_iterative() -> None:
    """Nested lists flatten in row-major order, however deep."""
    assert flatten([1, [2, [3, 4]], [], [[5]]]) == [1, 2, 3, 4, 5]
    deep: list[object] = [1]
    for _ in range(5000):
        deep = [deep]
    assert flatten(deep) == [1]


@pytest.mark.parametrize(
    ("value", "expected"), [(1, 1), ("a", "a"), (None, None), ([2.5], 2.5), ([[True]], True)]
)
def test_scalar_accepts_json_scalars_and_squeezes(value: object, expected: object) -> None:
    """Scalars pass through; one-element lists are squeezed."""
    assert scalar(value, "f") == expected


@pytest.mark.parametrize("value", [[1, 2], [], {"a": 1}, [{"a": 1}]])
def test_scalar_rejects_containers(value: object) -> None:
    """Anything but one scalar is bad_shape, named by field, not by value."""
    with pytest.raises(ProtocolError) as caught:
        scalar(value, "field_x")
    assert caught.value.reason == "bad_shape"
    assert "field_x" in str(caught.value)


def test_pair_joins_request_and_response() -> None:
    """Pairing keeps feature and prediction columns and sums extras."""
    extracted = pair(Part(2, {"a": [1, 2]}, 1), Part(2, {"p": ["x", "y"]}, 2))
    assert plain(extracted) == {"a": [1, 2], "p": ["x", "y"]}
    assert extracted.extra_columns == 3


def test_pair_rejects_unequal_rows() -> None:
    """Unequal row counts raise row_mismatch."""
    with pytest.raises(ProtocolError) as caught:
        pair(Part(2), Part(3))
    assert caught.value.reason == "row_mismatch"


def test_error_key_with_null_value_is_not_an_error() -> None:
    """``"error": null`` next to a real answer is not an error body."""
    raise_if_error({"predictions": [1], "error": None}, ("error",), "server")
    with pytest.raises(ProtocolError):
        raise_if_error({"error": "x"}, ("error",), "server")
