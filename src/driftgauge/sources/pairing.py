"""Pairs request and response events that share an id, in a bounded store with a time to live.

Events may come in either order (KServe's logger sends them from a pool of workers).  The
first half of a pair waits here until the other half arrives, at most ``ttl`` seconds and
among at most ``max_pending`` others; past either bound it is dropped and reported to
``on_unpaired`` (``cloudevents_unpaired_request`` or ``cloudevents_unpaired_response``).

An event is known by its id and its ``origin``: the attributes its sender stamps on both
halves of one call (for KServe's logger the source, InferenceService, namespace, component
and endpoint), so that two services' events never pair even when their callers reuse an id.

A second event of the same kind and id while the first still waits replaces it and is
reported as ``cloudevents_duplicate``.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

from driftgauge.typing import Record

__all__ = ["Half", "Kind", "PairingStore"]

Kind = Literal["request", "response"]
_NO_ORIGIN: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Half:
    """One event waiting for its other half: its kind, body (bytes or parsed JSON), time and
    origin."""

    kind: Kind
    body: Any
    ts: float  # the event's own time (ce-time) or when it arrived
    expires: float  # monotonic deadline
    origin: Mapping[str, str]


class PairingStore:
    """Request/response halves by event id; ``add`` returns the Record once both are in."""

    def __init__(
        self,
        max_pending: int,
        ttl: float,
        on_unpaired: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_pending, self.ttl = max_pending, ttl
        self._on_unpaired, self._clock = on_unpaired, clock
        # Insertion order is expiry order: every entry gets the same ttl from "now".
        self._waiting: OrderedDict[tuple[str, frozenset[tuple[str, str]]], Half] = OrderedDict()

    def __len__(self) -> int:
        return len(self._waiting)

    def add(
        self,
        kind: Kind,
        event_id: str,
        body: Any,
        ts: float,
        path: str = "",
        origin: Mapping[str, str] = _NO_ORIGIN,
    ) -> Record | None:
        """Store one half; the paired Record when its other half was waiting, else None.

        The Record carries the request's ``origin`` as its headers.
        """
        now = self._clock()
        self.expire(now)
        key = (event_id, frozenset(origin.items()))
        other = self._waiting.get(key)
        if other is not None and other.kind != kind:
            del self._waiting[key]
            if kind == "response":
                return Record(other.ts, other.body, body, path, event_id, other.origin)
            return Record(ts, body, other.body, path, event_id, origin)
        if other is not None:
            self._on_unpaired("cloudevents_duplicate")
            del self._waiting[key]
        self._waiting[key] = Half(kind, body, ts, now + self.ttl, origin)
        while len(self._waiting) > self.max_pending:
            _, oldest = self._waiting.popitem(last=False)
            self._on_unpaired(f"cloudevents_unpaired_{oldest.kind}")
        return None

    def expire(self, now: float | None = None) -> int:
        """Drop (and report) every half whose time ran out; returns how many."""
        now = self._clock() if now is None else now
        dropped = 0
        while self._waiting:
            key, oldest = next(iter(self._waiting.items()))
            if oldest.expires > now:
                break
            del self._waiting[key]
            self._on_unpaired(f"cloudevents_unpaired_{oldest.kind}")
            dropped += 1
        return dropped
