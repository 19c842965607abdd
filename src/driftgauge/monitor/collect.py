"""What a batch holds, by field and by block, and which request each row came from.

:func:`collect` gathers a batch's columns field by field and stacks its numeric
blocks (:class:`BlockPlan` says how a block of fields is ingested); with
``owned`` it also says which piece (request) each row came from, and
:class:`Requests` turns bin counts and those owners into the sums over
requests the noise floor reads (:mod:`driftgauge.sketches.requests`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from driftgauge.sketches.block import StackedBinning
from driftgauge.sketches.requests import (
    counted_by_request,
    one_request_sums,
    request_sums,
    single_row_sums,
)
from driftgauge.typing import Columns, Extracted

if TYPE_CHECKING:
    from driftgauge.monitor.fields import FieldCounters

__all__ = [
    "BlockPlan",
    "Blocks",
    "Collected",
    "Owners",
    "Requests",
    "as_slice",
    "block_slots",
    "collect",
    "owners_of",
]


Owners = npt.NDArray[np.intp]  # the request (piece) each row of a column or block came from


@dataclass(frozen=True, slots=True)
class Requests:
    """A batch's pieces, each one request: what their sums over requests need."""

    count: int
    single_rows: bool  # every piece has one row

    @property
    def owned(self) -> bool:
        """Whether the sums need each value's request (not for one request, nor one-row ones)."""
        return self.count > 1 and not self.single_rows

    def sums(
        self,
        bin_counts: npt.NDArray[np.int64],
        slots: Callable[[], npt.NDArray[np.intp]],
        owners: Owners | None,
    ) -> npt.NDArray[np.int64]:
        """The sums of values counted in ``bin_counts`` (a field's, or a block's rows), their
        bins ``slots()`` (-1 for none) and requests ``owners`` (read only when ``owned``)."""
        if self.count == 1:
            return one_request_sums(bin_counts)
        if owners is None:
            return single_row_sums(bin_counts)
        by_request = counted_by_request(slots(), owners, self.count, bin_counts.shape[-1])
        return request_sums(by_request)


def block_slots(matrix: npt.NDArray[np.float64], binning: StackedBinning) -> npt.NDArray[Any]:
    """Each value's bin in its field's bins (rows × fields), -1 where it is not finite.

    One comparison of the block per edge, summed in bytes (numpy's ``searchsorted`` of
    unsorted values costs far more than the few edges a field has); the +inf padding of a
    narrower field's edges is never reached.
    """
    if binning.edges.shape[1] >= np.iinfo(np.int8).max:
        counted = np.zeros(matrix.shape, dtype=np.intp)
        for edge in binning.edges.T:
            counted += matrix >= edge
    else:
        counted = np.zeros(matrix.shape, dtype=np.int8)
        above = np.empty(matrix.shape, dtype=np.bool_)
        for edge in binning.edges.T:  # every field's next edge
            np.greater_equal(matrix, edge, out=above)
            counted += above.view(np.int8)
    finite = np.isfinite(matrix)
    if not finite.all():
        counted[~finite] = -1
    return counted


@dataclass(frozen=True, slots=True)
class BlockPlan:
    """What ingesting a block needs for its fields, in block order, worked out once per layout."""

    names: tuple[str, ...]
    binning: StackedBinning
    low: npt.NDArray[np.float64]  # the valid range (-inf, inf where the baseline has no data)
    high: npt.NDArray[np.float64]
    counters: list[FieldCounters]
    k: list[int]
    rows: npt.NDArray[np.intp] | slice  # the fields' rows in the tables of bin counts


def as_slice(rows: npt.NDArray[np.intp]) -> npt.NDArray[np.intp] | slice:
    """Consecutive rows as a slice (a view, no gather and scatter), others as they are."""
    if len(rows) and np.array_equal(rows, np.arange(rows[0], rows[0] + len(rows))):
        return slice(int(rows[0]), int(rows[0]) + len(rows))
    return rows


Blocks = list[tuple[BlockPlan, npt.NDArray[np.float64], Owners | None]]
Collected = dict[str, tuple[list[Any], int, Owners | None]]


