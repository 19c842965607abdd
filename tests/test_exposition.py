"""The collector and the metrics listener: names, gating, formats, promtool."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator, Callable

import numpy as np
import pytest
from aiohttp import ClientSession, web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from driftgauge import __version__
from driftgauge.baseline import Baseline
from driftgauge.config import Config
from driftgauge.exposition import MonitorCollector, metrics_routes
from driftgauge.monitor import Monitor
from driftgauge.typing import Extracted
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
