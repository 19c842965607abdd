"""Generic JSONPath adapter: the path subset, row counting, and missing fields."""

from __future__ import annotations

from typing import Any

import pytest

from driftgauge.config import FieldSpec
from driftgauge.exceptions import ProtocolError
from driftgauge.protocols import make_adapter
from driftgauge.protocols.jsonpath import JsonPath, JsonPathAdapter, compile_path, evaluate

from .helpers import plain


def field(name: str, path: str | None, role: str = "input") -> FieldSpec:
    """A numeric field with a path."""
    return FieldSpec(
        name=name, type="numeric", role="input" if role == "input" else "prediction", path=path
    )


def adapter(features: dict[str, str], predictions: dict[str, str] | None = None) -> JsonPathAdapter:
    """An adapter from name → path tables."""
    return JsonPathAdapter(
        [field(name, path) for name, path in features.items()],
        [field(name, path, "prediction") for name, path in (predictions or {}).items()],
    )


@pytest.mark.parametrize(
    ("path", "compiled"),
    [
        ("$", JsonPath("$", ())),
        ("$.a.b", JsonPath("$.a.b", ("a", "b"))),
        ("$.a[0]", JsonPath("$.a[0]", ("a", 0))),
        ("$.a[-1]", JsonPath("$.a[-1]", ("a", -1))),
        ("$.rows[*].x", JsonPath("$.rows[*].x", ("rows",), ("x",))),
        ("$.rows[*].naïve", JsonPath("$.rows[*].naïve", ("rows",), ("naïve",))),
        ("$[*]", JsonPath("$[*]", (), ())),
        ("$['key with space']", JsonPath("$['key with space']", ("key with space",))),
        ('$["it\'s"].v', JsonPath('$["it\'s"].v', ("it's", "v"))),
        ("$['a\\'b']", JsonPath("$['a\\'b']", ("a'b",))),
        ("$.data-set._x1", JsonPath("$.data-set._x1", ("data-set", "_x1"))),
    ],
)
def test_compile_supported_subset(path: str, compiled: JsonPath) -> None:
    """Every documented form compiles to its steps."""
    assert compile_path(path) == compiled


@pytest.mark.parametrize(
    "path",
    [
        "",
        "a.b",
        "$.",
        "$..a",
        "$.a[*][*]",
        "$.a[",
        "$.a[x]",
        "$['open",
        "$['a'",
        "$.a.*",
        "$[0:2]",
        "$ .a",
        "$.1a",
    ],
)
def test_invalid_paths_raise_value_error_naming_the_path(path: str) -> None:
    """Unsupported or malformed syntax is a ValueError that quotes the path."""
    with pytest.raises(ValueError, match="invalid JSONPath") as caught:
        compile_path(path)
    assert repr(path) in str(caught.value)


def test_make_adapter_surfaces_a_bad_path() -> None:
    """Config validation sees a bad path through make_adapter."""
    with pytest.raises(ValueError, match=r"\$\.a\[\*\]\[\*\]"):
        make_adapter("jsonpath", [field("x", "$.a[*][*]")], [])


def test_field_without_path_is_value_error() -> None:
    """The jsonpath protocol needs a path on every field."""
    with pytest.raises(ValueError, match="has no path"):
        JsonPathAdapter([field("x", None)], [])


def test_wildcard_paths_give_one_row_per_element() -> None:
    """``[*]`` paths yield one value per batch element, paired by index."""
    extracted = adapter(
        {"age": "$.batch[*].age", "city": "$.batch[*]['home city']"},
        {"score": "$.results[*].score"},
    ).extract(
        {"batch": [{"age": 31, "home city": "Oslo"}, {"age": 45, "home city": "Lima"}]},
        {"results": [{"score": 0.2}, {"score": 0.9}]},
    )
    assert extracted.rows == 2
    assert plain(extracted) == {"age": [31, 45], "city": ["Oslo", "Lima"], "score": [0.2, 0.9]}
    assert extracted.extra_columns == 0


def test_paths_without_wildcard_give_one_row() -> None:
    """Plain paths select one value each: a single row."""
    extracted = adapter({"a": "$.x.y", "b": "$.list[1]"}, {"p": "$.out"}).extract(
        {"x": {"y": 3}, "list": [1, 2]}, {"out": "yes"}
    )
    assert extracted.rows == 1
    assert plain(extracted) == {"a": [3], "b": [2], "p": ["yes"]}


def test_wildcard_over_scalars_is_a_numeric_column() -> None:
    """``$.values[*]`` over numbers is one column (numpy fast path)."""
    extracted = adapter({"v": "$.values[*]"}).extract({"values": [1.5, 2.5, 3.5]}, None)
    assert plain(extracted) == {"v": [1.5, 2.5, 3.5]}