def collect(
    pieces: list[Extracted],
    plan: Callable[[tuple[str, ...]], BlockPlan | None],
    owned: bool = False,
) -> tuple[Collected, Blocks]:
    """Each field's values over a batch and how many rows carried the field; and the blocks.

    List columns are joined into one list (a single conversion later, not one
    per request); numeric blocks with the same fields are stacked with one
    call; other arrays are kept as they are.  A stacked block is ingested as
    a block (``plan`` says how) when its fields arrive nowhere else in the
    batch, as is usual; fields that do are sliced out into single columns.
    With ``owned``, each column and block also comes with the piece each of
    its rows came from (None without).
    """
    lists: dict[str, list[Any]] = {}
    numbers: dict[str, list[Any]] = {}  # numeric numpy columns: one concatenate for all
    others: dict[str, list[Any]] = {}
    provided: Counter[str] = Counter()
    grouped: dict[tuple[str, ...], list[Any]] = {}
    # With owned: (piece, rows) of each list, number and other column, and of each block.
    runs: dict[str, dict[Any, list[tuple[int, int]]]] = {
        kind: {} for kind in ("lists", "numbers", "others", "blocks")
    }
    for index, piece in enumerate(pieces):
        columns = piece.columns
        if isinstance(columns, Columns):
            for names, matrix in columns.blocks:
                grouped.setdefault(names, []).append(matrix)
                if owned:
                    runs["blocks"].setdefault(names, []).append((index, len(matrix)))
            columns = columns.single
        for name, column in columns.items():
            provided[name] += piece.rows
            if isinstance(column, list):
                lists.setdefault(name, []).extend(column)
                kind = "lists"
            else:
                # A float32 column (an FP32 tensor's categories) is not joined with float64
                # ones: widened, its 0.1 would read as the category 0.10000000149011612.
                numeric = (
                    isinstance(column, np.ndarray)
                    and (column.dtype.kind in "iu" or column.dtype == np.float64)
                    and column.ndim == 1
                )
                kind = "numbers" if numeric else "others"
                (numbers if numeric else others).setdefault(name, []).append(column)
            if owned:
                runs[kind].setdefault(name, []).append((index, len(column)))
    stacks = [
        (names, np.concatenate(matrices) if len(matrices) > 1 else matrices[0])
        for names, matrices in grouped.items()
    ]
    singles = set(provided)
    blocks: Blocks = []
    for index, (names, stacked) in enumerate(stacks):
        rows = owners_of(runs["blocks"][names]) if owned else None
        elsewhere = singles.union(*(other for i, (other, _) in enumerate(stacks) if i != index))
        if elsewhere.isdisjoint(names):
            whole = plan(names)
            if whole is not None:
                blocks.append((whole, stacked, rows))
                continue
        keep = [position for position, name in enumerate(names) if name not in elsewhere]
        part = plan(tuple(names[position] for position in keep)) if keep else None
        if part is not None:
            blocks.append((part, stacked[:, keep], rows))
        taken = set(keep) if part is not None else set()
        for position, name in enumerate(names):
            if position not in taken:
                numbers.setdefault(name, []).append(stacked[:, position])
                provided[name] += stacked.shape[0]
                if owned:
                    runs["numbers"].setdefault(name, []).extend(runs["blocks"][names])
    result: Collected = {}
    for name in provided:
        found: list[Any] = [lists[name]] if name in lists else []
        arrays = numbers.get(name)
        if arrays:
            found.append(np.concatenate(arrays) if len(arrays) > 1 else arrays[0])
        rows = None
        if owned:  # in the order of found: lists, numbers, others
            kinds = ("lists", "numbers", "others")
            rows = owners_of([run for kind in kinds for run in runs[kind].get(name, [])])
        result[name] = (found + others.get(name, []), provided[name], rows)
    return result, blocks


def owners_of(runs: list[tuple[int, int]]) -> Owners:
    """The piece of each row, from (piece, rows) runs."""
    if not runs:
        return np.empty(0, dtype=np.intp)
    pieces, lengths = zip(*runs, strict=True)
    return np.repeat(np.array(pieces, dtype=np.intp), lengths)
