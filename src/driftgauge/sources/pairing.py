"""Pairs request and response events that share an id, in a bounded store with a time to live.

Events may come in either order (KServe's logger sends them from a pool of workers).  The
first half of a pair waits here until the other half arrives, at most ``ttl`` seconds and
among at most ``max_pending`` others; past either bound it is dropped and reported to
``on_unpaired`` (``cloudevents_unpaired_request`` or ``cloudevents_unpaired_response``).

An event is known by its id and its ``origin``: the attributes its sender stamps on both
halves of one call (for KServe's logger the source, InferenceService, namespace, component
and endpoint), so that two services' events never pair even when their callers reuse an id.

Duplicates are reported as ``cloudevents_duplicate`` and never monitored twice: a second
event of the same kind and id while the first still waits replaces it, and an event whose
pair was already made is dropped.  A retrying sender replays both halves of a call; the
CloudEvents spec lets a consumer take events with the same source and id for duplicates.
The ids of the pairs made in the last ``ttl`` seconds are remembered for that, at most
``max_pending`` of them (the oldest forgotten first), as hashes: a few dozen bytes each.

A binary-mode id made of percent-escapes alone (``a%2Fb``) is read decoded (``a/b``), as the
HTTP binding says, but a sender that does not encode (the CloudEvents Python SDK's 1.x API)
meant it as sent, and its structured events carry it so.  Such an event is given with its id
``sent``: it pairs by its decoded id, and also with an event of the other kind read as is (a
structured one) whose id is the one sent, the pair then under that id.  Two binary-mode events
pair by their decoded ids only, so a sender that encodes never sees its ids ``a/b`` and
``a%2Fb`` (sent ``a%252Fb``) meet.
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
_Key = tuple[str, frozenset[tuple[str, str]]]  # an event's id and origin


@dataclass(frozen=True, slots=True)
class Half:
    """One event waiting for its other half: its kind, body (bytes or parsed JSON), time and
    origin."""

    kind: Kind
    body: Any
    ts: float  # the event's own time (ce-time) or when it arrived
    expires: float  # monotonic deadline
    origin: Mapping[str, str]
    sent: _Key | None = None  # a decoded id's key as sent, which an event read as is may have


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
        self._waiting: OrderedDict[_Key, Half] = OrderedDict()
        # The halves waiting with a decoded id, by the key of their id as sent.
        self._sent: dict[_Key, _Key] = {}
        # The hashed keys of the pairs made, with when they are forgotten (same order).
        self._paired: OrderedDict[int, float] = OrderedDict()

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
        sent: str | None = None,
    ) -> Record | None:
        """Store one half; the paired Record when its other half was waiting, else None.

        ``sent`` is a decoded id as sent (see the module docstring).  The Record carries the
        request's ``origin`` as its headers.
        """
        now = self._clock()
        self.expire(now)
        origins = frozenset(origin.items())
        key = (event_id, origins)
        spelled = None if sent is None else (sent, origins)
        hashed = hash(key)
        if hashed in self._paired:  # a replay of a pair already made
            self._on_unpaired("cloudevents_duplicate")
            return None
        other = self._waiting.get(key)
        if other is not None and other.kind != kind:
            self._take(key)
            self._remember(hashed, now)
            return self._record(kind, body, ts, origin, other, path, event_id)
        # An id as sent meets an event read as is (structured), never another decoded one.
        found = self._sent.get(key) if spelled is None else spelled
        half = None if found is None else self._waiting.get(found)
        if found and half and half.kind != kind and (spelled is None or half.sent is None):
            self._take(found)
            self._remember(hashed, now)
            self._remember(hash(found), now)
            spelling = event_id if sent is None else sent  # the id as sent, either way
            return self._record(kind, body, ts, origin, half, path, spelling)
        if other is not None:
            self._on_unpaired("cloudevents_duplicate")
            self._take(key)
        self._waiting[key] = Half(kind, body, ts, now + self.ttl, origin, spelled)
        if spelled is not None:
            self._sent[spelled] = key
        while len(self._waiting) > self.max_pending:
            self._on_unpaired(f"cloudevents_unpaired_{self._take(next(iter(self._waiting))).kind}")
        return None

    @staticmethod
    def _record(
        kind: Kind,
        body: Any,
        ts: float,
        origin: Mapping[str, str],
        other: Half,
        path: str,
        event_id: str,
    ) -> Record:
        if kind == "response":
            return Record(other.ts, other.body, body, path, event_id, other.origin)
        return Record(ts, body, other.body, path, event_id, origin)

    def _take(self, key: _Key) -> Half:
        """Remove the half waiting under ``key`` (and its id as sent) and return it."""
        half = self._waiting.pop(key)
        if half.sent is not None and self._sent.get(half.sent) == key:
            del self._sent[half.sent]
        return half

    def _remember(self, hashed: int, now: float) -> None:
        self._paired[hashed] = now + self.ttl
        while len(self._paired) > self.max_pending:
            self._paired.popitem(last=False)

    def expire(self, now: float | None = None) -> int:
        """Drop (and report) every half whose time ran out; returns how many.  Pairs made
        longer than ``ttl`` ago are forgotten too (not reported)."""
        now = self._clock() if now is None else now
        paired = self._paired
        while paired:
            hashed, forget = next(iter(paired.items()))
            if forget > now:
                break
            del paired[hashed]
        dropped = 0
        while self._waiting:
            key, oldest = next(iter(self._waiting.items()))
            if oldest.expires > now:
                break
            self._take(key)
            self._on_unpaired(f"cloudevents_unpaired_{oldest.kind}")
            dropped += 1
        return dropped
