"""Delayed ground truth: the prediction store, the label join, /feedback and the feedback tail."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
from sklearn import metrics as skm
from yarl import URL

from driftgauge.baseline import Baseline, build_baseline, save_baseline
from driftgauge.config import Config, TailConfig, config_from_mapping
from driftgauge.exceptions import ConfigError, ProtocolError
from driftgauge.monitor.outcomes import parse_labels
from tests.feedback_support import (
    CLASSIFIER_FEEDBACK,
    CLASSIFIER_PREDICTIONS,
    MODEL_PATH,
    Pipeline,
    build,
    classifier_columns,
    classify,
    instances,
    predictions_for,
    probability_a,
    proxy_source,
    record,
    regressor_columns,
    running,
    samples,
    score,
    tail_line,
    truth_for,
    value,
    wire,
)
from tests.helpers import base_config, eventually, free_port, write_csv

T0 = 1_700_000_000.0
TOLERANCE = 1e-9


class Clock:
    """A test clock the pipeline reads; tests move it by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def close(actual: float | None, expected: float) -> bool:
    return actual is not None and math.isclose(
        actual, expected, rel_tol=TOLERANCE, abs_tol=TOLERANCE
    )


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, Baseline]:
    """The three-class classifier with feedback (positive class a, P(a) in p_a)."""
    return build(tmp_path_factory.mktemp("classifier"), segments={"features": ["region"], "top": 2})


@pytest.fixture(scope="module")
def regressor(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, Baseline]:
    return build(tmp_path_factory.mktemp("regressor"), regression=True)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def pipeline(classifier: tuple[Config, Baseline], clock: Clock) -> Pipeline:
    return wire(*classifier, clock)


def with_feedback(built: tuple[Config, Baseline], **feedback: Any) -> tuple[Config, Baseline]:
    """The same config and baseline with other ``feedback`` settings."""
    config, baseline = built
    assert config.feedback is not None
    return replace(config, feedback=replace(config.feedback, **feedback)), baseline


def one_row(alcohol: float = 13.5) -> list[dict[str, Any]]:
    return [{"alcohol": alcohol, "ash": 2.2, "region": "north"}]


def classification_expected(
    truth: list[str], predicted: list[str], p_a: list[float]
) -> dict[str, float]:
    """sklearn's figures for string labels, macro over the classes that occur."""
    labels = sorted(set(truth) | set(predicted))
    macro = skm.precision_recall_fscore_support(
        truth, predicted, labels=labels, average="macro", zero_division=0
    )
    positive = skm.precision_recall_fscore_support(
        truth, predicted, labels=["a"], average=None, zero_division=0
    )
    is_a = [int(t == "a") for t in truth]
    return {
        "accuracy": skm.accuracy_score(truth, predicted),
        "precision_macro": macro[0],
        "recall_macro": macro[1],
        "f1_macro": macro[2],
        "precision": positive[0][0],
        "recall": positive[1][0],
        "f1": positive[2][0],
        "log_loss": skm.log_loss(is_a, p_a, labels=[0, 1]),
        "brier": skm.brier_score_loss(is_a, p_a, pos_label=1),
    }


# -- performance through the outcomes -----------------------------------------------------------


def test_classification_performance_matches_sklearn(pipeline: Pipeline, clock: Clock) -> None:
    """Labels joined with held predictions give sklearn's figures in every window, on /metrics too."""
    columns = classifier_columns(600, seed=11)
    rng = np.random.default_rng(3)
    pairs, truth, predicted, p_a = [], [], [], []
    for start in range(0, 600, 12):
        rows = instances(columns, start, start + 12)
        pipeline.batcher.ingest([record(rows, f"r{start}")])
        for j, row in enumerate(rows):
            label = truth_for(row["alcohol"], rng)
            pairs.append((f"r{start}:{j}", label))
            truth.append(label)
            predicted.append(classify(row["alcohol"]))
            p_a.append(probability_a(row["alcohol"]))
        clock.now += 1
    assert pipeline.outcomes.pending == 600
    assert pipeline.outcomes.label(pairs) == {"matched": 600, "unmatched": 0, "invalid": 0}
    expected = classification_expected(truth, predicted, p_a)
    text = pipeline.text()
    for window in ("5m", "1h"):
        [overall] = [
            p
            for p in pipeline.monitor.snapshot.performance
            if p.window == window and not p.segment_feature
        ]
        assert overall.labels == 600
        assert set(overall.metrics) == set(expected)
        for name, figure in expected.items():
            assert close(overall.metrics[name], float(figure)), name
            assert close(
                value(text, "driftgauge_performance", window=window, metric=name), float(figure)
            )
        assert value(text, "driftgauge_window_labels", window=window) == 600
    recall_b = skm.recall_score(truth, predicted, labels=["b"], average=None, zero_division=0)[0]
    assert close(
        value(text, "driftgauge_class_performance", window="5m", **{"class": "b"}, metric="recall"),
        float(recall_b),
    )
    assert value(text, "driftgauge_labels_total", result="matched") == 600
    assert value(text, "driftgauge_pending_predictions") == 0


