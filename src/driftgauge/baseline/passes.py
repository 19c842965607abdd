"""The passes of a baseline build, each a mergeable, picklable state (see ``runner.py``).

1. :class:`SketchPass`: the sketches, moments and missing counts of every
   field, the exact tally of each categorical field's values (while there are
   few enough), and each numeric field's bucket counts
   (:mod:`driftgauge.sketches.classes`) and whether float32 would merge a
   large share of its values that differ (:class:`~driftgauge.sketches.classes.MergedClasses`).
   :class:`FinePass` (pass 1c, for such fields alone): their sketches of the
   float64 values and their buckets of fine classes.
2. :class:`ErrorPass` (with ``multivariate`` only): the same for the rows'
   reconstruction errors, once the PCA is fitted from pass 1's moments.
3. :class:`ClassPass`: the class counts of the buckets the edge rule needs,
   and the exact bin counts of categorical fields with too many values to tally.
4. :class:`SegmentPass` (with ``segments`` only): the prediction bins within
   each segment, once every edge is known.

Every count is exact and adds up in any order, so the edges and bin counts
do not depend on how the data was split; the KLL sketches merge within
their stated error.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import datasketches as ds
import numpy as np
import numpy.typing as npt

from driftgauge.baseline.chunks import Chunk
from driftgauge.baseline.model import KNOWN_CATEGORY_LIMIT
from driftgauge.baseline.multivariate import CrossFit, FoldedMoments
from driftgauge.config import Config, FieldSpec
from driftgauge.sketches.classes import (
    FLOAT32_CLASSES,
    ClassCounts,
    FineClasses,
    KeyArray,
    KeyCounts,
    MergedClasses,
    add_sorted_bucket_counts,
    float32_classes,
    float32_normal,
)
from driftgauge.sketches.codec import decode_summary, encode_summary
from driftgauge.sketches.sorted_kll import sorted_kll
from driftgauge.sketches.summary import (
    CategoricalBinning,
    CategoricalSummary,
    NumericBinning,
    NumericSummary,
    Summary,
    split_finite,
    training_frequent,
)

__all__ = ["ClassPass", "ErrorPass", "FinePass", "SegmentPass", "SketchPass", "complete_rows"]

FloatArray = npt.NDArray[np.float64]
CountArray = npt.NDArray[np.int64]
# Pass 1's numeric summaries have one bin (no edges yet): its count is the summary's count.
_ALL = np.zeros(1, dtype=np.int64)


def complete_rows(chunk: Chunk, names: Sequence[str]) -> FloatArray:
    """The rows of ``chunk`` holding a finite value of every one of ``names``, as a matrix."""
    matrix = np.column_stack([chunk.columns[name].values for name in names]).astype(np.float64)
    complete: FloatArray = matrix[np.isfinite(matrix).all(axis=1)]
    return complete


def _add_numeric(
    summary: NumericSummary,
    buckets: KeyCounts,
    values: FloatArray,
    missing: int = 0,
    wrong_type: int = 0,
    merged: MergedClasses | None = None,
    fine: FineClasses | None = None,
) -> KeyArray:
    """Add a column (``nan`` for missing) to a pass's summary and bucket counts; return the
    class keys of its finite values, sorted (:attr:`~driftgauge.baseline.chunks.Chunk.keys`).

    Sorted once, its KLL sketch is compacted in numpy (:mod:`~driftgauge.sketches.sorted_kll`:
    9 against 32 ns a value, sort included) and its buckets are counted run by run.  What is
    sorted is its float32 rounding (a float32 sort takes 60% of a float64 one), so the sketch
    is of the float32-rounded values, as live sketches and KS read them; count, sum,
    extremes and buckets are of the float64 values.  A chunk float32 cannot round within
    2^-24 (beyond its range or normal range) is sorted as float64, and so is a field of
    ``fine`` classes, whose sketch holds the float64 values (pass 1c).  ``merged`` learns
    whether float32 rounds alike values of the column that differ.
    """
    finite, nan, inf = split_finite(values, missing + wrong_type)
    if fine is not None:
        ordered: npt.NDArray[np.floating[Any]] = np.sort(finite)
    else:
        classes = float32_classes(finite)
        normal = float32_normal(finite)
        ordered = np.sort(classes if normal else finite)
        if merged is not None:
            merged.add(finite, classes, ordered if normal else float32_classes(ordered))
    sketch = sorted_kll(ordered, summary.items) if len(finite) else None
    summary.add(finite, _ALL, missing, wrong_type, nan, inf, sketch)
    return add_sorted_bucket_counts(buckets, ordered, fine or FLOAT32_CLASSES)


def _fresh(spec: FieldSpec, config: Config) -> Summary:
    if spec.type == "numeric":
        return NumericSummary(NumericBinning(np.empty(0)), k=config.sketch.kll_k)
    return CategoricalSummary(
        CategoricalBinning(()),
        hll_lg_k=config.sketch.hll_lg_k,
        frequent=training_frequent(config.sketch.top_categories),
    )


class _Summaries:
    """Summaries pickled as DataSketches' bytes (the sketches themselves do not pickle)."""

    config: Config
    summaries: dict[str, Summary]

    def _pickled(self) -> dict[str, Any]:
        return {name: encode_summary(s) for name, s in self.summaries.items()}

    def _unpickled(self, payload: dict[str, Any]) -> dict[str, Summary]:
        specs = {s.name: s for s in self.config.fields}
        result = {}
        for name, encoded in payload.items():
            summary = _fresh(specs[name], self.config)
            decode_summary(summary, encoded)
            result[name] = summary
        return result


