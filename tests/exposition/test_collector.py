"""The collector and the metrics listener: names, gating, formats, promtool."""

from __future__ import annotations

import gzip
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import pytest
from aiohttp import ClientSession, web
from prometheus_client import Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from driftgauge import __version__
from driftgauge.baseline import Baseline, build_baseline
from driftgauge.config import Config
from driftgauge.exposition import (
    DirectWriter,
    MetricsRegistry,
    MonitorCollector,
    RenderedSnapshot,
    metrics_routes,
    render_metrics,
)
from driftgauge.exposition.gzipjoin import Deflated
from driftgauge.exposition.live import LiveFamilies
from driftgauge.exposition.snapshot import SnapshotFamilies
from driftgauge.monitor import Monitor
from driftgauge.typing import Extracted
from tests.exposition_support import (
    ACCEPTS,
    AWKWARD_MODEL,
    PLAIN_NAMES,
    ReferenceCollector,
    busy_pipeline,
    parsed,
    registry_of,
    with_awkward_values,
)
from tests.feedback_support import Pipeline
from tests.helpers import free_port, training_rows, write_csv

PROMTOOL = shutil.which("promtool")


def _rows(n: int, seed: int, shift: float = 0.0) -> Extracted:
    columns = training_rows(n, seed)
    columns["alcohol"] = (np.asarray(columns["alcohol"]) + shift).tolist()
    return Extracted(rows=n, columns=columns)


def _one_a_request(batch: Extracted) -> list[Extracted]:
    """A batch's rows as requests of one row each (independent draws)."""
    return [
        Extracted(1, {name: column[j : j + 1] for name, column in batch.columns.items()})
        for j in range(batch.rows)
    ]


@pytest.fixture
def monitor(make_config: Callable[..., Config], make_baseline: Callable[..., Baseline]) -> Monitor:
    config = make_config()
    return Monitor(config, make_baseline(config, 5_000))


def _registry(monitor: Monitor) -> MetricsRegistry:
    return registry_of(MonitorCollector(monitor))


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
    monitor.ingest(_one_a_request(_rows(4_000, 9, shift=0.8)))
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
    # The metrics version the generated rules are written for (DriftgaugeRulesOutdated).
    build = {"version": __version__, "metrics_version": "2"}
    assert registry.get_sample_value("driftgauge_build_info", build) == 1


def test_feature_quantile_and_mean_gauges(monitor: Monitor) -> None:
    """Live quantiles come from the window's sketch, the mean from its sum and count."""
    registry = _registry(monitor)
    batch = _rows(1_000, 4)
    monitor.ingest([batch])
    monitor.compute()
    labels = {"model": "wine", "feature": "alcohol", "role": "input", "window": "5m"}
    median = registry.get_sample_value("driftgauge_feature_quantile", labels | {"q": "0.5"})
    raw = np.asarray(batch.columns["alcohol"])
    assert median is not None
    assert abs(np.mean(raw <= median) - 0.5) <= 0.02
    mean = registry.get_sample_value("driftgauge_feature_mean", labels)
    assert mean == pytest.approx(raw.mean())
    assert registry.get_sample_value("driftgauge_window_observations", labels) == 1_000
    region = labels | {"feature": "region"}
    assert registry.get_sample_value("driftgauge_feature_mean", region) is None


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


def _negative_monitor(config: Config, tmp_path: Path) -> tuple[Monitor, np.ndarray]:
    """A monitor whose alcohol lies far below zero, in the baseline and live; the live values."""
    columns = training_rows(5_000)
    columns["alcohol"] = [value - 20.0 for value in columns["alcohol"]]
    baseline = build_baseline(config, [write_csv(tmp_path / "negative.csv", columns)])
    monitor = Monitor(config, baseline)
    batch = _rows(1_000, 4, shift=-20.0)
    monitor.ingest([batch])
    monitor.compute()
    return monitor, np.asarray(batch.columns["alcohol"])


_OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def test_negative_features_give_gauges_strict_parsers_accept(
    make_config: Callable[..., Config], tmp_path: Path
) -> None:
    """Below zero, the live and baseline quantile and mean gauges are negative, and every way
    of writing them gives OpenMetrics that prometheus_client's strict parser reads and text
    that `promtool check metrics` passes."""
    assert PROMTOOL is not None, (
        "promtool missing: scripts/test.sh installs the Debian prometheus package"
    )
    monitor, raw = _negative_monitor(make_config(), tmp_path)
    rendered = RenderedSnapshot(registry_of(MonitorCollector(monitor, "snapshot")))
    rendered.refresh()
    live = registry_of(MonitorCollector(monitor, "live"))
    every_part = registry_of(MonitorCollector(monitor))
    openmetrics_bodies = {
        "direct": render_metrics(live, _OPENMETRICS, rendered)[0],
        "direct, one collector": render_metrics(every_part, _OPENMETRICS)[0],
        "collector families": openmetrics_latest(every_part),  # type: ignore[no-untyped-call]
        "escaped": render_metrics(live, f"{_OPENMETRICS}; escaping=values", rendered)[0],
    }
    field = {"model": "wine", "feature": "alcohol", "role": "input"}
    for path, body in openmetrics_bodies.items():
        values: dict[str, list[float]] = {}
        for family in openmetrics_families(body.decode()):  # raises on what it refuses
            for sample in family.samples:
                if field.items() <= sample.labels.items() and sample.labels.get("window") != "1h":
                    values.setdefault(sample.name, []).append(sample.value)
        if path == "escaped":
            quantiles = [v for name, v in values.items() if name.endswith("feature__quantile")]
            assert len(quantiles) == 1 and max(quantiles[0]) < 0
            continue
        assert len(values["driftgauge_feature_quantile"]) == 7, path
        assert len(values["driftgauge_baseline_quantile"]) == 7, path
        for name in ("feature_quantile", "feature_mean", "baseline_quantile", "baseline_mean"):
            assert max(values[f"driftgauge_{name}"]) < 0, (path, name)
        assert values["driftgauge_feature_mean"] == [pytest.approx(raw.mean())]
    text_bodies = (render_metrics(live, "text/plain", rendered)[0], generate_latest(every_part))
    for body in text_bodies:
        assert b'driftgauge_feature_quantile{feature="alcohol",model="wine",q="0.5"' in body
        result = subprocess.run(
            [PROMTOOL, "check", "metrics"], input=body, capture_output=True, check=False
        )
        assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
        assert result.stdout.strip() == b""


@pytest.fixture
async def metrics_server(monitor: Monitor) -> AsyncIterator[str]:
    app = web.Application()
    ready = {"ok": False}
    app.add_routes(metrics_routes(_registry(monitor), ["wine"], lambda: (ready["ok"], "starting")))
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
        assert {"driftgauge_psi", "driftgauge_feature_quantile", "driftgauge_feature_mean"} <= names
        headers = {"Accept": "application/openmetrics-text; version=1.0.0"}
        async with session.get(f"{metrics_server}/metrics", headers=headers) as response:
            assert response.headers["Content-Type"].startswith("application/openmetrics-text")
            body = await response.read()
        assert body.endswith(b"# EOF\n")
        assert "driftgauge_feature_quantile" in {name for name, *_ in parsed(body, True)}
        async with session.get(f"{metrics_server}/healthz") as response:
            assert response.status == 200
        async with session.get(f"{metrics_server}/readyz") as response:
            assert response.status == 503
            assert "starting" in await response.text()
        async with session.get(f"{metrics_server}/") as response:
            assert "/metrics" in await response.text()


# -- the direct writers against the prometheus_client rendering they replaced ----------------


