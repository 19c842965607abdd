"""The baseline: what the training data looked like, built once, read by the sidecar.

Built in two streaming passes over the data files.  The first fills an
accurate KLL sketch (k = ``EDGE_SKETCH_K``) and the moments of each numeric
field and counts categories; the baseline's bin edges come from that sketch
by the rule in :mod:`driftgauge.sketches.edges` (point masses in bins of
their own, equal-mass bins for the rest, edges between float32 values), and
the second pass counts every value into those bins exactly, so the
baseline's bin shares carry no sketch error.  The sketch kept in the file
is that sketch reduced to ``sketch.kll_k``, the live windows' accuracy.
Categories are stored in their canonical spelling (:mod:`driftgauge.canonical`).
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import datasketches as ds
import numpy as np
import numpy.typing as npt

from driftgauge.baseline.datafiles import Chunk, read_chunks
from driftgauge.baseline.inputs import DataInput, as_input
from driftgauge.baseline.model import KNOWN_CATEGORY_LIMIT, Baseline, FieldBaseline
from driftgauge.baseline.multivariate import Moments, PcaModel
from driftgauge.baseline.store import finish
from driftgauge.config import Config, MultivariateConfig
from driftgauge.exceptions import DataError
from driftgauge.sketches.edges import EDGE_SKETCH_K, equal_mass_edges
from driftgauge.sketches.summary import (
    CategoricalBinning,
    CategoricalSummary,
    NumericBinning,
    NumericSummary,
    Summary,
)

__all__ = [
    "Progress",
    "SegmentCrosstab",
    "build_baseline",
    "category_binning",
    "equal_mass_edges_of",
    "rank_error",
    "segment_binning",
    "terminal_progress",
]


Progress = Callable[[str, int, int], None]


def _no_progress(stage: str, done: int, total: int) -> None:
    return None


def terminal_progress(stage: str, done: int, total: int) -> None:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal."""
    if not sys.stderr.isatty():
        return
    share = min(1.0, done / total) if total else 1.0
    bar = "#" * int(share * 30)
    end = "\n" if share >= 1.0 else ""
    sys.stderr.write(f"\r{stage:<24} [{bar:<30}] {share:6.1%}{end}")
    sys.stderr.flush()


