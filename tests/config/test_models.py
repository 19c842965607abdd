"""Several models behind one sidecar: the ``models:`` list's keys and where they belong."""

from __future__ import annotations

from pathlib import Path

import pytest

from driftgauge.config import config_from_mapping
from driftgauge.config.models import MODEL_KEYS
from driftgauge.exceptions import ConfigError
from tests.helpers import base_config


def _two_models(tmp_path: Path) -> dict[str, object]:
    raw = base_config(tmp_path)
    block = {key: raw.pop(key) for key in MODEL_KEYS if key in raw}
    return {**raw, "models": [block, {**block, "model": "iris"}]}


@pytest.mark.parametrize(
    ("key", "value"), [("windows", ["1m"]), ("min_observations", 10), ("state", {})]
)
def test_a_shared_key_in_a_model_block_says_it_belongs_at_the_top(
    tmp_path: Path, key: str, value: object
) -> None:
    """A per-model `windows:` is no typo: the error says where the key goes, not only "unknown"."""
    raw = _two_models(tmp_path)
    raw["models"][1][key] = value  # type: ignore[index]
    with pytest.raises(ConfigError) as caught:
        config_from_mapping(raw, base=tmp_path)
    assert str(caught.value) == (
        f"models[1].{key}: this key is the sidecar's, shared by every model:"
        " put it at the top of the file, beside `models:`"
    )
    assert config_from_mapping(_two_models(tmp_path), base=tmp_path).models[1].model == "iris"


def test_an_unknown_key_in_a_model_block_lists_the_block_s_keys(tmp_path: Path) -> None:
    """A typo in a block stays an unknown key, listing what a block may hold."""
    raw = _two_models(tmp_path)
    raw["models"][0]["featurs"] = []  # type: ignore[index]
    with pytest.raises(ConfigError, match=r"models\[0\]\.featurs: unknown key \(allowed: model, "):
        config_from_mapping(raw, base=tmp_path)


def test_a_model_named_twice_is_one_error(tmp_path: Path) -> None:
    """Two blocks of one name: the name is the error, not also the events they would share."""
    raw = _two_models(tmp_path)
    raw["models"][1]["model"] = "wine"  # type: ignore[index]
    with pytest.raises(ConfigError) as caught:
        config_from_mapping(raw, base=tmp_path)
    assert str(caught.value) == "models[1].model: 'wine' is configured more than once"
    raw["models"][1] |= {"model": "iris", "inferenceservice": "wine"}  # type: ignore[index]
    with pytest.raises(ConfigError, match=r"^models\[1\]\.inferenceservice: the events of "):
        config_from_mapping(raw, base=tmp_path)


@pytest.mark.parametrize("protocol", ["mlflow", "seldon", "jsonpath", ["kserve-v2", "mlflow"]])
def test_a_model_no_request_can_reach_is_an_error(tmp_path: Path, protocol: object) -> None:
    """Two MLflow models without `path` passed `driftgauge check` ('ok' for each), and serve
    then counted every /invocations request as unknown_model: a protocol whose routes name
    no model reaches one of several models only by a path pattern (or, for CloudEvents, its
    InferenceService); a model of one in a list, or with a pattern, is reached."""
    raw = _two_models(tmp_path)
    fields = [{"name": "alcohol", "type": "numeric", "path": "$.x"}]
    outputs = [{"name": "class", "type": "categorical", "path": "$.y"}]
    raw["models"][1] |= {  # type: ignore[index]
        "protocol": protocol,
        "features": fields,
        "predictions": outputs,
    }
    with pytest.raises(ConfigError) as caught:
        config_from_mapping(raw, base=tmp_path)
    assert str(caught.value).startswith("models[1].path: missing: protocol "), caught.value
    assert "so with several models no request reaches 'iris' but by a path regular" in str(
        caught.value
    )
    raw["models"][1]["path"] = "^/iris/"  # type: ignore[index]
    assert config_from_mapping(raw, base=tmp_path).models[1].route == "^/iris/"
    del raw["models"][1]["path"]  # type: ignore[attr-defined]
    raw["models"] = raw["models"][1:]  # type: ignore[index]
    assert config_from_mapping(raw, base=tmp_path).model == "iris"
    cloudevents = _two_models(tmp_path)
    cloudevents["source"] = {"cloudevents": {"listen": "127.0.0.1:0"}}
    cloudevents["models"][1] |= {"protocol": "kserve-v1"}  # type: ignore[index]
    cloudevents["models"][0] |= {"protocol": "kserve-v2"}  # type: ignore[index]
    assert len(config_from_mapping(cloudevents, base=tmp_path).models) == 2


@pytest.mark.parametrize(
    ("pattern", "shadows"),
    [
        ("/models/", True),
        ("iris", True),
        ("^/v[12]/models/ir", True),
        ("^/wine/", False),
        ("/v2/models/", False),  # /v1/models/iris:predict still names it
        ("/models/iris$", False),  # a query string after the name escapes it
        ("/models/(?=iris)", False),
        ("/models/iris\\b", False),
    ],
)
def test_a_model_whose_every_named_path_another_s_pattern_takes_is_an_error(
    tmp_path: Path, pattern: str, shadows: bool
) -> None:
    """`wine` with the path pattern '/models/' and `iris` routed by the name in its KServe
    paths passed `driftgauge check`, and serve counted every request of iris as wine's (the
    router tries patterns before names); a model none of whose named paths can escape an
    earlier or later model's pattern is now an error, said only where that is certain: a
    pattern that looks past its match ($, \\b, a lookahead) may spare a longer path."""
    raw = _two_models(tmp_path)
    raw["models"][0]["path"] = pattern  # type: ignore[index]
    if not shadows:
        assert config_from_mapping(raw, base=tmp_path).models[1].route is None
        return
    with pytest.raises(ConfigError) as caught:
        config_from_mapping(raw, base=tmp_path)
    assert str(caught.value) == (
        f"models[1].path: no request reaches 'iris': model 'wine''s path pattern {pattern!r} "
        "is found in every path naming it (/v1/models/iris..., /v2/models/iris...), and "
        "patterns are tried before names: narrow that pattern (such as ^/prefix/)"
    )
    raw["models"].reverse()  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match=r"^models\[0\]\.path: no request reaches 'iris': "):
        config_from_mapping(raw, base=tmp_path)
    raw["source"] = {"cloudevents": {"listen": "127.0.0.1:0"}}  # routed by InferenceService
    assert len(config_from_mapping(raw, base=tmp_path).models) == 2


def test_request_rows_is_each_model_s_own(tmp_path: Path) -> None:
    """``request_rows`` belongs to a model's traffic: each block sets its own (default alike),
    and a value other than alike or independent is one error naming the key."""
    raw = _two_models(tmp_path)
    raw["models"][1]["request_rows"] = "independent"  # type: ignore[index]
    config = config_from_mapping(raw, base=tmp_path)
    assert [m.request_rows for m in config.models] == ["alike", "independent"]
    raw["models"][0]["request_rows"] = "correlated"  # type: ignore[index]
    with pytest.raises(ConfigError) as caught:
        config_from_mapping(raw, base=tmp_path)
    assert str(caught.value).startswith("models[0].request_rows: 'correlated' is not one of")
    assert "\n" not in str(caught.value)