class _Forward(Collector):
    """Another registry's collector (a prometheus_client Counter), registered here too."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector

    def collect(self) -> Iterable[Metric]:
        return self.collector.collect()


def _no_families(self: LiveFamilies | SnapshotFamilies) -> Iterator[Metric]:
    raise AssertionError(f"{type(self).__name__} went through prometheus_client")


@pytest.fixture(params=["wine", AWKWARD_MODEL], ids=["plain", "awkward-model-name"])
def busy(request: pytest.FixtureRequest, tmp_path: Path) -> Pipeline:
    """Every family in use (see ``busy_pipeline``), for a plain and an awkward model name."""
    return busy_pipeline(request.param, tmp_path)


@pytest.fixture(params=["computed", "awkward-values"])
def busier(request: pytest.FixtureRequest, busy: Pipeline) -> Pipeline:
    """``busy`` as computed, or with NaN, ±Inf, huge and tiny values in every gauge of its snapshot."""
    if request.param == "awkward-values":
        busy.monitor.snapshot = with_awkward_values(busy.monitor.snapshot)
    return busy


@pytest.mark.parametrize("accept", ACCEPTS)
def test_live_counters_are_the_samples_prometheus_client_rendered(
    busy: Pipeline, accept: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Direct-written live counters equal the old prometheus_client rendering in every format."""
    monitor = busy.monitor
    if accept in PLAIN_NAMES:
        # Only escapings that would rename legacy names fall back to prometheus_client families.
        monkeypatch.setattr(LiveFamilies, "metrics", _no_families)
    body, content_type = render_metrics(registry_of(MonitorCollector(monitor, "live")), accept)
    encoder, expected_type = choose_encoder(accept)
    expected = encoder(registry_of(ReferenceCollector(monitor)))
    assert content_type == expected_type
    openmetrics = content_type.startswith("application/openmetrics-text")
    families = parsed(body, openmetrics)  # every OpenMetrics body by the strict parser
    if accept in PLAIN_NAMES:
        assert families == parsed(expected, openmetrics)
        names = {name for name, *_ in families}
        assert {"driftgauge_bin_observations", "driftgauge_labels", "driftgauge_dropped"} <= names
    assert body == expected


def test_registry_reads_see_the_same_live_samples(busy: Pipeline) -> None:
    """Outside /metrics the collector yields prometheus_client families of the same samples."""
    monitor = busy.monitor
    registry = registry_of(MonitorCollector(monitor, "live"))
    reference = registry_of(ReferenceCollector(monitor))
    assert generate_latest(registry) == generate_latest(reference)
    labels = {"model": monitor.config.model, "feature": "alcohol", "role": "input"}
    assert registry.get_sample_value("driftgauge_missing_total", labels) == 1
    assert registry.get_sample_value("driftgauge_invalid_total", labels | {"reason": "nan"}) == 1


def test_registry_reads_see_the_same_snapshot_samples(busier: Pipeline) -> None:
    """Outside /metrics the snapshot part is prometheus_client families of the old samples."""
    monitor = busier.monitor
    registry = registry_of(MonitorCollector(monitor, "snapshot"))
    reference = registry_of(ReferenceCollector(monitor, live=False, snapshot=True))
    assert generate_latest(registry) == generate_latest(reference)
    openmetrics: bytes = openmetrics_latest(registry)  # type: ignore[no-untyped-call]
    assert openmetrics == openmetrics_latest(reference)  # type: ignore[no-untyped-call]
    assert "driftgauge_feature_mean" in {name for name, *_ in parsed(openmetrics, True)}
    labels = {"model": monitor.config.model, "feature": "alcohol", "role": "input", "window": "5m"}
    (held,) = (i for i in monitor.snapshot.fields if i.spec.name == "alcohol" and i.window == "5m")
    assert registry.get_sample_value("driftgauge_window_observations", labels) == held.observations


