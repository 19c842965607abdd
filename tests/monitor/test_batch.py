"""The batcher with several protocols and with CSV bodies: records in, counts out."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftgauge.baseline import Baseline, build_baseline
from driftgauge.config import config_from_mapping
from driftgauge.jsonbody import decode_json
from driftgauge.monitor import Monitor
from driftgauge.monitor.batch import Batcher, Extraction
from driftgauge.protocols import make_adapter
from driftgauge.typing import Record
from tests.helpers import base_config, training_rows, write_csv

ROWS = [[13.1, 2.4, "north"], [12.2, 2.1, "south"], [13.6, 2.7, "east"]]
LABELS = ["a", "b", "a"]
V1 = {"instances": ROWS}, {"predictions": LABELS}
V2 = (
    {
        "inputs": [
            {"name": "alcohol", "shape": [3], "datatype": "FP64", "data": [r[0] for r in ROWS]},
            {"name": "ash", "shape": [3], "datatype": "FP64", "data": [r[1] for r in ROWS]},
            {"name": "region", "shape": [3], "datatype": "BYTES", "data": [r[2] for r in ROWS]},
        ]
    },
    {"outputs": [{"name": "class", "shape": [3], "datatype": "BYTES", "data": LABELS}]},
)
FIELDS = ("alcohol", "ash", "region", "class")


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Baseline:
    directory = tmp_path_factory.mktemp("batch-protocols")
    config = config_from_mapping(base_config(directory), base=directory)
    return build_baseline(config, [write_csv(directory / "train.csv", training_rows(2_000))])


def batcher(tmp_path: Path, baseline: Baseline, protocol: Any) -> Batcher:
    config = config_from_mapping(base_config(tmp_path, protocol=protocol), base=tmp_path)
    monitor = Monitor(config, baseline)
    return Batcher(make_adapter(config.protocol, config.features, config.predictions), monitor)


def record(bodies: tuple[Any, Any], path: str = "", **headers: str) -> Record:
    request, response = bodies
    encoded = request if isinstance(request, bytes) else json.dumps(request).encode()
    return Record(0.0, encoded, json.dumps(response).encode(), path, headers=headers)


def bins(feed: Batcher) -> dict[str, list[int]]:
    return {name: feed.monitor.counters()[name].bins.tolist() for name in FIELDS}


@pytest.mark.parametrize("protocol", ["kserve", ["kserve-v2", "kserve-v1"]], ids=str)
def test_v1_and_v2_records_of_the_same_rows_count_the_same(
    tmp_path: Path, baseline: Baseline, protocol: Any
) -> None:
    """Both KServe routes on one sidecar: V1 and V2 bodies of one batch give equal bin counts."""
    by_v1, by_v2 = batcher(tmp_path, baseline, protocol), batcher(tmp_path, baseline, protocol)
    assert by_v1.ingest([record(V1, "/v1/models/wine:predict")]) == 3
    assert by_v2.ingest([record(V2, "/v2/models/wine/versions/1/infer")]) == 3
    assert bins(by_v1) == bins(by_v2)
    assert sum(bins(by_v1)["alcohol"]) == 3
    for feed in (by_v1, by_v2):
        assert not feed.monitor.parse_errors


def test_paths_of_no_listed_protocol_are_unknown_path(tmp_path: Path, baseline: Baseline) -> None:
    """A TF Serving versioned route is none of kserve's: counted unknown_path, not read."""
    feed = batcher(tmp_path, baseline, "kserve")
    assert feed.ingest([record(V1, "/v1/models/wine/versions/2:predict")]) == 0
    assert feed.monitor.parse_errors == {"unknown_path": 1}


def test_path_less_records_are_read_by_their_shape(tmp_path: Path, baseline: Baseline) -> None:
    """A tail log without paths: V1 and V2 pairs (and a V2 request alone) are all read."""
    feed = batcher(tmp_path, baseline, "kserve")
    alone = record(V2)
    alone = Record(0.0, alone.request, None)
    assert feed.ingest([record(V1), record(V2), alone]) == 9
    assert not feed.monitor.parse_errors


CSV = b"region,ash,alcohol\nnorth,2.4,13.1\nsouth,2.1,12.2\neast,2.7,13.6\n"


