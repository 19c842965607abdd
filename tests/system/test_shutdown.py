"""Graceful shutdown and crash restarts of ``driftgauge serve`` in proxy mode, as real processes.

SIGTERM while a slow request is in flight: the request still gets the
upstream's answer, the proxy refuses new connections, readiness turns false,
the process exits 0, and the snapshot written at exit holds every request
answered before the signal (the queue is flushed into the sketches first).
kill -9: the sidecar comes back, serves, and has lost at most one snapshot
interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from tests.helpers import base_config, free_port, scrape, series
from tests.proxy_upstream import (
    Upstream,
    raw_client,
    upstream_server,
)

pytestmark = pytest.mark.serial  # timing under load: run alone (scripts/test.sh)

PREDICT = "/v1/models/wine:predict"
WINDOW = series(
    "driftgauge_window_observations", feature="alcohol", model="wine", role="input", window="5m"
)
SLOW_SECONDS = 2.0


def answer_for(body: bytes) -> bytes:
    rows = len(json.loads(body)["instances"])
    return json.dumps({"predictions": ["a"] * rows}).encode()


async def model(request: web.Request) -> web.Response:
    """A KServe v1 model; ``X-Delay: <seconds>`` answers that late."""
    body = await request.read()
    await asyncio.sleep(float(request.headers.get("X-Delay", "0")))
    return web.Response(body=answer_for(body), content_type="application/json")


def instances(rows: int, seed: int = 0) -> bytes:
    return json.dumps(
        {"instances": [[12.0 + (seed + r) % 30 * 0.1, 2.3, "south"] for r in range(rows)]}
    ).encode()


def http_status(url: str) -> int | None:
    """The status of a GET, or None when the connection is refused or fails."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def refused(port: int) -> bool:
    """True when nothing accepts connections on 127.0.0.1:``port`` any more."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except (ConnectionRefusedError, ConnectionResetError):
        # Reset: the connection sat in the closing listener's backlog and was dropped.
        return True
    except TimeoutError:  # neither accepted nor refused within the second: ask again
        return False


@dataclass
class Sidecar:
    """A ``driftgauge serve`` process and its ports."""

    process: subprocess.Popen[bytes]
    proxy_port: int
    metrics_port: int
    log: Path

    @property
    def readyz(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/readyz"

    def window(self) -> float | None:
        return scrape(self.metrics_port).get(WINDOW)


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    async with upstream_server(routes=[web.post(PREDICT, model)]) as server:
        yield server


@pytest.fixture
def config(tmp_path: Path, baseline: Path, upstream: Upstream, proxy_engine: str) -> Path:
    """A proxy-mode config with a state directory, on each proxy engine; the snapshot interval
    is set per test."""
    raw: dict[str, Any] = base_config(
        tmp_path,
        baseline=str(baseline),
        source={
            "proxy": {
                "listen": f"127.0.0.1:{free_port()}",
                "upstream": upstream.url,
                "shutdown_grace": "10s",
                "engine": proxy_engine,
            }
        },
        state={"directory": str(tmp_path / "state"), "interval": "1h"},
    )
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def set_interval(config: Path, interval: str) -> None:
    raw = yaml.safe_load(config.read_text())
    raw["state"]["interval"] = interval
    config.write_text(yaml.safe_dump(raw))


@contextlib.contextmanager
def serving(config: Path, name: str = "serve") -> Iterator[Sidecar]:
    """``driftgauge serve -c config``, ready; killed afterwards if still running."""
    raw = yaml.safe_load(config.read_text())
    proxy_port = int(raw["source"]["proxy"]["listen"].rsplit(":", 1)[1])
    metrics_port = int(raw["metrics"]["listen"].rsplit(":", 1)[1])
    log = config.parent / f"{name}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "driftgauge.cli", "serve", "-c", str(config)],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        sidecar = Sidecar(process, proxy_port, metrics_port, log)
        try:
            deadline = time.monotonic() + 60
            while http_status(sidecar.readyz) != 200:
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "driftgauge serve did not become ready"
                time.sleep(0.05)
            yield sidecar
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)


async def until(condition: Any, within: float = 20.0, what: str = "a condition") -> Any:
    """Poll a blocking ``condition`` (in a thread) until it returns something truthy."""
    deadline = time.monotonic() + within
    while True:
        value = await asyncio.to_thread(condition)
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def send_predictions(port: int, count: int, rows: int) -> None:
    """``count`` predictions of ``rows`` instances on one keep-alive connection, each answered."""
    async with raw_client(port) as client:
        for index in range(count):
            body = instances(rows, index)
            response = await client.request("POST", PREDICT, body)
            assert (response.status, response.body) == (200, answer_for(body))


def post(body: bytes, *headers: str) -> bytes:
    head = [f"POST {PREDICT} HTTP/1.1", "Host: proxy", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def start_slow_request(
    sidecar: Sidecar, upstream: Upstream, rows: int, pipelined: int = 0
) -> asyncio.Task[list[Any]]:
    """A prediction the upstream answers after SLOW_SECONDS (then ``pipelined`` quick ones
    sent behind it on the same connection); returns once the upstream has the slow one."""
    arrived = len(upstream.seen)

    async def slow() -> list[Any]:
        async with raw_client(sidecar.proxy_port) as client:
            await client.send(
                post(instances(rows, 99), f"X-Delay: {SLOW_SECONDS}")
                + b"".join(post(instances(2, 50 + i)) for i in range(pipelined))
            )
            return [await client.response(within=SLOW_SECONDS + 20) for _ in range(1 + pipelined)]

    task = asyncio.create_task(slow())
    await until(lambda: len(upstream.seen) > arrived, what="the slow request to reach the upstream")
    return task


async def test_sigterm_finishes_in_flight_request_refuses_new_ones_and_saves_everything(
    config: Path, upstream: Upstream
) -> None:
    """SIGTERM mid-request: answered, new connections refused, exit 0, every answered row saved,
    and one log line saying so."""
    fast, rows, slow_rows, pipelined = 40, 5, 7, 3
    with serving(config) as sidecar:
        await send_predictions(sidecar.proxy_port, fast, rows)
        in_flight = await start_slow_request(sidecar, upstream, slow_rows, pipelined)
        sidecar.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        await until(lambda: refused(sidecar.proxy_port), within=5, what="the proxy to refuse")
        refused_after = time.monotonic() - signalled
        assert not in_flight.done(), "the slow answer came before the listener closed"
        responses = await asyncio.wait_for(in_flight, SLOW_SECONDS + 20)
        answered_after = time.monotonic() - signalled
        code = await asyncio.to_thread(sidecar.process.wait, 30)
        log = sidecar.log.read_text()
    sent = [instances(slow_rows, 99), *(instances(2, 50 + i) for i in range(pipelined))]
    assert [(r.status, r.body) for r in responses] == [(200, answer_for(b)) for b in sent]
    assert refused_after < answered_after
    assert code == 0, log
    assert "Traceback" not in log
    # Nothing after the last log line: the sketches are freed before DataSketches' module,
    # which otherwise listed each as "nanobind: leaked ..." (about 600 lines) on stderr.
    assert "nanobind" not in log, log[-500:]
    assert (config.parent / "state" / "wine.state").exists()
    # One line says what the shutdown did: the slow request and the three behind it finished.
    (stopped,) = [line for line in log.splitlines() if "stopped: " in line]
    assert f"stopped: {1 + pipelined} in-flight requests finished, 0 cut off" in stopped
    assert f"state snapshot written to {config.parent / 'state' / 'wine.state'}" in stopped
    # The periodic snapshot never ran (interval 1h): what is restored was saved at exit.
    with serving(config, "restart") as again:
        expected = fast * rows + slow_rows + 2 * pipelined
        assert await until(again.window, what="the restored window") == expected
        await send_predictions(again.proxy_port, 1, 3)
        await until(lambda: again.window() == expected + 3, what="new traffic after the restart")


async def test_readiness_answers_503_while_draining(config: Path, upstream: Upstream) -> None:
    """Once SIGTERM is handled, while a request is in flight, /readyz answers 503 (not refused)
    and never 200 again.  (A poll sent before the signal is handled may still see 200.)"""
    with serving(config) as sidecar:
        in_flight = await start_slow_request(sidecar, upstream, 3)
        sidecar.process.send_signal(signal.SIGTERM)
        seen: list[int | None] = []
        while not in_flight.done():
            seen.append(await asyncio.to_thread(http_status, sidecar.readyz))
            await asyncio.sleep(0.05)
        responses = await in_flight
        assert await asyncio.to_thread(sidecar.process.wait, 30) == 0
    assert responses[0].status == 200
    assert 503 in seen, f"/readyz during the drain: {sorted(set(map(str, seen)))}"
    assert 200 not in seen[seen.index(503) :], seen


async def test_kill_9_restart_serves_and_loses_at_most_one_snapshot_interval(
    config: Path,
) -> None:
    """After kill -9 the sidecar restarts, serves, and restores all but the last interval."""
    set_interval(config, "1s")
    state = config.parent / "state" / "wine.state"
    with serving(config) as sidecar:
        await send_predictions(sidecar.proxy_port, 30, 10)
        await until(lambda: sidecar.window() == 300, what="the first 300 rows")
        counted = time.time()
        await until(
            lambda: state.exists() and state.stat().st_mtime > counted,
            what="a snapshot taken after the 300 rows were in",
        )
        await send_predictions(sidecar.proxy_port, 10, 10)  # may or may not make the next one
        os.kill(sidecar.process.pid, signal.SIGKILL)
        assert await asyncio.to_thread(sidecar.process.wait, 10) == -signal.SIGKILL
    with serving(config, "restart") as again:
        restored = await until(again.window, what="the restored window")
        assert 300 <= restored <= 400
        await send_predictions(again.proxy_port, 1, 5)
        await until(lambda: again.window() == restored + 5, what="new traffic after the restart")
