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

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["ProxyMetrics"]

_LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
_OVERHEAD_BUCKETS = (0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05)
UPSTREAM_ERROR_REASONS = (
    "connect_refused",
    "connect_timeout",
    "timeout",
    "upstream_reset",
    "bad_response",
)
_SIZE_BUCKETS = (256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216)


class ProxyMetrics:
    """The proxy's own Prometheus metrics, on an injected registry (a ``ProxyObserver``)."""

    def __init__(self, registry: CollectorRegistry, model: str) -> None:
        self.model = model
        self.requests = Counter(
            "driftgauge_requests",
            "Proxied requests by the status code returned to the client (0: connection closed).",
            ["model", "code"],
            registry=registry,
        )
        self.upstream_latency = Histogram(
            "driftgauge_upstream_latency_seconds",
            "Model server latency seen by the proxy: request forwarded to response complete.",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        ).labels(model)
        self.overhead = Histogram(
            "driftgauge_overhead_seconds",
            "Time the sidecar itself holds a request, excluding the model server.",
            ["model"],
            buckets=_OVERHEAD_BUCKETS,
            registry=registry,
        ).labels(model)
        self.request_size = Histogram(
            "driftgauge_request_size_bytes",
            "Request body sizes.",
            ["model"],
            buckets=_SIZE_BUCKETS,
            registry=registry,
        ).labels(model)
        self.response_size = Histogram(
            "driftgauge_response_size_bytes",
            "Response body sizes.",
            ["model"],
            buckets=_SIZE_BUCKETS,
            registry=registry,
        ).labels(model)
        self._upstream_errors = Counter(
            "driftgauge_upstream_errors",
            "Upstream failures by reason (connect_refused, connect_timeout, timeout, upstream_reset, bad_response).",
            ["model", "reason"],
            registry=registry,
        )
        self._client_errors = Counter(
            "driftgauge_client_errors",
            "Client requests refused by the proxy, by reason.",
            ["model", "reason"],
            registry=registry,
        )
        self.queue_depth = Gauge(
            "driftgauge_queue_depth",
            "Records waiting for the monitoring consumer.",
            ["model"],
            registry=registry,
        ).labels(model)
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
