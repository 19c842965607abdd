"""What the batcher makes of raw bodies: NaN and Infinity literals, with orjson or without;
gzip and deflate bodies, bounded."""

from __future__ import annotations

import gzip
import json
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from driftgauge.baseline import Baseline, build_baseline
from driftgauge.config import config_from_mapping
from driftgauge.monitor import Monitor
from driftgauge.monitor import batch as batch_module
from driftgauge.monitor.batch import BODY_REASONS, Batcher
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


# -- compressed bodies -------------------------------------------------------------------

ROWS = [[13.1, 2.4, "north"], [12.2, 2.1, "south"], [13.6, 2.7, "east"]]
V1_REQUEST = json.dumps({"instances": ROWS}).encode()
V1_RESPONSE = json.dumps({"predictions": ["a", "b", "a"]}).encode()
V1_PATH = "/v1/models/wine:predict"


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


CODINGS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "x-gzip": gzip.compress,
    "deflate": zlib.compress,  # zlib-wrapped, as RFC 9110 has it
    "Deflate": raw_deflate,  # raw, as some servers send it (and in another letter case)
    "deflate, gzip": lambda data: gzip.compress(zlib.compress(data)),
    "gzip, identity": gzip.compress,
}


def counts(feed: Batcher) -> dict[str, Any]:
    return {
        name: (c.observations, dict(c.invalid), c.bins.tolist())
        for name, c in feed.monitor.counters().items()
    }


def plain_counts(tmp_path: Path, baseline: Baseline) -> dict[str, Any]:
    feed = batcher(tmp_path, baseline, "kserve-v1")
    assert feed.ingest([Record(0.0, V1_REQUEST, V1_RESPONSE, V1_PATH)]) == 3
    return counts(feed)


@pytest.mark.parametrize("coding", list(CODINGS))
@pytest.mark.parametrize("side", ["request", "response", "both"])
def test_compressed_bodies_count_as_the_plain_ones(
    tmp_path: Path, baseline: Baseline, coding: str, side: str
) -> None:
    """A gzip or deflate request, response or both: the same counts as the bodies sent plain."""
    compress = CODINGS[coding]
    request, response = V1_REQUEST, V1_RESPONSE
    request_headers: dict[str, str] = {}
    response_headers: dict[str, str] = {}
    if side in ("request", "both"):
        request, request_headers = compress(request), {"Content-Encoding": coding}
    if side in ("response", "both"):
        # A dict is looked up in any letter case.
        response, response_headers = compress(response), {"content-encoding": coding}
    feed = batcher(tmp_path, baseline, "kserve-v1")
    record = Record(0.0, request, response, V1_PATH, None, request_headers, response_headers)
    assert feed.ingest([record]) == 3
    assert not feed.monitor.parse_errors
    assert counts(feed) == plain_counts(tmp_path, baseline)


def test_gzip_is_recognised_without_headers(tmp_path: Path, baseline: Baseline) -> None:
    """A source that keeps no headers (CloudEvents): gzip's magic bytes say what the body is."""
    feed = batcher(tmp_path, baseline, "kserve-v1")
    record = Record(0.0, gzip.compress(V1_REQUEST), gzip.compress(V1_RESPONSE), "")
    assert feed.ingest([record]) == 3
    assert counts(feed) == plain_counts(tmp_path, baseline)


def test_gzip_is_recognised_in_a_record_of_cloudevents(tmp_path: Path, baseline: Baseline) -> None:
    """A CloudEvents record keeps its events' attributes (ce-inferenceservicename...) as headers,
    no HTTP header of the bodies: gzip's magic bytes still say what each body is (KServe's logger
    sends a gzipped request or response as the model got or gave it)."""
    feed = batcher(tmp_path, baseline, "kserve-v1")
    origin = {
        "ce-source": "wine-predictor-00001",
        "ce-inferenceservicename": "wine",
        "ce-namespace": "models",
        "ce-component": "predictor",
        "ce-endpoint": "default",
    }
    record = Record(0.0, gzip.compress(V1_REQUEST), gzip.compress(V1_RESPONSE), "", "id", origin)
    assert feed.ingest([record]) == 3
    assert not feed.monitor.parse_errors
    assert counts(feed) == plain_counts(tmp_path, baseline)


def test_with_headers_only_content_encoding_says_a_body_is_compressed(
    tmp_path: Path, baseline: Baseline
) -> None:
    """Gzip bytes from a source that keeps headers, without Content-Encoding: invalid_json."""
    feed = batcher(tmp_path, baseline, "kserve-v1")
    headers = {"Content-Type": "application/json"}
    record = Record(0.0, gzip.compress(V1_REQUEST), V1_RESPONSE, V1_PATH, None, headers)
    assert feed.ingest([record]) == 0
    assert feed.monitor.parse_errors == {"invalid_json": 1}


