"""Sliding windows built from tumbling sub-windows ("slices").

A window of length W kept in S slices holds one summary per field for each
slice of W/S seconds.  Updates go into the current slice; a read merges the
slices that are still inside the window.  A slice is dropped once S newer
slices have begun, so the window covers between W − W/S and W seconds of
traffic.  Time is the monitor's clock (arrival time), so a replayed old
log still shows up as current traffic.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["Mergeable", "Slice", "SlicedWindow", "WindowLength"]


class WindowLength(Protocol):
    """How long a window is and how many tumbling slices it is kept in."""

    @property
    def slices(self) -> int: ...

    @property
    def slice_seconds(self) -> float: ...


class Mergeable(Protocol):
    """Anything a window can hold: summaries, performance statistics, segment counts."""

    def merge(self, other: Any, /) -> None: ...


T = TypeVar("T", bound=Mergeable)


@dataclass(slots=True)
class Slice(Generic[T]):
    """Summaries of every field for one tumbling sub-window."""

    index: int
    summaries: dict[str, T]


class SlicedWindow(Generic[T]):
    """One window length over every field, as a ring of slices."""

    def __init__(self, window: WindowLength, factory: Callable[[], dict[str, T]]) -> None:
        self.window = window
        self._factory = factory
        self._slices: deque[Slice[T]] = deque()

    def _slice_index(self, now: float) -> int:
        return int(now // self.window.slice_seconds)

    def _expire(self, now: float) -> None:
        oldest = self._slice_index(now) - self.window.slices + 1
        while self._slices and self._slices[0].index < oldest:
            self._slices.popleft()

    def current(self, now: float) -> dict[str, T]:
        """The summaries of the slice that ``now`` falls in, created if needed."""
        index = self._slice_index(now)
        if not self._slices or self._slices[-1].index < index:
            self._slices.append(Slice(index, self._factory()))
            self._expire(now)
        elif self._slices[-1].index > index:
            # The clock went backwards (NTP step): keep adding to the newest slice.
            return self._slices[-1].summaries
        return self._slices[-1].summaries

    def merged(self, now: float) -> Mapping[str, T]:
        """Fresh summaries of the whole window (the stored slices are not changed)."""
        self._expire(now)
        result = self._factory()
        for piece in self._slices:
            for name, summary in piece.summaries.items():
                result[name].merge(summary)
        return result

    def fresh(self) -> dict[str, T]:
        """Empty entries of the kind this window holds."""
        return self._factory()

    def slices(self) -> list[Slice[T]]:
        return list(self._slices)

    def restore(self, slices: list[Slice[T]]) -> None:
        """Replace the slices (a restored snapshot); expired ones go at the next read."""
        self._slices = deque(sorted(slices, key=lambda s: s.index))
