"""Segments: prediction drift and positive rates within the top values of a few features.

A segment feature (categorical, named in ``segments.features``) splits the
traffic by its ``segments.top`` most frequent baseline values plus
``__other__``, never by raw request values, so a flood of distinct values
still yields at most ``top + 1`` series.  Each segment's prediction
distribution is compared with the same segment's distribution in the
training data (exact counts the baseline keeps), and for a binary
classifier the positive prediction rate per segment gives the disparate
impact ratio (lowest rate / highest rate).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from driftgauge import stats
from driftgauge.baseline import Baseline, segment_binning
from driftgauge.config import Config, FieldSpec
from driftgauge.monitor.tracker import Observation, SnapshotPart
from driftgauge.sketches.requests import (
    design_effect,
    request_sums,
    single_row_sums,
    sums_size,
)
from driftgauge.sketches.summary import (
    CategoricalBinning,
    NumericBinning,
    category_indexes,
    to_floats,
)
from driftgauge.sketches.window import SlicedWindow
from driftgauge.typing import Extracted

__all__ = ["Fairness", "SegmentCounts", "SegmentStats", "SegmentTracker", "prediction_slots"]


@dataclass(slots=True)
class SegmentCounts:
    """Prediction bin counts per segment (rows: segments, columns: prediction bins), and each
    segment's sums over requests (:mod:`driftgauge.sketches.requests`)."""

    counts: npt.NDArray[np.int64]
    by_request: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros((0, 0), np.int64))

    def __post_init__(self) -> None:
        shape = (self.counts.shape[0], sums_size(self.counts.shape[1]))
        if self.by_request.shape != shape:
            self.by_request = np.zeros(shape, dtype=np.int64)

    def merge(self, other: SegmentCounts) -> None:
        self.counts += other.counts
        self.by_request += other.by_request


@dataclass(frozen=True, slots=True)
class SegmentStats:
    segment_feature: str
    segment: str
    prediction: str
    window: str
    observations: int
    psi: float | None = None
    psi_noise_floor: float | None = None
    positive_rate: float | None = None


@dataclass(frozen=True, slots=True)
class Fairness:
    """Disparate impact over the segments of one feature that hold enough predictions."""

    segment_feature: str
    window: str
    disparate_impact: float


def prediction_slots(
    column: Sequence[object] | npt.NDArray[np.generic], binning: NumericBinning | CategoricalBinning
) -> npt.NDArray[np.intp]:
    """Each row's bin in a prediction's baseline binning, -1 where missing or not finite."""
    if isinstance(binning, NumericBinning):
        return binning.slots(to_floats(column)[0])
    return category_indexes(column, binning)


