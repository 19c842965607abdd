"""Segments and fairness: per-segment prediction drift, positive rates, disparate impact,
equal opportunity, and the bound on segment label values."""

from __future__ import annotations

import math
import subprocess
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from driftgauge.baseline import Baseline
from driftgauge.config import Config, config_from_mapping
from driftgauge.exceptions import ConfigError
from driftgauge.monitor.segments import SegmentStats
from driftgauge.sketches.summary import CategoricalBinning, NumericBinning
from driftgauge.typing import Extracted
from tests._stats_helpers import exact_bin_counts, exact_psi
from tests.e2e_support import driftgauge_command, write_baseline, write_config
from tests.feedback_support import (
    Pipeline,
    build,
    classifier_columns,
    proxy_source,
    record,
    running,
    value,
    wire,
)
from tests.helpers import base_config, eventually, free_port

T0 = 1_700_000_000.0
TRAINING_ROWS = 3_000
TOP = 2
SEGMENTS = ("north", "south", "__other__")  # the two most frequent regions, then the rest
POSITIVE = "a"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, Baseline]:
    """The classifier with feedback (positive a) and region segments, top 2."""
    config, baseline = build(
        tmp_path_factory.mktemp("segments"),
        rows=TRAINING_ROWS,
        segments={"features": ["region"], "top": TOP},
    )
    return replace(config, min_observations=10), baseline


@pytest.fixture
def pipeline(built: tuple[Config, Baseline]) -> Pipeline:
    return wire(*built, lambda: T0)


def segment_of(region: str) -> str:
    return region if region in SEGMENTS[:TOP] else "__other__"


def numpy_counts(
    regions: list[str], predictions: list[Any], binning: NumericBinning | CategoricalBinning
) -> dict[str, np.ndarray[Any, Any]]:
    """Per-segment counts of a prediction's baseline bins, computed with numpy on raw values."""
    region_array = np.asarray([segment_of(r) for r in regions])
    result = {}
    for segment in SEGMENTS:
        chosen = [p for p, s in zip(predictions, region_array, strict=True) if s == segment]
        if isinstance(binning, NumericBinning):
            result[segment] = exact_bin_counts(np.asarray(chosen, dtype=np.float64), binning.edges)
        else:
            labels = np.asarray(binning.labels())
            result[segment] = np.asarray(
                [np.count_nonzero(np.asarray(chosen) == lab) for lab in labels]
            )
    return result


def test_segments_are_the_top_baseline_values_plus_other(pipeline: Pipeline) -> None:
    """Segment label values are the top regions of the training data by frequency, then __other__."""
    regions = classifier_columns(TRAINING_ROWS)["region"]
    values, counts = np.unique(regions, return_counts=True)
    top = [str(v) for v in values[np.argsort(-counts, kind="stable")][:TOP]]
    assert pipeline.segments.labels("region") == [*top, "__other__"]
    assert tuple(pipeline.segments.labels("region")) == SEGMENTS


def test_baseline_segment_counts_equal_numpy_counts(built: tuple[Config, Baseline]) -> None:
    """Baseline.segments holds, per segment, the exact training counts of each prediction bin."""
    _, baseline = built
    columns = classifier_columns(TRAINING_ROWS)
    for prediction in ("class", "p_a"):
        binning = baseline.fields[prediction].summary.binning
        expected = numpy_counts(columns["region"], columns[prediction], binning)
        held = baseline.segments["region"][prediction]
        assert held.shape == (TOP + 1, binning.size)
        for index, segment in enumerate(SEGMENTS):
            assert held[index].tolist() == expected[segment].tolist(), (prediction, segment)
    assert int(baseline.segments["region"]["class"].sum()) == TRAINING_ROWS


def crafted(groups: list[tuple[str, int, int]]) -> Extracted:
    """Rows per (region, predictions, of which positive) as one batch of predictions."""
    regions: list[str] = []
    classes: list[str] = []
    for region, n, positive in groups:
        regions += [region] * n
        classes += [POSITIVE] * positive + ["b"] * (n - positive)
    return Extracted(len(regions), {"region": regions, "class": classes})


def segment_stats(
    stats: tuple[SegmentStats, ...], prediction: str, window: str = "5m"
) -> dict[str, SegmentStats]:
    return {s.segment: s for s in stats if s.prediction == prediction and s.window == window}


