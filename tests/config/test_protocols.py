"""The ``protocol:`` key (one name, ``kserve``, or a list) and ``path:`` on a field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from driftgauge.config import ProtocolList, config_from_mapping, protocol_names
from driftgauge.exceptions import ConfigError
from tests.helpers import base_config


def _error(tmp_path: Path, raw: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        config_from_mapping(raw, base=tmp_path)
    return str(caught.value)


def test_kserve_is_one_protocol_name(tmp_path: Path) -> None:
    """``protocol: kserve`` (both KServe protocols) loads as a name."""
    config = config_from_mapping(base_config(tmp_path, protocol="kserve"), base=tmp_path)
    assert config.protocol == "kserve"
    assert protocol_names(config.protocol) == ("kserve",)


def test_a_list_of_protocols_loads_in_order(tmp_path: Path) -> None:
    """A list of protocols with separate routes is kept, printed as the YAML list."""
    raw = base_config(tmp_path, protocol=["kserve-v1", "kserve-v2", "mlflow"])
    config = config_from_mapping(raw, base=tmp_path)
    assert isinstance(config.protocol, ProtocolList)
    assert protocol_names(config.protocol) == ("kserve-v1", "kserve-v2", "mlflow")
    assert str(config.protocol) == "[kserve-v1, kserve-v2, mlflow]"


def test_a_list_of_one_is_that_name(tmp_path: Path) -> None:
    """``protocol: [seldon]`` is ``protocol: seldon``."""
    config = config_from_mapping(base_config(tmp_path, protocol=["seldon"]), base=tmp_path)
    assert config.protocol == "seldon"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            ["kserve-v1", "tfserving"],
            "protocol[1]: 'tfserving' and 'kserve-v1' (protocol[0]) both read /v1/models/NAME:predict",
        ),
        (["kserve", "kserve-v2"], "protocol[1]: 'kserve-v2' and 'kserve' (protocol[0]) both read"),
        (["mlflow", "mlflow"], "protocol[1]: 'mlflow' and 'mlflow' (protocol[0]) both read"),
        (["mlflow", "jsonpath"], "protocol[1]: 'jsonpath' reads every path"),
        (["mlflow", "grpc"], "protocol[1]: 'grpc' is not one of kserve-v1, kserve-v2, kserve"),
        ([], "protocol: an empty list"),
        ("grpc", "protocol: 'grpc' is not one of"),
    ],
)
def test_bad_protocol_values_name_the_key(tmp_path: Path, value: Any, message: str) -> None:
    """Overlapping, catch-all, unknown and empty protocol values are errors naming the key."""
    assert message in _error(tmp_path, base_config(tmp_path, protocol=value))


def test_path_is_a_column_name_outside_jsonpath(tmp_path: Path) -> None:
    """Any column name is a valid ``path`` for a non-jsonpath protocol (it is no JSONPath)."""
    raw = base_config(tmp_path, protocol="mlflow")
    raw["features"][0] = {"name": "alcohol_pct", "type": "numeric", "path": "alcohol (% vol)"}
    config = config_from_mapping(raw, base=tmp_path)
    assert config.features[0].name == "alcohol_pct"
    assert config.features[0].path == "alcohol (% vol)"


@pytest.mark.parametrize(
    ("feature", "message"),
    [
        (
            {"name": "x", "type": "numeric", "path": "ash"},
            "features[1].name: 'ash' is already read by features[0]",
        ),
        ({"name": "x", "type": "numeric", "path": ""}, "features[0].path: '' is not a non-empty"),
        (
            {"name": "x", "type": "numeric", "path": "a\nb"},
            "features[0].path: 'a\\nb' holds U+000A",
        ),
    ],
)
def test_bad_body_names_are_config_errors(
    tmp_path: Path, feature: dict[str, Any], message: str
) -> None:
    """A path another field reads, an empty path or a control character is refused by key."""
    raw = base_config(tmp_path)
    raw["features"][0] = feature
    assert message in _error(tmp_path, raw)


def test_two_paths_reading_one_column_name_both_fields(tmp_path: Path) -> None:
    """Two fields whose paths name the same column: the later one's key names the earlier."""
    raw = base_config(tmp_path)
    raw["features"][0]["path"] = "col"
    raw["predictions"][0]["path"] = "col"
    assert "predictions[0].path: 'col' is already read by features[0]" in _error(tmp_path, raw)


def test_a_duplicate_name_is_told_once(tmp_path: Path) -> None:
    """Two fields of one name without paths get the name error only."""
    raw = base_config(tmp_path)
    raw["features"][1]["name"] = "alcohol"
    message = _error(tmp_path, raw)
    assert "features[1].name: 'alcohol' is already the name of features[0]" in message
    assert "already read by" not in message
