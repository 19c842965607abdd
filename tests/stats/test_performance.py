"""Performance statistics from delayed labels, checked against scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from driftgauge.stats.performance import ClassificationStats, RegressionStats

CLASSES = ("a", "b", "c", "d", "__other__", "__unseen__")
TOLERANCE = 1e-9


def close(actual: float, expected: float) -> bool:
    return math.isclose(actual, expected, rel_tol=TOLERANCE, abs_tol=TOLERANCE)


def occurring(truth: npt.NDArray[np.intp], predicted: npt.NDArray[np.intp]) -> list[int]:
    return sorted(set(truth.tolist()) | set(predicted.tolist()))


def classification_data(
    seed: int, n: int = 2_000, used: int = 4
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.float64]]:
    """Truth over ``used`` classes, a noisy prediction, and P(class 0) in (0.01, 0.99)."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, used, n).astype(np.intp)
    noisy = rng.random(n) < 0.35
    predicted = np.where(noisy, rng.integers(0, used, n), truth).astype(np.intp)
    probability = np.clip(
        np.where(truth == 0, rng.beta(5, 2, n), rng.beta(2, 5, n)), 0.01, 0.99
    ).astype(np.float64)
    return truth, predicted, probability


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classification_metrics_match_sklearn(seed: int) -> None:
    """Accuracy, macro and positive-class precision/recall/F1, log loss and Brier equal sklearn's."""
    truth, predicted, probability = classification_data(seed)
    stats = ClassificationStats(CLASSES, positive=0)
    stats.add(truth, predicted, probability)
    got = stats.metrics()
    labels = occurring(truth, predicted)
    precision, recall, f1, _ = skm.precision_recall_fscore_support(
        truth, predicted, labels=labels, average="macro", zero_division=0
    )
    p_pos, r_pos, f_pos, _ = skm.precision_recall_fscore_support(
        truth, predicted, labels=[0], average=None, zero_division=0
    )
    is_positive = (truth == 0).astype(int)
    expected = {
        "accuracy": skm.accuracy_score(truth, predicted),
        "precision_macro": precision,
        "recall_macro": recall,
        "f1_macro": f1,
        "precision": p_pos[0],
        "recall": r_pos[0],
        "f1": f_pos[0],
        "log_loss": skm.log_loss(is_positive, probability, labels=[0, 1]),
        "brier": skm.brier_score_loss(is_positive, probability, pos_label=1),
    }
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert close(got[name], float(value)), name


def test_macro_averages_only_classes_that_occur() -> None:
    """A class never seen as truth nor prediction is left out of the macro average."""
    truth = np.asarray([0, 0, 1, 1, 2], dtype=np.intp)
    predicted = np.asarray([0, 1, 1, 1, 0], dtype=np.intp)  # class 2 only as truth, 3..5 never
    stats = ClassificationStats(CLASSES)
    stats.add(truth, predicted)
    got = stats.metrics()
    for average, index in (("precision_macro", 0), ("recall_macro", 1), ("f1_macro", 2)):
        expected = skm.precision_recall_fscore_support(
            truth, predicted, labels=[0, 1, 2], average="macro", zero_division=0
        )[index]
        assert close(got[average], float(expected))
    assert set(stats.per_class()) == {"a", "b", "c"}
    assert "precision" not in got  # no positive class configured
    assert "log_loss" not in got


def test_per_class_scores_match_sklearn() -> None:
    """Each occurring class's (precision, recall, F1) equals sklearn's per-class figures."""
    truth, predicted, _ = classification_data(7, used=5)
    stats = ClassificationStats(CLASSES)
    stats.add(truth, predicted)
    labels = occurring(truth, predicted)
    precision, recall, f1, _ = skm.precision_recall_fscore_support(
        truth, predicted, labels=labels, average=None, zero_division=0
    )
    per_class = stats.per_class()
    for position, label in enumerate(labels):
        got = per_class[CLASSES[label]]
        assert close(got[0], precision[position])
        assert close(got[1], recall[position])
        assert close(got[2], f1[position])


def test_positive_class_never_seen_scores_zero() -> None:
    """A positive class absent as truth and prediction gives precision, recall and F1 of 0."""
    stats = ClassificationStats(CLASSES, positive=3)
    stats.add(np.asarray([0, 1], dtype=np.intp), np.asarray([0, 0], dtype=np.intp))
    got = stats.metrics()
    assert (got["precision"], got["recall"], got["f1"]) == (0.0, 0.0, 0.0)
    assert got["accuracy"] == 0.5


