"""Undrifted traffic reads no drift whatever its wire encoding: FP32 or FP64 tensors, categories in any spelling."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as parquet
import pytest

from driftgauge.baseline import Baseline, build_baseline
from driftgauge.config import Config, config_from_mapping
from driftgauge.monitor import FieldStats
from driftgauge.typing import Record
from tests.feedback_support import Pipeline, wire
from tests.helpers import base_config, write_csv

T0 = 1_700_000_000.0
PATH = "/v2/models/wine/infer"
ROWS = 20_000
LIVE = 5_000
BATCH = 250


def _shapes(n: int, rng: np.random.Generator) -> dict[str, np.ndarray[Any, Any]]:
    """The feature shapes of real tabular data, float64 as a training CSV holds them."""
    mixture = rng.random(n) < 0.5
    positive = rng.lognormal(0.0, 1.0, n).round(3)
    return {
        "normal": rng.normal(13.0, 0.8, n).round(4),
        "lognormal": rng.lognormal(0.8, 0.6, n).round(4),
        "uniform": rng.uniform(-5.0, 5.0, n).round(5),
        "bimodal": np.where(mixture, rng.normal(-2.0, 0.5, n), rng.normal(3.0, 0.7, n)).round(4),
        "integers": rng.poisson(3.0, n).astype(np.float64),
        "zeros": np.where(rng.random(n) < 0.7, 0.0, positive),
        # petal width: a 0.1 grid, exactly what float32 rounding moves across quantile edges.
        "grid": (rng.integers(1, 26, n) / 10.0).round(1),
    }


NUMERIC = list(_shapes(1, np.random.default_rng(0)))


def _categories(n: int, rng: np.random.Generator) -> dict[str, np.ndarray[Any, Any]]:
    return {
        "flag": rng.random(n) < 0.3,
        "code": rng.choice([1, 2, 3, 7], n, p=[0.4, 0.3, 0.2, 0.1]),
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, Baseline]:
    """A v2 model over every shape, its baseline from a CSV as pandas writes one (True/False, 1)."""
    tmp_path = tmp_path_factory.mktemp("wire")
    features = [{"name": name, "type": "numeric"} for name in NUMERIC]
    features += [{"name": "flag", "type": "categorical"}, {"name": "code", "type": "categorical"}]
    raw = base_config(
        tmp_path,
        protocol="kserve-v2",
        features=features,
        predictions=[{"name": "label", "type": "categorical"}],
        windows=["1h"],
        min_observations=100,
    )
    config = config_from_mapping(raw, base=tmp_path)
    rng = np.random.default_rng(1)
    columns: dict[str, list[Any]] = {k: v.tolist() for k, v in _shapes(ROWS, rng).items()}
    cats = _categories(ROWS, rng)
    columns["flag"] = ["True" if v else "False" for v in cats["flag"]]  # pandas' to_csv spelling
    columns["code"] = cats["code"].tolist()
    columns["label"] = ["a"] * ROWS
    data = write_csv(tmp_path / "train.csv", columns)
    return config, build_baseline(config, [data])


Encode = Callable[[str, np.ndarray[Any, Any]], dict[str, Any]]


def fp32(name: str, values: np.ndarray[Any, Any]) -> dict[str, Any]:
    """A float32 tensor as clients send it: every value the float32 nearest to the float64."""
    data = values.astype(np.float32).tolist()
    return {"name": name, "shape": [len(values)], "datatype": "FP32", "data": data}


def fp64(name: str, values: np.ndarray[Any, Any]) -> dict[str, Any]:
    return {"name": name, "shape": [len(values)], "datatype": "FP64", "data": values.tolist()}


CATEGORY_ENCODINGS: dict[str, Encode] = {
    "BOOL and INT64": lambda name, v: (
        {"name": name, "shape": [len(v)], "datatype": "BOOL", "data": v.tolist()}
        if v.dtype == bool
        else {"name": name, "shape": [len(v)], "datatype": "INT64", "data": v.tolist()}
    ),
    "BYTES as pandas prints": lambda name, v: {
        "name": name,
        "shape": [len(v)],
        "datatype": "BYTES",
        "data": [str(x) for x in v.tolist()],
    },
    # A flag stays BOOL here: the number 1.0 is the category "1", not "true".
    "FP32 codes": lambda name, v: (
        {"name": name, "shape": [len(v)], "datatype": "BOOL", "data": v.tolist()}
        if v.dtype == bool
        else fp32(name, v.astype(np.float64))
    ),
    "BYTES of float text": lambda name, v: {
        "name": name,
        "shape": [len(v)],
        "datatype": "BYTES",
        "data": [str(float(x)) if v.dtype != bool else str(bool(x)).upper() for x in v.tolist()],
    },
}


def send(pipeline: Pipeline, numeric: Encode, category: Encode, seed: int = 2) -> None:
    """``LIVE`` undrifted rows through the v2 adapter, in batches, tensors encoded as given."""
    rng = np.random.default_rng(seed)
    shapes, cats = _shapes(LIVE, rng), _categories(LIVE, rng)
    records = []
    for start in range(0, LIVE, BATCH):
        part = slice(start, start + BATCH)
        inputs = [numeric(name, values[part]) for name, values in shapes.items()]
        inputs += [category(name, values[part]) for name, values in cats.items()]
        response = {
            "model_name": "wine",
            "outputs": [
                {"name": "label", "shape": [BATCH], "datatype": "BYTES", "data": ["a"] * BATCH}
            ],
        }
        records.append(Record(T0, {"inputs": inputs}, response, PATH))
    pipeline.batcher.ingest(records)


def stats_of(pipeline: Pipeline) -> dict[str, FieldStats]:
    snapshot = pipeline.monitor.compute()
    return {s.spec.name: s for s in snapshot.fields}


def test_float32_tensors_read_the_same_bins_and_psi_as_float64(
    built: tuple[Config, Baseline],
) -> None:
    """Every shape sent as FP32 lands in the same bins as FP64 and reads the same (noise-level) PSI."""
    as32, as64 = wire(*built, lambda: T0), wire(*built, lambda: T0)
    send(as32, fp32, CATEGORY_ENCODINGS["BOOL and INT64"])
    send(as64, fp64, CATEGORY_ENCODINGS["BOOL and INT64"])
    counters32, counters64 = as32.monitor.counters(), as64.monitor.counters()
    stats32, stats64 = stats_of(as32), stats_of(as64)
    for name in NUMERIC:
        assert counters32[name].bins.tolist() == counters64[name].bins.tolist(), name
        assert counters32[name].invalid == counters64[name].invalid, name
        psi32, floor = stats32[name].psi, stats32[name].psi_noise_floor
        assert psi32 is not None and floor is not None
        assert psi32 == pytest.approx(stats64[name].psi, rel=1e-12), name
        # Undrifted: PSI is sampling noise, far below the shipped alert's 4x noise-floor gate.
        assert psi32 < 4 * floor, (name, psi32, floor)


@pytest.mark.parametrize("encoding", list(CATEGORY_ENCODINGS))
def test_categories_read_no_drift_in_any_encoding(
    built: tuple[Config, Baseline], encoding: str
) -> None:
    """Booleans and integer codes in every wire spelling are the baseline's categories: nothing unseen, no drift."""
    pipeline = wire(*built, lambda: T0)
    send(pipeline, fp64, CATEGORY_ENCODINGS[encoding])
    counters = pipeline.monitor.counters()
    stats = stats_of(pipeline)
    for name in ("flag", "code"):
        assert counters[name].observations == LIVE
        assert counters[name].invalid.get("unseen_category", 0) == 0, (encoding, name)
        psi, floor = stats[name].psi, stats[name].psi_noise_floor
        assert psi is not None and floor is not None
        assert psi < 4 * floor, (encoding, name, psi, floor)


