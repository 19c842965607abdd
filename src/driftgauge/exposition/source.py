"""``driftgauge_source_parse_errors_total{reason}`` and ``driftgauge_source_dropped_total{reason}``:
what the source counted before routing.

A record the sidecar's source could not read (a tail line, a CloudEvent),
a body the proxy saw sent to no prediction route, and a record for no
configured model (``unknown_model``) belong to no model; nor does one the
source dropped before routing it (a full queue, an oversize body, an answer
before the request ended, a request the overload sampler left out, a
CloudEvents overload).  So these families have no ``model`` label; each
model's ``driftgauge_parse_errors_total`` and ``driftgauge_dropped_total``
count only what was routed to it.  The
:class:`~driftgauge.monitor.route.Router` keeps the counts; this collector
reads them at each scrape, every reason the source and the routing may count
shown from 0.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from driftgauge.exposition import catalogue
from driftgauge.exposition.catalogue import MetricSpec
from driftgauge.monitor.route import Router

__all__ = ["SourceCollector"]


def _family(spec: MetricSpec, tally: Counter[str], known: Sequence[str]) -> CounterMetricFamily:
    counts = dict(tally)
    family = CounterMetricFamily(spec.name, spec.documentation, labels=spec.labels)
    for reason in sorted({*known, *counts}):
        family.add_metric([reason], counts.get(reason, 0))
    return family


class SourceCollector(Collector):
    """Reads a router's own parse errors and drops; register it on the live (per-scrape) registry."""

    def __init__(self, router: Router) -> None:
        self.router = router

    def collect(self) -> Iterator[Metric]:
        router = self.router
        yield _family(catalogue.SOURCE_PARSE_ERRORS, router.parse_errors, router.parse_reasons)
        yield _family(catalogue.SOURCE_DROPPED, router.dropped, router.drop_reasons)

    def describe(self) -> Iterator[Metric]:
        """The families' names, for the registry's duplicate check (without reading counts)."""
        yield catalogue.SOURCE_PARSE_ERRORS.metric()
        yield catalogue.SOURCE_DROPPED.metric()
