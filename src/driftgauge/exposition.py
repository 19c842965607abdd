"""Exposition: the Prometheus collector over the monitor and the metrics HTTP endpoints.

``MonitorCollector`` reads the monitor's latest immutable
:class:`~driftgauge.monitor.Snapshot` (drift figures, recomputed on a
schedule) and a copy of its cumulative counters, so a scrape never computes
statistics.  The snapshot part is rendered once per recompute
(:class:`RenderedSnapshot`); the counters are written straight to text at
each scrape (:class:`~driftgauge.live_metrics.LiveFamilies`), and only
everything else (process and proxy metrics) goes through prometheus_client's
encoders (:func:`render_metrics`).  ``metrics_routes`` serves ``/metrics``
(Prometheus text or OpenMetrics by the ``Accept`` header, gzip when asked),
``/healthz``, ``/readyz`` and a landing page at ``/``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import json
import threading
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Literal

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.registry import Collector

from driftgauge import __version__
from driftgauge.feedback import Outcomes, equal_opportunity, parse_labels
from driftgauge.gzipjoin import Deflated, gzip_join
from driftgauge.live_metrics import LiveFamilies
from driftgauge.monitor import (
    QUANTILES,
    FieldStats,
    Monitor,
    Snapshot,
)
from driftgauge.sketches.summary import CategoricalSummary, NumericSummary

__all__ = [
    "MonitorCollector",
    "RenderedSnapshot",
    "feedback_routes",
    "metrics_routes",
    "render_metrics",
]

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

# Set (to a list) while render_metrics encodes a registry: collectors then hand
# their LiveFamilies over to be written directly instead of yielding families.
_DIRECT: ContextVar[list[LiveFamilies] | None] = ContextVar("driftgauge_direct", default=None)
# Escaping schemes (negotiated by Accept; none named means underscores) that
# leave legacy metric and label names, as all of driftgauge's are, unchanged.
_DIRECT_ESCAPINGS = frozenset({"", "underscores", "allow-utf-8"})
# zlib level for what a gzip scrape compresses itself (the live part); the
# snapshot part is compressed at the default level once per recompute.
# Level 1 costs about a third of level 6 for a slightly larger body.
_SCRAPE_GZIP_LEVEL = 1


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
        self.live = LiveFamilies(monitor) if part in ("all", "live") else None

    def collect(self) -> Iterator[Metric]:
        monitor = self.monitor
        if self.live is not None:
            direct = _DIRECT.get()
            if direct is None:
                yield from self.live.metrics()
            else:
                direct.append(self.live)
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


class RenderedSnapshot:
    """The snapshot part of /metrics, rendered once per recompute in both formats.

    Most of a big sidecar's exposition (drift gauges, quantiles, baseline
    figures) changes only when the statistics are recomputed, so it is
    rendered (and deflated, for gzip scrapes) then, off the event loop, and a
    scrape renders only the live counters and appends these bytes or blocks.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._lock = threading.Lock()
        self._text = self._openmetrics = Deflated.of(b"")

    def refresh(self) -> None:
        text = generate_latest(self.registry)
        rendered: bytes = openmetrics_latest(self.registry)  # type: ignore[no-untyped-call]
        openmetrics = rendered.removesuffix(b"# EOF\n")
        # Compressed here, off the event loop, so a gzip scrape compresses only its live part.
        deflated = Deflated.of(text), Deflated.of(openmetrics)
        with self._lock:
            self._text, self._openmetrics = deflated

    def part(self, openmetrics: bool) -> Deflated:
        """The last recompute's bytes (OpenMetrics without its ``# EOF``), also deflated."""
        with self._lock:
            return self._openmetrics if openmetrics else self._text


def render_metrics(
    registry: CollectorRegistry,
    accept: str,
    rendered: RenderedSnapshot | None = None,
    *,
    gzip: bool = False,
) -> tuple[bytes, str]:
    """The /metrics body for an ``Accept`` header (gzip-compressed when asked) and its content type.

    prometheus_client renders ``registry`` (process and proxy metrics), except
    the :class:`LiveFamilies` of any :class:`MonitorCollector` in it, which
    write their counters directly; ``rendered`` adds the snapshot part.  An
    escaping scheme that would rewrite legacy names (``dots``, ``values``)
    leaves everything to prometheus_client, as before.
    """
    encoder, content_type = choose_encoder(accept)
    openmetrics = content_type.startswith("application/openmetrics-text")
    _, _, escaping = content_type.partition("escaping=")
    direct: list[LiveFamilies] | None = (
        [] if escaping.split(";")[0].strip() in _DIRECT_ESCAPINGS else None
    )
    token = _DIRECT.set(direct)
    try:
        encoded = encoder(registry)
    finally:
        _DIRECT.reset(token)
    parts: list[bytes | Deflated] = [live.render(openmetrics) for live in direct or ()]
    parts.append(encoded.removesuffix(b"# EOF\n") if openmetrics else encoded)
    if rendered is not None:
        parts.append(rendered.part(openmetrics))
    if openmetrics:
        parts.append(b"# EOF\n")
    if gzip:
        return gzip_join(parts, _SCRAPE_GZIP_LEVEL), content_type
    return b"".join(p.raw if isinstance(p, Deflated) else p for p in parts), content_type


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
        gzip = "gzip" in request.headers.get("Accept-Encoding", "").lower()
        # Rendering and compressing take milliseconds: keep them off the event loop.
        body, content_type = await asyncio.to_thread(
            render_metrics, registry, accept, rendered, gzip=gzip
        )
        headers = {"Content-Type": content_type}
        if gzip:
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=body, headers=headers)

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
