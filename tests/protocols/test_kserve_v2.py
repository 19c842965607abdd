"""Open Inference Protocol (KServe V2) adapter: named, shaped, typed tensors."""

from __future__ import annotations

import copy
import json
import struct
from typing import Any

import numpy as np
import pytest

from driftgauge.exceptions import ProtocolError
from driftgauge.protocols.kserve_v2 import KServeV2Adapter
from driftgauge.sketches.summary import to_categories

from .helpers import inputs, outputs, plain

IRIS = ("sepal_length", "sepal_width", "petal_length", "petal_width")

# KServe "Deploying Scikit-learn Models" (Open Inference Protocol), iris-input-v2.json and
# the answer the docs show: https://kserve.github.io/website/docs/model-serving/
# predictive-inference/frameworks/sklearn
IRIS_REQUEST: dict[str, Any] = {
    "inputs": [
        {
            "name": "input-0",
            "shape": [2, 4],
            "datatype": "FP32",
            "data": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]],
        }
    ]
}
IRIS_RESPONSE: dict[str, Any] = {
    "model_name": "sklearn-v2-iris",
    "model_version": None,
    "id": "1b479ed4-14ca-4b71-8a33-47a7d5c40134",
    "parameters": None,
    "outputs": [
        {"name": "output-0", "shape": [2], "datatype": "INT32", "parameters": None, "data": [1, 1]}
    ],
}
# The "Inference Request Examples" of the spec itself (inference_rest.md / required_api.md).
# As printed, input1 says shape [3] with one value and the output has 3 rows for 2 inputs.
SPEC_REQUEST: dict[str, Any] = {
    "id": "42",
    "inputs": [
        {"name": "input0", "shape": [2, 2], "datatype": "UINT32", "data": [1, 2, 3, 4]},
        {"name": "input1", "shape": [3], "datatype": "BOOL", "data": [True]},
    ],
    "outputs": [{"name": "output0"}],
}
SPEC_RESPONSE: dict[str, Any] = {
    "id": "42",
    "outputs": [
        {
            "name": "output0",
            "shape": [3, 2],
            "datatype": "FP32",
            "data": [1.0, 1.1, 2.0, 2.1, 3.0, 3.1],
        }
    ],
}
# $inference_error_response = {"error": <error message string>}
SPEC_ERROR = {"error": "unexpected datatype for input-0"}


def test_documented_iris_maps_one_wide_tensor_by_order() -> None:
    """A [2, 4] tensor named input-0 fills the four features in config order."""
    adapter = KServeV2Adapter(inputs(*IRIS), outputs("species"))
    extracted = adapter.extract(IRIS_REQUEST, IRIS_RESPONSE)
    assert extracted.rows == 2
    assert plain(extracted) == {
        "sepal_length": [pytest.approx(6.8), pytest.approx(6.0)],
        "sepal_width": [pytest.approx(2.8), pytest.approx(3.4)],
        "petal_length": [pytest.approx(4.8), pytest.approx(4.5)],
        "petal_width": [pytest.approx(1.4), pytest.approx(1.6)],
        "species": [1, 1],
    }
    assert extracted.extra_columns == 0


def test_numeric_tensors_come_back_as_numpy_columns() -> None:
    """FP tensors are float64 arrays, integer tensors integer arrays."""
    adapter = KServeV2Adapter(inputs(*IRIS), outputs("species"))
    extracted = adapter.extract(IRIS_REQUEST, IRIS_RESPONSE)
    features, species = extracted.columns["sepal_length"], extracted.columns["species"]
    assert isinstance(features, np.ndarray)
    assert isinstance(species, np.ndarray)
    assert features.dtype == np.float64
    assert species.dtype.kind == "i"


def test_flattened_data_equals_nested_data() -> None:
    """Row-major flattened data reads the same as its natural nested form."""
    adapter = KServeV2Adapter(inputs(*IRIS), [])
    flat = copy.deepcopy(IRIS_REQUEST)
    flat["inputs"][0]["data"] = [6.8, 2.8, 4.8, 1.4, 6.0, 3.4, 4.5, 1.6]
    assert plain(adapter.extract(flat, None)) == plain(adapter.extract(IRIS_REQUEST, None))


