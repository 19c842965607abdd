"""MLflow ``text/csv`` request bodies: a header line, then rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from driftgauge.config import FieldSpec
from driftgauge.exceptions import ProtocolError
from driftgauge.protocols import make_adapter
from driftgauge.protocols.csv_body import CsvTable, content_type
from driftgauge.protocols.mlflow import MLflowAdapter

from .helpers import inputs, outputs, plain

CSV = b"region,alcohol,ash,comment\r\nnorth,13.1,2.4,x\r\n\r\nsouth,12.5,,y\r\n"
CSV_HEADERS = {"Content-Type": "text/csv; charset=utf-8"}


def adapter() -> MLflowAdapter:
    features = [*inputs("alcohol", "ash"), *inputs("region", kind="categorical")]
    return MLflowAdapter(features, outputs("class"))


def read(body: bytes | str, headers: dict[str, str] | None = None) -> Any:
    return adapter().read_text(body, headers or {})


def test_declared_csv_maps_columns_by_header_name() -> None:
    """Columns map by header name, blank lines are skipped, an empty cell is missing."""
    table = read(CSV, CSV_HEADERS)
    assert isinstance(table, CsvTable)
    extracted = adapter().extract(table, {"predictions": ["a", "b"]})
    assert plain(extracted) == {
        "alcohol": [13.1, 12.5],
        "ash": [2.4, None],
        "region": ["north", "south"],
        "class": ["a", "b"],
    }
    assert extracted.extra_columns == 1


def test_all_numeric_cells_become_one_float_array() -> None:
    """A numeric column without gaps is parsed by numpy in one call."""
    table = read(b"alcohol\n1.5\n2\n", CSV_HEADERS)
    column = adapter().extract(table, None).columns["alcohol"]
    assert isinstance(column, np.ndarray)
    assert column.dtype == np.float64
    assert column.tolist() == [1.5, 2.0]


def test_a_numeric_cell_that_is_no_number_stays_text() -> None:
    """A non-number in a numeric column is kept as text (the monitor counts a wrong type)."""
    table = read(b"alcohol,ash\nabc,1\n", CSV_HEADERS)
    assert plain(adapter().extract(table, None)) == {"alcohol": ["abc"], "ash": [1.0]}


def test_without_a_content_type_a_header_naming_a_feature_is_csv() -> None:
    """Sniffed: a non-JSON body whose header names a configured feature is read as CSV."""
    assert plain(adapter().extract(read(CSV.decode()), None))["alcohol"] == [13.1, 12.5]


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b'{"dataframe_records": [', {}),  # broken JSON whose "header" names no field
        (b"a,b\n1,2\n", {}),  # CSV of other columns
        (CSV, {"content-type": "application/json"}),  # declared JSON
        (b"\xff\xfe", CSV_HEADERS),  # not UTF-8
    ],
)
def test_other_non_json_bodies_stay_invalid_json(body: bytes, headers: dict[str, str]) -> None:
    """A body that is not CSV, or not declared or recognised as CSV, is a ValueError."""
    with pytest.raises(ValueError, match="JSON|utf-8"):
        read(body, headers)


@pytest.mark.parametrize(
    ("body", "message"),
    [(b"", "no header line"), (b"alcohol,ash\n1,2,3\n", "line 2 has 3 cells for 2 columns")],
)
def test_declared_csv_that_does_not_fit_is_bad_shape(body: bytes, message: str) -> None:
    """An empty CSV body or a row longer than the header is bad_shape."""
    with pytest.raises(ProtocolError, match=message) as caught:
        read(body, CSV_HEADERS)
    assert caught.value.reason == "bad_shape"


def test_a_short_row_is_missing_its_last_values() -> None:
    """As pandas reads it: cells past a short row's end are missing."""
    table = read(b"alcohol,ash\n1.0\n", CSV_HEADERS)
    assert plain(adapter().extract(table, None)) == {"alcohol": [1.0], "ash": [None]}


def test_csv_header_names_are_body_names() -> None:
    """With ``path`` the CSV column of that name feeds the metric of the field's name."""
    renamed = make_adapter("mlflow", [FieldSpec("alcohol_pct", "numeric", "input", "alcohol")], [])
    table = renamed.read_text(b"alcohol\n13.5\n", {})
    assert plain(renamed.extract(table, None)) == {"alcohol_pct": [13.5]}


def test_content_type_ignores_case_and_parameters() -> None:
    """The media type is found under any spelling of the header name."""
    assert content_type({"CONTENT-TYPE": "Text/CSV ; header=present"}) == "text/csv"
    assert content_type({}) is None
