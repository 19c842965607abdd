"""Many numeric fields summarised together, for wide models.

Wide models send many numeric fields side by side as one matrix
(:class:`~driftgauge.typing.Columns` blocks): :class:`NumericBlock` sorts,
bins and counts all of them with one numpy call per statistic
(:class:`StackedBinning` holds their bin edges as one table), leaving one
sketch update and a few additions per field (:func:`add_block`, which adds
to each field's :class:`~driftgauge.sketches.summary.NumericSummary` as its
own ``add`` would).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from driftgauge.sketches.summary import CountArray, FloatArray, NumericBinning, NumericSummary

__all__ = [
    "NumericBlock",
    "StackedBinning",
    "add_block",
    "bin_table",
    "share_bins",
    "shared_sums",
    "shared_table",
]


@dataclass(frozen=True, slots=True)
class StackedBinning:
    """The bins of several numeric fields side by side, to count a block of them at once.

    Row ``j`` of ``edges`` holds field ``j``'s inner cut points, padded on the
    right with +inf up to the widest field's; a finite value is never at or
    above the padding, so padded bins stay empty.  ``sizes`` are the fields'
    own bin counts.
    """

    edges: FloatArray
    sizes: tuple[int, ...]
    # Every field has the widest field's bins (the usual case): no slicing per field.
    uniform: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        widest = self.edges.shape[1] + 1
        object.__setattr__(self, "uniform", all(size == widest for size in self.sizes))

    @classmethod
    def of(cls, binnings: Sequence[NumericBinning]) -> StackedBinning:
        widest = max((len(binning.edges) for binning in binnings), default=0)
        edges = np.full((len(binnings), widest), np.inf)
        for row, binning in zip(edges, binnings, strict=True):
            row[: len(binning.edges)] = binning.edges
        return cls(edges, tuple(binning.size for binning in binnings))

    def count(self, ordered: FloatArray, valid: CountArray) -> CountArray:
        """Bin counts of each row of ``ordered``: field ``j``'s values, ascending, in row ``j``.

        Each row holds ``valid[j]`` finite values followed by NaN padding,
        which is in no bin.  Like :meth:`NumericBinning.count_sorted`, one
        binary search per edge, none per value: here the searches of every
        (field, edge) pair run side by side, one numpy step per halving.
        """
        fields, length = ordered.shape
        flat = ordered.ravel()
        before_row = np.arange(fields)[:, None] * length - 1  # flat index of each row's item -1
        below = np.zeros(self.edges.shape, dtype=np.intp)  # values < edge found so far
        step = 1 << (length.bit_length() - 1) if length else 0
        while step:
            # Take ``step`` more values where the last of them is still below the edge
            # (NaN never is, so the padding is never taken).
            wider = below + step
            probe = flat[before_row + np.minimum(wider, length)]
            below = np.where((wider <= length) & (probe < self.edges), wider, below)
            step >>= 1
        return np.diff(below, axis=1, prepend=0, append=valid[:, None]).astype(np.int64)

    def split(self, counts: CountArray) -> list[CountArray]:
        """Each field's own bins of a :meth:`count` result (views, not copies)."""
        if self.uniform:
            return list(counts)
        return [row[:size] for row, size in zip(counts, self.sizes, strict=True)]


@dataclass(frozen=True, slots=True)
class NumericBlock:
    """One batch of several numeric fields, each summarised as :meth:`NumericSummary.update` would.

    Built by :meth:`of` from a rows × fields matrix; item ``j`` of every list
    belongs to field ``j``.  ``values[j]`` are the field's finite values in
    ascending order (what :meth:`NumericSummary.add` receives); row ``j`` of
    ``bin_counts`` holds their counts in the field's bins, padded with zeros
    to the widest field's (see :meth:`bins`).  ``minimums``, ``maximums`` and
    ``totals`` mean nothing where ``counts[j]`` is 0.
    """

    binning: StackedBinning
    values: list[FloatArray]
    bin_counts: CountArray
    counts: list[int]
    nan: list[int]
    inf: list[int]
    totals: list[float]
    minimums: list[float]
    maximums: list[float]
    outside: list[int]

    @classmethod
    def of(
        cls,
        matrix: FloatArray,
        binning: StackedBinning,
        low: FloatArray | None = None,
        high: FloatArray | None = None,
    ) -> NumericBlock:
        """The summaries of each column of ``matrix`` (field ``j`` in column ``j``).

        ``outside[j]`` counts field ``j``'s finite values below ``low[j]`` or
        above ``high[j]``; it is 0 without bounds.
        """
        rows, fields = matrix.shape
        # One contiguous row per field, sorted in place: each row is then sliced, summed and
        # sketched exactly as the field's own column would be.
        ordered = np.array(matrix.T, dtype=np.float64, order="C")
        finite = np.isfinite(ordered)
        whole = bool(finite.all())
        if whole:
            counts = np.full(fields, rows, dtype=np.int64)
            nan = inf = np.zeros(fields, dtype=np.int64)
        else:
            counts = np.count_nonzero(finite, axis=1)
            inf = np.count_nonzero(np.isinf(ordered), axis=1)
            nan = rows - counts - inf
            ordered[~finite] = np.nan  # sorted last, in no bin, never out of range
        ordered.sort(axis=1)
        if low is not None and high is not None:
            beyond = (ordered < low[:, None]) | (ordered > high[:, None])
            outside = np.count_nonzero(beyond, axis=1).tolist()
        else:
            outside = [0] * fields
        # finite values can still sum beyond float: ±inf, or NaN where both signs did
        with np.errstate(over="ignore", invalid="ignore"):
            if whole:
                values = list(ordered)
                totals = ordered.sum(axis=1).tolist()
            else:
                values = [row[:n] for row, n in zip(ordered, counts.tolist(), strict=True)]
                totals = [float(row.sum()) for row in values]
        ends = np.full((fields, 2), np.nan)  # NaN where a field has no finite value
        if rows:
            ends[:, 0] = ordered[:, 0]
            ends[:, 1] = ordered[np.arange(fields), np.maximum(counts - 1, 0)]
        return cls(
            binning,
            values,
            binning.count(ordered, counts),
            counts.tolist(),
            nan.tolist(),
            inf.tolist(),
            totals,
            ends[:, 0].tolist(),
            ends[:, 1].tolist(),
            outside,
        )

    def bins(self) -> list[CountArray]:
        """Each field's bin counts, as long as its own bins (views of ``bin_counts``)."""
        return self.binning.split(self.bin_counts)