def test_spec_example_as_printed_is_bad_shape() -> None:
    """The spec's own example gives input1 one value for shape [3]: bad_shape."""
    adapter = KServeV2Adapter(inputs("a", "b", "flag"), outputs("p", "q"))
    with pytest.raises(ProtocolError) as caught:
        adapter.extract(SPEC_REQUEST, SPEC_RESPONSE)
    assert caught.value.reason == "bad_shape"


def test_spec_example_with_consistent_shapes_pairs_rows() -> None:
    """Made consistent (3 rows everywhere) the spec example maps by order across tensors."""
    request = copy.deepcopy(SPEC_REQUEST)
    request["inputs"][0].update(shape=[3, 2], data=[1, 2, 3, 4, 5, 6])
    request["inputs"][1].update(data=[True, False, True])
    adapter = KServeV2Adapter(inputs("a", "b", "flag", kind="numeric"), outputs("p", "q"))
    extracted = adapter.extract(request, SPEC_RESPONSE)
    assert plain(extracted) == {
        "a": [1, 3, 5],
        "b": [2, 4, 6],
        "flag": [True, False, True],
        "p": [1.0, 2.0, 3.0],
        "q": np.float32([1.1, 2.1, 3.1]).tolist(),  # FP32 categories stay float32 (0.1 is 0.1)
    }


def test_output_rows_must_match_input_rows() -> None:
    """The spec's 3-row output for a 2-row input raises row_mismatch."""
    request = copy.deepcopy(SPEC_REQUEST)
    del request["inputs"][1]
    adapter = KServeV2Adapter(inputs("a", "b"), outputs("p", "q"))
    with pytest.raises(ProtocolError) as caught:
        adapter.extract(request, SPEC_RESPONSE)
    assert caught.value.reason == "row_mismatch"


def test_tensors_named_after_fields_map_by_name() -> None:
    """Tensors named like configured fields fill them; [N, 1] is one column."""
    request = {
        "inputs": [
            {"name": "region", "shape": [2], "datatype": "BYTES", "data": ["north", "south"]},
            {"name": "alcohol", "shape": [2, 1], "datatype": "FP64", "data": [[12.5], [13.1]]},
            {"name": "mask", "shape": [2, 3], "datatype": "INT8", "data": [1, 1, 0, 1, 0, 0]},
        ]
    }
    adapter = KServeV2Adapter([*inputs("alcohol"), *inputs("region", kind="categorical")], [])
    extracted = adapter.extract(request, None)
    assert plain(extracted) == {"alcohol": [12.5, 13.1], "region": ["north", "south"]}
    assert isinstance(extracted.columns["region"], list)
    assert extracted.extra_columns == 3


