"""The monitoring consumer in app.py: the proxy's queue drained in slices, observed in batches."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from driftgauge import app
from driftgauge.sources.proxy import RecordQueue
from driftgauge.typing import Record


class Recorder:
    """Stands in for the Router: counts what is read, and the batches observed."""

    def __init__(self) -> None:
        self.reads: list[int] = []
        self.batches: list[int] = []
        self.on_read: Callable[[], object] = lambda: None

    def read(self, records: list[Record], pending: dict[Any, list[Record]]) -> None:
        self.reads.append(len(records))
        self.on_read()
        pending.setdefault(self, []).extend(records)

    def observe(self, pending: dict[Any, list[Record]]) -> int:
        size = sum(len(read) for read in pending.values())
        if size:
            self.batches.append(size)
        return size


@pytest.fixture(autouse=True)
def quick_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app, "BATCH_SECONDS", 0.02)


def queue_of(count: int) -> RecordQueue:
    queue = RecordQueue(10_000, lambda reason: None)
    for index in range(count):
        queue.put(Record(float(index), b"{}", b"{}"))
    return queue


METRICS: Any = SimpleNamespace(
    queue_depth=SimpleNamespace(set=lambda value: None),
    sampling_rate=SimpleNamespace(set=lambda value: None),
)
SAMPLER: Any = SimpleNamespace(update=lambda: 1.0, charge=lambda cpu, records: None)


async def test_the_queue_reaches_the_sketches_in_batches_of_at_most_256() -> None:
    """600 queued records are read in slices and observed in batches of ≤ 256, each once."""
    queue, router = queue_of(600), Recorder()
    consumer = asyncio.ensure_future(app._consume(queue, router, METRICS, SAMPLER))  # type: ignore[arg-type]
    try:
        for _ in range(500):
            if sum(router.batches) == 600:
                break
            await asyncio.sleep(0.01)
    finally:
        consumer.cancel()
        await asyncio.gather(consumer, return_exceptions=True)
    assert sum(router.batches) == sum(router.reads) == 600
    assert router.batches[0] == 1  # the first one also creates the windows' slices
    assert max(router.batches) == app.BATCH_RECORDS  # reading and observing cost ~nothing here


async def test_records_read_before_a_cancel_are_still_observed() -> None:
    """Shutdown cancels the consumer between slices: what it had read reaches the sketches."""
    queue, router = queue_of(50), Recorder()
    consumer = asyncio.ensure_future(app._consume(queue, router, METRICS, SAMPLER))  # type: ignore[arg-type]
    router.on_read = consumer.cancel  # cancelled at its first pause, after one slice
    await asyncio.gather(consumer, return_exceptions=True)
    assert consumer.cancelled()
    assert router.reads == [1]  # the first slice is one record
    assert router.batches == [1]  # observed on the way out
    assert len(queue) == 49


async def test_stopping_a_background_task_that_died_logs_it_once_and_raises_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A task that died is logged and marked failed when it dies; shutdown's cancel of it
    neither raises its exception again (a traceback at exit) nor waits."""
    health = app.Health()

    async def dies() -> None:
        raise RuntimeError("boom")

    task = app._supervise("recompute", health, dies())
    with caplog.at_level("ERROR", logger="driftgauge.app"):
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0)  # the done callback
        await app._cancel(task, "recompute")
    assert health.failed == ["recompute"]
    assert caplog.text.count("background task recompute died: RuntimeError('boom')") == 1


async def test_the_upstream_watch_stops_at_the_first_cancel_whenever_it_comes() -> None:
    """A cancel that lands as the watch's connect to a refused port fails is not lost: with
    asyncio.wait_for (Python 3.11) the connect's error was raised in its place, the loop went
    on, and a stop that cancels once (asyncio.run's, at exit) waited for ever."""
    from driftgauge.config import ProxyConfig

    with socket.socket() as probe:  # a port nothing listens on: every connect is refused
        probe.bind(("127.0.0.1", 0))
        refused = probe.getsockname()[1]
    config = ProxyConfig(listen=("127.0.0.1", 0), upstream=f"http://127.0.0.1:{refused}")
    for turns in range(40):  # cancel after each number of loop turns, the race's among them
        task = asyncio.ensure_future(app._watch_upstream(config, app.Health()))
        for _ in range(turns):
            await asyncio.sleep(0)
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=1.0)
        assert done, f"still running 1 s after a cancel at turn {turns}"
        task.cancel()  # (a task that went on: stop it for good before failing)
        assert task.cancelled()
