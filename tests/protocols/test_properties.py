"""Property: for any JSON, every adapter returns a well-formed Extracted or raises ProtocolError."""

from __future__ import annotations

import json
from typing import Any, get_args

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from driftgauge.config import FieldSpec, ProtocolName
from driftgauge.exceptions import ProtocolError
from driftgauge.protocols import REASONS, make_adapter
from driftgauge.typing import Adapter, Extracted

from .helpers import assert_well_formed

# Keys the adapters look for, so arbitrary bodies often get past the first check.
KEYS = st.sampled_from(
    [
        "a",
        "b",
        "x",
        "p",
        "t:0",
        "name",
        "shape",
        "datatype",
        "data",
        "inputs",
        "outputs",
        "instances",
        "predictions",
        "names",
        "ndarray",
        "tensor",
        "values",
        "columns",
        "dataframe_split",
        "dataframe_records",
        "error",
        "error_code",
        "status",
        "rows",
    ]
) | st.text(max_size=5)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=5)
    | st.sampled_from(["FP32", "INT64", "BOOL", "BYTES", "FAILURE", 1, 2, 0])
)
JSON = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(KEYS, children, max_size=5),
    max_leaves=30,
)
SHAPES = st.lists(st.integers(min_value=-1, max_value=4), min_size=0, max_size=3) | JSON
TENSOR = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["a", "b", "x", "input-0"]) | JSON,
        "shape": SHAPES,
        "datatype": st.sampled_from(["FP32", "INT64", "BOOL", "BYTES", "UINT8", "FP16"]) | JSON,
        "data": JSON,
    }
)
# Bodies close to each protocol's shape, to exercise the deeper parsing paths too.
NEAR_MISSES = st.one_of(
    st.fixed_dictionaries({"inputs": st.lists(TENSOR, max_size=3)}),
    st.fixed_dictionaries({"outputs": st.lists(TENSOR, max_size=3)}),
    st.fixed_dictionaries({"instances": JSON}),
    st.fixed_dictionaries({"predictions": JSON}),
    st.fixed_dictionaries({"inputs": st.dictionaries(KEYS, JSON, max_size=4)}),
    st.fixed_dictionaries(
        {"dataframe_split": st.fixed_dictionaries({"columns": JSON, "data": JSON})}
    ),
    st.fixed_dictionaries({"data": st.fixed_dictionaries({"names": JSON, "ndarray": JSON})}),
    st.fixed_dictionaries(
        {
            "data": st.fixed_dictionaries(
                {"tensor": st.fixed_dictionaries({"shape": SHAPES, "values": JSON})}
            )
        }
    ),
    st.fixed_dictionaries({"rows": st.lists(st.dictionaries(KEYS, JSON, max_size=3), max_size=4)}),
)
BODIES = JSON | NEAR_MISSES

PLAIN = st.none() | st.booleans() | st.integers(-5, 5) | st.floats(-1e6, 1e6) | st.text(max_size=3)
ROW = PLAIN | st.lists(PLAIN, max_size=4) | st.dictionaries(KEYS, PLAIN, max_size=4)
VALUES = {
    "FP32": st.floats(allow_nan=True) | st.integers(-9, 9),
    "INT64": st.integers(-(2**63), 2**63 - 1),
    "BOOL": st.booleans(),
    "BYTES": st.text(max_size=3),
}


def tensor_of(rows: int) -> st.SearchStrategy[dict[str, Any]]:
    """A tensor whose shape and data agree, with ``rows`` rows."""

    def build(width: int, datatype: str, name: str) -> st.SearchStrategy[dict[str, Any]]:
        size = rows * width
        data = st.lists(VALUES[datatype], min_size=size, max_size=size)
        return st.fixed_dictionaries(
            {
                "name": st.just(name),
                "shape": st.just([rows, width]),
                "datatype": st.just(datatype),
                "data": data,
            }
        )

    return st.tuples(
        st.sampled_from([1, 1, 1, 2, 3]),
        st.sampled_from(sorted(VALUES)),
        st.sampled_from(["a", "b", "x", "p", "input-0"]),
    ).flatmap(lambda args: build(*args))