def build_baseline(
    config: Config,
    files: Sequence[DataInput | Path],
    progress: Progress = _no_progress,
    chunk_rows: int = 65_536,
) -> Baseline:
    """Two streaming passes over ``files``: sketches and categories, then exact bin counts.

    With ``multivariate`` configured, the first pass also sums the moments
    its PCA is fitted from, and one more pass over just those features
    sketches the rows' reconstruction errors before the bins are counted.
    """
    fields = config.fields
    derived = config.multivariate
    moments = Moments(len(derived.features)) if derived is not None else None
    inputs = [as_input(f) for f in files]  # a local path is checked here, before any reading
    sizes = sum(f.size for f in inputs)
    k, top = config.sketch.kll_k, config.sketch.top_categories
    first: dict[str, Summary] = {}
    counts: dict[str, Counter[str] | None] = {}
    for spec in fields:
        if spec.type == "numeric":
            first[spec.name] = NumericSummary(NumericBinning(np.empty(0)), k=EDGE_SKETCH_K)
        else:
            first[spec.name] = CategoricalSummary(
                CategoricalBinning(()), hll_lg_k=config.sketch.hll_lg_k
            )
            counts[spec.name] = Counter()
    rows = 0
    offset = 0
    for path in inputs:
        for chunk in read_chunks(path, config.columns, chunk_rows):
            rows += chunk.rows
            if moments is not None and derived is not None:
                moments.add(_complete(chunk, derived.features))
            for spec in config.columns:
                column = chunk.columns[spec.name]
                summary = first[spec.name]
                if isinstance(summary, NumericSummary):
                    summary.update(column.values, column.missing, column.wrong_type)
                else:
                    summary.update(column.values, column.missing)
                    tally = counts[spec.name]
                    if tally is not None and len(column.values):
                        distinct, n = np.unique(column.values, return_counts=True)
                        tally.update(dict(zip(distinct.tolist(), n.tolist(), strict=True)))
                        if len(tally) > KNOWN_CATEGORY_LIMIT:
                            counts[spec.name] = None
            progress("pass 1/2: sketches", offset + chunk.bytes_read, sizes)
        offset += path.size
    pca = None
    if moments is not None and derived is not None:
        pca = _fit(derived, moments)
        errors_summary = first[derived.name]
        assert isinstance(errors_summary, NumericSummary)
        for chunk in _chunks(inputs, derived.features, config, chunk_rows, progress, sizes):
            errors_summary.update(pca.errors(_complete(chunk, derived.features)))
    binnings: dict[str, NumericBinning | CategoricalBinning] = {}
    rank_errors: dict[str, float] = {}
    for spec in fields:
        summary = first[spec.name]
        if isinstance(summary, NumericSummary):
            binnings[spec.name] = NumericBinning(equal_mass_edges_of(summary, config.sketch.bins))
            rank_errors[spec.name] = rank_error(summary.kll)
            first[spec.name] = replace(summary, k=k, kll=_reduced(summary.kll, k))
        else:
            binnings[spec.name] = category_binning(summary, counts[spec.name], top)
    second = {name: np.zeros(b.size, dtype=np.int64) for name, b in binnings.items()}
    needs_bins = [s for s in fields if s.type == "numeric" or counts.get(s.name) is None]
    crosstab = SegmentCrosstab(config, binnings)
    needs_pass = [s for s in fields if s in needs_bins or s.name in crosstab.columns]
    offset = 0
    read = [s for s in needs_pass if s.role != "multivariate"]
    if pca is not None and derived is not None:
        read += [s for s in config.features if s.name in derived.features and s not in read]
    for path in inputs if needs_pass else ():
        for chunk in read_chunks(path, read, chunk_rows):
            for spec in needs_bins:
                if spec.role == "multivariate":
                    assert pca is not None and derived is not None
                    numeric = binnings[spec.name]
                    assert isinstance(numeric, NumericBinning)
                    second[spec.name] += numeric.count(
                        pca.errors(_complete(chunk, derived.features))
                    )
                    continue
                values = chunk.columns[spec.name].values
                if spec.type == "numeric":
                    values = values[np.isfinite(values)]
                second[spec.name] += binnings[spec.name].count(values)
            crosstab.add(chunk)
            progress("pass 2/2: exact bins", offset + chunk.bytes_read, sizes)
        offset += path.size
    result = {}
    for spec in fields:
        summary = first[spec.name]
        tally = counts.get(spec.name)
        binning = binnings[spec.name]
        bins = second[spec.name]
        if isinstance(binning, CategoricalBinning) and tally is not None:
            bins = binning.count_table(tally)
        if isinstance(summary, NumericSummary):
            assert isinstance(binning, NumericBinning)
            summary = replace(summary, binning=binning, bins=bins)
        else:
            assert isinstance(binning, CategoricalBinning)
            summary = replace(summary, binning=binning, bins=bins)
        result[spec.name] = FieldBaseline(
            spec,
            summary,
            True,
            dict(tally) if tally is not None else None,
            rank_errors.get(spec.name),
        )
    return finish(config, rows, result, crosstab.counts, pca)


def _complete(chunk: Chunk, names: Sequence[str]) -> npt.NDArray[np.float64]:
    """The rows of ``chunk`` holding a finite value of every one of ``names``, as a matrix."""
    matrix = np.column_stack([chunk.columns[name].values for name in names]).astype(np.float64)
    complete: npt.NDArray[np.float64] = matrix[np.isfinite(matrix).all(axis=1)]
    return complete


def _fit(derived: MultivariateConfig, moments: Moments) -> PcaModel:
    try:
        return PcaModel.fit(derived, moments)
    except ValueError as exc:
        raise DataError(str(exc)) from None


