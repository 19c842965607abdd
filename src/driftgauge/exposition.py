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
from collections.abc import Callable, Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from driftgauge import __version__
from driftgauge.monitor import FieldStats, Monitor

__all__ = ["MonitorCollector", "metrics_routes"]

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

_NUMERIC_REASONS = ("wrong_type", "nan", "inf", "out_of_range")
_CATEGORICAL_REASONS = ("unseen_category",)


class MonitorCollector(Collector):
    """Reads one monitor; register it on an injected (never the global) registry."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[Metric]:
        monitor = self.monitor
        model = monitor.config.model
        yield from self._info(monitor)
        snapshot = monitor.snapshot
        yield from self._window_metrics(model, snapshot.fields)
        yield from self._counter_metrics(monitor)
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
        ratios = GaugeMetricFamily(
            "driftgauge_baseline_bin_ratio",
            "The baseline's share of each bin.",
            labels=[*FIELD_LABELS, "bin"],
        )
        baseline_count = GaugeMetricFamily(
            "driftgauge_baseline_observations",
            "Valid values of each field in the baseline (for fleet-wide noise floors).",
            labels=FIELD_LABELS,
        )
        for spec in monitor.config.fields:
            labels = [model, spec.name, spec.role]
            counter = counters[spec.name]
            seen.add_metric(labels, counter.observations)
            missing.add_metric(labels, counter.missing)
            reasons = _NUMERIC_REASONS if spec.type == "numeric" else _CATEGORICAL_REASONS
            for reason in reasons:
                invalid.add_metric([*labels, reason], counter.invalid.get(reason, 0))
            held = monitor.baseline.fields[spec.name]
            baseline_count.add_metric(labels, held.summary.count)
            for label, count, ratio in zip(held.bin_labels, counter.bins, held.ratios, strict=True):
                bins.add_metric([*labels, label], int(count))
                ratios.add_metric([*labels, label], ratio)
        yield from (seen, missing, invalid, bins, ratios, baseline_count)
        parse_errors = CounterMetricFamily(
            "driftgauge_parse_errors",
            "Bodies that could not be read, by reason.",
            labels=["model", "reason"],
        )
        for reason, count in sorted(monitor.parse_errors.items()):
            parse_errors.add_metric([model, reason], count)
        yield parse_errors
        dropped = CounterMetricFamily(
            "driftgauge_dropped", "Observations dropped, by reason.", labels=["model", "reason"]
        )
        for reason, count in sorted(monitor.dropped.items()):
            dropped.add_metric([model, reason], count)
        yield dropped
        rows = CounterMetricFamily(
            "driftgauge_rows", "Rows (one request may carry many) monitored.", labels=["model"]
        )
        rows.add_metric([model], monitor.rows_total)
        yield rows


_LANDING = """<!doctype html>
<html><head><meta charset="utf-8"><title>driftgauge</title></head>
<body><h1>driftgauge {version}</h1><p>model <code>{model}</code></p>
<ul><li><a href="metrics">/metrics</a></li><li><a href="healthz">/healthz</a></li>
<li><a href="readyz">/readyz</a></li></ul></body></html>
"""


def metrics_routes(
    registry: CollectorRegistry, model: str, ready: Callable[[], tuple[bool, str]]
) -> list[web.RouteDef]:
    """Routes of the metrics listener; ``ready`` says whether to report ready, and why not."""

    async def metrics(request: web.Request) -> web.Response:
        accept = ",".join(request.headers.getall("Accept", []))
        encoder, content_type = choose_encoder(accept)
        # Building 1,000 features' families takes tens of ms: keep it off the event loop.
        body = await asyncio.to_thread(encoder, registry)
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
