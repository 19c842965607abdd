"""The same rows in every JSON encoding reach the monitor as the same values: booleans, ints,
floats and float category codes alike (numpy reads ``true`` among numbers as 1)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftgauge.config import FieldSpec
from driftgauge.protocols import KServeV1Adapter, KServeV2Adapter, MLflowAdapter
from driftgauge.protocols._tables import column_values, numeric_array
from driftgauge.sketches.summary import to_categories, to_floats
from driftgauge.typing import Adapter, Extracted

from .helpers import inputs

NUMERIC = ("x1", "x2")
CATEGORICAL = ("flag", "code")
SPECS: list[FieldSpec] = [
    *inputs(*NUMERIC),
    *inputs(*CATEGORICAL, kind="categorical"),
]
NAMES = [spec.name for spec in SPECS]

Row = dict[str, Any]
Encode = Callable[[list[Row]], Any]


def v1_lists(rows: list[Row]) -> Any:
    return {"instances": [[row[name] for name in NAMES] for row in rows]}


def v1_objects(rows: list[Row]) -> Any:
    return {"instances": rows}


def mlflow_split(rows: list[Row]) -> Any:
    # Columns in another order than the config's: mapped by name.
    columns = NAMES[::-1]
    return {
        "dataframe_split": {"columns": columns, "data": [[r[c] for c in columns] for r in rows]}
    }


def mlflow_records(rows: list[Row]) -> Any:
    return {"dataframe_records": rows}


def _tensor(name: str, values: list[Any]) -> dict[str, Any]:
    if all(type(value) is bool for value in values):
        datatype = "BOOL"
    elif all(type(value) is int for value in values):
        datatype = "INT64"
    else:
        datatype = "FP64"
    return {"name": name, "shape": [len(values)], "datatype": datatype, "data": values}


def v2_tensors(rows: list[Row]) -> Any:
    return {"inputs": [_tensor(name, [row[name] for row in rows]) for name in NAMES]}


ENCODINGS: dict[str, tuple[Adapter, Encode]] = {
    "kserve-v1 lists": (KServeV1Adapter(SPECS, []), v1_lists),
    "kserve-v1 objects": (KServeV1Adapter(SPECS, []), v1_objects),
    "kserve-v2 tensors": (KServeV2Adapter(SPECS, []), v2_tensors),
    "mlflow dataframe_split": (MLflowAdapter(SPECS, []), mlflow_split),
    "mlflow dataframe_records": (MLflowAdapter(SPECS, []), mlflow_records),
}


def seen(extracted: Extracted) -> dict[str, Any]:
    """What the monitor reads of each column: floats with (missing, wrong_type) counts for a
    numeric field, canonical category strings with a missing count for a categorical one."""
    out: dict[str, Any] = {}
    for spec in SPECS:
        column = extracted.columns[spec.name]
        if spec.type == "numeric":
            floats, missing, wrong = to_floats(column)
            out[spec.name] = (
                ["-" if math.isnan(x) else x for x in floats.tolist()],
                missing,
                wrong,
            )
        else:
            categories, missing = to_categories(column)
            out[spec.name] = (categories.tolist(), missing)
    return out


def read_all(rows: list[Row], names: list[str] | None = None) -> dict[str, dict[str, Any]]:
    chosen = ENCODINGS if names is None else {name: ENCODINGS[name] for name in names}
    return {
        name: seen(adapter.extract(encode(rows), None))
        for name, (adapter, encode) in chosen.items()
    }


def assert_all_alike(read: dict[str, dict[str, Any]]) -> None:
    first, *others = read
    for other in others:
        assert read[other] == read[first], (first, other)


NUMBERS = st.integers(-(2**40), 2**40) | st.floats(
    -1e12, 1e12, allow_nan=False, allow_infinity=False
)
ROWS = st.lists(
    st.fixed_dictionaries(
        {
            # 0 and 1 are what numpy makes of a boolean: drawn often, beside other numbers.
            "x1": st.sampled_from([0, 1, 0.0, 1.0]) | NUMBERS,
            "x2": st.sampled_from([0, 1, 2]) | NUMBERS,
            "flag": st.booleans(),
            # Integer codes as ints or as integral floats ("2" either way), or other floats.
            "code": st.integers(0, 9) | st.integers(0, 9).map(float) | st.sampled_from([0.5, 2.5]),
        }
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(ROWS)
def test_the_same_rows_read_alike_in_every_encoding(rows: list[Row]) -> None:
    """v1 lists and objects, v2 tensors, MLflow split and records: the same floats and categories."""
    read = read_all(rows)
    assert_all_alike(read)
    flags = read["kserve-v1 lists"]["flag"][0]
    assert flags == ["true" if row["flag"] else "false" for row in rows]


@pytest.mark.parametrize(
    "rows",
    [
        [{"x1": 10, "x2": 3, "flag": True, "code": 2}],  # all ints: numpy made one int matrix
        [{"x1": 10.5, "x2": 3, "flag": True, "code": 2}],  # a float: one float matrix
        [{"x1": 1, "x2": 0, "flag": False, "code": 1}],  # every value 0 or 1
        [
            {"x1": 0, "x2": 1, "flag": True, "code": 1.0},
            {"x1": 2, "x2": 3, "flag": False, "code": 7},
        ],
        [{"x1": i, "x2": i % 3, "flag": i % 2 == 0, "code": float(i % 4)} for i in range(300)],
    ],
    ids=["ints", "float", "zeros-and-ones", "float-code", "300-rows"],
)
def test_a_boolean_category_reads_true_among_numbers(rows: list[Row]) -> None:
    """A JSON boolean in an all-number list row is the category true/false, not 1/0."""
    read = read_all(rows)
    assert_all_alike(read)
    flag, missing = read["kserve-v1 lists"]["flag"]
    assert flag == ["true" if row["flag"] else "false" for row in rows]
    assert missing == 0
    codes, _ = read["kserve-v1 lists"]["code"]
    assert codes == [str(int(row["code"])) for row in rows]


ROW_ENCODINGS = [name for name in ENCODINGS if name != "kserve-v2 tensors"]


@pytest.mark.parametrize(
    ("x2", "code"),
    [
        ([True, 2.0], [1, 2]),  # numbers only
        ([True, 2.0], ["a", "b"]),  # a string in the row too
        ([2.0, False], [1.0, 2.5]),
        ([True, False], [1, 2]),  # booleans only in the field
    ],
    ids=["numbers", "with-a-string", "false-second", "only-booleans"],
)
def test_a_boolean_in_a_numeric_field_is_of_the_wrong_type_in_every_row_encoding(
    x2: list[Any], code: list[Any]
) -> None:
    """``true`` in a numeric field is wrong_type whatever else the rows hold (never the value 1)."""
    rows = [
        {"x1": 1.0, "x2": x2[0], "flag": True, "code": code[0]},
        {"x1": 3.0, "x2": x2[1], "flag": False, "code": code[1]},
    ]
    read = read_all(rows, ROW_ENCODINGS)
    assert_all_alike(read)
    values, missing, wrong = read["kserve-v1 lists"]["x2"]
    booleans = sum(type(value) is bool for value in x2)
    assert (missing, wrong) == (0, booleans)
    assert values == ["-" if type(v) is bool else v for v in x2]
    assert read["kserve-v1 lists"]["x1"] == ([1.0, 3.0], 0, 0)


def test_a_bool_tensor_in_a_numeric_field_is_of_the_wrong_type_too() -> None:
    """The v2 spelling of a boolean feature, a BOOL tensor, reads as the rows do."""
    rows = [{"x1": 1.0, "x2": True, "flag": True, "code": 1}]
    v2 = read_all(rows, ["kserve-v2 tensors"])["kserve-v2 tensors"]
    assert v2["x2"] == (["-"], 0, 1)
    assert v2 == read_all(rows, ["kserve-v1 lists"])["kserve-v1 lists"]


def test_numeric_blocks_keep_the_fields_without_booleans() -> None:
    """A numeric field holding a boolean leaves the block; the others are still handed over in it."""
    extracted = KServeV1Adapter(SPECS, []).extract({"instances": [[2.5, True, False, 3]]}, None)
    assert extracted.columns["x2"] == [True]
    assert extracted.columns["flag"] == [False]
    blocks = getattr(extracted.columns, "blocks", ())
    assert [names for names, _ in blocks] == [("x1",)]
    assert blocks[0][1].tolist() == [[2.5]]


@pytest.mark.parametrize(
    "values",
    [[1, True], [True, 1], [0.5, False], [[1], [True]], [2, 3, True]],
    ids=str,
)
def test_numeric_array_refuses_booleans_among_numbers(values: list[Any]) -> None:
    """numeric_array leaves values holding a boolean as a list (numpy would make it a 1 or 0)."""
    assert numeric_array(values) is None
    column = column_values(values, "x", exact=False)
    assert isinstance(column, list)


@pytest.mark.parametrize("values", [[0, 1], [0.0, 1.0, 2.5], [[0], [1]], [1]], ids=str)
def test_numeric_array_still_takes_zeros_and_ones(values: list[Any]) -> None:
    """Numbers 0 and 1 are numbers: one numpy array."""
    array = numeric_array(values)
    assert isinstance(array, np.ndarray)
    assert array.ravel().tolist() == np.ravel(values).tolist()


SCALARS = st.none() | st.booleans() | NUMBERS | st.sampled_from(["a", "north", "", "1", "2.0"])
MIXED_ROWS = st.lists(
    st.fixed_dictionaries(
        {"x1": SCALARS, "x2": NUMBERS, "flag": SCALARS, "code": st.sampled_from(["a", 2, 2.0])}
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(MIXED_ROWS, st.integers(0, 2))
def test_rows_mixing_strings_and_numbers_read_alike_column_by_column(
    rows: list[Row], extra: int
) -> None:
    """List rows holding strings among numbers are read a column at a time (50,000 rows of
    three values: 1.3 s value by value): the same as value by value, and in every encoding."""
    from driftgauge.protocols import _tables

    assert_all_alike(read_all(rows, ROW_ENCODINGS))
    body = {"instances": [[row[name] for name in NAMES] + ["more"] * extra for row in rows]}
    adapter = KServeV1Adapter(SPECS, [])
    by_column = adapter.extract(body, None)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_tables, "_table", lambda rows: None)
        by_value = adapter.extract(body, None)
    assert seen(by_column) == seen(by_value)
    assert by_column.extra_columns == by_value.extra_columns == extra


def test_rows_mixing_strings_and_numbers_are_never_read_value_by_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No Python call per value for the usual tabular body (numbers and a category string)."""
    from driftgauge.protocols import _tables

    calls = 0
    real = _tables.scalar

    def counted(value: Any, name: str) -> Any:
        nonlocal calls
        calls += 1
        return real(value, name)

    monkeypatch.setattr(_tables, "scalar", counted)
    body = {"instances": [[13.0, 2, True, "north"]] * 1_000}
    extracted = KServeV1Adapter(SPECS, []).extract(body, None)
    assert calls == 0
    assert seen(extracted)["code"] == (["north"] * 1_000, 0)
