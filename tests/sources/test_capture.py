"""The proxy's record queue: its bounds, the consumer's wake-up, and the backlog it reports."""

from __future__ import annotations

import asyncio
from collections import Counter

from driftgauge.sources.proxy import RecordQueue
from driftgauge.sources.sampling import QUEUE_LOW
from driftgauge.typing import Record


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def record(size: int = 2) -> Record:
    return Record(0.0, b"x" * (size - 1), b"y")


def test_records_past_either_bound_are_dropped_and_counted() -> None:
    dropped: Counter[str] = Counter()
    queue = RecordQueue(3, lambda reason: dropped.update([reason]), max_bytes=10)
    for size in (4, 4, 4, 2, 2):  # the third passes the bytes; the fifth the records
        queue.put(record(size))
    assert (len(queue), queue.bytes, queue.overflowed) == (3, 10, 2)
    assert dropped == {"queue_full": 2}
    assert [len(r.request) + 1 for r in queue.take(10)] == [4, 4, 2]
    assert queue.bytes == 0


async def test_the_put_that_completes_a_batch_wakes_the_consumer_at_once() -> None:
    """No polling: the waiter finishes on the loop's next turns after the second put."""
    queue = RecordQueue(4, lambda reason: None)
    waiter = asyncio.ensure_future(queue.wait(2, 1_000, longest=60.0))
    await asyncio.sleep(0)
    queue.put(record())
    for _ in range(3):
        await asyncio.sleep(0)
    assert not waiter.done()
    queue.put(record())
    for _ in range(3):
        await asyncio.sleep(0)
    assert waiter.done()
    await waiter


async def test_the_bytes_bound_of_a_batch_also_wakes_the_consumer() -> None:
    queue = RecordQueue(100, lambda reason: None)
    waiter = asyncio.ensure_future(queue.wait(50, 10, longest=60.0))
    await asyncio.sleep(0)
    queue.put(record(12))
    for _ in range(3):
        await asyncio.sleep(0)
    assert waiter.done()
    await waiter


async def test_a_wait_ends_after_longest_without_a_batch() -> None:
    queue = RecordQueue(100, lambda reason: None)
    queue.put(record())
    await asyncio.wait_for(queue.wait(50, 1_000, longest=0.01), 5.0)
    assert len(queue) == 1
    # ... and a batch already queued does not wait at all
    await asyncio.wait_for(queue.wait(1, 1_000, longest=60.0), 5.0)


def test_backlog_is_the_oldest_records_wait_however_full_the_queue() -> None:
    """A queue of 4 holding 3 fresh records is not behind; one record waiting 3 s of a 10 s
    scale reads 0.3, 20 s reads 1."""
    clock = Clock()
    queue = RecordQueue(4, lambda reason: None, clock=clock)
    assert queue.backlog(10.0) == 0.0
    for _ in range(3):
        queue.put(record())
    assert queue.backlog(10.0) == 0.0
    clock.now += 3.0
    assert queue.backlog(10.0) == 0.3
    queue.take(1)
    queue.put(record())  # the oldest is still one from before
    assert queue.backlog(10.0) == 0.3
    clock.now += 17.0
    assert queue.backlog(10.0) == 1.0
    queue.take(4)
    assert queue.backlog(10.0) == 0.0


def test_an_overflow_reads_as_saturated_once() -> None:
    """A record that found no room reads QUEUE_LOW at the next reading (the consumer took in
    all it could), then no more until the next overflow."""
    clock = Clock()
    queue = RecordQueue(1, lambda reason: None, clock=clock)
    queue.put(record())
    queue.put(record())
    assert queue.backlog(10.0) == QUEUE_LOW
    assert queue.backlog(10.0) == 0.0
    clock.now += 8.0
    queue.put(record())
    assert queue.backlog(10.0) == 0.8  # the wait, when it says more


async def test_a_cancel_landing_as_the_batch_completes_still_cancels() -> None:
    """The put that completes the batch and shutdown's cancel in one loop turn: the wait ends
    cancelled (asyncio.wait_for returned instead on Python 3.11, and shutdown then waited)."""
    queue = RecordQueue(4, lambda reason: None)
    waiter = asyncio.ensure_future(queue.wait(1, 1_000, longest=60.0))
    await asyncio.sleep(0)
    queue.put(record())
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert waiter.cancelled()
