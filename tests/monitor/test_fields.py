"""The monitor: counters and windows fed by extracted batches, and the drift statistics over them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats

from driftgauge import stats
from driftgauge.baseline import Baseline
from driftgauge.config import Config, Window
from driftgauge.monitor import QUANTILES, FieldStats, Monitor, Snapshot
from driftgauge.sketches.codec import decode_summary, encode_summary
from driftgauge.sketches.summary import NumericSummary
from driftgauge.sketches.window import Slice
from driftgauge.typing import Columns, Extracted
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
    one_row: bool = False,
) -> None:
    """``n`` rows in batches of ``batch``, one batch a second from ``start``: each batch one
    request, or with ``one_row`` a request a row."""
    for i, offset in enumerate(range(0, n, batch)):
        rows = min(batch, n - offset)
        columns = {
            "x": (rng.normal(10.0, 2.0, rows) + shift * 2.0).tolist(),
            "color": rng.choice(list(mix), rows, p=list(mix.values())).tolist(),
            "flat": [5.0] * rows,
        }
        monitor.ingest(
            one_request_a_row(rows, columns) if one_row else [Extracted(rows, columns)],
            now=start + i,
        )


def one_request_a_row(rows: int, columns: dict[str, list[Any]]) -> list[Extracted]:
    """``rows`` rows of ``columns`` as as many requests of one row (independent draws)."""
    return [Extracted(1, {k: v[j : j + 1] for k, v in columns.items()}) for j in range(rows)]


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
    feed(monitor, np.random.default_rng(5), 5000, one_row=True)
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
    assert x.mean == pytest.approx(float(values.mean()))


def test_a_constant_feature_reads_psi_and_ks_when_it_moves(make_monitor: MonitorFactory) -> None:
    """A constant baseline has bins below, at and above its value: PSI is 0 while it holds and
    that of every value moving bin once it changes (it had one bin, PSI 0 whatever came); KS D
    is 1."""
    monitor = make_monitor()
    monitor.ingest([Extracted(200, {"flat": [5.0] * 200})], now=T0)
    same = stat(monitor.compute(now=T0), "flat")
    assert same.psi == 0.0
    assert same.ks_statistic == 0.0
    moved = make_monitor()
    moved.ingest(one_request_a_row(200, {"flat": [6.0] * 200}), now=T0)
    figures = stat(moved.compute(now=T0), "flat")
    assert figures.psi == pytest.approx(stats.psi([0, 0, 200], [0, 200, 0]))
    assert figures.psi > 18
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


# -- numeric blocks -----------------------------------------------------------------

block_cells = st.one_of(
    st.floats(-5.0, 25.0),
    st.sampled_from([5.0, float("nan"), float("inf"), -float("inf"), 1e9, -1e9]),
)
PIECE_KINDS = ("block", "reversed block", "x in a block", "lists", "neither")


@st.composite
def pieces(draw: st.DrawFn) -> tuple[str, Extracted]:
    """One record's columns: ``x`` and ``flat`` as a block (either order), partly, as lists or absent."""
    kind = draw(st.sampled_from(PIECE_KINDS))
    rows = draw(st.integers(1, 6))
    color = draw(st.lists(st.sampled_from(["a", "b", "zzz"]), min_size=rows, max_size=rows))
    cells = draw(st.lists(block_cells, min_size=2 * rows, max_size=2 * rows))
    matrix = np.asarray(cells, dtype=np.float64).reshape(rows, 2)
    x, flat = matrix[:, 0].tolist(), matrix[:, 1].tolist()
    if kind == "block":
        return kind, Extracted(rows, Columns({"color": color}, [(("x", "flat"), matrix)]))
    if kind == "reversed block":
        block = (("flat", "x"), matrix[:, ::-1].copy())
        return kind, Extracted(rows, Columns({"color": color}, [block]))
    if kind == "x in a block":
        block = (("x",), matrix[:, :1].copy())
        return kind, Extracted(rows, Columns({"color": color, "flat": flat}, [block]))
    if kind == "lists":
        return kind, Extracted(rows, {"x": x, "flat": flat, "color": color}, extra_columns=1)
    return kind, Extracted(rows, {"color": color})


def as_lists(piece: Extracted) -> Extracted:
    """The same record with every column a plain list (the per-field path)."""
    columns = {
        name: column.tolist() if isinstance(column, np.ndarray) else list(column)
        for name, column in piece.columns.items()
    }
    return Extracted(piece.rows, columns, piece.extra_columns)