def test_wide_tensor_named_after_a_field_is_bad_shape() -> None:
    """A configured tensor must hold one value per row."""
    request = {"inputs": [{"name": "alcohol", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]}
    with pytest.raises(ProtocolError) as caught:
        KServeV2Adapter(inputs("alcohol"), []).extract(request, None)
    assert caught.value.reason == "bad_shape"


def test_bytes_tensor_of_width_two_maps_by_order() -> None:
    """A [N, 2] BYTES tensor splits row-major into two string columns."""
    request = {
        "inputs": [
            {"name": "t", "shape": [2, 2], "datatype": "BYTES", "data": ["a", "b", "c", "d"]}
        ]
    }
    adapter = KServeV2Adapter(inputs("x", "y", kind="categorical"), [])
    assert plain(adapter.extract(request, None)) == {"x": ["a", "c"], "y": ["b", "d"]}


def test_values_past_the_last_field_are_extra() -> None:
    """By order, tensor values beyond the configured fields count as extra columns."""
    adapter = KServeV2Adapter(inputs("a", "b"), [])
    extracted = adapter.extract(IRIS_REQUEST, None)
    assert set(extracted.columns) == {"a", "b"}
    assert extracted.extra_columns == 2


# MLServer 1.x (mlserver_sklearn) answering IRIS_REQUEST with "outputs": [{"name": "predict"},
# {"name": "predict_proba"}] (recorded from a real server); a client asking only for
# predict_proba gets the second tensor alone, and one asking for both gets them in its order.
MLSERVER_PREDICT = {
    "name": "predict",
    "shape": [2, 1],
    "datatype": "INT64",
    "parameters": {"content_type": "np"},
    "data": [2, 1],
}
MLSERVER_PROBA = {
    "name": "predict_proba",
    "shape": [2, 3],
    "datatype": "FP64",
    "parameters": {"content_type": "np"},
    "data": [0.001, 0.187, 0.812, 0.012, 0.654, 0.334],
}


def mlserver_answer(*outputs: dict[str, Any]) -> dict[str, Any]:
    return {"model_name": "iris", "model_version": "v1", "id": "7ca4", "outputs": list(outputs)}


def test_an_output_wider_than_the_predictions_left_fills_none_of_them() -> None:
    """MLServer's predict_proba ([N, classes]) asked for in place of predict does not feed a
    positional prediction: its values are extra and the predictions are absent; the predict
    tensor alone, before it or after it, still fills them."""
    adapter = KServeV2Adapter(inputs(*IRIS), outputs("species"))
    proba = adapter.extract(IRIS_REQUEST, mlserver_answer(MLSERVER_PROBA))
    assert set(proba.columns) == set(IRIS)
    assert proba.extra_columns == 3
    for answer in (
        mlserver_answer(MLSERVER_PREDICT),
        mlserver_answer(MLSERVER_PREDICT, MLSERVER_PROBA),
        mlserver_answer(MLSERVER_PROBA, MLSERVER_PREDICT),
    ):
        extracted = adapter.extract(IRIS_REQUEST, answer)
        assert plain(extracted)["species"] == [2, 1]
    both = adapter.extract(IRIS_REQUEST, mlserver_answer(MLSERVER_PREDICT, MLSERVER_PROBA))
    assert both.extra_columns == 3
    three = KServeV2Adapter(inputs(*IRIS), outputs("p0", "p1", "p2", kind="numeric"))
    spread = plain(three.extract(IRIS_REQUEST, mlserver_answer(MLSERVER_PROBA)))
    assert spread == {
        **plain(proba),
        "p0": [0.001, 0.012],
        "p1": [0.187, 0.654],
        "p2": [0.812, 0.334],
    }


def test_a_scalar_tensor_is_one_row() -> None:
    """Shape [] is a scalar: one value, one row, as a [1] tensor is; by name and by order."""
    request = {
        "inputs": [
            {"name": "alcohol", "shape": [], "datatype": "FP64", "data": [13.2]},
            {"name": "region", "shape": [], "datatype": "BYTES", "data": ["north"]},
        ]
    }
    response = {"outputs": [{"name": "output-0", "shape": [], "datatype": "INT64", "data": [2]}]}
    features = [*inputs("alcohol"), *inputs("region", kind="categorical")]
    extracted = KServeV2Adapter(features, outputs("class")).extract(request, response)
    assert extracted.rows == 1
    assert plain(extracted) == {"alcohol": [13.2], "region": ["north"], "class": [2]}
    by_order = {"inputs": [{"name": "input-0", "shape": [], "datatype": "FP32", "data": [0.5]}]}
    assert plain(KServeV2Adapter(inputs("x", "y"), []).extract(by_order, None)) == {"x": [0.5]}
    batch = {"name": "ash", "shape": [2], "datatype": "FP64", "data": [2.1, 2.2]}
    one_row = {"name": "alcohol", "shape": [1], "datatype": "FP64", "data": [13.2]}
    with pytest.raises(ProtocolError) as caught:  # [1] is a batch of one row, not a scalar
        KServeV2Adapter(inputs("alcohol", "ash"), []).extract({"inputs": [one_row, batch]}, None)
    assert caught.value.reason == "row_mismatch"


def test_a_scalar_tensor_beside_a_batch_is_every_rows_value() -> None:
    """A scalar (shape []) beside [N, ...] tensors is the same value in each of the N rows, by
    name and by order, in a request or a response (it was row_mismatch); tensors of a batch
    still agree on their rows."""
    request = {
        "inputs": [
            {"name": "alcohol", "shape": [], "datatype": "FP64", "data": [13.2]},
            {"name": "ash", "shape": [3, 1], "datatype": "FP32", "data": [[2.5], [2.0], [1.5]]},
            {"name": "region", "shape": [], "datatype": "BYTES", "data": ["north"]},
            {"name": "flag", "shape": [], "datatype": "BOOL", "data": [True]},
        ]
    }
    response = {
        "outputs": [
            {"name": "version", "shape": [], "datatype": "INT64", "data": [7]},
            {"name": "class", "shape": [3], "datatype": "INT64", "data": [0, 1, 0]},
        ]
    }
    features = [*inputs("alcohol", "ash"), *inputs("region", "flag", kind="categorical")]
    extracted = KServeV2Adapter(features, outputs("class")).extract(request, response)
    assert (extracted.rows, extracted.extra_columns) == (3, 1)
    assert plain(extracted) == {
        "alcohol": [13.2, 13.2, 13.2],
        "ash": [2.5, 2.0, 1.5],
        "region": ["north", "north", "north"],
        "flag": [True, True, True],
        "class": [0, 1, 0],
    }
    by_order = {"inputs": [request["inputs"][1], request["inputs"][0]]}
    extracted = KServeV2Adapter(inputs("x", "y"), []).extract(by_order, None)
    assert plain(extracted) == {"x": [2.5, 2.0, 1.5], "y": [13.2, 13.2, 13.2]}
    empty = {"name": "ash", "shape": [0], "datatype": "FP64", "data": []}
    extracted = KServeV2Adapter(features, []).extract(
        {"inputs": [request["inputs"][0], empty]}, None
    )
    assert extracted.rows == 0
    assert plain(extracted) == {"alcohol": [], "ash": []}
    two = {"name": "flag", "shape": [2], "datatype": "BOOL", "data": [True, False]}
    with pytest.raises(ProtocolError) as caught:
        KServeV2Adapter(features, []).extract({"inputs": [*request["inputs"][:3], two]}, None)
    assert caught.value.reason == "row_mismatch"


def test_image_like_tensor_flattens_per_row() -> None:
    """A [N, 2, 2] tensor holds four values per row, mapped by order."""
    request = {
        "inputs": [
            {"name": "img", "shape": [1, 2, 2], "datatype": "UINT8", "data": [[[1, 2], [3, 4]]]}
        ]
    }
    extracted = KServeV2Adapter(inputs("p0", "p1", "p2", "p3"), []).extract(request, None)
    assert plain(extracted) == {"p0": [1], "p1": [2], "p2": [3], "p3": [4]}


def test_versioned_response_and_parameters_are_ignored() -> None:
    """Response metadata and tensor parameters do not affect the columns."""
    response = copy.deepcopy(IRIS_RESPONSE)
    response.update(model_version="v10", parameters={"content_type": "np"})
    extracted = KServeV2Adapter(inputs(*IRIS), outputs("species")).extract(IRIS_REQUEST, response)
    assert plain(extracted)["species"] == [1, 1]


def test_error_body_is_error_response() -> None:
    """``{"error": ...}`` raises error_response."""
    with pytest.raises(ProtocolError) as caught:
        KServeV2Adapter(inputs(*IRIS), []).extract(IRIS_REQUEST, SPEC_ERROR)
    assert caught.value.reason == "error_response"


def tensor(**changes: Any) -> dict[str, Any]:
    """A valid one-input request with some fields of the tensor changed."""
    base: dict[str, Any] = {"name": "x", "shape": [2], "datatype": "FP32", "data": [1.0, 2.0]}
    base.update(changes)
    return {"inputs": [base]}


@pytest.mark.parametrize(
    ("request_body", "reason"),
    [
        ([], "not_object"),
        ({"id": "1"}, "missing_inputs"),
        ({"inputs": []}, "bad_shape"),
        ({"inputs": {"x": [1]}}, "bad_shape"),
        ({"inputs": [[1, 2]]}, "bad_shape"),
        (tensor(name=None), "bad_shape"),
        (tensor(shape=[]), "bad_shape"),  # a scalar holds one value, not two
        (tensor(shape=[-1]), "bad_shape"),
        (tensor(shape=[2.0]), "bad_shape"),
        (tensor(shape=[3]), "bad_shape"),
        (tensor(data="AAAA"), "bad_shape"),
        (tensor(data=[[1.0], [2.0, 3.0]]), "bad_shape"),
        (tensor(datatype="FLOAT"), "bad_datatype"),
        (tensor(datatype=None), "bad_datatype"),
        (tensor(data=["a", "b"]), "bad_datatype"),
        (tensor(datatype="BYTES"), "bad_datatype"),
        (tensor(datatype="BOOL", data=[2, 3]), "bad_datatype"),
        (tensor(data=[None, 1.0]), "bad_datatype"),
        (
            {"inputs": [tensor()["inputs"][0], tensor(shape=[1], data=[1.0])["inputs"][0]]},
            "bad_shape",
        ),
        (
            {
                "inputs": [
                    tensor()["inputs"][0],
                    tensor(name="y", shape=[1], data=[1.0])["inputs"][0],
                ]
            },
            "row_mismatch",
        ),
    ],
)
def test_garbage_requests_raise_protocol_error_with_reason(request_body: Any, reason: str) -> None:
    """Malformed requests raise ProtocolError with the right reason token."""
    with pytest.raises(ProtocolError) as caught:
        KServeV2Adapter(inputs("x"), []).extract(request_body, None)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("response_body", "reason"),
    [
        ("ok", "not_object"),
        ({"model_name": "m"}, "missing_outputs"),
        ({"outputs": [{"name": "y", "shape": [2], "datatype": "FP32"}]}, "bad_shape"),
    ],
)
def test_garbage_responses_raise_protocol_error_with_reason(
    response_body: Any, reason: str
) -> None:
    """Malformed responses raise ProtocolError with the right reason token."""
    with pytest.raises(ProtocolError) as caught:
        KServeV2Adapter(inputs("x"), outputs("y")).extract(tensor(), response_body)
    assert caught.value.reason == reason