@pytest.mark.parametrize("accept", ACCEPTS)
def test_whole_exposition_equals_the_old_one(
    busier: Pipeline, accept: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Live counters, prometheus_client metrics and the rendered snapshot, as the sidecar wires
    them, equal the old rendering byte for byte, in every format and name escaping."""
    monitor = busier.monitor
    if accept in PLAIN_NAMES:
        # The direct writers only: neither part is built as prometheus_client families.
        monkeypatch.setattr(LiveFamilies, "metrics", _no_families)
        monkeypatch.setattr(SnapshotFamilies, "metrics", _no_families)
    registry = registry_of(MonitorCollector(monitor, "live"))
    requests = Counter("driftgauge_requests", "Proxied requests.", ["code"], registry=registry)
    requests.labels("200").inc(3)
    rendered = RenderedSnapshot(registry_of(MonitorCollector(monitor, "snapshot")))
    rendered.refresh()
    body, content_type = render_metrics(registry, accept, rendered)
    reference = registry_of(ReferenceCollector(monitor))
    reference.register(_Forward(requests))
    reference.register(ReferenceCollector(monitor, live=False, snapshot=True))
    encoder, _ = choose_encoder(accept)
    openmetrics = content_type.startswith("application/openmetrics-text")
    expected = encoder(reference)
    families = parsed(body, openmetrics)  # every OpenMetrics body by the strict parser
    if accept in PLAIN_NAMES:
        assert families == parsed(expected, openmetrics)
        names = {name for name, *_ in families}
        assert {"driftgauge_requests", "driftgauge_segment_psi", "driftgauge_performance"} <= names
        assert {"driftgauge_feature_quantile", "driftgauge_feature_mean"} <= names
    assert body == expected
    assert body.count(b"# EOF\n") == (1 if openmetrics else 0)
    zipped, _ = render_metrics(registry, accept, rendered, gzip=True)
    assert gzip.decompress(zipped) == body


def test_escaped_snapshot_part_is_rendered_once_per_recompute(
    busy: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name escaping the direct writer does not speak renders the snapshot part through
    prometheus_client on the first such scrape after a recompute, then serves it again."""
    monitor = busy.monitor
    calls: list[int] = []
    families = SnapshotFamilies.metrics

    def counted(self: SnapshotFamilies) -> Iterator[Metric]:
        calls.append(1)
        return families(self)

    monkeypatch.setattr(SnapshotFamilies, "metrics", counted)
    accept = "text/plain; version=1.0.0; escaping=dots"
    live = registry_of(MonitorCollector(monitor, "live"))
    rendered = RenderedSnapshot(registry_of(MonitorCollector(monitor, "snapshot")))
    rendered.refresh()
    first, _ = render_metrics(live, accept, rendered)
    again, _ = render_metrics(live, accept, rendered, gzip=True)
    assert gzip.decompress(again) == first
    assert b"driftgauge__psi{" in first
    assert len(calls) == 1
    monitor.snapshot = with_awkward_values(monitor.snapshot)
    rendered.refresh()
    later, _ = render_metrics(live, accept, rendered)
    assert len(calls) == 2
    encoder, _ = choose_encoder(accept)
    reference = registry_of(ReferenceCollector(monitor, snapshot=True))
    assert later == encoder(reference) != first


@pytest.mark.parametrize(
    "accept", ["text/plain", "application/openmetrics-text; version=1.0.0; escaping=dots"]
)
def test_no_snapshot_part_before_the_first_refresh(busy: Pipeline, accept: str) -> None:
    """Until the first recompute renders it, no scrape has a snapshot part, whatever its escaping."""
    monitor = busy.monitor
    rendered = RenderedSnapshot(registry_of(MonitorCollector(monitor, "snapshot")))
    body, _ = render_metrics(registry_of(MonitorCollector(monitor, "live")), accept, rendered)
    encoder, content_type = choose_encoder(accept)
    assert body == encoder(registry_of(ReferenceCollector(monitor)))
    parsed(body, content_type.startswith("application/openmetrics-text"))


@pytest.mark.parametrize("accept", ["text/plain", "application/openmetrics-text; version=1.0.0"])
def test_all_part_collector_on_a_route_without_snapshot_matches(
    busier: Pipeline, accept: str
) -> None:
    """A single collector with every part (no RenderedSnapshot) serves the old exposition too."""
    monitor = busier.monitor
    body, content_type = render_metrics(registry_of(MonitorCollector(monitor)), accept)
    encoder, _ = choose_encoder(accept)
    assert body == encoder(registry_of(ReferenceCollector(monitor, snapshot=True)))
    names = {name for name, *_ in parsed(body, content_type.startswith("application/openmetrics"))}
    assert {"driftgauge_feature_quantile", "driftgauge_feature_mean"} <= names


def test_promtool_accepts_the_direct_written_exposition(busier: Pipeline) -> None:
    """`promtool check metrics` finds no problem in the whole text body, awkward labels and
    values included."""
    assert PROMTOOL is not None, (
        "promtool missing: scripts/test.sh installs the Debian prometheus package"
    )
    rendered = RenderedSnapshot(registry_of(MonitorCollector(busier.monitor, "snapshot")))
    rendered.refresh()
    live = registry_of(MonitorCollector(busier.monitor, "live"))
    body, _ = render_metrics(live, "text/plain", rendered)
    assert b"driftgauge_bin_observations_total{" in body
    assert b"driftgauge_feature_quantile{" in body
    assert b"driftgauge_feature_mean{" in body
    result = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=body, capture_output=True, check=False
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert result.stdout.strip() == b""


async def test_http_scrapes_serve_the_old_samples_in_each_format(busy: Pipeline) -> None:
    """Over HTTP (a worker thread renders): text, OpenMetrics and gzip bodies equal the reference."""
    monitor = busy.monitor
    rendered = RenderedSnapshot(registry_of(MonitorCollector(monitor, "snapshot")))
    rendered.refresh()
    registry = registry_of(MonitorCollector(monitor, "live"))
    app = web.Application()
    app.add_routes(metrics_routes(registry, ["wine"], lambda: (True, "ok"), rendered))
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    reference = registry_of(ReferenceCollector(monitor, snapshot=True))
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
                parsed(body, encoder is openmetrics_latest)
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("accept_encoding", "gzipped"),
    [
        ("gzip", True),
        ("deflate, GZIP;q=0.5", True),
        ("gzip;q=0", False),
        ("identity, gzip; q=0.0", False),
        ("x-gzip-not", False),
        ("br", False),
    ],
)
async def test_gzip_is_sent_only_when_accepted(accept_encoding: str, gzipped: bool) -> None:
    """gzip only when Accept-Encoding names it with a q above 0: `gzip;q=0` refuses it, and
    a coding merely containing the word is another coding."""
    registry = registry_of(_Fixed())
    app = web.Application()
    app.add_routes(metrics_routes(registry, ["wine"], lambda: (True, "ok")))
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with ClientSession(auto_decompress=False) as session:
            headers = {"Accept-Encoding": accept_encoding}
            async with session.get(f"http://127.0.0.1:{port}/metrics", headers=headers) as response:
                assert response.status == 200
                body = await response.read()
                encoding = response.headers.get("Content-Encoding")
    finally:
        await runner.cleanup()
    assert (encoding == "gzip") is gzipped
    assert (gzip.decompress(body) if gzipped else body) == _Fixed.TEXT


