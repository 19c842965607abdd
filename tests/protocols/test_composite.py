"""Several protocols on one sidecar: ``protocol: kserve`` and protocol lists."""

from __future__ import annotations

import re
from itertools import combinations
from typing import Any, get_args

import pytest

from driftgauge.config import FieldSpec, ProtocolList, ProtocolName
from driftgauge.config.protocols import ANY_ROUTE, PROTOCOL_ROUTES
from driftgauge.exceptions import ProtocolError
from driftgauge.protocols import (
    CompositeAdapter,
    KServeAdapter,
    KServeV1Adapter,
    KServeV2Adapter,
    MLflowAdapter,
    make_adapter,
)

from .helpers import inputs, outputs, plain

ROWS = [[13.1, 2.4, "north"], [12.2, 2.1, "south"], [14.0, 2.7, "east"]]
LABELS = ["a", "b", "a"]
V1 = ({"instances": ROWS}, {"predictions": LABELS})
V2 = (
    {
        "inputs": [
            {"name": "alcohol", "shape": [3], "datatype": "FP64", "data": [r[0] for r in ROWS]},
            {"name": "ash", "shape": [3, 1], "datatype": "FP32", "data": [[r[1]] for r in ROWS]},
            {"name": "region", "shape": [3], "datatype": "BYTES", "data": [r[2] for r in ROWS]},
        ]
    },
    {"outputs": [{"name": "class", "shape": [3], "datatype": "BYTES", "data": LABELS}]},
)
EXPECTED = {
    "alcohol": [13.1, 12.2, 14.0],
    "ash": [2.4, 2.1, 2.7],
    "region": ["north", "south", "east"],
    "class": LABELS,
}


def kserve() -> KServeAdapter:
    features = [*inputs("alcohol", "ash"), *inputs("region", kind="categorical")]
    return KServeAdapter(features, outputs("class"))


