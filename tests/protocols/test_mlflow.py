"""MLflow scoring server adapter: the four ``/invocations`` JSON formats."""

from __future__ import annotations

from typing import Any

import pytest

from driftgauge.exceptions import ProtocolError
from driftgauge.protocols.mlflow import MLflowAdapter

from .helpers import inputs, outputs, plain

# Bodies from MLflow "Deploy MLflow Model as a Local Inference Server" (Accepted Input
# Formats): https://mlflow.org/docs/latest/ml/deployment/deploy-model-locally
CURL_INPUTS = {"inputs": [[1, 2], [3, 4], [5, 6]]}
INSTANCES = {"instances": [1.0, 2.0, 5.0]}
TEXT_INPUTS = {"inputs": [["Cheese"], ["and", "Crackers"]]}
QUESTION_INPUTS = {
    "inputs": {
        "question": ["What color is it?"],
        "context": ["Some people said it was green but I know that it is pink."],
    },
    "params": {"max_answer_len": 10},
}
# "Encoding complex data": a record-oriented DataFrame posted as a bare list.
BARE_RECORDS = [
    {"a": 0, "b": "dGVzdCBiaW5hcnkgZGF0YSAw"},
    {"a": 1, "b": "dGVzdCBiaW5hcnkgZGF0YSAx"},
    {"a": 2, "b": "dGVzdCBiaW5hcnkgZGF0YSAy"},
]
# MLflow "Model Serving" quick start (Python tab).
SPLIT = {
    "dataframe_split": {
        "columns": ["feature1", "feature2", "feature3", "feature4"],
        "data": [[1, 2, 3, 4]],
    }
}
# The scoring server's MlflowException body, as served (error_code + message).
ERROR = {"error_code": "BAD_REQUEST", "message": "Model is missing inputs ['content']."}


def test_documented_curl_inputs_map_by_order() -> None:
    """The docs' curl body is three rows of two features by order."""
    adapter = MLflowAdapter(inputs("x1", "x2"), outputs("y", kind="numeric"))
    extracted = adapter.extract(CURL_INPUTS, {"predictions": [0.1, 0.2, 0.3]})
    assert plain(extracted) == {"x1": [1, 3, 5], "x2": [2, 4, 6], "y": [0.1, 0.2, 0.3]}


def test_documented_dataframe_split_maps_through_columns() -> None:
    """``dataframe_split`` columns name the values, whatever the config order."""
    adapter = MLflowAdapter(inputs("feature4", "feature1"), outputs("label"))
    extracted = adapter.extract(SPLIT, {"predictions": ["yes"]})
    assert plain(extracted) == {"feature4": [4], "feature1": [1], "label": ["yes"]}
    assert extracted.extra_columns == 2


def test_split_with_integer_columns_maps_by_order() -> None:
    """Pandas' default integer column labels are positions in config order."""
    body = {"dataframe_split": {"data": [["Welcome to databricks"]], "columns": [0], "index": [0]}}
    adapter = MLflowAdapter(inputs("content", kind="categorical"), [])
    assert plain(adapter.extract(body, None)) == {"content": ["Welcome to databricks"]}


def test_split_without_columns_maps_by_order() -> None:
    """A split frame without ``columns`` maps its rows by position."""
    body = {"dataframe_split": {"data": [[1.5, "a"], [2.5, "b"]]}}
    adapter = MLflowAdapter([*inputs("x"), *inputs("c", kind="categorical")], [])
    assert plain(adapter.extract(body, None)) == {"x": [1.5, 2.5], "c": ["a", "b"]}


def test_dataframe_records_map_by_name() -> None:
    """Record-oriented rows map by name."""
    body = {"dataframe_records": [{"a": 1, "b": "x"}, {"b": "y", "a": 2}]}
    adapter = MLflowAdapter([*inputs("a"), *inputs("b", kind="categorical")], [])
    assert plain(adapter.extract(body, None)) == {"a": [1, 2], "b": ["x", "y"]}


def test_documented_bare_record_list_reads_as_records() -> None:
    """The docs' bare list of records is read like ``dataframe_records``."""
    adapter = MLflowAdapter(inputs("a"), outputs("y"))
    extracted = adapter.extract(BARE_RECORDS, [0, 1, 1])
    assert plain(extracted) == {"a": [0, 1, 2], "y": [0, 1, 1]}
    assert extracted.extra_columns == 1


def test_documented_instances_are_scalar_rows() -> None:
    """``instances`` of scalars are the first feature."""
    adapter = MLflowAdapter(inputs("x"), [])
    assert plain(adapter.extract(INSTANCES, None)) == {"x": [1.0, 2.0, 5.0]}


