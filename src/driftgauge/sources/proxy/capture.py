"""What monitoring takes from the proxy: copies of small prediction bodies, queued.

The request path only appends a :class:`~driftgauge.typing.Record` to a
bounded :class:`RecordQueue`; a background consumer takes them in batches.
Nothing here can fail a request: a full queue drops (and counts) instead.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Callable

from driftgauge.sources.sampling import QUEUE_LOW
from driftgauge.typing import Record

__all__ = ["RecordQueue"]


class RecordQueue:
    """A FIFO of records between the request path and the monitoring consumer,
    bounded both in records and in the bytes of the bodies it holds.

    Each record keeps the time it was queued (``clock``, seconds), so the
    consumer's sampler can read how long the oldest one has waited
    (:meth:`backlog`).
    """

    def __init__(
        self,
        capacity: int,
        on_drop: Callable[[str], None],
        max_bytes: int = 16 * 1024 * 1024,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.bytes = 0
        self.overflowed = 0  # records dropped for want of room, in total
        self._items: collections.deque[tuple[Record, int, float]] = collections.deque()
        self._on_drop = on_drop
        self._clock = clock
        self._ready = asyncio.Event()  # set once the waiting consumer's batch is queued
        self._want = (capacity + 1, max_bytes + 1)  # ... that batch: (records, bytes)
        self._overflowed_seen = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, record: Record) -> None:
        size = len(record.request) + len(record.response)
        if len(self._items) >= self.capacity or self.bytes + size > self.max_bytes:
            self.overflowed += 1
            self._on_drop("queue_full")
            return
        self._items.append((record, size, self._clock()))
        self.bytes += size
        if len(self._items) >= self._want[0] or self.bytes >= self._want[1]:
            self._ready.set()

    def take(self, limit: int) -> list[Record]:
        items = self._items
        taken = [items.popleft() for _ in range(min(limit, len(items)))]
        self.bytes -= sum(size for _, size, _ in taken)
        return [record for record, _, _ in taken]

    async def wait(self, records: int, size: int, longest: float) -> None:
        """Wait until ``records`` records or ``size`` bytes are queued, or ``longest`` seconds
        pass (woken by the put that completes the batch, not by polling)."""
        if len(self._items) >= records or self.bytes >= size:
            return
        self._want = (records, size)
        self._ready.clear()
        try:
            # asyncio.timeout, not wait_for, which may return instead of raising a cancel that
            # lands as the batch completes (Python 3.11): shutdown would wait for its timeout.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(longest):
                    await self._ready.wait()
        finally:
            self._want = (self.capacity + 1, self.max_bytes + 1)

    def backlog(self, behind: float) -> float:
        """How far behind the consumer is, 0 to 1, for the sampler (sources/sampling.py): how
        long the oldest record has waited, as a share of ``behind`` seconds; and at least
        ``QUEUE_LOW`` (the consumer took in all it could) when a record found no room since
        the last reading.

        Not how full the queue is: the consumer gathers records on purpose before each batch,
        and in a queue of a few records those alone would read as a consumer behind.
        """
        waited = self._clock() - self._items[0][2] if self._items else 0.0
        reading = min(1.0, waited / behind)
        if self.overflowed > self._overflowed_seen:
            self._overflowed_seen = self.overflowed
            reading = max(reading, QUEUE_LOW)
        return reading