def _chunks(
    files: Sequence[DataInput],
    names: Sequence[str],
    config: Config,
    chunk_rows: int,
    progress: Progress,
    sizes: int,
) -> Iterator[Chunk]:
    """The chunks of ``files`` holding just the features ``names``, with progress."""
    specs = [spec for spec in config.features if spec.name in names]
    offset = 0
    for path in files:
        for chunk in read_chunks(path, specs, chunk_rows):
            yield chunk
            progress("pass 1b: multivariate", offset + chunk.bytes_read, sizes)
        offset += path.size


class SegmentCrosstab:
    """Exact counts of each prediction's bins within each top value of each segment feature.

    Segments are the segment feature's ``segments.top`` most frequent baseline
    categories plus ``__other__``; the live side uses the same, so per-segment
    prediction drift compares like with like.
    """

    def __init__(
        self, config: Config, binnings: dict[str, NumericBinning | CategoricalBinning]
    ) -> None:
        self.binnings = binnings
        self.segments = {
            name: segment_binning(binnings[name], config.segments.top)
            for name in config.segments.features
        }
        self.predictions = list(config.predictions)
        self.columns = (
            set(self.segments) | {p.name for p in self.predictions} if self.segments else set()
        )
        self.counts: dict[str, dict[str, npt.NDArray[np.int64]]] = {
            s: {
                p.name: np.zeros((b.size - 1, binnings[p.name].size), dtype=np.int64)
                for p in self.predictions
            }
            for s, b in self.segments.items()
        }

    def add(self, chunk: Chunk) -> None:
        for name, binning in self.segments.items():
            segment = chunk.columns[name].aligned_indexes(binning)
            for spec in self.predictions:
                target = self.counts[name][spec.name]
                column = chunk.columns[spec.name]
                predicted = self.binnings[spec.name]
                if isinstance(predicted, NumericBinning):
                    slots = predicted.slots(column.values)
                else:
                    slots = column.aligned_indexes(predicted)
                keep = (segment >= 0) & (slots >= 0)
                flat = segment[keep] * target.shape[1] + slots[keep]
                target += np.bincount(flat, minlength=target.size).reshape(target.shape)


def segment_binning(binning: NumericBinning | CategoricalBinning, top: int) -> CategoricalBinning:
    """A segment feature's bounded values: its top baseline categories, the rest ``__other__``.

    Its ``__unseen__`` bucket is never used (no ``known`` set), so there are
    ``top + 1`` segments at most.
    """
    assert isinstance(binning, CategoricalBinning)
    return CategoricalBinning(binning.categories[:top], None)


def equal_mass_edges_of(
    summary: NumericSummary, bins: int
) -> np.ndarray[Any, np.dtype[np.float64]]:
    return equal_mass_edges(summary.kll, bins, summary.minimum, summary.maximum)


def rank_error(sketch: Any) -> float:
    """The normalized rank error of ``sketch``'s quantiles: 0 while it still holds every value."""
    if sketch.is_empty() or not sketch.is_estimation_mode():
        return 0.0
    return float(sketch.normalized_rank_error(False))


def _reduced(sketch: Any, k: int) -> Any:
    """``sketch`` merged into an empty sketch of accuracy ``k`` (what live windows use)."""
    reduced = ds.kll_doubles_sketch(k)
    reduced.merge(sketch)
    return reduced


def category_binning(
    summary: CategoricalSummary, tally: Counter[str] | None, top: int
) -> CategoricalBinning:
    if tally is not None:
        ranked = sorted(tally.items(), key=lambda item: (-item[1], item[0]))
        return CategoricalBinning(tuple(c for c, _ in ranked[:top]), frozenset(tally))
    items = summary.frequent.get_frequent_items(ds.frequent_items_error_type.NO_FALSE_POSITIVES)
    ranked = sorted(items, key=lambda item: (-item[1], item[0]))
    return CategoricalBinning(tuple(item[0] for item in ranked[:top]), None)
