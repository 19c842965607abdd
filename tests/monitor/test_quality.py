"""Data quality: missing, absent and extra fields, invalid values by reason, and cardinality."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from driftgauge.baseline import Baseline
from driftgauge.config import Config, config_from_mapping
from driftgauge.exceptions import ConfigError
from driftgauge.typing import Extracted, Record
from tests.feedback_support import (
    MODEL_PATH,
    Pipeline,
    build,
    classify,
    predictions_for,
    probability_a,
    proxy_source,
    record,
    running,
    samples,
    value,
    wire,
)
from tests.helpers import base_config, eventually, free_port

T0 = 1_700_000_000.0
FEATURES = [
    {"name": "alcohol", "type": "numeric"},
    {"name": "ash", "type": "numeric"},
    {"name": "region", "type": "categorical"},
    {"name": "zone", "type": "categorical"},
]
# HLL with lg_k=12 has a relative standard error of about 1.04/sqrt(4096) = 1.6%.
HLL_TOLERANCE = 3 * 0.0163


def quality_columns(n: int = 2_000) -> dict[str, list[Any]]:
    """Training data whose alcohol spans exactly [10, 14] and whose zone values look like numbers."""
    rng = np.random.default_rng(0)
    alcohol = rng.uniform(10.0, 14.0, n).round(4)
    alcohol[:2] = [10.0, 14.0]
    return {
        "alcohol": alcohol.tolist(),
        "ash": rng.lognormal(0.8, 0.2, n).round(4).tolist(),
        "region": rng.choice(["north", "south", "east"], n, p=[0.5, 0.3, 0.2]).tolist(),
        "zone": rng.choice(["1", "2", "3"], n).tolist(),
        "class": [classify(x) for x in alcohol],
        "p_a": [round(probability_a(x), 6) for x in alcohol],
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, Baseline]:
    """A classifier without feedback over alcohol, ash, region and zone."""
    return build(
        tmp_path_factory.mktemp("quality"),
        columns=quality_columns(),
        features=FEATURES,
        feedback=None,
    )


@pytest.fixture
def pipeline(built: tuple[Config, Baseline]) -> Pipeline:
    return wire(*built, lambda: T0)


def counter(text: str, name: str, feature: str, **labels: str) -> float | None:
    return value(text, name, feature=feature, **labels)


def row(**values: Any) -> dict[str, Any]:
    """A request row: typical values, overridden by ``values`` (``None`` drops the key)."""
    base: dict[str, Any] = {"alcohol": 12.5, "ash": 2.2, "region": "north", "zone": "1"}
    base.update(values)
    return {k: v for k, v in base.items() if v is not None}


def test_numeric_field_counts_missing_wrong_type_nan_and_inf(pipeline: Pipeline) -> None:
    """null is missing; strings and booleans are wrong_type; NaN and ±inf are counted apart."""
    column = [12.0, None, math.nan, math.inf, -math.inf, "12.5", True, 13.0]
    pipeline.monitor.ingest([Extracted(len(column), {"alcohol": column})])
    counts = pipeline.monitor.counters()["alcohol"]
    assert (counts.observations, counts.missing) == (2, 1)
    assert counts.invalid == {"wrong_type": 2, "nan": 1, "inf": 2}
    text = pipeline.text()
    assert counter(text, "driftgauge_observations_total", "alcohol") == 2
    assert counter(text, "driftgauge_missing_total", "alcohol") == 1
    expected = {"wrong_type": 2, "nan": 1, "inf": 2, "out_of_range": 0}
    for reason, count in expected.items():
        assert counter(text, "driftgauge_invalid_total", "alcohol", reason=reason) == count
    assert counter(text, "driftgauge_invalid_total", "alcohol", reason="unseen_category") is None


def test_nan_and_inf_in_a_numeric_array_are_counted(pipeline: Pipeline) -> None:
    """An all-number column (the numpy fast path) still counts NaN and ±inf, and no wrong type."""
    column = np.asarray([2.0, np.nan, np.inf, -np.inf, np.nan, 2.5])
    pipeline.monitor.ingest([Extracted(6, {"ash": column})])
    counts = pipeline.monitor.counters()["ash"]
    assert (counts.observations, counts.missing) == (2, 0)
    assert counts.invalid == {"nan": 2, "inf": 2}


def test_values_outside_the_baseline_range_are_out_of_range(pipeline: Pipeline) -> None:
    """Without tolerance anything below the baseline minimum or above its maximum is out_of_range."""
    column = [9.99, 10.0, 12.0, 14.0, 14.01, 100.0, -5.0]
    pipeline.monitor.ingest([Extracted(len(column), {"alcohol": column})])
    counts = pipeline.monitor.counters()["alcohol"]
    assert counts.invalid == {"out_of_range": 4}
    assert counts.observations == 7  # still valid observations for drift
    assert (
        counter(pipeline.text(), "driftgauge_invalid_total", "alcohol", reason="out_of_range") == 4
    )


def test_range_tolerance_widens_the_valid_range(built: tuple[Config, Baseline]) -> None:
    """data_quality.range_tolerance 0.1 widens [10, 14] by 0.4 on each side."""
    config, baseline = built
    pipeline = wire(replace(config, range_tolerance=0.1), baseline, lambda: T0)
    column = [9.5, 9.61, 9.99, 14.01, 14.39, 14.5]
    pipeline.monitor.ingest([Extracted(len(column), {"alcohol": column})])
    assert pipeline.monitor.counters()["alcohol"].invalid == {"out_of_range": 2}


def test_the_range_ends_sent_as_float32_are_in_range(tmp_path: Path) -> None:
    """Levels 0.7 to 1.1 sent in an FP32 tensor (0.699999988, 1.10000002) are in range, as they
    share the baseline's bins; the next float32 beyond either end is out_of_range."""
    columns = quality_columns()
    levels = np.random.default_rng(1).choice([0.7, 0.8, 0.9, 1.0, 1.1], len(columns["ash"]))
    columns["ash"] = levels.tolist()
    pipeline = wire(*build(tmp_path, columns=columns, features=FEATURES, feedback=None))
    ends = np.float32([0.7, 1.1])
    beyond = [np.nextafter(ends[0], np.float32(-np.inf)), np.nextafter(ends[1], np.float32(np.inf))]
    for column in (ends, beyond):  # each as the float64 array an FP32 tensor is read into
        pipeline.monitor.ingest([Extracted(2, {"ash": np.asarray(column, dtype=np.float64)})])
    counts = pipeline.monitor.counters()["ash"]
    assert counts.invalid == {"out_of_range": 2}
    assert counts.bins[0] == 2 and counts.bins[-1] == 2


