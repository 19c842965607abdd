"""The same KServe v2 traffic through the proxy and through the cloudevents source gives the
same drift figures.

200 inference calls (the last half with drifted alcohol and region) go through a sidecar in
proxy mode in front of a real v2 model server.  The same calls, as KServe's payload logger
would send them (request and response events sharing a ce-id, binary mode, a tenth in
structured mode, a third with the response first), go to a sidecar with the cloudevents
source, mixed with unpaired and malformed events.  Both sidecars' real /metrics must agree on
the paired rows: observations, per-bin counts and PSI, feature by feature.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from aiohttp import ClientSession, ClientTimeout, web

from driftgauge import app
from driftgauge.app import Sidecar, build_sidecar
from driftgauge.config import config_from_mapping
from driftgauge.sources import cloudevents
from driftgauge.sources.cloudevents import CloudEventsSource
from tests.helpers import Series, base_config, free_port, scrape
from tests.kserve_logger import Message, binary, encode, kserve_event, send, structured
from tests.proxy_upstream import (
    build_baseline_file,
    kserve_v2_request,
    running_proxy,
    running_sidecar,
    until,
    upstream_server,
)

ROUTE = "/v2/models/wine/infer"
CALLS = 200
COMPARED = (
    "driftgauge_observations_total",
    "driftgauge_window_observations",
    "driftgauge_bin_observations_total",
    "driftgauge_psi",
    "driftgauge_missing_total",
    "driftgauge_invalid_total",
)


async def model(request: web.Request) -> web.Response:
    """A v2 model: class "a" when alcohol is above 13, else "b"."""
    body = await request.json()
    alcohol = next(t["data"] for t in body["inputs"] if t["name"] == "alcohol")
    labels = ["a" if value > 13 else "b" for value in alcohol]
    answer = {
        "model_name": "wine",
        "id": "0",
        "outputs": [{"name": "class", "shape": [len(labels)], "datatype": "BYTES", "data": labels}],
    }
    return web.Response(body=encode(answer), content_type="application/json")


def traffic(seed: int = 7) -> list[bytes]:
    """Request bodies of 1 to 3 rows; from call 100 on, alcohol +1.5 and mostly "east"."""
    rng = np.random.default_rng(seed)
    calls = []
    for i in range(CALLS):
        drifted = i >= CALLS // 2
        rows = [
            {
                "alcohol": round(float(rng.normal(13.0, 0.8)) + (1.5 if drifted else 0.0), 4),
                "ash": round(float(rng.lognormal(0.8, 0.2)), 4),
                "region": str(
                    rng.choice(
                        ["north", "south", "east"],
                        p=[0.1, 0.1, 0.8] if drifted else [0.5, 0.3, 0.2],
                    )
                ),
            }
            for _ in range(int(rng.integers(1, 4)))
        ]
        calls.append(encode(kserve_v2_request(rows)))
    return calls


def logger_messages(calls: list[tuple[bytes, bytes]]) -> list[Message]:
    """What KServe's logger sends for ``calls``, plus unpaired and malformed events."""
    messages: list[Message] = []
    for i, (request, response) in enumerate(calls):
        wire = structured if i % 10 == 0 else binary
        pair = [
            wire(kserve_event("request", f"call-{i}", request)),
            wire(kserve_event("response", f"call-{i}", response)),
        ]
        messages.extend(reversed(pair) if i % 3 == 0 else pair)
    wild = encode(kserve_v2_request([{"alcohol": 99.0, "ash": 99.0, "region": "mars"}]))
    messages += [binary(kserve_event("request", f"failed-{i}", wild)) for i in range(10)]
    messages += [binary(kserve_event("response", f"orphan-{i}", calls[0][1])) for i in range(5)]
    headers, body = binary(kserve_event("request", "no-id", wild))
    messages.append(({k: v for k, v in headers.items() if k != "ce-id"}, body))
    headers, body = binary(kserve_event("request", "other", wild))
    messages.append(({**headers, "ce-type": "com.example.unrelated"}, body))
    messages.append(({"content-type": "application/cloudevents+json"}, b'{"specversion": "1.0",'))
    return messages


@contextlib.asynccontextmanager
async def cloudevents_sidecar(tmp_path: Path, baseline: Path) -> AsyncIterator[Sidecar]:
    """A sidecar with the cloudevents source on a free port, started and always stopped."""
    source = {"listen": f"127.0.0.1:{free_port()}", "ttl": "1s", "cpu_budget": 1024}
    raw = base_config(
        tmp_path, protocol="kserve-v2", source={"cloudevents": source}, baseline=str(baseline)
    )
    sidecar = build_sidecar(config_from_mapping(raw, base=tmp_path))
    async with running_sidecar(sidecar):
        yield sidecar


