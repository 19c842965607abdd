"""The collector and the metrics listener: names, gating, formats, promtool."""

from __future__ import annotations

import gzip
import math
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from aiohttp import ClientSession, web
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from driftgauge import __version__
from driftgauge.baseline import Baseline
from driftgauge.config import Config
from driftgauge.exposition import (
    MonitorCollector,
    RenderedSnapshot,
    metrics_routes,
    render_metrics,
)
from driftgauge.live_metrics import LiveFamilies
from driftgauge.monitor import CATEGORICAL_INVALID_REASONS, NUMERIC_INVALID_REASONS, Monitor
from driftgauge.protocols import REASONS
from driftgauge.typing import Extracted
from tests.feedback_support import Pipeline, build, classifier_columns, instances, record, wire
from tests.helpers import free_port, training_rows

PROMTOOL = shutil.which("promtool")


def _rows(n: int, seed: int, shift: float = 0.0) -> Extracted:
    columns = training_rows(n, seed)
    columns["alcohol"] = (np.asarray(columns["alcohol"]) + shift).tolist()
    return Extracted(rows=n, columns=columns)


@pytest.fixture
def monitor(make_config: Callable[..., Config], make_baseline: Callable[..., Baseline]) -> Monitor:
    config = make_config()
    return Monitor(config, make_baseline(config, 5_000))


def _registry(monitor: Monitor) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(MonitorCollector(monitor))
    return registry


def test_drift_gauges_appear_only_after_min_observations(monitor: Monitor) -> None:
    """Below min_observations a window exports its count but no drift gauges."""
    registry = _registry(monitor)
    labels = {"model": "wine", "feature": "alcohol", "role": "input", "window": "5m"}
    monitor.ingest([_rows(30, 1)])
    monitor.compute()
    assert registry.get_sample_value("driftgauge_window_observations", labels) == 30
    assert registry.get_sample_value("driftgauge_psi", labels) is None
    monitor.ingest([_rows(30, 2)])
    monitor.compute()
    assert registry.get_sample_value("driftgauge_window_observations", labels) == 60
    assert registry.get_sample_value("driftgauge_psi", labels) is not None
    assert registry.get_sample_value("driftgauge_ks_statistic", labels) is not None
    region = labels | {"feature": "region"}
    assert registry.get_sample_value("driftgauge_chi2_pvalue", region) is not None
    assert registry.get_sample_value("driftgauge_ks_statistic", region) is None


def test_drifted_feature_reads_far_above_its_noise_floor(monitor: Monitor) -> None:
    """A 1σ shift in one feature shows as PSI ≫ noise floor there and nowhere else."""
    registry = _registry(monitor)
    monitor.ingest([_rows(4_000, 9, shift=0.8)])
    monitor.compute()
    for feature, drifted in (("alcohol", True), ("ash", False)):
        labels = {"model": "wine", "feature": feature, "role": "input", "window": "1h"}
        psi = registry.get_sample_value("driftgauge_psi", labels)
        floor = registry.get_sample_value("driftgauge_psi_noise_floor", labels)
        assert psi is not None
        assert floor is not None
        assert (psi > 10 * floor) is drifted