def test_bool_tensor_accepts_zero_one_integers() -> None:
    """BOOL data spelled 0/1 is coerced to booleans."""
    extracted = KServeV2Adapter(inputs("x"), []).extract(tensor(datatype="BOOL", data=[1, 0]), None)
    assert plain(extracted) == {"x": [True, False]}


def test_empty_batch_is_zero_rows() -> None:
    """A [0, 4] tensor is a batch of zero rows."""
    request = {"inputs": [{"name": "input-0", "shape": [0, 4], "datatype": "FP32", "data": []}]}
    extracted = KServeV2Adapter(inputs(*IRIS), []).extract(request, None)
    assert extracted.rows == 0
    assert all(len(column) == 0 for column in extracted.columns.values())


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("", True),
        ("/v2/models/sklearn-v2-iris/infer", True),
        ("/v2/models/my_model/versions/v10/infer", True),
        ("/v2/models/my_model/versions/3/infer", True),
        ("/v2/models/my_model/ready", False),
        ("/v2/models/my_model", False),
        ("/v2/health/ready", False),
        ("/v2/models/my_model/versions/infer", False),
        ("/v1/models/my_model:predict", False),
    ],
)
def test_matches_infer_routes_with_optional_version(path: str, expected: bool) -> None:
    """``/v2/models/<name>[/versions/<v>]/infer`` is the only inference route."""
    assert KServeV2Adapter(inputs("x"), []).matches(path) is expected


