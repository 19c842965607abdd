"""Model versions end to end: a canary's drift apart from stable's, through a real Prometheus.

A KServe v2 model server answers ``/v2/models/wine/versions/{1,2}/infer``
with the version in ``model_version``; the sidecar (``versions: {top: 2}``)
keeps a monitor per version; Prometheus scrapes it and evaluates the
``driftgauge:psi_version_excess`` recording rule, shipped and generated: the canary (version 2, its
alcohol shifted) stands out, the stable version reads no excess.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web

from driftgauge.config import load_config
from driftgauge.rules.alerts import models_of, render_rules
from driftgauge.rules.writing import dump_yaml
from tests.e2e_support import BackgroundLoop, sidecar, write_baseline, write_config
from tests.helpers import base_config, free_port, wait_for
from tests.servers import prometheus

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "alert_rules" / "driftgauge.rules.yml"
ROWS_PER_REQUEST, REQUESTS = 20, 25


def _model_server() -> web.Application:
    """Answers every row with class ``a``, naming the version of the path in ``model_version``."""

    async def infer(request: web.Request) -> web.Response:
        body = await request.json()
        rows = body["inputs"][0]["shape"][0]
        return web.json_response(
            {
                "model_name": "wine",
                "model_version": request.match_info["version"],
                "outputs": [
                    {"name": "class", "shape": [rows], "datatype": "BYTES", "data": ["a"] * rows}
                ],
            }
        )

    app = web.Application()
    app.add_routes([web.post("/v2/models/wine/versions/{version}/infer", infer)])
    return app


def _request(rng: np.random.Generator, shift: float) -> dict[str, Any]:
    n = ROWS_PER_REQUEST
    tensors = {
        "alcohol": rng.normal(13.0, 0.8, n) + shift,
        "ash": rng.lognormal(0.8, 0.2, n),
    }
    inputs: list[dict[str, Any]] = [
        {"name": name, "shape": [n], "datatype": "FP64", "data": values.round(4).tolist()}
        for name, values in tensors.items()
    ]
    regions = rng.choice(["north", "south", "east"], n, p=[0.5, 0.3, 0.2]).tolist()
    inputs.append({"name": "region", "shape": [n], "datatype": "BYTES", "data": regions})
    return {"inputs": inputs}


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return dict(json.loads(response.read()))


def test_a_canary_version_drifts_apart_from_stable(tmp_path: Path) -> None:
    """Version 2 (shifted alcohol) has a large PSI excess over version 1; version 1 has none."""
    upstream_port, proxy_port = free_port(), free_port()
    raw = base_config(
        tmp_path,
        protocol="kserve-v2",
        windows=["5m"],
        min_observations=100,
        versions={"top": 2},
        source={
            "proxy": {
                "listen": f"127.0.0.1:{proxy_port}",
                "upstream": f"http://127.0.0.1:{upstream_port}",
            }
        },
    )
    config_path = write_config(tmp_path / "driftgauge.yml", raw)
    write_baseline(config_path, 5_000)
    metrics = raw["metrics"]["listen"]
    rng = np.random.default_rng(5)
    with BackgroundLoop() as loop:
        loop.serve(_model_server(), upstream_port)
        with sidecar(config_path, tmp_path / "driftgauge.log"):
            generated = tmp_path / "generated.rules.yml"
            generated.write_text(dump_yaml(render_rules(models_of(load_config(config_path)))))
            _send_and_compare(proxy_port, metrics, rng, tmp_path, [RULES, generated])


def _send_and_compare(
    proxy_port: int, metrics: str, rng: np.random.Generator, tmp_path: Path, rules: list[Path]
) -> None:
    for _ in range(REQUESTS):
        for version, shift in (("1", 0.0), ("2", 2.0)):
            url = f"http://127.0.0.1:{proxy_port}/v2/models/wine/versions/{version}/infer"
            assert _post(url, _request(rng, shift))["model_version"] == version
    for rule_file in rules:
        _compare(metrics, tmp_path / f"prometheus-{rule_file.stem}", rule_file)


def _compare(metrics: str, directory: Path, rule_file: Path) -> None:
    with prometheus(directory, [metrics], rule_files=[rule_file]) as server:

        def excess() -> dict[str, float] | None:
            found = {
                item["metric"]["version"]: float(item["value"][1])
                for item in server.query(
                    'driftgauge:psi_version_excess{feature="alcohol", window="5m"}'
                )
            }
            return found if set(found) == {"1", "2"} else None

        found = wait_for(excess, timeout=60, what="the version excess of alcohol")
        assert found["1"] == 0.0
        assert found["2"] > 1.0
        ash = server.query('driftgauge:psi_version_excess{feature="ash", window="5m"}')
        assert ash and all(float(item["value"][1]) < 0.1 for item in ash)
        unversioned = server.query('driftgauge_psi{feature="alcohol", version=""}')
        assert unversioned == []  # every record named its version