def test_positive_rate_and_disparate_impact_match_hand_computation(pipeline: Pipeline) -> None:
    """Positive rate per segment, and lowest/highest rate over segments with min_observations."""
    # __other__ gathers east and a region never seen in training; it holds 8 < 10 predictions.
    batch = crafted([("north", 40, 30), ("south", 20, 5), ("east", 4, 4), ("mars", 4, 4)])
    pipeline.segments.add([batch], now=T0)
    text = pipeline.text()
    stats, fairness = pipeline.monitor.snapshot.segments, pipeline.monitor.snapshot.fairness
    by_segment = segment_stats(stats, "class")
    assert {k: v.observations for k, v in by_segment.items()} == {
        "north": 40,
        "south": 20,
        "__other__": 8,
    }
    assert by_segment["north"].positive_rate == 30 / 40
    assert by_segment["south"].positive_rate == 5 / 20
    assert by_segment["__other__"].positive_rate == 8 / 8
    impact = (5 / 20) / (30 / 40)
    assert {(f.segment_feature, f.window): f.disparate_impact for f in fairness} == {
        ("region", "5m"): impact,
        ("region", "1h"): impact,
    }
    assert value(text, "driftgauge_positive_rate", window="5m", segment="south") == 5 / 20
    assert value(text, "driftgauge_positive_rate", window="1h", segment="__other__") == 1.0
    assert (
        value(text, "driftgauge_disparate_impact", window="5m", segment_feature="region") == impact
    )
    assert by_segment["__other__"].psi is None  # too few predictions for drift either
    assert segment_stats(stats, "p_a")["north"].positive_rate is None


def test_disparate_impact_needs_two_segments_with_enough_predictions(pipeline: Pipeline) -> None:
    """With one segment at min_observations the ratio is undefined and not exported."""
    pipeline.segments.add([crafted([("north", 40, 30), ("south", 9, 0)])], now=T0)
    text = pipeline.text()
    assert pipeline.monitor.snapshot.fairness == ()
    assert value(text, "driftgauge_disparate_impact", window="5m") is None
    assert value(text, "driftgauge_positive_rate", window="5m", segment="south") == 0.0


def test_disparate_impact_is_not_exported_when_no_segment_predicts_positive(
    pipeline: Pipeline,
) -> None:
    """All rates zero: lowest/highest is 0/0, so no figure rather than NaN."""
    pipeline.segments.add([crafted([("north", 20, 0), ("south", 20, 0)])], now=T0)
    pipeline.monitor.compute()
    assert pipeline.monitor.snapshot.fairness == ()