def test_classes_lumped_into_one_bucket_are_not_counted_correct(
    tmp_path: Path, clock: Clock
) -> None:
    """With ``top_categories: 2`` (b and a) the training classes c and d share ``__other__``, and
    labels y and z ``__unseen__``: a prediction c labelled d is wrong. Accuracy and class a's
    precision, recall and F1 equal sklearn's on the raw classes, through a state snapshot too."""
    training = classifier_columns(3_000)
    training["class"] = [
        "d" if c == "c" and i % 5 == 0 else c for i, c in enumerate(training["class"])
    ]
    built = build(tmp_path, columns=training, sketch={"top_categories": 2})
    pipeline = wire(*built, clock)
    columns = classifier_columns(400, seed=5)
    rng = np.random.default_rng(7)
    pairs, truth, predicted = [], [], []
    for start in range(0, 400, 4):
        rows = instances(columns, start, start + 4)
        pipeline.batcher.ingest([record(rows, f"r{start}")])
        for j, row in enumerate(rows):
            guess = classify(row["alcohol"])
            label = str(rng.choice(["a", "b", "d", "y", "z"])) if rng.random() < 0.5 else guess
            pairs.append((f"r{start}:{j}", label))
            truth.append(label)
            predicted.append(guess)
    lumped = sum(t == "d" and p == "c" for t, p in zip(truth, predicted, strict=True))
    assert lumped > 10  # the pairs the old count took as correct
    outcomes = pipeline.outcomes
    restored = wire(*built, clock).outcomes
    restored.restore_held(restored.decode_held(outcomes.encode_held(outcomes.copy_held())))
    for each in (outcomes, restored):
        assert each.label(pairs) == {"matched": 400, "unmatched": 0, "invalid": 0}
        [overall] = [
            p for p in each.performance(clock.now) if p.window == "5m" and not p.segment_feature
        ]
        assert close(overall.metrics["accuracy"], skm.accuracy_score(truth, predicted))
        scores = skm.precision_recall_fscore_support(
            truth, predicted, labels=["a"], average=None, zero_division=0
        )
        for name, figure in zip(("precision", "recall", "f1"), scores[:3], strict=False):
            assert close(overall.metrics[name], float(figure[0])), name


def test_regression_performance_matches_sklearn(
    regressor: tuple[Config, Baseline], clock: Clock
) -> None:
    """MAE, RMSE and MAPE of joined regression labels equal sklearn's."""
    pipeline = wire(*regressor, clock)
    columns = regressor_columns(300, seed=4)
    rng = np.random.default_rng(8)
    pairs, truth, predicted = [], [], []
    for start in range(0, 300, 3):
        rows = instances(columns, start, start + 3)
        pipeline.batcher.ingest([record(rows, f"q{start}", regression=True)])
        for j, row in enumerate(rows):
            guess = score(row["alcohol"], row["ash"])
            label = guess + float(rng.normal(0.0, 0.8))
            pairs.append((f"q{start}:{j}", label))
            truth.append(label)
            predicted.append(guess)
    assert pipeline.outcomes.label(pairs)["matched"] == 300
    text = pipeline.text()
    assert close(
        value(text, "driftgauge_performance", window="5m", metric="mae"),
        skm.mean_absolute_error(truth, predicted),
    )
    assert close(
        value(text, "driftgauge_performance", window="5m", metric="rmse"),
        math.sqrt(skm.mean_squared_error(truth, predicted)),
    )
    assert close(
        value(text, "driftgauge_performance", window="1h", metric="mape"),
        skm.mean_absolute_percentage_error(truth, predicted),
    )
    assert value(text, "driftgauge_performance", window="5m", metric="accuracy") is None


