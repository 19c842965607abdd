"""What monitoring takes from the proxy: copies of small prediction bodies, queued.

The request path only appends a :class:`~driftgauge.typing.Record` to a
bounded :class:`RecordQueue`; a background consumer takes them in batches.
Nothing here can fail a request: a full queue drops (and counts) instead.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable

from driftgauge.typing import Record

__all__ = ["RecordQueue"]


class RecordQueue:
    """A FIFO of records between the request path and the monitoring consumer,
    bounded both in records and in the bytes of the bodies it holds."""

    def __init__(
        self, capacity: int, on_drop: Callable[[str], None], max_bytes: int = 16 * 1024 * 1024
    ) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: collections.deque[tuple[Record, int]] = collections.deque()
        self._on_drop = on_drop
        self._waiter: asyncio.Event = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, record: Record) -> None:
        size = len(record.request) + len(record.response)
        if len(self._items) >= self.capacity or self.bytes + size > self.max_bytes:
            self._on_drop("queue_full")
            return
        self._items.append((record, size))
        self.bytes += size
        if len(self._items) >= 64:
            self._waiter.set()

    def take(self, limit: int) -> list[Record]:
        items = self._items
        taken = [items.popleft() for _ in range(min(limit, len(items)))]
        self.bytes -= sum(size for _, size in taken)
        return [record for record, _ in taken]

    async def wait(self, longest: float) -> None:
        """Wait until enough records are queued or ``longest`` seconds pass."""
        self._waiter.clear()
        if len(self._items) >= 64:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._waiter.wait(), longest)