def _binary(head: dict[str, Any], *tensors: bytes) -> tuple[bytes, dict[str, str]]:
    """A binary tensor data extension body and its header: the JSON head, then the tensors."""
    encoded = json.dumps(head).encode()
    return encoded + b"".join(tensors), {"Inference-Header-Content-Length": str(len(encoded))}


def test_binary_tensor_data_reads_as_its_json_spelling() -> None:
    """Binary FP32, BOOL and BYTES tensors (Triton's extension) give the columns JSON data gives;
    a BYTES tensor of bytes that are no text (an image) does not lose the request."""
    fp32 = np.array([[6.8, 2.8], [6.0, 3.4]], "<f4").tobytes()
    flags = bytes([1, 0])
    texts = b"".join(struct.pack("<I", len(t)) + t for t in (b"north", b"na\xc3\xafve"))
    image = b"".join(struct.pack("<I", 4) + b"\x89PNG" for _ in range(2))  # bytes, not text
    head = {
        "inputs": [
            {"name": "input-0", "shape": [2, 2], "datatype": "FP32"},
            {"name": "input-1", "shape": [2], "datatype": "BOOL"},
            {"name": "input-2", "shape": [2, 1], "datatype": "BYTES"},
            {"name": "input-3", "shape": [2], "datatype": "BYTES"},
        ]
    }
    for tensor, data in zip(head["inputs"], (fp32, flags, texts, image), strict=True):
        tensor["parameters"] = {"binary_data_size": len(data)}
    body, headers = _binary(head, fp32, flags, texts, image)
    adapter = KServeV2Adapter(inputs("a", "b") + inputs("c", "d", kind="categorical"), [])
    extracted = adapter.extract(adapter.read_text(body, headers), None)
    assert extracted.extra_columns == 1  # the image
    assert plain(extracted) == {
        "a": pytest.approx([6.8, 6.0]),
        "b": pytest.approx([2.8, 3.4]),
        "c": [True, False],
        "d": ["north", "naïve"],
    }
    answer = {"outputs": [{"name": "y", "shape": [2], "datatype": "INT64"}]}
    answer["outputs"][0]["parameters"] = {"binary_data_size": 16}
    body, headers = _binary(answer, np.array([3, 4], "<i8").tobytes())
    response = adapter.read_response_text(
        body, {"inference-header-content-length": headers["Inference-Header-Content-Length"]}
    )
    assert response["outputs"][0]["data"].tolist() == [3, 4]


