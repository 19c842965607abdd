"""The monitoring consumer: the proxy's queue drained in slices, observed in batches."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace
from typing import Any

import pytest

from driftgauge.runtime import consumer
from driftgauge.sources.proxy import RecordQueue
from driftgauge.typing import Record
from tests.helpers import eventually


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
    monkeypatch.setattr(consumer, "BATCH_SECONDS", 0.02)


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


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The consumer's pauses (its asyncio.sleep delays), in order."""
    delays: list[float] = []

    class Asyncio:
        """The asyncio module, with the consumer's pauses recorded."""

        def __getattr__(self, name: str) -> Any:
            return getattr(asyncio, name)

        async def sleep(self, delay: float) -> None:
            delays.append(delay)
            await asyncio.sleep(delay)

    monkeypatch.setattr(consumer, "asyncio", Asyncio())
    return delays


@contextlib.asynccontextmanager
async def consuming(queue: RecordQueue, router: Recorder) -> AsyncIterator[asyncio.Task[None]]:
    """The consumer draining ``queue`` into ``router`` while the block runs, cancelled after."""
    task = asyncio.ensure_future(consumer.consume(queue, router, METRICS, SAMPLER))  # type: ignore[arg-type]
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_the_queue_reaches_the_sketches_in_batches_of_at_most_256() -> None:
    """600 queued records are read in slices and observed in batches of ≤ 256, each once."""
    queue, router = queue_of(600), Recorder()
    async with consuming(queue, router):
        await eventually(lambda: sum(router.batches) == 600)
    assert sum(router.batches) == sum(router.reads) == 600
    assert router.batches[0] == 1  # the first one also creates the windows' slices
    assert max(router.batches) == consumer.BATCH_RECORDS  # reading and observing cost ~nothing here


async def test_records_read_before_a_cancel_are_still_observed() -> None:
    """Shutdown cancels the consumer between slices: what it had read reaches the sketches."""
    queue, router = queue_of(50), Recorder()
    task = asyncio.ensure_future(consumer.consume(queue, router, METRICS, SAMPLER))  # type: ignore[arg-type]
    router.on_read = task.cancel  # cancelled at its first pause, after one slice
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()
    assert router.reads == [1]  # the first slice is one record
    assert router.batches == [1]  # observed on the way out
    assert len(queue) == 49


async def test_a_slice_cut_short_by_the_backlog_does_not_inflate_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Slices are sized from the records a slice held: a few records, cheap in all, must not
    read as a cheap full slice, or the next backlog is read in one long hold of the loop."""
    cost = consumer.SLICE_SECONDS / 10  # CPU seconds per record: 10 records fill a slice

    def read_timed(batcher: Any, records: list[Record], pending: dict[Any, Any]) -> float:
        batcher.read(records, pending)
        return len(records) * cost

    monkeypatch.setattr(consumer, "_read_timed", read_timed)
    queue, router = queue_of(3), Recorder()
    async with consuming(queue, router):
        await eventually(lambda: sum(router.reads) == 3)  # the three trickle in, slice by slice
        first = len(router.reads)
        for index in range(300):
            queue.put(Record(float(index), b"{}", b"{}"))
        await eventually(lambda: sum(router.batches) == 303)
    assert max(router.reads[first:]) <= 10  # each slice of the backlog costs one SLICE_SECONDS


async def test_a_cancel_during_a_threaded_ingest_returns_once_the_thread_is_done(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A record too dear for the loop is ingested in a worker thread, which a cancel cannot
    stop: the consumer returns only once it is done, or shutdown's flush of the queue (on the
    loop's thread) would ingest beside it, and the last state save miss its records."""
    monkeypatch.setattr(consumer, "_read_timed", lambda batcher, records, pending: 1.0)
    queue, router = queue_of(3), Recorder()
    ingested: list[int] = []
    started = asyncio.Event()
    loop = asyncio.get_running_loop()

    def ingest(records: list[Record]) -> None:
        loop.call_soon_threadsafe(started.set)
        time.sleep(0.3)
        ingested.append(len(records))

    router.ingest = ingest  # type: ignore[attr-defined]
    async with consuming(queue, router):
        await asyncio.wait_for(started.wait(), 5)
    assert ingested == [1]


