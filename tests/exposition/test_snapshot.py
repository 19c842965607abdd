"""The snapshot part written directly: byte-identical to prometheus_client's rendering, baseline once."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

from driftgauge.baseline import Baseline
from driftgauge.config import Config
from driftgauge.exposition import MonitorCollector, RenderedSnapshot
from driftgauge.exposition.gzipjoin import gzip_join
from driftgauge.exposition.snapshot import SnapshotFamilies
from driftgauge.monitor import Monitor, Snapshot
from driftgauge.sketches.codec import decode_summary, encode_summary
from driftgauge.sketches.summary import NumericSummary
from driftgauge.typing import Extracted
from tests.exposition_support import (
    AWKWARD_MODEL,
    ReferenceCollector,
    busy_pipeline,
    parsed,
    registry_of,
    with_awkward_values,
)
from tests.helpers import training_rows


def _expected(monitor: Monitor, openmetrics: bool) -> bytes:
    """The old snapshot part of ``monitor`` as prometheus_client renders it (no ``# EOF``)."""
    reference = registry_of(ReferenceCollector(monitor, live=False, snapshot=True))
    if openmetrics:
        rendered: bytes = openmetrics_latest(reference)  # type: ignore[no-untyped-call]
        return rendered.removesuffix(b"# EOF\n")
    return generate_latest(reference)


def _served(rendered: RenderedSnapshot, openmetrics: bool) -> bytes:
    """What a scrape appends, checking the deflated blocks decode to the same bytes."""
    pieces = rendered.pieces(openmetrics)
    raw = b"".join(piece.raw for piece in pieces)
    assert gzip.decompress(gzip_join(pieces, 1)) == raw
    return raw


def _assert_served_as_before(rendered: RenderedSnapshot, monitor: Monitor) -> None:
    for openmetrics in (False, True):
        body, expected = _served(rendered, openmetrics), _expected(monitor, openmetrics)
        eof = b"# EOF\n" if openmetrics else b""
        assert parsed(body + eof, openmetrics) == parsed(expected + eof, openmetrics)
        assert body == expected


@pytest.mark.parametrize("model", ["wine", AWKWARD_MODEL], ids=["plain", "awkward-model-name"])
@pytest.mark.parametrize("state", ["before-first-recompute", "computed", "awkward-values"])
def test_snapshot_part_is_byte_identical_to_the_old_rendering(
    tmp_path: Path, model: str, state: str
) -> None:
    """Every family (baseline, drift, quantiles, segments, performance, fairness) in both formats
    equals prometheus_client's rendering of the old families, NaN and ±Inf values included."""
    monitor = busy_pipeline(model, tmp_path).monitor
    if state == "before-first-recompute":
        monitor.snapshot = Snapshot(computed_at=0.0, duration=0.0)
    elif state == "awkward-values":
        monitor.snapshot = with_awkward_values(monitor.snapshot)
    rendered = RenderedSnapshot(registry_of(MonitorCollector(monitor, "snapshot")))
    rendered.refresh()
    _assert_served_as_before(rendered, monitor)
    names = {name for name, *_ in parsed(_served(rendered, False), False)}
    assert {"driftgauge_feature_quantile", "driftgauge_feature_mean"} <= names
    assert "driftgauge_baseline_bin_ratio" in names
    if state != "before-first-recompute":
        assert {"driftgauge_disparate_impact", "driftgauge_class_performance"} <= names


def test_baseline_part_is_rendered_once_and_reused(tmp_path: Path) -> None:
    """Recomputes re-render only the snapshot's families; the baseline's bytes stay the same object."""
    monitor = busy_pipeline("wine", tmp_path).monitor
    rendered = RenderedSnapshot(registry_of(MonitorCollector(monitor, "snapshot")))
    rendered.refresh()
    first = rendered.pieces(False), rendered.pieces(True)
    monitor.snapshot = with_awkward_values(monitor.snapshot)
    rendered.refresh()
    second = rendered.pieces(False), rendered.pieces(True)
    for before, after in zip(first, second, strict=True):
        assert before[0] is after[0]
        assert before[1].raw != after[1].raw
    assert b"driftgauge_baseline_bin_ratio{" in first[0][0].raw
    assert b"driftgauge_psi{" not in first[0][0].raw


def test_series_leaving_the_snapshot_leave_the_output(tmp_path: Path) -> None:
    """Series that stop appearing (windows below their minimum, no more segments) are not
    written from an earlier recompute's layout, and ones that come back are."""
    monitor = busy_pipeline(AWKWARD_MODEL, tmp_path).monitor
    computed = monitor.snapshot
    rendered = RenderedSnapshot(registry_of(MonitorCollector(monitor, "snapshot")))
    rendered.refresh()
    gated = tuple(
        replace(
            item,
            psi=None,
            psi_noise_floor=None,
            design_effect=None,
            js_distance=None,
            ks_statistic=None,
        )
        for item in computed.fields
    )
    monitor.snapshot = replace(computed, fields=gated, segments=(), fairness=(), performance=())
    rendered.refresh()
    _assert_served_as_before(rendered, monitor)
    assert b"driftgauge_psi{" not in _served(rendered, False)
    monitor.snapshot = computed
    rendered.refresh()
    _assert_served_as_before(rendered, monitor)


def test_model_without_segments_or_feedback(
    make_config: Callable[..., Config], make_baseline: Callable[..., Baseline]
) -> None:
    """Without segments and feedback their families are left out, exactly as before."""
    config = make_config()
    monitor = Monitor(config, make_baseline(config, 2_000))
    monitor.ingest([Extracted(rows=300, columns=training_rows(300, 7))])
    monitor.compute()
    rendered = RenderedSnapshot(registry_of(MonitorCollector(monitor, "snapshot")))
    rendered.refresh()
    _assert_served_as_before(rendered, monitor)
    body = _served(rendered, False)
    assert b"driftgauge_segment_psi" not in body
    assert b"driftgauge_performance" not in body


def test_recompute_part_renders_a_given_snapshot(tmp_path: Path) -> None:
    """recompute_part renders the snapshot it is given, or the monitor's latest."""
    monitor = busy_pipeline("wine", tmp_path).monitor
    families = SnapshotFamilies(monitor)
    latest = families.recompute_part()
    other = families.recompute_part(with_awkward_values(monitor.snapshot))
    assert latest != other
    assert families.recompute_part(monitor.snapshot) == latest
    assert b"NaN" in other[0]
    assert other[1].count(b"# TYPE driftgauge_psi gauge\n") == 1
    for openmetrics in (latest[1], other[1]):
        parsed(families.baseline_part(True).raw + openmetrics + b"# EOF\n", True)


def test_the_live_mean_of_values_near_float64s_largest_is_their_mean(
    make_config: Callable[..., Config], make_baseline: Callable[..., Baseline]
) -> None:
    """driftgauge_feature_mean of values near ±1.8e308, in batches a second apart, is their
    exact mean (Fraction), though their sum overflows float64, and stays so through a state
    snapshot's encoding of the window."""
    config = make_config()
    monitor = Monitor(config, make_baseline(config, 2_000))
    rng = np.random.default_rng(5)
    values = np.concatenate([rng.uniform(1.0e308, 1.79e308, 590), -rng.uniform(0, 1e308, 10)])
    for i, part in enumerate(np.array_split(values, 12)):
        monitor.ingest([Extracted(len(part), {"alcohol": part.tolist()})], now=1e9 + i)
    monitor.compute(now=1e9 + 12)
    rendered = RenderedSnapshot(registry_of(MonitorCollector(monitor, "snapshot")))
    rendered.refresh()
    [family] = [
        f for f in parsed(_served(rendered, False), False) if f[0] == "driftgauge_feature_mean"
    ]
    means = {dict(labels)["window"]: float(value) for _, labels, value in family[3]}
    exact = float(sum(map(Fraction, values.tolist())) / len(values))
    assert means == {"5m": pytest.approx(exact, rel=1e-12), "1h": pytest.approx(exact, rel=1e-12)}
    live = monitor.merged_windows(1e9 + 12)["5m"]["alcohol"]
    assert isinstance(live, NumericSummary)
    restored = live.empty_like()
    decode_summary(restored, encode_summary(live))
    assert restored.mean == pytest.approx(exact, rel=1e-12)


def test_quantiles_are_written_at_the_digits_of_their_float32(tmp_path: Path) -> None:
    """The live and baseline quantiles, float32 values of their sketches, are written at the
    fewest digits that read back as the same float32 (at most 9 significant, not float64's
    17: -2.2643893, not -2.2643892765045166), so every value still names the sketch's."""
    monitor = busy_pipeline("wine", tmp_path).monitor
    rendered = RenderedSnapshot(registry_of(MonitorCollector(monitor, "snapshot")))
    rendered.refresh()
    body = _served(rendered, False).decode()
    lines = [
        line
        for line in body.splitlines()
        if line.startswith(("driftgauge_feature_quantile{", "driftgauge_baseline_quantile{"))
    ]
    assert len(lines) >= 14
    written = [line.rsplit(" ", 1)[1] for line in lines]
    digits = [len(text.lstrip("-").replace(".", "").lstrip("0").split("e")[0]) for text in written]
    assert max(digits) <= 9, written
    expected = {
        q: np.float32(v)
        for item in monitor.snapshot.fields
        if item.spec.name == "alcohol" and item.window == "5m"
        for q, v in item.quantiles
    }
    for line, text in zip(lines, written, strict=True):
        if (
            line.startswith('driftgauge_feature_quantile{feature="alcohol"')
            and 'window="5m"' in line
        ):
            q = float(line.split('q="')[1].split('"')[0])
            assert np.float32(float(text)) == expected[q]
