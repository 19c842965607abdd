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