def test_a_compressed_csv_body_is_read_as_csv(tmp_path: Path, baseline: Baseline) -> None:
    """MLflow ``text/csv`` sent gzipped: decompressed, then read as CSV."""
    csv = b"region,ash,alcohol\nnorth,2.4,13.1\nsouth,2.1,12.2\neast,2.7,13.6\n"
    headers = {"Content-Type": "text/csv", "Content-Encoding": "gzip"}
    feed = batcher(tmp_path, baseline, "mlflow")
    record = Record(0.0, gzip.compress(csv), V1_RESPONSE, "/invocations", None, headers)
    assert feed.ingest([record]) == 3
    assert not feed.monitor.parse_errors


def bomb() -> bytes:
    """128 MiB of zeros, gzipped to about 130 kB: 32 times the default bound."""
    compressor = zlib.compressobj(9, wbits=16 + zlib.MAX_WBITS)
    chunk = bytes(1024 * 1024)
    return b"".join([compressor.compress(chunk) for _ in range(128)]) + compressor.flush()


UNREADABLE: dict[str, tuple[Callable[[], bytes], str, str]] = {
    "br": (lambda: V1_REQUEST, "br", "unknown_encoding"),
    "zstd": (lambda: V1_REQUEST, "zstd", "unknown_encoding"),
    "not-compressed": (lambda: V1_REQUEST, "gzip", "bad_encoding"),
    "cut-short": (lambda: gzip.compress(V1_REQUEST)[:-12], "gzip", "bad_encoding"),
    "trailing-bytes": (lambda: gzip.compress(V1_REQUEST) + b"trailing", "gzip", "bad_encoding"),
    "magic-only": (lambda: b"\x1f\x8b" + bytes(40), "", "bad_encoding"),
    "bomb": (bomb, "gzip", "decoded_too_large"),
}


@pytest.mark.parametrize("case", list(UNREADABLE))
def test_bodies_that_do_not_decompress_are_counted_by_reason(
    tmp_path: Path, baseline: Baseline, case: str
) -> None:
    """Unknown codings, corrupt or truncated data, zip bombs: a parse error by reason, no rows."""
    make, coding, reason = UNREADABLE[case]
    body = make()
    feed = batcher(tmp_path, baseline, "kserve-v1")
    headers = {"Content-Encoding": coding} if coding else {}
    started = time.process_time()
    assert feed.ingest([Record(0.0, body, V1_RESPONSE, V1_PATH, None, headers)]) == 0
    assert time.process_time() - started < 1.0  # a bomb is not inflated whole
    assert feed.monitor.parse_errors == {reason: 1}
    assert reason in BODY_REASONS


def test_the_decompressed_size_is_bounded_by_max_body_bytes(
    tmp_path: Path, baseline: Baseline
) -> None:
    """A body that decompresses to just the bound is read; one byte more is decoded_too_large."""
    padded = V1_REQUEST[:-1] + b" " * 100 + b"}"
    for limit, expected in ((len(padded), 3), (len(padded) - 1, 0)):
        feed = batcher(tmp_path, baseline, "kserve-v1", max_body_bytes=limit)
        record = Record(
            0.0, gzip.compress(padded), V1_RESPONSE, V1_PATH, None, {"Content-Encoding": "gzip"}
        )
        assert feed.ingest([record]) == expected
        assert feed.monitor.parse_errors == ({} if expected else {"decoded_too_large": 1})


def test_a_scalar_v2_tensor_counts_once_in_each_row_of_its_batch(
    tmp_path: Path, baseline: Baseline
) -> None:
    """A v2 request sending ash and region as scalars (shape []) beside a three-row alcohol
    tensor is three rows, each with that ash and region (it was one row_mismatch, no rows)."""
    body = json.dumps(
        {
            "inputs": [
                {"name": "alcohol", "shape": [3], "datatype": "FP64", "data": [12.1, 13.0, 14.2]},
                {"name": "ash", "shape": [], "datatype": "FP64", "data": [2.4]},
                {"name": "region", "shape": [], "datatype": "BYTES", "data": ["north"]},
            ]
        }
    ).encode()
    answer = b'{"outputs":[{"name":"class","shape":[3],"datatype":"BYTES","data":["a","b","a"]}]}'
    feed = batcher(tmp_path, baseline)
    assert feed.ingest([Record(0.0, body, answer, V2_PATH)]) == 3
    assert not feed.monitor.parse_errors
    assert feed.monitor.rows_total == 3
    counters = feed.monitor.counters()
    assert {name: counters[name].observations for name in counters} == {
        "alcohol": 3,
        "ash": 3,
        "region": 3,
        "class": 3,
    }
    north = baseline.fields["region"].summary.binning.slot("north")
    assert counters["region"].bins[north] == 3
    assert sorted(counters["ash"].bins[counters["ash"].bins > 0]) == [3]
