"""What the batcher makes of raw bodies: NaN and Infinity literals, with orjson or without."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from driftgauge.baseline import Baseline, build_baseline
from driftgauge.config import config_from_mapping
from driftgauge.monitor import Monitor
from driftgauge.monitor import batch as batch_module
from driftgauge.monitor.batch import Batcher
from driftgauge.protocols import make_adapter
from driftgauge.typing import Record
from tests.helpers import base_config, training_rows, write_csv
from tests.test_jsonbody import load_jsonbody

V2_PATH = "/v2/models/wine/infer"


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Baseline:
    directory = tmp_path_factory.mktemp("batch-bodies")
    config = config_from_mapping(base_config(directory), base=directory)
    return build_baseline(config, [write_csv(directory / "train.csv", training_rows(2_000))])


def batcher(tmp_path: Path, baseline: Baseline, protocol: str = "kserve-v2", **kw: Any) -> Batcher:
    config = config_from_mapping(base_config(tmp_path, protocol=protocol), base=tmp_path)
    monitor = Monitor(config, baseline)
    return Batcher(
        make_adapter(config.protocol, config.features, config.predictions), monitor, **kw
    )


@pytest.fixture(params=["orjson", "stdlib"])
def json_parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The batcher's JSON decoder as the `fast` extra installs it, and without orjson."""
    if request.param == "orjson":
        pytest.importorskip("orjson")
    decoder = load_jsonbody(orjson_blocked=request.param == "stdlib")
    monkeypatch.setattr(batch_module, "decode_json", decoder.decode_json)
    return str(request.param)


def tensor(data: bytes) -> bytes:
    return b'{"inputs":[{"name":"alcohol","datatype":"FP64","shape":[2],"data":[%s]}]}' % data


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"NaN,13.0", "nan"),
        (b"Infinity,13.0", "inf"),
        (b"-Infinity,13.0", "inf"),
        (b"1e400,13.0", "inf"),
    ],
    ids=["NaN", "Infinity", "-Infinity", "1e400"],
)
def test_nan_and_infinity_literals_are_counted_values_not_invalid_json(
    tmp_path: Path, baseline: Baseline, json_parser: str, data: bytes, reason: str
) -> None:
    """``[NaN, 13.0]`` in a v2 tensor: one nan (or inf) and one observation, with or without orjson."""
    feed = batcher(tmp_path, baseline)
    assert feed.ingest([Record(0.0, tensor(data), None, V2_PATH)]) == 2
    alcohol = feed.monitor.counters()["alcohol"]
    assert dict(alcohol.invalid) == {reason: 1}
    assert alcohol.observations == 1
    assert not feed.monitor.parse_errors


@pytest.mark.parametrize(
    "body",
    [b'{"instances": [[13.1, 2.2, "\\ud800"]]}', b'\xef\xbb\xbf{"instances": []}', b"[" * 5000],
    ids=["lone-surrogate", "bom", "deep"],
)
def test_bodies_orjson_refuses_for_other_reasons_stay_invalid_json(
    tmp_path: Path, baseline: Baseline, json_parser: str, body: bytes
) -> None:
    """A lone surrogate, a byte order mark, deep nesting: invalid_json either way, never internal."""
    feed = batcher(tmp_path, baseline, "kserve-v1")
    assert feed.ingest([Record(0.0, body, b'{"predictions": ["a"]}', "")]) == 0
    assert feed.monitor.parse_errors == {"invalid_json": 1}