def test_baseline_categories_are_canonical(built: tuple[Config, Baseline]) -> None:
    """A CSV's True/False and integer codes are stored as "true"/"false" and "1"."""
    _, baseline = built
    assert set(baseline.fields["flag"].summary.binning.categories) == {"true", "false"}
    assert set(baseline.fields["code"].summary.binning.categories) == {"1", "2", "3", "7"}


def test_parquet_booleans_and_float_codes_build_the_csv_baseline(
    built: tuple[Config, Baseline], tmp_path: Path
) -> None:
    """The same training data as Parquet booleans and float codes gives the same categorical bins."""
    config, baseline = built
    rng = np.random.default_rng(1)
    shapes = _shapes(ROWS, rng)
    cats = _categories(ROWS, rng)
    table = pa.table(
        {
            **shapes,
            "flag": pa.array(cats["flag"]),
            "code": pa.array(cats["code"].astype(np.float64)),
            "label": ["a"] * ROWS,
        }
    )
    path = tmp_path / "train.parquet"
    parquet.write_table(table, path)
    again = build_baseline(config, [path])
    for name in ("flag", "code"):
        assert again.fields[name].summary.binning == baseline.fields[name].summary.binning
        assert (
            again.fields[name].summary.bins.tolist() == baseline.fields[name].summary.bins.tolist()
        )