@pytest.mark.parametrize("headers", [{"Content-Type": "text/csv"}, {}], ids=["declared", "sniffed"])
def test_mlflow_csv_bodies_count_like_json_ones(
    tmp_path: Path, baseline: Baseline, headers: dict[str, str]
) -> None:
    """A CSV body (declared or recognised by its header) counts as the JSON body of its rows."""
    by_csv, by_json = batcher(tmp_path, baseline, "mlflow"), batcher(tmp_path, baseline, "mlflow")
    response = {"predictions": LABELS}
    assert by_csv.ingest([record((CSV, response), "/invocations", **headers)]) == 3
    records = [dict(zip(("alcohol", "ash", "region"), row, strict=True)) for row in ROWS]
    split = {"dataframe_records": records}
    assert by_json.ingest([record((split, response), "/invocations")]) == 3
    assert bins(by_csv) == bins(by_json)
    assert not by_csv.monitor.parse_errors


def test_a_broken_json_body_is_still_invalid_json(tmp_path: Path, baseline: Baseline) -> None:
    """MLflow keeps counting a body that is neither JSON nor CSV as invalid_json."""
    feed = batcher(tmp_path, baseline, "mlflow")
    feed.ingest([record((b'{"inputs": [1,', {"predictions": [1]}), "/invocations")])
    assert feed.monitor.parse_errors == {"invalid_json": 1}


SLICED = {
    "v1": record(V1, "/v1/models/wine:predict"),
    "v2": record(V2, "/v2/models/wine/versions/1/infer"),
    "broken": record((b'{"instances": [1,', {"predictions": [1]}), "/v1/models/wine:predict"),
    "unknown": record(V1, "/v1/models/wine/versions/2:predict"),
    "mismatch": record((V1[0], {"predictions": LABELS[:2]}), "/v1/models/wine:predict"),
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("batch-slices")


def counts(feed: Batcher) -> tuple[Any, ...]:
    counters = {
        name: (c.observations, c.missing, c.absent, dict(c.invalid), c.bins.tolist())
        for name, c in feed.monitor.counters().items()
    }
    return counters, feed.monitor.rows_total, feed.monitor.parse_errors


@settings(max_examples=40, deadline=None)
@given(
    kinds=st.lists(st.sampled_from(sorted(SLICED)), min_size=1, max_size=10),
    cuts=st.lists(st.integers(0, 10), max_size=4),
)
def test_records_read_in_slices_then_observed_once_count_as_ingested_slice_by_slice(
    workdir: Path, baseline: Baseline, kinds: list[str], cuts: list[int]
) -> None:
    """Batcher.read over any slicing, then one observe: the same counts, rows and parse errors."""
    records = [SLICED[kind] for kind in kinds]
    bounds = [0, *sorted(min(cut, len(records)) for cut in cuts), len(records)]
    slices = [records[start:end] for start, end in itertools.pairwise(bounds)]
    by_slice, at_once = batcher(workdir, baseline, "kserve"), batcher(workdir, baseline, "kserve")
    rows = sum(by_slice.ingest(part) for part in slices)
    read = Extraction()
    for part in slices:
        at_once.read(part, into=read)
    assert at_once.observe(read) == rows
    assert counts(at_once) == counts(by_slice)


@pytest.mark.parametrize("code", [123456789012345678901234567890, -(2**63) - 1, 2**64])
def test_a_categorical_integer_beyond_64_bits_keeps_its_digits(
    tmp_path: Path, baseline: Baseline, code: int
) -> None:
    """A categorical value orjson would read as the nearest float (an integer below -2**63 or
    from 2**64) is the integer, as without orjson: the category is its digits."""
    feed = batcher(tmp_path, baseline, "kserve")
    rows = [[13.1, 2.4, code], [12.2, 2.1, "south"]]
    extracted = feed.extract(record(({"instances": rows}, {"predictions": ["a", "b"]})))
    assert extracted is not None
    region = extracted[1].columns["region"]
    assert list(region) == [code, "south"]
    assert type(region[0]) is int


def test_a_categorical_integer_beyond_64_bits_in_a_tail_line_keeps_its_digits(
    tmp_path: Path, baseline: Baseline
) -> None:
    """A tailed record's request is given parsed (by orjson, with the fast extra): a
    categorical integer beyond 64 bits in it is read again from the line, every digit kept."""
    code = 123456789012345678901234567890
    rows = [[13.1, 2.4, code], [12.2, 2.1, "south"]]
    text = json.dumps({"request": {"instances": rows}, "response": {"predictions": ["a", "b"]}})
    line = text.encode()
    parsed = decode_json(line)
    feed = batcher(tmp_path, baseline, "kserve")
    given = Record(0.0, parsed["request"], parsed["response"], line=line)
    extracted = feed.extract(given)
    assert extracted is not None
    region = extracted[1].columns["region"]
    assert list(region) == [code, "south"]
    assert type(region[0]) is int
