"""Every protocol adapter through the real proxy: documented bodies in, rows in the sketches out.

For each protocol a real upstream answers documented-shape bodies (shapes
from the protocol adapter tests in ``tests/protocols/``) for a batched and a
single-row request, and the server's error body for a request it rejects.
The proxy in front must return every byte unchanged, monitor both successful
exchanges (features and predictions paired row for row) and leave the error
response alone.
"""

from __future__ import annotations

import json
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import ClientSession, ClientTimeout, web

from tests.proxy_upstream import (
    Proxy,
    kserve_v2_request,
    running_proxy,
    until,
    upstream_server,
)

pytestmark = pytest.mark.usefixtures("proxy_engine")  # both engines (tests/conftest.py)

Row = dict[str, Any]
Body = dict[str, Any]

# Values inside the baseline's range and categories, so any mix-up of fields
# (a region string in alcohol, a class in region) shows up as an invalid value.
ROWS: list[Row] = [
    {"alcohol": 12.6 + 0.1 * i, "ash": 2.0 + 0.05 * i, "region": region, "class": label}
    for i, (region, label) in enumerate(
        [
            ("north", "a"),
            ("south", "b"),
            ("east", "a"),
            ("north", "a"),
            ("south", "b"),
            ("north", "b"),
            ("east", "a"),
            ("north", "a"),
            ("south", "b"),
        ]
    )
]
BATCH, SINGLE = ROWS[:8], ROWS[8:]
FEATURES = ("alcohol", "ash", "region")
FIELDS = (*FEATURES, "class")


def _columns(rows: list[Row], names: tuple[str, ...] = FEATURES) -> list[list[Any]]:
    return [[row[name] for name in names] for row in rows]


def _labels(rows: list[Row]) -> list[str]:
    return [row["class"] for row in rows]


@dataclass(frozen=True)
class Case:
    """One protocol: its route, its bodies for some rows, and its server's error body."""

    protocol: str
    route: str
    request: Callable[[list[Row]], Body]
    response: Callable[[list[Row]], Body]
    error_status: int
    error: Body
    fields: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.protocol


def _kserve_v2_request(rows: list[Row]) -> Body:
    return kserve_v2_request(rows, id="42")


def _kserve_v2_response(rows: list[Row]) -> Body:
    return {
        "model_name": "wine",
        "model_version": "1",
        "id": "42",
        "outputs": [
            {"name": "class", "shape": [len(rows)], "datatype": "BYTES", "data": _labels(rows)}
        ],
    }


def _tfserving_request(rows: list[Row]) -> Body:
    if len(rows) == 1:  # the columnar format for the single row
        return {"inputs": {name: [rows[0][name]] for name in FEATURES}}
    return {
        "signature_name": "serving_default",
        "instances": [{name: row[name] for name in FEATURES} for row in rows],
    }


def _tfserving_response(rows: list[Row]) -> Body:
    return {"outputs": _labels(rows)} if len(rows) == 1 else {"predictions": _labels(rows)}


def _mlflow_request(rows: list[Row]) -> Body:
    if len(rows) == 1:
        return {"dataframe_records": [{name: rows[0][name] for name in FEATURES}]}
    order = ("region", "alcohol", "ash")  # columns name the values, whatever the config order
    return {
        "dataframe_split": {
            "columns": list(order),
            "index": list(range(len(rows))),
            "data": _columns(rows, order),
        }
    }


CASES = [
    Case(
        "kserve-v1",
        "/v1/models/wine:predict",
        lambda rows: {"instances": _columns(rows)},
        lambda rows: {"predictions": _labels(rows)},
        400,
        {"error": "Model with name wine does not exist."},
    ),
    Case(
        "kserve-v2",
        "/v2/models/wine/infer",
        _kserve_v2_request,
        _kserve_v2_response,
        400,
        {"error": "unexpected datatype for input-0"},
    ),
    Case(
        "tfserving",
        "/v1/models/wine/versions/2:predict",
        _tfserving_request,
        _tfserving_response,
        404,
        {"error": "Servable not found for request: Specific(wine, 2)"},
    ),
    Case(
        "mlflow",
        "/invocations",
        _mlflow_request,
        lambda rows: {"predictions": _labels(rows)},
        400,
        {"error_code": "BAD_REQUEST", "message": "Model is missing inputs ['ash']."},
    ),
    Case(
        "seldon",
        "/api/v1.0/predictions",
        lambda rows: {"data": {"names": list(FEATURES), "ndarray": _columns(rows)}},
        lambda rows: {
            "data": {"names": ["class"], "ndarray": [[label] for label in _labels(rows)]},
            "meta": {},
        },
        400,
        {
            "status": {
                "code": -1,
                "info": "Unknown data type returned as payload (must be list or np array):None",
                "reason": "MICROSERVICE_BAD_DATA",
                "status": 1,
            }
        },
    ),
    Case(
        "jsonpath",
        "/score",
        lambda rows: {
            "records": [
                {"features": {"alcohol": r["alcohol"], "ash": r["ash"]}, "region": r["region"]}
                for r in rows
            ]
        },
        lambda rows: {"results": [{"label": r["class"], "score": 0.9} for r in rows]},
        422,
        {"error": "records[0].features is missing"},
        fields={
            "features": [
                {"name": "alcohol", "type": "numeric", "path": "$.records[*].features.alcohol"},
                {"name": "ash", "type": "numeric", "path": "$.records[*].features.ash"},
                {"name": "region", "type": "categorical", "path": "$.records[*].region"},
            ],
            "predictions": [{"name": "class", "type": "categorical", "path": "$.results[*].label"}],
        },
    ),
]


