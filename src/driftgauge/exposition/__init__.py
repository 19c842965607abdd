"""Exposition: metric families rendered from the monitor's snapshots and counters, and the HTTP handlers serving them."""

from driftgauge.exposition.collector import (
    DirectWriter,
    MetricsRegistry,
    MonitorCollector,
    RenderedSnapshot,
    feedback_routes,
    metrics_routes,
    render_metrics,
)

__all__ = [
    "DirectWriter",
    "MetricsRegistry",
    "MonitorCollector",
    "RenderedSnapshot",
    "feedback_routes",
    "metrics_routes",
    "render_metrics",
]