def labelled_rows(
    region: str, positives_caught: int, positives_missed: int, negatives: int
) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of one region and their true labels: caught (a, predicted a), missed (a, predicted c)
    and negatives (c, predicted c)."""
    rows: list[dict[str, Any]] = []
    truth: list[str] = []
    for alcohol, label, n in (
        (13.8, "a", positives_caught),
        (12.0, "a", positives_missed),
        (12.0, "c", negatives),
    ):
        rows += [{"alcohol": alcohol, "ash": 2.2, "region": region}] * n
        truth += [label] * n
    return rows, truth


def test_equal_opportunity_difference_matches_hand_computation(pipeline: Pipeline) -> None:
    """Equal opportunity: highest minus lowest true positive rate over the segments holding
    min_observations (10) labelled positives; a segment with fewer has no rate."""
    groups = {
        "north": labelled_rows("north", 15, 5, 10),  # TPR 15/20
        "south": labelled_rows("south", 4, 6, 3),  # TPR 4/10
        "east": labelled_rows("east", 9, 0, 2),  # __other__: TPR 9/9, under 10 positives
    }
    pairs = []
    for region, (rows, truth) in groups.items():
        pipeline.batcher.ingest([record(rows, region)])
        pairs += [(f"{region}:{i}", label) for i, label in enumerate(truth)]
    assert pipeline.outcomes.label(pairs)["matched"] == len(pairs)
    text = pipeline.text()
    performance = {
        p.segment: p
        for p in pipeline.monitor.snapshot.performance
        if p.segment_feature == "region" and p.window == "5m"
    }
    assert performance["north"].true_positive_rate == 15 / 20
    assert performance["south"].true_positive_rate == 4 / 10
    assert performance["__other__"].true_positive_rate is None
    expected = 15 / 20 - 4 / 10
    assert value(
        text, "driftgauge_equal_opportunity_difference", window="5m", segment_feature="region"
    ) == pytest.approx(expected, abs=1e-12)
    accuracy_south = (4 + 3) / 13
    assert value(
        text, "driftgauge_segment_performance", window="5m", segment="south", metric="accuracy"
    ) == pytest.approx(accuracy_south, abs=1e-12)
    assert performance["north"].labels == 30


@pytest.mark.parametrize(
    ("north", "south", "rates"),
    [
        # One missed positive (TPR 0) beside 200 labelled rows is no 0.75 gap: the segment's
        # rate waits for min_observations (10) positives, as disparate impact does.
        ((75, 25, 100), (0, 1, 0), {"north": 0.75, "south": None}),
        # Labels holding no positive: no TPR at all.
        ((30, 10, 2), (0, 0, 5), {"north": 0.75, "south": None}),
    ],
    ids=["one positive", "no positive"],
)
def test_a_segment_without_enough_positives_has_no_rate_and_opens_no_gap(
    pipeline: Pipeline,
    north: tuple[int, int, int],
    south: tuple[int, int, int],
    rates: dict[str, float | None],
) -> None:
    """With one true positive rate left there is no equal opportunity difference."""
    for region, (rows, truth) in {
        "north": labelled_rows("north", *north),
        "south": labelled_rows("south", *south),
    }.items():
        pipeline.batcher.ingest([record(rows, region)])
        pipeline.outcomes.label([(f"{region}:{i}", label) for i, label in enumerate(truth)])
    text = pipeline.text()
    found = {
        p.segment: p.true_positive_rate
        for p in pipeline.monitor.snapshot.performance
        if p.segment_feature and p.window == "5m"
    }
    assert found == rates
    assert value(text, "driftgauge_equal_opportunity_difference", window="5m") is None


def test_segment_psi_matches_numpy_on_raw_counts(
    built: tuple[Config, Baseline], pipeline: Pipeline
) -> None:
    """Each segment's prediction PSI equals Σ(p−q)ln(p/q) on numpy counts, shares floored at 1e-4."""
    _, baseline = built
    training = classifier_columns(TRAINING_ROWS)
    live = classifier_columns(1_500, seed=31)
    # Drift: live north predicts a more often (alcohol shifted up), p_a moves with it.
    north = np.asarray(live["region"]) == "north"
    live["class"] = [
        ("a" if n and i % 3 == 0 else c)
        for i, (n, c) in enumerate(zip(north, live["class"], strict=True))
    ]
    live["p_a"] = [p + 0.2 if n else p for p, n in zip(live["p_a"], north, strict=True)]
    pipeline.segments.add(
        [Extracted(1_500, {k: live[k] for k in ("region", "class", "p_a")})], now=T0
    )
    pipeline.monitor.compute()
    checked = 0
    for prediction in ("class", "p_a"):
        binning = baseline.fields[prediction].summary.binning
        base = numpy_counts(training["region"], training[prediction], binning)
        current = numpy_counts(live["region"], live[prediction], binning)
        stats = segment_stats(pipeline.monitor.snapshot.segments, prediction)
        for segment in SEGMENTS:
            got = stats[segment].psi
            assert got is not None
            assert math.isclose(
                got, exact_psi(current[segment], base[segment]), rel_tol=1e-9, abs_tol=1e-12
            )
            assert stats[segment].observations == int(current[segment].sum())
            checked += 1
    assert checked == 6
    drifted = segment_stats(pipeline.monitor.snapshot.segments, "class")
    assert drifted["north"].psi is not None and drifted["south"].psi is not None
    assert drifted["north"].psi > 5 * drifted["south"].psi


def test_segment_labels_stay_bounded_under_a_flood_of_values(pipeline: Pipeline) -> None:
    """10,000 distinct region values give at most top + 1 segment label values per metric."""
    rng = np.random.default_rng(2)
    pairs = []
    for batch in range(20):
        rows = [
            {"alcohol": float(x), "ash": 2.2, "region": f"town-{batch * 500 + i}"}
            for i, x in enumerate(rng.normal(13.0, 0.8, 500))
        ]
        rows[:100] = [{**r, "region": "north"} for r in rows[:100]]  # a known one too
        pipeline.batcher.ingest([record(rows, f"b{batch}")])
        pairs += [(f"b{batch}:{i}", "a") for i in range(500)]
    assert pipeline.outcomes.label(pairs)["matched"] == 10_000
    text = pipeline.text()
    seen: dict[tuple[str, str], set[str]] = defaultdict(set)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if "segment" in sample.labels:
                seen[(sample.name, sample.labels["segment_feature"])].add(sample.labels["segment"])
    names = {name for name, _ in seen}
    assert {
        "driftgauge_segment_observations",
        "driftgauge_positive_rate",
        "driftgauge_segment_performance",
    } <= names
    for key, segments in seen.items():
        assert len(segments) <= TOP + 1, key
        assert segments <= set(SEGMENTS), key
    cardinality = value(text, "driftgauge_cardinality", feature="region", window="5m")
    assert cardinality == pytest.approx(8_001, rel=0.05)  # 20×400 towns + north


