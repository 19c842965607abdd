"""Overload: the monitoring queue drops (and counts) observations, never requests or memory.

``driftgauge serve`` runs as a real process in proxy mode in front of an
upstream in the test's event loop; many concurrent clients send batched
KServe v1 bodies faster than the monitoring consumer can take them.  Every
client must get exactly the upstream's answer, what the consumer could not
take must be counted ``source_dropped_total{reason="queue_full"}`` or, left out by the
overload sampler, ``{reason="sampled"}``, rows monitored
plus rows dropped must equal rows sent, the sidecar's resident memory must
stay bounded, and its latency must not follow the monitoring work.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import statistics
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

from driftgauge.baseline import build_baseline, save_baseline
from driftgauge.config import config_from_mapping
from driftgauge.typing import Record
from tests import proxy_upstream
from tests.helpers import base_config, free_port, scrape, series
from tests.proxy_upstream import raw_client, running_proxy, serve, upstream_server

# Timing under load: run alone (scripts/test.sh); on both proxy engines (tests/conftest.py).
pytestmark = [pytest.mark.serial, pytest.mark.usefixtures("proxy_engine")]

PREDICT = "/v1/models/wine:predict"
EXPLAIN = "/v1/models/wine:explain"  # not a prediction route: forwarded, never monitored
MiB = 1024 * 1024
WIDE = 1_000  # features of the slow-ingest sidecar


def answer_for(body: bytes) -> bytes:
    """What the model answers to ``body``: one prediction per instance, plus the body's digest."""
    digest = hashlib.sha256(body).hexdigest()
    try:
        rows = len(json.loads(body)["instances"])
    except (ValueError, KeyError, TypeError):
        rows = 0
    return json.dumps({"predictions": [0.5] * rows, "digest": digest}).encode()


async def model(request: web.Request) -> web.Response:
    return web.Response(body=answer_for(await request.read()), content_type="application/json")


WIDE_ANSWER = json.dumps({"predictions": [0.5] * 8}).encode()


async def wide_model(request: web.Request) -> web.Response:
    """Eight predictions, whatever came: the 1,000-feature bodies are too big to parse here."""
    await request.read()
    return web.Response(body=WIDE_ANSWER, content_type="application/json")


def batch(index: int, rows: int) -> bytes:
    """A distinct KServe v1 request of ``rows`` instances (so a mixed-up answer shows)."""
    instances = [[12.0 + ((index + r) % 40) * 0.05, 2.2, "north"] for r in range(rows)]
    return json.dumps({"instances": instances, "n": index}).encode()


def rss(pid: int) -> int:
    """Resident set size of process ``pid`` in bytes (VmRSS)."""
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def proxy_config(tmp_path: Path, upstream_port: int, **overrides: Any) -> dict[str, Any]:
    """``base_config`` in proxy mode in front of ``upstream_port``; ``proxy`` adds proxy keys."""
    proxy = {
        "listen": f"127.0.0.1:{free_port()}",
        "upstream": f"http://127.0.0.1:{upstream_port}",
        "engine": proxy_upstream.engine["default"],  # the proxy_engine fixture's
        **overrides.pop("proxy", {}),
    }
    return base_config(tmp_path, source={"proxy": proxy}, log={"level": "WARNING"}, **overrides)


@dataclass
class Load:
    """What a load run saw: each request's status and body, latencies, the sidecar's RSS."""

    answers: dict[int, tuple[int, bytes]] = field(default_factory=dict, repr=False)
    latencies: list[float] = field(default_factory=list, repr=False)
    rss: list[int] = field(default_factory=list, repr=False)
    elapsed: float = 0.0

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]

    def summary(self) -> str:
        return (
            f"{len(self.latencies) / self.elapsed:.0f} req/s, "
            f"p50 {statistics.median(self.latencies) * 1000:.1f} ms, "
            f"p99 {self.percentile(0.99) * 1000:.1f} ms, max {max(self.latencies) * 1000:.1f} ms"
        )


