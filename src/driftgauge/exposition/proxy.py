"""Service-health metrics of the proxy: requests, upstream latency, overhead, sizes, errors.

Label children are bound once per status code, so recording a finished
request costs a few dictionary lookups and three histogram observations.
``driftgauge_overhead_seconds`` is the time the sidecar itself holds a
request: from parsing its first byte to writing it to the upstream, plus
from the upstream's last response byte to the last byte written to the
client.  Time spent in the kernel and in the event loop's queue is not
visible from inside the process; the proxy benchmark measures it from
outside (proxy vs direct).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from driftgauge.exposition import catalogue

__all__ = ["ProxyMetrics"]

UPSTREAM_ERROR_REASONS = (
    "connect_refused",
    "connect_timeout",
    "timeout",
    "upstream_reset",
    "bad_response",
)


class ProxyMetrics:
    """The proxy's own Prometheus metrics, on an injected registry (a ``ProxyObserver``)."""

    def __init__(self, registry: CollectorRegistry, model: str) -> None:
        self.model = model
        self.requests = catalogue.REQUESTS.counter(registry)
        self.upstream_latency = catalogue.UPSTREAM_LATENCY.histogram(registry).labels(model)
        self.overhead = catalogue.OVERHEAD.histogram(registry).labels(model)
        self.request_size = catalogue.REQUEST_SIZE.histogram(registry).labels(model)
        self.response_size = catalogue.RESPONSE_SIZE.histogram(registry).labels(model)
        self._upstream_errors = catalogue.UPSTREAM_ERRORS.counter(registry)
        self._client_errors = catalogue.CLIENT_ERRORS.counter(registry)
        self.queue_depth = catalogue.QUEUE_DEPTH.gauge(registry).labels(model)
        self.sampling_rate = catalogue.SAMPLING_RATE.gauge(registry).labels(model)
        self.sampling_rate.set(1.0)  # every request monitored until a sampler says otherwise
        self._by_code: dict[int, Counter] = {}
        for reason in UPSTREAM_ERROR_REASONS:  # present at 0 before the first failure
            self._upstream_errors.labels(model, reason)

    def request_done(
        self,
        status: int,
        started: float,
        sent: float,
        finished: float,
        request_bytes: int,
        response_bytes: int,
    ) -> None:
        child = self._by_code.get(status)
        if child is None:
            child = self._by_code[status] = self.requests.labels(self.model, str(status))
        child.inc()
        if sent:
            self.upstream_latency.observe(finished - sent)
            self.overhead.observe(sent - started)
        self.request_size.observe(request_bytes)
        self.response_size.observe(response_bytes)

    def upstream_error(self, reason: str) -> None:
        self._upstream_errors.labels(self.model, reason).inc()

    def client_error(self, reason: str) -> None:
        self._client_errors.labels(self.model, reason).inc()
