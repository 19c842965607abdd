"""Sliding windows built from tumbling sub-windows ("slices").

A window of length W kept in S slices holds one summary per field for each
slice of W/S seconds.  Updates go into the current slice; a read merges the
slices that are still inside the window.  A slice is dropped once S newer
slices have begun, so the window covers between W − W/S and W seconds of
traffic.  Time is the monitor's clock (arrival time), so a replayed old
log still shows up as current traffic.

Only the newest slice takes updates.  A window given a ``seal`` function
hands it each slice as soon as a newer one begins (and every slice but the
newest of a restored snapshot) and keeps what it returns instead: a
:class:`Sealed` read-only form that may be smaller than the live summaries
(:mod:`driftgauge.sketches.sealed` keeps numeric sketches as bytes).
"""

from __future__ import annotations

from abc import abstractmethod
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["Mergeable", "Sealed", "Slice", "SlicedWindow", "WindowLength"]


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


class Sealed(Mapping[str, T]):
    """A closed slice's summaries in a read-only form; reading an entry may build it anew."""

    __slots__ = ()

    @abstractmethod
    def merge_into(self, result: Mapping[str, T]) -> None:
        """Merge every entry into ``result``'s entry of the same name."""


@dataclass(slots=True)
class Slice(Generic[T]):
    """Summaries of every field for one tumbling sub-window (sealed once it has closed)."""

    index: int
    summaries: dict[str, T] | Sealed[T]


class SlicedWindow(Generic[T]):
    """One window length over every field, as a ring of slices."""

    def __init__(
        self,
        window: WindowLength,
        factory: Callable[[], dict[str, T]],
        seal: Callable[[dict[str, T]], Sealed[T]] | None = None,
    ) -> None:
        self.window = window
        self._factory = factory
        self._seal = seal
        self._slices: deque[Slice[T]] = deque()

    def _slice_index(self, now: float) -> int:
        return int(now // self.window.slice_seconds)

    def _expire(self, now: float) -> None:
        oldest = self._slice_index(now) - self.window.slices + 1
        while self._slices and self._slices[0].index < oldest:
            self._slices.popleft()

    def current(self, now: float) -> dict[str, T]:
        """The summaries of the slice that ``now`` falls in, created if needed.

        A slice older than ``now``'s is never returned: after the clock went
        backwards (an NTP step) updates keep going to the newest slice.
        """
        index = self._slice_index(now)
        if not self._slices or self._slices[-1].index < index:
            if self._slices:
                self._close(self._slices[-1])
            self._slices.append(Slice(index, self._factory()))
            self._expire(now)
        newest = self._slices[-1].summaries
        assert isinstance(newest, dict)  # the newest slice is never sealed
        return newest

    def _close(self, piece: Slice[T]) -> None:
        if self._seal is not None and isinstance(piece.summaries, dict):
            piece.summaries = self._seal(piece.summaries)

    def merged(self, now: float) -> Mapping[str, T]:
        """Fresh summaries of the whole window (the stored slices are not changed)."""
        self._expire(now)
        result = self._factory()
        for piece in self._slices:
            summaries = piece.summaries
            if isinstance(summaries, Sealed):
                summaries.merge_into(result)
                continue
            for name, summary in summaries.items():
                result[name].merge(summary)
        return result

    def fresh(self) -> dict[str, T]:
        """Empty entries of the kind this window holds."""
        return self._factory()

    def slices(self) -> list[Slice[T]]:
        return list(self._slices)

    def restore(self, slices: list[Slice[T]]) -> None:
        """Replace the slices (a restored snapshot); expired ones go at the next read.

        Every slice but the newest is sealed; the newest takes updates again.
        """
        self._slices = deque(sorted(slices, key=lambda s: s.index))
        for piece in list(self._slices)[:-1]:
            self._close(piece)
        if self._slices and not isinstance(self._slices[-1].summaries, dict):
            self._slices[-1].summaries = dict(self._slices[-1].summaries)
