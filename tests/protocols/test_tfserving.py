"""TF Serving adapter: row (``instances``) and columnar (``inputs``) predict bodies."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from driftgauge.exceptions import ProtocolError
from driftgauge.protocols.tfserving import TFServingAdapter

from .helpers import inputs, outputs, plain

# Bodies from TensorFlow Serving "RESTful API" (tensorflow_serving/g3doc/api_rest.md):
# https://www.tensorflow.org/tfx/serving/api_rest
HALF_PLUS_THREE_REQUEST = {"instances": [1.0, 2.0, 5.0]}
HALF_PLUS_THREE_RESPONSE = {"predictions": [3.5, 4.0, 5.5]}
SCALAR_INSTANCES = {"instances": ["foo", "bar", "baz"]}
NAMED_INSTANCES = {
    "instances": [
        {"tag": "foo", "signal": [1, 2, 3, 4, 5], "sensor": [[1, 2], [3, 4]]},
        {"tag": "bar", "signal": [3, 4, 1, 2, 5], "sensor": [[4, 5], [6, 8]]},
    ]
}
COLUMNAR = {
    "inputs": {
        "tag": ["foo", "bar"],
        "signal": [[1, 2, 3, 4, 5], [3, 4, 1, 2, 5]],
        "sensor": [[[1, 2], [3, 4]], [[4, 5], [6, 8]]],
    }
}
NOT_FOUND = {"error": "Servable not found for request: Latest(half)"}


def test_documented_half_plus_three_pairs_rows() -> None:
    """The docs' half_plus_three call gives three rows, x paired with y."""
    adapter = TFServingAdapter(inputs("x"), outputs("y", kind="numeric"))
    extracted = adapter.extract(HALF_PLUS_THREE_REQUEST, HALF_PLUS_THREE_RESPONSE)
    assert extracted.rows == 3
    assert plain(extracted) == {"x": [1.0, 2.0, 5.0], "y": [3.5, 4.0, 5.5]}
    assert isinstance(extracted.columns["x"], np.ndarray)


def test_documented_scalar_string_instances_are_one_feature() -> None:
    """A list of scalar strings is one categorical input, kept as str values."""
    adapter = TFServingAdapter(inputs("word", kind="categorical"), [])
    assert plain(adapter.extract(SCALAR_INSTANCES, None)) == {"word": ["foo", "bar", "baz"]}


def test_documented_named_instances_map_by_name() -> None:
    """Named-input objects map by name; tensor inputs not configured are extra."""
    adapter = TFServingAdapter(inputs("tag", kind="categorical"), [])
    extracted = adapter.extract(NAMED_INSTANCES, None)
    assert plain(extracted) == {"tag": ["foo", "bar"]}
    assert extracted.extra_columns == 2


def test_configured_tensor_input_is_bad_shape() -> None:
    """A configured input holding a vector per row cannot be one column."""
    adapter = TFServingAdapter(inputs("tag", "signal"), [])
    with pytest.raises(ProtocolError) as caught:
        adapter.extract(NAMED_INSTANCES, None)
    assert caught.value.reason == "bad_shape"


def test_documented_columnar_inputs_map_by_name() -> None:
    """The columnar form of the same request gives the same tag column."""
    adapter = TFServingAdapter(inputs("tag", kind="categorical"), [])
    extracted = adapter.extract(COLUMNAR, None)
    assert extracted.rows == 2
    assert plain(extracted) == {"tag": ["foo", "bar"]}
    assert extracted.extra_columns == 2


def test_documented_nested_tensor_rows_flatten_by_order() -> None:
    """``[[[1, 2]], [[3, 4]]]`` (two [1, 2] tensors) flattens each row by order."""
    adapter = TFServingAdapter(inputs("a", "b"), [])
    extracted = adapter.extract({"instances": [[[1, 2]], [[3, 4]]]}, None)
    assert plain(extracted) == {"a": [1, 3], "b": [2, 4]}


def test_columnar_single_tensor_is_rows_by_order() -> None:
    """``inputs`` holding one tensor (a list) is rows mapped by order."""
    adapter = TFServingAdapter(inputs("a", "b"), outputs("y", kind="numeric"))
    extracted = adapter.extract({"inputs": [[1, 2], [3, 4]]}, {"outputs": [0.5, 0.25]})
    assert plain(extracted) == {"a": [1, 3], "b": [2, 4], "y": [0.5, 0.25]}


