"""Closed slices kept compact: numeric summaries as columns and serialized sketches.

A slice stops changing once a newer one begins, and from then on it is only
merged into a window's read or encoded into a snapshot.  Its numeric
summaries are then sealed (:class:`SliceSealer`): each KLL sketch as its
DataSketches bytes, which hold exactly the retained items (a live sketch
also holds its spare capacity, its level array and a Python object), the
counters and moments as rows of two numpy arrays, and the bin counts in the
slice's table of bin counts; nothing per field is a Python object but the
sketch's bytes.  Categorical summaries keep their frequent-items and HLL
sketches as bytes likewise.  A sealed slice is merged into a window's read
(:meth:`SealedSlice.merge_into`) field by field, each sketch deserialized
and merged; nothing is lost, so every statistic is what the live summaries
would have given.

Reading one entry (``sealed[name]``, a snapshot's encoding) builds the
field's :class:`~driftgauge.sketches.summary.NumericSummary` anew.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import datasketches as ds
import numpy as np
import numpy.typing as npt

from driftgauge.sketches.block import bin_table, shared_sums, shared_table
from driftgauge.sketches.requests import sums_size
from driftgauge.sketches.summary import (
    CategoricalSummary,
    CountArray,
    FloatArray,
    ItemType,
    NumericBinning,
    NumericSummary,
    Summary,
)
from driftgauge.sketches.sums import add_sums
from driftgauge.sketches.window import Sealed

__all__ = ["SealedSlice", "SliceSealer"]

# A closed slice's bin counts and sums over requests: int32 where every one fits, else int64.
StoredCounts = npt.NDArray[np.int32] | npt.NDArray[np.int64]
_INT32_MAX = np.iinfo(np.int32).max


@dataclass(frozen=True, slots=True)
class _Layout:
    """What every sealed slice of one window shares: field names, bins, k and sketch type."""

    names: tuple[str, ...]
    numeric: tuple[str, ...]  # in the order of the slice's table of bin counts
    position: Mapping[str, int]
    binnings: tuple[NumericBinning, ...]
    k: tuple[int, ...]
    items: tuple[ItemType, ...]
    sketch_types: tuple[Any, ...]
    categorical: Mapping[str, tuple[int, CategoricalSummary]]  # its row, an empty summary


@dataclass(frozen=True, slots=True)
class _SealedCategorical:
    """A closed slice's categorical summaries: a row each, sketches as bytes."""

    bins: list[CountArray]
    by_request: list[CountArray]
    counts: CountArray  # row j: count, missing
    frequent: list[bytes]
    hll: list[bytes]


class SealedSlice(Sealed[Summary]):
    """A closed slice's field summaries, read-only; numeric ones as columns and sketch bytes."""

    __slots__ = (
        "_bins",
        "_categorical",
        "_counts",
        "_ends",
        "_layout",
        "_moments",
        "_sketches",
        "_sums",
    )

    def __init__(
        self,
        layout: _Layout,
        bins: StoredCounts,
        sums: StoredCounts,
        counts: CountArray,
        moments: FloatArray,
        sketches: list[bytes],
        categorical: _SealedCategorical | None,
    ) -> None:
        self._layout = layout
        self._bins = bins  # row j: numeric field j's bin counts, padded with zeros
        self._sums = sums  # row j: its sums over requests, padded likewise
        self._counts = counts  # row j: count, missing, wrong_type, nan, inf
        self._moments = moments  # row j: total, scaled, minimum, maximum
        # The sketches' bytes end to end, one object (a bytes object a field and slice cost
        # 57 B more: issue #13's memory per field and window), and where each one ends.
        self._sketches = b"".join(sketches)
        self._ends = np.cumsum([len(sketch) for sketch in sketches], dtype=np.int64)
        self._categorical = categorical

    def __getitem__(self, name: str) -> Summary:
        j = self._layout.position.get(name)
        if j is None:
            return self._categorical_summary(name)
        layout = self._layout
        binning = layout.binnings[j]
        count, missing, wrong_type, nan, inf = self._counts[j].tolist()
        total, scaled, minimum, maximum = self._moments[j].tolist()
        return NumericSummary(
            binning,
            layout.k[j],
            layout.sketch_types[j].deserialize(self._sketch(j)),
            self._bins[j, : binning.size].astype(np.int64),
            count,
            missing,
            wrong_type,
            nan,
            inf,
            total,
            minimum,
            maximum,
            layout.items[j],
            scaled,
            self._sums[j, : sums_size(binning.size)].astype(np.int64),
        )

    def _sketch(self, j: int) -> bytes:
        """Numeric field j's sketch, serialized."""
        return self._sketches[int(self._ends[j - 1]) if j else 0 : int(self._ends[j])]

    def _categorical_summary(self, name: str) -> CategoricalSummary:
        j, empty = self._layout.categorical[name]
        sealed = self._categorical
        assert sealed is not None
        count, missing = sealed.counts[j].tolist()
        return CategoricalSummary(
            empty.binning,
            empty.lg_max_items,
            empty.hll_lg_k,
            ds.frequent_strings_sketch.deserialize(sealed.frequent[j]),
            ds.hll_sketch.deserialize(sealed.hll[j]),
            sealed.bins[j].copy(),
            count,
            missing,
            sealed.by_request[j].copy(),
        )

    def __iter__(self) -> Iterator[str]:
        return iter(self._layout.names)

    def __len__(self) -> int:
        return len(self._layout.names)

    def merge_into(self, result: Mapping[str, Summary]) -> None:
        """What merging each entry into ``result`` does (``result`` from the slice's factory)."""
        layout = self._layout
        numeric: list[NumericSummary] = []
        for name in layout.numeric:
            summary = result[name]
            assert isinstance(summary, NumericSummary)
            numeric.append(summary)
        table, sums = shared_table(numeric), shared_sums(numeric)
        if table is not None and table.shape == self._bins.shape:
            table += self._bins  # the factory's summaries share a table in the same row order
        else:
            for j, summary in enumerate(numeric):
                summary.bins += self._bins[j, : len(summary.bins)]
        if sums is not None and sums.shape == self._sums.shape:
            sums += self._sums
        else:
            for j, summary in enumerate(numeric):
                summary.by_request += self._sums[j, : len(summary.by_request)]
        rows = zip(
            numeric,
            self._counts.tolist(),
            self._moments.tolist(),
            map(self._sketch, range(len(numeric))),
            layout.sketch_types,
            strict=True,
        )
        for summary, counts, (total, scaled, minimum, maximum), sketch, sketch_type in rows:
            count, missing, wrong_type, nan, inf = counts
            summary.missing += missing
            summary.wrong_type += wrong_type
            summary.nan += nan
            summary.inf += inf
            if not count:
                continue
            summary.kll.merge(sketch_type.deserialize(sketch))
            summary.count += count
            summary.total, summary.scaled = add_sums(summary.total, summary.scaled, total, scaled)
            if minimum < summary.minimum:
                summary.minimum = minimum
            if maximum > summary.maximum:
                summary.maximum = maximum
        for name in layout.categorical:
            summary = result[name]
            assert isinstance(summary, CategoricalSummary)
            summary.merge(self._categorical_summary(name))