def rounded(columns: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """FP32 tensors come back as float32 values: compare at 5 decimals."""
    return {
        name: [round(v, 5) if isinstance(v, float) else v for v in values]
        for name, values in columns.items()
    }


@pytest.mark.parametrize(
    ("path", "member"),
    [
        ("/v1/models/wine:predict", KServeV1Adapter),
        ("/v2/models/wine/infer", KServeV2Adapter),
        ("/v2/models/wine/versions/3/infer?x=1", KServeV2Adapter),
    ],
)
def test_kserve_routes_each_path_to_its_protocol(path: str, member: type) -> None:
    """``kserve`` hands a V1 path to the V1 adapter and a V2 path to the V2 adapter."""
    adapter = kserve()
    assert adapter.matches(path)
    assert type(adapter.route(path)) is member


@pytest.mark.parametrize("path", ["/invocations", "/v1/models/wine/versions/2:predict", "/x"])
def test_kserve_leaves_other_paths_unrouted(path: str) -> None:
    """A path neither KServe protocol serves has no adapter (the batcher counts unknown_path)."""
    adapter = kserve()
    assert not adapter.matches(path)
    assert adapter.route(path) is None


def test_v1_and_v2_bodies_of_the_same_rows_give_the_same_columns() -> None:
    """The same three rows through either route come out as the same columns."""
    adapter = kserve()
    v1 = adapter.route("/v1/models/wine:predict")
    v2 = adapter.route("/v2/models/wine/infer")
    assert v1 is not None and v2 is not None
    assert rounded(plain(v1.extract(*V1))) == EXPECTED
    assert rounded(plain(v2.extract(*V2))) == EXPECTED


def test_v1_and_v2_probabilities_in_place_of_the_class_give_the_same_columns() -> None:
    """Class probabilities answered in place of the class (KServe's sklearn server with
    PREDICT_PROBA on V1, its predict_proba output on V2) fill the class by neither route."""
    adapter = kserve()
    v1 = adapter.route("/v1/models/wine:predict")
    v2 = adapter.route("/v2/models/wine/infer")
    assert v1 is not None and v2 is not None
    proba = [[0.2, 0.8], [0.9, 0.1], [0.4, 0.6]]
    tensor = {"name": "predict_proba", "shape": [3, 2], "datatype": "FP64", "data": proba}
    by_v1 = v1.extract(V1[0], {"predictions": proba})
    by_v2 = v2.extract(V2[0], {"outputs": [tensor]})
    assert (
        rounded(plain(by_v1))
        == rounded(plain(by_v2))
        == {name: EXPECTED[name] for name in ("alcohol", "ash", "region")}
    )
    assert by_v1.extra_columns == by_v2.extra_columns == 2


@pytest.mark.parametrize("bodies", [V1, V2, (V1[0], None), (V2[0], None)], ids=str)
def test_without_a_path_the_body_shape_picks_the_protocol(bodies: tuple[Any, Any]) -> None:
    """Path-less pairs (and requests alone) are read by the protocol they are written in."""
    adapter = kserve()
    assert adapter.route("") is adapter
    request, response = bodies
    expected = EXPECTED if response is not None else {**EXPECTED}
    if response is None:
        del expected["class"]
    assert rounded(plain(adapter.extract(request, response))) == expected


def test_without_a_path_the_refusal_is_the_recognising_protocols() -> None:
    """A V2 request with a bad tensor is bad_datatype (V2's word), not V1's missing_outputs."""
    request = {"inputs": [{"name": "alcohol", "shape": [1], "datatype": "FP99", "data": [1.0]}]}
    with pytest.raises(ProtocolError) as caught:
        kserve().extract(request, V2[1])
    assert caught.value.reason == "bad_datatype"
    with pytest.raises(ProtocolError) as caught:
        kserve().extract({"rows": []}, None)
    assert caught.value.reason == "missing_inputs"


def test_a_protocol_list_routes_by_path() -> None:
    """``[kserve-v2, mlflow]`` reads /invocations as MLflow and /v2/... as the OIP."""
    adapter = make_adapter(
        ProtocolList(["kserve-v2", "mlflow"]), inputs("alcohol", "ash"), outputs("class")
    )
    assert isinstance(adapter, CompositeAdapter)
    assert adapter.name == "[kserve-v2, mlflow]"
    assert isinstance(adapter.route("/invocations"), MLflowAdapter)
    assert isinstance(adapter.route("/v2/models/m/infer"), KServeV2Adapter)
    assert adapter.route("/v1/models/m:predict") is None


def test_a_list_of_one_is_that_protocol() -> None:
    """A plain list with one name builds that protocol's adapter."""
    assert isinstance(make_adapter(["mlflow"], inputs("x"), []), MLflowAdapter)


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["kserve-v1", "tfserving"], "both read /v1/models/NAME:predict"),
        (["kserve", "kserve-v2"], "both read /v2/models/NAME/infer"),
        (["mlflow", "jsonpath"], "reads every path"),
        (["mlflow", "grpc"], "unknown protocol 'grpc'"),
    ],
)
def test_make_adapter_refuses_overlapping_lists(names: list[str], message: str) -> None:
    """Protocols that would both claim a path (or an unknown one) are a ValueError."""
    with pytest.raises(ValueError, match=re.escape(message)):
        make_adapter(names, inputs("x"), [])  # type: ignore[arg-type]


def _concrete(route: str) -> str:
    """A real path for a route pattern of the config's table (upper-case words: segments)."""
    return re.sub(r"[A-Z]+", lambda m: "7" if m.group() in ("NUMBER", "VERSION") else "m", route)


@pytest.mark.parametrize("name", get_args(ProtocolName))
def test_the_configs_route_table_is_what_the_adapters_read(name: ProtocolName) -> None:
    """Every route the config lists for a protocol is one its adapter matches."""
    adapter = make_adapter(name, [FieldSpec("x", "numeric", "input", "$.x")], [])
    for route in PROTOCOL_ROUTES[name]:
        if route != ANY_ROUTE:
            assert adapter.matches(_concrete(route)), route


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pair
        for pair in combinations(get_args(ProtocolName), 2)
        if "jsonpath" not in pair
        and not set(PROTOCOL_ROUTES[pair[0]]) & set(PROTOCOL_ROUTES[pair[1]])
    ],
)
def test_protocols_the_config_lets_share_claim_no_common_path(
    first: ProtocolName, second: ProtocolName
) -> None:
    """Two protocols with no common route in the table never both match one of their paths."""
    one, other = make_adapter(first, inputs("x"), []), make_adapter(second, inputs("x"), [])
    for route in (*PROTOCOL_ROUTES[first], *PROTOCOL_ROUTES[second]):
        path = _concrete(route)
        assert not (one.matches(path) and other.matches(path)), (first, second, path)