def test_probability_scores_skip_pairs_without_a_probability() -> None:
    """NaN probabilities leave log loss and Brier over the scored pairs only."""
    truth, predicted, probability = classification_data(3, n=400)
    probability[::3] = np.nan
    stats = ClassificationStats(CLASSES, positive=0)
    stats.add(truth, predicted, probability)
    keep = np.isfinite(probability)
    y = (truth[keep] == 0).astype(int)
    got = stats.metrics()
    assert stats.scored == int(keep.sum())
    assert stats.count == 400
    assert close(got["log_loss"], skm.log_loss(y, probability[keep], labels=[0, 1]))
    assert close(got["brier"], skm.brier_score_loss(y, probability[keep], pos_label=1))


def test_probability_scores_leave_out_values_outside_0_and_1() -> None:
    """A logit or a percentage configured as the probability (1.7, -0.3, 85) is no
    probability: scikit-learn refuses it, and clipping it scored it as a confident one (log
    loss 36 for each wrong 1.7); it is left out of log loss and Brier, as a missing one is."""
    truth, predicted, probability = classification_data(4, n=400)
    probability[::4] = [1.7, -0.3, 85.0, -np.inf, np.inf] * 20
    stats = ClassificationStats(CLASSES, positive=0)
    stats.add(truth, predicted, probability)
    keep = (probability >= 0) & (probability <= 1)
    y = (truth[keep] == 0).astype(int)
    got = stats.metrics()
    assert stats.scored == int(keep.sum()) == 300
    assert close(got["log_loss"], skm.log_loss(y, probability[keep], labels=[0, 1]))
    assert close(got["brier"], skm.brier_score_loss(y, probability[keep], pos_label=1))


def test_probabilities_of_zero_and_one_give_a_finite_log_loss() -> None:
    """A confidently wrong probability (0 or 1) is clipped, so the log loss stays finite."""
    stats = ClassificationStats(CLASSES, positive=0)
    truth = np.asarray([0, 1], dtype=np.intp)
    stats.add(truth, truth, np.asarray([0.0, 1.0]))
    assert math.isfinite(stats.metrics()["log_loss"])
    assert stats.metrics()["log_loss"] > 10


def test_probabilities_of_zero_and_one_give_scikit_learns_log_loss() -> None:
    """A tree's pure leaves give probabilities of exactly 0 and 1: each confidently wrong one
    adds -log(eps) as scikit-learn clips it (eps of float64), not -log(1e-15)."""
    truth = np.asarray([0, 1, 0, 1, 0], dtype=np.intp)
    probability = np.asarray([0.0, 1.0, 1.0, 0.0, 0.7])  # P(class 0): two wrong, two right
    stats = ClassificationStats(CLASSES, positive=0)
    stats.add(truth, truth, probability)
    y = (truth == 0).astype(int)
    assert close(stats.metrics()["log_loss"], skm.log_loss(y, probability, labels=[0, 1]))


def test_empty_statistics_have_no_metrics() -> None:
    """No labelled pairs yet: no figures at all (nothing is exported)."""
    assert ClassificationStats(CLASSES, positive=0).metrics() == {}
    assert RegressionStats().metrics() == {}


