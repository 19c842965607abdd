"""The cloudevents source's sampler samples only when monitoring really falls behind.

The consumer gathers pairs for up to ``BATCH_DELAY`` before each batch; with a small
``max_pending`` those few gathered pairs must not read as a backlog.  Real sources over
loopback, with the sampler as the sidecar wires it (``fill`` is the source's ``backlog``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import ClientSession, ClientTimeout

from driftgauge.config import CloudEventsConfig
from driftgauge.sources.cloudevents import CloudEventsSource
from driftgauge.sources.sampling import Sampler
from driftgauge.typing import Record
from tests.helpers import burn
from tests.kserve_logger import binary, kserve_event, send

pytestmark = pytest.mark.serial  # timing under load: run alone (scripts/test.sh)


@dataclass
class Sampled:
    """A running source with its sampler, what it handed over and what it dropped."""

    source: CloudEventsSource
    sampler: Sampler
    url: str
    records: list[Record] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)
    lowest_rate: float = 1.0


@contextlib.asynccontextmanager
async def sampled_source(cost: float, **settings: Any) -> AsyncIterator[Sampled]:
    """A CloudEventsSource on a free loopback port with a sampler updating every 0.1 s;
    each record costs ``cost`` seconds of CPU in ``on_records``."""
    config = CloudEventsConfig(listen=("127.0.0.1", 0), **settings)
    records: list[Record] = []
    dropped: Counter[str] = Counter()

    def on_records(batch: list[Record]) -> None:
        burn(cost * len(batch))
        records.extend(batch)

    def count(reason: str, n: int = 1) -> None:
        dropped[reason] += n

    sampler = Sampler(config.cpu_budget, lambda: source.backlog(), count, interval=0.1)
    source = CloudEventsSource(config, on_records, count, on_dropped=count, sampler=sampler)
    port = await source.start()
    task = asyncio.create_task(source.run())
    state = Sampled(source, sampler, f"http://127.0.0.1:{port}/", records, dropped)

    async def watch() -> None:
        while True:
            state.lowest_rate = min(state.lowest_rate, sampler.rate)
            await asyncio.sleep(0.01)

    watcher = asyncio.create_task(watch())
    try:
        yield state
    finally:
        await source.close()
        for running in (task, watcher):
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running


async def send_pair(session: ClientSession, url: str, i: int) -> None:
    for kind, body in (("request", {"instances": [[i]]}), ("response", {"predictions": [1]})):
        assert await send(session, url, binary(kserve_event(kind, f"p{i}", body))) == 200


@pytest.mark.parametrize(("max_pending", "per_second", "streams"), [(5, 100, 1), (100, 400, 4)])
async def test_a_modest_steady_rate_is_never_sampled_with_a_small_max_pending(
    max_pending: int, per_second: int, streams: int
) -> None:
    """Pairs at a steady 100/s with max_pending 5 (one call at a time) and 400/s with 100
    (four at a time), 0.2 ms of CPU each, a budget of 2 cores: for 2 s, every pair is
    monitored, none sampled or dropped, and the rate never leaves 1."""
    async with (
        sampled_source(0.0002, max_pending=max_pending, cpu_budget=2.0) as ce,
        ClientSession(timeout=ClientTimeout(total=10)) as session,
    ):
        total = 2 * per_second
        started = time.perf_counter()

        async def stream(first: int) -> None:
            for i in range(first, total, streams):
                due = started + i / per_second
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                await send_pair(session, ce.url, i)

        await asyncio.gather(*(stream(first) for first in range(streams)))
        await ce.source.close()
        assert len(ce.records) == total
        assert ce.dropped == {}
        assert ce.lowest_rate == ce.sampler.rate == 1.0


async def test_sampling_engages_when_monitoring_falls_behind_within_the_cpu_budget() -> None:
    """Records costing 5 ms each, 20 calls at a time, max_pending 50 and a budget of 8 cores
    (never exceeded: the consumer takes at most half the loop): pairs wait for the consumer
    past QUEUE_LOW × BEHIND_SECONDS, so the rate falls and pairs are sampled out; every pair
    is monitored, sampled out or dropped as overload, nothing else."""
    async with (
        sampled_source(0.005, max_pending=50, cpu_budget=8.0) as ce,
        ClientSession(timeout=ClientTimeout(total=30)) as session,
    ):
        pairs = 0
        for _ in range(100):
            await asyncio.gather(*(send_pair(session, ce.url, pairs + i) for i in range(20)))
            pairs += 20
            if ce.dropped["sampled"] > 0 and ce.sampler.rate < 1.0:
                break
        assert ce.sampler.rate < 1.0, f"no sampling after {pairs} pairs"
        await ce.source.close()
        handled = len(ce.records) + ce.dropped["sampled"] + ce.dropped["cloudevents_overload"]
        assert handled == pairs
        assert ce.dropped.keys() <= {"sampled", "cloudevents_overload"}
        assert ce.dropped["sampled"] > 0