async def figures(sidecar: Sidecar) -> dict[Series, float]:
    """The compared samples of a real /metrics scrape, after a recompute."""
    await asyncio.to_thread(sidecar.monitor.compute)
    samples = await asyncio.to_thread(scrape, sidecar.config.metrics.listen[1])
    return {key: value for key, value in samples.items() if key[0] in COMPARED}


async def test_proxy_and_cloudevents_sources_give_the_same_drift_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Paired rows only: unpaired, malformed and out-of-order events change nothing."""
    # Rows are compared exactly: neither sidecar may sample records out under a loaded machine
    # (a budget monitoring never reaches, and no backlog reading; the test once timed out
    # waiting for the CloudEvents rows in a full run).
    monkeypatch.setattr(app, "BEHIND_SECONDS", math.inf)
    monkeypatch.setattr(cloudevents, "BEHIND_SECONDS", math.inf)
    baseline = build_baseline_file(tmp_path)
    (tmp_path / "proxy").mkdir()
    (tmp_path / "ce").mkdir()
    async with (
        ClientSession(timeout=ClientTimeout(total=10)) as session,
        upstream_server(routes=[web.post(ROUTE, model)]) as upstream,
        running_proxy(
            tmp_path / "proxy", baseline, upstream.port, protocol="kserve-v2", cpu_budget=1024
        ) as proxy,
        cloudevents_sidecar(tmp_path / "ce", baseline) as ce,
    ):
        calls = []
        for body in traffic():
            async with session.post(
                proxy.url + ROUTE, data=body, headers={"Content-Type": "application/json"}
            ) as r:
                assert r.status == 200
                calls.append((body, await r.read()))
        expected_rows = sum(len(json.loads(b)["inputs"][0]["data"]) for b, _ in calls)
        await until(lambda: proxy.sidecar.monitor.rows_total == expected_rows, what="proxy rows")

        url = f"http://127.0.0.1:{ce.proxy_port}/"
        started = time.perf_counter()
        statuses = [await send(session, url, message) for message in logger_messages(calls)]
        assert set(statuses) == {200}
        assert time.perf_counter() - started < 30

        monitor = ce.monitor
        await until(lambda: monitor.rows_total == expected_rows, what="cloudevents rows")
        errors = ce.batcher.parse_errors  # the source's: counted before any model's
        unpaired = ("cloudevents_unpaired_request", "cloudevents_unpaired_response")
        await until(lambda: sum(errors[r] for r in unpaired) == 15, what="unpaired events expired")
        assert not monitor.parse_errors
        assert dict(errors) == {
            "cloudevents_unpaired_request": 10,
            "cloudevents_unpaired_response": 5,
            "cloudevents_missing_id": 1,
            "cloudevents_unknown_type": 1,
            "cloudevents_invalid_envelope": 1,
        }
        assert not proxy.sidecar.monitor.parse_errors and not proxy.sidecar.batcher.parse_errors

        via_proxy, via_events = await figures(proxy.sidecar), await figures(ce)
        assert via_proxy.keys() == via_events.keys()
        for key, value in via_proxy.items():
            assert abs(via_events[key] - value) <= 1e-9 * max(1.0, abs(value)), key
        psi = {
            dict(labels)["feature"]: value
            for (name, labels), value in via_events.items()
            if name == "driftgauge_psi" and dict(labels).get("window") == "5m"
        }
        assert psi["alcohol"] > 0.2 and psi["region"] > 0.2  # the drift is there to compare
        assert psi["ash"] < psi["alcohol"]


async def test_a_dead_cloudevents_task_turns_readiness_false(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The source's background task is supervised: if it dies, /readyz reports it."""

    async def die(self: CloudEventsSource) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(CloudEventsSource, "_deliver", die)
    baseline = build_baseline_file(tmp_path)
    async with cloudevents_sidecar(tmp_path, baseline) as ce:
        await until(lambda: ce.health.failed == ["cloudevents"], what="the task's death noticed")
        assert ce.health.ready() == (False, "background task died: cloudevents")


async def test_pairs_received_before_shutdown_are_monitored(tmp_path: Path) -> None:
    """A pair whose response arrives just before the stop signal still reaches the sketches."""
    baseline = build_baseline_file(tmp_path)
    body = traffic()[0]
    rows = len(json.loads(body)["inputs"][0]["data"])
    response = encode(
        {"outputs": [{"name": "class", "shape": [rows], "datatype": "BYTES", "data": ["a"] * rows}]}
    )
    async with (
        ClientSession(timeout=ClientTimeout(total=10)) as session,
        cloudevents_sidecar(tmp_path, baseline) as ce,
    ):
        url = f"http://127.0.0.1:{ce.proxy_port}/"
        await send(session, url, binary(kserve_event("request", "last", body)))
        await send(session, url, binary(kserve_event("response", "last", response)))
    assert ce.monitor.rows_total == rows
    assert not ce.monitor.parse_errors and not ce.batcher.parse_errors