def test_regression_labels_must_be_finite_numbers(
    regressor: tuple[Config, Baseline], clock: Clock
) -> None:
    """Strings, booleans, null, NaN, ±inf and containers are invalid regression labels."""
    pipeline = wire(*regressor, clock)
    bad: list[Any] = ["3.5", True, None, float("nan"), float("inf"), -float("inf"), [1.0], {"v": 1}]
    ids = [f"x{i}" for i in range(len(bad) + 2)]
    for row_id in ids:
        pipeline.batcher.ingest([record(one_row(), row_id, regression=True)])
    result = pipeline.outcomes.label([*zip(ids, bad, strict=False), (ids[-2], 7), (ids[-1], 7.5)])
    assert result == {"matched": 2, "unmatched": 0, "invalid": len(bad)}
    assert pipeline.outcomes.pending == len(bad)  # invalid labels leave their predictions waiting


def test_huge_integer_regression_labels_are_handled(
    regressor: tuple[Config, Baseline], clock: Clock
) -> None:
    """An integer label beyond int64 is a number (finite or not), never an exception."""
    pipeline = wire(*regressor, clock)
    for row_id in ("big", "huge"):
        pipeline.batcher.ingest([record(one_row(), row_id, regression=True)])
    result = pipeline.outcomes.label([("big", 10**30), ("huge", 10**400)])
    assert result == {"matched": 1, "unmatched": 0, "invalid": 1}


def test_classification_labels_are_class_values(pipeline: Pipeline) -> None:
    """Null and containers are invalid; other values are classes (unknown ones count as __unseen__)."""
    for row_id in ("n", "d", "l", "z", "a"):
        pipeline.batcher.ingest([record(one_row(13.5), row_id)])  # predicted "a"
    result = pipeline.outcomes.label(
        [("n", None), ("d", {"c": 1}), ("l", ["a"]), ("z", "zzz"), ("a", "a")]
    )
    assert result == {"matched": 2, "unmatched": 0, "invalid": 3}
    pipeline.monitor.compute()
    [overall] = [
        p
        for p in pipeline.monitor.snapshot.performance
        if p.window == "5m" and not p.segment_feature
    ]
    assert overall.labels == 2
    assert overall.metrics["accuracy"] == 0.5
    assert set(overall.per_class) == {"a", "__unseen__"}


def test_class_performance_is_left_out_beyond_ten_classes(tmp_path: Path, clock: Clock) -> None:
    """Per-class series stop at ten occurring classes (label values stay bounded); overall ones stay."""
    columns = classifier_columns(1_200)
    columns["class"] = [f"c{i % 12}" for i in range(1_200)]
    pipeline = wire(*build(tmp_path, columns=columns, feedback={"prediction": "class"}), clock)
    pipeline.batcher.ingest([record(one_row() * 12, "many")])
    pipeline.outcomes.label([(f"many:{i}", f"c{i}") for i in range(12)])
    text = pipeline.text()
    assert samples(text, "driftgauge_class_performance") == []
    assert value(text, "driftgauge_performance", window="5m", metric="accuracy") == 0.0
    clock.now += 7200  # both windows forget those labels
    pipeline.batcher.ingest([record(one_row() * 2, "few")])
    pipeline.outcomes.label([("few:0", "c1"), ("few:1", "c2")])
    text = pipeline.text()
    classes = {labels["class"] for labels, _ in samples(text, "driftgauge_class_performance")}
    assert classes == {"c1", "c2", "__unseen__"}  # the model's "a" is not a training class


# -- the prediction store ----------------------------------------------------------------------


