"""Seldon Core v1 adapter: ``data.names`` with ``data.ndarray`` or ``data.tensor``."""

from __future__ import annotations

from typing import Any

import pytest

from driftgauge.exceptions import ProtocolError
from driftgauge.protocols.seldon import SeldonAdapter

from .helpers import inputs, outputs, plain

IRIS = ("sepal_length", "sepal_width", "petal_length", "petal_width")
PROBABILITIES = ("t:0", "t:1", "t:2")

# Seldon Core v1 "External Prediction API" example payload (external-prediction.md).
DOC_TENSOR = {"data": {"names": ["a", "b"], "tensor": {"shape": [2, 2], "values": [0, 0, 1, 1]}}}
# Seldon Core v1 sklearn iris quick start: request and the classifier's answer.
IRIS_REQUEST = {"data": {"ndarray": [[1, 2, 3, 4]]}}
IRIS_RESPONSE = {
    "data": {
        "names": ["t:0", "t:1", "t:2"],
        "ndarray": [[0.0006985194531162841, 0.003668039039435755, 0.9956334415074478]],
    },
    "meta": {"requestPath": {"classifier": "seldonio/sklearnserver:1.13.1"}},
}
# Prepackaged SKLearn server docs: tensor in, tensor out.
TENSOR_REQUEST = {"data": {"tensor": {"shape": [1, 4], "values": [5.3, 3.5, 1.4, 0.2]}}}
TENSOR_RESPONSE = {
    "data": {
        "names": ["t:0", "t:1", "t:2"],
        "tensor": {
            "shape": [1, 3],
            "values": [0.8700986370655746, 0.1298937698872714, 7.593047154034911e-06],
        },
    },
    "meta": {},
}
# The Python wrapper's failure body for bad data (status 1 = FAILURE).
FAILURE = {
    "status": {
        "code": -1,
        "info": "Unknown data type returned as payload (must be list or np array):None",
        "reason": "MICROSERVICE_BAD_DATA",
        "status": 1,
    }
}


def test_documented_iris_ndarray_maps_probabilities_by_name() -> None:
    """Unnamed request columns map by order; ``t:0..t:2`` map by name."""
    adapter = SeldonAdapter(inputs(*IRIS), outputs(*PROBABILITIES, kind="numeric"))
    extracted = adapter.extract(IRIS_REQUEST, IRIS_RESPONSE)
    assert extracted.rows == 1
    columns = plain(extracted)
    assert columns["sepal_length"] == [1]
    assert columns["petal_width"] == [4]
    assert columns["t:2"] == [pytest.approx(0.9956334415074478)]
    assert extracted.extra_columns == 0


def test_documented_tensor_request_maps_names_by_name() -> None:
    """The docs' [2, 2] tensor with names a, b gives two rows by name."""
    adapter = SeldonAdapter(inputs("b", "a"), [])
    extracted = adapter.extract(DOC_TENSOR, None)
    assert plain(extracted) == {"a": [0.0, 1.0], "b": [0.0, 1.0]}


def test_documented_tensor_round_trip() -> None:
    """Tensor request and tensor response pair row by row."""
    adapter = SeldonAdapter(inputs(*IRIS), outputs(*PROBABILITIES, kind="numeric"))
    extracted = adapter.extract(TENSOR_REQUEST, TENSOR_RESPONSE)
    assert plain(extracted)["sepal_length"] == [5.3]
    assert plain(extracted)["t:0"] == [pytest.approx(0.8700986370655746)]


