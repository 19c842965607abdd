"""Delayed ground truth with several models behind one sidecar."""

from __future__ import annotations

import json
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
from driftgauge.exceptions import ConfigError
from tests.feedback_support import (
    CLASSIFIER_FEEDBACK,
    CLASSIFIER_PREDICTIONS,
    T0,
    Clock,
    classifier_columns,
    close,
    instances,
    one_row,
    predictions_for,
    proxied,
    record,
    running,
    tail_line,
    truth_for,
    value,
    wire,
    with_feedback,
)
from tests.helpers import base_config, eventually, write_csv

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
