"""A field's ``path`` names its column in the body for every protocol but jsonpath."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from driftgauge.config import FieldSpec, ProtocolName
from driftgauge.protocols import make_adapter
from driftgauge.typing import Columns

from .helpers import plain

# The bodies name their columns alcohol, region and label; the metrics are called otherwise.
FEATURES = [
    FieldSpec("alcohol_pct", "numeric", "input", "alcohol"),
    FieldSpec("area", "categorical", "input", "region"),
]
PREDICTIONS = [FieldSpec("predicted class", "categorical", "prediction", "label")]
BODIES: dict[ProtocolName, tuple[Any, Any]] = {
    "kserve-v1": (
        {"instances": [{"alcohol": 13.1, "region": "north"}, {"alcohol": 12.0, "region": "east"}]},
        {"predictions": [{"label": "a"}, {"label": "b"}]},
    ),
    "kserve-v2": (
        {
            "inputs": [
                {"name": "region", "shape": [2], "datatype": "BYTES", "data": ["north", "east"]},
                {"name": "alcohol", "shape": [2], "datatype": "FP64", "data": [13.1, 12.0]},
            ]
        },
        {"outputs": [{"name": "label", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]}]},
    ),
    "tfserving": (
        {"inputs": {"alcohol": [13.1, 12.0], "region": ["north", "east"]}},
        {"outputs": {"label": ["a", "b"]}},
    ),
    "mlflow": (
        {
            "dataframe_split": {
                "columns": ["region", "alcohol"],
                "data": [["north", 13.1], ["east", 12.0]],
            }
        },
        {"predictions": [{"label": "a"}, {"label": "b"}]},
    ),
    "seldon": (
        {"data": {"names": ["region", "alcohol"], "ndarray": [["north", 13.1], ["east", 12.0]]}},
        {"data": {"names": ["label"], "ndarray": [["a"], ["b"]]}},
    ),
}
BODIES["kserve"] = BODIES["kserve-v2"]
EXPECTED = {"alcohol_pct": [13.1, 12.0], "area": ["north", "east"], "predicted class": ["a", "b"]}


@pytest.mark.parametrize("protocol", list(BODIES))
def test_path_names_the_body_column_and_name_the_metric(protocol: ProtocolName) -> None:
    """``{name: alcohol_pct, path: alcohol}`` reads ``alcohol`` and reports ``alcohol_pct``."""
    adapter = make_adapter(protocol, FEATURES, PREDICTIONS)
    extracted = adapter.extract(*BODIES[protocol])
    assert plain(extracted) == EXPECTED
    assert extracted.extra_columns == 0


def test_body_names_may_swap_metric_names() -> None:
    """Two fields may take each other's names: each reads its own path."""
    features = [
        FieldSpec("a", "numeric", "input", "b"),
        FieldSpec("b", "numeric", "input", "a"),
    ]
    adapter = make_adapter("kserve-v1", features, [])
    extracted = adapter.extract({"instances": [{"a": 1.0, "b": 2.0}]}, None)
    assert plain(extracted) == {"a": [2.0], "b": [1.0]}


def test_numeric_blocks_are_renamed_without_copying() -> None:
    """Rows by position become one numeric block; only its names change."""
    features = [FieldSpec("x_pct", "numeric", "input", "x"), FieldSpec("y", "numeric", "input")]
    adapter = make_adapter("kserve-v1", features, [])
    extracted = adapter.extract({"instances": [[1.0, 2.0], [3.0, 4.0]]}, None)
    assert isinstance(extracted.columns, Columns)
    (names, matrix), *_ = extracted.columns.blocks
    assert names == ("x_pct", "y")
    assert np.array_equal(matrix, [[1.0, 2.0], [3.0, 4.0]])
    assert plain(extracted) == {"x_pct": [1.0, 3.0], "y": [2.0, 4.0]}


def test_the_metric_name_is_not_read_when_a_path_is_given() -> None:
    """With a path the body's column of the metric's own name is just an extra column."""
    adapter = make_adapter("kserve-v1", FEATURES[:1], [])
    extracted = adapter.extract({"instances": [{"alcohol_pct": 5.0}]}, None)
    assert plain(extracted) == {}
    assert extracted.extra_columns == 1


def test_jsonpath_keeps_its_paths() -> None:
    """For jsonpath a path is still a JSONPath into the body."""
    adapter = make_adapter(
        "jsonpath", [FieldSpec("alcohol_pct", "numeric", "input", "$.rows[*].alcohol")], []
    )
    assert plain(adapter.extract({"rows": [{"alcohol": 1.5}]}, None)) == {"alcohol_pct": [1.5]}
