"""A boolean categorical feature beside an integer one reads no drift in any row encoding."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from driftgauge.baseline import Baseline, build_baseline
from driftgauge.config import Config, config_from_mapping
from driftgauge.typing import Record
from tests.feedback_support import wire
from tests.helpers import base_config, write_csv

T0 = 1_700_000_000.0
PATH = "/v1/models/wine:predict"
LIVE = 300
BATCH = 10


def columns(n: int, seed: int) -> dict[str, list[Any]]:
    rng = np.random.default_rng(seed)
    return {
        "x1": rng.integers(5, 15, n).tolist(),
        "flag": (rng.random(n) < 0.3).tolist(),
        "class": rng.choice(["a", "b"], n).tolist(),
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, Baseline]:
    """Integer x1 and a True/False flag, from a CSV as pandas writes one."""
    directory = tmp_path_factory.mktemp("booleans")
    raw = base_config(
        directory,
        features=[{"name": "x1", "type": "numeric"}, {"name": "flag", "type": "categorical"}],
        windows=["1h"],
        min_observations=100,
    )
    config = config_from_mapping(raw, base=directory)
    training = columns(5_000, seed=1)
    training["flag"] = ["True" if flag else "False" for flag in training["flag"]]
    return config, build_baseline(config, [write_csv(directory / "train.csv", training)])


Rows = Callable[[list[int], list[bool]], list[Any]]
ENCODINGS: dict[str, Rows] = {
    "lists": lambda x1, flag: [[x, f] for x, f in zip(x1, flag, strict=True)],
    "float lists": lambda x1, flag: [[x + 0.5, f] for x, f in zip(x1, flag, strict=True)],
    "objects": lambda x1, flag: [{"x1": x, "flag": f} for x, f in zip(x1, flag, strict=True)],
}


@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_undrifted_boolean_traffic_reads_no_drift(
    built: tuple[Config, Baseline], encoding: str
) -> None:
    """``{"instances": [[10, true]]}`` counts flag "true": nothing unseen, PSI at noise level."""
    pipeline = wire(*built, lambda: T0)
    live = columns(LIVE, seed=2)
    records = []
    for start in range(0, LIVE, BATCH):
        part = slice(start, start + BATCH)
        rows = ENCODINGS[encoding](live["x1"][part], live["flag"][part])
        response = {"predictions": live["class"][part]}
        records.append(Record(T0, {"instances": rows}, response, PATH))
    assert pipeline.batcher.ingest(records) == LIVE
    flag = pipeline.monitor.counters()["flag"]
    assert flag.observations == LIVE
    assert dict(flag.invalid) == {}
    assert not pipeline.monitor.parse_errors
    stats = {s.spec.name: s for s in pipeline.monitor.compute().fields}["flag"]
    assert stats.psi is not None and stats.psi_noise_floor is not None
    assert stats.psi < 4 * stats.psi_noise_floor, (stats.psi, stats.psi_noise_floor)
    assert stats.psi < 0.05
