"""Shared mapping rules: rows, columns, matrices and pairing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftgauge.exceptions import ProtocolError
from driftgauge.protocols._common import Part, flatten, pair, raise_if_error, scalar
from driftgauge.protocols._tables import (
    column_values,
    fields_of,
    map_columns,
    map_matrix,
    map_rows,
    numeric_array,
)
from driftgauge.typing import Columns

from .helpers import inputs, plain


def cols(part: Part) -> Columns:
    """All of a part's columns, blocks included, as adapters hand them over."""
    return Columns(part.columns, part.blocks)


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


def test_numeric_array_only_for_all_numbers() -> None:
    """Numbers convert in one call; strings, nulls and huge ints do not."""
    array = numeric_array([[1, 2], [3, 4.5]])
    assert array is not None
    assert array.dtype == np.float64
    assert numeric_array(["a", 1]) is None
    assert numeric_array([1, "a"]) is None
    assert numeric_array([1, None]) is None
    assert numeric_array([2**80]) is None
    assert numeric_array([[1], [2, 3]]) is None
    assert numeric_array([True, 1]) is None


def test_numeric_list_rows_and_python_rows_agree() -> None:
    """The numpy matrix path and the column-by-column path (a string in the rows) give the
    same columns: each column of numbers one array either way."""
    specs = inputs("a", "b", "c")
    fast = map_rows([[1, 2, 3, 4], [5, 6, 7, 8]], specs)
    slow = map_rows([[1, 2, 3, 4], [5, 6, 7, "8"]], specs)
    assert isinstance(cols(fast)["a"], np.ndarray)
    assert isinstance(cols(slow)["a"], np.ndarray)
    assert {k: list(v) for k, v in cols(fast).items()} == {
        k: list(v) for k, v in cols(slow).items()
    }
    assert fast.extra == slow.extra == 1


def test_labels_name_positions() -> None:
    """With labels, list positions map by label name, unknown labels are extra."""
    part = map_rows([[1, 2, 3]], inputs("c", "a"), labels=["a", "b", "c"])
    assert {name: list(column) for name, column in cols(part).items()} == {"a": [1], "c": [3]}
    assert part.extra == 1


def test_mixed_row_kinds_in_one_batch() -> None:
    """Object, list and scalar rows can share a batch."""
    part = map_rows([{"b": 2}, [1, 2], 9], inputs("a", "b"))
    assert cols(part) == {"a": [None, 1, 9], "b": [2, 2, None]}


def test_no_configured_fields_counts_everything_extra() -> None:
    """Without configured fields every column is extra, rows still counted."""
    part = map_rows([[1, 2], [3, 4]], [])
    assert part == Part(2, {}, 2)
    assert map_rows(["x"], []).extra == 1


def test_column_values_squeezes_n_by_one() -> None:
    """A [N, 1] column becomes one value per row; [N, 2] is bad_shape."""
    assert list(column_values([[1], [2]], "x")) == [1, 2]
    with pytest.raises(ProtocolError):
        column_values([[1, 2], [3, 4]], "x")
    assert column_values(5, "x") == [5]


def test_map_columns_infers_rows_from_unconfigured_arrays() -> None:
    """Without configured columns the first array still gives the batch size."""
    part = map_columns({"other": [1, 2, 3]}, inputs("a"), "inputs")
    assert (part.rows, cols(part), part.extra) == (3, {}, 1)


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


def test_categorical_numbers_keep_their_json_type_in_numeric_list_rows() -> None:
    """A float matrix does not turn a categorical 2 into 2.0 (nor True into 1.0)."""
    specs = [*inputs("alcohol"), *inputs("zone", "flag", kind="categorical")]
    part = map_rows([[12.5, 2, True], [13.0, 2.0, False]], specs)
    assert isinstance(cols(part)["alcohol"], np.ndarray)
    assert cols(part)["zone"] == [2, 2.0]
    assert [type(value) for value in cols(part)["zone"]] == [int, float]
    assert cols(part)["flag"] == [True, False]
    assert [type(value) for value in cols(part)["flag"]] == [bool, bool]


def test_categorical_numbers_keep_their_json_type_everywhere() -> None:
    """Scalar rows, nested rows, object rows and columns all keep categorical values exact."""
    zone = inputs("zone", kind="categorical")
    assert cols(map_rows([2, 2.5], zone))["zone"] == [2, 2.5]
    assert type(cols(map_rows([[[2]], [[2.5]]], zone))["zone"][0]) is int
    assert cols(map_rows([{"zone": 2}, {"zone": 2.5}], zone))["zone"] == [2, 2.5]
    assert cols(map_columns({"zone": [2, 2.5]}, zone, "inputs"))["zone"] == [2, 2.5]


def test_numeric_fields_of_object_rows_use_numpy() -> None:
    """Numeric fields of object rows become one numpy array per column."""
    part = map_rows(
        [{"a": 1.5, "b": "x"}, {"a": 2, "b": "y"}], [*inputs("a"), *inputs("b", kind="categorical")]
    )
    assert isinstance(cols(part)["a"], np.ndarray)
    assert cols(part)["b"] == ["x", "y"]


SPECS = (
    *inputs("a", "b", "c"),
    *inputs("zone", kind="categorical"),
    *inputs("d"),
)


@settings(max_examples=150, deadline=None)
@given(
    st.one_of(st.none(), st.lists(st.sampled_from(["a", "b", "c", "d", "zone", "x", "y"]))),
    st.integers(1, 7),
    st.sampled_from([np.float64, np.int64, object]),
)
def test_map_matrix_layouts_remembered_per_adapter_side_match_fresh_ones(
    labels: list[str] | None, width: int, dtype: type
) -> None:
    """The layout kept for a tuple of specs maps like one worked out anew, call after call."""
    matrix = np.arange(3 * width).astype(dtype).reshape(3, width)
    fresh = map_matrix(matrix, list(SPECS), labels)
    for _ in range(2):
        remembered = map_matrix(matrix, SPECS, labels)
        assert remembered.extra == fresh.extra
        assert {k: np.asarray(v).tolist() for k, v in cols(remembered).items()} == {
            k: np.asarray(v).tolist() for k, v in cols(fresh).items()
        }
        assert [names for names, _ in remembered.blocks] == [names for names, _ in fresh.blocks]


def test_a_wide_matrix_is_one_block_viewed_not_copied() -> None:
    """Consecutive numeric columns are handed over as one block, a view of the matrix."""
    specs = tuple(inputs(*(f"f{i}" for i in range(1000))))
    matrix = np.random.default_rng(0).normal(size=(8, 1000))
    part = map_matrix(matrix, specs)
    [(names, block)] = part.blocks
    assert names == tuple(f"f{i}" for i in range(1000))
    assert np.shares_memory(block, matrix)
    assert (part.columns, part.extra) == ({}, 0)
    assert fields_of(specs) is fields_of(specs)
