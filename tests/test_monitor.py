"""The monitor: counters and windows fed by extracted batches, and the drift statistics over them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from scipy import stats as scipy_stats

from driftgauge import stats
from driftgauge.baseline import Baseline
from driftgauge.config import Config
from driftgauge.monitor import QUANTILES, FieldStats, Monitor, Snapshot
from driftgauge.sketches.summary import NumericSummary
from driftgauge.typing import Extracted
from tests._stats_helpers import baseline_from_columns

BASELINE_ROWS = 20_000
MIX = {"a": 0.5, "b": 0.3, "c": 0.15, "d": 0.05}
DRIFTED_MIX = {"a": 0.3, "b": 0.3, "c": 0.25, "d": 0.15}
T0 = 1_000_000.0

MonitorFactory = Callable[..., Monitor]


def training(rng: np.random.Generator, n: int) -> dict[str, list[Any]]:
    return {
        "x": rng.normal(10.0, 2.0, n).tolist(),
        "color": rng.choice(list(MIX), n, p=list(MIX.values())).tolist(),
        "flat": [5.0] * n,
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, Baseline]:
    """A config with numeric ``x``, categorical ``color`` and constant ``flat``, and its baseline."""
    types = {"x": "numeric", "color": "categorical", "flat": "numeric"}
    columns = training(np.random.default_rng(1), BASELINE_ROWS)
    return baseline_from_columns(tmp_path_factory.mktemp("monitor"), columns, types)


@pytest.fixture
def make_monitor(built: tuple[Config, Baseline]) -> MonitorFactory:
    """Monitors over the baseline, optionally with another ``min_observations``."""
    config, baseline = built

    def make(min_observations: int | None = None) -> Monitor:
        if min_observations is not None:
            return Monitor(replace(config, min_observations=min_observations), baseline)
        return Monitor(config, baseline)

    return make


def stat(snapshot: Snapshot, name: str, window: str = "1m") -> FieldStats:
    [found] = [f for f in snapshot.fields if f.spec.name == name and f.window == window]
    return found


def feed(
    monitor: Monitor,
    rng: np.random.Generator,
    n: int,
    shift: float = 0.0,
    mix: dict[str, float] = MIX,
    start: float = T0,
    batch: int = 250,
) -> None:
    """``n`` rows in batches of ``batch``, one batch a second from ``start``."""
    for i, offset in enumerate(range(0, n, batch)):
        rows = min(batch, n - offset)
        columns = {
            "x": (rng.normal(10.0, 2.0, rows) + shift * 2.0).tolist(),
            "color": rng.choice(list(mix), rows, p=list(mix.values())).tolist(),
            "flat": [5.0] * rows,
        }
        monitor.ingest([Extracted(rows, columns)], now=start + i)


def test_ingest_counts_observations_missing_and_invalid_reasons(
    make_monitor: MonitorFactory,
) -> None:
    """Each value lands in exactly one of observations, missing or an invalid reason."""
    monitor = make_monitor()
    first = Extracted(
        7,
        {
            "x": [10.0, None, "bad", float("nan"), float("inf"), 1e9, True],
            "color": ["a", None, "zzz", "b", "a", "c", "a"],
            "flat": [5.0] * 7,
        },
    )
    second = Extracted(3, {"x": [9.0, -1e9, 10.5], "flat": [5.0, 5.0, 5.0]}, extra_columns=2)
    monitor.ingest([first, second, Extracted(0, {})], now=T0)
    counters = monitor.counters()
    x = counters["x"]
    assert x.observations == 5  # 10, 1e9, 9, -1e9, 10.5
    assert x.missing == 1
    assert dict(x.invalid) == {"wrong_type": 2, "nan": 1, "inf": 1, "out_of_range": 2}
    assert int(x.bins.sum()) == x.observations
    color = counters["color"]
    assert color.observations == 6
    assert color.missing == 1 + 3  # one None, and three rows without the column
    assert dict(color.invalid) == {"unseen_category": 1}
    assert int(color.bins.sum()) == color.observations
    assert counters["flat"].observations == 10
    assert (monitor.rows_total, monitor.extra_columns_total) == (10, 2)
    live = monitor.merged_windows(T0)["1m"]["x"]
    assert isinstance(live, NumericSummary)
    assert (live.count, live.missing, live.wrong_type, live.nan, live.inf) == (5, 1, 2, 1, 1)


def test_cumulative_bins_match_the_baseline_binning(make_monitor: MonitorFactory) -> None:
    """The per-bin counters are exact counts of the ingested values in the baseline's bins."""
    monitor = make_monitor()
    rng = np.random.default_rng(3)
    values = rng.normal(10.0, 2.0, 1000)
    monitor.ingest([Extracted(1000, {"x": values.tolist()})], now=T0)
    edges = monitor.baseline.fields["x"].summary.binning.edges
    assert isinstance(edges, np.ndarray)
    expected = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    assert monitor.counters()["x"].bins.tolist() == expected.tolist()