class SliceSealer:
    """Seals the closed slices of one window (a ``seal`` for :class:`~driftgauge.sketches.window.SlicedWindow`)."""

    def __init__(self) -> None:
        self._layouts: dict[tuple[str, ...], _Layout] = {}

    def __call__(self, summaries: dict[str, Summary]) -> SealedSlice:
        layout = self._layout(summaries)
        numeric: list[NumericSummary] = []
        for name in layout.numeric:
            summary = summaries[name]
            assert isinstance(summary, NumericSummary)
            numeric.append(summary)
        table = _narrow(_table_of([summary.bins for summary in numeric], shared_table(numeric)))
        sums = _narrow(_table_of([summary.by_request for summary in numeric], shared_sums(numeric)))
        counts = np.array(
            [(s.count, s.missing, s.wrong_type, s.nan, s.inf) for s in numeric], dtype=np.int64
        ).reshape(len(numeric), 5)
        moments = np.array(
            [(s.total, s.scaled, s.minimum, s.maximum) for s in numeric], dtype=np.float64
        ).reshape(len(numeric), 4)
        sketches = [summary.kll.serialize() for summary in numeric]
        return SealedSlice(
            layout, table, sums, counts, moments, sketches, _seal_categorical(layout, summaries)
        )

    def _layout(self, summaries: dict[str, Summary]) -> _Layout:
        names = tuple(summaries)
        layout = self._layouts.get(names)
        if layout is None:
            numeric = [(n, s) for n, s in summaries.items() if isinstance(s, NumericSummary)]
            layout = _Layout(
                names,
                tuple(name for name, _ in numeric),
                {name: j for j, (name, _) in enumerate(numeric)},
                tuple(s.binning for _, s in numeric),
                tuple(s.k for _, s in numeric),
                tuple(s.items for _, s in numeric),
                tuple(type(s.kll) for _, s in numeric),
                {
                    name: (j, summary.empty_like())
                    for j, (name, summary) in enumerate(
                        (n, s) for n, s in summaries.items() if isinstance(s, CategoricalSummary)
                    )
                },
            )
            if len(layout.numeric) + len(layout.categorical) != len(names):
                raise TypeError("only numeric and categorical summaries can be sealed")
            self._layouts = {names: layout}  # one window, one set of fields: keep the last
        return layout


def _seal_categorical(layout: _Layout, summaries: dict[str, Summary]) -> _SealedCategorical | None:
    if not layout.categorical:
        return None
    categorical: list[CategoricalSummary] = []
    for name in layout.categorical:
        summary = summaries[name]
        assert isinstance(summary, CategoricalSummary)
        categorical.append(summary)
    return _SealedCategorical(
        [summary.bins for summary in categorical],
        [summary.by_request for summary in categorical],
        np.array([(s.count, s.missing) for s in categorical], dtype=np.int64),
        [summary.frequent.serialize() for summary in categorical],
        [summary.hll.serialize_compact() for summary in categorical],
    )


def _narrow(table: CountArray) -> StoredCounts:
    """``table`` as int32 when every count fits, which halves a closed slice's bin counts and
    sums over requests (issue #13's memory per field and window); else as it is."""
    if table.size and (table.max() > _INT32_MAX or table.min() < -_INT32_MAX):
        return table
    return table.astype(np.int32)


def _table_of(rows: list[CountArray], shared: CountArray | None) -> CountArray:
    """The table holding ``rows`` in order, as :func:`share_bins` lays them out, or a copy."""
    if shared is not None and _rows_in_order(shared, rows):
        return shared
    table, views = bin_table([len(row) for row in rows])
    for view, row in zip(views, rows, strict=True):
        view[:] = row
    return table


def _rows_in_order(table: CountArray, rows: list[CountArray]) -> bool:
    """Whether row j of ``table`` is ``rows[j]`` (as :func:`share_bins` lays them out)."""
    if table.shape[0] != len(rows):
        return False
    start = table.__array_interface__["data"][0]
    stride = table.strides[0]
    return all(
        row.__array_interface__["data"][0] == start + j * stride for j, row in enumerate(rows)
    )
