"""The adapter registry and factory of ``driftgauge.protocols``."""

from __future__ import annotations

from typing import get_args

import pytest

from driftgauge.config import FieldSpec, ProtocolName
from driftgauge.protocols import ADAPTERS, REASONS, make_adapter

from .helpers import inputs, plain

PROTOCOLS: tuple[ProtocolName, ...] = get_args(ProtocolName)


def test_every_protocol_name_has_an_adapter() -> None:
    """The registry covers exactly the config's protocol names."""
    assert set(ADAPTERS) == set(PROTOCOLS)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_make_adapter_builds_the_named_adapter(protocol: ProtocolName) -> None:
    """make_adapter returns an instance whose name is the protocol value."""
    adapter = make_adapter(protocol, [FieldSpec("x", "numeric", "input", "$.x")], [])
    assert isinstance(adapter, ADAPTERS[protocol])
    assert adapter.name == protocol
    assert adapter.matches("")


def test_unknown_protocol_is_value_error() -> None:
    """An unknown name raises ValueError listing the known ones."""
    with pytest.raises(ValueError, match="kserve-v2"):
        make_adapter("grpc", inputs("x"), [])  # type: ignore[arg-type]


def test_reason_tokens_are_a_small_fixed_set() -> None:
    """The documented reason tokens are short snake_case words."""
    assert len(REASONS) == len(set(REASONS)) == 7
    assert all(reason.isidentifier() and reason.islower() for reason in REASONS)


@pytest.mark.parametrize(
    ("path", "claimants"),
    [
        ("/v1/models/m:predict", {"kserve-v1", "kserve", "tfserving"}),
        ("/v1/models/m/versions/2:predict", {"tfserving"}),
        ("/v2/models/m/infer", {"kserve-v2", "kserve"}),
        ("/invocations", {"mlflow"}),
        ("/api/v1.0/predictions", {"seldon"}),
        ("/metrics", set()),
    ],
)
def test_routes_are_claimed_by_their_own_protocols(path: str, claimants: set[str]) -> None:
    """Apart from jsonpath (which takes every path) each route has its own adapters."""
    claimed = {
        name
        for name in PROTOCOLS
        if name != "jsonpath" and make_adapter(name, inputs("x"), []).matches(path)
    }
    assert claimed == claimants


F1, F2, PRED = "od280/od315_of_diluted_wines", 'a"b\\c', "sepal length (cm)"
ROWS = [{F1: 1.0, F2: 3.0, "naïve": -1.0}, {F1: 2.0, F2: 4.0, "naïve": -1.0}]
BODIES: dict[str, tuple[object, object]] = {
    "kserve-v1": ({"instances": ROWS}, {"predictions": [{PRED: 0.5}, {PRED: 0.6}]}),
    "kserve-v2": (
        {
            "inputs": [
                {"name": F2, "shape": [2], "datatype": "FP64", "data": [3.0, 4.0]},
                {"name": F1, "shape": [2, 1], "datatype": "FP64", "data": [[1.0], [2.0]]},
            ]
        },
        {"outputs": [{"name": PRED, "shape": [2], "datatype": "FP32", "data": [0.5, 0.6]}]},
    ),
    "tfserving": ({"inputs": {F2: [3.0, 4.0], F1: [1.0, 2.0]}}, {"outputs": {PRED: [0.5, 0.6]}}),
    "mlflow": (
        {"dataframe_split": {"columns": [F2, "naïve", F1], "data": [[3.0, 0, 1.0], [4.0, 0, 2.0]]}},
        {"predictions": [{PRED: 0.5}, {PRED: 0.6}]},
    ),
    "seldon": (
        {"data": {"names": [F2, F1], "ndarray": [[3.0, 1.0], [4.0, 2.0]]}},
        {"data": {"names": [PRED], "ndarray": [[0.5], [0.6]]}},
    ),
    "jsonpath": ({"rows": ROWS}, {PRED: [0.5, 0.6]}),
}
BODIES["kserve"] = BODIES["kserve-v2"]
PATHS = {F1: "$.rows[*]['od280/od315_of_diluted_wines']", F2: "$.rows[*]['a\"b\\\\c']"}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_fields_are_found_by_their_exact_names(protocol: ProtocolName) -> None:
    """Names with slashes, spaces, quotes and backslashes key rows, tensors and columns exactly."""
    jsonpath = protocol == "jsonpath"  # elsewhere a path would name the body's column
    adapter = make_adapter(
        protocol,
        [
            FieldSpec(name, "numeric", "input", PATHS[name] if jsonpath else None)
            for name in (F1, F2)
        ],
        [
            FieldSpec(
                PRED, "numeric", "prediction", "$['sepal length (cm)'][*]" if jsonpath else None
            )
        ],
    )
    extracted = adapter.extract(*BODIES[protocol])
    assert plain(extracted) == {F1: [1.0, 2.0], F2: [3.0, 4.0], PRED: [0.5, 0.6]}