def test_oldest_predictions_are_evicted_beyond_max_pending(
    classifier: tuple[Config, Baseline], clock: Clock
) -> None:
    """Past feedback.max_pending the oldest predictions go first, each counted feedback_expired."""
    pipeline = wire(*with_feedback(classifier, max_pending=3), clock)
    for i in range(5):
        pipeline.batcher.ingest([record(one_row(), f"id{i}")])
        clock.now += 1
    assert pipeline.outcomes.pending == 3
    assert sum(n for reason, n in pipeline.dropped if reason == "feedback_expired") == 2
    result = pipeline.outcomes.label([(f"id{i}", "a") for i in range(5)])
    assert result == {"matched": 3, "unmatched": 2, "invalid": 0}
    text = pipeline.text()
    assert value(text, "driftgauge_dropped_total", reason="feedback_expired") == 2
    assert value(text, "driftgauge_labels_total", result="unmatched") == 2


def test_predictions_expire_after_ttl(classifier: tuple[Config, Baseline], clock: Clock) -> None:
    """A prediction older than feedback.ttl is dropped (feedback_expired) and its label is unmatched."""
    config, baseline = with_feedback(classifier, ttl=10.0)
    pipeline = wire(config, baseline, clock)
    outcomes = pipeline.outcomes
    pipeline.batcher.ingest([record(one_row(), "old")])
    clock.now = T0 + 6
    pipeline.batcher.ingest([record(one_row(), "young")])
    assert outcomes.label([("old", "a"), ("young", "a")], now=T0 + 11) == {
        "matched": 1,
        "unmatched": 1,
        "invalid": 0,
    }
    assert pipeline.dropped == [("feedback_expired", 1)]
    pipeline.batcher.ingest([record(one_row(), "late")])
    assert outcomes.pending == 1
    outcomes.performance(now=T0 + 16.5)  # a recompute expires too, without any label arriving
    assert outcomes.pending == 0
    assert pipeline.dropped == [("feedback_expired", 1), ("feedback_expired", 1)]


def test_unmatched_labels_are_counted(pipeline: Pipeline) -> None:
    """A label whose id was never seen is counted unmatched and joins nothing."""
    pipeline.batcher.ingest([record(one_row(), "known")])
    assert pipeline.outcomes.label([("unknown", "a"), ("known", "b")]) == {
        "matched": 1,
        "unmatched": 1,
        "invalid": 0,
    }
    assert pipeline.outcomes.labels == {"matched": 1, "unmatched": 1}


def test_a_second_label_for_the_same_id_is_unmatched(pipeline: Pipeline) -> None:
    """A prediction joins one label only; the repeat finds nothing."""
    pipeline.batcher.ingest([record(one_row(), "once")])
    assert pipeline.outcomes.label([("once", "a")])["matched"] == 1
    assert pipeline.outcomes.label([("once", "a")]) == {"matched": 0, "unmatched": 1, "invalid": 0}


def test_batch_rows_get_indexed_ids(pipeline: Pipeline) -> None:
    """Rows of a batch under id R are R:0 … R:N-1; a one-row request keeps R itself."""
    columns = classifier_columns(4, seed=2)
    pipeline.batcher.ingest([record(instances(columns, 0, 3), "batch")])
    pipeline.batcher.ingest([record(instances(columns, 3, 4), "single")])
    assert pipeline.outcomes.pending == 4
    labels = [
        ("batch", "a"),
        ("single:0", "a"),
        ("batch:0", "a"),
        ("batch:1", "b"),
        ("batch:2", "c"),
        ("single", "c"),
    ]
    assert pipeline.outcomes.label(labels) == {"matched": 4, "unmatched": 2, "invalid": 0}


def test_a_one_row_request_matches_its_documented_batch_id(pipeline: Pipeline) -> None:
    """README: N rows get ID:0 … ID:N-1, so ID:0 labels a one-row request (as does the bare ID)."""
    pipeline.batcher.ingest([record(one_row(), "lone")])
    pipeline.batcher.ingest([record(one_row(), "bare")])
    assert pipeline.outcomes.label([("lone:0", "a"), ("bare", "a")]) == {
        "matched": 2,
        "unmatched": 0,
        "invalid": 0,
    }
    assert pipeline.outcomes.label([("lone", "a"), ("bare:0", "a")])["unmatched"] == 2


def test_requests_without_an_id_are_not_held(pipeline: Pipeline) -> None:
    """Without a request id (and no id_path) there is nothing to join a label to."""
    pipeline.batcher.ingest([record(one_row(), None)])
    assert pipeline.outcomes.pending == 0
    assert pipeline.monitor.rows_total == 1
    assert pipeline.monitor.dropped == {"feedback_no_id": 1}  # counted: no label can join it


