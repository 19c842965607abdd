"""Exposition: the Prometheus collector over the monitor and the metrics HTTP endpoints.

``MonitorCollector`` builds every metric family anew on each scrape from the
monitor's latest immutable :class:`~driftgauge.monitor.Snapshot` (drift
figures, recomputed on a schedule) and a copy of its cumulative counters,
so a scrape never computes statistics.  ``metrics_routes`` serves
``/metrics`` (Prometheus text or OpenMetrics by the ``Accept`` header,
gzip when asked), ``/healthz``, ``/readyz`` and a landing page at ``/``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import json
import threading
from collections.abc import Callable, Iterator
from typing import Literal

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.registry import Collector

from driftgauge import __version__
from driftgauge.feedback import Outcomes, equal_opportunity, parse_labels
from driftgauge.monitor import (
    CATEGORICAL_INVALID_REASONS,
    NUMERIC_INVALID_REASONS,
    QUANTILES,
    FieldStats,
    Monitor,
    Snapshot,
)
from driftgauge.protocols import REASONS
from driftgauge.sketches.summary import CategoricalSummary, NumericSummary

__all__ = ["MonitorCollector", "RenderedSnapshot", "feedback_routes", "metrics_routes"]

Part = Literal["all", "snapshot", "live"]
"""What a collector yields: ``snapshot`` changes only at a recompute (and can be
rendered once then), ``live`` holds the counters read at every scrape."""

FIELD_LABELS = ["model", "feature", "role"]
WINDOW_LABELS = [*FIELD_LABELS, "window"]

_GAUGES: tuple[tuple[str, str, str], ...] = (
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

PARSE_ERROR_REASONS = (*REASONS, "invalid_json", "unknown_path", "internal")
DROP_REASONS = ("queue_full", "body_too_large", "feedback_expired")


class MonitorCollector(Collector):
    """Reads one monitor; register it on an injected (never the global) registry."""

    def __init__(self, monitor: Monitor, part: Part = "all") -> None:
        self.monitor = monitor
        self.part = part
        self._baseline_quantiles: dict[str, list[tuple[str, float]]] = {}
        for spec in monitor.config.fields:
            summary = monitor.baseline.fields[spec.name].summary
            if isinstance(summary, NumericSummary) and summary.count:
                values = summary.kll.get_quantiles(list(QUANTILES))
                self._baseline_quantiles[spec.name] = [
                    (str(q), float(v)) for q, v in zip(QUANTILES, values, strict=True)
                ]

    def collect(self) -> Iterator[Metric]:
        monitor = self.monitor
        if self.part in ("all", "live"):
            yield from self._counter_metrics(monitor)
            yield from self._schema_metrics(monitor)
            yield from self._label_metrics(monitor)
        if self.part in ("all", "snapshot"):
            yield from self._snapshot_metrics(monitor)

    def _snapshot_metrics(self, monitor: Monitor) -> Iterator[Metric]:
        model = monitor.config.model
        yield from self._info(monitor)
        yield from self._baseline_metrics(monitor)
        snapshot = monitor.snapshot
        yield from self._window_metrics(model, snapshot.fields)
        yield from self._cardinality_metrics(monitor, snapshot.fields)
        yield from self._segment_metrics(model, snapshot)
        yield from self._performance_metrics(monitor, snapshot)
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

    def _info(self, monitor: Monitor) -> Iterator[Metric]:
        build = InfoMetricFamily("driftgauge_build", "driftgauge version.")
        build.add_metric([], {"version": __version__})
        yield build
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

    def _window_metrics(self, model: str, fields: tuple[FieldStats, ...]) -> Iterator[Metric]:
        families = {
            attr: GaugeMetricFamily(name, doc, labels=WINDOW_LABELS) for attr, name, doc in _GAUGES
        }
        observations = GaugeMetricFamily(
            "driftgauge_window_observations",
            "Valid observations in the window.",
            labels=WINDOW_LABELS,
        )
        values = Metric(
            "driftgauge_feature_value",
            "Live quantiles of a numeric feature or prediction, from the window's sketch.",
            "summary",
        )
        for item in fields:
            labels = [model, item.spec.name, item.spec.role, item.window]
            observations.add_metric(labels, item.observations)
            for attr, family in families.items():
                value = getattr(item, attr)
                if value is not None:
                    family.add_metric(labels, value)
            if item.spec.type == "numeric" and item.quantiles:
                names = dict(zip(WINDOW_LABELS, labels, strict=True))
                for quantile, value in item.quantiles:
                    values.add_sample(
                        "driftgauge_feature_value", names | {"quantile": str(quantile)}, value
                    )
                values.add_sample("driftgauge_feature_value_sum", names, item.total)
                values.add_sample("driftgauge_feature_value_count", names, item.observations)
        yield observations
        yield from families.values()
        yield values

    def _counter_metrics(self, monitor: Monitor) -> Iterator[Metric]:
        model = monitor.config.model
        counters = monitor.counters()
        seen = CounterMetricFamily(
            "driftgauge_observations", "Values seen per field.", labels=FIELD_LABELS
        )
        missing = CounterMetricFamily(
            "driftgauge_missing", "Missing or null values per field.", labels=FIELD_LABELS
        )
        invalid = CounterMetricFamily(
            "driftgauge_invalid",
            "Invalid values per field: wrong type, NaN/inf, out of baseline range, unseen category.",
            labels=[*FIELD_LABELS, "reason"],
        )
        bins = CounterMetricFamily(
            "driftgauge_bin_observations",
            "Values per baseline bin (sum over replicas for fleet-wide PSI).",
            labels=[*FIELD_LABELS, "bin"],
        )
        for spec in monitor.config.fields:
            labels = [model, spec.name, spec.role]
            counter = counters[spec.name]
            seen.add_metric(labels, counter.observations)
            missing.add_metric(labels, counter.missing)
            reasons = (
                NUMERIC_INVALID_REASONS if spec.type == "numeric" else CATEGORICAL_INVALID_REASONS
            )
            for reason in reasons:
                invalid.add_metric([*labels, reason], counter.invalid.get(reason, 0))
            bin_labels = monitor.baseline.fields[spec.name].bin_labels
            for label, count in zip(bin_labels, counter.bins, strict=True):
                bins.add_metric([*labels, label], int(count))
        yield from (seen, missing, invalid, bins)
        yield from self._event_metrics(monitor)

    def _baseline_metrics(self, monitor: Monitor) -> Iterator[Metric]:
        """What the baseline holds: constant while the sidecar runs."""
        model = monitor.config.model
        ratios = GaugeMetricFamily(
            "driftgauge_baseline_bin_ratio",
            "The baseline's share of each bin.",
            labels=[*FIELD_LABELS, "bin"],
        )
        baseline_value = Metric(
            "driftgauge_baseline_value",
            "Quantiles of a numeric field in the baseline, beside driftgauge_feature_value's live ones.",
            "summary",
        )
        for spec in monitor.config.fields:
            summary = monitor.baseline.fields[spec.name].summary
            quantiles = self._baseline_quantiles.get(spec.name)
            if quantiles is None or not isinstance(summary, NumericSummary):
                continue
            names = {"model": model, "feature": spec.name, "role": spec.role}
            for quantile, value in quantiles:
                baseline_value.add_sample(
                    "driftgauge_baseline_value", names | {"quantile": quantile}, value
                )
            baseline_value.add_sample("driftgauge_baseline_value_sum", names, summary.total)
            baseline_value.add_sample("driftgauge_baseline_value_count", names, summary.count)
        yield baseline_value
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

    def _event_metrics(self, monitor: Monitor) -> Iterator[Metric]:
        model = monitor.config.model
        parse_errors = CounterMetricFamily(
            "driftgauge_parse_errors",
            "Bodies that could not be read, by reason.",
            labels=["model", "reason"],
        )
        # Known reasons start at 0, so dashboards and rate() see them before the first event.
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

    def _cardinality_metrics(
        self, monitor: Monitor, fields: tuple[FieldStats, ...]
    ) -> Iterator[Metric]:
        model = monitor.config.model
        cardinality = GaugeMetricFamily(
            "driftgauge_cardinality",
            "Distinct values of a categorical field in the window (HLL estimate).",
            labels=WINDOW_LABELS,
        )
        for item in fields:
            if item.cardinality is not None:
                cardinality.add_metric(
                    [model, item.spec.name, item.spec.role, item.window], item.cardinality
                )
        yield cardinality

    def _schema_metrics(self, monitor: Monitor) -> Iterator[Metric]:
        model = monitor.config.model
        absent = CounterMetricFamily(
            "driftgauge_missing_fields",
            "Rows whose request lacked the field altogether (a schema violation; also counted missing).",
            labels=FIELD_LABELS,
        )
        counters = monitor.counters()
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

    def _segment_metrics(self, model: str, snapshot: Snapshot) -> Iterator[Metric]:
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

    def _performance_metrics(self, monitor: Monitor, snapshot: Snapshot) -> Iterator[Metric]:
        outcomes = monitor.outcomes
        if outcomes is None:
            return
        model = monitor.config.model
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

    def _label_metrics(self, monitor: Monitor) -> Iterator[Metric]:
        outcomes = monitor.outcomes
        if outcomes is None:
            return
        model = monitor.config.model
        labels = CounterMetricFamily(
            "driftgauge_labels",
            "Labels received, by whether they matched a held prediction.",
            labels=["model", "result"],
        )
        for result in ("matched", "unmatched", "invalid"):
            labels.add_metric([model, result], outcomes.labels.get(result, 0))
        yield labels
        pending = GaugeMetricFamily(
            "driftgauge_pending_predictions",
            "Predictions waiting for their label.",
            labels=["model"],
        )
        pending.add_metric([model], outcomes.pending)
        yield pending


class RenderedSnapshot:
    """The snapshot part of /metrics, rendered once per recompute in both formats.

    Most of a big sidecar's exposition (drift gauges, quantiles, baseline
    figures) changes only when the statistics are recomputed, so it is
    rendered then, off the event loop, and a scrape renders only the live
    counters and appends these bytes.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._lock = threading.Lock()
        self._text = b""
        self._openmetrics = b""

    def refresh(self) -> None:
        text = generate_latest(self.registry)
        rendered: bytes = openmetrics_latest(self.registry)  # type: ignore[no-untyped-call]
        openmetrics = rendered.removesuffix(b"# EOF\n")
        with self._lock:
            self._text, self._openmetrics = text, openmetrics

    def join(self, live: bytes, openmetrics: bool) -> bytes:
        """The whole exposition: ``live`` (as the encoder made it) with this part added."""
        with self._lock:
            if openmetrics:
                return live.removesuffix(b"# EOF\n") + self._openmetrics + b"# EOF\n"
            return live + self._text


