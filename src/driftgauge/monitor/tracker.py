"""What every live tracker of a model is: the ``Tracker`` protocol and what flows through it.

A model's live state is a set of trackers built once from its config and
baseline: field drift (always), segments and outcomes (when configured),
more for a feature that needs its own windows.  The batcher hands each of
them the same batch of :class:`Observation` s, a recompute asks each for its
part of the :class:`~driftgauge.monitor.fields.Snapshot`, and the state
store saves and restores each one's windows (and, for a tracker that
:class:`HoldsState`, what it holds beyond them) under its ``name``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from driftgauge.jsonbody import JsonText
from driftgauge.sketches.window import SlicedWindow
from driftgauge.typing import Extracted, Record

__all__ = ["HoldsState", "Observation", "SnapshotPart", "Tracker"]

SnapshotPart = Mapping[str, tuple[Any, ...]]
"""Some fields of a :class:`~driftgauge.monitor.fields.Snapshot`, by name (``fields``, ``segments``...)."""


@dataclass(frozen=True, slots=True)
class Observation:
    """One record as the batcher extracted it: the record, its parsed request, its columns.

    ``text`` is the request's JSON text when orjson read it (None when the
    source gave it parsed, or it was read exactly): a tracker that needs an
    integer beyond 64 bits exactly reads it again (:func:`~driftgauge.jsonbody.lossy`),
    or the tail line the source parsed it from (``record.line``).
    """

    record: Record
    request: Any
    columns: Extracted
    text: JsonText | None = None


class Tracker(Protocol):
    """Live windows over a model's traffic, fed batch by batch and summarised on a schedule."""

    @property
    def name(self) -> str:
        """The tracker's key in state snapshots."""
        ...

    @property
    def windows(self) -> Mapping[str, SlicedWindow[Any]]:
        """The live windows by label (hold ``locked()`` while reading or changing them)."""
        ...

    def locked(self) -> AbstractContextManager[Any]:
        """The lock guarding the windows."""
        ...

    def ingest(self, batch: Sequence[Observation], now: float) -> None:
        """Add a batch of observations to the current slice of every window."""
        ...

    def compute(self, now: float) -> SnapshotPart:
        """This tracker's statistics over its windows as of ``now``."""
        ...


@runtime_checkable
class HoldsState(Protocol):
    """A tracker with state beyond its windows (outcomes: predictions waiting for labels)."""

    held_key: str

    def copy_held(self) -> Any:
        """A copy of the held state, taken under ``locked()`` (kept cheap: array copies)."""
        ...

    def encode_held(self, held: Any) -> Any:
        """``copy_held()``'s result as JSON-ready data (outside the lock)."""
        ...

    def decode_held(self, payload: Any) -> Any:
        """Held state from a snapshot; ValueError when it does not fit the config."""
        ...

    def restore_held(self, decoded: Any) -> None:
        """Replace the held state with ``decode_held()``'s result."""
        ...
