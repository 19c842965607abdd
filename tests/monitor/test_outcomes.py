"""Delayed ground truth: performance from the label join, and the prediction store (labels
through /feedback and the tail: test_outcomes_feedback.py; several models:
test_outcomes_models.py)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn import metrics as skm

from driftgauge.baseline import Baseline, check_against
from driftgauge.config import Config, config_from_mapping
from driftgauge.exceptions import ProtocolError
from driftgauge.monitor.outcomes import parse_labels
from driftgauge.sketches import summary
from driftgauge.typing import Extracted, Record
from tests.feedback_support import (
    MODEL_PATH,
    T0,
    Clock,
    Pipeline,
    build,
    classification_expected,
    classifier_columns,
    classify,
    close,
    instances,
    one_row,
    probability_a,
    record,
    regressor_columns,
    samples,
    score,
    truth_for,
    value,
    wire,
    with_feedback,
)
from tests.helpers import base_config

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
    """Strings other than a number's, booleans, null, NaN, ±inf and containers are invalid
    regression labels."""
    pipeline = wire(*regressor, clock)
    bad: list[Any] = [
        *("nan", "inf", "3,5", " 3.5", "0x10", "1_000", "1e999", ""),
        *(True, None, float("nan"), float("inf"), -float("inf"), [1.0], {"v": 1}),
    ]
    ids = [f"x{i}" for i in range(len(bad) + 2)]
    for row_id in ids:
        pipeline.batcher.ingest([record(one_row(), row_id, regression=True)])
    result = pipeline.outcomes.label([*zip(ids, bad, strict=False), (ids[-2], 7), (ids[-1], 7.5)])
    assert result == {"matched": 2, "unmatched": 0, "invalid": len(bad)}
    assert pipeline.outcomes.pending == len(bad)  # invalid labels leave their predictions waiting


def test_a_regression_label_written_as_a_numbers_text_is_that_number(
    regressor: tuple[Config, Baseline], clock: Clock
) -> None:
    """A labels table written as text ({"label": "3.5"}) gives the number, as a label of a
    class does its class: it was invalid, and its prediction waited for a label never to come."""
    pipeline = wire(*regressor, clock)
    texts = ["3.5", "-2e1", "7", "0.25", ".5", "12."]
    for i in range(len(texts)):
        pipeline.batcher.ingest([record(one_row(12.0 + i), f"t{i}", regression=True)])
    result = pipeline.outcomes.label([(f"t{i}", text) for i, text in enumerate(texts)])
    assert result == {"matched": len(texts), "unmatched": 0, "invalid": 0}
    predicted = [score(12.0 + i, 2.2) for i in range(len(texts))]
    mae = value(pipeline.text(), "driftgauge_performance", window="5m", metric="mae")
    assert mae == pytest.approx(skm.mean_absolute_error([float(t) for t in texts], predicted))


@pytest.mark.parametrize(
    ("predicted", "labels"),
    [((0, 1), (False, True)), ((False, True), (0, 1))],
    ids=["codes", "booleans"],
)
def test_boolean_labels_meet_a_classifier_of_codes_0_and_1_as_scikit_learn_takes_them(
    tmp_path: Path, clock: Clock, predicted: tuple[Any, Any], labels: tuple[Any, Any]
) -> None:
    """A classifier of codes 0/1 labelled from a boolean column (JSON true/false), or one of
    booleans labelled 0/1: scikit-learn takes True == 1, where every label read as a wrong
    class of its own (accuracy 0, the labels under __unseen__); positive_class may be spelled
    as the labels are (check refused it, 'not among the classes')."""
    rng = np.random.default_rng(3)
    columns = classifier_columns(600)
    columns["class"] = [predicted[int(x > 13.0)] for x in columns["alcohol"]]
    positive = labels[1]  # positive_class spelled as the labels are, not as the predictions
    feedback = {"prediction": "class", "positive_class": positive}
    config, baseline = build(tmp_path, columns=columns, feedback=feedback)
    check_against(baseline, config, tmp_path / "baseline.dgb")  # the class is known
    pipeline = wire(config, baseline, clock)
    guesses, truth = [], []
    for i in range(200):
        alcohol = float(rng.normal(13.0, 1.0))
        guess = int(alcohol > 13.0)
        answer = {"predictions": [{"class": predicted[guess], "p_a": 0.5}]}
        pipeline.batcher.ingest(
            [Record(T0, {"instances": one_row(alcohol)}, answer, MODEL_PATH, f"r{i}")]
        )
        guesses.append(predicted[guess])
        truth.append(labels[guess if rng.random() < 0.8 else 1 - guess])
    result = pipeline.outcomes.label([(f"r{i}", label) for i, label in enumerate(truth)])
    assert result == {"matched": 200, "unmatched": 0, "invalid": 0}
    text = pipeline.text()
    for metric, want in (
        ("accuracy", skm.accuracy_score(truth, guesses)),
        ("f1_macro", skm.f1_score(truth, guesses, average="macro")),
        ("recall", skm.recall_score(truth, guesses, pos_label=positive)),
        ("precision", skm.precision_score(truth, guesses, pos_label=positive)),
    ):
        assert value(text, "driftgauge_performance", window="5m", metric=metric) == pytest.approx(
            want
        ), metric


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


@pytest.mark.parametrize(
    ("classes", "spellings"),
    [(["a", "b", "c"], 1), (["a", None, "c"], 2)],
    ids=["whole", "missing"],
)
def test_held_predictions_are_spelled_once(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, classes: list[Any], spellings: int
) -> None:
    """Holding a batch spells its class column once (the column at once, or each present row):
    its bucket and its key come from the one spelling."""
    spelled: list[Any] = []
    for name in ("canonical_strings", "canonical_category"):
        original = getattr(summary, name)
        monkeypatch.setattr(summary, name, lambda v, f=original: spelled.append(v) or f(v))
    rec = record(one_row() * 3, "spelled")
    extracted = Extracted(rows=3, columns={"class": classes})
    pipeline.outcomes.register([(rec, rec.request, extracted, None)])
    assert len(spelled) == spellings
    assert pipeline.outcomes.label([("spelled:0", "a"), ("spelled:2", "c")])["matched"] == 2


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