def test_drift_figures_appear_once_the_window_holds_min_observations(
    make_monitor: MonitorFactory,
) -> None:
    """Below min_observations the drift figures are None; at the threshold they are set."""
    monitor = make_monitor(min_observations=100)
    rng = np.random.default_rng(4)
    feed(monitor, rng, 99, batch=99)
    below = monitor.compute(now=T0 + 1)
    for name in ("x", "color"):
        figures = stat(below, name)
        assert figures.observations == 99
        assert not figures.drift_ready
        assert figures.psi is figures.js_distance is figures.psi_noise_floor is None
        assert figures.ks_statistic is figures.chi2_pvalue is None
    assert len(stat(below, "x").quantiles) == len(QUANTILES)
    feed(monitor, rng, 1, batch=1, start=T0 + 1)
    at = monitor.compute(now=T0 + 2)
    x, color = stat(at, "x"), stat(at, "color")
    assert x.observations == color.observations == 100
    assert x.drift_ready
    assert color.drift_ready
    assert x.ks_statistic is not None
    assert x.ks_pvalue is not None
    assert x.chi2_pvalue is None
    assert color.chi2_pvalue is not None
    assert color.ks_statistic is None


def test_undrifted_traffic_stays_near_the_noise_floor(make_monitor: MonitorFactory) -> None:
    """Same-distribution traffic keeps PSI within the no-drift spread around the floor."""
    monitor = make_monitor()
    feed(monitor, np.random.default_rng(5), 5000)
    snapshot = monitor.compute(now=T0 + 25)
    x, color = stat(snapshot, "x"), stat(snapshot, "color")
    assert x.psi_noise_floor == pytest.approx(stats.psi_noise_floor(10, 5000, BASELINE_ROWS))
    assert color.psi_noise_floor == pytest.approx(stats.psi_noise_floor(4, 5000, BASELINE_ROWS))
    for figures, bins in ((x, 10), (color, 4)):
        assert figures.psi is not None
        assert figures.psi_noise_floor is not None
        # Without drift PSI/floor ≈ χ²(B − 1)/(B − 1): allow its 99.9th percentile.
        limit = scipy_stats.chi2.ppf(0.999, bins - 1) / (bins - 1)
        assert 0.0 < figures.psi < limit * figures.psi_noise_floor
    assert color.unseen == 0


def test_drifted_traffic_is_far_above_the_noise_floor(make_monitor: MonitorFactory) -> None:
    """A half-σ shift and a changed category mix give PSI far above the floor and tiny p-values."""
    monitor = make_monitor()
    feed(monitor, np.random.default_rng(6), 5000, shift=0.5, mix=DRIFTED_MIX)
    snapshot = monitor.compute(now=T0 + 25)
    x, color = stat(snapshot, "x"), stat(snapshot, "color")
    for figures in (x, color):
        assert figures.psi is not None
        assert figures.psi_noise_floor is not None
        assert figures.psi > 20.0 * figures.psi_noise_floor
    assert x.ks_pvalue is not None
    assert x.ks_pvalue < 1e-6
    assert color.chi2_pvalue is not None
    assert color.chi2_pvalue < 1e-6


def test_live_quantiles_are_within_the_window_sketch_rank_error(
    make_monitor: MonitorFactory,
) -> None:
    """Each reported quantile has, in the raw live data, a rank within the sketch's error."""
    monitor = make_monitor()
    values = np.random.default_rng(8).lognormal(2.0, 0.5, 6000)
    for i, part in enumerate(np.array_split(values, 12)):
        monitor.ingest([Extracted(len(part), {"x": part.tolist()})], now=T0 + i)
    x = stat(monitor.compute(now=T0 + 12), "x")
    live = monitor.merged_windows(T0 + 12)["1m"]["x"]
    assert isinstance(live, NumericSummary)
    error = live.kll.normalized_rank_error(False)
    data = np.sort(values)
    for q, value in x.quantiles:
        low = np.searchsorted(data, value, side="left") / len(data)
        high = np.searchsorted(data, value, side="right") / len(data)
        assert low - error <= q <= high + error
    assert x.total == pytest.approx(float(values.sum()))


def test_a_constant_feature_has_zero_psi_and_ks_sees_it_move(make_monitor: MonitorFactory) -> None:
    """A constant baseline has one bin, so PSI is 0; KS D is 1 once the constant changes."""
    monitor = make_monitor()
    monitor.ingest([Extracted(200, {"flat": [5.0] * 200})], now=T0)
    same = stat(monitor.compute(now=T0), "flat")
    assert same.psi == 0.0
    assert same.ks_statistic == 0.0
    moved = make_monitor()
    moved.ingest([Extracted(200, {"flat": [6.0] * 200})], now=T0)
    figures = stat(moved.compute(now=T0), "flat")
    assert figures.psi == 0.0
    assert figures.ks_statistic == 1.0
    assert figures.ks_pvalue is not None
    assert figures.ks_pvalue < 1e-6
    assert moved.counters()["flat"].invalid["out_of_range"] == 200


def test_windows_forget_old_traffic_but_counters_do_not(make_monitor: MonitorFactory) -> None:
    """Two minutes later the one-minute window is empty while the totals remain."""
    monitor = make_monitor()
    feed(monitor, np.random.default_rng(9), 500)
    later = stat(monitor.compute(now=T0 + 120), "x")
    assert later.observations == 0
    assert later.psi is None
    assert later.quantiles == ()
    assert monitor.counters()["x"].observations == 500
    assert monitor.snapshot.computed_at == T0 + 120


def test_ingest_without_now_reads_the_injected_clock(built: tuple[Config, Baseline]) -> None:
    """The monitor's clock decides the slice when ``now`` is not given."""
    config, baseline = built
    times = iter([T0, T0 + 3600.0])
    monitor = Monitor(config, baseline, clock=lambda: next(times))
    monitor.ingest([Extracted(1, {"x": [1.0]})])
    assert stat(monitor.compute(), "x").observations == 0
    assert monitor.counters()["x"].observations == 1