async def test_a_batch_whose_observe_has_a_fixed_cost_beyond_the_budget_still_grows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A wide model's observe costs several ms however few records it holds (its windows): a
    batch sized to OBSERVE_SECONDS then stayed one record, paying that cost for every record
    (1,000 features: 6-8 ms of CPU a record, a fifth of the rate before); it grows until its
    observe costs twice a one-record batch's, so the fixed cost is shared again."""
    # Dearer than OBSERVE_SECONDS at one record, and still no record for the worker thread.
    fixed, each = consumer.THREAD_SECONDS / 2, consumer.OBSERVE_SECONDS / 100
    assert fixed > 2 * consumer.OBSERVE_SECONDS

    def observe_timed(batcher: Any, pending: dict[Any, Any]) -> float:
        count = sum(len(read) for read in pending.values())
        batcher.observe(pending)
        pending.clear()
        return fixed + each * count

    monkeypatch.setattr(consumer, "_observe_timed", observe_timed)
    queue, router = queue_of(400), Recorder()
    async with consuming(queue, router):
        await eventually(lambda: sum(router.batches) == 400)
    assert max(router.batches) >= 50
    assert all(fixed + each * size <= 2 * (fixed + each) for size in router.batches)


async def test_a_slice_of_cheap_records_that_took_long_sends_no_record_to_a_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A record goes to the worker thread when it costs THREAD_SECONDS of CPU: a slice of 30
    records or more that took 0.6 slices a record in all (a long garbage collection, say;
    over 20 ms) is 1.2 ms a record."""
    hiccup = [True]

    def read_timed(batcher: Any, records: list[Record], pending: dict[Any, Any]) -> float:
        batcher.read(records, pending)
        if len(records) >= 30 and hiccup:
            hiccup.clear()
            return len(records) * consumer.SLICE_SECONDS * 0.6
        return len(records) * consumer.SLICE_SECONDS / 100

    monkeypatch.setattr(consumer, "_read_timed", read_timed)
    queue, router = queue_of(2_000), Recorder()
    threaded: list[int] = []
    router.ingest = lambda records: threaded.append(len(records))  # type: ignore[attr-defined]
    async with consuming(queue, router):
        await eventually(lambda: sum(router.batches) + sum(threaded) == 2_000)
    assert not hiccup, "no slice of 30 records"
    assert threaded == []


async def test_a_slice_held_up_by_the_node_pauses_for_its_cpu_not_its_wall_time(
    pauses: list[float],
) -> None:
    """A slice whose read spans 30 ms of wall time for almost no CPU (the process preempted on
    a busy or CPU-throttled node) is followed by the shortest pause, not by 30 ms: pausing
    for the wall time left monitoring far less than half the loop, and a small queue filled."""
    queue, router = queue_of(300), Recorder()
    router.on_read = lambda: time.sleep(0.03)  # wall time, no CPU
    async with consuming(queue, router):
        await eventually(lambda: sum(router.batches) == 300)
    assert len(router.reads) >= 2
    assert pauses and max(pauses) < 0.01, pauses


@pytest.mark.parametrize("seam", ["_read_timed", "_observe_timed"])
async def test_a_slice_or_batch_charged_far_beyond_its_size_pauses_within_twice_that(
    monkeypatch: pytest.MonkeyPatch, pauses: list[float], seam: str
) -> None:
    """Under CPU contention a slice or observe of a record, normally under 1 ms, was charged
    up to 100 ms of thread CPU, and the consumer paused as long: a queue of 10 at 400
    requests/s overflowed meanwhile.  The pause is at most twice what the slice or batch was
    sized to cost; the next one, resized from the charge, pays its own."""
    timed = getattr(consumer, seam)
    charges = [0.1]  # the first call's

    def charged(batcher: Any, *arguments: Any) -> float:
        work: float = timed(batcher, *arguments)
        return charges.pop() if charges else work

    monkeypatch.setattr(consumer, seam, charged)
    queue, router = queue_of(1), Recorder()
    async with consuming(queue, router):
        # A dear slice is paused for before its batch's observe, a cheap one with it.
        paused = 2 if seam == "_read_timed" else 1
        await eventually(lambda: router.batches == [1] and len(pauses) >= paused)
    sized = consumer.SLICE_SECONDS if seam == "_read_timed" else consumer.OBSERVE_SECONDS
    assert not charges
    assert max(pauses) <= 2 * sized, pauses


async def test_a_small_queue_full_after_a_one_record_batch_is_observed_in_one_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A one-record observe costs its fixed cost (0.6 ms here, whatever the batch holds), so
    the next batch was sized to 6 records and a full queue of 8 took two batches, each with
    that cost and a pause: the quarter batch left over joins the batch instead."""

    def observe_timed(batcher: Any, pending: dict[Any, Any]) -> float:
        batcher.observe(pending)
        pending.clear()
        return 0.0006

    monkeypatch.setattr(consumer, "_observe_timed", observe_timed)
    queue, router = RecordQueue(8, lambda reason: None), Recorder()
    queue.put(Record(0.0, b"{}", b"{}"))
    async with consuming(queue, router):
        await eventually(lambda: router.batches == [1])
        for index in range(8):
            queue.put(Record(float(index), b"{}", b"{}"))
        await eventually(lambda: sum(router.batches) == 9)
    assert router.batches == [1, 8]