async def test_segments_through_the_proxy(built: tuple[Config, Baseline], tmp_path: Path) -> None:
    """Rows sent through the real proxy give per-segment positive rates and disparate impact."""
    config, baseline = built
    fresh = config_from_mapping(
        base_config(tmp_path, source=proxy_source(free_port())), base=tmp_path
    )
    config = replace(config, source=fresh.source, metrics=fresh.metrics)
    columns = classifier_columns(120, seed=41)
    async with running(config, baseline) as sidecar:
        answered: list[str] = []
        for start in range(0, 120, 10):
            rows = [
                {
                    "alcohol": columns["alcohol"][i],
                    "ash": columns["ash"][i],
                    "region": columns["region"][i],
                }
                for i in range(start, start + 10)
            ]
            _, answer = await sidecar.predict(rows)
            answered += [a["class"] for a in answer]
        monitor = sidecar.sidecar.monitor
        await eventually(lambda: monitor.rows_total == 120)
        text = await sidecar.metrics()
    rates = {}
    for segment in SEGMENTS:
        chosen = [
            c for c, r in zip(answered, columns["region"], strict=True) if segment_of(r) == segment
        ]
        rates[segment] = sum(c == POSITIVE for c in chosen) / len(chosen)
        assert (
            value(text, "driftgauge_positive_rate", window="5m", segment=segment) == rates[segment]
        )
        assert value(
            text, "driftgauge_segment_observations", window="5m", segment=segment, feature="class"
        ) == len(chosen)
    assert all(len([r for r in columns["region"] if segment_of(r) == s]) >= 10 for s in SEGMENTS)
    assert value(text, "driftgauge_disparate_impact", window="5m") == min(rates.values()) / max(
        rates.values()
    )
    assert (
        value(text, "driftgauge_segment_psi", window="5m", segment="north", feature="class")
        is not None
    )


def test_training_values_named_like_the_reserved_buckets_get_no_series_twice(
    tmp_path: Path,
) -> None:
    """Regions literally named ``__other__`` and ``__unseen__`` in the training data count in
    the ``__other__`` bucket and segment: every series appears once, with numpy's counts."""
    columns = classifier_columns(TRAINING_ROWS)
    rng = np.random.default_rng(4)
    names = ["__other__", "__unseen__", "north", "south"]
    columns["region"] = rng.choice(names, TRAINING_ROWS, p=[0.4, 0.3, 0.2, 0.1]).tolist()
    config, baseline = build(tmp_path, columns=columns, segments={"features": ["region"], "top": 4})
    pipeline = wire(replace(config, min_observations=10), baseline, lambda: T0)
    live = rng.choice(names, 400).tolist()
    rows = [{"alcohol": 13.0, "ash": 2.2, "region": region} for region in live]
    pipeline.batcher.ingest([record(rows, "r")])
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for family in text_string_to_metric_families(pipeline.text()):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in seen, key
            seen.add(key)
    labels = pipeline.segments.labels("region")
    assert labels == ["north", "south", "__other__"]
    other = sum(region not in ("north", "south") for region in live)
    stats = segment_stats(pipeline.monitor.compute(T0).segments, "class")
    assert stats["__other__"].observations == other
    assert stats["north"].observations == live.count("north")


@pytest.mark.parametrize(
    ("built_with", "configured", "named"),
    [
        (None, {"features": ["region"]}, "segments.features"),
        ({"features": ["region"], "top": 2}, None, "segments.features"),
        ({"features": ["region"], "top": 2}, {"features": ["region"], "top": 1}, "segments.top"),
    ],
)
def test_a_baseline_built_for_other_segments_is_refused_naming_the_segments(
    tmp_path: Path,
    built_with: dict[str, Any] | None,
    configured: dict[str, Any] | None,
    named: str,
) -> None:
    """`driftgauge check` on a config whose segments changed since the baseline was built says
    so, naming the key, instead of blaming kll_k, bins or top_categories."""
    raw = base_config(tmp_path)
    if built_with is not None:
        raw["segments"] = built_with
    write_baseline(write_config(tmp_path / "built.yaml", raw), 1_000)
    raw.pop("segments", None)
    if configured is not None:
        raw["segments"] = configured
    config = write_config(tmp_path / "config.yaml", raw)
    result = subprocess.run(
        [*driftgauge_command(), "check", "-c", str(config)], capture_output=True, text=True
    )
    assert result.returncode == 3
    [line] = result.stderr.splitlines()
    assert named in line and "rebuild" in line
    assert "kll_k" not in line


