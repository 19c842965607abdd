"""The proxy's metrics, counted in plain counters: what prometheus_client's own would expose."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from driftgauge.exposition import catalogue
from driftgauge.exposition.collector import MetricsRegistry, render_metrics
from driftgauge.exposition.proxy import UPSTREAM_ERROR_REASONS, ProxyMetrics

_BOUNDS = sorted(
    {b for spec in (catalogue.UPSTREAM_LATENCY, catalogue.OVERHEAD) for b in spec.buckets}
)
# Values on and beside every bound, and anywhere else.
_SECONDS = st.one_of(st.sampled_from(_BOUNDS), st.floats(0, 60, allow_nan=False))
_BYTES = st.one_of(
    st.sampled_from([int(b) for b in catalogue.REQUEST_SIZE.buckets]), st.integers(0, 1 << 26)
)
_REQUEST = st.tuples(
    st.sampled_from([0, 200, 404, 502]), st.booleans(), _SECONDS, _SECONDS, _BYTES, _BYTES
)


def _samples(registry: CollectorRegistry, names: set[str]) -> dict[tuple[str, str], float]:
    """Every sample of the families ``names``, by sample name and sorted labels."""
    return {
        (sample.name, repr(sorted(sample.labels.items()))): sample.value
        for family in registry.collect()
        if family.name in names
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


@settings(max_examples=80, deadline=None)
@given(st.lists(_REQUEST, max_size=60))
def test_requests_and_histograms_expose_what_prometheus_client_would(
    requests: list[tuple[int, bool, float, float, int, int]],
) -> None:
    """Per status code and per bucket (values on a bound included), the same counts and sums."""
    ours = MetricsRegistry()
    proxy = ProxyMetrics(ours)
    reference = CollectorRegistry()
    counter = Counter(catalogue.REQUESTS.name, "r", ["code"], registry=reference)
    histograms = {
        spec.name: Histogram(spec.name, "h", buckets=spec.buckets, registry=reference)
        for spec in (
            catalogue.UPSTREAM_LATENCY,
            catalogue.OVERHEAD,
            catalogue.REQUEST_SIZE,
            catalogue.RESPONSE_SIZE,
        )
    }
    for status, forwarded, latency, overhead, sent, received in requests:
        started = 100.0
        proxy.request_done(
            status,
            started,
            started + overhead if forwarded else 0.0,
            started + overhead + latency,
            sent,
            received,
        )
        counter.labels(str(status)).inc()
        if forwarded:
            sent_at = started + overhead
            histograms[catalogue.UPSTREAM_LATENCY.name].observe(
                started + overhead + latency - sent_at
            )
            histograms[catalogue.OVERHEAD.name].observe(sent_at - started)
        histograms[catalogue.REQUEST_SIZE.name].observe(sent)
        histograms[catalogue.RESPONSE_SIZE.name].observe(received)
    names = {catalogue.REQUESTS.name, *histograms}
    assert _samples(ours, names) == _samples(reference, names)


def test_error_counters_start_at_zero_without_created_samples() -> None:
    """Upstream and client error counters, like every other driftgauge counter, expose no
    `_created` series (they did, as prometheus_client Counters) and each known reason from 0."""
    registry = MetricsRegistry()
    proxy = ProxyMetrics(registry)
    proxy.client_error("bad_request")
    for accept in ("text/plain", "application/openmetrics-text; version=1.0.0"):
        body, _ = render_metrics(registry, accept)
        text = body.decode()
        assert "_created" not in text
        parse = openmetrics_families if "openmetrics" in accept else text_string_to_metric_families
        samples = {
            (sample.name, sample.labels["reason"]): sample.value
            for family in parse(text)
            for sample in family.samples
            if "reason" in sample.labels
        }
        expected = {("driftgauge_upstream_errors_total", r): 0.0 for r in UPSTREAM_ERROR_REASONS}
        expected[("driftgauge_client_errors_total", "accept_paused")] = 0.0
        expected[("driftgauge_client_errors_total", "bad_request")] = 1.0
        expected[("driftgauge_client_errors_total", "client_stalled")] = 0.0
        expected[("driftgauge_client_errors_total", "head_too_large")] = 0.0
        expected[("driftgauge_client_errors_total", "upgrade_unsupported")] = 0.0
        assert samples == expected


def test_the_registry_knows_the_families_it_collects() -> None:
    """describe() names them: another metric of one of their names is refused."""
    registry = MetricsRegistry()
    ProxyMetrics(registry)
    spec = catalogue.OVERHEAD
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Histogram(spec.name, "h", buckets=spec.buckets, registry=registry)