def test_counters_and_bins_are_exported(monitor: Monitor) -> None:
    """Cumulative counters, per-bin counts and baseline ratios carry the right labels."""
    registry = _registry(monitor)
    batch = _rows(100, 3)
    columns = dict(batch.columns)
    alcohol = list(columns["alcohol"])
    alcohol[:3] = [None, "x", float("inf")]
    columns["alcohol"] = alcohol
    monitor.ingest([Extracted(100, columns)])
    field = {"model": "wine", "feature": "alcohol", "role": "input"}
    assert registry.get_sample_value("driftgauge_observations_total", field) == 97
    assert registry.get_sample_value("driftgauge_missing_total", field) == 1
    assert (
        registry.get_sample_value("driftgauge_invalid_total", field | {"reason": "wrong_type"}) == 1
    )
    assert registry.get_sample_value("driftgauge_invalid_total", field | {"reason": "inf"}) == 1
    bins = [
        registry.get_sample_value("driftgauge_bin_observations_total", field | {"bin": str(i)})
        for i in range(10)
    ]
    assert sum(b or 0 for b in bins) == 97
    ratios = [
        registry.get_sample_value("driftgauge_baseline_bin_ratio", field | {"bin": str(i)})
        for i in range(10)
    ]
    assert sum(r or 0 for r in ratios) == pytest.approx(1.0)
    region = {"model": "wine", "feature": "region", "role": "input", "bin": "__unseen__"}
    assert registry.get_sample_value("driftgauge_baseline_bin_ratio", region) == 0.0
    assert registry.get_sample_value("driftgauge_build_info", {"version": __version__}) == 1


def test_feature_value_summary_has_quantiles_sum_and_count(monitor: Monitor) -> None:
    """Live quantiles come from the window's sketch with _sum and _count."""
    registry = _registry(monitor)
    batch = _rows(1_000, 4)
    monitor.ingest([batch])
    monitor.compute()
    labels = {"model": "wine", "feature": "alcohol", "role": "input", "window": "5m"}
    median = registry.get_sample_value("driftgauge_feature_value", labels | {"quantile": "0.5"})
    raw = np.asarray(batch.columns["alcohol"])
    assert median is not None
    assert abs(np.mean(raw <= median) - 0.5) <= 0.02
    assert registry.get_sample_value("driftgauge_feature_value_count", labels) == 1_000
    assert registry.get_sample_value("driftgauge_feature_value_sum", labels) == pytest.approx(
        raw.sum()
    )


def test_promtool_check_metrics_passes(monitor: Monitor) -> None:
    """`promtool check metrics` finds no problem in the text exposition."""
    assert PROMTOOL is not None, (
        "promtool missing: scripts/test.sh installs the Debian prometheus package"
    )
    monitor.ingest([_rows(2_000, 5, shift=0.3)])
    monitor.compute()
    text = generate_latest(_registry(monitor))
    assert b"driftgauge_psi{" in text
    result = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text, capture_output=True, check=False
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert result.stdout.strip() == b""