def test_documented_ragged_text_inputs_map_by_order() -> None:
    """Ragged string rows map by order; missing positions stay absent or None."""
    adapter = MLflowAdapter(inputs("w1", "w2", kind="categorical"), [])
    extracted = adapter.extract(TEXT_INPUTS, None)
    assert plain(extracted) == {"w1": ["Cheese", "and"], "w2": [None, "Crackers"]}


def test_documented_column_dict_inputs_map_by_name() -> None:
    """An ``inputs`` object is columns by name; ``params`` is ignored."""
    adapter = MLflowAdapter(inputs("question", kind="categorical"), [])
    extracted = adapter.extract(QUESTION_INPUTS, None)
    assert plain(extracted) == {"question": ["What color is it?"]}
    assert extracted.extra_columns == 1


def test_record_predictions_map_by_name() -> None:
    """DataFrame predictions come as records and map by name."""
    adapter = MLflowAdapter(inputs("a"), outputs("label", "score"))
    response = {"predictions": [{"label": "a", "score": 0.5}, {"label": "b", "score": 0.25}]}
    extracted = adapter.extract({"dataframe_records": [{"a": 1}, {"a": 2}]}, response)
    assert plain(extracted)["score"] == [0.5, 0.25]


def test_list_predictions_map_by_order() -> None:
    """A list per prediction maps onto predictions by position."""
    adapter = MLflowAdapter(inputs("a"), outputs("p0", "p1"))
    extracted = adapter.extract({"inputs": [[1], [2]]}, {"predictions": [[0.9, 0.1], [0.3, 0.7]]})
    assert plain(extracted) == {"a": [1, 2], "p0": [0.9, 0.3], "p1": [0.1, 0.7]}


def test_list_predictions_wider_than_the_predictions_fill_none_of_them() -> None:
    """A probability row per input with one configured label (in an object or a bare list) is
    other outputs: all extra, the label absent (its first probability was the label)."""
    adapter = MLflowAdapter(inputs("a"), outputs("label"))
    rows = [[0.9, 0.1], [0.3, 0.7]]
    for response in ({"predictions": rows}, rows):
        extracted = adapter.extract({"inputs": [[1], [2]]}, response)
        assert plain(extracted) == {"a": [1, 2]}
        assert extracted.extra_columns == 2


def test_error_body_is_error_response() -> None:
    """``{"error_code", "message"}`` raises error_response without the message."""
    with pytest.raises(ProtocolError) as caught:
        MLflowAdapter(inputs("content"), []).extract(SPLIT, ERROR)
    assert caught.value.reason == "error_response"
    assert "content" not in str(caught.value)


def test_row_count_mismatch() -> None:
    """Fewer predictions than rows raise row_mismatch."""
    with pytest.raises(ProtocolError) as caught:
        MLflowAdapter(inputs("x1"), outputs("y")).extract(CURL_INPUTS, {"predictions": [1]})
    assert caught.value.reason == "row_mismatch"


@pytest.mark.parametrize(
    ("request_body", "response_body", "reason"),
    [
        ("1,2,3,4", None, "not_object"),
        ({"params": {}}, None, "missing_inputs"),
        ({"messages": [{"role": "user", "content": "hi"}]}, None, "missing_inputs"),
        ({"inputs": [1], "instances": [1]}, None, "bad_shape"),
        ({"dataframe_split": [[1, 2]]}, None, "bad_shape"),
        ({"dataframe_split": {"columns": ["a"]}}, None, "bad_shape"),
        ({"dataframe_split": {"columns": [["a"]], "data": [[1]]}}, None, "bad_shape"),
        ({"dataframe_records": {"a": [1]}}, None, "bad_shape"),
        ({"instances": {"a": [1]}}, None, "bad_shape"),
        (CURL_INPUTS, 3.5, "not_object"),
        (CURL_INPUTS, {"outputs": [1, 2, 3]}, "missing_outputs"),
    ],
)
def test_garbage_raises_protocol_error_with_reason(
    request_body: Any, response_body: Any, reason: str
) -> None:
    """Wrong shapes raise ProtocolError with a bounded reason token."""
    with pytest.raises(ProtocolError) as caught:
        MLflowAdapter(inputs("x1", "x2"), outputs("y")).extract(request_body, response_body)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("", True),
        ("/invocations", True),
        ("/invocations?format=pandas-split", True),
        ("/ping", False),
        ("/health", False),
        ("/version", False),
        ("/invocations/extra", False),
    ],
)
def test_matches_only_invocations(path: str, expected: bool) -> None:
    """``/invocations`` is the scoring route; the health endpoints are not."""
    assert MLflowAdapter(inputs("x"), []).matches(path) is expected