def regression_data(
    seed: int, n: int = 1_000
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    rng = np.random.default_rng(seed)
    truth = rng.lognormal(1.0, 0.7, n) * rng.choice([-1.0, 1.0], n)
    return truth, truth + rng.normal(0.0, 1.5, n)


@pytest.mark.parametrize("seed", [0, 1])
def test_regression_metrics_match_sklearn(seed: int) -> None:
    """MAE, RMSE and MAPE equal sklearn's on labels without zeros."""
    truth, predicted = regression_data(seed)
    stats = RegressionStats()
    stats.add(truth, predicted)
    got = stats.metrics()
    assert close(got["mae"], skm.mean_absolute_error(truth, predicted))
    assert close(got["rmse"], math.sqrt(skm.mean_squared_error(truth, predicted)))
    assert close(got["mape"], skm.mean_absolute_percentage_error(truth, predicted))


def test_mape_leaves_out_zero_labels() -> None:
    """Zero labels count in MAE and RMSE but not in MAPE, which covers the nonzero ones."""
    truth, predicted = regression_data(5, n=300)
    truth[::4] = 0.0
    stats = RegressionStats()
    stats.add(truth, predicted)
    got = stats.metrics()
    nonzero = truth != 0
    assert stats.count == 300
    assert stats.pct_count == int(nonzero.sum())
    assert close(got["mae"], skm.mean_absolute_error(truth, predicted))
    assert close(
        got["mape"], skm.mean_absolute_percentage_error(truth[nonzero], predicted[nonzero])
    )


def test_mape_of_a_tiny_label_is_finite_and_matches_sklearn() -> None:
    """A nonzero label below machine epsilon divides by epsilon as in sklearn, not by itself."""
    truth = np.asarray([5e-324, 1e-300, 2.0])
    predicted = np.asarray([1.0, 0.0, 3.0])
    stats = RegressionStats()
    stats.add(truth, predicted)
    got = stats.metrics()["mape"]
    assert math.isfinite(got)
    assert close(got, skm.mean_absolute_percentage_error(truth, predicted))


def test_only_zero_labels_give_no_mape() -> None:
    """With every label zero MAPE is undefined and not reported."""
    stats = RegressionStats()
    stats.add(np.zeros(3), np.asarray([1.0, 2.0, 3.0]))
    assert set(stats.metrics()) == {"mae", "rmse"}


def test_regression_pairs_that_are_not_finite_are_skipped() -> None:
    """A NaN or infinite label or prediction leaves the pair out of every figure."""
    stats = RegressionStats()
    stats.add(np.asarray([1.0, np.nan, 2.0, np.inf]), np.asarray([2.0, 1.0, np.nan, 1.0]))
    assert stats.count == 1
    assert stats.metrics() == {"mae": 1.0, "rmse": 1.0, "mape": 1.0}


_classes = st.integers(0, len(CLASSES) - 1)
_pairs = st.lists(
    st.tuples(_classes, _classes, st.one_of(st.floats(0.0, 1.0), st.just(float("nan")))),
    max_size=60,
)


def _classification(pairs: list[tuple[int, int, float]]) -> ClassificationStats:
    stats = ClassificationStats(CLASSES, positive=1)
    if pairs:
        truth, predicted, probability = (np.asarray(c) for c in zip(*pairs, strict=True))
        stats.add(truth.astype(np.intp), predicted.astype(np.intp), probability.astype(float))
    return stats


@settings(max_examples=150, deadline=None)
@given(_pairs, _pairs)
def test_classification_merge_equals_statistics_of_the_concatenation(
    left: list[tuple[int, int, float]], right: list[tuple[int, int, float]]
) -> None:
    """Merging two windows' statistics gives the statistics of all their pairs together."""
    merged = _classification(left)
    merged.merge(_classification(right))
    whole = _classification(left + right)
    assert np.array_equal(merged.confusion, whole.confusion)
    assert merged.scored == whole.scored
    assert math.isclose(merged.log_loss_sum, whole.log_loss_sum, rel_tol=1e-9, abs_tol=1e-9)
    assert math.isclose(merged.brier_sum, whole.brier_sum, rel_tol=1e-9, abs_tol=1e-9)
    assert merged.metrics().keys() == whole.metrics().keys()
    for name, value in whole.metrics().items():
        assert math.isclose(merged.metrics()[name], value, rel_tol=1e-9, abs_tol=1e-9)


_values = st.one_of(
    st.floats(-1e6, 1e6), st.just(0.0), st.just(float("nan")), st.just(float("inf"))
)


def _regression(pairs: list[tuple[float, float]]) -> RegressionStats:
    stats = RegressionStats()
    if pairs:
        truth, predicted = (np.asarray(c, dtype=np.float64) for c in zip(*pairs, strict=True))
        stats.add(truth, predicted)
    return stats


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(_values, _values), max_size=60),
    st.lists(st.tuples(_values, _values), max_size=60),
)
def test_regression_merge_equals_statistics_of_the_concatenation(
    left: list[tuple[float, float]], right: list[tuple[float, float]]
) -> None:
    """Merging two windows' regression sums gives the sums of all their pairs together."""
    merged = _regression(left)
    merged.merge(_regression(right))
    whole = _regression(left + right)
    assert (merged.count, merged.pct_count) == (whole.count, whole.pct_count)
    for name in ("abs_sum", "sq_sum", "pct_sum"):
        assert math.isclose(getattr(merged, name), getattr(whole, name), rel_tol=1e-9, abs_tol=1e-6)


def test_empty_like_keeps_classes_and_positive_but_no_counts() -> None:
    """A fresh copy for a new slice has the same classes and positive class and no pairs."""
    stats = ClassificationStats(CLASSES, positive=2)
    stats.add(np.asarray([1], dtype=np.intp), np.asarray([2], dtype=np.intp), np.asarray([0.5]))
    fresh = stats.empty_like()
    assert (fresh.classes, fresh.positive, fresh.count, fresh.scored) == (CLASSES, 2, 0, 0)
    assert isinstance(RegressionStats().empty_like(), RegressionStats)