def _encode(body: Body) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def model_server(case: Case) -> web.RouteDef:
    """The protocol's route, answering each known request body with its documented response."""
    answers = {
        _encode(case.request(rows)): _encode(case.response(rows)) for rows in (BATCH, SINGLE)
    }

    async def handler(request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("X-Reject") or body not in answers:
            return web.Response(
                status=case.error_status, body=_encode(case.error), content_type="application/json"
            )
        return web.Response(body=answers[body], content_type="application/json")

    return web.post(case.route, handler)


@pytest.fixture(params=CASES, ids=str)
def case(request: pytest.FixtureRequest) -> Case:
    assert isinstance(request.param, Case)
    return request.param


@pytest.fixture
async def proxy(case: Case, tmp_path: Path, baseline: Path) -> AsyncIterator[Proxy]:
    async with (
        upstream_server(routes=[model_server(case)]) as upstream,
        running_proxy(
            tmp_path, baseline, upstream.port, protocol=case.protocol, fields=case.fields
        ) as running,
    ):
        yield running


@pytest.fixture
async def session() -> AsyncIterator[ClientSession]:
    async with ClientSession(timeout=ClientTimeout(total=10)) as client:
        yield client


async def post(
    session: ClientSession, proxy: Proxy, case: Case, body: bytes, reject: bool = False
) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"}
    if reject:
        headers["X-Reject"] = "1"
    async with session.post(proxy.url + case.route, data=body, headers=headers) as response:
        return response.status, await response.read()


async def assert_every_row_monitored(proxy: Proxy, what: str) -> None:
    """Once the ROWS are ingested: each field observed for each row, nothing missing, invalid,
    extra or unreadable."""
    monitor = proxy.sidecar.monitor
    await until(lambda: monitor.rows_total == len(ROWS), what=f"{len(ROWS)} {what}")
    assert not monitor.parse_errors
    for name in FIELDS:
        role = "input" if name in FEATURES else "prediction"
        labels = {"feature": name, "role": role}
        assert proxy.sample("driftgauge_observations_total", **labels) == len(ROWS), name
        assert proxy.sample("driftgauge_missing_total", **labels) == 0, name
        invalid = monitor.counters()[name].invalid
        assert sum(invalid.values()) == 0, (name, dict(invalid))
    assert monitor.extra_columns_total == 0


async def test_batched_and_single_rows_are_monitored_and_paired(
    case: Case, proxy: Proxy, session: ClientSession
) -> None:
    """8 rows then 1 row: every byte comes back, and each field is observed 9 times, none invalid."""
    for rows in (BATCH, SINGLE):
        status, body = await post(session, proxy, case, _encode(case.request(rows)))
        assert status == 200
        assert body == _encode(case.response(rows))
    await assert_every_row_monitored(proxy, "rows ingested")
    assert not proxy.sidecar.monitor.dropped and not proxy.sidecar.batcher.dropped


async def test_error_response_is_forwarded_unchanged_and_not_monitored(
    case: Case, proxy: Proxy, session: ClientSession
) -> None:
    """The server's error status and body reach the client; only the later good call is observed."""
    status, body = await post(session, proxy, case, _encode(case.request(BATCH)), reject=True)
    assert (status, body) == (case.error_status, _encode(case.error))
    status, _ = await post(session, proxy, case, _encode(case.request(SINGLE)))
    assert status == 200
    monitor = proxy.sidecar.monitor
    await until(lambda: monitor.rows_total == 1, what="the single row ingested")
    assert not monitor.parse_errors
    for name in FIELDS:
        role = "input" if name in FEATURES else "prediction"
        assert proxy.sample("driftgauge_observations_total", feature=name, role=role) == 1
    assert proxy.source_sample("driftgauge_requests_total", code=str(case.error_status)) == 1
    assert proxy.source_sample("driftgauge_requests_total", code="200") == 1


async def test_mismatched_response_rows_are_forwarded_and_counted(
    case: Case, tmp_path: Path, baseline: Path, session: ClientSession
) -> None:
    """A 200 answer with fewer predictions than rows passes unchanged and counts row_mismatch."""
    short = _encode(case.response(BATCH[:3]))

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=short, content_type="application/json")

    async with (
        upstream_server(routes=[web.post(case.route, handler)]) as upstream,
        running_proxy(
            tmp_path, baseline, upstream.port, protocol=case.protocol, fields=case.fields
        ) as proxy,
    ):
        status, body = await post(session, proxy, case, _encode(case.request(BATCH)))
        assert (status, body) == (200, short)
        monitor = proxy.sidecar.monitor
        await until(lambda: monitor.parse_errors["row_mismatch"] == 1, what="row_mismatch")
        assert monitor.rows_total == 0
        assert proxy.sample("driftgauge_parse_errors_total", reason="row_mismatch") == 1