def test_binary_tensor_data_cut_short_is_bad_shape_and_no_header_is_not_json() -> None:
    """Binary data shorter than its binary_data_size is bad_shape, with the header or without;
    JSON followed by bytes that no tensor declares is no format of the protocol (counted
    invalid_json)."""
    head = {"inputs": [{"name": "x", "shape": [2], "datatype": "FP64"}]}
    head["inputs"][0]["parameters"] = {"binary_data_size": 16}
    body, headers = _binary(head, b"\0" * 8)
    adapter = KServeV2Adapter(inputs("x"), [])
    for given in (headers, {}):
        with pytest.raises(ProtocolError) as caught:
            adapter.read_text(body, given)
        assert caught.value.reason == "bad_shape"
    plain_head = {"inputs": [{"name": "x", "shape": [2], "datatype": "FP64", "data": [1, 2]}]}
    for trailing in (b"\0" * 16, b"}", b""):
        with pytest.raises(ValueError, match="binary tensor data"):
            adapter.read_text(json.dumps(plain_head).encode() + trailing, {})
    for garbage in (b"\x89PNG\r\n", b"", b" {}", b'{"inputs": ['):
        with pytest.raises(ValueError, match="binary tensor data"):
            adapter.read_text(garbage, {})


def test_binary_tensor_data_without_its_header_is_read_as_kserves_logger_sends_it() -> None:
    """KServe's payload logger sends a binary tensor body as the model got it but without its
    Inference-Header-Content-Length: the JSON head (non-ASCII names included) is read where it
    ends, and the tensors after it give the columns the header gives (it was invalid_json)."""
    x = np.array([1.5, -2.25, 3.0], "<f8").tobytes()
    names = np.array([7, 8, 9], "<i4").tobytes()
    head = {
        "id": 'a}b"{',
        "inputs": [
            {"name": "x", "shape": [3], "datatype": "FP64"},
            {"name": "naïve", "shape": [3], "datatype": "INT32"},
        ],
    }
    head["inputs"][0]["parameters"] = {"binary_data_size": len(x)}
    head["inputs"][1]["parameters"] = {"binary_data_size": len(names)}
    body, headers = _binary(head, x, names)
    adapter = KServeV2Adapter(inputs("x", "naïve"), [])
    expected = plain(adapter.extract(adapter.read_text(body, headers), None))
    assert plain(adapter.extract(adapter.read_text(body, {}), None)) == expected
    assert expected == {"x": [1.5, -2.25, 3.0], "naïve": [7, 8, 9]}


