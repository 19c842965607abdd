"""Field drift: live windows and counters for every field, and the drift statistics over them.

The :class:`FieldTracker` is the tracker every model has (see
:mod:`driftgauge.monitor.tracker`).  The batcher hands it batches of
:class:`~driftgauge.typing.Extracted` columns.  Each batch becomes one float64 array per numeric field,
counted once into the baseline's bins and then added to the current slice
of every window and to the cumulative counters; categorical fields likewise
with string arrays.  Numeric fields that arrive side by side as a block (a
wide model's row matrix) are sorted, binned and range-checked as one matrix
(:class:`~driftgauge.sketches.summary.NumericBlock`), and their bin counts
added with one call per window (each slice keeps them as rows of one
table), leaving one sketch update and a few additions per field and window.
``compute()`` merges each window's slices and computes PSI, KS, JS, χ² and
live quantiles: the ``fields`` of the immutable :class:`Snapshot` the
exposition layer reads; it runs on a schedule, never per request.

Thread safety: ``ingest`` and the merge step of ``compute`` hold one lock;
the statistics themselves run on merged copies outside it, so a recompute
in a worker thread never stalls ingestion for long.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt

from driftgauge import stats
from driftgauge.baseline import Baseline, FieldBaseline
from driftgauge.baseline.multivariate import reconstruction_errors
from driftgauge.canonical import canonical_counts
from driftgauge.config import Config, FieldSpec
from driftgauge.monitor.collect import (
    BlockPlan,
    Owners,
    Requests,
    as_slice,
    block_slots,
    collect,
    owners_of,
)
from driftgauge.monitor.tracker import Observation, SnapshotPart
from driftgauge.sketches.block import (
    NumericBlock,
    StackedBinning,
    add_block,
    bin_table,
    share_bins,
)
from driftgauge.sketches.edges import float32_ceiling, float32_floor
from driftgauge.sketches.requests import design_effect
from driftgauge.sketches.sealed import SliceSealer
from driftgauge.sketches.summary import (
    LIVE_ITEMS,
    CategoricalSummary,
    ItemType,
    NumericBinning,
    NumericSummary,
    Summary,
    category_indexes,
    kll_items,
    new_kll,
    split_finite,
    to_categories,
    to_floats,
)
from driftgauge.sketches.window import SlicedWindow
from driftgauge.typing import Extracted

if TYPE_CHECKING:
    from driftgauge.monitor.outcomes import PerformanceStats
    from driftgauge.monitor.segments import Fairness, SegmentStats

__all__ = [
    "CATEGORICAL_INVALID_REASONS",
    "NUMERIC_INVALID_REASONS",
    "QUANTILES",
    "FieldCounters",
    "FieldStats",
    "FieldTracker",
    "Snapshot",
]

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
# Below this many values a batch sketch costs more to merge than updating each window directly.
_SHARED_SKETCH_MIN = 1024
# Block layouts remembered (labels may come from request bodies, so the table is bounded).
_BLOCK_PLANS = 64
# The ``reason`` values of driftgauge_invalid_total, by field type.
NUMERIC_INVALID_REASONS = ("wrong_type", "nan", "inf", "out_of_range")
CATEGORICAL_INVALID_REASONS = ("unseen_category",)


@dataclass(slots=True)
class FieldCounters:
    """Cumulative counts for one field since the sidecar started."""

    observations: int = 0
    missing: int = 0
    absent: int = 0  # rows that lacked the field: no key, column or tensor (also counted missing)
    invalid: Counter[str] = field(default_factory=Counter)
    bins: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def copy(self) -> FieldCounters:
        return FieldCounters(
            self.observations, self.missing, self.absent, Counter(self.invalid), self.bins.copy()
        )


@dataclass(frozen=True, slots=True)
class FieldStats:
    """Statistics of one field in one window, as of one recompute.

    Drift figures are ``None`` while the window holds fewer than
    ``min_observations`` values (the gauges are then not exported).
    """

    spec: FieldSpec
    window: str
    observations: int
    psi: float | None = None
    psi_noise_floor: float | None = None
    js_distance: float | None = None
    ks_statistic: float | None = None
    ks_pvalue: float | None = None
    chi2_pvalue: float | None = None
    quantiles: tuple[tuple[float, float], ...] = ()
    mean: float = 0.0
    unseen: int = 0
    cardinality: float | None = None
    # How many rows count as one independent draw (sketches.requests.design_effect); set with
    # the drift figures.
    design_effect: float | None = None

    @property
    def drift_ready(self) -> bool:
        return self.psi is not None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Immutable result of one recompute, read by the collector."""

    computed_at: float
    duration: float
    fields: tuple[FieldStats, ...] = ()
    segments: tuple[SegmentStats, ...] = ()
    fairness: tuple[Fairness, ...] = ()
    performance: tuple[PerformanceStats, ...] = ()