def test_unnamed_response_rows_wider_than_the_predictions_fill_none_of_them() -> None:
    """Class probabilities without names (ndarray or tensor) and one configured class: other
    outputs, all extra, the class absent (its first probability was the class); with names they
    map by name as before."""
    adapter = SeldonAdapter(inputs(*IRIS), outputs("class"))
    unnamed = {"data": {"ndarray": [[0.1, 0.2, 0.7]]}}
    tensor = {"data": {"tensor": {"shape": [1, 3], "values": [0.1, 0.2, 0.7]}}}
    for response in (unnamed, tensor):
        extracted = adapter.extract(IRIS_REQUEST, response)
        assert set(extracted.columns) == set(IRIS)
        assert extracted.extra_columns == 3
    named = SeldonAdapter(inputs(*IRIS), outputs("t:2", kind="numeric"))
    extracted = named.extract(IRIS_REQUEST, IRIS_RESPONSE)
    assert plain(extracted)["t:2"] == [pytest.approx(0.9956334415074478)]
    assert extracted.extra_columns == 2


def test_names_not_configured_are_extra() -> None:
    """Output names the config lacks are counted, the configured one is kept."""
    adapter = SeldonAdapter(inputs(*IRIS), outputs("t:1", kind="numeric"))
    extracted = adapter.extract(IRIS_REQUEST, IRIS_RESPONSE)
    assert set(plain(extracted)) == {*IRIS, "t:1"}
    assert extracted.extra_columns == 2


def test_string_ndarray_with_names_is_categorical() -> None:
    """Scalar string rows with one name map to that name."""
    body = {
        "meta": {"tags": {}},
        "data": {"names": ["message"], "ndarray": ["In an attets skills"]},
    }
    adapter = SeldonAdapter(inputs("message", kind="categorical"), [])
    assert plain(adapter.extract(body, None)) == {"message": ["In an attets skills"]}


def test_batched_ndarray_pairs_rows() -> None:
    """A batch of rows pairs with a batch of answers."""
    request = {"data": {"names": ["x", "y"], "ndarray": [[1, "a"], [2, "b"], [3, "c"]]}}
    response = {"data": {"names": ["class"], "ndarray": [[0], [1], [0]]}}
    adapter = SeldonAdapter([*inputs("x"), *inputs("y", kind="categorical")], outputs("class"))
    assert plain(adapter.extract(request, response)) == {
        "x": [1, 2, 3],
        "y": ["a", "b", "c"],
        "class": [0, 1, 0],
    }


def test_integers_beyond_64_bits_in_a_tensor_are_their_floats() -> None:
    """Tensor values with an integer beyond 64 bits (JSON read exactly) are their floats, inf
    beyond float range, as the monitor reads the same numbers in an ndarray (it was
    bad_datatype); a value that is no number among them is still bad_datatype."""
    big = 123456789012345678901234567890
    values = [big, 1.5, -(2**63) - 1, 10**400]
    adapter = SeldonAdapter(inputs("a", "b"), [])
    tensor = {"data": {"tensor": {"shape": [2, 2], "values": values}}}
    ndarray = {"data": {"ndarray": [values[:2], values[2:]]}}
    expected = {"a": [float(big), -(2.0**63)], "b": [1.5, float("inf")]}
    assert plain(adapter.extract(tensor, None)) == expected
    assert plain(adapter.extract(ndarray, None)) == {"a": values[::2], "b": values[1::2]}
    tensor["data"]["tensor"]["values"] = [big, None, 1, 2]
    with pytest.raises(ProtocolError) as caught:
        adapter.extract(tensor, None)
    assert caught.value.reason == "bad_datatype"


def test_failure_status_is_error_response() -> None:
    """The wrapper's FAILURE status raises error_response."""
    with pytest.raises(ProtocolError) as caught:
        SeldonAdapter(inputs(*IRIS), []).extract(IRIS_REQUEST, FAILURE)
    assert caught.value.reason == "error_response"


def test_proto_json_failure_flag_is_error_response() -> None:
    """The enum spelled ``"FAILURE"`` (proto JSON) is an error too."""
    body = {"status": {"code": 500, "info": "boom", "status": "FAILURE"}}
    with pytest.raises(ProtocolError) as caught:
        SeldonAdapter(inputs(*IRIS), []).extract(IRIS_REQUEST, body)
    assert caught.value.reason == "error_response"


