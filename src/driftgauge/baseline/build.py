"""The baseline: what the training data looked like, built once, read by the sidecar.

Built in passes over the data (``passes.py``), each run over the data's
parts by a runner (``local.py`` for files on every core; Spark and Dask).
The first fills each field's KLL sketch (``sketch.kll_k``), moments and
category tally, and counts each numeric field's values into buckets of
float32 classes; the second counts the classes of the buckets the edge rule
needs.  The bin edges then follow the rule of :mod:`driftgauge.sketches.edges`
exactly (:mod:`driftgauge.sketches.classes`): point masses in bins of their
own, equal-mass bins for the rest, edges between float32 values.  A field
whose data float32 would merge (a large share of values it rounds alike that
differ: pass 1's :class:`~driftgauge.sketches.classes.MergedClasses`) is sketched
again from its float64 values with classes of its own range (pass 1c,
:class:`~driftgauge.sketches.classes.FineClasses`), and its live windows keep
float64 sketches (:attr:`~driftgauge.baseline.model.FieldBaseline.live_items`).
Edges and bin counts are exact, so they are the same on every run and however the
data was split.  Categories are stored in their canonical spelling
(:mod:`driftgauge.canonical`).
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import datasketches as ds
import numpy as np
import numpy.typing as npt

from driftgauge.baseline.dask import DaskRunner, is_dask_dataframe
from driftgauge.baseline.inputs import DataInput
from driftgauge.baseline.local import LocalRunner
from driftgauge.baseline.model import Baseline, FieldBaseline
from driftgauge.baseline.multivariate import CrossFit, FoldedMoments, PcaModel
from driftgauge.baseline.passes import ClassPass, ErrorPass, FinePass, SegmentPass, SketchPass
from driftgauge.baseline.runner import Runner
from driftgauge.baseline.spark import SparkRunner, is_spark_dataframe
from driftgauge.baseline.store import finish
from driftgauge.config import Config, MultivariateConfig
from driftgauge.exceptions import DataError
from driftgauge.sketches.classes import (
    BUCKETS,
    FLOAT32_CLASSES,
    ClassCounts,
    ClassEdges,
    FineClasses,
    KeyCounts,
    Keying,
    class_edges,
    occupied,
)
from driftgauge.sketches.edges import equal_mass_edges
from driftgauge.sketches.summary import (
    OTHER,
    UNSEEN,
    CategoricalBinning,
    CategoricalSummary,
    NumericBinning,
    NumericSummary,
)

__all__ = [
    "Progress",
    "build_baseline",
    "category_binning",
    "equal_mass_edges_of",
    "rank_error",
    "segment_binning",
    "terminal_progress",
]


Progress = Callable[[str, int, int], None]
DataFrame = Any  # a pyspark or Dask DataFrame (neither is imported to name its type)


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
    data: Sequence[DataInput | Path] | Runner | DataFrame,
    progress: Progress = _no_progress,
    chunk_rows: int = 65_536,
    workers: int | None = None,
) -> Baseline:
    """The baseline of ``data``: files (local paths or resolved ``--data`` inputs, read by
    ``workers`` processes, default one per core), a Spark or Dask DataFrame (each
    pass a job over its partitions, :mod:`~driftgauge.baseline.spark`,
    :mod:`~driftgauge.baseline.dask`), or any
    :class:`~driftgauge.baseline.runner.Runner`.

    Passes: sketches and bucket counts; the reconstruction errors (with
    ``multivariate``); class counts where the edges fall (repeated in the rare
    case the rule needs buckets the first guess left out); segments (with
    ``segments``).  The same data and config give the same edges and counts
    however the data is split.
    """
    # DataFrames first: their column access is attribute access, so a column named
    # "run" would make one look like a Runner.
    if is_spark_dataframe(data):
        return _build(config, SparkRunner(data, progress=progress))
    if is_dask_dataframe(data):
        with DaskRunner(data, progress=progress) as dask:
            return _build(config, dask)
    if isinstance(data, Runner):
        return _build(config, data)
    keyed = _keyed(config)
    with LocalRunner(data, config.columns, workers, progress, chunk_rows, keyed) as runner:
        return _build(config, runner)


def _keyed(config: Config) -> list[str]:
    """The numeric columns no pass after the first reads row by row (the multivariate
    features and, with segments, the predictions do): pass 2 needs only their class keys."""
    rowwise = set(config.multivariate.features) if config.multivariate is not None else set()
    if config.segments.features:
        rowwise |= {p.name for p in config.predictions}
    return [s.name for s in config.columns if s.type == "numeric" and s.name not in rowwise]


def _build(config: Config, runner: Runner) -> Baseline:
    first = runner.run(SketchPass(config), "pass 1/2: sketches")
    summaries = dict(first.summaries)
    buckets = dict(first.buckets)
    fine = _fine(config, first)
    if fine:
        finer = runner.run(FinePass(config, fine), "pass 1c: float64 fields")
        summaries |= finer.summaries
        buckets |= finer.buckets
    pca, crossfit = None, None
    derived = config.multivariate
    if derived is not None:
        assert first.moments is not None
        pca, crossfit = _fit(derived, first.moments)
        errors = runner.run(ErrorPass(config, crossfit), "pass 1b: multivariate")
        summaries |= errors.summaries
        buckets[derived.name] = errors.buckets
    top = config.sketch.top_categories
    binnings: dict[str, NumericBinning | CategoricalBinning] = {}
    untallied: dict[str, CategoricalBinning] = {}
    for spec in config.fields:
        summary = summaries[spec.name]
        if isinstance(summary, CategoricalSummary):
            tally = first.tallies[spec.name]
            binnings[spec.name] = category_binning(summary, tally, top)
            if tally is None:
                untallied[spec.name] = binnings[spec.name]  # type: ignore[assignment]
    numeric = {s.name: s for s in config.fields if s.type == "numeric"}
    wanted = {
        name: _guess_buckets(
            buckets[name],
            summaries[name],  # type: ignore[arg-type]
            config.sketch.bins,
            fine.get(name, FLOAT32_CLASSES),
        )
        for name in numeric
    }
    classes: dict[str, ClassCounts] = {}
    categorical_bins: dict[str, npt.NDArray[np.int64]] = {}
    result: dict[str, ClassEdges] = {}
    stage = "pass 2/2: exact bins"
    while wanted or untallied:
        counted = runner.run(ClassPass(config, wanted, untallied, crossfit, fine), stage)
        categorical_bins |= counted.bins
        untallied = {}
        classes |= counted.classes
        wanted = {}
        for name, counts in classes.items():
            summary = summaries[name]
            assert isinstance(summary, NumericSummary)
            found = class_edges(
                buckets[name], counts, config.sketch.bins, summary.minimum, summary.maximum
            )
            result[name] = found
            if found.needed:
                wanted[name] = np.union1d(np.flatnonzero(counts.wanted), sorted(found.needed))
        stage = "pass 2b: exact bins"
    for name, found in result.items():
        binnings[name] = NumericBinning(found.edges)
    segments = _segments(config, runner, binnings)
    fields = {}
    for spec in config.fields:
        summary = summaries[spec.name]
        binning = binnings[spec.name]
        tally = first.tallies.get(spec.name)
        if isinstance(summary, NumericSummary):
            assert isinstance(binning, NumericBinning)
            summary = replace(summary, binning=binning, bins=result[spec.name].counts)
        else:
            assert isinstance(binning, CategoricalBinning) and isinstance(
                summary, CategoricalSummary
            )
            bins = binning.count_table(tally) if tally is not None else categorical_bins[spec.name]
            summary = replace(summary, binning=binning, bins=bins)
        exact_edges = 0.0 if spec.type == "numeric" else None
        fields[spec.name] = FieldBaseline(
            spec,
            summary,
            True,
            dict(tally) if tally is not None else None,
            exact_edges,
            "float64" if spec.name in fine else "float32",
        )
    return finish(config, first.rows, fields, segments, pca)


def _fine(config: Config, first: SketchPass) -> dict[str, FineClasses]:
    """The numeric fields whose values float32 would merge, and their classes (from the
    exact extremes, so the same however the data was split)."""
    fine = {}
    for name, merged in first.merged.items():
        summary = first.summaries[name]
        if merged.fine and isinstance(summary, NumericSummary):
            fine[name] = FineClasses.spanning(summary.minimum, summary.maximum)
    return fine


def _guess_buckets(
    buckets: KeyCounts, summary: NumericSummary, bins: int, keying: Keying
) -> npt.NDArray[np.int64]:
    """The buckets the edge rule will likely need counted class by class.

    Those that may hold a point mass, those holding the equal-mass targets
    were there no point masses, and those holding the edges the sketch rule
    places (which accounts for the point masses approximately).  A wrong guess
    costs one more pass, never a different result.
    """
    held, counts = occupied(buckets)
    total = int(counts.sum())
    if total == 0:
        return np.empty(0, dtype=np.int64)
    through = np.cumsum(counts)
    targets = (np.arange(1, bins) * total + bins - 1) // bins
    guesses = [
        held[counts * bins >= total],
        held[np.searchsorted(through, np.minimum(targets, total - 1) + 1, side="left")],
    ]
    approximate = equal_mass_edges_of(summary, bins, keying != FLOAT32_CLASSES)
    if len(approximate):
        keys = keying.keys(approximate).astype(np.int64)
        guesses += [keys >> 16, (keys - 1) >> 16]
    chosen: npt.NDArray[np.int64] = np.unique(np.concatenate(guesses)).astype(np.int64)
    return chosen[(chosen >= 0) & (chosen < BUCKETS)]


def _segments(
    config: Config, runner: Runner, binnings: dict[str, NumericBinning | CategoricalBinning]
) -> dict[str, dict[str, npt.NDArray[np.int64]]]:
    if not config.segments.features:
        return {}
    segments = {
        name: segment_binning(binnings[name], config.segments.top)
        for name in config.segments.features
    }
    predictions = {p.name: binnings[p.name] for p in config.predictions}
    counted = runner.run(SegmentPass(config, segments, predictions), "pass 3: segments")
    return counted.counts


def _fit(derived: MultivariateConfig, moments: FoldedMoments) -> tuple[PcaModel, CrossFit]:
    try:
        return CrossFit.fit(derived, moments)
    except ValueError as exc:
        raise DataError(str(exc)) from None


_BUCKETS = frozenset({OTHER, UNSEEN})  # the labels of a categorical field's last two bins


def segment_binning(binning: NumericBinning | CategoricalBinning, top: int) -> CategoricalBinning:
    """A segment feature's bounded values: its top baseline categories, the rest ``__other__``.

    Its ``__unseen__`` bucket is never used (no ``known`` set), so there are
    ``top + 1`` segments at most.
    """
    assert isinstance(binning, CategoricalBinning)
    return CategoricalBinning(binning.categories[:top], None)


def equal_mass_edges_of(
    summary: NumericSummary, bins: int, float64: bool = False
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """The sketch rule's edges of ``summary``; of a field of ``float64`` classes, whose
    values float32 merges, its sketch's equal-mass quantiles (the rule's edges are float32
    boundaries)."""
    if not float64 or summary.kll.is_empty():
        return equal_mass_edges(summary.kll, bins, summary.minimum, summary.maximum)
    edges = np.unique(np.asarray(summary.kll.get_quantiles(np.arange(1, bins) / bins)))
    return edges[(edges > summary.minimum) & (edges <= summary.maximum)]


def rank_error(sketch: Any) -> float:
    """The normalized rank error of ``sketch``'s quantiles: 0 while it still holds every value."""
    if sketch.is_empty() or not sketch.is_estimation_mode():
        return 0.0
    return float(sketch.normalized_rank_error(False))


def category_binning(
    summary: CategoricalSummary, tally: Counter[str] | None, top: int
) -> CategoricalBinning:
    # A category named like a bucket's label would give two series one label: it counts as
    # __other__, never as a category of its own.
    if tally is not None:
        kept = [item for item in tally.items() if item[0] not in _BUCKETS]
        ranked = sorted(kept, key=lambda item: (-item[1], item[0]))
        return CategoricalBinning(tuple(c for c, _ in ranked[:top]), frozenset(tally))
    # The best guess of the top: every item that may be frequent, ranked by its estimate.
    # (NO_FALSE_POSITIVES keeps only those certainly above the sketch's error, and may
    # leave most of the ``top`` bins unused.)
    items = summary.frequent.get_frequent_items(ds.frequent_items_error_type.NO_FALSE_NEGATIVES)
    kept = [item for item in items if item[0] not in _BUCKETS]
    ranked = sorted(kept, key=lambda item: (-item[1], item[0]))
    return CategoricalBinning(tuple(item[0] for item in ranked[:top]), None)