async def drive(
    url: str,
    body: Callable[[int], bytes],
    *,
    clients: int,
    requests: int | None = None,
    seconds: float | None = None,
    pid: int | None = None,
) -> Load:
    """``clients`` concurrent keep-alive clients posting ``body(i)``, for a count or a time."""
    load = Load()
    counter = iter(range(requests if requests is not None else 10**9))
    end = time.monotonic() + (seconds if seconds is not None else 3600.0)
    stop = asyncio.Event()

    async def client(session: ClientSession) -> None:
        for index in counter:
            if time.monotonic() > end:
                return
            started = time.monotonic()
            async with session.post(url, data=body(index)) as reply:
                load.answers[index] = (reply.status, await reply.read())
            load.latencies.append(time.monotonic() - started)

    async def sample_rss() -> None:
        while pid is not None and not stop.is_set():
            load.rss.append(rss(pid))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)

    async with ClientSession(
        connector=TCPConnector(limit=clients), timeout=ClientTimeout(total=60)
    ) as session:
        sampler = asyncio.create_task(sample_rss())
        started = time.monotonic()
        try:
            await asyncio.gather(*(client(session) for _ in range(clients)))
        finally:
            load.elapsed = time.monotonic() - started
            stop.set()
            await sampler
    return load


async def settled(metrics_port: int, within: float = 30.0) -> dict[Any, float]:
    """A scrape once the monitoring queue is empty and rows_total stopped moving."""
    deadline = time.monotonic() + within
    previous = -1.0
    while True:
        samples = await asyncio.to_thread(scrape, metrics_port)
        rows = samples.get(series("driftgauge_rows_total", model="wine"), 0.0)
        depth = samples.get(series("driftgauge_queue_depth"), 0.0)
        if depth == 0 and rows == previous:
            return samples
        assert time.monotonic() < deadline, "the monitoring queue never settled"
        previous = rows
        await asyncio.sleep(0.5)


async def held(metrics_port: int, least: float, within: float = 30.0) -> float:
    """The predictions held once the consumer has taken in at least ``least`` (or the deadline)."""
    deadline = time.monotonic() + within
    while True:
        pending = await asyncio.to_thread(
            sample_line, metrics_port, 'driftgauge_pending_predictions{model="wine"}'
        )
        if pending >= least or time.monotonic() > deadline:
            return pending
        await asyncio.sleep(0.2)


def sample_line(port: int, series_text: str) -> float:
    """One sample of /metrics found by its exact series text (0 when absent), without parsing all."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(series_text + " "):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture
async def upstream_port() -> AsyncIterator[int]:
    async with upstream_server(routes=[web.post(PREDICT, model)]) as up:
        yield up.port


@pytest.fixture
async def wide_upstream_port() -> AsyncIterator[int]:
    async with upstream_server(
        routes=[web.post(PREDICT, wide_model), web.post(EXPLAIN, wide_model)]
    ) as up:
        yield up.port


async def test_overload_drops_observations_but_answers_every_request_with_bounded_memory(
    tmp_path: Path, baseline: Path, upstream_port: int
) -> None:
    """Traffic beyond the consumer: all answered exactly, drops counted, rows add up, RSS flat."""
    requests, rows = 1_200, 64
    bodies = [batch(i, rows) for i in range(requests)]
    raw = proxy_config(tmp_path, upstream_port, baseline=str(baseline), proxy={"queue_size": 4})
    with serve(tmp_path, raw) as sidecar:
        pid = sidecar.process.pid
        before = rss(pid)
        load = await drive(
            sidecar.url(PREDICT), bodies.__getitem__, clients=32, requests=requests, pid=pid
        )
        samples = await settled(sidecar.metrics_port)
        after = rss(pid)
    assert len(load.answers) == requests
    for index, (status, body) in load.answers.items():
        assert (status, body) == (200, answer_for(bodies[index])), index
    # Left out at a full queue or by the overload sampler (sources/sampling.py): both counted.
    dropped = sum(
        samples.get(series("driftgauge_source_dropped_total", reason=reason), 0)
        for reason in ("queue_full", "sampled")
    )
    monitored = samples[series("driftgauge_rows_total", model="wine")]
    assert dropped > 0, "the consumer kept up: no overload was produced"
    assert monitored > 0
    assert monitored + dropped * rows == requests * rows
    errors = ("driftgauge_parse_errors_total", "driftgauge_source_parse_errors_total")
    assert not [k for k, v in samples.items() if k[0] in errors and v]
    growth = max([*load.rss, after]) - before
    print(f"{load.summary()}; dropped {dropped:.0f}/{requests}; RSS +{growth / MiB:.1f} MiB")
    assert growth < 50 * MiB, f"RSS grew by {growth / MiB:.1f} MiB"


@pytest.fixture(scope="module")
def wide_baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A baseline of 1,000 numeric features ``f0…`` and one numeric prediction ``p``."""
    directory = tmp_path_factory.mktemp("wide-baseline")
    names = [f"f{i}" for i in range(WIDE)]
    data = np.random.default_rng(3).normal(size=(1_000, WIDE + 1))
    csv = directory / "train.csv"
    np.savetxt(csv, data, delimiter=",", header=",".join([*names, "p"]), comments="", fmt="%.4f")
    config = config_from_mapping(_wide_fields(directory / "wide.dgb", 0), base=directory)
    save_baseline(build_baseline(config, [csv]), config.baseline)
    return config.baseline


