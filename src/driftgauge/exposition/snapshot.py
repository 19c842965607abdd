"""The snapshot part of /metrics: drift figures and baseline figures, written straight to text.

Everything here changes at most once per recompute: the drift gauges, window
observations, live quantile and mean gauges, cardinalities, segment,
performance and fairness gauges of the monitor's latest
:class:`~driftgauge.monitor.Snapshot`, and before them the families that
depend only on the baseline (``baseline_quantile``, ``baseline_mean``,
``baseline_bin_ratio``, ``baseline_observations``, ``baseline_cardinality``
and the info families), which :class:`SnapshotFamilies` renders once and
reuses as bytes.  A recompute's part is laid out as one list of samples per
family; each series' line prefix (``name{labels} ``) is escaped the first
time it appears and reused while it keeps appearing, every value is
formatted in one vectorised pass
(:func:`~driftgauge.exposition.text.format_floats`), and the sample lines,
identical in both formats, are joined once for the Prometheus text format
and OpenMetrics, which differ only in their ``# HELP`` and ``# TYPE`` lines.
The same samples are also available as prometheus_client families, for
registry reads such as ``get_sample_value`` and for the name escapings the
direct writer does not speak.  The families are declared in
:mod:`driftgauge.exposition.catalogue`.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from prometheus_client.core import Metric

from driftgauge import __version__
from driftgauge.exposition import catalogue
from driftgauge.exposition.catalogue import MetricSpec, Series
from driftgauge.exposition.gzipjoin import Deflated
from driftgauge.exposition.text import format_floats
from driftgauge.monitor.fields import QUANTILES, FieldStats, Snapshot
from driftgauge.monitor.model import Monitor
from driftgauge.monitor.outcomes import equal_opportunity
from driftgauge.sketches.summary import CategoricalSummary, NumericSummary

__all__ = [
    "Block",
    "SnapshotFamilies",
    "float32_digits",
    "merge_blocks",
    "metrics_of",
    "render_blocks",
    "with_version",
]

Labels = tuple[str, ...]

_QUANTILE_TEXT = {q: str(q) for q in QUANTILES}
# FieldStats attribute -> gauge, in exposition order.
_DRIFT: tuple[tuple[str, MetricSpec], ...] = (
    ("psi", catalogue.PSI),
    ("psi_noise_floor", catalogue.PSI_NOISE_FLOOR),
    ("design_effect", catalogue.DESIGN_EFFECT),
    ("ks_statistic", catalogue.KS_STATISTIC),
    ("ks_pvalue", catalogue.KS_PVALUE),
    ("js_distance", catalogue.JS_DISTANCE),
    ("chi2_pvalue", catalogue.CHI2_PVALUE),
)


@dataclass(frozen=True, slots=True)
class _Row:
    """The series of one field in one window, in every family written per (field, window)."""

    observations: Series
    drift: tuple[Series, ...]  # aligned with _DRIFT
    cardinality: Series
    quantiles: dict[float, Series]  # by the quantile itself
    mean: Series

    @classmethod
    def of(cls, labels: Labels) -> _Row:
        return cls(
            catalogue.WINDOW_OBSERVATIONS.series(labels),
            tuple(spec.series(labels) for _, spec in _DRIFT),
            catalogue.CARDINALITY.series(labels),
            {
                q: catalogue.FEATURE_QUANTILE.series((*labels, text))
                for q, text in _QUANTILE_TEXT.items()
            },
            catalogue.FEATURE_MEAN.series(labels),
        )


@dataclass(slots=True)
class _Layout:
    """The series one render used, found in (or added to) those of the render before.

    The previous render's dicts are only read, so renders in several threads
    never disturb one another; the one that finishes last keeps its layout.
    Series that stopped appearing (a window below its minimum, a class no
    longer labelled) are left out of the next layout.
    """

    previous_rows: dict[tuple[str, str, str], _Row]
    previous_series: dict[tuple[str, Labels], Series]
    rows: dict[tuple[str, str, str], _Row] = field(default_factory=dict)
    series: dict[tuple[str, Labels], Series] = field(default_factory=dict)

    def row(self, model: str, item: FieldStats) -> _Row:
        key = (item.spec.name, item.spec.role, item.window)
        found = self.previous_rows.get(key)
        if found is None:
            found = _Row.of((model, *key))
        self.rows[key] = found
        return found

    def one(self, spec: MetricSpec, labels: Labels) -> Series:
        key = (spec.name, labels)
        found = self.previous_series.get(key)
        if found is None:
            found = spec.series(labels)
        self.series[key] = found
        return found


@dataclass(slots=True)
class Block:
    """One family's samples, in exposition order."""

    spec: MetricSpec
    series: list[Series] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    def add(self, series: Series, value: float) -> None:
        self.series.append(series)
        self.values.append(value)