def assert_same_monitor_state(got: Monitor, expected: Monitor, now: float) -> None:
    assert (got.rows_total, got.extra_columns_total) == (
        expected.rows_total,
        expected.extra_columns_total,
    )
    got_counters, expected_counters = got.counters(), expected.counters()
    for name, counters in expected_counters.items():
        mine = got_counters[name]
        assert (mine.observations, mine.missing, mine.absent) == (
            counters.observations,
            counters.missing,
            counters.absent,
        ), name
        assert mine.invalid == counters.invalid, name
        assert mine.bins.tolist() == counters.bins.tolist(), name
    got_windows, expected_windows = got.merged_windows(now), expected.merged_windows(now)
    for label, summaries in expected_windows.items():
        for name, summary in summaries.items():
            mine = got_windows[label][name]
            assert (mine.count, mine.missing, mine.bins.tolist()) == (
                summary.count,
                summary.missing,
                summary.bins.tolist(),
            ), (label, name)
            if isinstance(summary, NumericSummary):
                assert isinstance(mine, NumericSummary)
                assert (mine.wrong_type, mine.nan, mine.inf) == (
                    summary.wrong_type,
                    summary.nan,
                    summary.inf,
                )
                assert (mine.total, mine.minimum, mine.maximum) == (
                    summary.total,
                    summary.minimum,
                    summary.maximum,
                )
                assert mine.kll.n == summary.kll.n
                if summary.count:
                    ranks = [0.0, 0.1, 0.5, 0.9, 1.0]
                    assert mine.kll.get_quantiles(ranks) == summary.kll.get_quantiles(ranks)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(pieces(), min_size=1, max_size=4), min_size=1, max_size=3))
def test_numeric_blocks_are_ingested_as_their_columns_would_be(
    built: tuple[Config, Baseline], batches: list[list[tuple[str, Extracted]]]
) -> None:
    """Blocks in any order, mixed with lists or absent: counters and windows as with lists."""
    config, baseline = built
    config = replace(config, windows=(Window(60.0, 6), Window(300.0, 5)))
    got, expected = Monitor(config, baseline), Monitor(config, baseline)
    for second, batch in enumerate(batches):
        got.ingest([piece for _, piece in batch], now=T0 + second * 20)
        expected.ingest([as_lists(piece) for _, piece in batch], now=T0 + second * 20)
    assert_same_monitor_state(got, expected, T0 + len(batches) * 20)


def test_a_large_block_shares_one_batch_sketch_between_windows(
    built: tuple[Config, Baseline],
) -> None:
    """Past the shared-sketch size, every window still gets every value of the block."""
    config, baseline = built
    config = replace(config, windows=(Window(60.0, 6), Window(300.0, 5)))
    got, expected = Monitor(config, baseline), Monitor(config, baseline)
    matrix = np.random.default_rng(11).normal(10.0, 2.0, (3000, 2))
    got.ingest([Extracted(3000, Columns({}, [(("x", "flat"), matrix)]))], now=T0)
    expected.ingest([Extracted(3000, {"x": matrix[:, 0].tolist(), "flat": matrix[:, 1]})], now=T0)
    for label, summaries in got.merged_windows(T0).items():
        x = summaries["x"]
        assert isinstance(x, NumericSummary)
        reference = expected.merged_windows(T0)[label]["x"]
        assert isinstance(reference, NumericSummary)
        assert (x.kll.n, x.count, x.bins.tolist()) == (3000, 3000, reference.bins.tolist())
        assert (x.total, x.minimum, x.maximum) == (
            reference.total,
            reference.minimum,
            reference.maximum,
        )
        assert x.kll.get_quantile(0.5) == pytest.approx(10.0, abs=0.2)
    assert got.counters()["flat"].invalid == expected.counters()["flat"].invalid


def test_drops_and_parse_errors_are_counted_while_an_ingest_holds_the_lock(
    make_monitor: MonitorFactory,
) -> None:
    """The proxy's loop counts drops without waiting for an ingest in a worker thread."""
    monitor = make_monitor()
    counted = threading.Event()

    def count() -> None:
        monitor.count_dropped("feedback_expired", 3)
        monitor.count_parse_error("invalid_json")
        counted.set()

    with monitor.locked():  # as an ingest holds it
        worker = threading.Thread(target=count)
        worker.start()
        assert counted.wait(5.0)
    worker.join()
    assert (monitor.dropped, monitor.parse_errors) == ({"feedback_expired": 3}, {"invalid_json": 1})


def test_blocks_add_up_in_slices_restored_from_a_snapshot(built: tuple[Config, Baseline]) -> None:
    """Restored slices no longer share one table of bin counts; blocks still count into them."""
    config, baseline = built
    got, expected = Monitor(config, baseline), Monitor(config, baseline)
    rng = np.random.default_rng(12)
    first, second = rng.normal(10.0, 2.0, (50, 2)), rng.normal(10.0, 2.0, (30, 2))
    for monitor in (got, expected):
        monitor.ingest([Extracted(50, {"x": first[:, 0].tolist(), "flat": first[:, 1]})], now=T0)
    for window in got.windows.values():
        restored = []
        for piece in window.slices():
            entries = window.fresh()
            for name, summary in piece.summaries.items():
                decode_summary(entries[name], encode_summary(summary))
            restored.append(Slice(piece.index, entries))
        window.restore(restored)
        [piece] = window.slices()
        assert piece.summaries["x"].bins.base is None  # decoded: its own array
    got.ingest([Extracted(30, Columns({}, [(("x", "flat"), second)]))], now=T0 + 1)
    expected.ingest([Extracted(30, {"x": second[:, 0].tolist(), "flat": second[:, 1]})], now=T0 + 1)
    assert_same_monitor_state(got, expected, T0 + 1)