def _wide_fields(baseline: Path, upstream_port: int) -> dict[str, Any]:
    raw = proxy_config(baseline.parent, upstream_port, baseline=str(baseline))
    raw["features"] = [{"name": f"f{i}", "type": "numeric"} for i in range(WIDE)]
    raw["predictions"] = [{"name": "p", "type": "numeric"}]
    raw["metrics"]["recompute_interval"] = "1h"  # only ingest is measured, not a recompute
    return raw


async def test_slow_ingest_drops_observations_instead_of_stalling_the_proxy(
    tmp_path: Path, wide_baseline: Path, wide_upstream_port: int
) -> None:
    """With 1,000 features p99 stays within 2x the unmonitored p99 + 50 ms; excess is dropped."""
    body = json.dumps(
        {"instances": np.random.default_rng(4).normal(size=(8, WIDE)).round(4).tolist()}
    ).encode()
    raw = _wide_fields(wide_baseline, wide_upstream_port)
    raw["source"]["proxy"]["queue_size"] = 256
    with serve(tmp_path, raw) as sidecar:
        # The same bodies on a route the proxy forwards without monitoring: the reference.
        reference = await drive(sidecar.url(EXPLAIN), lambda _: body, clients=16, seconds=3.0)
        monitored = await drive(sidecar.url(PREDICT), lambda _: body, clients=16, seconds=3.0)
        # Drops are counted as they happen; a full scrape of 1,000 features is slow to parse.
        dropped = await asyncio.to_thread(
            sample_line,
            sidecar.metrics_port,
            'driftgauge_source_dropped_total{reason="queue_full"}',
        ) + await asyncio.to_thread(
            sample_line,
            sidecar.metrics_port,
            'driftgauge_source_dropped_total{reason="sampled"}',
        )
    seen = f"unmonitored: {reference.summary()}; monitored: {monitored.summary()}; "
    seen += f"dropped {dropped:.0f}"
    print(seen)
    assert set(monitored.answers.values()) == {(200, WIDE_ANSWER)}
    assert monitored.percentile(0.99) < 2 * reference.percentile(0.99) + 0.05, seen
    assert dropped > 0, seen


LARGE_ROWS = 15_000  # about 0.5 MB of JSON per request
LARGE_BODY = json.dumps({"instances": [[13.0, 2.2, "north"]] * LARGE_ROWS}).encode()
LARGE_ANSWER = json.dumps({"predictions": ["a"] * LARGE_ROWS}).encode()


async def large_model(request: web.Request) -> web.Response:
    body = await request.read()
    answer = LARGE_ANSWER if body == LARGE_BODY else b'{"error": "altered"}'
    return web.Response(body=answer, content_type="application/json")