def test_unresolved_path_leaves_the_field_out() -> None:
    """A member that is not there leaves its field absent, others still read."""
    extracted = adapter({"a": "$.a", "b": "$.b.c", "c": "$.list[5]"}).extract(
        {"a": 1, "b": 2, "list": []}, None
    )
    assert plain(extracted) == {"a": [1]}


def test_element_missing_the_tail_is_none_for_that_row() -> None:
    """Inside ``[*]`` an element without the member gives None in that row."""
    extracted = adapter({"a": "$.rows[*].a"}).extract(
        {"rows": [{"a": 1}, {"b": 2}, {"a": 3}]}, None
    )
    assert plain(extracted) == {"a": [1, None, 3]}


def test_elements_missing_the_tail_are_absent_and_a_null_is_not() -> None:
    """The rows where a ``[*]`` path does not resolve lack the field (counted absent)."""
    extracted = adapter(
        {"a": "$.rows[*].a", "b": "$.rows[*].b"}, {"p": "$.out[*].p", "q": "$.out[*].q"}
    ).extract(
        {"rows": [{"a": 1}, {"b": 2}, {"a": None}, 4]},
        {"out": [{"p": 1}, {"p": None}, {}, {"p": 2}]},
    )
    assert extracted.absent == {"a": 2, "b": 3, "p": 1}


def test_fields_disagreeing_on_rows_is_row_mismatch() -> None:
    """A single value is not broadcast against a batch."""
    with pytest.raises(ProtocolError) as caught:
        adapter({"a": "$.rows[*]", "b": "$.b"}).extract({"rows": [1, 2], "b": 3}, None)
    assert caught.value.reason == "row_mismatch"


def test_prediction_rows_must_match_feature_rows() -> None:
    """Three predictions for two rows raise row_mismatch."""
    with pytest.raises(ProtocolError) as caught:
        adapter({"a": "$.rows[*]"}, {"p": "$.p[*]"}).extract({"rows": [1, 2]}, {"p": [1, 2, 3]})
    assert caught.value.reason == "row_mismatch"


def test_nothing_resolving_is_missing_inputs() -> None:
    """A body where no configured path resolves raises missing_inputs."""
    with pytest.raises(ProtocolError) as caught:
        adapter({"a": "$.a"}).extract({"b": 1}, None)
    assert caught.value.reason == "missing_inputs"


def test_error_object_without_predictions_is_error_response() -> None:
    """An ``error`` member where no prediction path resolves raises error_response."""
    with pytest.raises(ProtocolError) as caught:
        adapter({"a": "$.a"}, {"p": "$.p"}).extract({"a": 1}, {"error": "model crashed"})
    assert caught.value.reason == "error_response"


def test_response_none_reads_features_only() -> None:
    """Without a response only feature paths are evaluated."""
    extracted = adapter({"a": "$.a"}, {"p": "$.p"}).extract({"a": 1}, None)
    assert plain(extracted) == {"a": [1]}


@pytest.mark.parametrize(
    "body",
    [{"a": [1, 2]}, {"a": {"b": 1}}, {"rows": [{"a": [1, 2]}]}],
)
def test_non_scalar_value_is_bad_shape(body: Any) -> None:
    """A path landing on an array or object (not one value) raises bad_shape."""
    with pytest.raises(ProtocolError) as caught:
        adapter({"a": "$.a", "r": "$.rows[*].a"}).extract(body, None)
    assert caught.value.reason == "bad_shape"


def test_single_element_list_is_squeezed() -> None:
    """``[x]`` where a scalar is expected reads as ``x``."""
    extracted = adapter({"a": "$.a"}).extract({"a": [[7]]}, None)
    assert plain(extracted) == {"a": [7]}


def test_whole_scalar_body() -> None:
    """``$`` on a scalar body is one row with that value."""
    assert plain(adapter({"a": "$"}).extract(42, None)) == {"a": [42]}


@pytest.mark.parametrize("path", ["", "/predict", "/anything/at/all", "/v2/models/m/infer"])
def test_matches_every_route(path: str) -> None:
    """A generic adapter cannot tell prediction routes apart: every path matches."""
    assert adapter({"a": "$.a"}).matches(path)


def test_categorical_paths_keep_json_types() -> None:
    """A categorical ``[*]`` column of numbers keeps 2 and 2.0 apart."""
    spec = FieldSpec(name="zone", type="categorical", role="input", path="$.zones[*]")
    extracted = JsonPathAdapter([spec], []).extract({"zones": [2, 2.0]}, None)
    assert extracted.columns["zone"] == [2, 2.0]
    assert [type(value) for value in extracted.columns["zone"]] == [int, float]


def test_evaluate_is_public_for_other_modules() -> None:
    """``evaluate`` reads one compiled path (feedback ids use it); exact by default."""
    ids = evaluate(compile_path("$.instances[*].id"), {"instances": [{"id": 7}, {"x": 1}]}, "id")
    assert ids == [7, None]
    assert evaluate(compile_path("$.nothing"), {}, "id") is None