def test_a_category_in_an_fp32_tensor_is_its_float32_value() -> None:
    """A code sent as FP32 (JSON as numpy clients write it, binary, or by position) is the
    category the training file's 0.1 names, not 0.10000000149011612; so is FP64 holding it."""
    codes = np.array([0.1, 2.5, 7.0, 1e10], "<f4")
    adapter = KServeV2Adapter(inputs("code", kind="categorical") + inputs("x"), [])
    named = {
        "inputs": [
            {"name": "code", "shape": [4], "datatype": "FP32", "data": codes.tolist()},
            {"name": "x", "shape": [4], "datatype": "FP32", "data": [1, 2, 3, 4]},
        ]
    }
    positional = {
        "inputs": [
            {
                "name": "input-0",
                "shape": [4, 2],
                "datatype": "FP32",
                "data": np.column_stack([codes, codes]).tolist(),
            }
        ]
    }
    head = {"inputs": [{"name": "code", "shape": [4], "datatype": "FP32"}]}
    head["inputs"][0]["parameters"] = {"binary_data_size": 16}
    body, headers = _binary(head, codes.tobytes())
    for request in (named, positional, adapter.read_text(body, headers)):
        spelled, _ = to_categories(adapter.extract(request, None).columns["code"])
        assert spelled.tolist() == ["0.1", "2.5", "7", "10000000000"]
    # FP64 carrying the float32 values (a float32 column widened on its way) reads the same;
    # a float64 that is no float32 keeps its digits.
    named["inputs"][0]["datatype"] = "FP64"
    spelled, _ = to_categories(adapter.extract(named, None).columns["code"])
    assert spelled.tolist() == ["0.1", "2.5", "7", "10000000000"]
    named["inputs"][0]["data"] = [0.10000000000000002, 0.1, 2.5, 7.0]
    spelled, _ = to_categories(adapter.extract(named, None).columns["code"])
    assert spelled.tolist() == ["0.10000000000000002", "0.1", "2.5", "7"]


def test_bf16_tensors_read_in_json_and_binary_as_their_float32_values() -> None:
    """Triton's BF16 (a float32's upper 16 bits) reads as JSON numbers and as binary data, two
    little-endian bytes a value, each the float32 it is exactly (it was bad_datatype)."""
    rng = np.random.default_rng(5)
    wide = np.concatenate(
        [rng.normal(0, 1e3, 60), [0.0, -0.0, 1.5, -2.0, 3e38, np.inf, -np.inf, np.nan]]
    )
    upper = (wide.astype("<f4").view("<u4") >> 16).astype("<u2")  # what Triton sends
    expected = (upper.astype("<u4") << 16).view("<f4").astype(np.float64)  # numpy's reading
    rows = len(upper) // 2
    head = {"inputs": [{"name": "input-0", "shape": [rows, 2], "datatype": "BF16"}]}
    head["inputs"][0]["parameters"] = {"binary_data_size": upper[: rows * 2].nbytes}
    body, headers = _binary(head, upper[: rows * 2].tobytes())
    adapter = KServeV2Adapter(inputs("a", "b"), outputs("y", kind="numeric"))
    request = adapter.read_text(body, headers)
    answer = {"outputs": [{"name": "y", "shape": [rows], "datatype": "BF16"}]}
    answer["outputs"][0]["parameters"] = {"binary_data_size": rows * 2}
    body, headers = _binary(answer, upper[1 : rows * 2 : 2].tobytes())
    extracted = adapter.extract(request, adapter.read_response_text(body, headers))
    columns = extracted.columns
    assert extracted.rows == rows
    np.testing.assert_array_equal(columns["a"], expected[: rows * 2 : 2])
    np.testing.assert_array_equal(columns["b"], expected[1 : rows * 2 : 2])
    np.testing.assert_array_equal(columns["y"], expected[1 : rows * 2 : 2])
    assert columns["a"].dtype == np.float64
    as_json = {
        "inputs": [
            {
                "name": "input-0",
                "shape": [2, 2],
                "datatype": "BF16",
                "data": [1.5, -0.25, 3.0, 0.1000976562],
            }
        ]
    }
    assert plain(adapter.extract(as_json, None)) == {"a": [1.5, 3.0], "b": [-0.25, 0.1000976562]}


