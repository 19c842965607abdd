"""Any UTF-8 name (features, predictions, the model) is kept exactly wherever it is written.

End to end: a baseline built by the CLI from a CSV whose headers are such
names, the sidecar in proxy mode in front of a KServe V2 model server whose
tensors carry them, /metrics in both formats (promtool and strict parsers),
the state snapshot, the landing page and JSON logs.
"""

from __future__ import annotations

import asyncio
import csv
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from aiohttp import ClientSession, web
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families

from driftgauge.runtime.logs import JsonFormatter
from driftgauge.runtime.state import state_file_name, unpack
from tests.helpers import base_config
from tests.proxy_upstream import running_proxy, until, upstream_server

NUMERIC = ("od280/od315_of_diluted_wines", "sepal length (cm)", "naïve")
CATEGORICAL = 'a"b\\c'
PREDICTION = "predicted\\nclass ✓"  # a backslash then an n: not a newline
MODEL = 'wine "prod" / ü\\'
NAMES = (*NUMERIC, CATEGORICAL, PREDICTION)
CATEGORIES = ("red", 'say "hi"', "back\\slash")
CLI = [sys.executable, "-m", "driftgauge.cli"]


def fields() -> dict[str, Any]:
    return {
        "model": MODEL,
        "features": [{"name": name, "type": "numeric"} for name in NUMERIC]
        + [{"name": CATEGORICAL, "type": "categorical"}],
        "predictions": [{"name": PREDICTION, "type": "categorical"}],
    }


def columns(rows: int, seed: int) -> dict[str, list[Any]]:
    rng = np.random.default_rng(seed)
    # Positive values: OpenMetrics' strict parser refuses negative summary quantiles, which
    # this test is not about (driftgauge_feature_value is a summary on this branch).
    data: dict[str, list[Any]] = {
        name: (10.0 * (index + 1) + rng.normal(0.0, 0.5, rows)).round(4).tolist()
        for index, name in enumerate(NUMERIC)
    }
    data[CATEGORICAL] = rng.choice(CATEGORIES, rows).tolist()
    data[PREDICTION] = rng.choice(["x", "y"], rows).tolist()
    return data