def test_range_tolerance_is_read_from_data_quality(tmp_path: Path) -> None:
    """The data_quality.range_tolerance key sets the tolerance; a negative one is an error."""
    raw = base_config(tmp_path, data_quality={"range_tolerance": 0.25})
    assert config_from_mapping(raw, base=tmp_path).range_tolerance == 0.25
    assert config_from_mapping(base_config(tmp_path), base=tmp_path).range_tolerance == 0.0
    with pytest.raises(ConfigError, match="data_quality.range_tolerance"):
        config_from_mapping(base_config(tmp_path, data_quality={"range_tolerance": -1}))


def test_unseen_categories_are_counted(pipeline: Pipeline) -> None:
    """A category the baseline never saw is unseen_category; null is missing."""
    column = ["north", "mars", "mars", None, "east", "North"]
    pipeline.monitor.ingest([Extracted(len(column), {"region": column})])
    counts = pipeline.monitor.counters()["region"]
    assert (counts.observations, counts.missing) == (5, 1)
    assert counts.invalid == {"unseen_category": 3}
    text = pipeline.text()
    assert counter(text, "driftgauge_invalid_total", "region", reason="unseen_category") == 3
    assert counter(text, "driftgauge_invalid_total", "region", reason="wrong_type") is None
    assert counter(text, "driftgauge_bin_observations_total", "region", bin="__unseen__") == 3


def test_numbers_in_categorical_fields_are_their_canonical_text(pipeline: Pipeline) -> None:
    """A number in a categorical field is its canonical text: 2, "2", 2.0 and "2.0" are all "2"."""
    column = [2, "2", 2.0, "2.0", True, 7, 2.5]
    pipeline.monitor.ingest([Extracted(len(column), {"zone": column})])
    counts = pipeline.monitor.counters()["zone"]
    assert (counts.observations, counts.missing) == (7, 0)
    assert counts.invalid == {"unseen_category": 3}  # "true", "7", "2.5"
    text = pipeline.text()
    assert counter(text, "driftgauge_bin_observations_total", "zone", bin="2") == 4


