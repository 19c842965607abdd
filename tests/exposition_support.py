"""The exposition before the direct writers, frozen as the reference, and a busy pipeline.

``reference_live_families`` and ``reference_snapshot_families`` build the
prometheus_client families exactly as ``MonitorCollector`` built them before
the live counters and then the snapshot part were written directly (with the
quantile and mean gauges that have since replaced the live and baseline
summaries); prometheus_client's encoders render them for byte-for-byte
comparisons.
``busy_pipeline`` makes a state that exercises every family.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from driftgauge import __version__
from driftgauge.monitor import (
    CATEGORICAL_INVALID_REASONS,
    NUMERIC_INVALID_REASONS,
    QUANTILES,
    FieldStats,
    Monitor,
    Snapshot,
)
from driftgauge.monitor.outcomes import equal_opportunity
from driftgauge.protocols import REASONS
from driftgauge.sketches.summary import CategoricalSummary, NumericSummary
from tests.feedback_support import Pipeline, build, classifier_columns, instances, record, wire

AWKWARD_MODEL = 'wine "red"\\ \nrosé'
PARSE_ERROR_REASONS = (*REASONS, "invalid_json", "unknown_path", "internal")
DROP_REASONS = ("queue_full", "body_too_large", "feedback_expired")
ACCEPTS = (
    "",
    "text/plain",
    "text/plain; version=1.0.0; escaping=underscores",
    "text/plain; version=1.0.0; escaping=allow-utf-8",
    "application/openmetrics-text; version=1.0.0",
    "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=allow-utf-8",
    "application/openmetrics-text; version=1.0.0; escaping=dots",
    "application/openmetrics-text; version=1.0.0; escaping=values",
    "text/plain; version=1.0.0; escaping=dots",
    "text/plain; version=1.0.0; escaping=values",
)
PLAIN_NAMES = tuple(a for a in ACCEPTS if "dots" not in a and "values" not in a)
# Values prometheus_client prints each its own way: Go's NaN and infinities, exponents
# from 10**6 (positive only), repr's exponents below 1e-4 and from 1e16, a negative zero.
AWKWARD_VALUES = (
    math.nan,
    math.inf,
    -math.inf,
    -0.0,
    2_500_000.0,
    1_234_567.891,
    1e16,
    5e-324,
    -30_000_000.0,
    1e-05,
)

FIELD_LABELS = ["model", "feature", "role"]
# Not "quantile": promtool reserves it for summaries.
QUANTILE_LABEL = "q"
WINDOW_LABELS = [*FIELD_LABELS, "window"]
GAUGES: tuple[tuple[str, str, str], ...] = (
    ("psi", "driftgauge_psi", "Population stability index, live window vs baseline."),
    (
        "psi_noise_floor",
        "driftgauge_psi_noise_floor",
        "PSI expected with no drift for this window's and the baseline's sizes.",
    ),
    ("ks_statistic", "driftgauge_ks_statistic", "Two-sample Kolmogorov-Smirnov D (numeric)."),
    ("ks_pvalue", "driftgauge_ks_pvalue", "p-value of the Kolmogorov-Smirnov D."),
    (
        "js_distance",
        "driftgauge_js_distance",
        "Jensen-Shannon distance (base 2) on the baseline bins.",
    ),
    ("chi2_pvalue", "driftgauge_chi2_pvalue", "Chi-squared test p-value (categorical)."),
)


def reference_live_families(monitor: Monitor) -> Iterator[Metric]:
    """The live families exactly as MonitorCollector built them before the direct writer."""
    model = monitor.config.model
    counters = monitor.counters()
    field_labels = ["model", "feature", "role"]
    seen = CounterMetricFamily(
        "driftgauge_observations", "Values seen per field.", labels=field_labels
    )
    missing = CounterMetricFamily(
        "driftgauge_missing", "Missing or null values per field.", labels=field_labels
    )
    invalid = CounterMetricFamily(
        "driftgauge_invalid",
        "Invalid values per field: wrong type, NaN/inf, out of baseline range, unseen category.",
        labels=[*field_labels, "reason"],
    )
    bins = CounterMetricFamily(
        "driftgauge_bin_observations",
        "Values per baseline bin (sum over replicas for fleet-wide PSI).",
        labels=[*field_labels, "bin"],
    )
    for spec in monitor.config.fields:
        labels = [model, spec.name, spec.role]
        counter = counters[spec.name]
        seen.add_metric(labels, counter.observations)
        missing.add_metric(labels, counter.missing)
        reasons = NUMERIC_INVALID_REASONS if spec.type == "numeric" else CATEGORICAL_INVALID_REASONS
        for reason in reasons:
            invalid.add_metric([*labels, reason], counter.invalid.get(reason, 0))
        bin_labels = monitor.baseline.fields[spec.name].bin_labels
        for label, count in zip(bin_labels, counter.bins, strict=True):
            bins.add_metric([*labels, label], int(count))
    yield from (seen, missing, invalid, bins)
    parse_errors = CounterMetricFamily(
        "driftgauge_parse_errors",
        "Bodies that could not be read, by reason.",
        labels=["model", "reason"],
    )
    for reason in sorted(set(PARSE_ERROR_REASONS) | set(monitor.parse_errors)):
        parse_errors.add_metric([model, reason], monitor.parse_errors.get(reason, 0))
    yield parse_errors
    dropped = CounterMetricFamily(
        "driftgauge_dropped", "Observations dropped, by reason.", labels=["model", "reason"]
    )
    for reason in sorted(set(DROP_REASONS) | set(monitor.dropped)):
        dropped.add_metric([model, reason], monitor.dropped.get(reason, 0))
    yield dropped
    rows = CounterMetricFamily(
        "driftgauge_rows", "Rows (one request may carry many) monitored.", labels=["model"]
    )
    rows.add_metric([model], monitor.rows_total)
    yield rows
    absent = CounterMetricFamily(
        "driftgauge_missing_fields",
        "Rows whose request lacked the field altogether (a schema violation; also counted missing).",
        labels=field_labels,
    )
    for spec in monitor.config.fields:
        absent.add_metric([model, spec.name, spec.role], counters[spec.name].absent)
    yield absent
    extra = CounterMetricFamily(
        "driftgauge_extra_fields",
        "Columns in requests that the config does not name (schema violations, not labelled by name).",
        labels=["model"],
    )
    extra.add_metric([model], monitor.extra_columns_total)
    yield extra
    outcomes = monitor.outcomes
    if outcomes is None:
        return
    results = CounterMetricFamily(
        "driftgauge_labels",
        "Labels received, by whether they matched a held prediction.",
        labels=["model", "result"],
    )
    for result in ("matched", "unmatched", "invalid"):
        results.add_metric([model, result], outcomes.labels.get(result, 0))
    yield results
    pending = GaugeMetricFamily(
        "driftgauge_pending_predictions", "Predictions waiting for their label.", labels=["model"]
    )
    pending.add_metric([model], outcomes.pending)
    yield pending


def reference_snapshot_families(monitor: Monitor) -> Iterator[Metric]:
    """The snapshot part exactly as MonitorCollector built it before the direct writer."""
    model = monitor.config.model
    snapshot = monitor.snapshot
    yield from _reference_info(monitor)
    yield from _reference_baseline(monitor)
    yield from _reference_windows(model, snapshot.fields)
    cardinality = GaugeMetricFamily(
        "driftgauge_cardinality",
        "Distinct values of a categorical field in the window (HLL estimate).",
        labels=WINDOW_LABELS,
    )
    for item in snapshot.fields:
        if item.cardinality is not None:
            cardinality.add_metric(
                [model, item.spec.name, item.spec.role, item.window], item.cardinality
            )
    yield cardinality
    yield from _reference_segments(model, snapshot)
    if monitor.outcomes is not None:
        yield from _reference_performance(model, snapshot)
    recompute = GaugeMetricFamily(
        "driftgauge_stats_computed_timestamp_seconds",
        "Unix time of the last drift statistics recompute (0 before the first).",
        labels=["model"],
    )
    recompute.add_metric([model], snapshot.computed_at)
    yield recompute
    duration = GaugeMetricFamily(
        "driftgauge_stats_compute_duration_seconds",
        "Time the last drift statistics recompute took.",
        labels=["model"],
    )
    duration.add_metric([model], snapshot.duration)
    yield duration


def _reference_info(monitor: Monitor) -> Iterator[Metric]:
    build_info = InfoMetricFamily("driftgauge_build", "driftgauge version.")
    build_info.add_metric([], {"version": __version__})
    yield build_info
    baseline = monitor.baseline
    created = dt.datetime.fromtimestamp(baseline.created, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    info = InfoMetricFamily(
        "driftgauge_baseline", "The baseline in use: id, creation time, rows.", labels=["model"]
    )
    info.add_metric(
        [monitor.config.model],
        {"baseline_id": baseline.id, "created": created, "rows": str(baseline.rows)},
    )
    yield info


def _reference_baseline(monitor: Monitor) -> Iterator[Metric]:
    model = monitor.config.model
    ratios = GaugeMetricFamily(
        "driftgauge_baseline_bin_ratio",
        "The baseline's share of each bin.",
        labels=[*FIELD_LABELS, "bin"],
    )
    quantiles = GaugeMetricFamily(
        "driftgauge_baseline_quantile",
        "Quantiles of a numeric field in the baseline, beside driftgauge_feature_quantile's live ones.",
        labels=[*FIELD_LABELS, QUANTILE_LABEL],
    )
    means = GaugeMetricFamily(
        "driftgauge_baseline_mean",
        "The baseline's mean of a numeric field, beside driftgauge_feature_mean's live one.",
        labels=FIELD_LABELS,
    )
    for spec in monitor.config.fields:
        summary = monitor.baseline.fields[spec.name].summary
        if not isinstance(summary, NumericSummary) or not summary.count:
            continue
        values = summary.kll.get_quantiles(list(QUANTILES))
        labels = [model, spec.name, spec.role]
        for quantile, value in zip(QUANTILES, values, strict=True):
            quantiles.add_metric([*labels, str(quantile)], float(value))
        means.add_metric(labels, summary.total / summary.count)
    yield from (quantiles, means)
    baseline_count = GaugeMetricFamily(
        "driftgauge_baseline_observations",
        "Valid values of each field in the baseline (for fleet-wide noise floors).",
        labels=FIELD_LABELS,
    )
    cardinality = GaugeMetricFamily(
        "driftgauge_baseline_cardinality",
        "Distinct values of a categorical field in the baseline (HLL estimate).",
        labels=FIELD_LABELS,
    )
    for spec in monitor.config.fields:
        labels = [model, spec.name, spec.role]
        held = monitor.baseline.fields[spec.name]
        baseline_count.add_metric(labels, held.summary.count)
        for label, ratio in zip(held.bin_labels, held.ratios, strict=True):
            ratios.add_metric([*labels, label], ratio)
        if isinstance(held.summary, CategoricalSummary):
            cardinality.add_metric(labels, float(held.summary.hll.get_estimate()))
    yield from (ratios, baseline_count, cardinality)


def _reference_windows(model: str, fields: tuple[FieldStats, ...]) -> Iterator[Metric]:
    families = {
        attr: GaugeMetricFamily(name, doc, labels=WINDOW_LABELS) for attr, name, doc in GAUGES
    }
    observations = GaugeMetricFamily(
        "driftgauge_window_observations",
        "Valid observations in the window.",
        labels=WINDOW_LABELS,
    )
    quantiles = GaugeMetricFamily(
        "driftgauge_feature_quantile",
        "Live quantiles of a numeric feature or prediction, from the window's sketch.",
        labels=[*WINDOW_LABELS, QUANTILE_LABEL],
    )
    means = GaugeMetricFamily(
        "driftgauge_feature_mean",
        "The window's mean of a numeric feature or prediction.",
        labels=WINDOW_LABELS,
    )
    for item in fields:
        labels = [model, item.spec.name, item.spec.role, item.window]
        observations.add_metric(labels, item.observations)
        for attr, family in families.items():
            value = getattr(item, attr)
            if value is not None:
                family.add_metric(labels, value)
        if item.spec.type == "numeric" and item.quantiles:
            for quantile, value in item.quantiles:
                quantiles.add_metric([*labels, str(quantile)], value)
            means.add_metric(labels, item.total / item.observations)
    yield observations
    yield from families.values()
    yield from (quantiles, means)


def _reference_segments(model: str, snapshot: Snapshot) -> Iterator[Metric]:
    if not snapshot.segments:
        return
    labels = ["model", "feature", "role", "window", "segment_feature", "segment"]
    psi = GaugeMetricFamily(
        "driftgauge_segment_psi",
        "PSI of a prediction within a segment vs the same segment in the baseline.",
        labels=labels,
    )
    floor = GaugeMetricFamily(
        "driftgauge_segment_psi_noise_floor",
        "PSI expected by chance for the segment's sizes.",
        labels=labels,
    )
    seen = GaugeMetricFamily(
        "driftgauge_segment_observations",
        "Predictions of the segment in the window.",
        labels=labels,
    )
    rate = GaugeMetricFamily(
        "driftgauge_positive_rate",
        "Share of the segment's predictions that are the positive class.",
        labels=["model", "window", "segment_feature", "segment"],
    )
    for item in snapshot.segments:
        values = [
            model,
            item.prediction,
            "prediction",
            item.window,
            item.segment_feature,
            item.segment,
        ]
        seen.add_metric(values, item.observations)
        if item.psi is not None and item.psi_noise_floor is not None:
            psi.add_metric(values, item.psi)
            floor.add_metric(values, item.psi_noise_floor)
        if item.positive_rate is not None:
            rate.add_metric(
                [model, item.window, item.segment_feature, item.segment], item.positive_rate
            )
    yield from (psi, floor, seen, rate)
    impact = GaugeMetricFamily(
        "driftgauge_disparate_impact",
        "Lowest positive prediction rate over the highest, across a feature's segments.",
        labels=["model", "window", "segment_feature"],
    )
    for fairness in snapshot.fairness:
        impact.add_metric(
            [model, fairness.window, fairness.segment_feature], fairness.disparate_impact
        )
    yield impact


def _reference_performance(model: str, snapshot: Snapshot) -> Iterator[Metric]:
    overall = GaugeMetricFamily(
        "driftgauge_performance",
        "Model performance from delayed labels in the window (accuracy, f1, mae, rmse...).",
        labels=["model", "window", "metric"],
    )
    per_class = GaugeMetricFamily(
        "driftgauge_class_performance",
        "Precision, recall and F1 of each class (for at most 10 classes).",
        labels=["model", "window", "class", "metric"],
    )
    segment = GaugeMetricFamily(
        "driftgauge_segment_performance",
        "Model performance from delayed labels within a segment.",
        labels=["model", "window", "segment_feature", "segment", "metric"],
    )
    labelled = GaugeMetricFamily(
        "driftgauge_window_labels",
        "Labelled predictions in the window.",
        labels=["model", "window"],
    )
    for item in snapshot.performance:
        if item.segment_feature:
            for metric, value in item.metrics.items():
                segment.add_metric(
                    [model, item.window, item.segment_feature, item.segment, metric], value
                )
            continue
        labelled.add_metric([model, item.window], item.labels)
        for metric, value in item.metrics.items():
            overall.add_metric([model, item.window, metric], value)
        for name, scores in item.per_class.items():
            for metric, value in zip(("precision", "recall", "f1"), scores, strict=True):
                per_class.add_metric([model, item.window, name, metric], value)
    yield from (overall, per_class, segment, labelled)
    opportunity = GaugeMetricFamily(
        "driftgauge_equal_opportunity_difference",
        "Largest gap in true positive rate between a feature's segments.",
        labels=["model", "window", "segment_feature"],
    )
    for (feature, window), value in equal_opportunity(snapshot.performance).items():
        opportunity.add_metric([model, window, feature], value)
    yield opportunity


class ReferenceCollector(Collector):
    """The old live families and/or the old snapshot part of one monitor."""

    def __init__(self, monitor: Monitor, live: bool = True, snapshot: bool = False) -> None:
        self.monitor = monitor
        self.live = live
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        if self.live:
            yield from reference_live_families(self.monitor)
        if self.snapshot:
            yield from reference_snapshot_families(self.monitor)


def registry_of(*collectors: Collector) -> CollectorRegistry:
    registry = CollectorRegistry()
    for collector in collectors:
        registry.register(collector)
    return registry


Parsed = list[tuple[str, str, str, list[tuple[str, tuple[tuple[str, str], ...], str]]]]


def parsed(body: bytes, openmetrics: bool) -> Parsed:
    """Every family (name, type, help) with its samples (name, sorted labels, value as text)."""
    parse = openmetrics_families if openmetrics else text_string_to_metric_families
    return [
        (
            family.name,
            family.type,
            family.documentation,
            [(s.name, tuple(sorted(s.labels.items())), repr(s.value)) for s in family.samples],
        )
        for family in parse(body.decode())
    ]


def busy_pipeline(model: str, tmp_path: Path) -> Pipeline:
    """Numeric and categorical features and predictions, two windows, region segments and
    feedback, after traffic with every kind of bad value, labels, parse errors and drops."""
    config, baseline = build(tmp_path, segments={"features": ["region"], "top": 2})
    pipeline = wire(replace(config, model=model), baseline)
    columns = classifier_columns(400, seed=3)
    rows = instances(columns, 0, 400)
    rows[0]["alcohol"] = None
    rows[1]["alcohol"] = "strong"
    rows[2]["alcohol"] = math.nan
    rows[3]["ash"] = math.inf
    rows[4]["alcohol"] = 100.0
    rows[5]["region"] = "atlantis"
    del rows[6]["ash"]
    rows[7]["colour"] = "red"
    for start in range(0, 400, 50):
        pipeline.batcher.ingest([record(rows[start : start + 50], f"r{start}")])
    labelled = [(f"r{start}:{i}", "a") for start in range(0, 200, 50) for i in range(50)]
    pipeline.outcomes.label([*labelled, ("nobody", "b"), ("r300:0", None)])
    pipeline.monitor.count_parse_error("invalid_json")
    pipeline.monitor.count_parse_error("a_new_reason")
    pipeline.monitor.count_dropped("queue_full", 2_500_000)  # prints as 2.5e+06
    pipeline.monitor.count_dropped("another_reason", 7)
    pipeline.monitor.compute()
    return pipeline


def with_awkward_values(snapshot: Snapshot) -> Snapshot:
    """``snapshot`` with every gauge value that is set replaced, in turn, by an awkward one."""
    awkward = itertools.cycle(AWKWARD_VALUES)

    def some(value: float | None) -> float | None:
        return None if value is None else next(awkward)

    fields = tuple(
        replace(
            item,
            observations=2_500_000 if i % 3 == 0 else item.observations,
            psi=some(item.psi),
            psi_noise_floor=some(item.psi_noise_floor),
            js_distance=some(item.js_distance),
            ks_statistic=some(item.ks_statistic),
            ks_pvalue=some(item.ks_pvalue),
            chi2_pvalue=some(item.chi2_pvalue),
            quantiles=tuple((q, next(awkward)) for q, _ in item.quantiles),
            total=next(awkward),
            cardinality=some(item.cardinality),
        )
        for i, item in enumerate(snapshot.fields)
    )
    segments = tuple(
        replace(
            item,
            psi=some(item.psi),
            psi_noise_floor=some(item.psi_noise_floor),
            positive_rate=some(item.positive_rate),
        )
        for item in snapshot.segments
    )
    fairness = tuple(replace(item, disparate_impact=next(awkward)) for item in snapshot.fairness)
    performance = tuple(
        replace(
            item,
            metrics={name: next(awkward) for name in item.metrics},
            per_class={
                name: (next(awkward), next(awkward), next(awkward)) for name in item.per_class
            },
            true_positive_rate=some(item.true_positive_rate),
        )
        for item in snapshot.performance
    )
    return Snapshot(
        computed_at=1.7e9 + 0.25,
        duration=next(awkward),
        fields=fields,
        segments=segments,
        fairness=fairness,
        performance=performance,
    )
