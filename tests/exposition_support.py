"""The exposition before the direct writers, frozen as the reference, and a busy pipeline.

``reference_live_families`` and ``reference_snapshot_families`` build the
prometheus_client families exactly as ``MonitorCollector`` built them before
the live counters and then the snapshot part were written directly (with the
quantile and mean gauges that have since replaced the live and baseline
summaries, and the quantiles at a float32's digits); prometheus_client's
encoders render them for byte-for-byte comparisons.  The families' names, help and label names come from the
catalogue (``driftgauge.exposition.catalogue``), the one place they are
declared; which series exist and their values are worked out here.
``busy_pipeline`` makes a state that exercises every family.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
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
from driftgauge.exposition import MetricsRegistry, catalogue
from driftgauge.exposition.catalogue import MetricSpec
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
# The reasons every scrape shows from 0, as the sidecar declares them.
BODY_REASONS = ("unknown_encoding", "bad_encoding", "decoded_too_large")
PARSE_ERROR_REASONS = (*REASONS, *BODY_REASONS, "invalid_json", "unknown_path", "internal")
DROP_REASONS = ("feedback_expired", "feedback_no_id")
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

# FieldStats attribute -> its gauge.
GAUGES: tuple[tuple[str, MetricSpec], ...] = (
    ("psi", catalogue.PSI),
    ("psi_noise_floor", catalogue.PSI_NOISE_FLOOR),
    ("design_effect", catalogue.DESIGN_EFFECT),
    ("ks_statistic", catalogue.KS_STATISTIC),
    ("ks_pvalue", catalogue.KS_PVALUE),
    ("js_distance", catalogue.JS_DISTANCE),
    ("chi2_pvalue", catalogue.CHI2_PVALUE),
)


def counter_family(spec: MetricSpec) -> CounterMetricFamily:
    """An empty prometheus_client counter family of ``spec`` (a counter in the catalogue)."""
    assert spec.kind == "counter", spec
    return CounterMetricFamily(spec.name, spec.documentation, labels=spec.labels)


def gauge_family(spec: MetricSpec) -> GaugeMetricFamily:
    """An empty prometheus_client gauge family of ``spec`` (a gauge in the catalogue)."""
    assert spec.kind == "gauge", spec
    return GaugeMetricFamily(spec.name, spec.documentation, labels=spec.labels)


def info_family(spec: MetricSpec, values: dict[str, str]) -> InfoMetricFamily:
    """A prometheus_client info family of ``spec`` with its one sample, labelled ``values``."""
    assert spec.kind == "info" and set(values) == set(spec.labels), (spec, values)
    family = InfoMetricFamily(spec.name, spec.documentation)
    family.add_metric([], values)
    return family


def reference_live_families(monitor: Monitor) -> Iterator[Metric]:
    """The live families exactly as MonitorCollector built them before the direct writer."""
    model = monitor.config.model
    counters = monitor.counters()
    seen, missing = counter_family(catalogue.OBSERVATIONS), counter_family(catalogue.MISSING)
    invalid, bins = counter_family(catalogue.INVALID), counter_family(catalogue.BIN_OBSERVATIONS)
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
    parse_errors = counter_family(catalogue.PARSE_ERRORS)
    for reason in sorted(set(PARSE_ERROR_REASONS) | set(monitor.parse_errors)):
        parse_errors.add_metric([model, reason], monitor.parse_errors.get(reason, 0))
    yield parse_errors
    dropped = counter_family(catalogue.DROPPED)
    for reason in sorted(set(DROP_REASONS) | set(monitor.dropped)):
        dropped.add_metric([model, reason], monitor.dropped.get(reason, 0))
    yield dropped
    rows = counter_family(catalogue.ROWS)
    rows.add_metric([model], monitor.rows_total)
    yield rows
    absent = counter_family(catalogue.MISSING_FIELDS)
    for spec in monitor.config.fields:
        absent.add_metric([model, spec.name, spec.role], counters[spec.name].absent)
    yield absent
    extra = counter_family(catalogue.EXTRA_FIELDS)
    extra.add_metric([model], monitor.extra_columns_total)
    yield extra
    outcomes = monitor.outcomes
    if outcomes is None:
        return
    results = counter_family(catalogue.LABELS)
    for result in ("matched", "unmatched", "invalid"):
        results.add_metric([model, result], outcomes.labels.get(result, 0))
    yield results
    pending = gauge_family(catalogue.PENDING_PREDICTIONS)
    pending.add_metric([model], outcomes.pending)
    yield pending


def reference_snapshot_families(monitor: Monitor) -> Iterator[Metric]:
    """The snapshot part exactly as MonitorCollector built it before the direct writer."""
    model = monitor.config.model
    snapshot = monitor.snapshot
    yield from _reference_info(monitor)
    yield from _reference_baseline(monitor)
    yield from _reference_windows(model, snapshot.fields)
    cardinality = gauge_family(catalogue.CARDINALITY)
    for item in snapshot.fields:
        if item.cardinality is not None:
            cardinality.add_metric(
                [model, item.spec.name, item.spec.role, item.window], item.cardinality
            )
    yield cardinality
    yield from _reference_segments(model, snapshot)
    if monitor.outcomes is not None:
        yield from _reference_performance(model, snapshot)
    recompute = gauge_family(catalogue.COMPUTED_AT)
    recompute.add_metric([model], snapshot.computed_at)
    yield recompute
    duration = gauge_family(catalogue.COMPUTE_DURATION)
    duration.add_metric([model], snapshot.duration)
    yield duration


def _reference_info(monitor: Monitor) -> Iterator[Metric]:
    yield info_family(
        catalogue.BUILD_INFO,
        {"version": __version__, "metrics_version": str(catalogue.METRICS_VERSION)},
    )
    baseline = monitor.baseline
    created = dt.datetime.fromtimestamp(baseline.created, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    yield info_family(
        catalogue.BASELINE_INFO,
        {
            "model": monitor.config.model,
            "baseline_id": baseline.id,
            "created": created,
            "rows": str(baseline.rows),
        },
    )


def float32_shortest(value: float) -> float:
    """A float32-valued ``value`` at the fewest significant digits that read back as it."""
    single = np.float32(value)
    if float(single) != value:
        return value
    return next(float(text) for k in range(1, 10) if np.float32(text := f"{value:.{k}g}") == single)


def _reference_baseline(monitor: Monitor) -> Iterator[Metric]:
    model = monitor.config.model
    ratios = gauge_family(catalogue.BASELINE_BIN_RATIO)
    quantiles, means = (
        gauge_family(catalogue.BASELINE_QUANTILE),
        gauge_family(catalogue.BASELINE_MEAN),
    )
    for spec in monitor.config.fields:
        summary = monitor.baseline.fields[spec.name].summary
        if not isinstance(summary, NumericSummary) or not summary.count:
            continue
        values = summary.kll.get_quantiles(list(QUANTILES))
        labels = [model, spec.name, spec.role]
        for quantile, value in zip(QUANTILES, values, strict=True):
            quantiles.add_metric([*labels, str(quantile)], float32_shortest(float(value)))
        means.add_metric(labels, summary.mean)
    yield from (quantiles, means)
    baseline_count = gauge_family(catalogue.BASELINE_OBSERVATIONS)
    cardinality = gauge_family(catalogue.BASELINE_CARDINALITY)
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
    families = {attr: gauge_family(spec) for attr, spec in GAUGES}
    observations = gauge_family(catalogue.WINDOW_OBSERVATIONS)
    quantiles, means = (
        gauge_family(catalogue.FEATURE_QUANTILE),
        gauge_family(catalogue.FEATURE_MEAN),
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
                quantiles.add_metric([*labels, str(quantile)], float32_shortest(value))
            means.add_metric(labels, item.mean)
    yield observations
    yield from families.values()
    yield from (quantiles, means)


def _reference_segments(model: str, snapshot: Snapshot) -> Iterator[Metric]:
    if not snapshot.segments:
        return
    psi, floor = (
        gauge_family(catalogue.SEGMENT_PSI),
        gauge_family(catalogue.SEGMENT_PSI_NOISE_FLOOR),
    )
    seen, rate = gauge_family(catalogue.SEGMENT_OBSERVATIONS), gauge_family(catalogue.POSITIVE_RATE)
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
    impact = gauge_family(catalogue.DISPARATE_IMPACT)
    for fairness in snapshot.fairness:
        impact.add_metric(
            [model, fairness.window, fairness.segment_feature], fairness.disparate_impact
        )
    yield impact


def _reference_performance(model: str, snapshot: Snapshot) -> Iterator[Metric]:
    overall, per_class = (
        gauge_family(catalogue.PERFORMANCE),
        gauge_family(catalogue.CLASS_PERFORMANCE),
    )
    segment, labelled = (
        gauge_family(catalogue.SEGMENT_PERFORMANCE),
        gauge_family(catalogue.WINDOW_LABELS),
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
    opportunity = gauge_family(catalogue.EQUAL_OPPORTUNITY)
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


def registry_of(*collectors: Collector) -> MetricsRegistry:
    """A fresh registry holding ``collectors``, in order."""
    registry = MetricsRegistry()
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
    pipeline.monitor.count_dropped("feedback_expired", 2_500_000)  # prints as 2.5e+06
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
            design_effect=some(item.design_effect),
            js_distance=some(item.js_distance),
            ks_statistic=some(item.ks_statistic),
            ks_pvalue=some(item.ks_pvalue),
            chi2_pvalue=some(item.chi2_pvalue),
            quantiles=tuple((q, next(awkward)) for q, _ in item.quantiles),
            mean=next(awkward),
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