class FieldTracker:
    """Windows, counters and drift statistics of one model's fields against one baseline."""

    name = "fields"

    def __init__(
        self, config: Config, baseline: Baseline, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config
        self.baseline = baseline
        self.clock = clock
        self._lock = threading.Lock()
        self._specs = {spec.name: spec for spec in config.fields}
        self._held: dict[str, FieldBaseline] = {name: baseline.fields[name] for name in self._specs}
        # Numeric fields keep their bin counts as rows of one table per window slice (and one
        # for the counters), in this order: a block of fields is added with one numpy call.
        numeric = [n for n, held in self._held.items() if isinstance(held.summary, NumericSummary)]
        self._numeric_rows = {name: row for row, name in enumerate(numeric)}
        # Closed slices are sealed (sketches as bytes: docs/performance.md, memory).
        self._windows: dict[str, SlicedWindow[Summary]] = {
            w.label: SlicedWindow(w, self._fresh, SliceSealer()) for w in config.windows
        }
        self._counters = {
            name: FieldCounters(bins=np.zeros(held.summary.binning.size, dtype=np.int64))
            for name, held in self._held.items()
        }
        sizes = [self._held[name].summary.binning.size for name in self._numeric_rows]
        self._counter_bins, views = bin_table(sizes)
        for name, view in zip(self._numeric_rows, views, strict=True):
            self._counters[name].bins = view
        self.rows_total = 0
        self.extra_columns_total = 0
        # Live sketches hold LIVE_ITEMS (float32) unless the field needs float64
        # (FieldBaseline.live_items): KS reads the baseline rounded alike.
        self._items: dict[str, ItemType] = {
            name: "float64" if held.live_items == "float64" else LIVE_ITEMS
            for name, held in self._held.items()
        }
        self._base_cdf = {
            name: _read_as(stats.cdf_table(held.summary.kll), self._items[name])
            for name, held in self._held.items()
            if isinstance(held.summary, NumericSummary)
        }
        self._ranges = {
            name: _valid_range(held.summary, config.range_tolerance, self._items[name])
            for name, held in self._held.items()
            if isinstance(held.summary, NumericSummary) and held.summary.count
        }
        self._plans: dict[tuple[str, ...], BlockPlan | None] = {}
        # Multivariate drift: each batch's reconstruction errors, ingested as one more field.
        self._pca = baseline.multivariate if config.multivariate is not None else None
        self._derived = config.multivariate.name if config.multivariate is not None else ""

    def _fresh(self) -> dict[str, Summary]:
        fresh: dict[str, Summary] = {
            name: held.summary.empty_like(self._items[name])
            if isinstance(held.summary, NumericSummary)
            else held.summary.empty_like()
            for name, held in self._held.items()
        }
        share_bins([cast(NumericSummary, fresh[name]) for name in self._numeric_rows])
        return fresh

    # -- ingestion ---------------------------------------------------------

    def ingest(self, batch: Sequence[Observation], now: float) -> None:
        """Add a batch of observations' columns to every window and counter."""
        self.add([observation.columns for observation in batch], now)

    def add(self, batch: Iterable[Extracted], now: float | None = None) -> None:
        """Add a batch of extracted rows to every window and counter."""
        pieces = [piece for piece in batch if piece.rows > 0]
        if not pieces:
            return
        now = self.clock() if now is None else now
        rows = sum(p.rows for p in pieces)
        if self.config.request_rows == "independent":  # each row a draw, as its own request
            requests = Requests(rows, single_rows=True)
        else:
            requests = Requests(len(pieces), all(p.rows == 1 for p in pieces))
        collected, blocks = collect(pieces, self._plan, requests.owned)
        if self._pca is not None:
            collected[self._derived] = self._derived_column(pieces, requests.owned)
        # Sorting and binning a block needs no shared state: done before taking the lock,
        # which scrapes, recomputes and snapshots wait on.
        prepared = [
            (plan, *self._prepare_block(plan, matrix, requests, owners), rows - len(matrix))
            for plan, matrix, owners in blocks
        ]
        with self._lock:
            slices = [window.current(now) for window in self._windows.values()]
            for plan, block, sketches, sums, absent in prepared:
                self._ingest_block(plan, block, sketches, sums, absent, slices)
            in_blocks = {name for plan, _, _ in blocks for name in plan.names} if blocks else ()
            for name, spec in self._specs.items():
                if name in in_blocks:
                    continue
                columns, provided, owners = collected.get(name, ([], 0, None))
                given = (requests, owners)
                if spec.type == "numeric":
                    # No request carries the derived field: rows without its value lacked none.
                    lacked = name != self._derived
                    self._ingest_numeric(name, columns, rows - provided, slices, given, lacked)
                else:
                    self._ingest_categorical(name, columns, rows - provided, slices, given)
            for piece in pieces:  # rows without a field other rows of their body held
                for name, count in piece.absent.items():
                    if name in self._counters:
                        self._counters[name].absent += count
            self.rows_total += rows
            self.extra_columns_total += sum(p.extra_columns for p in pieces)

    def _derived_column(
        self, pieces: list[Extracted], owned: bool
    ) -> tuple[list[Any], int, Owners | None]:
        """The multivariate field's column over a batch (the rows' reconstruction errors)."""
        assert self._pca is not None
        if not owned:
            errors = reconstruction_errors(pieces, self._pca)
            return [errors], len(errors), None
        # Each piece apart: its complete rows are known only once its errors are.
        each = [reconstruction_errors([piece], self._pca) for piece in pieces]
        errors = np.concatenate(each)
        return [errors], len(errors), owners_of([(i, len(e)) for i, e in enumerate(each)])

    def _ingest_numeric(
        self,
        name: str,
        columns: list[Any],
        absent: int,
        slices: list[dict[str, Summary]],
        given: tuple[Requests, Owners | None],
        lacked: bool = True,
    ) -> None:
        """Add a numeric field's columns; ``absent`` rows had no value, and lacked the field
        unless ``lacked`` is false (they are then only missing).  ``given``: the batch's
        requests and the one each value came from."""
        arrays, missing, wrong, placeholders = [], absent, 0, 0
        for column in columns:
            values, m, w = to_floats(column)
            arrays.append(values)
            missing, wrong, placeholders = missing + m, wrong + w, placeholders + m + w
        values = np.concatenate(arrays) if arrays else np.empty(0)
        finite, nan, inf = split_finite(values, placeholders)
        baseline = self._held[name].summary
        assert isinstance(baseline, NumericSummary)
        binning: NumericBinning = baseline.binning
        ordered = np.sort(finite)  # bins, min and max from one sort
        bin_counts = binning.count_sorted(ordered)
        sums = given[0].sums(bin_counts, lambda: binning.slots(values), given[1])
        sketch = None
        if len(slices) > 1 and len(ordered) >= _SHARED_SKETCH_MIN:
            sketch = _batch_sketch(baseline.k, ordered, self._items[name])
        for summaries in slices:
            summary = summaries[name]
            assert isinstance(summary, NumericSummary)
            summary.add(ordered, bin_counts, missing, wrong, nan, inf, sketch)
            summary.by_request += sums
        counters = self._counters[name]
        counters.observations += len(finite)
        counters.missing += missing
        counters.absent += absent if lacked else 0
        counters.bins += bin_counts
        invalid = counters.invalid
        if wrong:
            invalid["wrong_type"] += wrong
        if nan:
            invalid["nan"] += nan
        if inf:
            invalid["inf"] += inf
        valid = self._ranges.get(name)
        if valid is not None and len(finite):
            outside = int(np.count_nonzero((finite < valid[0]) | (finite > valid[1])))
            if outside:
                invalid["out_of_range"] += outside

    def _prepare_block(
        self,
        plan: BlockPlan,
        matrix: npt.NDArray[np.float64],
        requests: Requests,
        owners: Owners | None,
    ) -> tuple[NumericBlock, list[Any] | None, npt.NDArray[np.int64]]:
        """A block sorted, binned and range-checked, its batch sketches when worth it, and
        its fields' sums over requests."""
        block = NumericBlock.of(matrix, plan.binning, plan.low, plan.high)
        sketches = None
        if len(self._windows) > 1 and len(matrix) >= _SHARED_SKETCH_MIN:
            items = [self._items[name] for name in plan.names]
            sketches = [
                _batch_sketch(k, values, item) if count >= _SHARED_SKETCH_MIN else None
                for k, values, count, item in zip(
                    plan.k, block.values, block.counts, items, strict=True
                )
            ]
        sums = requests.sums(block.bin_counts, lambda: block_slots(matrix, plan.binning), owners)
        return block, sketches, sums

    def _ingest_block(
        self,
        plan: BlockPlan,
        block: NumericBlock,
        sketches: list[Any] | None,
        sums: npt.NDArray[np.int64],
        absent: int,
        slices: list[dict[str, Summary]],
    ) -> None:
        """What ``_ingest_numeric`` does for each field of a block, one numpy call per statistic."""
        names = plan.names
        for summaries in slices:
            numeric = cast(list[NumericSummary], [summaries[name] for name in names])
            add_block(numeric, block, absent, sketches, plan.rows, sums)
        # The counters' bins are views of rows of one table that nothing replaces.
        self._counter_bins[plan.rows, : block.bin_counts.shape[1]] += block.bin_counts
        fields = zip(plan.counters, block.counts, block.nan, block.inf, block.outside, strict=True)
        for counters, count, nan, inf, outside in fields:
            counters.observations += count
            counters.missing += absent
            counters.absent += absent
            if nan:
                counters.invalid["nan"] += nan
            if inf:
                counters.invalid["inf"] += inf
            if outside:
                counters.invalid["out_of_range"] += outside

    def _plan(self, names: tuple[str, ...]) -> BlockPlan | None:
        """How to ingest a block of ``names``; None unless they are distinct numeric fields."""
        try:
            return self._plans[names]
        except KeyError:  # not seen yet (plans are made outside the lock: no check-then-get)
            pass
        if len(self._plans) >= _BLOCK_PLANS:
            self._plans.clear()
        summaries = [self._held[name].summary for name in names if name in self._held]
        numeric = [s for s in summaries if isinstance(s, NumericSummary)]
        plan = None
        if len(numeric) == len(names) == len(set(names)) and names:
            bounds = [self._ranges.get(name, (-np.inf, np.inf)) for name in names]
            rows = np.array([self._numeric_rows[name] for name in names], dtype=np.intp)
            plan = BlockPlan(
                names,
                StackedBinning.of([s.binning for s in numeric]),
                np.array([low for low, _ in bounds], dtype=np.float64),
                np.array([high for _, high in bounds], dtype=np.float64),
                [self._counters[name] for name in names],
                [s.k for s in numeric],
                as_slice(rows),
            )
        self._plans[names] = plan
        return plan

    def _ingest_categorical(
        self,
        name: str,
        columns: list[Any],
        absent: int,
        slices: list[dict[str, Summary]],
        given: tuple[Requests, Owners | None],
    ) -> None:
        arrays, missing = [], absent
        for column in columns:
            values, m = to_categories(column, spell=False)
            arrays.append(values)
            missing += m
        values = np.concatenate(arrays) if arrays else np.empty(0, dtype=np.str_)
        distinct, tally = canonical_counts(*np.unique(values, return_counts=True))
        baseline = self._held[name].summary
        assert isinstance(baseline, CategoricalSummary)
        bin_counts = baseline.binning.count_table(
            dict(zip(distinct.tolist(), tally.tolist(), strict=True))
        )

        def slots() -> npt.NDArray[np.intp]:
            parts = [category_indexes(column, baseline.binning) for column in columns]
            return np.concatenate(parts) if parts else np.empty(0, dtype=np.intp)

        sums = given[0].sums(bin_counts, slots, given[1])
        for summaries in slices:
            summary = summaries[name]
            assert isinstance(summary, CategoricalSummary)
            summary.add(distinct, tally, bin_counts, missing)
            summary.by_request += sums
        counters = self._counters[name]
        counters.bins += bin_counts
        counters.observations += len(values)
        counters.missing += missing
        counters.absent += absent
        if bin_counts[-1]:
            counters.invalid["unseen_category"] += int(bin_counts[-1])

    # -- reading -----------------------------------------------------------

    @property
    def windows(self) -> dict[str, SlicedWindow[Summary]]:
        """The live windows by label (hold ``locked()`` while reading or changing them)."""
        return self._windows

    def locked(self) -> threading.Lock:
        return self._lock

    def counters(self) -> dict[str, FieldCounters]:
        """A consistent copy of the cumulative counters."""
        with self._lock:
            return {name: c.copy() for name, c in self._counters.items()}

    def merged_windows(self, now: float | None = None) -> dict[str, Mapping[str, Summary]]:
        now = self.clock() if now is None else now
        with self._lock:
            return {label: window.merged(now) for label, window in self._windows.items()}

    def compute(self, now: float) -> SnapshotPart:
        """Every field's statistics in every window as of ``now``."""
        windows = self.merged_windows(now)
        results = []
        for label, summaries in windows.items():
            for name, spec in self._specs.items():
                held, minimum = self._held[name], self.config.min_observations
                base_cdf = self._base_cdf.get(name)
                results.append(field_stats(spec, label, summaries[name], held, minimum, base_cdf))
        return {"fields": tuple(results)}


def _batch_sketch(k: int, ordered: npt.NDArray[np.float64], items: ItemType) -> Any:
    """One sketch of a batch's sorted values: merged into every window, it beats one update per window."""
    sketch = new_kll(k, items)
    sketch.update(kll_items(ordered, items, float(ordered[0]), float(ordered[-1])))
    return sketch


def _read_as(table: stats.CdfTable, items: ItemType) -> stats.CdfTable:
    """The baseline's CDF table as a window of ``items`` compares with it."""
    return table.float32() if items == "float32" else table


def _valid_range(summary: NumericSummary, tolerance: float, items: ItemType) -> tuple[float, float]:
    """The baseline's min–max, widened by ``tolerance`` times its span on each side.

    Each end takes in its float32 rounding class, as the bins do: an FP32 tensor's 0.3
    (0.30000001192092896) is a maximum 0.3, not a value beyond it.  A field of float64
    items (whose bins tell apart what float32 does not) keeps its ends as they are.
    """
    span = (summary.maximum - summary.minimum) * tolerance
    if items == "float64":
        return summary.minimum - span, summary.maximum + span
    low = float32_floor([summary.minimum - span])[0]
    high = np.nextafter(float32_ceiling(np.array([summary.maximum + span])), -np.inf)[0]
    return float(low), float(high)


def field_stats(
    spec: FieldSpec,
    window: str,
    live: Summary,
    held: FieldBaseline,
    min_observations: int,
    base_cdf: stats.CdfTable | None = None,
) -> FieldStats:
    """Statistics of one field's merged window summary against its baseline.

    ``base_cdf`` is the baseline sketch's :func:`~driftgauge.stats.cdf_table`,
    computed once instead of on every recompute.
    """
    n = live.count
    base = held.summary
    quantiles: tuple[tuple[float, float], ...] = ()
    mean = 0.0
    if isinstance(live, NumericSummary) and n:
        values = live.kll.get_quantiles(list(QUANTILES))
        quantiles = tuple(zip(QUANTILES, (float(v) for v in values), strict=True))
        mean = live.mean
    unseen = live.unseen if isinstance(live, CategoricalSummary) else 0
    cardinality = float(live.hll.get_estimate()) if isinstance(live, CategoricalSummary) else None
    if n < min_observations or base.count == 0:
        return FieldStats(
            spec,
            window,
            n,
            quantiles=quantiles,
            mean=mean,
            unseen=unseen,
            cardinality=cardinality,
        )
    occupied = max(2, int(np.count_nonzero(base.bins)))
    psi = stats.psi(live.bins, base.bins)
    # Rows of one request are not independent draws: the window counts as n / deff of them.
    deff = design_effect(live.bins, live.by_request, occupied - 1)
    floor = stats.psi_noise_floor(occupied, n / deff, base.count)
    js = stats.js_distance(live.bins, base.bins)
    if isinstance(live, NumericSummary) and isinstance(base, NumericSummary):
        d = stats.ks_statistic(live.kll, base_cdf if base_cdf is not None else base.kll)
        error = stats.ks_rank_error(live.kll) + stats.ks_rank_error(base.kll)
        return FieldStats(
            spec, window, n, psi, floor, js, d, stats.ks_pvalue(d, n / deff, base.count, error),
            quantiles=quantiles, mean=mean, design_effect=deff,
        )  # fmt: skip
    chi2 = stats.chi2_pvalue(live.bins / deff, base.bins)
    return FieldStats(
        spec, window, n, psi, floor, js, chi2_pvalue=chi2, unseen=unseen,
        cardinality=cardinality, design_effect=deff,
    )  # fmt: skip