def test_rows_without_a_prediction_are_not_held(pipeline: Pipeline) -> None:
    """A row whose prediction is null waits for no label; its batch mates still do."""
    rows = one_row() * 2
    rec = record(rows, "half")
    rec.response["predictions"][0]["class"] = None
    pipeline.batcher.ingest([rec])
    assert pipeline.outcomes.pending == 1
    assert pipeline.outcomes.label([("half:0", "a"), ("half:1", "a")])["unmatched"] == 1
    assert "feedback_no_id" not in pipeline.monitor.dropped  # it has an id, no prediction


def test_id_path_gives_each_row_its_own_id(
    classifier: tuple[Config, Baseline], clock: Clock
) -> None:
    """feedback.id_path names one id per row in the request; header ids are then ignored."""
    pipeline = wire(*with_feedback(classifier, id_path="$.instances[*].id"), clock)
    rows = [{**one_row(13.5)[0], "id": "order-1"}, {**one_row(12.0)[0], "id": 42}]
    pipeline.batcher.ingest([record(rows, "header-id")])
    assert pipeline.outcomes.pending == 2
    result = pipeline.outcomes.label([("order-1", "a"), ("42", "c"), ("header-id:0", "a")])
    assert result == {"matched": 2, "unmatched": 1, "invalid": 0}
    # The id member is not a configured feature: it also counts as one extra field per request.
    assert pipeline.monitor.extra_columns_total == 1


def test_id_path_that_does_not_give_one_id_per_row_holds_nothing(
    classifier: tuple[Config, Baseline], clock: Clock
) -> None:
    """When the id path resolves to no ids or a different number of them, no row is held."""
    pipeline = wire(*with_feedback(classifier, id_path="$.ids[*]"), clock)
    pipeline.batcher.ingest([record(one_row() * 2, None, ids=["only-one"])])
    pipeline.batcher.ingest([record(one_row() * 2, None)])
    assert pipeline.outcomes.pending == 0
    assert pipeline.monitor.dropped["feedback_no_id"] == 4  # each row counted, none silently
    pipeline.batcher.ingest([record(one_row() * 2, None, ids=[7, 8])])
    assert pipeline.outcomes.label([("7", "a"), ("8", "a")])["matched"] == 2
    assert pipeline.monitor.dropped["feedback_no_id"] == 4


def test_id_path_rows_without_an_id_are_not_held(
    classifier: tuple[Config, Baseline], clock: Clock
) -> None:
    """A row lacking its id member is not held under a made-up id such as "None"."""
    pipeline = wire(*with_feedback(classifier, id_path="$.instances[*].id"), clock)
    rows = [{**one_row()[0], "id": "has-id"}, one_row()[0], one_row()[0]]
    pipeline.batcher.ingest([record(rows, None)])
    assert pipeline.outcomes.pending == 1
    assert pipeline.monitor.dropped["feedback_no_id"] == 2
    assert pipeline.outcomes.label([("None", "a")])["unmatched"] == 1


def test_parse_labels_reads_lists_and_labels_objects() -> None:
    """Both a bare list and {"labels": [...]} are accepted; ids become strings."""
    items = [{"id": 7, "label": "a"}, {"id": "x", "label": 1.5}]
    assert parse_labels(items) == [("7", "a"), ("x", 1.5)]
    assert parse_labels({"labels": items}) == [("7", "a"), ("x", 1.5)]
    assert parse_labels([]) == []


@pytest.mark.parametrize(
    "body",
    [{"id": 1, "label": "a"}, {"labels": 5}, [{"id": 1}], [{"label": "a"}], ["a"], "text", None],
)
def test_parse_labels_rejects_other_shapes(body: Any) -> None:
    """Anything but a list of {"id", "label"} objects is a ProtocolError (a ValueError)."""
    with pytest.raises(ProtocolError) as caught:
        parse_labels(body)
    assert isinstance(caught.value, ValueError)


def test_token_file_supplies_the_feedback_token(tmp_path: Path) -> None:
    """feedback.token_file is read (stripped) as the bearer token."""
    (tmp_path / "token").write_text("from-file\n", encoding="utf-8")
    raw = base_config(tmp_path, feedback={"prediction": "class", "token_file": "token"})
    config = config_from_mapping(raw, base=tmp_path)
    assert config.feedback is not None and config.feedback.token == "from-file"