def pairs_of(rows: int) -> st.SearchStrategy[tuple[Any, Any]]:
    """Request/response pairs shaped like each protocol, all with ``rows`` rows."""
    table = st.lists(ROW, min_size=rows, max_size=rows)
    tensors = st.lists(tensor_of(rows), min_size=1, max_size=3, unique_by=lambda t: t["name"])
    seldon = st.fixed_dictionaries(
        {
            "data": st.fixed_dictionaries(
                {"ndarray": table}, optional={"names": st.lists(KEYS, max_size=4)}
            )
        }
    )
    split = st.fixed_dictionaries(
        {
            "dataframe_split": st.fixed_dictionaries(
                {"columns": st.lists(KEYS, max_size=4), "data": table}
            )
        }
    )

    def answer(body: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.none() | body

    return st.one_of(
        st.tuples(
            st.fixed_dictionaries({"instances": table}),
            answer(st.fixed_dictionaries({"predictions": table})),
        ),
        st.tuples(
            st.fixed_dictionaries({"inputs": tensors}),
            answer(st.fixed_dictionaries({"outputs": tensors})),
        ),
        st.tuples(seldon, answer(seldon)),
        st.tuples(split, answer(st.fixed_dictionaries({"predictions": table}))),
        st.tuples(
            st.fixed_dictionaries({"rows": table, "b": PLAIN}),
            answer(
                st.fixed_dictionaries(
                    {"predictions": table, "data": st.fixed_dictionaries({"ndarray": table})}
                )
            ),
        ),
        st.tuples(table, answer(table)),
    )


PAIRS = st.integers(0, 4).flatmap(pairs_of)

FEATURES = [
    FieldSpec("a", "numeric", "input", "$.rows[*].a"),
    FieldSpec("b", "categorical", "input", "$['b']"),
    FieldSpec("x", "numeric", "input", "$.inputs[0].data[*]"),
]
PREDICTIONS = [
    FieldSpec("p", "numeric", "prediction", "$.predictions[*]"),
    FieldSpec("t:0", "numeric", "prediction", "$.data.ndarray[*][0]"),
]
ALLOWED = {spec.name for spec in (*FEATURES, *PREDICTIONS)}
ADAPTERS: dict[ProtocolName, Adapter] = {
    name: make_adapter(name, FEATURES, PREDICTIONS) for name in get_args(ProtocolName)
}


def outcome(adapter: Adapter, request: Any, response: Any) -> Extracted | ProtocolError:
    """What ``extract`` gave: its result, or the ProtocolError it raised (anything else escapes)."""
    try:
        return adapter.extract(request, response)
    except ProtocolError as error:
        return error


def check(adapter: Adapter, request: Any, response: Any) -> None:
    """The adapter's whole contract for one pair of bodies."""
    result = outcome(adapter, request, response)
    if isinstance(result, ProtocolError):
        assert result.reason in REASONS
        message = str(result)
        assert message
        assert "\n" not in message
        assert len(message) < 200
        return
    assert_well_formed(result, ALLOWED)
    if response is None:
        assert not set(result.columns) & {"p", "t:0"}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=BODIES, response=st.none() | BODIES)
def test_any_json_gives_extracted_or_protocol_error(request: Any, response: Any) -> None:
    """Arbitrary JSON never escapes any adapter as anything but a ProtocolError."""
    for adapter in ADAPTERS.values():
        check(adapter, request, response)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pair=PAIRS)
def test_well_shaped_bodies_give_extracted_or_protocol_error(pair: tuple[Any, Any]) -> None:
    """Bodies shaped like each protocol, with random content, obey the same contract."""
    for adapter in ADAPTERS.values():
        check(adapter, *pair)


@settings(max_examples=100, deadline=None)
@given(request=BODIES, response=st.none() | BODIES)
def test_json_round_trip_bodies_behave_the_same(request: Any, response: Any) -> None:
    """Bodies exactly as json.loads returns them (NaN and Infinity included) obey the contract."""
    request = json.loads(json.dumps(request))
    response = json.loads(json.dumps(response))
    for adapter in ADAPTERS.values():
        check(adapter, request, response)