@pytest.fixture
async def metrics_server(monitor: Monitor) -> AsyncIterator[str]:
    app = web.Application()
    ready = {"ok": False}
    app.add_routes(metrics_routes(_registry(monitor), "wine", lambda: (ready["ok"], "starting")))
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_http_endpoints_and_content_negotiation(
    metrics_server: str, monitor: Monitor
) -> None:
    """/metrics serves text or OpenMetrics by Accept; /healthz, /readyz and / answer."""
    monitor.ingest([_rows(500, 6)])
    monitor.compute()
    async with ClientSession() as session:
        async with session.get(f"{metrics_server}/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = await response.text()
        names = {f.name for f in text_string_to_metric_families(text)}
        assert {"driftgauge_psi", "driftgauge_observations", "driftgauge_feature_value"} <= names
        headers = {"Accept": "application/openmetrics-text; version=1.0.0"}
        async with session.get(f"{metrics_server}/metrics", headers=headers) as response:
            assert response.headers["Content-Type"].startswith("application/openmetrics-text")
            assert (await response.text()).endswith("# EOF\n")
        async with session.get(f"{metrics_server}/healthz") as response:
            assert response.status == 200
        async with session.get(f"{metrics_server}/readyz") as response:
            assert response.status == 503
            assert "starting" in await response.text()
        async with session.get(f"{metrics_server}/") as response:
            assert "/metrics" in await response.text()


# -- the direct writer against the prometheus_client rendering it replaced ----------------

AWKWARD_MODEL = 'wine "red"\\ \nrosé'
PARSE_ERROR_REASONS = (*REASONS, "invalid_json", "unknown_path", "internal")
DROP_REASONS = ("queue_full", "body_too_large", "feedback_expired")
ACCEPTS = (
    "",
    "text/plain",
    "text/plain; version=1.0.0; escaping=underscores",
    "text/plain; version=1.0.0; escaping=allow-utf-8",
    "application/openmetrics-text; version=1.0.0",
    "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=allow-utf-8",
    "application/openmetrics-text; version=1.0.0; escaping=dots",
    "application/openmetrics-text; version=1.0.0; escaping=values",
    "text/plain; version=1.0.0; escaping=dots",
)
PLAIN_NAMES = tuple(a for a in ACCEPTS if "dots" not in a and "values" not in a)


def reference_live_families(monitor: Monitor) -> Iterator[Metric]:
    """The live families exactly as MonitorCollector built them before the direct writer."""
    model = monitor.config.model
    counters = monitor.counters()
    field_labels = ["model", "feature", "role"]
    seen = CounterMetricFamily(
        "driftgauge_observations", "Values seen per field.", labels=field_labels
    )
    missing = CounterMetricFamily(
        "driftgauge_missing", "Missing or null values per field.", labels=field_labels
    )
    invalid = CounterMetricFamily(
        "driftgauge_invalid",
        "Invalid values per field: wrong type, NaN/inf, out of baseline range, unseen category.",
        labels=[*field_labels, "reason"],
    )
    bins = CounterMetricFamily(
        "driftgauge_bin_observations",
        "Values per baseline bin (sum over replicas for fleet-wide PSI).",
        labels=[*field_labels, "bin"],
    )
    for spec in monitor.config.fields:
        labels = [model, spec.name, spec.role]
        counter = counters[spec.name]
        seen.add_metric(labels, counter.observations)
        missing.add_metric(labels, counter.missing)
        reasons = NUMERIC_INVALID_REASONS if spec.type == "numeric" else CATEGORICAL_INVALID_REASONS
        for reason in reasons:
            invalid.add_metric([*labels, reason], counter.invalid.get(reason, 0))
        bin_labels = monitor.baseline.fields[spec.name].bin_labels
        for label, count in zip(bin_labels, counter.bins, strict=True):
            bins.add_metric([*labels, label], int(count))
    yield from (seen, missing, invalid, bins)
    parse_errors = CounterMetricFamily(
        "driftgauge_parse_errors",
        "Bodies that could not be read, by reason.",
        labels=["model", "reason"],
    )
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
    absent = CounterMetricFamily(
        "driftgauge_missing_fields",
        "Rows whose request lacked the field altogether (a schema violation; also counted missing).",
        labels=field_labels,
    )
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
    outcomes = monitor.outcomes
    if outcomes is None:
        return
    results = CounterMetricFamily(
        "driftgauge_labels",
        "Labels received, by whether they matched a held prediction.",
        labels=["model", "result"],
    )
    for result in ("matched", "unmatched", "invalid"):
        results.add_metric([model, result], outcomes.labels.get(result, 0))
    yield results
    pending = GaugeMetricFamily(
        "driftgauge_pending_predictions", "Predictions waiting for their label.", labels=["model"]
    )
    pending.add_metric([model], outcomes.pending)
    yield pending


class ReferenceCollector(Collector):
    """The old live families, then (optionally) the snapshot part of a real collector."""

    def __init__(self, monitor: Monitor, snapshot: bool = False) -> None:
        self.monitor = monitor
        self.snapshot = MonitorCollector(monitor, "snapshot") if snapshot else None

    def collect(self) -> Iterator[Metric]:
        yield from reference_live_families(self.monitor)
        if self.snapshot is not None:
            yield from self.snapshot.collect()


class _Forward(Collector):
    """Another registry's collector (a prometheus_client Counter), registered here too."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector

    def collect(self) -> Iterable[Metric]:
        return self.collector.collect()


def _no_families(self: LiveFamilies) -> Iterator[Metric]:
    raise AssertionError("the live counters went through prometheus_client")


def _registry_of(*collectors: Collector) -> CollectorRegistry:
    registry = CollectorRegistry()
    for collector in collectors:
        registry.register(collector)
    return registry


Parsed = list[tuple[str, str, str, list[tuple[str, tuple[tuple[str, str], ...], str]]]]


def parsed(body: bytes, openmetrics: bool) -> Parsed:
    """Every family (name, type, help) with its samples (name, sorted labels, value as text)."""
    parse = openmetrics_families if openmetrics else text_string_to_metric_families
    return [
        (
            family.name,
            family.type,
            family.documentation,
            [(s.name, tuple(sorted(s.labels.items())), repr(s.value)) for s in family.samples],
        )
        for family in parse(body.decode())
    ]


@pytest.fixture(params=["wine", AWKWARD_MODEL], ids=["plain", "awkward-model-name"])
def busy(request: pytest.FixtureRequest, tmp_path: Path) -> Pipeline:
    """Numeric and categorical features and predictions, two windows, region segments and
    feedback, after traffic with every kind of bad value, labels, parse errors and drops."""
    config, baseline = build(tmp_path, segments={"features": ["region"], "top": 2})
    pipeline = wire(replace(config, model=request.param), baseline)
    columns = classifier_columns(400, seed=3)
    rows = instances(columns, 0, 400)
    rows[0]["alcohol"] = None
    rows[1]["alcohol"] = "strong"
    rows[2]["alcohol"] = math.nan
    rows[3]["ash"] = math.inf
    rows[4]["alcohol"] = 100.0
    rows[5]["region"] = "atlantis"
    del rows[6]["ash"]
    rows[7]["colour"] = "red"
    for start in range(0, 400, 50):
        pipeline.batcher.ingest([record(rows[start : start + 50], f"r{start}")])
    labelled = [(f"r{start}:{i}", "a") for start in range(0, 200, 50) for i in range(50)]
    pipeline.outcomes.label([*labelled, ("nobody", "b"), ("r300:0", None)])
    pipeline.monitor.count_parse_error("invalid_json")
    pipeline.monitor.count_parse_error("a_new_reason")
    pipeline.monitor.count_dropped("queue_full", 2_500_000)  # prints as 2.5e+06
    pipeline.monitor.count_dropped("another_reason", 7)
    pipeline.monitor.compute()
    return pipeline


@pytest.mark.parametrize("accept", ACCEPTS)
def test_live_counters_are_the_samples_prometheus_client_rendered(
    busy: Pipeline, accept: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Direct-written live counters equal the old prometheus_client rendering in every format."""
    monitor = busy.monitor
    if accept in PLAIN_NAMES:
        # Only escapings that would rename legacy names fall back to prometheus_client families.
        monkeypatch.setattr(LiveFamilies, "metrics", _no_families)
    body, content_type = render_metrics(_registry_of(MonitorCollector(monitor, "live")), accept)
    encoder, expected_type = choose_encoder(accept)
    expected = encoder(_registry_of(ReferenceCollector(monitor)))
    assert content_type == expected_type
    openmetrics = content_type.startswith("application/openmetrics-text")
    if accept in PLAIN_NAMES:
        families = parsed(body, openmetrics)
        assert families == parsed(expected, openmetrics)
        names = {name for name, *_ in families}
        assert {"driftgauge_bin_observations", "driftgauge_labels", "driftgauge_dropped"} <= names
    assert body == expected


def test_registry_reads_see_the_same_live_samples(busy: Pipeline) -> None:
    """Outside /metrics the collector yields prometheus_client families of the same samples."""
    monitor = busy.monitor
    registry = _registry_of(MonitorCollector(monitor, "live"))
    reference = _registry_of(ReferenceCollector(monitor))
    assert generate_latest(registry) == generate_latest(reference)
    labels = {"model": monitor.config.model, "feature": "alcohol", "role": "input"}
    assert registry.get_sample_value("driftgauge_missing_total", labels) == 1
    assert registry.get_sample_value("driftgauge_invalid_total", labels | {"reason": "nan"}) == 1


@pytest.mark.parametrize("accept", PLAIN_NAMES)
def test_whole_exposition_equals_the_old_one(busy: Pipeline, accept: str) -> None:
    """Live counters, prometheus_client metrics and the rendered snapshot, as the sidecar wires them."""
    monitor = busy.monitor
    registry = _registry_of(MonitorCollector(monitor, "live"))
    requests = Counter("driftgauge_requests", "Proxied requests.", ["code"], registry=registry)
    requests.labels("200").inc(3)
    rendered = RenderedSnapshot(_registry_of(MonitorCollector(monitor, "snapshot")))
    rendered.refresh()
    body, content_type = render_metrics(registry, accept, rendered)
    reference = _registry_of(ReferenceCollector(monitor))
    reference.register(_Forward(requests))
    reference.register(MonitorCollector(monitor, "snapshot"))
    encoder, _ = choose_encoder(accept)
    openmetrics = content_type.startswith("application/openmetrics-text")
    expected = encoder(reference)
    families = parsed(body, openmetrics)
    assert families == parsed(expected, openmetrics)
    names = {name for name, *_ in families}
    assert {"driftgauge_requests", "driftgauge_segment_psi", "driftgauge_performance"} <= names
    assert body == expected
    assert body.count(b"# EOF\n") == (1 if openmetrics else 0)
    zipped, _ = render_metrics(registry, accept, rendered, gzip=True)
    assert gzip.decompress(zipped) == body


def test_all_part_collector_on_a_route_without_snapshot_matches(busy: Pipeline) -> None:
    """A single collector with every part (no RenderedSnapshot) serves the old exposition too."""
    monitor = busy.monitor
    body, _ = render_metrics(_registry_of(MonitorCollector(monitor)), "text/plain")
    assert body == generate_latest(_registry_of(ReferenceCollector(monitor, snapshot=True)))


def test_promtool_accepts_the_direct_written_exposition(busy: Pipeline) -> None:
    """`promtool check metrics` finds no problem in the whole text body, awkward labels included."""
    assert PROMTOOL is not None, (
        "promtool missing: scripts/test.sh installs the Debian prometheus package"
    )
    rendered = RenderedSnapshot(_registry_of(MonitorCollector(busy.monitor, "snapshot")))
    rendered.refresh()
    live = _registry_of(MonitorCollector(busy.monitor, "live"))
    body, _ = render_metrics(live, "text/plain", rendered)
    assert b"driftgauge_bin_observations_total{" in body
    result = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=body, capture_output=True, check=False
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert result.stdout.strip() == b""


async def test_http_scrapes_serve_the_old_samples_in_each_format(busy: Pipeline) -> None:
    """Over HTTP (a worker thread renders): text, OpenMetrics and gzip bodies equal the reference."""
    monitor = busy.monitor
    rendered = RenderedSnapshot(_registry_of(MonitorCollector(monitor, "snapshot")))
    rendered.refresh()
    registry = _registry_of(MonitorCollector(monitor, "live"))
    app = web.Application()
    app.add_routes(metrics_routes(registry, "wine", lambda: (True, "ok"), rendered))
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    reference = _registry_of(ReferenceCollector(monitor, snapshot=True))
    cases = (
        ({"Accept": "text/plain", "Accept-Encoding": "identity"}, generate_latest),
        ({"Accept": "application/openmetrics-text; version=1.0.0"}, openmetrics_latest),
        ({"Accept": "text/plain", "Accept-Encoding": "gzip"}, generate_latest),
    )
    try:
        async with ClientSession() as session:
            for headers, encoder in cases:
                url = f"http://127.0.0.1:{port}/metrics"
                async with session.get(url, headers=headers) as response:
                    assert response.status == 200
                    if "gzip" in headers.get("Accept-Encoding", ""):
                        assert response.headers["Content-Encoding"] == "gzip"
                    body = await response.read()
                assert body == encoder(reference)
    finally:
        await runner.cleanup()