# -- through the real proxy and /feedback ------------------------------------------------------


def proxied(
    built: tuple[Config, Baseline], tmp_path: Path, **feedback: Any
) -> tuple[Config, Baseline, int]:
    """The classifier's config in proxy mode on fresh loopback ports, with ``feedback`` settings."""
    config, baseline = with_feedback(built, **feedback)
    upstream = free_port()
    raw = base_config(tmp_path, source=proxy_source(upstream))
    source = config_from_mapping(raw, base=tmp_path)
    return replace(config, source=source.source, metrics=source.metrics), baseline, upstream


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


# -- several models ------------------------------------------------------------------------------

# Model names are any label values: spaces, non-ASCII letters, a slash, quotes and braces.
MODEL_NAMES = ("sepal length (cm)", 'naïve "m"/{2}')


def several_models(tmp_path: Path, **feedback: Any) -> tuple[Config, Baseline, list[Any]]:
    """Two classifiers named MODEL_NAMES (tail source), each with ``feedback`` plus its
    own ``tail: labels-<i>.jsonl``; the config, the first model's baseline and the tail records
    of three one-row requests per model (``<i>-r<j>``, predicted "a")."""
    raw = base_config(tmp_path)
    features = raw.pop("features")
    for key in ("model", "protocol", "baseline", "predictions"):
        raw.pop(key)
    raw["models"] = [
        {
            "model": name,
            "protocol": "kserve-v1",
            "baseline": str(tmp_path / f"model-{i}.dgb"),
            "features": features,
            "predictions": CLASSIFIER_PREDICTIONS,
            "feedback": {**CLASSIFIER_FEEDBACK, "tail": f"labels-{i}.jsonl", **feedback},
        }
        for i, name in enumerate(MODEL_NAMES)
    ]
    config = config_from_mapping(raw, base=tmp_path)
    data = write_csv(tmp_path / "train.csv", classifier_columns(2_000))
    baselines = [build_baseline(model, [data]) for model in config.all_models]
    for model, built in zip(config.all_models, baselines, strict=True):
        save_baseline(built, model.baseline)
    rows = one_row(13.5)
    records = [
        {
            "ts": T0,
            "id": f"{i}-r{j}",
            "path": f"/v1/models/{quote(name, safe='')}:predict",
            "request": {"instances": rows},
            "response": {"predictions": predictions_for(rows)},
        }
        for i, name in enumerate(MODEL_NAMES)
        for j in range(3)
    ]
    return config, baselines[0], records


def write_records(config: Config, records: list[Any]) -> None:
    assert isinstance(config.source, TailConfig)
    lines = "".join(json.dumps(item) + "\n" for item in records)
    config.source.path.write_text(lines, encoding="utf-8")


async def test_each_model_takes_labels_at_its_percent_encoded_feedback_path(
    tmp_path: Path,
) -> None:
    """POST /feedback/<model, percent-encoded> reaches that model whatever its name holds."""
    config, baseline, records = several_models(tmp_path)
    write_records(config, records)
    async with running(config, baseline) as sidecar:
        monitors = sidecar.sidecar.monitors
        await eventually(
            lambda: all(m.outcomes is not None and m.outcomes.pending == 3 for m in monitors)
        )
        for i, name in enumerate(MODEL_NAMES):
            url = f"{sidecar.metrics_url}/feedback/{quote(name, safe='')}"
            labels = [{"id": f"{i}-r0", "label": "a"}, {"id": f"{1 - i}-r1", "label": "a"}]
            async with sidecar.session.post(URL(url, encoded=True), json=labels) as response:
                assert response.status == 200, (name, await response.text())
                assert await response.json() == {"matched": 1, "unmatched": 1, "invalid": 0}
        url = f"{sidecar.metrics_url}/feedback/{quote('no such model', safe='')}"
        async with sidecar.session.post(URL(url, encoded=True), json=[]) as response:
            assert response.status == 404
            assert "no such model" in (await response.json())["error"]
        assert [m.outcomes.pending for m in monitors if m.outcomes is not None] == [2, 2]