def _v2_fp64_request(rows: list[Row]) -> Body:
    """The V2 request of ``rows`` with every numeric tensor FP64, as V1's JSON numbers are."""
    body = _kserve_v2_request(rows)
    ash = body["inputs"][1]
    ash["datatype"], ash["data"] = "FP64", [[r["ash"]] for r in rows]
    return body


async def test_kserve_monitors_the_v1_and_v2_routes_alike(
    tmp_path: Path, baseline: Path, session: ClientSession
) -> None:
    """``protocol: kserve``: the same rows by V1 then by V2 add exactly the same counts."""
    bodies = {
        "/v1/models/wine:predict": (
            {"instances": _columns(BATCH)},
            {"predictions": _labels(BATCH)},
        ),
        "/v2/models/wine/versions/3/infer": (_v2_fp64_request(BATCH), _kserve_v2_response(BATCH)),
    }

    def route(path: str) -> web.RouteDef:
        async def handler(request: web.Request) -> web.Response:
            return web.Response(body=_encode(bodies[path][1]), content_type="application/json")

        return web.post(path, handler)

    async with (
        upstream_server(routes=[route(path) for path in bodies]) as upstream,
        running_proxy(tmp_path, baseline, upstream.port, protocol="kserve") as proxy,
    ):
        monitor = proxy.sidecar.monitor
        counts = []
        for done, (path, (request, response)) in enumerate(bodies.items(), start=1):
            async with session.post(proxy.url + path, data=_encode(request)) as answer:
                assert answer.status == 200
                assert await answer.read() == _encode(response)
            await until(lambda n=done: monitor.rows_total == n * len(BATCH), what=path)
            counts.append({name: monitor.counters()[name].bins.copy() for name in FIELDS})
        assert not monitor.parse_errors
        for name in FIELDS:
            first, both = counts[0][name], counts[1][name]
            assert first.sum() == len(BATCH), name
            assert (both == 2 * first).all(), name
            assert sum(monitor.counters()[name].invalid.values()) == 0, name
        # A route of neither protocol is forwarded but not monitored.
        async with session.post(proxy.url + "/invocations", data=b"{}") as answer:
            assert answer.status == 200  # the upstream echoes it
        assert monitor.rows_total == 2 * len(BATCH)


def _csv(rows: list[Row], names: tuple[str, ...] = ("region", "alcohol", "ash")) -> bytes:
    lines = [",".join(names), *(",".join(str(row[name]) for name in names) for row in rows)]
    return ("\r\n".join(lines) + "\r\n").encode()


async def test_mlflow_csv_bodies_are_monitored(
    tmp_path: Path, baseline: Path, session: ClientSession
) -> None:
    """``Content-Type: text/csv`` to /invocations passes unchanged and its rows are observed."""
    answers = {_csv(rows): _encode({"predictions": _labels(rows)}) for rows in (BATCH, SINGLE)}

    async def handler(request: web.Request) -> web.Response:
        assert request.content_type == "text/csv"
        return web.Response(body=answers[await request.read()], content_type="application/json")

    async with (
        upstream_server(routes=[web.post("/invocations", handler)]) as upstream,
        running_proxy(tmp_path, baseline, upstream.port, protocol="mlflow") as proxy,
    ):
        for rows in (BATCH, SINGLE):
            headers = {"Content-Type": "text/csv"}
            url = proxy.url + "/invocations"
            async with session.post(url, data=_csv(rows), headers=headers) as answer:
                assert answer.status == 200
                assert await answer.read() == answers[_csv(rows)]
        await assert_every_row_monitored(proxy, "CSV rows")


