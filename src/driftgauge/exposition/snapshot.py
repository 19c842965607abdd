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
direct writer does not speak.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from prometheus_client.core import Metric

from driftgauge import __version__
from driftgauge.exposition.gzipjoin import Deflated
from driftgauge.exposition.text import FamilyText, format_floats, label_text
from driftgauge.monitor.fields import QUANTILES, FieldStats, Snapshot
from driftgauge.monitor.model import Monitor
from driftgauge.monitor.outcomes import equal_opportunity
from driftgauge.sketches.summary import CategoricalSummary, NumericSummary

__all__ = ["SnapshotFamilies"]

Labels = tuple[str, ...]

_FIELD: Labels = ("model", "feature", "role")
_WINDOW: Labels = (*_FIELD, "window")
_SEGMENT: Labels = (*_WINDOW, "segment_feature", "segment")
_SEGMENT_RATE: Labels = ("model", "window", "segment_feature", "segment")
_FAIRNESS: Labels = ("model", "window", "segment_feature")

_QUANTILE_TEXT = {q: str(q) for q in QUANTILES}
# The quantile gauges' label: not "quantile", which `promtool check metrics` reserves for
# summaries ('non-summary metrics should not have "quantile" label').
_QUANTILE_LABEL = "q"

_BUILD = FamilyText("driftgauge_build", "info", "driftgauge version.")
_BASELINE_INFO = FamilyText(
    "driftgauge_baseline", "info", "The baseline in use: id, creation time, rows."
)
_BASELINE_QUANTILE = FamilyText(
    "driftgauge_baseline_quantile",
    "gauge",
    "Quantiles of a numeric field in the baseline, beside driftgauge_feature_quantile's live ones.",
)
_BASELINE_MEAN = FamilyText(
    "driftgauge_baseline_mean",
    "gauge",
    "The baseline's mean of a numeric field, beside driftgauge_feature_mean's live one.",
)
_BIN_RATIO = FamilyText(
    "driftgauge_baseline_bin_ratio", "gauge", "The baseline's share of each bin."
)
_BASELINE_COUNT = FamilyText(
    "driftgauge_baseline_observations",
    "gauge",
    "Valid values of each field in the baseline (for fleet-wide noise floors).",
)
_BASELINE_CARDINALITY = FamilyText(
    "driftgauge_baseline_cardinality",
    "gauge",
    "Distinct values of a categorical field in the baseline (HLL estimate).",
)
_WINDOW_OBSERVATIONS = FamilyText(
    "driftgauge_window_observations", "gauge", "Valid observations in the window."
)
# FieldStats attribute -> gauge, in exposition order.
_DRIFT: tuple[tuple[str, FamilyText], ...] = (
    (
        "psi",
        FamilyText(
            "driftgauge_psi", "gauge", "Population stability index, live window vs baseline."
        ),
    ),
    (
        "psi_noise_floor",
        FamilyText(
            "driftgauge_psi_noise_floor",
            "gauge",
            "PSI expected with no drift for this window's and the baseline's sizes.",
        ),
    ),
    (
        "ks_statistic",
        FamilyText(
            "driftgauge_ks_statistic", "gauge", "Two-sample Kolmogorov-Smirnov D (numeric)."
        ),
    ),
    (
        "ks_pvalue",
        FamilyText("driftgauge_ks_pvalue", "gauge", "p-value of the Kolmogorov-Smirnov D."),
    ),
    (
        "js_distance",
        FamilyText(
            "driftgauge_js_distance",
            "gauge",
            "Jensen-Shannon distance (base 2) on the baseline bins.",
        ),
    ),
    (
        "chi2_pvalue",
        FamilyText("driftgauge_chi2_pvalue", "gauge", "Chi-squared test p-value (categorical)."),
    ),
)
# Gauges, not a summary: features can be negative, and strict OpenMetrics parsers
# (prometheus_client's among them) refuse negative summary quantiles and sums.  The
# baseline's quantiles and mean below are gauges for the same reason.
_FEATURE_QUANTILE = FamilyText(
    "driftgauge_feature_quantile",
    "gauge",
    "Live quantiles of a numeric feature or prediction, from the window's sketch.",
)
_FEATURE_MEAN = FamilyText(
    "driftgauge_feature_mean",
    "gauge",
    "The window's mean of a numeric feature or prediction.",
)
_CARDINALITY = FamilyText(
    "driftgauge_cardinality",
    "gauge",
    "Distinct values of a categorical field in the window (HLL estimate).",
)
_SEGMENT_PSI = FamilyText(
    "driftgauge_segment_psi",
    "gauge",
    "PSI of a prediction within a segment vs the same segment in the baseline.",
)
_SEGMENT_FLOOR = FamilyText(
    "driftgauge_segment_psi_noise_floor",
    "gauge",
    "PSI expected by chance for the segment's sizes.",
)
_SEGMENT_COUNT = FamilyText(
    "driftgauge_segment_observations", "gauge", "Predictions of the segment in the window."
)
_POSITIVE_RATE = FamilyText(
    "driftgauge_positive_rate",
    "gauge",
    "Share of the segment's predictions that are the positive class.",
)
_DISPARATE_IMPACT = FamilyText(
    "driftgauge_disparate_impact",
    "gauge",
    "Lowest positive prediction rate over the highest, across a feature's segments.",
)
_PERFORMANCE = FamilyText(
    "driftgauge_performance",
    "gauge",
    "Model performance from delayed labels in the window (accuracy, f1, mae, rmse...).",
)
_CLASS_PERFORMANCE = FamilyText(
    "driftgauge_class_performance",
    "gauge",
    "Precision, recall and F1 of each class (for at most 10 classes).",
)
_SEGMENT_PERFORMANCE = FamilyText(
    "driftgauge_segment_performance",
    "gauge",
    "Model performance from delayed labels within a segment.",
)
_WINDOW_LABELS = FamilyText(
    "driftgauge_window_labels", "gauge", "Labelled predictions in the window."
)
_EQUAL_OPPORTUNITY = FamilyText(
    "driftgauge_equal_opportunity_difference",
    "gauge",
    "Largest gap in true positive rate between a feature's segments.",
)
_COMPUTED_AT = FamilyText(
    "driftgauge_stats_computed_timestamp_seconds",
    "gauge",
    "Unix time of the last drift statistics recompute (0 before the first).",
)
_DURATION = FamilyText(
    "driftgauge_stats_compute_duration_seconds",
    "gauge",
    "Time the last drift statistics recompute took.",
)