_LANDING = """<!doctype html>
<html><head><meta charset="utf-8"><title>driftgauge</title></head>
<body><h1>driftgauge {version}</h1><p>model <code>{model}</code></p>
<ul><li><a href="metrics">/metrics</a></li><li><a href="healthz">/healthz</a></li>
<li><a href="readyz">/readyz</a></li></ul></body></html>
"""


def metrics_routes(
    registry: CollectorRegistry,
    model: str,
    ready: Callable[[], tuple[bool, str]],
    rendered: RenderedSnapshot | None = None,
) -> list[web.RouteDef]:
    """Routes of the metrics listener; ``ready`` says whether to report ready, and why not.

    ``registry`` is rendered at each scrape; ``rendered``, when given, adds
    the part rendered at the last recompute.
    """

    async def metrics(request: web.Request) -> web.Response:
        accept = ",".join(request.headers.getall("Accept", []))
        encoder, content_type = choose_encoder(accept)
        # Rendering many features' counters takes milliseconds: keep it off the event loop.
        body = await asyncio.to_thread(encoder, registry)
        if rendered is not None:
            body = rendered.join(body, content_type.startswith("application/openmetrics-text"))
        response = web.Response(body=body, headers={"Content-Type": content_type})
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            response.enable_compression()
        return response

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        ok, reason = ready()
        return web.Response(
            text=f"{'ready' if ok else 'not ready'}: {reason}\n", status=200 if ok else 503
        )

    async def landing(request: web.Request) -> web.Response:
        page = _LANDING.format(version=__version__, model=model)
        return web.Response(text=page, content_type="text/html")

    return [
        web.get("/metrics", metrics),
        web.get("/healthz", healthz),
        web.get("/readyz", readyz),
        web.get("/", landing),
    ]


def feedback_routes(outcomes: Outcomes, token: str | None) -> list[web.RouteDef]:
    """``POST /feedback``: a JSON list of ``{"id", "label"}``; a bearer token when configured."""
    expected = f"Bearer {token}".encode() if token else None

    async def feedback(request: web.Request) -> web.Response:
        if expected is not None:
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return web.json_response({"error": "a valid bearer token is required"}, status=401)
        try:
            pairs = parse_labels(json.loads(await request.read()))
        except ValueError as exc:  # ProtocolError and bad UTF-8 are ValueErrors too
            return web.json_response({"error": f"bad feedback body: {exc}"}, status=400)
        return web.json_response(outcomes.label(pairs))

    return [web.post("/feedback", feedback)]