def test_integers_beyond_64_bits_in_a_tensor_are_their_floats() -> None:
    """JSON integers beyond 64 bits in a numeric tensor (read exactly, as Python ints numpy holds
    only as objects) are their floats, and beyond float range inf, as the other protocols read
    them (it was bad_datatype)."""
    big = 123456789012345678901234567890
    request = {
        "inputs": [
            {"name": "a", "shape": [3], "datatype": "INT64", "data": [2**64, -(2**63) - 1, 1]},
            {"name": "b", "shape": [3, 1], "datatype": "FP64", "data": [[big], [1.5], [10**400]]},
        ]
    }
    extracted = KServeV2Adapter(inputs("a", "b"), []).extract(request, None)
    assert extracted.columns["b"].dtype == np.float64
    assert plain(extracted) == {
        "a": [2.0**64, -(2.0**63), 1.0],
        "b": [float(big), 1.5, np.inf],
    }
    request["inputs"][0]["data"][2] = "1"
    with pytest.raises(ProtocolError) as caught:
        KServeV2Adapter(inputs("a", "b"), []).extract(request, None)
    assert caught.value.reason == "bad_datatype"


def test_a_bf16_category_is_one_spelling_in_json_and_in_binary_data() -> None:
    """A categorical BF16 tensor: the JSON number 0.1 (or 0.1001, which Triton stores as the same
    bfloat16) and the bfloat16 0.10009765625 in binary data are one category, spelled as the
    bfloat16's own shortest text (0.1), as a float32 category is its own (0.1, not 0.10000000149)."""
    adapter = KServeV2Adapter(inputs("code", kind="categorical"), [])
    sent = [0.1, 2.5, 7.0, 1e10, -0.3, 300.0, 1.0 / 3.0]
    spellings = ["0.1", "2.5", "7", "10000000000", "-0.3", "300", "0.334"]
    wide = np.asarray(sent, "<f4").view("<u4")
    upper = ((wide + 0x7FFF + ((wide >> 16) & 1)) >> 16).astype("<u2")  # rounded, as torch does
    head = {"inputs": [{"name": "code", "shape": [len(sent)], "datatype": "BF16"}]}
    head["inputs"][0]["parameters"] = {"binary_data_size": upper.nbytes}
    body, headers = _binary(head, upper.tobytes())
    exact = (upper.astype("<u4") << 16).view("<f4").astype(np.float64).tolist()
    for data in (sent, exact, [0.1001, 2.501, 7.01, 1.0001e10, -0.3001, 300.1, 0.3333]):
        as_json = {"inputs": [{"name": "code", "shape": [len(data)], "datatype": "BF16"}]}
        as_json["inputs"][0]["data"] = data
        spelled, _ = to_categories(adapter.extract(as_json, None).columns["code"])
        assert spelled.tolist() == spellings, data
    spelled, _ = to_categories(
        adapter.extract(adapter.read_text(body, headers), None).columns["code"]
    )
    assert spelled.tolist() == spellings
