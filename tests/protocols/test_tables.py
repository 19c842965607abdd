"""Body tables to field columns: rows, named columns and numeric matrices."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftgauge.exceptions import ProtocolError
from driftgauge.protocols._common import Part
from driftgauge.protocols._tables import (
    column_values,
    fields_of,
    map_columns,
    map_matrix,
    map_rows,
    numeric_array,
)
from driftgauge.typing import Columns

from .helpers import inputs


def cols(part: Part) -> Columns:
    """All of a part's columns, blocks included, as adapters hand them over."""
    return Columns(part.columns, part.blocks)


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


def test_rows_without_a_field_other_rows_hold_are_counted_absent() -> None:
    """Object rows without a key and list rows too short to reach a position lack that field
    (absent); a null holds it; a field no row holds is left out of the columns."""
    specs = [*inputs("a"), *inputs("b", kind="categorical"), *inputs("c")]
    objects = [{"a": 1.0, "b": "x"}, {"b": None}, {"a": None}, {}]
    part = map_rows(objects, specs)
    assert part.absent == {"a": 2, "b": 2}
    assert "c" not in part.columns
    lists = [[1.0, "x", 2.0], [1.0], [None, "y"], 3.0]
    part = map_rows(lists, specs)
    assert part.absent == {"b": 2, "c": 3}
    assert map_rows([[1.0, "x", 2.0], [1.0, None, 3.0]], specs).absent == {}