def float32_digits(value: float) -> float:
    """``value`` as the shortest decimal that reads back as the same float32, if it is one.

    The live windows' quantiles come from float32 sketches (and a baseline's are float32
    values where its items are), whose float64 digits are noise: -2.2643892765045166 is the
    float32 -2.2643893, and the 28,350 quantile gauges of a 2,000-field model wrote 8
    needless digits each, which gzip hardly shrinks.  Other values, NaN among them, are
    left as they are.
    """
    single = np.float32(value)
    return float(str(single)) if float(single) == value else float(value)


def render_blocks(blocks: Sequence[Block]) -> tuple[bytes, bytes]:
    """The blocks as text and OpenMetrics (without ``# EOF``); one object when they are equal.

    The sample lines are the same in both formats, so they are joined once;
    the formats differ only in some ``# HELP``/``# TYPE`` lines.
    """
    texts = format_floats([value for block in blocks for value in block.values])
    text: list[str] = []
    openmetrics: list[str] = []
    start = 0
    for block in blocks:
        stop = start + len(block.values)
        prefixes = [series.prefix for series in block.series]
        lines = "\n".join(map(str.__add__, prefixes, texts[start:stop]))
        body = lines + "\n" if lines else ""
        text.extend((block.spec.text.header(False), body))
        openmetrics.extend((block.spec.text.header(True), body))
        start = stop
    if text == openmetrics:
        encoded = "".join(text).encode()
        return encoded, encoded
    return "".join(text).encode(), "".join(openmetrics).encode()


def with_version(blocks: Sequence[Block], version: str) -> list[Block]:
    """A model version's blocks: every series of a family with a ``model`` label gets ``version``."""
    if not version:
        return list(blocks)
    result = []
    for block in blocks:
        if "model" not in block.spec.labels:
            result.append(block)
            continue
        labelled = Block(block.spec)
        for series, value in zip(block.series, block.values, strict=True):
            labelled.add(series.with_label(block.spec, "version", version), value)
        result.append(labelled)
    return result


def merge_blocks(parts: Iterable[Sequence[Block]]) -> list[Block]:
    """Several monitors' blocks as one block per family, in first-seen order.

    Each family is written once with every model's samples (the text format
    wants a family's samples together); a series that more than one part
    holds with the same labels (the build info) is kept once.
    """
    merged: dict[str, Block] = {}
    seen: set[tuple[str, Labels]] = set()
    for blocks in parts:
        for block in blocks:
            into = merged.setdefault(block.spec.name, Block(block.spec))
            for series, value in zip(block.series, block.values, strict=True):
                key = (block.spec.name, series.labels)
                if key not in seen:
                    seen.add(key)
                    into.add(series, value)
    return list(merged.values())


def metrics_of(blocks: Iterable[Block]) -> Iterator[Metric]:
    for block in blocks:
        spec = block.spec
        metric = spec.metric()
        for series, value in zip(block.series, block.values, strict=True):
            metric.add_sample(
                spec.sample_name,
                dict(zip(series.label_names(spec), series.labels, strict=True)),
                value,
            )
        yield metric