def test_numeric_categories_read_the_same_from_list_and_object_rows(pipeline: Pipeline) -> None:
    """The same row sent as a list or as an object counts its categorical number the same way."""
    as_objects = {"instances": [{"alcohol": 12.5, "ash": 2.2, "zone": 2}]}
    as_lists = {"instances": [[12.5, 2.2, "north", 2]]}
    as_numbers = {"instances": [[12.5, 2.2, 7, 2]]}  # region 7: all numbers, the fast path
    response = {"predictions": predictions_for([row()])}
    for request in (as_objects, as_lists, as_numbers):
        pipeline.batcher.ingest([Record(T0, request, response, MODEL_PATH)])
    assert pipeline.monitor.counters()["zone"].observations == 3
    assert pipeline.monitor.counters()["zone"].invalid.get("unseen_category", 0) == 0


def test_absent_fields_count_as_missing_and_missing_fields(pipeline: Pipeline) -> None:
    """Each row without the key is a missing field, whether other rows of its request hold it
    or not; a null is only missing."""
    without_ash = [row(ash=None), row(ash=None)]
    partly = [row(ash=None), row()]
    null = [{**row(), "ash": None}]
    pipeline.batcher.ingest([record(without_ash, None), record(partly, None), record(null, None)])
    counts = pipeline.monitor.counters()["ash"]
    assert (counts.missing, counts.absent, counts.observations) == (4, 3, 1)
    text = pipeline.text()
    assert counter(text, "driftgauge_missing_total", "ash") == 4
    assert counter(text, "driftgauge_missing_fields_total", "ash") == 3
    assert counter(text, "driftgauge_missing_fields_total", "alcohol") == 0


def test_a_prediction_absent_from_the_response_is_a_missing_field(pipeline: Pipeline) -> None:
    """Predictions are fields too: one the response lacks is counted with role="prediction"."""
    rec = record([row(), row()], None)
    for answer in rec.response["predictions"]:
        del answer["p_a"]
    pipeline.batcher.ingest([rec])
    text = pipeline.text()
    labels = {"feature": "p_a", "role": "prediction"}
    assert value(text, "driftgauge_missing_fields_total", **labels) == 2
    assert value(text, "driftgauge_missing_total", **labels) == 2


def test_extra_fields_are_counted_without_their_names(pipeline: Pipeline) -> None:
    """Names the config does not know count once per request in extra_fields_total, never as labels."""
    pipeline.batcher.ingest(
        [
            record([row(foo=1, bar="x"), row(foo=2), row(secret_field=3)], None),
            record([row(foo=1)], None),
        ]
    )
    assert pipeline.monitor.extra_columns_total == 4  # {foo, bar, secret_field} + {foo}
    text = pipeline.text()
    assert value(text, "driftgauge_extra_fields_total") == 4
    label_values = {
        v
        for family in text_string_to_metric_families(text)
        for s in family.samples
        for v in s.labels.values()
    }
    assert not label_values & {"foo", "bar", "secret_field"}


def test_window_cardinality_is_close_to_the_distinct_count(pipeline: Pipeline) -> None:
    """driftgauge_cardinality follows the window's distinct values (HLL, within 3 standard errors)."""
    clock = {"now": T0}
    pipeline = wire(pipeline.config, pipeline.monitor.baseline, lambda: clock["now"])
    first = [f"user-{i}" for i in range(6_000)]
    later = [f"user-{i}" for i in range(4_000, 12_000)]
    pipeline.monitor.ingest([Extracted(len(first), {"region": first})])
    clock["now"] = T0 + 200
    pipeline.monitor.ingest([Extracted(len(later), {"region": later})])
    labels = {"feature": "region", "role": "input"}
    text = pipeline.text()
    for window in ("5m", "1h"):
        estimate = value(text, "driftgauge_cardinality", window=window, **labels)
        assert estimate == pytest.approx(12_000, rel=HLL_TOLERANCE)
    clock["now"] = T0 + 330  # the first batch's slice has left the 5m window only
    text = pipeline.text()
    assert value(text, "driftgauge_cardinality", window="5m", **labels) == pytest.approx(
        8_000, rel=HLL_TOLERANCE
    )
    assert value(text, "driftgauge_cardinality", window="1h", **labels) == pytest.approx(
        12_000, rel=HLL_TOLERANCE
    )
    assert value(text, "driftgauge_baseline_cardinality", **labels) == pytest.approx(3, rel=1e-6)
    assert value(text, "driftgauge_baseline_cardinality", feature="zone") == pytest.approx(
        3, rel=1e-6
    )
    numeric = [s for s in samples(text, "driftgauge_cardinality") if s[0]["feature"] == "alcohol"]
    assert numeric == []  # cardinality is for categorical fields only


