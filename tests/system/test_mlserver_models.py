"""One sidecar in front of a real MLServer serving two models, one of them in two versions: each
model under its own label, the canary version's drift apart from the stable version's."""

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
ROWS, LIVE, BATCH = 3_000, 600, 50


def _jittered(data: np.ndarray[Any, Any], n: int, rng: np.random.Generator) -> np.ndarray[Any, Any]:
    """``n`` rows resampled from ``data`` with a little noise (1% of each column's sd)."""
    rows = data[rng.integers(0, len(data), n)]
    return rows + rng.normal(0.0, 0.01, rows.shape) * data.std(axis=0)


@pytest.fixture(scope="module")
def models() -> dict[str, tuple[Any, list[str], np.ndarray[Any, Any]]]:
    """Wine and iris classifiers, their feature names (scikit-learn's own) and their data."""
    from sklearn.datasets import load_iris, load_wine
    from sklearn.linear_model import LogisticRegression

    fitted = {}
    for name, loader in (("wine", load_wine), ("iris", load_iris)):
        data = loader()
        model = LogisticRegression(max_iter=5_000).fit(data.data, data.target)
        fitted[name] = (model, list(data.feature_names), data.data)
    return fitted


@pytest.fixture(scope="module")
def mlserver(
    tmp_path_factory: pytest.TempPathFactory,
    models: dict[str, tuple[Any, list[str], np.ndarray[Any, Any]]],
) -> Iterator[MLServer]:
    """MLServer serving both models at once (wine as v1 and v2), each taking one [-1, d] FP64 tensor."""
    specs = [
        ModelSpec(
            name,
            model,
            inputs=[{"name": "input-0", "datatype": "FP64", "shape": [-1, len(names)]}],
            outputs=[{"name": "predict", "datatype": "INT64", "shape": [-1, 1]}],
            version=version,
        )
        for name, (model, names, _) in models.items()
        for version in (("v1", "v2") if name == "wine" else ("v1",))
    ]
    with serve_models(tmp_path_factory.mktemp("mlserver"), specs) as server:
        yield server


def _infer(port: int, model: str, rows: np.ndarray[Any, Any], version: str = "") -> Any:
    body = {
        "inputs": [
            {
                "name": "input-0",
                "datatype": "FP64",
                "shape": list(rows.shape),
                "data": rows.tolist(),
            }
        ]
    }
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v2/models/{model}"
        + (f"/versions/{version}" if version else "")
        + "/infer",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_two_models_and_two_versions_behind_one_sidecar_drift_independently(
    mlserver: MLServer,
    models: dict[str, tuple[Any, list[str], np.ndarray[Any, Any]]],
    tmp_path: Path,
) -> None:
    """Wine's canary (v2, shifted alcohol) drifts under model="wine", version="v2"; its stable
    version v1 and iris, sent unchanged, read none."""
    rng = np.random.default_rng(11)
    blocks = []
    for name, (model, names, data) in models.items():
        train = _jittered(data, ROWS, rng)
        columns: dict[str, list[Any]] = {n: train[:, j].tolist() for j, n in enumerate(names)}
        columns["predict"] = model.predict(train).tolist()
        write_csv(tmp_path / f"{name}.csv", columns)
        blocks.append(
            {
                "model": name,
                "protocol": "kserve-v2",
                "baseline": f"{name}.dgb",
                "features": [{"name": n, "type": "numeric"} for n in names],
                "predictions": [{"name": "predict", "type": "categorical"}],
            }
        )
    proxy_port, metrics_port = free_port(), free_port()
    config = {
        "source": {
            "proxy": {"listen": f"127.0.0.1:{proxy_port}", "upstream": mlserver.url},
        },
        "metrics": {"listen": f"127.0.0.1:{metrics_port}", "recompute_interval": "1s"},
        "windows": ["5m"],
        "min_observations": 100,
        "versions": {"top": 2},
        "models": blocks,
    }
    config_path = tmp_path / "models.yaml"
    config_path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    for name in models:
        built = subprocess.run(
            [
                *CLI,
                "baseline",
                "-c",
                config_path,
                "--model",
                name,
                "--data",
                tmp_path / f"{name}.csv",
                "-o",
                tmp_path / f"{name}.dgb",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert built.returncode == 0, built.stderr
    checked = subprocess.run(
        [*CLI, "check", "-c", config_path], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.count("ok: ") == 2

    canary = _jittered(models["wine"][2], LIVE, rng)
    alcohol = models["wine"][1].index("alcohol")
    canary[:, alcohol] += 3 * models["wine"][2][:, alcohol].std()  # drift
    stable = _jittered(models["wine"][2], LIVE, rng)  # none
    iris_live = _jittered(models["iris"][2], LIVE, rng)  # none
    traffic = (("wine", "v1", stable), ("wine", "v2", canary), ("iris", "v1", iris_live))
    with sidecar(config_path, tmp_path / "driftgauge.log"):
        for start in range(0, LIVE, BATCH):
            for name, version, rows in traffic:
                answer = _infer(proxy_port, name, rows[start : start + BATCH], version)
                assert (answer["model_name"], answer["model_version"]) == (name, version)

        def psi(model: str, feature: str, version: str = "v1") -> tuple[float, float] | None:
            samples = scrape(metrics_port)
            labels = {
                "model": model,
                "feature": feature,
                "role": "input",
                "window": "5m",
                "version": version,
            }
            value = samples.get(series("driftgauge_psi", **labels))
            floor = samples.get(series("driftgauge_psi_noise_floor", **labels))
            return None if value is None or floor is None else (value, floor)

        def everything_seen() -> bool:
            samples = scrape(metrics_port)
            return all(
                samples.get(
                    series(
                        "driftgauge_window_observations",
                        model=name,
                        feature=models[name][1][0],
                        role="input",
                        window="5m",
                        version=version,
                    )
                )
                == LIVE
                and psi(name, models[name][1][0], version) is not None
                for name, version, _ in traffic
            )

        wait_for(everything_seen, timeout=60, what="every model version's window full")
        drifted = psi("wine", "alcohol", "v2")
        assert drifted is not None and drifted[0] > 1.0 and drifted[0] > 10 * drifted[1]
        for name, version, _ in traffic:
            for feature in models[name][1]:
                if (name, version, feature) == ("wine", "v2", "alcohol"):
                    continue
                read = psi(name, feature, version)
                assert read is not None
                # Correlated wine features move a little with alcohol's resampling; no drift.
                assert read[0] < 0.1, (name, version, feature, read)
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics") as response:
            body = response.read()
        promtool = subprocess.run(
            ["promtool", "check", "metrics"], input=body, capture_output=True, check=False
        )
        assert promtool.returncode == 0, promtool.stdout + promtool.stderr
