"""How one pass of the baseline build runs over the data: the ``Runner`` contract.

A build is a few passes (sketches, then exact counts).  Each pass is a
``PassState``: an empty state is copied to every part of the data (a file's
row range, a Parquet row group, a Spark or Dask partition), filled from that
part's chunks, and the filled states are merged.  Merging is exact and does
not depend on the order, so the result is the same however the data was
split.  States are picklable, so parts can be filled in other processes or
on cluster workers.

Runners: :class:`~driftgauge.baseline.local.LocalRunner` (files, ``--workers``),
and the Spark and Dask runners (``driftgauge.baseline.spark``, ``.dask``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

from driftgauge.baseline.chunks import Chunk
from driftgauge.config import FieldSpec

__all__ = ["PassState", "Runner"]


class PassState(Protocol):
    """One pass's partial result: filled from chunks, merged with other parts' results."""

    def empty(self) -> Any:
        """A new, empty state of the same pass (what each part starts from)."""
        ...

    def add(self, chunk: Chunk) -> None:
        """Fold one chunk (holding at least the pass's ``reads``) into the state."""
        ...

    def merge(self, other: Any, /) -> None:
        """Fold another part's state into this one."""
        ...

    @property
    def reads(self) -> Sequence[FieldSpec]:
        """The fields the pass needs in each chunk."""
        ...


S = TypeVar("S", bound=PassState)


@runtime_checkable
class Runner(Protocol):
    """Runs passes over one data set, split into parts however the runner likes."""

    def run(self, state: S, stage: str) -> S:
        """``state.empty()`` filled from each part's chunks, all merged into ``state``.

        ``stage`` names the pass for progress reports ("pass 1/2: sketches").
        """
        ...
