"""Model performance from delayed ground truth: mergeable sufficient statistics, pure metrics.

Classification keeps a confusion matrix over a bounded set of classes (the
prediction's baseline categories plus ``__other__`` and ``__unseen__``), and
sums of log loss and Brier score when the model reports the positive class's
probability.  A bucket class (``__other__``, ``__unseen__``) stands for many
classes, so a pair on its diagonal may still be wrong (a prediction "cat"
and a label "dog"): such pairs are counted apart (``mixed``) and never count
as correct.
Regression keeps the sums behind MAE, RMSE and MAPE.  Both merge by
addition, so they live in the same sliced windows as the drift sketches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = ["ClassificationStats", "RegressionStats"]

# Probabilities are clipped to [eps, 1 - eps] before the logarithm, as scikit-learn clips them.
_EPS = float(np.finfo(np.float64).eps)


@dataclass(slots=True)
class ClassificationStats:
    """Confusion matrix (rows: true class, columns: predicted) and probability scores.

    ``mixed[i]`` counts the pairs in ``confusion[i, i]`` whose own classes differ
    (only a bucket class holds such pairs): a true positive of neither.
    """

    classes: tuple[str, ...]
    positive: int | None = None
    confusion: npt.NDArray[np.int64] = field(init=False)
    mixed: npt.NDArray[np.int64] = field(init=False)
    log_loss_sum: float = 0.0
    brier_sum: float = 0.0
    scored: int = 0

    def __post_init__(self) -> None:
        k = len(self.classes)
        self.confusion = np.zeros((k, k), dtype=np.int64)
        self.mixed = np.zeros(k, dtype=np.int64)

    @property
    def count(self) -> int:
        return int(self.confusion.sum())

    def add(
        self,
        truth: npt.NDArray[np.intp],
        predicted: npt.NDArray[np.intp],
        probability: npt.NDArray[np.float64] | None = None,
        differ: npt.NDArray[np.bool_] | None = None,
    ) -> None:
        """Add pairs given as class indexes; ``probability`` is P(positive class) per pair, and
        ``differ`` marks the pairs whose own classes differ (where their indexes may not)."""
        k = len(self.classes)
        self.confusion += np.bincount(truth * k + predicted, minlength=k * k).reshape(k, k)
        if differ is not None:
            self.mixed += np.bincount(truth[differ & (truth == predicted)], minlength=k)
        if probability is not None and self.positive is not None:
            # A value outside [0, 1] is no probability (a logit, a percentage): left out, as a
            # missing one is, where clipping it would score it as a confident probability.
            keep = (probability >= 0.0) & (probability <= 1.0)
            p = np.clip(probability[keep], _EPS, 1 - _EPS)
            y = (truth[keep] == self.positive).astype(np.float64)
            self.log_loss_sum += float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).sum())
            self.brier_sum += float(((p - y) ** 2).sum())
            self.scored += int(keep.sum())

    def merge(self, other: ClassificationStats) -> None:
        self.confusion += other.confusion
        self.mixed += other.mixed
        self.log_loss_sum += other.log_loss_sum
        self.brier_sum += other.brier_sum
        self.scored += other.scored

    def per_class(self) -> dict[str, tuple[float, float, float]]:
        """``class -> (precision, recall, f1)`` for classes that occur (as truth or prediction)."""
        tp = (np.diag(self.confusion) - self.mixed).astype(np.float64)
        predicted = self.confusion.sum(axis=0).astype(np.float64)
        actual = self.confusion.sum(axis=1).astype(np.float64)
        result = {}
        for i, name in enumerate(self.classes):
            if predicted[i] == 0 and actual[i] == 0:
                continue
            precision = tp[i] / predicted[i] if predicted[i] else 0.0
            recall = tp[i] / actual[i] if actual[i] else 0.0
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            result[name] = (precision, recall, f1)
        return result

    def metrics(self) -> dict[str, float]:
        """Accuracy, macro precision/recall/F1 (over classes that occur), and the
        positive class's precision/recall/F1, log loss and Brier score when known."""
        n = self.count
        if n == 0:
            return {}
        values = {"accuracy": float(np.trace(self.confusion) - self.mixed.sum()) / n}
        classes = self.per_class()
        if classes:
            stacked = np.asarray(list(classes.values()))
            values["precision_macro"] = float(stacked[:, 0].mean())
            values["recall_macro"] = float(stacked[:, 1].mean())
            values["f1_macro"] = float(stacked[:, 2].mean())
        if self.positive is not None:
            precision, recall, f1 = classes.get(self.classes[self.positive], (0.0, 0.0, 0.0))
            values |= {"precision": precision, "recall": recall, "f1": f1}
        if self.scored:
            values["log_loss"] = self.log_loss_sum / self.scored
            values["brier"] = self.brier_sum / self.scored
        return values

    def empty_like(self) -> ClassificationStats:
        return ClassificationStats(self.classes, self.positive)


@dataclass(slots=True)
class RegressionStats:
    """Sums behind MAE, RMSE and MAPE (MAPE over labels that are not zero)."""

    count: int = 0
    abs_sum: float = 0.0
    sq_sum: float = 0.0
    pct_sum: float = 0.0
    pct_count: int = 0

    def add(self, truth: npt.NDArray[np.float64], predicted: npt.NDArray[np.float64]) -> None:
        keep = np.isfinite(truth) & np.isfinite(predicted)
        truth, predicted = truth[keep], predicted[keep]
        self.count += len(truth)
        with np.errstate(over="ignore"):  # labels near float's limit make RMSE inf, not a warning
            error = predicted - truth
            self.abs_sum += float(np.abs(error).sum())
            self.sq_sum += float((error**2).sum())
        nonzero = truth != 0
        # As sklearn: a label below machine epsilon divides by epsilon, so MAPE stays finite.
        scale = np.maximum(np.abs(truth[nonzero]), np.finfo(np.float64).eps)
        self.pct_sum += float((np.abs(error[nonzero]) / scale).sum())
        self.pct_count += int(nonzero.sum())

    def merge(self, other: RegressionStats) -> None:
        self.count += other.count
        self.abs_sum += other.abs_sum
        self.sq_sum += other.sq_sum
        self.pct_sum += other.pct_sum
        self.pct_count += other.pct_count

    def metrics(self) -> dict[str, float]:
        if self.count == 0:
            return {}
        values = {"mae": self.abs_sum / self.count, "rmse": math.sqrt(self.sq_sum / self.count)}
        if self.pct_count:
            values["mape"] = self.pct_sum / self.pct_count
        return values

    def empty_like(self) -> RegressionStats:
        return RegressionStats()
