"""KServe V1 adapter: ``{"instances": [...]}`` → ``{"predictions": [...]}``."""

from __future__ import annotations

from typing import Any

import pytest

from driftgauge.exceptions import ProtocolError
from driftgauge.protocols.kserve_v1 import KServeV1Adapter

from .helpers import assert_well_formed, inputs, outputs, plain

IRIS = ("sepal_length", "sepal_width", "petal_length", "petal_width")

# KServe "Deploy Your First Predictive Inference Service" (sklearn-iris):
# https://kserve.github.io/website/docs/getting-started/predictive-first-isvc
DOC_REQUEST = {"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}
DOC_RESPONSE = {"predictions": [1, 1]}
# kserve/kserve python/kserve/kserve/errors.py: handlers answer {"error": str(exc)}.
DOC_ERROR = {"error": "Model with name sklearn-iris does not exist."}


@pytest.fixture
def adapter() -> KServeV1Adapter:
    return KServeV1Adapter(inputs(*IRIS), outputs("species"))


def test_documented_batch_maps_list_rows_by_order(adapter: KServeV1Adapter) -> None:
    """The docs' two iris rows map onto the four features in config order."""
    extracted = adapter.extract(DOC_REQUEST, DOC_RESPONSE)
    assert extracted.rows == 2
    assert plain(extracted) == {
        "sepal_length": [6.8, 6.0],
        "sepal_width": [2.8, 3.4],
        "petal_length": [4.8, 4.5],
        "petal_width": [1.4, 1.6],
        "species": [1, 1],
    }
    assert extracted.extra_columns == 0


def test_single_instance_is_one_row(adapter: KServeV1Adapter) -> None:
    """One instance with one prediction gives one row."""
    extracted = adapter.extract({"instances": [[6.8, 2.8, 4.8, 1.4]]}, {"predictions": [2]})
    assert extracted.rows == 1
    assert plain(extracted)["species"] == [2]


def test_object_rows_map_by_name_and_count_unknown_keys(adapter: KServeV1Adapter) -> None:
    """Object instances map by key; keys outside the config count once each as extra."""
    request = {
        "instances": [
            {"petal_width": 0.2, "sepal_length": 5.1, "colour": "blue"},
            {"sepal_length": 4.9, "petal_width": 0.3, "colour": "red", "site": 3},
        ]
    }
    extracted = adapter.extract(request, None)
    assert plain(extracted) == {"sepal_length": [5.1, 4.9], "petal_width": [0.2, 0.3]}
    assert extracted.extra_columns == 2


def test_key_missing_in_some_rows_is_none_there(adapter: KServeV1Adapter) -> None:
    """A field present in only some object rows is None in the others."""
    request = {"instances": [{"sepal_length": 5.1}, {"petal_width": 0.3}]}
    assert plain(adapter.extract(request, None)) == {
        "sepal_length": [5.1, None],
        "petal_width": [None, 0.3],
    }


def test_scalar_instances_are_the_first_feature() -> None:
    """Scalar instances are values of the single (first) configured feature."""
    adapter = KServeV1Adapter(inputs("text", kind="categorical"), outputs("label"))
    extracted = adapter.extract({"instances": ["good", "bad"]}, {"predictions": ["pos", "neg"]})
    assert plain(extracted) == {"text": ["good", "bad"], "label": ["pos", "neg"]}


def test_longer_list_rows_count_extra_positions(adapter: KServeV1Adapter) -> None:
    """Values past the last configured feature count as extra columns."""
    extracted = adapter.extract({"instances": [[1, 2, 3, 4, 5, 6]]}, None)
    assert extracted.extra_columns == 2
    assert len(extracted.columns) == 4


def test_shorter_list_rows_leave_later_features_out(adapter: KServeV1Adapter) -> None:
    """Features past the end of every row are absent, not padded."""
    extracted = adapter.extract({"instances": [[1, 2]]}, None)
    assert set(extracted.columns) == {"sepal_length", "sepal_width"}


def test_list_predictions_map_by_order_onto_predictions() -> None:
    """A list per prediction maps by position onto the configured predictions."""
    adapter = KServeV1Adapter(inputs("x"), outputs("p_no", "p_yes", kind="numeric"))
    extracted = adapter.extract({"instances": [1, 2]}, {"predictions": [[0.9, 0.1], [0.2, 0.8]]})
    assert plain(extracted) == {"x": [1, 2], "p_no": [0.9, 0.2], "p_yes": [0.1, 0.8]}


def test_probability_rows_wider_than_the_predictions_fill_none_of_them() -> None:
    """KServe's sklearn server with PREDICT_PROBA=true answers a list of class probabilities per
    row: with one configured class they are other outputs, all extra, the class absent (its first
    probability was read as the class); three numeric predictions still take them by position,
    and a row no wider than the predictions still fills them."""
    proba = {"predictions": [[0.9, 0.05, 0.05], [0.1, 0.7, 0.2]]}
    extracted = KServeV1Adapter(inputs(*IRIS), outputs("species")).extract(DOC_REQUEST, proba)
    assert set(extracted.columns) == set(IRIS)
    assert extracted.extra_columns == 3
    three = KServeV1Adapter(inputs(*IRIS), outputs("p0", "p1", "p2", kind="numeric"))
    spread = plain(three.extract(DOC_REQUEST, proba))
    assert (spread["p0"], spread["p2"]) == ([0.9, 0.1], [0.05, 0.2])
    ragged = {"predictions": [["setosa"], ["setosa", 0.7, 0.2]]}
    extracted = KServeV1Adapter(inputs(*IRIS), outputs("species")).extract(DOC_REQUEST, ragged)
    assert plain(extracted)["species"] == ["setosa", None]
    assert (extracted.absent, extracted.extra_columns) == ({"species": 1}, 3)
    mixed = {"predictions": [["setosa", 0.9], ["virginica", 0.7]]}
    extracted = KServeV1Adapter(inputs(*IRIS), outputs("species")).extract(DOC_REQUEST, mixed)
    assert ("species" in extracted.columns, extracted.extra_columns) == (False, 2)


def test_object_predictions_map_by_name() -> None:
    """An object per prediction maps by name; unknown output names are extra."""
    adapter = KServeV1Adapter(inputs("x"), outputs("label"))
    response = {"predictions": [{"label": "a", "score": 0.5}, {"label": "b", "score": 0.7}]}
    extracted = adapter.extract({"instances": [1, 2]}, response)
    assert plain(extracted)["label"] == ["a", "b"]
    assert extracted.extra_columns == 1


def test_missing_response_gives_features_only(adapter: KServeV1Adapter) -> None:
    """Without a response only the feature columns come back."""
    extracted = adapter.extract(DOC_REQUEST, None)
    assert "species" not in extracted.columns
    assert extracted.rows == 2


def test_inputs_key_is_read_like_instances(adapter: KServeV1Adapter) -> None:
    """The V1 docs also allow ``{"inputs": []}`` as the request payload."""
    extracted = adapter.extract({"inputs": DOC_REQUEST["instances"]}, DOC_RESPONSE)
    assert extracted.rows == 2


def test_error_body_is_error_response(adapter: KServeV1Adapter) -> None:
    """The server's ``{"error": ...}`` body raises error_response without echoing it."""
    with pytest.raises(ProtocolError) as caught:
        adapter.extract(DOC_REQUEST, DOC_ERROR)
    assert caught.value.reason == "error_response"
    assert "sklearn-iris" not in str(caught.value)


def test_more_predictions_than_instances_is_row_mismatch(adapter: KServeV1Adapter) -> None:
    """A prediction count unlike the instance count raises row_mismatch."""
    with pytest.raises(ProtocolError) as caught:
        adapter.extract(DOC_REQUEST, {"predictions": [1, 1, 1]})
    assert caught.value.reason == "row_mismatch"


@pytest.mark.parametrize(
    ("request_body", "response_body", "reason"),
    [
        ([1, 2], None, "not_object"),
        ({"signature_name": "x"}, None, "missing_inputs"),
        ({"instances": {"a": 1}}, None, "bad_shape"),
        ({"instances": [1], "inputs": [1]}, None, "bad_shape"),
        ({"instances": [[[1, 2], {"b64": "eA=="}]]}, None, "bad_shape"),
        ({"instances": [{"sepal_length": [1, 2]}]}, None, "bad_shape"),
        (DOC_REQUEST, "text", "not_object"),
        (DOC_REQUEST, {"outputs": [1, 1]}, "missing_outputs"),
        (DOC_REQUEST, {"predictions": 1}, "bad_shape"),
    ],
)
def test_garbage_raises_protocol_error_with_reason(
    adapter: KServeV1Adapter, request_body: Any, response_body: Any, reason: str
) -> None:
    """Wrong shapes raise ProtocolError with a bounded reason token."""
    with pytest.raises(ProtocolError) as caught:
        adapter.extract(request_body, response_body)
    assert caught.value.reason == reason


def test_message_never_quotes_values(adapter: KServeV1Adapter) -> None:
    """A bad value is described by type, not echoed."""
    with pytest.raises(ProtocolError) as caught:
        adapter.extract({"instances": [{"sepal_length": {"secret": "4111-1111"}}]}, None)
    assert "4111" not in str(caught.value)
    assert "\n" not in str(caught.value)


def test_empty_batch_is_zero_rows(adapter: KServeV1Adapter) -> None:
    """An empty instances list is a valid batch of zero rows."""
    extracted = adapter.extract({"instances": []}, {"predictions": []})
    assert extracted.rows == 0
    assert_well_formed(extracted, set(IRIS) | {"species"})


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("", True),
        ("/v1/models/sklearn-iris:predict", True),
        ("/v1/models/my.model_2:predict", True),
        ("/v1/models/sklearn-iris:explain", False),
        ("/v1/models/sklearn-iris/versions/2:predict", False),
        ("/v1/models/sklearn-iris", False),
        ("/v2/models/sklearn-iris/infer", False),
        ("/v1/models/:predict", False),
        ("/invocations", False),
    ],
)
def test_matches_only_predict_routes(adapter: KServeV1Adapter, path: str, expected: bool) -> None:
    """Only ``/v1/models/<name>:predict`` (or an unknown path) is a KServe V1 route."""
    assert adapter.matches(path) is expected


def test_categorical_number_reads_the_same_from_list_and_object_rows() -> None:
    """Zone 2 is the int 2 whether the row is a numeric list or an object."""
    adapter = KServeV1Adapter([*inputs("alcohol"), *inputs("zone", kind="categorical")], [])
    as_list = plain(adapter.extract({"instances": [[12.5, 2]]}, None))
    as_object = plain(adapter.extract({"instances": [{"alcohol": 12.5, "zone": 2}]}, None))
    assert as_list == as_object == {"alcohol": [12.5], "zone": [2]}
    assert type(as_list["zone"][0]) is type(as_object["zone"][0]) is int