@dataclass(frozen=True, slots=True)
class _Series:
    """One series: its sample name, label names and values, and its escaped line prefix."""

    sample_name: str
    names: Labels
    labels: Labels
    prefix: str

    @classmethod
    def of(cls, sample_name: str, names: Labels, labels: Labels) -> _Series:
        text = label_text(dict(zip(names, labels, strict=True)))
        return cls(sample_name, names, labels, f"{sample_name}{text} ")


@dataclass(frozen=True, slots=True)
class _Row:
    """The series of one field in one window, in every family written per (field, window)."""

    observations: _Series
    drift: tuple[_Series, ...]  # aligned with _DRIFT
    cardinality: _Series
    quantiles: dict[float, _Series]  # by the quantile itself
    mean: _Series

    @classmethod
    def of(cls, labels: Labels) -> _Row:
        def series(family: FamilyText) -> _Series:
            return _Series.of(family.sample_name, _WINDOW, labels)

        with_quantile = (*_WINDOW, _QUANTILE_LABEL)
        return cls(
            series(_WINDOW_OBSERVATIONS),
            tuple(series(family) for _, family in _DRIFT),
            series(_CARDINALITY),
            {
                q: _Series.of(_FEATURE_QUANTILE.sample_name, with_quantile, (*labels, text))
                for q, text in _QUANTILE_TEXT.items()
            },
            series(_FEATURE_MEAN),
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
    previous_series: dict[tuple[str, Labels, Labels], _Series]
    rows: dict[tuple[str, str, str], _Row] = field(default_factory=dict)
    series: dict[tuple[str, Labels, Labels], _Series] = field(default_factory=dict)

    def row(self, model: str, item: FieldStats) -> _Row:
        key = (item.spec.name, item.spec.role, item.window)
        found = self.previous_rows.get(key)
        if found is None:
            found = _Row.of((model, *key))
        self.rows[key] = found
        return found

    def one(self, sample_name: str, names: Labels, labels: Labels) -> _Series:
        key = (sample_name, names, labels)
        found = self.previous_series.get(key)
        if found is None:
            found = _Series.of(sample_name, names, labels)
        self.series[key] = found
        return found


@dataclass(slots=True)
class _Block:
    """One family's samples, in exposition order."""

    family: FamilyText
    series: list[_Series] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    def add(self, series: _Series, value: float) -> None:
        self.series.append(series)
        self.values.append(value)


def _render(blocks: Sequence[_Block]) -> tuple[bytes, bytes]:
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
        text.extend((block.family.header(False), body))
        openmetrics.extend((block.family.header(True), body))
        start = stop
    if text == openmetrics:
        encoded = "".join(text).encode()
        return encoded, encoded
    return "".join(text).encode(), "".join(openmetrics).encode()


def _metrics(blocks: Iterable[_Block]) -> Iterator[Metric]:
    for block in blocks:
        family = block.family
        metric = Metric(family.name, family.documentation, family.kind)
        for series, value in zip(block.series, block.values, strict=True):
            metric.add_sample(
                series.sample_name, dict(zip(series.names, series.labels, strict=True)), value
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
                    (str(q), float(v)) for q, v in zip(QUANTILES, values, strict=True)
                ]
        self._layout = _Layout({}, {})
        self._baseline_lock = threading.Lock()
        self._baseline: tuple[Deflated, Deflated] | None = None

    # -- the families that depend only on the baseline ----------------------------------------

    def _baseline_blocks(self) -> list[_Block]:
        monitor = self.monitor
        model, baseline = monitor.config.model, monitor.baseline
        build = _Block(_BUILD)
        build.add(_Series.of(_BUILD.sample_name, ("version",), (__version__,)), 1)
        info = _Block(_BASELINE_INFO)
        created = dt.datetime.fromtimestamp(baseline.created, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        info_names = ("model", "baseline_id", "created", "rows")
        info_labels = (model, baseline.id, created, str(baseline.rows))
        info.add(_Series.of(_BASELINE_INFO.sample_name, info_names, info_labels), 1)
        quantiles, means = _Block(_BASELINE_QUANTILE), _Block(_BASELINE_MEAN)
        ratios, counts = _Block(_BIN_RATIO), _Block(_BASELINE_COUNT)
        cardinality = _Block(_BASELINE_CARDINALITY)
        with_bin, with_quantile = (*_FIELD, "bin"), (*_FIELD, _QUANTILE_LABEL)
        for spec in monitor.config.fields:
            labels = (model, spec.name, spec.role)
            held = baseline.fields[spec.name]
            summary = held.summary
            held_quantiles = self._baseline_quantiles.get(spec.name)
            if held_quantiles is not None and isinstance(summary, NumericSummary):
                name = _BASELINE_QUANTILE.sample_name
                for quantile, value in held_quantiles:
                    quantiles.add(_Series.of(name, with_quantile, (*labels, quantile)), value)
                # Quantiles are only held for a field with values, so count > 0.
                mean = summary.total / summary.count
                means.add(_Series.of(_BASELINE_MEAN.sample_name, _FIELD, labels), mean)
            counts.add(_Series.of(_BASELINE_COUNT.sample_name, _FIELD, labels), summary.count)
            for label, ratio in zip(held.bin_labels, held.ratios, strict=True):
                ratios.add(_Series.of(_BIN_RATIO.sample_name, with_bin, (*labels, label)), ratio)
            if isinstance(summary, CategoricalSummary):
                estimate = float(summary.hll.get_estimate())
                cardinality.add(
                    _Series.of(_BASELINE_CARDINALITY.sample_name, _FIELD, labels), estimate
                )
        return [build, info, quantiles, means, ratios, counts, cardinality]

    def baseline_part(self, openmetrics: bool) -> Deflated:
        """The baseline's families (and the build info), rendered and deflated once."""
        with self._baseline_lock:
            if self._baseline is None:
                text, om = _render(self._baseline_blocks())
                self._baseline = Deflated.of(text), Deflated.of(om)
            return self._baseline[openmetrics]

    # -- the families of one recompute ----------------------------------------------------------

    def _snapshot_blocks(self, snapshot: Snapshot) -> list[_Block]:
        model = self.monitor.config.model
        previous = self._layout
        layout = _Layout(previous.rows, previous.series)
        blocks = _field_blocks(layout, model, snapshot.fields)
        if snapshot.segments:
            blocks.extend(_segment_blocks(layout, model, snapshot))
        if self.monitor.outcomes is not None:
            blocks.extend(_performance_blocks(layout, model, snapshot))
        computed_at, duration = _Block(_COMPUTED_AT), _Block(_DURATION)
        computed_at.add(
            layout.one(_COMPUTED_AT.sample_name, ("model",), (model,)), snapshot.computed_at
        )
        duration.add(layout.one(_DURATION.sample_name, ("model",), (model,)), snapshot.duration)
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
        return _render(self._snapshot_blocks(snapshot))

    def render(self, openmetrics: bool) -> bytes:
        """The whole snapshot part in one format (without OpenMetrics' ``# EOF``)."""
        recomputed = self.recompute_part()[openmetrics]
        return self.baseline_part(openmetrics).raw + recomputed

    def metrics(self) -> Iterator[Metric]:
        """The same samples as prometheus_client families."""
        yield from _metrics(self._baseline_blocks())
        yield from _metrics(self._snapshot_blocks(self.monitor.snapshot))


def _field_blocks(layout: _Layout, model: str, fields: Sequence[FieldStats]) -> list[_Block]:
    observations = _Block(_WINDOW_OBSERVATIONS)
    drift = [(attr, _Block(family)) for attr, family in _DRIFT]
    quantiles, means = _Block(_FEATURE_QUANTILE), _Block(_FEATURE_MEAN)
    cardinality = _Block(_CARDINALITY)
    quantile_names = (*_WINDOW, _QUANTILE_LABEL)
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
                    _FEATURE_QUANTILE.sample_name,
                    quantile_names,
                    (*row.observations.labels, str(quantile)),
                )
                quantiles.add(series, value)
            # A window with quantiles holds values, so observations > 0.
            means.add(row.mean, item.total / item.observations)
        if item.cardinality is not None:
            cardinality.add(row.cardinality, item.cardinality)
    return [observations, *(block for _, block in drift), quantiles, means, cardinality]


def _segment_blocks(layout: _Layout, model: str, snapshot: Snapshot) -> list[_Block]:
    psi, floor = _Block(_SEGMENT_PSI), _Block(_SEGMENT_FLOOR)
    seen, rate = _Block(_SEGMENT_COUNT), _Block(_POSITIVE_RATE)
    for item in snapshot.segments:
        labels: Labels = (
            model,
            item.prediction,
            "prediction",
            item.window,
            item.segment_feature,
            item.segment,
        )
        seen.add(layout.one(_SEGMENT_COUNT.sample_name, _SEGMENT, labels), item.observations)
        if item.psi is not None and item.psi_noise_floor is not None:
            psi.add(layout.one(_SEGMENT_PSI.sample_name, _SEGMENT, labels), item.psi)
            floor_series = layout.one(_SEGMENT_FLOOR.sample_name, _SEGMENT, labels)
            floor.add(floor_series, item.psi_noise_floor)
        if item.positive_rate is not None:
            rate_labels = (model, item.window, item.segment_feature, item.segment)
            rate_series = layout.one(_POSITIVE_RATE.sample_name, _SEGMENT_RATE, rate_labels)
            rate.add(rate_series, item.positive_rate)
    impact = _Block(_DISPARATE_IMPACT)
    for fairness in snapshot.fairness:
        labels = (model, fairness.window, fairness.segment_feature)
        impact_series = layout.one(_DISPARATE_IMPACT.sample_name, _FAIRNESS, labels)
        impact.add(impact_series, fairness.disparate_impact)
    return [psi, floor, seen, rate, impact]


def _performance_blocks(layout: _Layout, model: str, snapshot: Snapshot) -> list[_Block]:
    overall, per_class = _Block(_PERFORMANCE), _Block(_CLASS_PERFORMANCE)
    segment, labelled = _Block(_SEGMENT_PERFORMANCE), _Block(_WINDOW_LABELS)
    overall_names: Labels = ("model", "window", "metric")
    class_names: Labels = ("model", "window", "class", "metric")
    segment_names: Labels = ("model", "window", "segment_feature", "segment", "metric")
    for item in snapshot.performance:
        if item.segment_feature:
            for metric, value in item.metrics.items():
                labels: Labels = (model, item.window, item.segment_feature, item.segment, metric)
                segment.add(
                    layout.one(_SEGMENT_PERFORMANCE.sample_name, segment_names, labels), value
                )
            continue
        window_labels = (model, item.window)
        labelled.add(
            layout.one(_WINDOW_LABELS.sample_name, ("model", "window"), window_labels), item.labels
        )
        for metric, value in item.metrics.items():
            labels = (model, item.window, metric)
            overall.add(layout.one(_PERFORMANCE.sample_name, overall_names, labels), value)
        for name, scores in item.per_class.items():
            for metric, value in zip(("precision", "recall", "f1"), scores, strict=True):
                labels = (model, item.window, name, metric)
                per_class.add(
                    layout.one(_CLASS_PERFORMANCE.sample_name, class_names, labels), value
                )
    opportunity = _Block(_EQUAL_OPPORTUNITY)
    for (feature, window), value in equal_opportunity(snapshot.performance).items():
        labels = (model, window, feature)
        opportunity.add(layout.one(_EQUAL_OPPORTUNITY.sample_name, _FAIRNESS, labels), value)
    return [overall, per_class, segment, labelled, opportunity]
