"""Model names in request paths are read with their percent-escapes decoded (UTF-8), through the
router and through the real proxy."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, ClientTimeout, web
from yarl import URL

from driftgauge.app import Sidecar, build_sidecar
from driftgauge.baseline import build_baseline, save_baseline
from driftgauge.config import config_from_mapping
from driftgauge.monitor.route import Router, model_in_path
from driftgauge.typing import Record
from tests.helpers import base_config, free_port, training_rows, write_csv
from tests.proxy_upstream import running_sidecar, until, upstream_server

T0 = 1_700_000_000.0
V1 = "kserve-v1"
V2 = "kserve-v2"
# name -> protocol (and the path pattern of the MLflow models).
MODELS: dict[str, tuple[str, str | None]] = {
    "naïve": (V2, None),
    "my model": (V1, None),
    "wine-a": (V2, None),
    "iris.v2": (V1, None),
    "a/b": (V2, None),
    "cpu%load": (V2, None),  # a bare % that is no escape
    "a%41": (V2, None),  # a % that reads as an escape (of "A")
    "ünï mlflow": ("mlflow", "^/ünï models/"),  # a pattern written decoded
    "encoded mlflow": ("mlflow", "^/enc%20oded/"),  # ... and one written encoded
}


def models_document(tmp_path: Path, source: dict[str, Any] | None = None) -> dict[str, Any]:
    """A config document with every model of MODELS, sharing one baseline file."""
    shared = base_config(tmp_path, **({"source": source} if source else {}))
    fields = {key: shared.pop(key) for key in ("features", "predictions")}
    for key in ("model", "protocol", "baseline"):
        shared.pop(key)
    baseline = tmp_path / "shared.dgb"
    if not baseline.exists():
        single = config_from_mapping(base_config(tmp_path, baseline=str(baseline)), base=tmp_path)
        data = write_csv(tmp_path / "train.csv", training_rows(2_000))
        save_baseline(build_baseline(single, [data]), baseline)
    blocks = []
    for name, (protocol, route) in MODELS.items():
        block = {"model": name, "protocol": protocol, "baseline": str(baseline), **fields}
        if route is not None:
            block["path"] = route
        blocks.append(block)
    return {**shared, "models": blocks}


@pytest.fixture
def sidecar(tmp_path: Path) -> Sidecar:
    return build_sidecar(config_from_mapping(models_document(tmp_path), base=tmp_path))


def bodies(path: str) -> tuple[Any, Any]:
    """A request and response of the protocol ``path`` is a route of."""
    if path.startswith("/v2/"):
        request = {
            "inputs": [
                {"name": "alcohol", "shape": [1], "datatype": "FP64", "data": [13.0]},
                {"name": "ash", "shape": [1], "datatype": "FP64", "data": [2.2]},
                {"name": "region", "shape": [1], "datatype": "BYTES", "data": ["north"]},
            ]
        }
        output = {"name": "class", "shape": [1], "datatype": "BYTES", "data": ["a"]}
        return request, {"outputs": [output]}
    if path.startswith("/v1/"):
        return {"instances": [{"alcohol": 13.0, "ash": 2.2, "region": "north"}]}, {
            "predictions": ["a"]
        }
    return {"dataframe_records": [{"alcohol": 13.0, "ash": 2.2, "region": "north"}]}, {
        "predictions": ["a"]
    }


ROUTED = [
    ("/v2/models/na%C3%AFve/infer", "naïve"),
    ("/v2/models/na%c3%afve/versions/3/infer", "naïve"),
    ("/v2/models/naïve/infer", "naïve"),  # a tail log may hold the path decoded
    ("/v1/models/my%20model:predict", "my model"),
    ("/v2/models/wine%2Da/infer", "wine-a"),
    ("/v2/models/wine-a/versions/3/infer", "wine-a"),
    ("/v1/models/iris.v2:predict", "iris.v2"),
    ("/v1/models/iris%2Ev2:predict", "iris.v2"),
    ("/v2/models/a%2Fb/infer", "a/b"),  # %2F inside the segment: one name, not two segments
    ("/v2/models/a%2Fb/versions/1/infer", "a/b"),
    ("/v2/models/cpu%load/infer", "cpu%load"),
    ("/v2/models/cpu%25load/infer", "cpu%load"),
    ("/v2/models/a%41/infer", "a%41"),  # "aA" names no model: the name as written
    ("/v2/models/a%2541/infer", "a%41"),
    ("/%C3%BCn%C3%AF%20models/invocations", "ünï mlflow"),
    ("/ünï models/invocations", "ünï mlflow"),
    ("/enc%20oded/invocations", "encoded mlflow"),
]


@pytest.mark.parametrize(("path", "model"), ROUTED)
def test_percent_encoded_model_names_route_to_their_model(
    sidecar: Sidecar, path: str, model: str
) -> None:
    """Spaces, non-ASCII, dots, dashes, slashes and % in names, escaped or not, for KServe v1,
    v2, versioned v2 and path patterns: the record is monitored by its model, counted nowhere else."""
    router = sidecar.batcher
    assert router.matches(path)  # the proxy keeps its bodies
    request, response = bodies(path)
    assert router.ingest([Record(T0, request, response, path)]) == 1
    counts = {m.config.model: m.counters()["alcohol"].observations for m in sidecar.monitors}
    assert counts == {name: int(name == model) for name in MODELS}
    assert all(not m.parse_errors for m in sidecar.monitors)


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/na%C3%AFve%2Fx/infer",  # naïve/x: no such model
        "/v2/models/na%FFve/infer",  # escapes that are no UTF-8: the name as written
        "/v2/models/my%2520model/infer",  # my%20model
        "/v1/models/aA:predict",
    ],
)
def test_names_that_decode_to_no_model_are_unknown(sidecar: Sidecar, path: str) -> None:
    """A decoded name that is not configured is counted ``unknown_model``, under no model."""
    request, response = bodies(path)
    assert sidecar.batcher.ingest([Record(T0, request, response, path)]) == 0
    assert sidecar.batcher.parse_errors == {"unknown_model": 1}
    assert all(not m.parse_errors for m in sidecar.monitors)


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/v2/models/na%C3%AFve/infer", "naïve"),
        ("/v1/models/my%20model:predict", "my model"),
        ("/v2/models/a%2Fb/versions/2/infer", "a/b"),
        ("/v2/models/100%/infer", "100%"),
        ("/v2/models/na%FFve/infer", "na%FFve"),
    ],
)
def test_model_in_path_decodes_the_name(path: str, name: str) -> None:
    """The name segment decoded as UTF-8; kept as written when its escapes are no UTF-8."""
    assert model_in_path(path) == name


def test_routes_of_encoded_paths_are_remembered_like_others(sidecar: Sidecar) -> None:
    """matches() answers the same for a path asked again (its answers are cached per path)."""
    router: Router = sidecar.batcher
    paths = [path for path, _ in ROUTED] + ["/v2/models/na%C3%AFve/ready", "/%C3%BCn%C3%AF/x"]
    first = [router.matches(path) for path in paths]
    assert first == [router.matches(path) for path in paths]
    assert first[-2:] == [False, False]


# -- through the real proxy --------------------------------------------------------------


async def any_model(request: web.Request) -> web.Response:
    """The upstream: a v2 answer on /v2/ routes, a v1 (and MLflow) answer elsewhere."""
    await request.read()
    _, response = bodies(request.raw_path)
    return web.json_response(response)


@contextlib.asynccontextmanager
async def proxy_sidecar(tmp_path: Path, upstream_port: int) -> AsyncIterator[Sidecar]:
    """Every model of MODELS behind one sidecar in proxy mode, started and always stopped."""
    source = {
        "proxy": {
            "listen": f"127.0.0.1:{free_port()}",
            "upstream": f"http://127.0.0.1:{upstream_port}",
            "shutdown_grace": 1,
        }
    }
    config = config_from_mapping(models_document(tmp_path, source), base=tmp_path)
    sidecar = build_sidecar(config)
    async with running_sidecar(sidecar):
        yield sidecar


async def test_the_proxy_routes_percent_encoded_names_to_their_model(tmp_path: Path) -> None:
    """Requests sent with escaped names through the proxy are answered by the upstream and
    monitored by the model they name; none is counted ``unknown_model``."""
    async with (
        upstream_server(routes=[web.route("*", "/{tail:.*}", any_model)]) as upstream,
        proxy_sidecar(tmp_path, upstream.port) as sidecar,
        ClientSession(timeout=ClientTimeout(total=10)) as session,
    ):
        expected = dict.fromkeys(MODELS, 0)
        base = f"http://127.0.0.1:{sidecar.proxy_port}"
        for path, model in ROUTED:
            if not path.isascii():
                continue  # not sendable as it is: HTTP request targets are ASCII
            request, response = bodies(path)
            # encoded=True: the path goes on the wire exactly as written here.
            async with session.post(URL(base + path, encoded=True), json=request) as answer:
                assert answer.status == 200, path
                assert await answer.json() == response
            expected[model] += 1

        def counts() -> dict[str, int]:
            return {m.config.model: m.counters()["alcohol"].observations for m in sidecar.monitors}

        await until(lambda: counts() == expected, what=f"every record monitored: {expected}")
        assert all(not m.parse_errors for m in sidecar.monitors)