def _binary(head: Body, tensors: list[bytes]) -> tuple[bytes, dict[str, str]]:
    """A body of the binary tensor data extension: the JSON head, then each tensor's bytes, and
    the header giving the head's length (Triton's HTTP client sends tensors so by default)."""
    json_head = _encode(head)
    return json_head + b"".join(tensors), {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(json_head)),
    }


def _bytes_elements(values: list[str]) -> bytes:
    """BYTES elements as the extension lays them out: a 4-byte little-endian length each."""
    return b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in values)


def _triton_request(rows: list[Row]) -> tuple[bytes, dict[str, str]]:
    n = len(rows)
    tensors = [
        np.array([r["alcohol"] for r in rows], "<f8").tobytes(),
        np.array([r["ash"] for r in rows], "<f4").tobytes(),
        _bytes_elements([r["region"] for r in rows]),
    ]
    head = {
        "inputs": [
            {"name": name, "shape": shape, "datatype": datatype}
            | {"parameters": {"binary_data_size": len(data)}}
            for (name, shape, datatype), data in zip(
                [("alcohol", [n], "FP64"), ("ash", [n, 1], "FP32"), ("region", [n], "BYTES")],
                tensors,
                strict=True,
            )
        ],
        "outputs": [{"name": "class", "parameters": {"binary_data": True}}],
    }
    return _binary(head, tensors)


def _triton_response(rows: list[Row]) -> tuple[bytes, dict[str, str]]:
    data = _bytes_elements(_labels(rows))
    output = {"name": "class", "datatype": "BYTES", "shape": [len(rows)]}
    head = {
        "model_name": "wine",
        "model_version": "1",
        "outputs": [output | {"parameters": {"binary_data_size": len(data)}}],
    }
    return _binary(head, [data])


async def test_kserve_v2_binary_tensor_data_is_monitored(
    tmp_path: Path, baseline: Path, session: ClientSession
) -> None:
    """Tensors sent and answered as binary data (Triton's extension, its client's default) pass
    unchanged and are observed as their JSON spelling would be."""
    answers = {_triton_request(rows)[0]: _triton_response(rows) for rows in (BATCH, SINGLE)}

    async def handler(request: web.Request) -> web.Response:
        body, headers = answers[await request.read()]
        return web.Response(body=body, headers=headers)

    route = "/v2/models/wine/infer"
    async with (
        upstream_server(routes=[web.post(route, handler)]) as upstream,
        running_proxy(tmp_path, baseline, upstream.port, protocol="kserve-v2") as proxy,
    ):
        for rows in (BATCH, SINGLE):
            body, headers = _triton_request(rows)
            async with session.post(proxy.url + route, data=body, headers=headers) as answer:
                assert answer.status == 200
                assert await answer.read() == answers[body][0]
                length = answer.headers["Inference-Header-Content-Length"]
                assert length == answers[body][1]["Inference-Header-Content-Length"]
        await assert_every_row_monitored(proxy, "binary rows")


async def test_seldon_form_bodies_are_monitored(
    tmp_path: Path, baseline: Path, session: ClientSession
) -> None:
    """A SeldonMessage posted to a microservice's /predict as a form's ``json`` field (as
    SeldonClient's microservice calls and the Python wrapper's tester send it) passes
    unchanged and its rows are observed."""
    case = next(case for case in CASES if case.protocol == "seldon")
    answers = {
        _encode(case.request(rows)): _encode(case.response(rows)) for rows in (BATCH, SINGLE)
    }

    async def handler(request: web.Request) -> web.Response:
        form = await request.post()
        answer = answers[str(form["json"]).encode()]
        return web.Response(body=answer, content_type="application/json")

    async with (
        upstream_server(routes=[web.post("/predict", handler)]) as upstream,
        running_proxy(tmp_path, baseline, upstream.port, protocol="seldon") as proxy,
    ):
        for rows in (BATCH, SINGLE):
            message = _encode(case.request(rows)).decode()
            async with session.post(proxy.url + "/predict", data={"json": message}) as answer:
                assert answer.status == 200
                assert await answer.read() == answers[message.encode()]
        await assert_every_row_monitored(proxy, "form rows")