class SnapshotFamilies:
    """driftgauge's per-recompute families for one monitor, read from its latest snapshot.

    :meth:`baseline_part` is rendered (and deflated) once, on first use: it
    depends only on the config and the baseline.  :meth:`recompute_part`
    renders the monitor's current snapshot in both formats, reusing the
    escaped series of the render before; :meth:`metrics` builds
    prometheus_client families of the same samples.  Safe to call from
    several threads.
    """

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self._baseline_quantiles: dict[str, list[tuple[str, float]]] = {}
        for spec in monitor.config.fields:
            summary = monitor.baseline.fields[spec.name].summary
            if isinstance(summary, NumericSummary) and summary.count:
                values = summary.kll.get_quantiles(list(QUANTILES))
                self._baseline_quantiles[spec.name] = [
                    (str(q), float32_digits(v)) for q, v in zip(QUANTILES, values, strict=True)
                ]
        self._layout = _Layout({}, {})
        self._baseline_lock = threading.Lock()
        self._baseline: tuple[Deflated, Deflated] | None = None

    # -- the families that depend only on the baseline ----------------------------------------

    def baseline_blocks(self) -> list[Block]:
        monitor = self.monitor
        model, baseline = monitor.config.model, monitor.baseline
        build = Block(catalogue.BUILD_INFO)
        build.add(catalogue.BUILD_INFO.series((__version__, str(catalogue.METRICS_VERSION))), 1)
        info = Block(catalogue.BASELINE_INFO)
        created = dt.datetime.fromtimestamp(baseline.created, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        info_labels = (model, baseline.id, created, str(baseline.rows))
        info.add(catalogue.BASELINE_INFO.series(info_labels), 1)
        quantiles = Block(catalogue.BASELINE_QUANTILE)
        means = Block(catalogue.BASELINE_MEAN)
        ratios = Block(catalogue.BASELINE_BIN_RATIO)
        counts = Block(catalogue.BASELINE_OBSERVATIONS)
        cardinality = Block(catalogue.BASELINE_CARDINALITY)
        for spec in monitor.config.fields:
            labels = (model, spec.name, spec.role)
            held = baseline.fields[spec.name]
            summary = held.summary
            held_quantiles = self._baseline_quantiles.get(spec.name)
            if held_quantiles is not None and isinstance(summary, NumericSummary):
                for quantile, value in held_quantiles:
                    series = catalogue.BASELINE_QUANTILE.series((*labels, quantile))
                    quantiles.add(series, value)
                # Quantiles are only held for a field with values, so count > 0.
                means.add(catalogue.BASELINE_MEAN.series(labels), summary.mean)
            counts.add(catalogue.BASELINE_OBSERVATIONS.series(labels), summary.count)
            for label, ratio in zip(held.bin_labels, held.ratios, strict=True):
                ratios.add(catalogue.BASELINE_BIN_RATIO.series((*labels, label)), ratio)
            if isinstance(summary, CategoricalSummary):
                estimate = float(summary.hll.get_estimate())
                cardinality.add(catalogue.BASELINE_CARDINALITY.series(labels), estimate)
        return [build, info, quantiles, means, ratios, counts, cardinality]

    def baseline_part(self, openmetrics: bool) -> Deflated:
        """The baseline's families (and the build info), rendered and deflated once."""
        with self._baseline_lock:
            if self._baseline is None:
                text, om = render_blocks(self.baseline_blocks())
                self._baseline = Deflated.of(text), Deflated.of(om)
            return self._baseline[openmetrics]

    # -- the families of one recompute ----------------------------------------------------------

    def snapshot_blocks(self, snapshot: Snapshot) -> list[Block]:
        model = self.monitor.config.model
        previous = self._layout
        layout = _Layout(previous.rows, previous.series)
        blocks = _field_blocks(layout, model, snapshot.fields)
        if snapshot.segments:
            blocks.extend(_segment_blocks(layout, model, snapshot))
        if self.monitor.outcomes is not None:
            blocks.extend(_performance_blocks(layout, model, snapshot))
        computed_at = Block(catalogue.COMPUTED_AT)
        computed_at.add(layout.one(catalogue.COMPUTED_AT, (model,)), snapshot.computed_at)
        duration = Block(catalogue.COMPUTE_DURATION)
        duration.add(layout.one(catalogue.COMPUTE_DURATION, (model,)), snapshot.duration)
        blocks.extend((computed_at, duration))
        self._layout = layout
        return blocks

    def recompute_part(self, snapshot: Snapshot | None = None) -> tuple[bytes, bytes]:
        """The families of ``snapshot`` (the monitor's latest if omitted), as text and OpenMetrics.

        The two are the same object when they are equal (no family here has a
        header that differs between the formats, today), so they can be
        compressed once.
        """
        snapshot = self.monitor.snapshot if snapshot is None else snapshot
        return render_blocks(self.snapshot_blocks(snapshot))

    def render(self, openmetrics: bool) -> bytes:
        """The whole snapshot part in one format (without OpenMetrics' ``# EOF``)."""
        recomputed = self.recompute_part()[openmetrics]
        return self.baseline_part(openmetrics).raw + recomputed

    def metrics(self) -> Iterator[Metric]:
        """The same samples as prometheus_client families."""
        yield from metrics_of(self.baseline_blocks())
        yield from metrics_of(self.snapshot_blocks(self.monitor.snapshot))


def _field_blocks(layout: _Layout, model: str, fields: Sequence[FieldStats]) -> list[Block]:
    observations = Block(catalogue.WINDOW_OBSERVATIONS)
    drift = [(attr, Block(spec)) for attr, spec in _DRIFT]
    quantiles, means = Block(catalogue.FEATURE_QUANTILE), Block(catalogue.FEATURE_MEAN)
    cardinality = Block(catalogue.CARDINALITY)
    for item in fields:
        row = layout.row(model, item)
        observations.add(row.observations, item.observations)
        for (attr, block), series in zip(drift, row.drift, strict=True):
            value = getattr(item, attr)
            if value is not None:
                block.add(series, value)
        if item.spec.type == "numeric" and item.quantiles:
            for quantile, value in item.quantiles:
                series = row.quantiles.get(quantile) or layout.one(
                    catalogue.FEATURE_QUANTILE, (*row.observations.labels, str(quantile))
                )
                quantiles.add(series, float32_digits(value))
            means.add(row.mean, item.mean)
        if item.cardinality is not None:
            cardinality.add(row.cardinality, item.cardinality)
    return [observations, *(block for _, block in drift), quantiles, means, cardinality]


def _segment_blocks(layout: _Layout, model: str, snapshot: Snapshot) -> list[Block]:
    psi, floor = Block(catalogue.SEGMENT_PSI), Block(catalogue.SEGMENT_PSI_NOISE_FLOOR)
    seen, rate = Block(catalogue.SEGMENT_OBSERVATIONS), Block(catalogue.POSITIVE_RATE)
    for item in snapshot.segments:
        labels: Labels = (
            model,
            item.prediction,
            "prediction",
            item.window,
            item.segment_feature,
            item.segment,
        )
        seen.add(layout.one(catalogue.SEGMENT_OBSERVATIONS, labels), item.observations)
        if item.psi is not None and item.psi_noise_floor is not None:
            psi.add(layout.one(catalogue.SEGMENT_PSI, labels), item.psi)
            floor_series = layout.one(catalogue.SEGMENT_PSI_NOISE_FLOOR, labels)
            floor.add(floor_series, item.psi_noise_floor)
        if item.positive_rate is not None:
            rate_labels = (model, item.window, item.segment_feature, item.segment)
            rate.add(layout.one(catalogue.POSITIVE_RATE, rate_labels), item.positive_rate)
    impact = Block(catalogue.DISPARATE_IMPACT)
    for fairness in snapshot.fairness:
        labels = (model, fairness.window, fairness.segment_feature)
        impact_series = layout.one(catalogue.DISPARATE_IMPACT, labels)
        impact.add(impact_series, fairness.disparate_impact)
    return [psi, floor, seen, rate, impact]


def _performance_blocks(layout: _Layout, model: str, snapshot: Snapshot) -> list[Block]:
    overall, per_class = Block(catalogue.PERFORMANCE), Block(catalogue.CLASS_PERFORMANCE)
    segment, labelled = Block(catalogue.SEGMENT_PERFORMANCE), Block(catalogue.WINDOW_LABELS)
    for item in snapshot.performance:
        if item.segment_feature:
            for metric, value in item.metrics.items():
                labels: Labels = (model, item.window, item.segment_feature, item.segment, metric)
                segment.add(layout.one(catalogue.SEGMENT_PERFORMANCE, labels), value)
            continue
        window_labels = (model, item.window)
        labelled.add(layout.one(catalogue.WINDOW_LABELS, window_labels), item.labels)
        for metric, value in item.metrics.items():
            labels = (model, item.window, metric)
            overall.add(layout.one(catalogue.PERFORMANCE, labels), value)
        for name, scores in item.per_class.items():
            for metric, value in zip(("precision", "recall", "f1"), scores, strict=True):
                labels = (model, item.window, name, metric)
                per_class.add(layout.one(catalogue.CLASS_PERFORMANCE, labels), value)
    opportunity = Block(catalogue.EQUAL_OPPORTUNITY)
    for (feature, window), value in equal_opportunity(snapshot.performance).items():
        labels = (model, window, feature)
        opportunity.add(layout.one(catalogue.EQUAL_OPPORTUNITY, labels), value)
    return [overall, per_class, segment, labelled, opportunity]