def test_fractional_codes_in_fp32_and_fp64_tensors_of_one_batch_are_the_baseline_categories(
    tmp_path: Path,
) -> None:
    """A code 0.1 is the training file's 0.1 whether a request sends it as FP32 (as numpy clients
    write it, 0.10000000149011612) or as FP64, also with both kinds of request in one batch."""
    raw = base_config(
        tmp_path,
        protocol="kserve-v2",
        features=[{"name": "rate", "type": "categorical"}],
        predictions=[{"name": "label", "type": "categorical"}],
        windows=["1h"],
    )
    config = config_from_mapping(raw, base=tmp_path)
    rng = np.random.default_rng(3)
    codes = np.array([0.1, 0.2, 0.3, 2.5])
    train = {"rate": rng.choice(codes, ROWS).tolist(), "label": ["a"] * ROWS}
    pipeline = wire(config, build_baseline(config, [write_csv(tmp_path / "t.csv", train)]))
    label = {"name": "label", "shape": [BATCH], "datatype": "BYTES", "data": ["a"] * BATCH}
    records = [
        Record(
            T0,
            {"inputs": [(fp32 if start % (2 * BATCH) else fp64)("rate", rng.choice(codes, BATCH))]},
            {"model_name": "wine", "outputs": [label]},
            PATH,
        )
        for start in range(0, LIVE, BATCH)
    ]
    pipeline.batcher.ingest(records)
    counters = pipeline.monitor.counters()["rate"]
    assert counters.observations == LIVE
    assert counters.invalid.get("unseen_category", 0) == 0