async def test_each_models_feedback_tail_is_read(tmp_path: Path) -> None:
    """Every model's feedback.tail file is followed, not only the first model's."""
    config, baseline, records = several_models(tmp_path)
    write_records(config, records)
    async with running(config, baseline) as sidecar:
        monitors = sidecar.sidecar.monitors
        await eventually(
            lambda: all(m.outcomes is not None and m.outcomes.pending == 3 for m in monitors)
        )
        for i in range(len(MODEL_NAMES)):
            lines = [json.dumps({"id": f"{i}-r{j}", "label": "ab"[j % 2]}) for j in range(i + 1)]
            (tmp_path / f"labels-{i}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        outcomes = [m.outcomes for m in monitors if m.outcomes is not None]
        await eventually(lambda: [o.labels["matched"] for o in outcomes] == [1, 2])
        text = await sidecar.metrics()
    for i, name in enumerate(MODEL_NAMES):
        truth = ["ab"[j % 2] for j in range(i + 1)]
        expected = skm.accuracy_score(truth, ["a"] * len(truth))
        got = value(text, "driftgauge_performance", model=name, window="5m", metric="accuracy")
        assert close(got, expected), (name, got, expected)


def test_two_models_sharing_one_feedback_tail_are_refused(tmp_path: Path) -> None:
    """Two models naming one feedback.tail would each read every label (the other model's
    waiting, then unmatched) and keep their offsets in the one <file>.offset: refused, naming
    the second model's key and the first model."""
    with pytest.raises(ConfigError, match=r"models\[1\]\.feedback\.tail: .*'sepal length"):
        several_models(tmp_path, tail="labels.jsonl")


def test_regression_on_a_categorical_prediction_is_refused(tmp_path: Path) -> None:
    """task: regression needs a numeric prediction, as classification needs a categorical one:
    class values such as "a" (or "3" as text) are no numbers, so nothing would be held."""
    raw = base_config(
        tmp_path,
        predictions=CLASSIFIER_PREDICTIONS,
        feedback={"prediction": "class", "task": "regression"},
    )
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(raw), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "driftgauge.cli", "check", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0, result.stdout
    [line] = [text for text in result.stderr.splitlines() if text.strip()]
    assert "feedback.task" in line and "'class'" in line and "categorical" in line, line


@pytest.mark.parametrize("positive", [1, 1.0, "1.0", "1"])
def test_a_positive_class_is_read_in_any_spelling_of_its_category(
    tmp_path: Path, positive: Any
) -> None:
    """positive_class 1, 1.0 (YAML reads both unquoted) and "1.0" are the class "1", as live
    and training values 1, 1.0 and "1.0" are one category."""
    raw = base_config(
        tmp_path,
        predictions=CLASSIFIER_PREDICTIONS,
        feedback={**CLASSIFIER_FEEDBACK, "positive_class": positive},
    )
    feedback = config_from_mapping(raw, base=tmp_path).feedback
    assert feedback is not None and feedback.positive_class == "1"


@pytest.mark.parametrize("positive", ["d", True, 1])
def test_a_positive_class_the_baseline_lacks_is_refused(tmp_path: Path, positive: Any) -> None:
    """driftgauge check and serve refuse a positive_class the prediction never took in training
    (its precision, recall and F1 would describe no class), naming the key and the classes."""
    raw = base_config(
        tmp_path,
        predictions=CLASSIFIER_PREDICTIONS,
        feedback={**CLASSIFIER_FEEDBACK, "positive_class": positive},
    )
    config = config_from_mapping(raw, base=tmp_path)
    data = write_csv(tmp_path / "train.csv", classifier_columns(500))
    save_baseline(build_baseline(config, [data]), config.baseline)
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(raw), encoding="utf-8")  # JSON is YAML
    for command in ("check", "serve"):
        result = subprocess.run(
            [sys.executable, "-m", "driftgauge.cli", command, "-c", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode != 0, (command, result.stdout, result.stderr)
        [line] = [text for text in result.stderr.splitlines() if text.strip()]
        assert "feedback.positive_class" in line, line
        assert all(f"'{name}'" in line for name in "abc"), line
        assert "Traceback" not in result.stderr


async def test_a_label_sent_right_after_its_response_joins(
    classifier: tuple[Config, Baseline], tmp_path: Path
) -> None:
    """The proxy registers a prediction off the request path, a moment after answering; a label
    posted as soon as the response arrives still joins it, and performance counts it."""
    config, baseline, _ = proxied(classifier, tmp_path)
    columns = classifier_columns(6, seed=31)
    truth, predicted, answers = [], [], []
    async with running(config, baseline) as sidecar:
        for start in range(6):
            request_id, answer = await sidecar.predict(instances(columns, start, start + 1))
            label = "abc"[start % 3]
            answers.append(await sidecar.feedback([{"id": request_id, "label": label}]))
            truth.append(label)
            predicted.append(answer[0]["class"])
        text = await sidecar.metrics()
    assert answers == [(200, {"matched": 1, "unmatched": 0, "invalid": 0})] * 6
    assert value(text, "driftgauge_labels_total", result="matched") == 6
    assert value(text, "driftgauge_labels_total", result="unmatched") == 0
    assert close(
        value(text, "driftgauge_performance", window="5m", metric="accuracy"),
        skm.accuracy_score(truth, predicted),
    )


async def test_labels_read_before_their_predictions_wait_for_them(
    classifier: tuple[Config, Baseline], tmp_path: Path
) -> None:
    """A backfill: the request log and the label file are both there at start, and the label
    tailer reads faster than predictions are registered; each label waits for its prediction
    (within feedback.ttl) instead of being lost, and performance counts every pair."""
    labels_file = tmp_path / "labels.jsonl"
    config, baseline = with_feedback(classifier, tail=labels_file, tail_state_file=None)
    fresh = config_from_mapping(base_config(tmp_path), base=tmp_path)
    config = replace(config, source=fresh.source, metrics=fresh.metrics)
    assert isinstance(fresh.source, TailConfig)
    count = 2_000
    columns = classifier_columns(count, seed=23)
    rng = np.random.default_rng(3)
    log_lines, label_lines, truth, predicted = [], [], [], []
    for i in range(count):
        rows = instances(columns, i, i + 1)
        answer = predictions_for(rows)
        log_lines.append(tail_line(T0, f"q{i}", rows, answer))
        truth.append(truth_for(rows[0]["alcohol"], rng))
        predicted.append(answer[0]["class"])
        label_lines.append(json.dumps({"id": f"q{i}", "label": truth[-1]}))
    fresh.source.path.write_text("\n".join(log_lines) + "\n", encoding="utf-8")
    labels_file.write_text("\n".join(label_lines) + "\n", encoding="utf-8")
    async with running(config, baseline) as sidecar:
        outcomes = sidecar.sidecar.monitor.outcomes
        assert outcomes is not None
        await eventually(lambda: outcomes.labels["matched"] + outcomes.labels["unmatched"] == count)
        text = await sidecar.metrics()
    assert outcomes.labels == {"matched": count}
    assert outcomes.pending == 0
    assert close(
        value(text, "driftgauge_performance", window="1h", metric="accuracy"),
        skm.accuracy_score(truth, predicted),
    )


def test_a_tailed_label_waits_for_its_prediction_until_the_ttl(
    classifier: tuple[Config, Baseline], clock: Clock
) -> None:
    """A tailed label before its prediction joins it when it comes (as ID:0 too), and one
    whose prediction never comes counts unmatched once feedback.ttl has passed."""
    config, baseline = with_feedback(classifier, ttl=60.0)
    pipeline = wire(config, baseline, clock)
    outcomes = pipeline.outcomes
    outcomes.label_tailed([("early", "a"), ("solo:0", "b"), ("never", "a"), ("bad", None)])
    outcomes.label_tailed([("early", "c")])  # a second label: the first one counts
    assert outcomes.labels == {"invalid": 1, "unmatched": 1}
    clock.now += 30
    pipeline.batcher.ingest([record(one_row(13.5), "early"), record(one_row(13.5), "solo")])
    assert outcomes.labels == {"invalid": 1, "unmatched": 1, "matched": 2}
    assert outcomes.pending == 0
    clock.now += 31
    performance = outcomes.performance()
    assert outcomes.labels == {"invalid": 1, "matched": 2, "unmatched": 2}
    [overall] = [p for p in performance if p.window == "5m" and not p.segment_feature]
    assert overall.labels == 2
    assert overall.metrics["accuracy"] == skm.accuracy_score(["a", "b"], ["a", "a"])
