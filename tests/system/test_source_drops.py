"""A real ``driftgauge serve`` of two models behind the proxy, its queue of 1 overrun: what the
source drops before a record reaches a model (``queue_full``, ``sampled``) is
``driftgauge_source_dropped_total``, with no model label, and the sampling rate is the sidecar's;
a model's own ``driftgauge_dropped_total`` moves only for what was routed to it (iris's
predictions without an id to hold their labels under, ``feedback_no_id``); the proxy's request
and latency series are the sidecar's too."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import ClientSession

from tests.helpers import scrape, series, wait_for
from tests.system.test_source_errors import GOOD, behind_the_proxy

pytestmark = pytest.mark.integration

SENT = 300
SOURCE_REASONS = ("answered_early", "body_too_large", "queue_full", "sampled")
HISTOGRAMS = (
    "upstream_latency_seconds",
    "overhead_seconds",
    "request_size_bytes",
    "response_size_bytes",
)


async def _send(url: str, n: int, concurrency: int = 32) -> list[int]:
    """``n`` prediction requests, ``concurrency`` at a time; their status codes."""
    statuses: list[int] = []

    async def client(session: ClientSession, count: int) -> None:
        for _ in range(count):
            async with session.post(url, data=GOOD) as response:
                await response.read()
                statuses.append(response.status)

    async with ClientSession() as session:
        share = [n // concurrency + (i < n % concurrency) for i in range(concurrency)]
        await asyncio.gather(*(client(session, count) for count in share))
    return statuses


def test_queue_drops_are_the_sidecar_s_and_a_routed_drop_is_its_model_s(tmp_path: Path) -> None:
    """With two models and queue_size 1, iris's traffic overruns the queue: the drops count in
    the source's series alone (every reason there from 0), neither model's dropped_total moves for
    them, the rows monitored and dropped add up to the rows sent, and iris's own feedback_no_id
    moves under iris alone."""

    feedback = {"iris": {"prediction": "class"}}
    with behind_the_proxy(tmp_path, {"queue_size": 1}, feedback) as (loop, port, proxy):
        before = scrape(port)
        for reason in SOURCE_REASONS:
            assert before[series("driftgauge_source_dropped_total", reason=reason)] == 0
        assert loop.run(_send(f"{proxy}/iris:predict", SENT), timeout=60) == [200] * SENT

        def source_dropped() -> float:
            samples = scrape(port)
            return sum(
                samples[series("driftgauge_source_dropped_total", reason=reason)]
                for reason in SOURCE_REASONS
            )

        def settled() -> bool:
            samples = scrape(port)
            iris = samples[series("driftgauge_rows_total", model="iris")]
            return iris + source_dropped() == SENT

        wait_for(settled, what="every request monitored or dropped")
        samples = scrape(port)
        assert source_dropped() > 0, "the queue of 1 kept up: no overload was produced"
        moved = {
            (dict(labels)["model"], dict(labels)["reason"]): value
            for (name, labels), value in samples.items()
            if name == "driftgauge_dropped_total" and value
        }
        monitored = samples[series("driftgauge_rows_total", model="iris")]
        assert moved == {("iris", "feedback_no_id"): monitored}
        assert samples[series("driftgauge_rows_total", model="wine")] == 0
        rates = {
            labels: value
            for (name, labels), value in samples.items()
            if name == "driftgauge_sampling_rate"
        }
        assert list(rates) == [()], "the sampling rate claims a model"
        assert 0 < rates[()] <= 1


def test_the_proxy_s_requests_and_latencies_claim_no_model(tmp_path: Path) -> None:
    """Behind a two-model proxy, every request (wine's, iris's, one off the prediction routes)
    counts once in the proxy's series, which carry no model label: the proxy never routes."""
    with behind_the_proxy(tmp_path) as (loop, port, proxy):
        for path in ("iris:predict", "iris:predict", "wine:predict", "wine:explain"):
            assert loop.run(_send(f"{proxy}/{path}", 1, concurrency=1)) == [200]
        wait_for(lambda: scrape(port)[series("driftgauge_rows_total", model="wine")] == 1)
        samples = scrape(port)
    proxied = {
        "driftgauge_requests_total",
        "driftgauge_upstream_errors_total",
        "driftgauge_client_errors_total",
        *(
            f"driftgauge_{name}_{part}"
            for name in HISTOGRAMS
            for part in ("bucket", "count", "sum")
        ),
    }
    claimed = sorted(
        {
            name
            for (name, labels), _ in samples.items()
            if name in proxied and "model" in dict(labels)
        }
    )
    assert claimed == []
    assert samples[series("driftgauge_requests_total", code="200")] == 4
    assert samples[series("driftgauge_upstream_latency_seconds_count")] == 4
    assert samples[series("driftgauge_upstream_errors_total", reason="timeout")] == 0