def test_prediction_rows_wider_than_the_predictions_fill_none_of_them() -> None:
    """A softmax row per instance (row or columnar format) with one configured class is other
    outputs than the class: all extra, the class absent (its first score was the class)."""
    adapter = TFServingAdapter(inputs("a", "b"), outputs("label"))
    for response in (
        {"predictions": [[0.2, 0.8], [0.6, 0.4]]},
        {"outputs": [[0.2, 0.8], [0.6, 0.4]]},
    ):
        extracted = adapter.extract({"instances": [[1, 2], [3, 4]]}, response)
        assert plain(extracted) == {"a": [1, 3], "b": [2, 4]}
        assert extracted.extra_columns == 2


def test_columnar_named_outputs_map_by_name() -> None:
    """An ``outputs`` object maps by output name, ``[N, 1]`` squeezed."""
    adapter = TFServingAdapter(inputs("x"), outputs("classes", "scores", kind="numeric"))
    response = {"outputs": {"classes": [[1], [0]], "scores": [0.9, 0.8], "logits": [[3], [2]]}}
    extracted = adapter.extract({"inputs": {"x": [1.5, 2.5]}}, response)
    assert plain(extracted) == {"x": [1.5, 2.5], "classes": [1, 0], "scores": [0.9, 0.8]}
    assert extracted.extra_columns == 1


def test_multi_output_predictions_objects_map_by_name() -> None:
    """Row-format answers with several outputs are objects, mapped by name."""
    adapter = TFServingAdapter(inputs("x"), outputs("label"))
    response = {"predictions": [{"label": "cat", "p": 0.9}, {"label": "dog", "p": 0.6}]}
    assert plain(adapter.extract({"instances": [1, 2]}, response))["label"] == ["cat", "dog"]


def test_columnar_columns_of_unequal_length_are_row_mismatch() -> None:
    """Configured columnar inputs must agree on the batch size."""
    adapter = TFServingAdapter(inputs("a", "b"), [])
    with pytest.raises(ProtocolError) as caught:
        adapter.extract({"inputs": {"a": [1, 2], "b": [1, 2, 3]}}, None)
    assert caught.value.reason == "row_mismatch"


def test_error_body_is_error_response() -> None:
    """The documented ``{"error": ...}`` body raises error_response."""
    adapter = TFServingAdapter(inputs("x"), outputs("y"))
    with pytest.raises(ProtocolError) as caught:
        adapter.extract(HALF_PLUS_THREE_REQUEST, NOT_FOUND)
    assert caught.value.reason == "error_response"


def test_prediction_count_must_match_instances() -> None:
    """Three instances with two predictions raise row_mismatch."""
    adapter = TFServingAdapter(inputs("x"), outputs("y"))
    with pytest.raises(ProtocolError) as caught:
        adapter.extract(HALF_PLUS_THREE_REQUEST, {"predictions": [3.5, 4.0]})
    assert caught.value.reason == "row_mismatch"


@pytest.mark.parametrize(
    ("request_body", "response_body", "reason"),
    [
        ("instances", None, "not_object"),
        ({"signature_name": "serving_default"}, None, "missing_inputs"),
        ({"instances": [1], "inputs": [1]}, None, "bad_shape"),
        ({"instances": "foo"}, None, "bad_shape"),
        ({"inputs": {}}, None, "bad_shape"),
        ({"inputs": {"x": {"b64": "aW1hZ2U="}}}, None, "bad_shape"),
        (HALF_PLUS_THREE_REQUEST, [3.5], "not_object"),
        (HALF_PLUS_THREE_REQUEST, {"results": [3.5]}, "missing_outputs"),
        (HALF_PLUS_THREE_REQUEST, {"predictions": {"y": [1]}}, "bad_shape"),
    ],
)
def test_garbage_raises_protocol_error_with_reason(
    request_body: Any, response_body: Any, reason: str
) -> None:
    """Wrong shapes raise ProtocolError with a bounded reason token."""
    adapter = TFServingAdapter(inputs("x"), outputs("y"))
    with pytest.raises(ProtocolError) as caught:
        adapter.extract(request_body, response_body)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("", True),
        ("/v1/models/half_plus_three:predict", True),
        ("/v1/models/half_plus_three/versions/123:predict", True),
        ("/v1/models/half_plus_three/labels/stable:predict", True),
        ("/v1/models/half_plus_three:predict?debug=1", True),
        ("/v1/models/half_plus_three/versions/latest:predict", False),
        ("/v1/models/half_plus_three:regress", False),
        ("/v1/models/half_plus_three:classify", False),
        ("/v1/models/half_plus_three/metadata", False),
        ("/v2/models/half_plus_three/infer", False),
    ],
)
def test_matches_predict_routes_with_versions_and_labels(path: str, expected: bool) -> None:
    """``:predict`` with an optional numeric version or a label is a TF Serving route."""
    assert TFServingAdapter(inputs("x"), []).matches(path) is expected