def write_training_csv(path: Path, data: dict[str, list[Any]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(list(data))
        writer.writerows(zip(*data.values(), strict=True))
    return path


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


def v2_model() -> web.RouteDef:
    """A KServe V2 model server answering one BYTES tensor named after the prediction."""

    async def infer(request: web.Request) -> web.Response:
        inputs = {tensor["name"]: tensor for tensor in (await request.json())["inputs"]}
        first = inputs[NUMERIC[0]]["data"]
        labels = ["x" if value < 10.0 else "y" for value in first]
        output = {"name": PREDICTION, "shape": [len(labels)], "datatype": "BYTES", "data": labels}
        return web.json_response({"model_name": "wine", "outputs": [output]})

    return web.post("/v2/models/{model}/infer", infer)


def v2_request(data: dict[str, list[Any]]) -> dict[str, Any]:
    rows = len(data[CATEGORICAL])
    inputs = [
        {"name": name, "shape": [rows], "datatype": "FP64", "data": data[name]} for name in NUMERIC
    ]
    inputs.append(
        {"name": CATEGORICAL, "shape": [rows], "datatype": "BYTES", "data": data[CATEGORICAL]}
    )
    return {"inputs": inputs}


def drift_features(text: str, openmetrics: bool = False) -> dict[str, set[str]]:
    """The ``feature`` labels of each drift family's samples (and the models they name)."""
    parse = parse_openmetrics if openmetrics else text_string_to_metric_families
    found: dict[str, set[str]] = {}
    for family in parse(text):
        for sample in family.samples:
            if sample.name in (
                "driftgauge_psi",
                "driftgauge_js_distance",
                "driftgauge_ks_statistic",
            ):
                found.setdefault(sample.name, set()).add(sample.labels["feature"])
            if "model" in sample.labels:
                found.setdefault("model", set()).add(sample.labels["model"])
    return found


async def test_wine_names_survive_baseline_proxy_metrics_and_state(tmp_path: Path) -> None:
    """CSV headers such as od280/od315_of_diluted_wines come out exactly in every output."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: scripts/test.sh installs the Debian prometheus package"
    config_path = tmp_path / "config.yaml"
    config_path.write_text(
        yaml.safe_dump(base_config(tmp_path, baseline="baseline.dgb", **fields())),
        encoding="utf-8",
    )
    data = write_training_csv(tmp_path / "train.csv", columns(3_000, seed=0))
    built = run("baseline", "-c", config_path, "--data", data, "-o", tmp_path / "baseline.dgb")
    assert built.returncode == 0, built.stderr
    checked = run("check", "-c", config_path)
    assert checked.returncode == 0, checked.stderr
    inspected = run("inspect", tmp_path / "baseline.dgb")
    assert inspected.returncode == 0, inspected.stderr
    for name in NAMES:
        assert f"\n{name}  (" in inspected.stdout

    state = {"state": {"directory": str(tmp_path / "state"), "interval": "1h"}}
    async with (
        upstream_server([v2_model()]) as upstream,
        running_proxy(
            tmp_path,
            tmp_path / "baseline.dgb",
            upstream.port,
            protocol="kserve-v2",
            fields={**fields(), **state},
        ) as proxy,
        ClientSession() as session,
    ):
        live = columns(400, seed=1)
        for start in range(0, 400, 20):
            batch = {name: values[start : start + 20] for name, values in live.items()}
            async with session.post(
                f"{proxy.url}/v2/models/wine/infer", json=v2_request(batch)
            ) as response:
                assert response.status == 200

        async def scrape(accept: str) -> str:
            headers = {"Accept": accept}
            async with session.get(f"{proxy.metrics_url}/metrics", headers=headers) as response:
                return await response.text()

        async def text_with_drift_for_every_name() -> str:
            while True:
                text = await scrape("text/plain")
                if drift_features(text).get("driftgauge_psi") == set(NAMES):
                    return text
                await asyncio.sleep(0.2)

        text = await asyncio.wait_for(text_with_drift_for_every_name(), 20)
        openmetrics = await scrape("application/openmetrics-text; version=1.0.0")
        async with session.get(f"{proxy.metrics_url}/") as response:
            landing = await response.text()
        await until(lambda: proxy.sidecar.monitor.rows_total >= 400, what="every row monitored")

    linted = await asyncio.to_thread(
        subprocess.run,
        [promtool, "check", "metrics"],
        input=text.encode(),
        capture_output=True,
        check=False,
    )
    assert linted.returncode == 0, linted.stdout.decode() + linted.stderr.decode()
    assert linted.stdout.strip() == b""
    for found in (drift_features(text), drift_features(openmetrics, openmetrics=True)):
        assert found["driftgauge_psi"] == set(NAMES)
        assert found["driftgauge_js_distance"] == set(NAMES)
        assert found["driftgauge_ks_statistic"] == set(NUMERIC)
        assert found["model"] == {MODEL}
    assert "wine &quot;prod&quot; / ü\\" in landing

    snapshot = tmp_path / "state" / state_file_name(MODEL)
    assert snapshot.name == "wine%20%22prod%22%20%2F%20%C3%BC%5C.state"
    document = unpack(snapshot.read_bytes())
    assert set(document["windows"]["5m"][-1]["entries"]) == set(NAMES)


def test_json_logs_keep_a_name_exactly() -> None:
    """A log line naming a field is one JSON object that parses back to the same text."""
    record = logging.LogRecord(
        "driftgauge", logging.ERROR, __file__, 1, "field %r: %s", (CATEGORICAL, MODEL), None
    )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert json.loads(line)["message"] == f"field {CATEGORICAL!r}: {MODEL}"