async def test_a_batch_read_for_less_than_the_shortest_pause_is_paused_for_once(
    monkeypatch: pytest.MonkeyPatch, pauses: list[float]
) -> None:
    """A slice read for 0.2 ms of CPU and observed for 0.4 ms is paused for once, after the
    observe, for both (the shortest pause): it was paused for before the observe as well, and
    each pause spans a few ms of wall time or more on a busy machine (until the loop comes
    back to it), while what comes in meanwhile waits in the queue.  Under two CPU hogs, a queue
    of 10 at 400 requests/s took 8 records in a turn of two such pauses."""

    def read_timed(batcher: Any, records: list[Record], pending: dict[Any, Any]) -> float:
        batcher.read(records, pending)
        return 0.0002

    def observe_timed(batcher: Any, pending: dict[Any, Any]) -> float:
        batcher.observe(pending)
        pending.clear()
        return 0.0004

    monkeypatch.setattr(consumer, "_read_timed", read_timed)
    monkeypatch.setattr(consumer, "_observe_timed", observe_timed)
    queue, router = RecordQueue(10, lambda reason: None), Recorder()
    async with consuming(queue, router):
        for observed in (3, 6, 9):
            for index in range(3):
                queue.put(Record(float(index), b"{}", b"{}"))
            await eventually(lambda n=observed: sum(router.batches) == n)
    assert router.batches == [1, 2, 3, 3]  # the first batch is one record (see consume)
    assert pauses == [consumer.MIN_PAUSE_SECONDS] * 4


@pytest.mark.parametrize("seam", ["_read_timed", "_observe_timed"])
async def test_one_record_charged_far_beyond_its_cost_sends_no_record_to_a_thread(
    monkeypatch: pytest.MonkeyPatch, seam: str
) -> None:
    """Under CPU contention a one-record slice or observe, normally under 1 ms, was at times
    charged 30-100 ms of thread CPU (no garbage collection ran), and the next record went to
    the worker thread, which under the same contention handed it back 30-140 ms later while a
    queue of 4 at 100 requests/s overflowed: a record goes there when two in a row cost
    THREAD_SECONDS, not one."""
    timed = getattr(consumer, seam)
    charges = [0.0, 0.04, 0.0, 0.0]  # the second call's charge only: 0 keeps what it cost

    def charged(batcher: Any, *arguments: Any) -> float:
        work: float = timed(batcher, *arguments)
        return charges.pop(0) or work if charges else work

    monkeypatch.setattr(consumer, seam, charged)
    queue, router = RecordQueue(4, lambda reason: None), Recorder()
    threaded: list[int] = []
    router.ingest = lambda records: threaded.append(len(records))  # type: ignore[attr-defined]
    async with consuming(queue, router):
        for observed in range(1, 5):
            queue.put(Record(float(observed), b"{}", b"{}"))
            await eventually(lambda n=observed: sum(router.batches) + sum(threaded) == n)
    assert not charges
    assert threaded == []
    assert router.batches == [1, 1, 1, 1]