class SegmentTracker:
    """Per-segment prediction counts in sliding windows, for one config and baseline (a Tracker)."""

    name = "segments"

    def __init__(self, config: Config, baseline: Baseline, clock: Callable[[], float]) -> None:
        self.config = config
        self.baseline = baseline
        self.clock = clock
        self._lock = threading.Lock()
        top = config.segments.top
        self.segments = {
            name: segment_binning(baseline.fields[name].summary.binning, top)
            for name in config.segments.features
        }
        self.predictions: tuple[FieldSpec, ...] = config.predictions if self.segments else ()
        self._bins = {p.name: baseline.fields[p.name].summary.binning for p in self.predictions}
        self._windows = {w.label: SlicedWindow(w, self._fresh) for w in config.windows}
        feedback = config.feedback
        self._positive: tuple[str, int] | None = None
        if feedback and feedback.task == "classification" and feedback.positive_class is not None:
            binning = self._bins.get(feedback.prediction)
            if isinstance(binning, CategoricalBinning):
                positive = binning.class_of(feedback.positive_class)
                self._positive = (feedback.prediction, binning.slot(positive))

    @property
    def windows(self) -> dict[str, SlicedWindow[SegmentCounts]]:
        return self._windows

    def locked(self) -> threading.Lock:
        return self._lock

    def _fresh(self) -> dict[str, SegmentCounts]:
        return {
            _key(s, p.name): SegmentCounts(
                np.zeros((b.size - 1, self._bins[p.name].size), dtype=np.int64)
            )
            for s, b in self.segments.items()
            for p in self.predictions
        }

    def labels(self, name: str) -> list[str]:
        """The bounded segment label values of one segment feature."""
        return self.segments[name].labels()[:-1]

    def row_segments(self, piece: Extracted) -> dict[str, npt.NDArray[np.intp]]:
        """Each row's segment index per segment feature (-1 where the feature is missing)."""
        result = {}
        for name, binning in self.segments.items():
            column = piece.columns.get(name)
            result[name] = (
                category_indexes(column, binning)
                if column is not None
                else np.full(piece.rows, -1, dtype=np.intp)
            )
        return result

    def ingest(self, batch: Sequence[Observation], now: float) -> None:
        self.add([observation.columns for observation in batch], now)

    def add(self, pieces: Sequence[Extracted], now: float | None = None) -> None:
        """Count a batch's predictions into their segments in every window."""
        if not self.segments:
            return
        batch = self._fresh()
        independent = self.config.request_rows == "independent"
        requests: dict[str, list[npt.NDArray[np.int64]]] = {key: [] for key in batch}
        for piece in pieces:
            segments = self.row_segments(piece)
            for spec in self.predictions:
                column = piece.columns.get(spec.name)
                if column is None:
                    continue
                slots = prediction_slots(column, self._bins[spec.name])
                for name, rows in segments.items():
                    key = _key(name, spec.name)
                    shape = batch[key].counts.shape
                    keep = (rows >= 0) & (slots >= 0)
                    flat = rows[keep] * shape[1] + slots[keep]
                    requests[key].append(np.bincount(flat, minlength=shape[0] * shape[1]))
        for key, counted in requests.items():
            if counted:  # each piece is one request
                by_piece = np.stack(counted).reshape(len(counted), *batch[key].counts.shape)
                counts = by_piece.sum(axis=0)
                batch[key].counts += counts
                batch[key].by_request += (
                    single_row_sums(counts) if independent else request_sums(by_piece)
                )
        now = self.clock() if now is None else now
        with self._lock:
            for window in self._windows.values():
                current = window.current(now)
                for key, counts in batch.items():
                    current[key].merge(counts)

    def compute(self, now: float) -> SnapshotPart:
        """Per-segment prediction PSI and positive rates, and disparate impact, per window."""
        segments, fairness = self.statistics(now)
        return {"segments": segments, "fairness": fairness}

    def statistics(
        self, now: float | None = None
    ) -> tuple[tuple[SegmentStats, ...], tuple[Fairness, ...]]:
        """Per-segment prediction PSI and positive rates, and disparate impact, per window."""
        if not self.segments:
            return (), ()
        now = self.clock() if now is None else now
        with self._lock:
            merged = {label: window.merged(now) for label, window in self._windows.items()}
        minimum = self.config.min_observations
        results: list[SegmentStats] = []
        fairness: list[Fairness] = []
        for label, windows in merged.items():
            for name in self.segments:
                rates: list[float] = []
                for spec in self.predictions:
                    live = windows[_key(name, spec.name)]
                    held = self.baseline.segments.get(name, {}).get(spec.name)
                    for index, segment in enumerate(self.labels(name)):
                        row = live.counts[index]
                        n = int(row.sum())
                        psi = floor = rate = None
                        if n >= minimum and held is not None and held[index].sum() > 0:
                            psi = stats.psi(row, held[index])
                            occupied = max(2, int(np.count_nonzero(held[index])))
                            deff = design_effect(row, live.by_request[index], occupied - 1)
                            floor = stats.psi_noise_floor(
                                occupied, n / deff, float(held[index].sum())
                            )
                        if self._positive is not None and spec.name == self._positive[0] and n:
                            rate = float(row[self._positive[1]]) / n
                            if n >= minimum:
                                rates.append(rate)
                        results.append(
                            SegmentStats(name, segment, spec.name, label, n, psi, floor, rate)
                        )
                if len(rates) >= 2 and max(rates) > 0:
                    fairness.append(Fairness(name, label, min(rates) / max(rates)))
        return tuple(results), tuple(fairness)


def _key(segment_feature: str, prediction: str) -> str:
    return f"{segment_feature}\x00{prediction}"
