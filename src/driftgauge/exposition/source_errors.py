"""``driftgauge_source_parse_errors_total{reason}``: what the source counted before routing.

A record the sidecar's source could not read (a tail line, a CloudEvent),
a body the proxy saw sent to no prediction route, and a record for no
configured model (``unknown_model``) belong to no model, so this family has
no ``model`` label; each model's ``driftgauge_parse_errors_total`` counts
only what was routed to it.  The :class:`~driftgauge.monitor.route.Router`
keeps the counts; this collector reads them at each scrape, every reason
the source and the routing may count shown from 0.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from driftgauge.exposition import catalogue
from driftgauge.monitor.route import Router

__all__ = ["SourceErrorsCollector"]


class SourceErrorsCollector(Collector):
    """Reads a router's own parse errors; register it on the live (per-scrape) registry."""

    def __init__(self, router: Router) -> None:
        self.router = router

    def collect(self) -> Iterator[Metric]:
        spec = catalogue.SOURCE_PARSE_ERRORS
        counts = dict(self.router.parse_errors)
        family = CounterMetricFamily(spec.name, spec.documentation, labels=spec.labels)
        for reason in sorted({*self.router.parse_reasons, *counts}):
            family.add_metric([reason], counts.get(reason, 0))
        yield family

    def describe(self) -> Iterator[Metric]:
        """The family's name, for the registry's duplicate check (without reading counts)."""
        yield catalogue.SOURCE_PARSE_ERRORS.metric()
