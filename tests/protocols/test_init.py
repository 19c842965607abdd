"""The adapter registry and factory of ``driftgauge.protocols``."""

from __future__ import annotations

from typing import get_args

import pytest

from driftgauge.config import FieldSpec, ProtocolName
from driftgauge.protocols import ADAPTERS, REASONS, make_adapter

from .helpers import inputs

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
        ("/v1/models/m:predict", {"kserve-v1", "tfserving"}),
        ("/v1/models/m/versions/2:predict", {"tfserving"}),
        ("/v2/models/m/infer", {"kserve-v2"}),
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