def test_success_status_is_not_an_error() -> None:
    """A SUCCESS status next to data is read normally."""
    response = {**IRIS_RESPONSE, "status": {"code": 200, "status": "SUCCESS"}}
    extracted = SeldonAdapter(inputs(*IRIS), outputs(*PROBABILITIES)).extract(
        IRIS_REQUEST, response
    )
    assert extracted.rows == 1


def test_rows_must_match() -> None:
    """Two probability rows for one request row raise row_mismatch."""
    response = {"data": {"names": ["t:0"], "ndarray": [[0.1], [0.2]]}}
    with pytest.raises(ProtocolError) as caught:
        SeldonAdapter(inputs(*IRIS), outputs("t:0")).extract(IRIS_REQUEST, response)
    assert caught.value.reason == "row_mismatch"


@pytest.mark.parametrize(
    ("request_body", "response_body", "reason"),
    [
        (["data"], None, "not_object"),
        ({"meta": {}}, None, "missing_inputs"),
        ({"jsonData": {"ndarray": [[1]]}}, None, "bad_shape"),
        ({"strData": "hello"}, None, "bad_shape"),
        ({"data": [[1, 2]]}, None, "bad_shape"),
        ({"data": {"names": ["a"]}}, None, "bad_shape"),
        ({"data": {"names": "a", "ndarray": [[1]]}}, None, "bad_shape"),
        ({"data": {"ndarray": {"a": 1}}}, None, "bad_shape"),
        ({"data": {"tftensor": {"dtype": "DT_FLOAT"}}}, None, "bad_shape"),
        ({"data": {"tensor": {"shape": [2, 2], "values": [1, 2, 3]}}}, None, "bad_shape"),
        ({"data": {"tensor": {"shape": [2], "values": ["a", "b"]}}}, None, "bad_datatype"),
        ({"data": {"tensor": {"shape": [1], "values": [[1]]}}}, None, "bad_shape"),
        ({"data": {"tensor": {"shape": "1", "values": [1]}}}, None, "bad_shape"),
        (IRIS_REQUEST, "FAILURE", "not_object"),
        (IRIS_REQUEST, {"meta": {}}, "missing_outputs"),
    ],
)
def test_garbage_raises_protocol_error_with_reason(
    request_body: Any, response_body: Any, reason: str
) -> None:
    """Wrong shapes raise ProtocolError with a bounded reason token."""
    with pytest.raises(ProtocolError) as caught:
        SeldonAdapter(inputs(*IRIS), outputs("t:0")).extract(request_body, response_body)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("", True),
        ("/api/v1.0/predictions", True),
        ("/api/v0.1/predictions", True),
        ("/predict", True),
        ("/seldon/default/iris-model/api/v1.0/predictions", True),
        ("/api/v1.0/feedback", False),
        ("/api/v1.0/metadata", False),
        ("/seldon/default/api/v1.0/predictions", False),
        ("/predictions", False),
        ("/v1/models/iris:predict", False),
    ],
)
def test_matches_prediction_routes(path: str, expected: bool) -> None:
    """Seldon's external and microservice prediction routes match, feedback does not."""
    assert SeldonAdapter(inputs("x"), []).matches(path) is expected


def test_a_message_in_a_form_json_field_is_read() -> None:
    """SeldonClient's microservice calls post the message as a form's ``json`` field; another
    content type or a form without that field is no Seldon body (ValueError: invalid_json)."""
    adapter = SeldonAdapter(inputs("a", "b"), [])
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    body = b"json=%7B%22data%22%3A+%7B%22ndarray%22%3A+%5B%5B1%2C+2%5D%5D%7D%7D"
    assert plain(adapter.extract(adapter.read_text(body, form), None)) == {"a": [1], "b": [2]}
    with pytest.raises(ValueError, match="not a form"):
        adapter.read_text(body, {"Content-Type": "text/plain"})
    with pytest.raises(ValueError, match="without a json field"):
        adapter.read_text(b"other=1", form)