async def test_overload_with_large_bodies_drops_and_memory_levels_off(
    tmp_path: Path, baseline: Path
) -> None:
    """0.5 MB bodies faster than the consumer, default queue: excess dropped, RSS levels off."""
    async with upstream_server(routes=[web.post(PREDICT, large_model)]) as upstream:
        raw = proxy_config(tmp_path, upstream.port, baseline=str(baseline))
        with serve(tmp_path, raw) as sidecar:
            before = rss(sidecar.process.pid)
            load = await drive(
                sidecar.url(PREDICT),
                lambda _: LARGE_BODY,
                clients=8,
                seconds=6.0,
                pid=sidecar.process.pid,
            )
            dropped = await asyncio.to_thread(
                sample_line,
                sidecar.metrics_port,
                'driftgauge_source_dropped_total{reason="queue_full"}',
            ) + await asyncio.to_thread(
                sample_line,
                sidecar.metrics_port,
                'driftgauge_source_dropped_total{reason="sampled"}',
            )
    # Thirds of the run: the level is reached within the first (sooner with more malloc
    # arenas, later with the two `driftgauge serve` asks for), then it must stay flat.
    third = len(load.rss) // 3
    first, second = max(load.rss[third : 2 * third]) - before, max(load.rss[2 * third :]) - before
    seen = f"{load.summary()}; RSS +{first / MiB:.0f} (middle third) then +{second / MiB:.0f} MiB; "
    seen += f"dropped {dropped:.0f}"
    print(seen)
    assert set(load.answers.values()) == {(200, LARGE_ANSWER)}
    assert dropped > 0, seen
    # The queue's byte budget (queue_bytes, 16 MiB by default) plus a slice being parsed:
    # bounded, and flat once reached (before 7434c83 it grew by 200 MB in 3 s and kept going).
    assert second < 100 * MiB, seen
    assert second - first < 10 * MiB, seen


async def test_state_snapshots_of_a_full_prediction_store_do_not_stall_the_proxy(
    tmp_path: Path, baseline: Path, upstream_port: int
) -> None:
    """With 100,000 predictions awaiting labels, snapshots every second stall nothing 0.4 s."""
    fields = {
        "feedback": {"prediction": "class"},
        "state": {"directory": str(tmp_path / "state"), "interval": "1s"},
    }
    async with running_proxy(tmp_path, baseline, upstream_port, fields=fields) as proxy:
        rows = json.dumps({"instances": [[13.0, 2.2, "north"]] * 100}).encode()
        answer = json.dumps({"predictions": ["a"] * 100}).encode()
        proxy.sidecar.batcher.ingest(
            [Record(time.time(), rows, answer, PREDICT, f"held-{i}") for i in range(1_000)]
        )
        assert proxy.sidecar.monitor.outcomes is not None
        latencies = []
        async with raw_client(proxy.port) as client:
            end = time.monotonic() + 3.5  # three snapshots or more
            index = 0
            while time.monotonic() < end:
                body = batch(index, 8)
                started = time.monotonic()
                response = await client.request("POST", PREDICT, body)
                latencies.append(time.monotonic() - started)
                assert (response.status, response.body) == (200, answer_for(body))
                index += 1
    latencies.sort()
    seen = f"{len(latencies)} requests, p50 {latencies[len(latencies) // 2] * 1000:.1f} ms, "
    seen += f"max {latencies[-1] * 1000:.0f} ms"
    print(seen)
    # Before 7434c83 each snapshot held the outcomes lock while listing the store: 0.6-0.9 s.
    assert latencies[-1] < 0.4, seen


async def test_snapshots_of_a_full_prediction_store_keep_latency_under_load(
    tmp_path: Path, baseline: Path, upstream_port: int
) -> None:
    """Under load, p99 with a full store (100,000 held) stays within 2x p99 with none + 50 ms."""
    raw = proxy_config(
        tmp_path,
        upstream_port,
        baseline=str(baseline),
        feedback={"prediction": "class"},
        state={"directory": str(tmp_path / "state"), "interval": "1s"},
    )
    small = batch(0, 1)
    with serve(tmp_path, raw) as sidecar:
        # The same load, on a route that is not monitored, before and after filling the store:
        # only the size of what each snapshot writes differs.
        empty = await drive(sidecar.url(EXPLAIN), lambda _: small, clients=16, seconds=3.0)
        fill = await drive(sidecar.url(PREDICT), lambda i: batch(i, 100), clients=4, requests=1_200)
        assert {status for status, _ in fill.answers.values()} == {200}
        pending = await held(sidecar.metrics_port, 99_000)
        await asyncio.sleep(1.5)  # a snapshot of the full store ran
        full = await drive(sidecar.url(EXPLAIN), lambda _: small, clients=16, seconds=3.0)
    seen = f"store empty: {empty.summary()}; {pending:.0f} held: {full.summary()}"
    print(seen)
    assert pending >= 99_000, seen
    assert full.percentile(0.99) < 2 * empty.percentile(0.99) + 0.05, seen