# -- how rendering is invoked: collect() yields families, direct writers are called explicitly --


class _Fixed(Collector):
    """A collector of one gauge that also writes it directly (a DirectWriter), counting each way."""

    TEXT = b"# HELP x_fixed Fixed.\n# TYPE x_fixed gauge\nx_fixed 1.0\n"

    def __init__(self) -> None:
        self.collected = 0
        self.written = 0

    def collect(self) -> Iterator[Metric]:
        self.collected += 1
        yield GaugeMetricFamily("x_fixed", "Fixed.", value=1)

    def write_text(self, openmetrics: bool) -> list[bytes]:
        self.written += 1
        return [self.TEXT]

    def write_deflated(self) -> tuple[list[Deflated], list[Deflated]]:
        return [Deflated.of(self.TEXT)], [Deflated.of(self.TEXT)]


def test_registry_tells_direct_writers_from_the_others(busy: Pipeline) -> None:
    """A MetricsRegistry lists the collectors to write directly and the rest, each in
    registration order, forgets unregistered ones and refuses target info."""
    live, snapshot = MonitorCollector(busy.monitor, "live"), MonitorCollector(busy.monitor)
    registry = registry_of(live)
    requests = Counter("driftgauge_requests", "Proxied requests.", ["code"], registry=registry)
    registry.register(snapshot)
    assert isinstance(live, DirectWriter)
    assert not isinstance(requests, DirectWriter)
    assert registry.parts() == ((live, snapshot), (requests,))
    registry.unregister(live)
    assert registry.parts() == ((snapshot,), (requests,))
    with pytest.raises(ValueError, match="target info"):
        registry.set_target_info({"env": "prod"})


@pytest.mark.parametrize("accept", ACCEPTS)
def test_render_calls_direct_writers_explicitly_and_collect_means_families(accept: str) -> None:
    """Any DirectWriter is written by write_text for names no escaping renames, and only then;
    otherwise, and for every registry read, its collect() yields families."""
    fixed = _Fixed()
    registry = registry_of(fixed)
    body, _ = render_metrics(registry, accept)
    encoder, _ = choose_encoder(accept)
    assert body == encoder(registry_of(_Forward(fixed)))
    fixed.collected = 0
    render_metrics(registry, accept)
    assert (fixed.written > 0, fixed.collected) == (
        (True, 0) if accept in PLAIN_NAMES else (False, 1)
    )
    assert registry.get_sample_value("x_fixed") == 1.0