class SketchPass(_Summaries):
    """Pass 1 over the data's columns."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.rows = 0
        self.summaries = {s.name: _fresh(s, config) for s in config.columns}
        self.buckets = {s.name: KeyCounts() for s in config.columns if s.type == "numeric"}
        share = ds.kll_floats_sketch.get_normalized_rank_error(config.sketch.kll_k, False)
        self.merged = {name: MergedClasses(share) for name in self.buckets}
        self.tallies: dict[str, Counter[str] | None] = {
            s.name: Counter() for s in config.columns if s.type != "numeric"
        }
        derived = config.multivariate
        self.moments = FoldedMoments(len(derived.features)) if derived is not None else None

    @property
    def reads(self) -> Sequence[FieldSpec]:
        return self.config.columns

    def empty(self) -> SketchPass:
        return SketchPass(self.config)

    def add(self, chunk: Chunk) -> None:
        self.rows += chunk.rows
        if self.moments is not None and self.config.multivariate is not None:
            self.moments.add(complete_rows(chunk, self.config.multivariate.features))
        for name, summary in self.summaries.items():
            column = chunk.columns[name]
            if isinstance(summary, NumericSummary):
                chunk.keys[name] = _add_numeric(
                    summary,
                    self.buckets[name],
                    column.values,
                    column.missing,
                    column.wrong_type,
                    self.merged[name],
                )
                continue
            distinct, n = column.tally()
            table = dict(zip(distinct.tolist(), n.tolist(), strict=True))
            assert isinstance(summary, CategoricalSummary)
            summary.add(distinct, n, summary.binning.count_table(table), column.missing)
            tally = self.tallies[name]
            if tally is not None:
                tally.update(table)
                if len(tally) > KNOWN_CATEGORY_LIMIT:
                    self.tallies[name] = None

    def merge(self, other: SketchPass, /) -> None:
        self.rows += other.rows
        if self.moments is not None and other.moments is not None:
            self.moments.merge(other.moments)
        for name, summary in self.summaries.items():
            summary.merge(other.summaries[name])  # type: ignore[arg-type]
        for name, counts in self.buckets.items():
            counts.merge(other.buckets[name])
            self.merged[name].merge(other.merged[name])
        for name, tally in self.tallies.items():
            theirs = other.tallies[name]
            if tally is None or theirs is None:
                self.tallies[name] = None
                continue
            tally.update(theirs)
            if len(tally) > KNOWN_CATEGORY_LIMIT:
                self.tallies[name] = None

    def __getstate__(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "rows": self.rows,
            "summaries": self._pickled(),
            "buckets": self.buckets,
            "merged": self.merged,
            "tallies": self.tallies,
            "moments": self.moments,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.config, self.rows = state["config"], state["rows"]
        self.summaries = self._unpickled(state["summaries"])
        self.buckets, self.merged = state["buckets"], state["merged"]
        self.tallies, self.moments = state["tallies"], state["moments"]


class FinePass(_Summaries):
    """Pass 1c, over the fields whose values float32 merges (``fine``, from pass 1's
    :class:`~driftgauge.sketches.classes.MergedClasses`): their sketches of the float64
    values and their bucket counts of fine classes, in place of pass 1's."""

    # Reads the fields' values, which a runner may have kept as pass 1's class keys alone.
    reads_values = True

    def __init__(self, config: Config, fine: Mapping[str, FineClasses]) -> None:
        self.config, self.fine = config, dict(fine)
        self.summaries = {s.name: _fresh(s, config) for s in self.reads}
        self.buckets = {name: KeyCounts() for name in self.fine}

    @property
    def reads(self) -> Sequence[FieldSpec]:
        return [s for s in self.config.columns if s.name in self.fine]

    def empty(self) -> FinePass:
        return FinePass(self.config, self.fine)

    def add(self, chunk: Chunk) -> None:
        for name, summary in self.summaries.items():
            column = chunk.columns[name]
            assert isinstance(summary, NumericSummary)
            _add_numeric(
                summary,
                self.buckets[name],
                column.values,
                column.missing,
                column.wrong_type,
                fine=self.fine[name],
            )

    def merge(self, other: FinePass, /) -> None:
        for name, summary in self.summaries.items():
            summary.merge(other.summaries[name])  # type: ignore[arg-type]
            self.buckets[name].merge(other.buckets[name])

    def __getstate__(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "fine": self.fine,
            "summaries": self._pickled(),
            "buckets": self.buckets,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.config, self.fine = state["config"], state["fine"]
        self.summaries = self._unpickled(state["summaries"])
        self.buckets = state["buckets"]


def _unless_filled(crossfit: CrossFit | None, filled: bool) -> CrossFit | None:
    """What a pass's pickle holds of its cross-fit: nothing once the state is filled.

    A runner sends each part an empty state and merges the filled one it gets back; merging
    never reads the cross-fit, whose :class:`~driftgauge.baseline.multivariate.Copies` are
    up to 9 MiB: a filled state's pickle (each Spark task's, each Dask partition's) goes
    without them.  An unpickled filled state is only merged, never filled again.
    """
    return None if filled else crossfit


class ErrorPass(_Summaries):
    """Pass 1b: sketches and bucket counts of the rows' reconstruction errors."""

    crossfit: CrossFit | None  # None in a filled state unpickled (_unless_filled)

    def __init__(self, config: Config, crossfit: CrossFit) -> None:
        assert config.multivariate is not None
        self.config, self.crossfit = config, crossfit
        self.derived = config.multivariate
        spec = next(s for s in config.fields if s.name == self.derived.name)
        self.summaries = {spec.name: _fresh(spec, config)}
        self.buckets = KeyCounts()
        self.filled = False

    @property
    def reads(self) -> Sequence[FieldSpec]:
        return [s for s in self.config.features if s.name in self.derived.features]

    def empty(self) -> ErrorPass:
        assert self.crossfit is not None
        return ErrorPass(self.config, self.crossfit)

    def add(self, chunk: Chunk) -> None:
        assert self.crossfit is not None
        self.filled = True
        errors = self.crossfit.errors(complete_rows(chunk, self.derived.features))
        summary = self.summaries[self.derived.name]
        assert isinstance(summary, NumericSummary)
        _add_numeric(summary, self.buckets, errors)

    def merge(self, other: ErrorPass, /) -> None:
        summary = self.summaries[self.derived.name]
        summary.merge(other.summaries[self.derived.name])  # type: ignore[arg-type]
        self.buckets.merge(other.buckets)

    def __getstate__(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "crossfit": _unless_filled(self.crossfit, self.filled),
            "summaries": self._pickled(),
            "buckets": self.buckets,
            "filled": self.filled,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.config, self.crossfit = state["config"], state["crossfit"]
        assert self.config.multivariate is not None
        self.derived = self.config.multivariate
        self.summaries = self._unpickled(state["summaries"])
        self.buckets, self.filled = state["buckets"], state["filled"]


class ClassPass:
    """Pass 2: class counts in the wanted buckets; bins of untallied categorical fields."""

    def __init__(
        self,
        config: Config,
        wanted: Mapping[str, npt.ArrayLike],
        categorical: dict[str, CategoricalBinning],
        crossfit: CrossFit | None = None,
        fine: Mapping[str, FineClasses] | None = None,
    ) -> None:
        self.config, self.crossfit = config, crossfit
        self.wanted = {name: np.asarray(b, dtype=np.intp) for name, b in wanted.items()}
        self.categorical = categorical
        self.fine = dict(fine or {})
        self.classes = {
            name: ClassCounts.of(b, self.fine.get(name, FLOAT32_CLASSES))
            for name, b in self.wanted.items()
        }
        self.bins = {name: np.zeros(b.size, dtype=np.int64) for name, b in categorical.items()}
        derived = config.multivariate
        self.derived = derived.name if derived is not None and derived.name in wanted else None
        self.filled = False

    @property
    def reads(self) -> Sequence[FieldSpec]:
        names = set(self.wanted) | set(self.categorical)
        if self.derived is not None and self.config.multivariate is not None:
            names |= set(self.config.multivariate.features)
        return [s for s in self.config.columns if s.name in names]

    @property
    def from_keys(self) -> bool:
        """Whether every field the pass reads can be counted from pass 1's sorted class keys
        alone (:attr:`~driftgauge.baseline.chunks.Chunk.keys`): no categorical bins to count,
        no reconstruction errors (which need the multivariate features' values) and no
        field of fine classes (pass 1's keys are of float32 classes)."""
        return not self.categorical and self.derived is None and not self.fine

    @property
    def reads_values(self) -> bool:
        """Whether the pass needs values a runner may have kept as pass 1's keys alone."""
        return bool(self.fine)

    def empty(self) -> ClassPass:
        return ClassPass(self.config, self.wanted, self.categorical, self.crossfit, self.fine)

    def add(self, chunk: Chunk) -> None:
        self.filled = True
        for name, counts in self.classes.items():
            if name in chunk.keys and name not in self.fine:  # pass 1's, kept by the runner
                counts.add_sorted(chunk.keys[name])
                continue
            if name == self.derived:
                assert self.crossfit is not None and self.config.multivariate is not None
                values = self.crossfit.errors(
                    complete_rows(chunk, self.config.multivariate.features)
                )
            else:
                values = chunk.columns[name].values
            counts.add(values[np.isfinite(values)])
        for name, binning in self.categorical.items():
            self.bins[name] += binning.count(chunk.columns[name].values)

    def merge(self, other: ClassPass, /) -> None:
        for name, counts in self.classes.items():
            counts.merge(other.classes[name])
        for name, bins in self.bins.items():
            bins += other.bins[name]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "crossfit": _unless_filled(self.crossfit, self.filled)}


class SegmentPass:
    """Pass 3: each prediction's bins within each top value of each segment feature."""

    def __init__(
        self,
        config: Config,
        segments: dict[str, CategoricalBinning],
        predictions: dict[str, NumericBinning | CategoricalBinning],
    ) -> None:
        self.config, self.segments, self.predictions = config, segments, predictions
        self.counts: dict[str, dict[str, CountArray]] = {
            s: {
                p: np.zeros((b.size - 1, predicted.size), dtype=np.int64)
                for p, predicted in predictions.items()
            }
            for s, b in segments.items()
        }

    @property
    def reads(self) -> Sequence[FieldSpec]:
        names = set(self.segments) | set(self.predictions)
        return [s for s in self.config.columns if s.name in names]

    def empty(self) -> SegmentPass:
        return SegmentPass(self.config, self.segments, self.predictions)

    def add(self, chunk: Chunk) -> None:
        for name, binning in self.segments.items():
            segment = chunk.columns[name].aligned_indexes(binning)
            for prediction, predicted in self.predictions.items():
                target = self.counts[name][prediction]
                column = chunk.columns[prediction]
                if isinstance(predicted, NumericBinning):
                    slots = predicted.slots(column.values)
                else:
                    slots = column.aligned_indexes(predicted)
                keep = (segment >= 0) & (slots >= 0)
                flat = segment[keep] * target.shape[1] + slots[keep]
                target += np.bincount(flat, minlength=target.size).reshape(target.shape)

    def merge(self, other: SegmentPass, /) -> None:
        for name, tables in self.counts.items():
            for prediction, table in tables.items():
                table += other.counts[name][prediction]
