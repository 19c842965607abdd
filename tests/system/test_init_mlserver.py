"""`driftgauge init --server` against a real MLServer serving scikit-learn models, end to end:
metadata → config → baseline → check → `serve` in front of the same MLServer."""

from __future__ import annotations

import contextlib
import csv
import json
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from driftgauge.config import ProxyConfig, load_config
from tests.helpers import free_port, scrape, series, wait_for
from tests.mlserver_support import MLServer, ModelSpec, serve_models, skip_without_mlserver

pytestmark = [pytest.mark.integration, skip_without_mlserver()]

CLI = [sys.executable, "-m", "driftgauge.cli"]
IRIS_INPUTS = [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
IRIS_OUTPUTS = [{"name": "predict", "datatype": "INT64", "shape": [-1, 1]}]
WINE_INPUTS = [
    {"name": "alcohol", "datatype": "FP64", "shape": [-1, 1]},
    {"name": "malic_acid", "datatype": "FP64", "shape": [-1, 1]},
    {"name": "region", "datatype": "BYTES", "shape": [-1, 1]},
]


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def iris() -> tuple[Any, list[str], Any, Any]:
    """A LogisticRegression fitted on iris, its feature names, X and y."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    data = load_iris()
    model = LogisticRegression(max_iter=1000).fit(data.data, data.target)
    return model, list(data.feature_names), data.data, data.target


@pytest.fixture(scope="module")
def mlserver(
    tmp_path_factory: pytest.TempPathFactory, iris: tuple[Any, list[str], Any, Any]
) -> Iterator[MLServer]:
    """One MLServer serving three models: iris (one [-1, 4] input tensor), wine (a tensor per
    feature, metadata only) and bare (no tensors declared)."""
    model = iris[0]
    models = [
        ModelSpec("iris", model, inputs=IRIS_INPUTS, outputs=IRIS_OUTPUTS),
        ModelSpec("wine", model, inputs=WINE_INPUTS, outputs=IRIS_OUTPUTS),
        ModelSpec("bare", model),  # no inputs or outputs declared: the metadata lists none
    ]
    with serve_models(tmp_path_factory.mktemp("mlserver"), models) as server:
        yield server


@pytest.fixture
def iris_csv(tmp_path: Path, iris: tuple[Any, list[str], Any, Any]) -> Path:
    """The iris training data with sklearn's column names (spaces, parentheses) and a target."""
    _, names, x, y = iris
    path = tmp_path / "iris.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([*names, "target"])
        writer.writerows([*row, int(label)] for row, label in zip(x, y, strict=True))
    return path


def test_metadata_of_one_tensor_per_feature_gives_named_features(
    mlserver: MLServer, tmp_path: Path
) -> None:
    """Tensors of one value per row become features by name, typed by datatype; protocol v2."""
    out = tmp_path / "wine.yaml"
    result = run("init", "--server", mlserver.url, "--model", "wine", "-o", out)
    assert result.returncode == 0, result.stderr
    config = load_config(out)
    assert [(f.name, f.type) for f in config.features] == [
        ("alcohol", "numeric"),
        ("malic_acid", "numeric"),
        ("region", "categorical"),
    ]
    assert [(p.name, p.type) for p in config.predictions] == [("predict", "numeric")]
    assert config.protocol == "kserve-v2"
    assert config.model == "wine"
    assert isinstance(config.source, ProxyConfig)
    assert config.source.upstream == mlserver.url
    assert f"GET {mlserver.url}/v2/models/wine" in out.read_text(encoding="utf-8")


def test_unknown_model_is_a_one_line_error(mlserver: MLServer, tmp_path: Path) -> None:
    """A model the server does not have: one line with the server's answer, exit 1."""
    result = run("init", "--server", mlserver.url, "--model", "nope", "-o", tmp_path / "c.yaml")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "404" in lines[0] and "nope" in lines[0]
    assert not (tmp_path / "c.yaml").exists()


def test_metadata_without_inputs_needs_the_training_file(
    mlserver: MLServer, iris_csv: Path, tmp_path: Path
) -> None:
    """A model whose metadata lists no tensors: an error pointing at --data without a file, and
    the file's columns (protocol kserve-v2, upstream the server) with one."""
    result = run("init", "--server", mlserver.url, "--model", "bare", "-o", tmp_path / "a.yaml")
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "no inputs" in result.stderr and "--data" in result.stderr
    out = tmp_path / "bare.yaml"
    result = run(
        "init",
        "--server",
        mlserver.url,
        "--model",
        "bare",
        "--data",
        iris_csv,
        "--predictions",
        "target",
        "-o",
        out,
    )
    assert result.returncode == 0, result.stderr
    config = load_config(out)
    assert config.features[0].name == "sepal length (cm)"
    assert len(config.features) == 4
    assert config.model == "bare"
    assert config.protocol == "kserve-v2"
    assert isinstance(config.source, ProxyConfig)
    assert config.source.upstream == mlserver.url


def test_wide_tensor_named_by_training_columns_then_serve_monitors_real_inference(
    mlserver: MLServer, iris_csv: Path, tmp_path: Path
) -> None:
    """init (metadata + data) → baseline → check → serve in front of MLServer: requests to the
    real model are answered and their [-1, 4] tensor lands on the four named features."""
    config_path = tmp_path / "iris.yaml"
    result = run(
        "init",
        "--server",
        mlserver.url,
        "--model",
        "iris",
        "--data",
        iris_csv,
        "--predictions",
        "target",
        "-o",
        config_path,
    )
    assert result.returncode == 0, result.stderr
    names = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
    config = load_config(config_path)
    assert [f.name for f in config.features] == names
    assert [(p.name, p.type) for p in config.predictions] == [("target", "categorical")]
    assert "BY POSITION" in config_path.read_text(encoding="utf-8")
    baseline = tmp_path / "iris.dgb"
    result = run("baseline", "-c", config_path, "--data", iris_csv, "-o", baseline)
    assert result.returncode == 0, result.stderr
    result = run("check", "-c", config_path)
    assert result.returncode == 0, result.stderr

    proxy_port, metrics_port = free_port(), free_port()
    raw = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    raw["source"]["proxy"]["listen"] = f"127.0.0.1:{proxy_port}"
    raw["metrics"] = {"listen": f"127.0.0.1:{metrics_port}", "recompute_interval": "1s"}
    config_path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    with running(["serve", "-c", str(config_path)]) as alive:
        wait_for(lambda: alive() and _ready(metrics_port), what="the sidecar's /readyz")
        rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
        answer = _infer(proxy_port, rows)
        assert answer["model_name"] == "iris"
        assert len(answer["outputs"][0]["data"]) == 3

        def observed() -> bool:
            samples = scrape(metrics_port)
            key = {"model": "iris", "role": "input"}
            return all(
                samples.get(series("driftgauge_observations_total", feature=n, **key)) == 3
                for n in names
            ) and (
                samples.get(
                    series(
                        "driftgauge_observations_total",
                        model="iris",
                        feature="target",
                        role="prediction",
                    )
                )
                == 3
            )

        wait_for(observed, timeout=30, what="observations of all four features")


def _infer(port: int, rows: Sequence[Sequence[float]]) -> Any:
    body = {
        "inputs": [
            {"name": "input-0", "datatype": "FP64", "shape": [len(rows), 4], "data": list(rows)}
        ]
    }
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v2/models/iris/infer",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@contextlib.contextmanager
def running(args: list[str]) -> Iterator[Callable[[], bool]]:
    """``driftgauge ARGS`` as a child process; yields "still alive?" (raising with its output
    if not); SIGTERM and wait at exit."""
    process = subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def alive() -> bool:
        if process.poll() is not None:
            output = process.stdout.read().decode() if process.stdout else ""
            raise AssertionError(f"driftgauge exited {process.returncode}: {output}")
        return True

    try:
        yield alive
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout:
            process.stdout.close()
