"""KServe V2 bodies as a real MLServer answers them, read through `driftgauge serve`'s proxy."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tests.e2e_support import sidecar
from tests.helpers import free_port, scrape, series, wait_for, write_csv
from tests.mlserver_support import MLServer, ModelSpec, serve_models, skip_without_mlserver

pytestmark = [pytest.mark.integration, skip_without_mlserver()]

CLI = [sys.executable, "-m", "driftgauge.cli"]
REQUESTS, BATCH = 10, 20


@pytest.fixture(scope="module")
def iris() -> tuple[Any, list[str], np.ndarray[Any, Any]]:
    """An iris classifier, its feature names (scikit-learn's, with spaces) and its data."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    data = load_iris()
    model = LogisticRegression(max_iter=5_000).fit(data.data, data.target)
    return model, list(data.feature_names), data.data


@pytest.fixture(scope="module")
def mlserver(
    tmp_path_factory: pytest.TempPathFactory, iris: tuple[Any, list[str], np.ndarray[Any, Any]]
) -> Iterator[MLServer]:
    model, names, _ = iris
    spec = ModelSpec(
        "iris",
        model,
        inputs=[{"name": "input-0", "datatype": "FP64", "shape": [-1, len(names)]}],
        outputs=[{"name": "predict", "datatype": "INT64", "shape": [-1, 1]}],
    )
    with serve_models(tmp_path_factory.mktemp("mlserver"), [spec]) as server:
        yield server


def _infer(port: int, rows: np.ndarray[Any, Any], outputs: list[str] | None = None) -> Any:
    body: dict[str, Any] = {
        "inputs": [
            {
                "name": "input-0",
                "datatype": "FP64",
                "shape": list(rows.shape),
                "data": rows.tolist(),
            }
        ]
    }
    if outputs is not None:
        body["outputs"] = [{"name": name} for name in outputs]
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v2/models/iris/infer",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_predict_proba_asked_of_mlserver_is_not_read_as_the_predicted_class(
    mlserver: MLServer, iris: tuple[Any, list[str], np.ndarray[Any, Any]], tmp_path: Path
) -> None:
    """Clients asking MLServer for predict_proba ([rows, 3] FP64), or for predict_proba and
    then predict, beside clients taking the default predict: the class prediction (mapped by
    position) counts every predict answer, bin by bin as counted on them, each row answered
    with predict_proba alone is a missing field, and every predict_proba is three extra
    columns; no probability reads as an unseen class."""
    model, names, data = iris
    rng = np.random.default_rng(5)
    train = data[rng.integers(0, len(data), 2_000)]
    columns: dict[str, list[Any]] = {n: train[:, j].tolist() for j, n in enumerate(names)}
    columns["species"] = model.predict(train).tolist()
    write_csv(tmp_path / "iris.csv", columns)
    proxy_port, metrics_port = free_port(), free_port()
    config = {
        "model": "iris",
        "protocol": "kserve-v2",
        "source": {"proxy": {"listen": f"127.0.0.1:{proxy_port}", "upstream": mlserver.url}},
        "metrics": {"listen": f"127.0.0.1:{metrics_port}", "recompute_interval": "1s"},
        "baseline": "iris.dgb",
        "features": [{"name": n, "type": "numeric"} for n in names],
        "predictions": [{"name": "species", "type": "categorical"}],
        "windows": ["5m"],
        "min_observations": 10,
    }
    config_path = tmp_path / "iris.yaml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    built = subprocess.run(
        [*CLI, "baseline", "-c", config_path, "--data", tmp_path / "iris.csv", "-o", "iris.dgb"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert built.returncode == 0, built.stderr

    predicted: list[int] = []
    with sidecar(config_path, tmp_path / "driftgauge.log"):
        for _ in range(REQUESTS):
            rows = data[rng.integers(0, len(data), BATCH)]
            answer = _infer(proxy_port, rows)
            assert [o["name"] for o in answer["outputs"]] == ["predict"]
            predicted += answer["outputs"][0]["data"]
            answer = _infer(proxy_port, rows, ["predict_proba"])
            assert [(o["name"], o["shape"]) for o in answer["outputs"]] == [
                ("predict_proba", [BATCH, 3])
            ]
            answer = _infer(proxy_port, rows, ["predict_proba", "predict"])
            assert [o["name"] for o in answer["outputs"]] == ["predict_proba", "predict"]
            predicted += answer["outputs"][1]["data"]
        total = 3 * REQUESTS * BATCH
        samples = wait_for(
            lambda: (
                (found := scrape(metrics_port)).get(series("driftgauge_rows_total", model="iris"))
                == total
                and found
            ),
            timeout=30,
            what="every row monitored",
        )

    def sample(name: str, **labels: str) -> float | None:
        return samples.get(series(name, model="iris", **labels))

    species = {"feature": "species", "role": "prediction"}
    assert sample("driftgauge_observations_total", **species) == len(predicted)
    assert sample("driftgauge_missing_fields_total", **species) == REQUESTS * BATCH
    assert sample("driftgauge_missing_total", **species) == REQUESTS * BATCH
    assert sample("driftgauge_invalid_total", reason="unseen_category", **species) == 0
    classes, counts = np.unique(predicted, return_counts=True)
    for label, count in zip(classes.tolist(), counts.tolist(), strict=True):
        assert sample("driftgauge_bin_observations_total", bin=str(label), **species) == count
    assert sample("driftgauge_extra_fields_total") == 3 * 2 * REQUESTS
    for name in names:
        feature = {"feature": name, "role": "input"}
        assert sample("driftgauge_observations_total", **feature) == total
