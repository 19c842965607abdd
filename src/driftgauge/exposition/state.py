"""``driftgauge_state_save_failures_total{model}``: each model's failed periodic snapshot saves."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from driftgauge.exposition import catalogue

__all__ = ["SaveFailuresCollector"]


class SaveFailuresCollector(Collector):
    """Reads ``(model, failures)`` at each scrape from ``failures`` (the state stores').

    Plain counts, as every counter of driftgauge's: a prometheus_client ``Counter`` adds a
    ``_created`` sample (in the text format a gauge family of its own, declared nowhere).
    """

    def __init__(self, failures: Callable[[], Iterable[tuple[str, int]]]) -> None:
        self.failures = failures

    def collect(self) -> Iterator[Metric]:
        spec = catalogue.STATE_SAVE_FAILURES
        family = CounterMetricFamily(spec.name, spec.documentation, labels=spec.labels)
        for model, count in self.failures():
            family.add_metric([model], count)
        yield family
