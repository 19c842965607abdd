"""A real ``driftgauge serve`` of two models: what its source counts before a record reaches a
model (a request for no configured model, a path no model takes, an unreadable tail line) is
``driftgauge_source_parse_errors_total``, with no model label; a model's own
``driftgauge_parse_errors_total`` moves only for a record routed to it."""

from __future__ import annotations

import contextlib
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from driftgauge.baseline import build_baseline, save_baseline
from driftgauge.config import load_config
from tests.e2e_support import BackgroundLoop, sidecar, write_config
from tests.helpers import (
    base_config,
    free_port,
    scrape,
    series,
    training_rows,
    wait_for,
    write_csv,
)

pytestmark = pytest.mark.integration

ROW = {"alcohol": 13.0, "ash": 2.2, "region": "north"}
GOOD = json.dumps({"instances": [ROW]})
ANSWER = {"predictions": [{"class": "a"}]}


def two_models(
    tmp_path: Path, source: dict[str, Any], feedback: dict[str, dict[str, Any]] | None = None
) -> Path:
    """A config of the KServe v1 models `wine` and `iris` on ``source``, each with a baseline
    (and the ``feedback`` section ``feedback`` gives a model by name)."""
    raw = base_config(tmp_path, source=source)
    model_keys = ("protocol", "features", "predictions")
    shared = {key: raw.pop(key) for key in model_keys}
    del raw["model"], raw["baseline"]
    raw["models"] = [
        {"model": name, "baseline": str(tmp_path / f"{name}.dgb"), **shared}
        | ({"feedback": (feedback or {})[name]} if name in (feedback or {}) else {})
        for name in ("wine", "iris")
    ]
    path = write_config(tmp_path / "config.yaml", raw)
    data = write_csv(tmp_path / "train.csv", training_rows(500))
    for model in load_config(path).all_models:
        save_baseline(build_baseline(model, [data]), model.baseline)
    return path


@contextlib.contextmanager
def behind_the_proxy(
    tmp_path: Path,
    proxy: dict[str, Any] | None = None,
    feedback: dict[str, dict[str, Any]] | None = None,
) -> Iterator[tuple[BackgroundLoop, int, str]]:
    """A real serve of :func:`two_models` behind the proxy (with ``proxy``'s keys), in front of
    a model server answering ANSWER: its loop, the metrics port and the proxy's models URL."""

    async def predict(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response(ANSWER)

    app = web.Application()
    app.router.add_post("/v1/models/{name}", predict)
    proxy_port, model_port = free_port(), free_port()
    upstream = f"http://127.0.0.1:{model_port}"
    source = {"proxy": {"listen": f"127.0.0.1:{proxy_port}", "upstream": upstream, **(proxy or {})}}
    config = two_models(tmp_path, source, feedback)
    with BackgroundLoop() as loop:
        loop.serve(app, model_port)
        with sidecar(config, tmp_path / "serve.log") as running:
            yield loop, running.metrics_port, f"http://127.0.0.1:{proxy_port}/v1/models"


def errors_moved(port: int) -> dict[tuple[str, str, str], float]:
    """Every parse error series above 0, as (family, model, reason): model "" for the source's."""
    return {
        (name.removesuffix("_total"), dict(labels).get("model", ""), dict(labels)["reason"]): value
        for (name, labels), value in scrape(port).items()
        if name in ("driftgauge_parse_errors_total", "driftgauge_source_parse_errors_total")
        and value
    }


def rows(port: int, model: str) -> float:
    return scrape(port)[series("driftgauge_rows_total", model=model)]


def _post(url: str, body: str) -> int:
    request = urllib.request.Request(url, data=body.encode(), method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
        return int(response.status)


def test_behind_the_proxy_only_a_routed_bad_body_moves_its_model_s_parse_errors(
    tmp_path: Path,
) -> None:
    """A request for a model not configured and a POST off the prediction routes count in the
    source's series alone; iris's unreadable body counts under iris alone; every answer is the
    model server's."""
    with behind_the_proxy(tmp_path) as (_, port, proxy):
        assert _post(f"{proxy}/cifar:predict", GOOD) == 200
        assert _post(f"{proxy}/wine:explain", GOOD) == 200
        assert _post(f"{proxy}/iris:predict", "not json") == 200
        assert _post(f"{proxy}/wine:predict", GOOD) == 200
        wait_for(lambda: rows(port, "wine") == 1, what="wine's request, sent last, monitored")
        assert errors_moved(port) == {
            ("driftgauge_source_parse_errors", "", "unknown_model"): 1,
            ("driftgauge_source_parse_errors", "", "unknown_path"): 1,
            ("driftgauge_parse_errors", "iris", "invalid_json"): 1,
        }


def test_following_a_log_an_unreadable_line_is_no_model_s_and_a_bad_body_is_its_model_s(
    tmp_path: Path,
) -> None:
    """A line that is no JSON and a record for a model not configured count in the source's
    series alone; wine's record whose request is no JSON counts under wine alone."""
    log = tmp_path / "requests.jsonl"
    config = two_models(tmp_path, {"tail": {"path": str(log), "poll_interval": 0.05}})
    answer = {"response": ANSWER}
    lines = [
        {"ts": 1, "path": "/v1/models/cifar:predict", "request": {"instances": [ROW]}, **answer},
        "not json",
        {"ts": 1, "path": "/v1/models/wine:predict", "request": "not json", **answer},
        {"ts": 1, "path": "/v1/models/iris:predict", "request": {"instances": [ROW]}, **answer},
    ]
    log.write_text(
        "".join(f"{line if isinstance(line, str) else json.dumps(line)}\n" for line in lines)
    )
    with sidecar(config, tmp_path / "serve.log") as running:
        port = running.metrics_port
        wait_for(lambda: rows(port, "iris") == 1, what="iris's record, the last line, monitored")
        assert errors_moved(port) == {
            ("driftgauge_source_parse_errors", "", "invalid_json"): 1,
            ("driftgauge_source_parse_errors", "", "unknown_model"): 1,
            ("driftgauge_parse_errors", "wine", "invalid_json"): 1,
        }
