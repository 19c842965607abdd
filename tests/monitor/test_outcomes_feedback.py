"""Delayed ground truth through the real proxy, POST /feedback and the feedback tail."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm

from driftgauge.baseline import Baseline
from driftgauge.config import Config, TailConfig, config_from_mapping
from driftgauge.exposition import collector
from tests.feedback_support import (
    MODEL_PATH,
    T0,
    build,
    classifier_columns,
    close,
    instances,
    one_row,
    predictions_for,
    proxied,
    proxy_source,
    running,
    tail_line,
    truth_for,
    value,
    with_feedback,
)
from tests.helpers import base_config, eventually, free_port


async def test_proxy_and_feedback_endpoint_join_labels(
    classifier: tuple[Config, Baseline], tmp_path: Path
) -> None:
    """Generated ids come back to the client; POST /feedback joins labels and /metrics shows performance."""
    config, baseline, _ = proxied(classifier, tmp_path, token="s3cret")
    columns = classifier_columns(200, seed=21)
    rng = np.random.default_rng(5)
    async with running(config, baseline) as sidecar:
        outcomes = sidecar.sidecar.monitor.outcomes
        assert outcomes is not None
        labels, truth, predicted, ids = [], [], [], []
        for start in range(0, 200, 5):
            rows = instances(columns, start, start + 5)
            request_id, answer = await sidecar.predict(rows)
            assert request_id is not None
            ids.append(request_id)
            for j, row in enumerate(rows):
                label = truth_for(row["alcohol"], rng)
                labels.append({"id": f"{request_id}:{j}", "label": label})
                truth.append(label)
                predicted.append(answer[j]["class"])
        assert len(set(ids)) == 40
        assert sidecar.upstream_ids == ids  # the model server sees the same id
        await eventually(lambda: outcomes.pending == 200)
        status, body = await sidecar.feedback(
            [*labels, {"id": "nobody", "label": "a"}, {"id": ids[0] + ":1", "label": None}],
            token="s3cret",
        )
        assert (status, body) == (200, {"matched": 200, "unmatched": 1, "invalid": 1})
        text = await sidecar.metrics()
    expected = skm.accuracy_score(truth, predicted)
    assert close(value(text, "driftgauge_performance", window="5m", metric="accuracy"), expected)
    assert value(text, "driftgauge_labels_total", result="matched") == 200
    assert value(text, "driftgauge_pending_predictions") == 0


async def test_feedback_requires_the_configured_bearer_token(
    classifier: tuple[Config, Baseline], tmp_path: Path
) -> None:
    """With feedback.token set, a missing or wrong bearer token is 401 and nothing is joined."""
    config, baseline, _ = proxied(classifier, tmp_path, token="s3cret")
    async with running(config, baseline) as sidecar:
        request_id, _ = await sidecar.predict(one_row())
        outcomes = sidecar.sidecar.monitor.outcomes
        assert outcomes is not None and request_id is not None
        await eventually(lambda: outcomes.pending == 1)
        label = [{"id": request_id, "label": "a"}]
        for token in (None, "wrong", "s3cret2", "", "S3CRET"):
            status, body = await sidecar.feedback(label, token=token)
            assert status == 401
            assert "token" in body["error"]
        async with sidecar.session.post(
            sidecar.metrics_url + "/feedback", json=label, headers={"Authorization": "s3cret"}
        ) as response:
            assert response.status == 401
        assert outcomes.pending == 1
        assert await sidecar.feedback(label, token="s3cret") == (
            200,
            {"matched": 1, "unmatched": 0, "invalid": 0},
        )


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer"])
async def test_the_bearer_scheme_is_case_insensitive(
    classifier: tuple[Config, Baseline], tmp_path: Path, scheme: str
) -> None:
    """The token is compared exactly, the scheme name in any case (RFC 9110, 11.1)."""
    config, baseline, _ = proxied(classifier, tmp_path, token="s3cret")
    async with running(config, baseline) as sidecar:
        url = sidecar.metrics_url + "/feedback"
        for token, status in (("S3CRET", 401), ("s3cret", 200)):
            headers = {"Authorization": f"{scheme} {token}"}
            async with sidecar.session.post(url, json=[], headers=headers) as response:
                assert response.status == status, (scheme, token)


async def test_a_token_that_is_not_utf8_is_401_not_a_server_error(
    classifier: tuple[Config, Baseline], tmp_path: Path
) -> None:
    """An Authorization header with a byte that is not UTF-8 is a wrong token (401), not a 500."""
    config, baseline, _ = proxied(classifier, tmp_path, token="s3cret")
    async with running(config, baseline):
        host, port = config.metrics.listen
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(
            b"POST /feedback HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3\xffcret\r\n"
            b"Content-Length: 2\r\nConnection: close\r\n\r\n[]"
        )
        await writer.drain()
        status_line = await reader.readline()
        writer.close()
        await writer.wait_closed()
    assert status_line.split()[1] == b"401", status_line


async def test_a_feedback_body_cut_short_by_its_sender_logs_no_traceback(
    classifier: tuple[Config, Baseline], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A POST /feedback whose sender hangs up before its body ended joins nothing and leaves no
    error in the log; the endpoint answers the next poster as before."""
    config, baseline, _ = proxied(classifier, tmp_path)
    async with running(config, baseline) as sidecar:
        host, port = config.metrics.listen
        _, writer = await asyncio.open_connection(host, port)
        writer.write(b"POST /feedback HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n[{")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.2)
        async with sidecar.session.post(sidecar.metrics_url + "/feedback", json=[]) as response:
            assert response.status == 200
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_a_feedback_body_that_stops_arriving_is_408_with_a_json_error(
    classifier: tuple[Config, Baseline], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A POST /feedback whose sender stays connected but stops sending mid-body is given up
    after BODY_IDLE_SECONDS without a byte: 408 and a one-line JSON error, not a handler held
    until the sender hangs up."""
    monkeypatch.setattr(collector, "BODY_IDLE_SECONDS", 0.3)
    config, baseline, _ = proxied(classifier, tmp_path)
    async with running(config, baseline):
        host, port = config.metrics.listen
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"POST /feedback HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n[{")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        length = int(head.lower().partition(b"content-length: ")[2].partition(b"\r\n")[0])
        body = json.loads(await reader.readexactly(length))
        writer.close()
        await writer.wait_closed()
    assert head.startswith(b"HTTP/1.1 408 "), head
    assert body == {"error": "the feedback body stopped arriving (no byte for 0.3 s)"}


async def test_a_feedback_body_over_the_limit_is_413_with_a_json_error(
    classifier: tuple[Config, Baseline], tmp_path: Path
) -> None:
    """Labels beyond the body limit get a JSON error like any other refused body, naming it."""
    config, baseline, _ = proxied(classifier, tmp_path)
    labels = [{"id": f"request-{i:08d}", "label": "a"} for i in range(40_000)]
    raw = io.BytesIO(json.dumps(labels).encode())
    async with (
        running(config, baseline) as sidecar,
        sidecar.session.post(sidecar.metrics_url + "/feedback", data=raw) as response,
    ):
        status, body = response.status, await response.json()
    assert status == 413
    assert "1048576" in body["error"] and "\n" not in body["error"]


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"",
        b"\xff\xfe",
        b'{"id": 1, "label": "a"}',
        b'[{"id": 1}]',
        b"[1, 2]",
        b'{"labels": 5}',
    ],
)
async def test_bad_feedback_bodies_get_400_and_a_one_line_json_error(
    classifier: tuple[Config, Baseline], tmp_path: Path, raw: bytes
) -> None:
    """A body that is not a list of {"id", "label"} objects is 400 with {"error": one line}."""
    config, baseline, _ = proxied(classifier, tmp_path)
    async with (
        running(config, baseline) as sidecar,
        sidecar.session.post(sidecar.metrics_url + "/feedback", data=raw) as response,
    ):
        assert response.status == 400
        assert response.content_type == "application/json"
        text = await response.text()
    body = json.loads(text)
    assert set(body) == {"error"}
    assert "\n" not in body["error"] and body["error"]


async def test_feedback_with_a_huge_integer_label_is_not_a_server_error(
    regressor: tuple[Config, Baseline], tmp_path: Path
) -> None:
    """POST /feedback with an integer label too large for a float answers 200 with it invalid."""
    config, baseline, _ = proxied(regressor, tmp_path)
    async with running(config, baseline) as sidecar:
        status, body = await sidecar.feedback(
            None, raw=b'[{"id": "x", "label": 1' + b"0" * 400 + b"}]"
        )
    assert (status, body) == (200, {"matched": 0, "unmatched": 0, "invalid": 1})


async def test_feedback_without_a_token_configured_is_open(
    classifier: tuple[Config, Baseline], tmp_path: Path
) -> None:
    """Without feedback.token anyone on the metrics listener may post labels."""
    config, baseline, _ = proxied(classifier, tmp_path)
    async with running(config, baseline) as sidecar:
        assert await sidecar.feedback({"labels": [{"id": "x", "label": "a"}]}) == (
            200,
            {"matched": 0, "unmatched": 1, "invalid": 0},
        )


async def test_client_request_id_is_used_as_is(
    classifier: tuple[Config, Baseline], tmp_path: Path
) -> None:
    """A request that brings its own X-Request-ID keeps it: the model sees it and labels use it."""
    config, baseline, _ = proxied(classifier, tmp_path)
    columns = classifier_columns(4, seed=9)
    async with running(config, baseline) as sidecar:
        outcomes = sidecar.sidecar.monitor.outcomes
        assert outcomes is not None
        returned, answer = await sidecar.predict(
            instances(columns, 0, 3), {"X-Request-ID": "client-7"}
        )
        await sidecar.predict(instances(columns, 3, 4), {"X-Request-ID": "solo"})
        assert returned is None  # not generated, so not added: our model server does not echo it
        assert sidecar.upstream_ids == ["client-7", "solo"]
        await eventually(lambda: outcomes.pending == 4)
        labels = [{"id": f"client-7:{j}", "label": answer[j]["class"]} for j in range(3)]
        labels.append({"id": "solo", "label": "b"})
        status, body = await sidecar.feedback(labels)
    assert (status, body) == (200, {"matched": 4, "unmatched": 0, "invalid": 0})


async def test_a_utf8_request_id_matches_the_same_id_in_a_label(
    classifier: tuple[Config, Baseline], tmp_path: Path
) -> None:
    """A client's X-Request-ID in UTF-8 (as clients send non-ASCII header text) is the id its
    labels name in JSON: "café" in the header and in the label are one id."""
    config, baseline, _ = proxied(classifier, tmp_path)
    ids = ["café-7", "naïve ✓ id", 'a "quoted" id']
    columns = classifier_columns(len(ids), seed=9)
    async with running(config, baseline) as sidecar:
        outcomes = sidecar.sidecar.monitor.outcomes
        assert outcomes is not None
        predicted = []
        for j, request_id in enumerate(ids):
            _, answer = await sidecar.predict(
                instances(columns, j, j + 1), {"X-Request-ID": request_id}
            )
            predicted.append(answer[0]["class"])
        assert sidecar.upstream_ids == ids
        await eventually(lambda: outcomes.pending == len(ids))
        status, body = await sidecar.feedback(
            [{"id": key, "label": label} for key, label in zip(ids, predicted, strict=True)]
        )
    assert (status, body) == (200, {"matched": len(ids), "unmatched": 0, "invalid": 0})


async def test_whitespace_around_a_request_id_is_not_part_of_it(
    classifier: tuple[Config, Baseline], tmp_path: Path
) -> None:
    """Spaces and tabs around the X-Request-ID value are not the id (RFC 9110, 5.5)."""
    config, baseline, _ = proxied(classifier, tmp_path)
    body = json.dumps({"instances": instances(classifier_columns(1, seed=9), 0, 1)}).encode()
    async with running(config, baseline) as sidecar:
        outcomes = sidecar.sidecar.monitor.outcomes
        assert outcomes is not None and sidecar.sidecar.proxy_port is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", sidecar.sidecar.proxy_port)
        writer.write(
            b"POST " + MODEL_PATH.encode() + b" HTTP/1.1\r\nHost: x\r\n"
            b"X-Request-ID: \t padded id \t \r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()
        assert (await reader.readline()).split()[1] == b"200"
        writer.close()
        await writer.wait_closed()
        await eventually(lambda: outcomes.pending == 1)
        answer = await sidecar.feedback([{"id": "padded id", "label": "a"}])
    assert answer == (200, {"matched": 1, "unmatched": 0, "invalid": 0})


@pytest.mark.parametrize("empty", ["", "  "])
async def test_an_empty_request_id_gets_a_generated_one(
    classifier: tuple[Config, Baseline], tmp_path: Path, empty: str
) -> None:
    """An X-Request-ID with no value names no request: the proxy makes an id, as for a request
    without the header, so two such requests are two predictions whose labels both join (and
    the model server sees the made id alone, not the empty header beside it)."""
    config, baseline, _ = proxied(classifier, tmp_path)
    columns = classifier_columns(2, seed=9)
    async with running(config, baseline) as sidecar:
        outcomes = sidecar.sidecar.monitor.outcomes
        assert outcomes is not None
        made = []
        for j in range(2):
            returned, answer = await sidecar.predict(
                instances(columns, j, j + 1), {"X-Request-ID": empty}
            )
            made.append((returned, answer[0]["class"]))
        ids = [returned for returned, _ in made]
        assert all(ids) and len(set(ids)) == 2, ids
        assert sidecar.upstream_ids == ids
        await eventually(lambda: outcomes.pending == 2)
        answer = await sidecar.feedback([{"id": key, "label": label} for key, label in made])
    assert answer == (200, {"matched": 2, "unmatched": 0, "invalid": 0})


async def test_a_numeric_label_id_matches_however_json_spells_the_number(
    classifier: tuple[Config, Baseline], tmp_path: Path
) -> None:
    """A label id 12345.0 (how a float column of ids, as pandas makes one with a gap, writes
    12345) names request 12345: the X-Request-ID text, or an id_path integer."""
    config, baseline, _ = proxied(classifier, tmp_path, id_path="$.instances[*].id")
    columns = classifier_columns(3, seed=9)
    rows = [{**row, "id": 10 + j} for j, row in enumerate(instances(columns, 0, 3))]
    async with running(config, baseline) as sidecar:
        outcomes = sidecar.sidecar.monitor.outcomes
        assert outcomes is not None
        _, answer = await sidecar.predict(rows)
        await eventually(lambda: outcomes.pending == 3)
        labels = [{"id": float(10 + j), "label": answer[j]["class"]} for j in range(2)]
        labels.append({"id": "12", "label": answer[2]["class"]})
        assert await sidecar.feedback(labels) == (
            200,
            {"matched": 3, "unmatched": 0, "invalid": 0},
        )
    config, baseline, _ = proxied(classifier, tmp_path)
    async with running(config, baseline) as sidecar:
        outcomes = sidecar.sidecar.monitor.outcomes
        assert outcomes is not None
        _, answer = await sidecar.predict(instances(columns, 0, 1), {"X-Request-ID": "12345"})
        await eventually(lambda: outcomes.pending == 1)
        label = [{"id": 12345.0, "label": answer[0]["class"]}]
        assert await sidecar.feedback(label) == (200, {"matched": 1, "unmatched": 0, "invalid": 0})


async def test_a_nan_class_label_is_invalid_not_a_wrong_prediction(
    classifier: tuple[Config, Baseline], tmp_path: Path
) -> None:
    """NaN (how Python's json writes a missing label from a float column) is no class: the
    label is invalid, its prediction keeps waiting, and accuracy counts only real labels."""
    config, baseline, _ = proxied(classifier, tmp_path)
    columns = classifier_columns(2, seed=9)
    async with running(config, baseline) as sidecar:
        outcomes = sidecar.sidecar.monitor.outcomes
        assert outcomes is not None
        _, answer = await sidecar.predict(instances(columns, 0, 2), {"X-Request-ID": "r"})
        await eventually(lambda: outcomes.pending == 2)
        raw = json.dumps([{"id": "r:0", "label": math.nan}, {"id": "r:1", "label": "a"}])
        status, body = await sidecar.feedback(None, raw=raw.encode())
        text = await sidecar.metrics()
    assert (status, body) == (200, {"matched": 1, "unmatched": 0, "invalid": 1})
    assert outcomes.pending == 1
    expected = skm.accuracy_score(["a"], [answer[1]["class"]])
    assert close(value(text, "driftgauge_performance", window="5m", metric="accuracy"), expected)


async def test_no_id_is_generated_without_feedback(tmp_path: Path) -> None:
    """Without a feedback section the proxy adds no X-Request-ID (nothing would use it)."""
    built = build(tmp_path, columns=classifier_columns(1_000))
    config, baseline = built
    upstream = free_port()
    raw = base_config(tmp_path, source=proxy_source(upstream))
    source = config_from_mapping(raw, base=tmp_path)
    config = replace(config, feedback=None, source=source.source, metrics=source.metrics)
    async with running(config, baseline) as sidecar:
        returned, _ = await sidecar.predict(one_row())
        assert returned is None
        assert sidecar.upstream_ids == [None]
        await eventually(lambda: sidecar.sidecar.monitor.rows_total == 1)
        async with sidecar.session.post(sidecar.metrics_url + "/feedback", json=[]) as response:
            assert response.status in (404, 405)


async def test_feedback_tail_file_labels_join(
    classifier: tuple[Config, Baseline], tmp_path: Path
) -> None:
    """Labels appended to feedback.tail join like posted ones; bad lines are counted, not fatal."""
    labels_file = tmp_path / "labels.jsonl"
    config, baseline, _ = proxied(
        classifier, tmp_path, tail=labels_file, tail_state_file=tmp_path / "labels.offset"
    )
    columns = classifier_columns(30, seed=13)
    async with running(config, baseline) as sidecar:
        outcomes = sidecar.sidecar.monitor.outcomes
        assert outcomes is not None
        lines, truth, predicted = [], [], []
        for start in range(0, 30, 3):
            request_id, answer = await sidecar.predict(instances(columns, start, start + 3))
            for j in range(3):
                label = "a" if (start + j) % 4 else "c"
                lines.append(json.dumps({"id": f"{request_id}:{j}", "label": label}))
                truth.append(label)
                predicted.append(answer[j]["class"])
        await eventually(lambda: outcomes.pending == 30)
        lines[5:5] = [
            "{not json",
            json.dumps({"id": "no-label"}),
            json.dumps({"id": "ghost", "label": "a"}),
        ]
        labels_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
        await eventually(lambda: outcomes.labels["matched"] == 30)
        text = await sidecar.metrics()
    assert outcomes.labels == {"matched": 30}  # "ghost" waits for its prediction (ttl)
    assert value(text, "driftgauge_parse_errors_total", reason="feedback_invalid_json") == 1
    assert value(text, "driftgauge_parse_errors_total", reason="feedback_invalid_record") == 1
    assert close(
        value(text, "driftgauge_performance", window="1h", metric="accuracy"),
        skm.accuracy_score(truth, predicted),
    )
    assert (tmp_path / "labels.offset").exists()


# -- the tail source -----------------------------------------------------------------------------


async def test_tail_source_with_feedback_tail_yields_performance(
    classifier: tuple[Config, Baseline], tmp_path: Path
) -> None:
    """A request log with ids plus a label log: performance, segments and data quality on /metrics."""
    labels_file = tmp_path / "labels.jsonl"
    config, baseline = with_feedback(classifier, tail=labels_file, tail_state_file=None)
    raw = base_config(tmp_path)  # tail source on tmp_path/requests.jsonl, fresh metrics port
    fresh = config_from_mapping(raw, base=tmp_path)
    config = replace(config, source=fresh.source, metrics=fresh.metrics, min_observations=5)
    columns = classifier_columns(60, seed=17)
    log_lines, truth, predicted = [], [], []
    for start in range(0, 60, 4):
        rows = instances(columns, start, start + 4)
        if start == 0:
            del rows[0]["ash"]  # one row lacks a feature: counted missing
        answer = predictions_for(rows)
        log_lines.append(tail_line(T0, f"log-{start}", rows, answer))
        for j in range(4):
            truth.append("b" if (start + j) % 3 else "a")
            predicted.append(answer[j]["class"])
    assert isinstance(fresh.source, TailConfig)
    fresh.source.path.write_text("\n".join(log_lines) + "\n", encoding="utf-8")
    async with running(config, baseline) as sidecar:
        outcomes = sidecar.sidecar.monitor.outcomes
        assert outcomes is not None
        await eventually(lambda: outcomes.pending == 60)
        label_lines = [
            json.dumps({"id": f"log-{start}:{j}", "label": truth[start + j]})
            for start in range(0, 60, 4)
            for j in range(4)
        ]
        labels_file.write_text("\n".join(label_lines) + "\n", encoding="utf-8")
        await eventually(lambda: outcomes.labels["matched"] == 60)
        text = await sidecar.metrics()
    assert close(
        value(text, "driftgauge_performance", window="5m", metric="accuracy"),
        skm.accuracy_score(truth, predicted),
    )
    assert value(text, "driftgauge_missing_total", feature="ash") == 1
    north = [i for i in range(60) if columns["region"][i] == "north"]
    assert value(
        text, "driftgauge_segment_performance", window="5m", segment="north", metric="accuracy"
    ) == pytest.approx(
        skm.accuracy_score([truth[i] for i in north], [predicted[i] for i in north]), abs=1e-12
    )
    rate = sum(predicted[i] == "a" for i in north) / len(north)
    assert close(value(text, "driftgauge_positive_rate", window="5m", segment="north"), rate)


async def test_an_id_path_integer_beyond_64_bits_matches_its_label(
    classifier: tuple[Config, Baseline], tmp_path: Path
) -> None:
    """An id_path id of 30 digits (beyond what orjson reads exactly) is held under its own
    digits, so the label posted with that id (read exactly by /feedback) joins it."""
    config, baseline, _ = proxied(classifier, tmp_path, id_path="$.instances[*].id")
    big = 123456789012345678901234567890
    rows = [
        {**row, "id": big + j} for j, row in enumerate(instances(classifier_columns(2, 9), 0, 2))
    ]
    rows[1]["id"] = -big  # below -2**63 too
    async with running(config, baseline) as sidecar:
        outcomes = sidecar.sidecar.monitor.outcomes
        assert outcomes is not None
        _, answer = await sidecar.predict(rows)
        await eventually(lambda: outcomes.pending == 2)
        labels = [{"id": row["id"], "label": answer[j]["class"]} for j, row in enumerate(rows)]
        assert await sidecar.feedback(labels) == (
            200,
            {"matched": 2, "unmatched": 0, "invalid": 0},
        )


async def test_an_id_path_integer_beyond_64_bits_in_a_tail_record_matches_its_label(
    classifier: tuple[Config, Baseline], tmp_path: Path
) -> None:
    """id_path ids beyond 64 bits inside a tailed record's request (which orjson reads as
    the nearest float, one float for neighbouring ids) are held under their own digits, so
    the labels posted with those ids join them, each its own."""
    config, baseline = with_feedback(classifier, id_path="$.instances[*].id")
    raw = base_config(tmp_path)  # tail source on tmp_path/requests.jsonl, fresh metrics port
    fresh = config_from_mapping(raw, base=tmp_path)
    config = replace(config, source=fresh.source, metrics=fresh.metrics)
    assert isinstance(fresh.source, TailConfig)
    rows = instances(classifier_columns(4, 9), 0, 4)
    ids = [2**64, 2**64 + 1, -(2**63) - 1, 123456789012345678901234567890]
    rows = [{**row, "id": id_} for row, id_ in zip(rows, ids, strict=True)]
    answer = predictions_for(rows)
    fresh.source.path.write_text(tail_line(T0, "log-0", rows, answer) + "\n", encoding="utf-8")
    async with running(config, baseline) as sidecar:
        outcomes = sidecar.sidecar.monitor.outcomes
        assert outcomes is not None
        await eventually(lambda: outcomes.pending == 4)
        labels = [{"id": id_, "label": answer[j]["class"]} for j, id_ in enumerate(ids)]
        assert await sidecar.feedback(labels) == (
            200,
            {"matched": 4, "unmatched": 0, "invalid": 0},
        )


async def test_a_feedback_tail_id_beyond_64_bits_matches_its_request(
    classifier: tuple[Config, Baseline], tmp_path: Path
) -> None:
    """A label line whose id is an integer of 30 digits joins the request with that id."""
    labels_file = tmp_path / "labels.jsonl"
    config, baseline, _ = proxied(classifier, tmp_path, tail=labels_file, tail_state_file=None)
    big = 123456789012345678901234567890
    async with running(config, baseline) as sidecar:
        outcomes = sidecar.sidecar.monitor.outcomes
        assert outcomes is not None
        _, answer = await sidecar.predict(one_row(), {"X-Request-ID": str(big)})
        await eventually(lambda: outcomes.pending == 1)
        labels_file.write_text(json.dumps({"id": big, "label": answer[0]["class"]}) + "\n")
        await eventually(lambda: outcomes.labels["matched"] == 1)