def test_small_cardinality_is_exact(pipeline: Pipeline) -> None:
    """A handful of distinct values is counted exactly (HLL keeps a list at low counts)."""
    column = ["north", "south", "north", "x", "y", None]
    pipeline.monitor.ingest([Extracted(len(column), {"region": column})])
    estimate = value(pipeline.text(), "driftgauge_cardinality", feature="region", window="5m")
    assert estimate == pytest.approx(4, rel=1e-6)


async def test_data_quality_counters_through_the_proxy(
    built: tuple[Config, Baseline], tmp_path: Path
) -> None:
    """Bad rows sent through the real proxy show up in the counters on /metrics."""
    config, baseline = built
    fresh = config_from_mapping(
        base_config(tmp_path, source=proxy_source(free_port())), base=tmp_path
    )
    config = replace(config, source=fresh.source, metrics=fresh.metrics)
    bad = [
        row(alcohol="12.5"),  # wrong type
        row(alcohol=None, foo=1),  # alcohol missing in this row; foo is extra
        row(alcohol=99.0, region="mars"),  # out of range, unseen category
        row(region=None, zone=3),  # region missing; zone 3 reads as known "3"
    ]
    async with running(config, baseline) as sidecar:
        await sidecar.predict(bad)
        await sidecar.predict([row(ash=None), row(ash=None)])
        monitor = sidecar.sidecar.monitor
        await eventually(lambda: monitor.rows_total == 6)
        text = await sidecar.metrics()
    assert counter(text, "driftgauge_invalid_total", "alcohol", reason="wrong_type") == 1
    assert counter(text, "driftgauge_invalid_total", "alcohol", reason="out_of_range") == 1
    assert counter(text, "driftgauge_missing_total", "alcohol") == 1
    assert counter(text, "driftgauge_missing_fields_total", "alcohol") == 1
    assert counter(text, "driftgauge_invalid_total", "region", reason="unseen_category") == 1
    assert counter(text, "driftgauge_missing_total", "region") == 1
    assert counter(text, "driftgauge_invalid_total", "zone", reason="unseen_category") == 0
    assert counter(text, "driftgauge_missing_fields_total", "ash") == 2
    assert value(text, "driftgauge_extra_fields_total") == 1
    assert value(text, "driftgauge_requests_total", code="200") == 2


async def test_missing_fields_count_each_row_without_the_key_through_the_proxy(
    built: tuple[Config, Baseline], tmp_path: Path
) -> None:
    """Object rows through the real proxy, each key left out of some rows and null in others:
    missing_fields_total is the rows without the key and missing_total those plus the nulls,
    per field, exactly as counted on the rows by hand."""
    config, baseline = built
    fresh = config_from_mapping(
        base_config(tmp_path, source=proxy_source(free_port())), base=tmp_path
    )
    config = replace(config, source=fresh.source, metrics=fresh.metrics)
    rng = np.random.default_rng(11)
    names = [spec["name"] for spec in FEATURES]
    requests = []
    for size in (1, 3, 40, 300):
        rows = []
        for draws in rng.random((size, len(names))):
            kept = {k: v for (k, v), draw in zip(row().items(), draws, strict=True) if draw >= 0.15}
            rows.append(
                {
                    k: None if draw < 0.25 else kept[k]
                    for k, draw in zip(names, draws, strict=True)
                    if k in kept
                }
            )
        requests.append(rows)
    async with running(config, baseline) as sidecar:
        for rows in requests:
            await sidecar.predict(rows)
        monitor = sidecar.sidecar.monitor
        total = sum(map(len, requests))
        await eventually(lambda: monitor.rows_total == total)
        text = await sidecar.metrics()
    every = [r for rows in requests for r in rows]
    for name in names:
        lacking = sum(name not in r for r in every)
        nulls = sum(name in r and r[name] is None for r in every)
        assert 0 < lacking < len(every) and nulls > 0
        assert counter(text, "driftgauge_missing_fields_total", name) == lacking
        assert counter(text, "driftgauge_missing_total", name) == lacking + nulls