def bin_table(sizes: Sequence[int]) -> tuple[CountArray, list[CountArray]]:
    """A table of zeros with a row per size, and a view of the first ``size`` columns of each.

    Bin counts kept in such views can be added to with one numpy call on the
    table (see :func:`add_block`).
    """
    table = np.zeros((len(sizes), max(sizes, default=1)), dtype=np.int64)
    return table, [row[:size] for row, size in zip(table, sizes, strict=True)]


def share_bins(summaries: Sequence[NumericSummary]) -> CountArray:
    """Move the summaries' bin counts into one :func:`bin_table`, a row each, and return it.

    Their sums over requests (``by_request``) go into a table of their own
    likewise (:func:`shared_sums`).  A summary whose ``bins`` is later
    replaced (a decoded snapshot) simply stops sharing.
    """
    table, views = bin_table([len(summary.bins) for summary in summaries])
    for view, summary in zip(views, summaries, strict=True):
        view[:] = summary.bins
        summary.bins = view
    _, views = bin_table([len(summary.by_request) for summary in summaries])
    for view, summary in zip(views, summaries, strict=True):
        view[:] = summary.by_request
        summary.by_request = view
    return table


def add_block(
    summaries: Sequence[NumericSummary],
    block: NumericBlock,
    missing: int = 0,
    sketches: Sequence[Any] | None = None,
    rows: npt.NDArray[np.intp] | slice | None = None,
    by_request: CountArray | None = None,
) -> None:
    """Add a block to one summary per field: what :meth:`NumericSummary.add` does, field by field.

    ``by_request``, when given, holds each field's sums over requests (row
    ``j``, padded with zeros), added to the summaries' ``by_request``.

    Every field of the block has ``missing`` rows without it.  ``sketches[j]``,
    when given and not None, already holds ``block.values[j]`` and is merged
    instead (one sketch of a batch serves every window).  ``rows`` are the
    summaries' rows in the table from :func:`share_bins`: while they all
    still share it, the bin counts go in with one numpy call.
    """
    table = shared_table(summaries) if rows is not None else None
    if table is not None:
        table[rows, : block.bin_counts.shape[1]] += block.bin_counts
        bins = None
    else:
        bins = block.bins()
    if by_request is not None:
        sums = shared_sums(summaries) if rows is not None else None
        if sums is not None:
            sums[rows, : by_request.shape[1]] += by_request
        else:
            for summary, row in zip(summaries, by_request, strict=True):
                summary.by_request += row[: len(summary.by_request)]
    for j, summary in enumerate(summaries):
        summary.add_counted(
            block.values[j],
            block.counts[j],
            block.totals[j],
            block.minimums[j],
            block.maximums[j],
            bins[j] if bins is not None else None,
            missing,
            0,
            block.nan[j],
            block.inf[j],
            sketches[j] if sketches is not None else None,
        )


def shared_table(summaries: Sequence[NumericSummary]) -> CountArray | None:
    """The :func:`share_bins` table every one of ``summaries`` still has its bins in, if any."""
    return _shared([summary.bins for summary in summaries])


def shared_sums(summaries: Sequence[NumericSummary]) -> CountArray | None:
    """The :func:`share_bins` table every one of ``summaries`` still has its ``by_request`` in."""
    return _shared([summary.by_request for summary in summaries])


def _shared(rows: Sequence[CountArray]) -> CountArray | None:
    if not rows:
        return None
    table = rows[0].base
    if not isinstance(table, np.ndarray) or table.ndim != 2:
        return None
    return table if all(row.base is table for row in rows) else None