# Fields float32 rounds into one or a few values: nanosecond timestamps, 1e9 and cents, values
# within 1e-9 of 1, values beyond float32's range.  (mean, sd) of each.
FLOAT64_FIELDS = {
    "ts": (1.7e18, 1e6),
    "amount": (1e9, 0.05),
    "near_one": (1.0, 1e-9),
    "huge": (5e39, 1e39),
}


@pytest.fixture(scope="module")
def built_float64(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Config, Baseline, dict[str, list[float]]]:
    """A baseline (from a CSV, as ``driftgauge baseline`` builds it) of the FLOAT64_FIELDS and
    an ordinary ``x``, and the training values."""
    rng = np.random.default_rng(11)
    columns = {
        name: rng.normal(mu, sd, BASELINE_ROWS).tolist()
        for name, (mu, sd) in FLOAT64_FIELDS.items()
    }
    columns["x"] = rng.normal(10.0, 2.0, BASELINE_ROWS).tolist()
    types = dict.fromkeys(columns, "numeric")
    config, baseline = baseline_from_columns(tmp_path_factory.mktemp("float64"), columns, types)
    return config, baseline, columns


@pytest.mark.parametrize("shift", [0.0, 0.5])
def test_fields_float32_cannot_tell_apart_read_psi_and_ks_of_their_float64_values(
    built_float64: tuple[Config, Baseline, dict[str, list[float]]], shift: float
) -> None:
    """PSI is numpy's on the raw float64 values over the baseline's bins (nine equal-mass
    edges, not float32's one value), KS D is scipy's within both sketches' rank error and the
    median is within the live sketch's: undrifted traffic reads no drift and a 0.5 sd shift
    reads drift (all four read PSI and KS 0 with float32 sketches and classes).  An ordinary
    field keeps float32 live sketches."""
    config, baseline, training = built_float64
    rng = np.random.default_rng(12 + int(shift * 10))
    rows = 2_000
    live = {
        name: rng.normal(mu + shift * sd, sd, rows) for name, (mu, sd) in FLOAT64_FIELDS.items()
    }
    monitor = Monitor(config, baseline)
    monitor.ingest(one_request_a_row(rows, {k: v.tolist() for k, v in live.items()}), now=T0)
    snapshot = monitor.compute(now=T0)
    windows = monitor.merged_windows(T0)["1m"]
    assert baseline.fields["x"].live_items == "float32"
    assert cast_numeric(windows["x"]).items == "float32"
    gate = scipy_stats.chi2.ppf(0.999, config.sketch.bins - 1) / (config.sketch.bins - 1)
    for name in FLOAT64_FIELDS:
        held = baseline.fields[name]
        summary = cast_numeric(held.summary)
        assert held.live_items == "float64" and cast_numeric(windows[name]).items == "float64"
        edges, raw, values = summary.binning.edges, np.asarray(training[name]), live[name]
        assert len(edges) == config.sketch.bins - 1
        figures = stat(snapshot, name)
        assert figures.psi is not None and figures.psi_noise_floor is not None
        assert figures.psi == pytest.approx(
            stats.psi(bin_counts(values, edges), bin_counts(raw, edges))
        )
        assert figures.ks_statistic is not None and figures.ks_pvalue is not None
        error = stats.ks_rank_error(cast_numeric(windows[name]).kll) + stats.ks_rank_error(
            summary.kll
        )
        exact = scipy_stats.ks_2samp(values, raw)
        assert abs(figures.ks_statistic - exact.statistic) <= error, name
        median = dict(figures.quantiles)[0.5]
        rank = np.searchsorted(np.sort(values), median) / rows
        assert abs(rank - 0.5) <= stats.ks_rank_error(cast_numeric(windows[name]).kll) + 1 / rows
        if shift:
            assert figures.psi > gate * figures.psi_noise_floor, name
            assert figures.ks_pvalue < 1e-6, name
        else:
            assert figures.psi < gate * figures.psi_noise_floor, name
            assert figures.ks_pvalue > 0.01, name
        assert monitor.counters()[name].invalid["out_of_range"] == int(
            np.count_nonzero((values < raw.min()) | (values > raw.max()))
        )


def cast_numeric(summary: Any) -> NumericSummary:
    assert isinstance(summary, NumericSummary)
    return summary


def bin_counts(values: Any, edges: Any) -> Any:
    """numpy's count of ``values`` in each bin ``edges[i-1] <= x < edges[i]``."""
    return np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