def test_a_segment_feature_listed_twice_is_a_config_error(tmp_path: Path) -> None:
    """`segments.features: [region, region]` is refused naming the second position: the baseline
    build keeps one `region`, so `check` would refuse every baseline built for it."""
    raw = base_config(tmp_path, segments={"features": ["region", "region"]})
    with pytest.raises(ConfigError, match=r"segments\.features\[1\]: 'region' is listed twice"):
        config_from_mapping(raw, base=tmp_path)


def test_more_segments_than_the_baseline_keeps_categories_is_a_config_error(
    tmp_path: Path,
) -> None:
    """`segments.top: 20` with `sketch.top_categories: 10` was cut to 10 segments without a word."""
    raw = base_config(
        tmp_path, segments={"features": ["region"], "top": 20}, sketch={"top_categories": 10}
    )
    with pytest.raises(
        ConfigError, match=r"segments\.top: 20 is above sketch\.top_categories \(10\)"
    ):
        config_from_mapping(raw, base=tmp_path)
    raw["segments"]["top"] = 10
    assert config_from_mapping(raw, base=tmp_path).segments.top == 10


def test_segment_noise_floors_count_requests_not_rows(
    built: tuple[Config, Baseline], pipeline: Pipeline
) -> None:
    """A segment's noise floor takes its requests' design effect, from the segment's own sums
    over requests: requests of one row keep the floor of independent rows; the same rows in
    requests of 50 (one region and mostly one class each) raise it, by the design effect
    those requests give."""
    from driftgauge.sketches.requests import design_effect, request_sums

    config, baseline = built
    live = classifier_columns(1_500, seed=32)
    columns = {k: live[k] for k in ("region", "class", "p_a")}
    single = wire(*built, lambda: T0)
    single.segments.add(
        [Extracted(1, {k: v[i : i + 1] for k, v in columns.items()}) for i in range(1_500)], now=T0
    )
    # A request's rows share a region, and mostly a class: alike rows.
    order = np.lexsort((live["class"], live["region"]))
    grouped = {k: [v[i] for i in order] for k, v in columns.items()}
    pipeline.segments.add(
        [
            Extracted(50, {k: v[s : s + 50] for k, v in grouped.items()})
            for s in range(0, 1_500, 50)
        ],
        now=T0,
    )
    alone, together = single.segments.statistics(T0)[0], pipeline.segments.statistics(T0)[0]
    binning = baseline.fields["class"].summary.binning
    checked = 0
    for one, many in zip(alone, together, strict=True):
        if one.prediction != "class" or one.psi_noise_floor is None:
            continue
        held = baseline.segments["region"]["class"][SEGMENTS.index(one.segment)]
        occupied = max(2, int(np.count_nonzero(held)))
        assert one.psi_noise_floor == pytest.approx(
            (occupied - 1) * (1 / one.observations + 1 / held.sum())
        )
        requests = [
            binning.count(
                np.asarray(grouped["class"][s : s + 50])[
                    [segment_of(r) == one.segment for r in grouped["region"][s : s + 50]]
                ].astype(np.str_)
            )
            for s in range(0, 1_500, 50)
        ]
        counts = np.array(requests, dtype=np.int64)
        deff = design_effect(counts.sum(axis=0), request_sums(counts), occupied - 1)
        assert deff > 1
        assert many.psi_noise_floor == pytest.approx(
            (occupied - 1) * (deff / many.observations + 1 / held.sum())
        )
        checked += 1
    assert checked == len(SEGMENTS) * len(config.windows)


def test_request_rows_independent_keeps_the_segment_floors_of_rows(
    built: tuple[Config, Baseline],
) -> None:
    """With ``request_rows: independent`` the same alike requests of 50 keep every segment's
    floor of independent rows (design effect 1)."""
    config, baseline = built
    live = classifier_columns(1_500, seed=32)
    order = np.lexsort((live["class"], live["region"]))
    grouped = {k: [live[k][i] for i in order] for k in ("region", "class", "p_a")}
    independent = wire(replace(config, request_rows="independent"), baseline, lambda: T0)
    independent.segments.add(
        [
            Extracted(50, {k: v[s : s + 50] for k, v in grouped.items()})
            for s in range(0, 1_500, 50)
        ],
        now=T0,
    )
    checked = 0
    for figures in independent.segments.statistics(T0)[0]:
        if figures.prediction != "class" or figures.psi_noise_floor is None:
            continue
        held = baseline.segments["region"]["class"][SEGMENTS.index(figures.segment)]
        occupied = max(2, int(np.count_nonzero(held)))
        assert figures.psi_noise_floor == pytest.approx(
            (occupied - 1) * (1 / figures.observations + 1 / held.sum())
        )
        checked += 1
    assert checked == len(SEGMENTS) * len(config.windows)