def test_a_nan_category_is_missing_not_an_unseen_category(
    built: tuple[Config, Baseline],
) -> None:
    """pandas holds a gap as NaN and Python's json writes it NaN: 5% of the codes sent so are
    missing, as the training CSV's empty cells were, not the category "nan" (unseen, PSI ~0.3)."""
    rng = np.random.default_rng(4)
    pipeline = wire(*built, lambda: T0)
    records, gaps = [], 0
    for _ in range(LIVE // BATCH):
        codes = _categories(BATCH, rng)["code"].astype(np.float64)
        codes[rng.random(BATCH) < 0.05] = np.nan
        gaps += int(np.isnan(codes).sum())
        flags = _categories(BATCH, rng)["flag"]
        inputs = [fp64(name, values) for name, values in _shapes(BATCH, rng).items()]
        inputs += [fp64("code", codes), CATEGORY_ENCODINGS["BOOL and INT64"]("flag", flags)]
        answer = {
            "outputs": [
                {"name": "label", "shape": [BATCH], "datatype": "BYTES", "data": ["a"] * BATCH}
            ]
        }
        body = json.dumps({"inputs": inputs}).encode()  # NaN, as Python's json writes it
        assert b"NaN" in body
        records.append(Record(T0, body, json.dumps(answer).encode(), PATH))
    pipeline.batcher.ingest(records)
    counters = pipeline.monitor.counters()["code"]
    assert (counters.missing, counters.observations) == (gaps, LIVE - gaps)
    assert counters.invalid.get("unseen_category", 0) == 0
    stats = stats_of(pipeline)["code"]
    assert stats.psi is not None and stats.psi_noise_floor is not None
    assert stats.psi < 4 * stats.psi_noise_floor


def _widened(codes: np.ndarray[Any, Any]) -> list[float]:
    """Codes as a numpy float32 column reaches JSON (``tolist()``): 0.1 is 0.10000000149011612."""
    widened: list[float] = json.loads(json.dumps(codes.astype(np.float32).tolist()))
    return widened


ROW_REQUESTS: dict[str, tuple[str, str, Callable[[list[float]], dict[str, Any]]]] = {
    "kserve-v1 lists": (
        "kserve-v1",
        "/v1/models/wine:predict",
        lambda c: {"instances": [[v] for v in c]},
    ),
    "kserve-v1 objects": (
        "kserve-v1",
        "/v1/models/wine:predict",
        lambda c: {"instances": [{"rate": v} for v in c]},
    ),
    "tfserving instances": (
        "tfserving",
        "/v1/models/wine:predict",
        lambda c: {"instances": [{"rate": v} for v in c]},
    ),
    "kserve-v2 FP64": (
        "kserve-v2",
        PATH,
        lambda c: {"inputs": [{"name": "rate", "shape": [len(c)], "datatype": "FP64", "data": c}]},
    ),
    "kserve-v2 FP32": (
        "kserve-v2",
        PATH,
        lambda c: {"inputs": [{"name": "rate", "shape": [len(c)], "datatype": "FP32", "data": c}]},
    ),
}


def _answer(protocol: str, n: int) -> dict[str, Any]:
    if protocol == "kserve-v2":
        label = {"name": "label", "shape": [n], "datatype": "BYTES", "data": ["a"] * n}
        return {"model_name": "wine", "outputs": [label]}
    return {"predictions": ["a"] * n}


@pytest.mark.parametrize("encoding", list(ROW_REQUESTS))
@pytest.mark.parametrize("training", ["decimal text", "widened text"])
def test_float32_codes_widened_in_json_rows_are_the_baseline_categories(
    tmp_path: Path, encoding: str, training: str
) -> None:
    """A client holding codes in a float32 column writes 0.1 as 0.10000000149011612 in a v1 row,
    a TF Serving instance or an FP64 tensor (nothing says it was float32); the training CSV holds
    0.1, or the same widened text where pandas wrote such a column. Nothing is unseen, no drift
    (the v1 rows read 60% unseen, PSI 9.8; FP32 tensors against widened training text too)."""
    protocol, path, encode = ROW_REQUESTS[encoding]
    raw = base_config(
        tmp_path,
        protocol=protocol,
        features=[{"name": "rate", "type": "categorical"}],
        predictions=[{"name": "label", "type": "categorical"}],
        windows=["1h"],
    )
    config = config_from_mapping(raw, base=tmp_path)
    rng = np.random.default_rng(5)
    codes = np.array([0.1, 0.2, 0.3, 2.5, 7.0])
    train = rng.choice(codes, ROWS)
    spelled = _widened(train) if training == "widened text" else train.tolist()
    data = write_csv(tmp_path / "t.csv", {"rate": spelled, "label": ["a"] * ROWS})
    pipeline = wire(config, build_baseline(config, [data]), lambda: T0)
    records = [
        Record(T0, encode(_widened(rng.choice(codes, BATCH))), _answer(protocol, BATCH), path)
        for _ in range(LIVE // BATCH)
    ]
    pipeline.batcher.ingest(records)
    counters = pipeline.monitor.counters()["rate"]
    assert counters.observations == LIVE
    assert counters.invalid.get("unseen_category", 0) == 0, counters.invalid
    stats = stats_of(pipeline)["rate"]
    assert stats.psi is not None and stats.psi_noise_floor is not None
    assert stats.psi < 4 * stats.psi_noise_floor, (stats.psi, stats.psi_noise_floor)
