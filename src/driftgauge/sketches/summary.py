"""Mergeable summaries of one field over some span of observations.

A summary is what a baseline holds for the training data and what each live
sub-window holds for the traffic: for numeric fields a KLL quantile sketch
plus exact counts in the baseline's fixed bins, for categorical fields exact
counts over the baseline's frozen categories plus a frequent-items sketch
and an HLL cardinality sketch.  Every update takes a whole column of a batch
as one numpy array; nothing here loops in Python once per value.

Wide models' numeric blocks are summarised together by
:mod:`driftgauge.sketches.block`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import datasketches as ds
import numpy as np
import numpy.typing as npt

from driftgauge.canonical import (
    canonical_category,
    canonical_strings,
    category_strings,
    is_missing,
)
from driftgauge.sketches.requests import sums_size
from driftgauge.sketches.sums import SUM_SCALE, add_sums, scaled_sum

__all__ = [
    "LIVE_ITEMS",
    "OTHER",
    "UNSEEN",
    "CategoricalBinning",
    "CategoricalSummary",
    "ItemType",
    "NumericBinning",
    "NumericSummary",
    "Summary",
    "category_indexes",
    "category_indexes_and_keys",
    "category_key",
    "category_keys",
    "frequent_lg",
    "kll_items",
    "new_kll",
    "split_finite",
    "to_categories",
    "to_floats",
    "training_frequent",
]

OTHER = "__other__"
UNSEEN = "__unseen__"

FloatArray = npt.NDArray[np.float64]
CountArray = npt.NDArray[np.int64]

ItemType = Literal["float64", "float32"]
"""What a KLL sketch keeps its items as.

Baselines keep float64 (``kll_doubles_sketch``).  Live windows keep float32
(``kll_floats_sketch``), half the memory per retained item: the baseline's
bin edges are float32 rounding-class boundaries, so PSI never told values
apart that float32 merges, and KS compares the float32-rounded baseline
(:meth:`driftgauge.stats.CdfTable.float32`); see docs/statistics.md.  A field
whose training data float32 would merge keeps float64 in its live windows too
(:attr:`driftgauge.baseline.FieldBaseline.live_items`).
"""

LIVE_ITEMS: ItemType = "float32"
"""What live windows' sketches hold, but for fields that need float64."""

_FLOAT32_MAX = float(np.finfo(np.float32).max)


def new_kll(k: int, items: ItemType = "float64") -> Any:
    """An empty KLL sketch holding ``items``."""
    return ds.kll_floats_sketch(k) if items == "float32" else ds.kll_doubles_sketch(k)


def kll_items(
    values: npt.NDArray[np.floating[Any]], items: ItemType, minimum: float, maximum: float
) -> npt.NDArray[Any]:
    """Finite values as a sketch of ``items`` takes them (``minimum``/``maximum`` are theirs).

    float32 rounds to nearest; the rare value beyond float32's range is
    clamped to its largest finite value (rounding would make it infinite),
    so the mapping stays monotone and finite.
    """
    if items == "float64":
        return values
    if minimum < -_FLOAT32_MAX or maximum > _FLOAT32_MAX:
        values = np.clip(values, -_FLOAT32_MAX, _FLOAT32_MAX)
    return values.astype(np.float32)


def to_floats(values: Sequence[Any] | npt.NDArray[Any]) -> tuple[FloatArray, int, int]:
    """A column as float64 with ``nan`` for missing, and the (missing, wrong_type) counts.

    ``None`` is missing; a string, a boolean or any other non-number is of
    the wrong type and is left out as missing would be, but counted apart
    (a flag belongs in a categorical field, where ``true``, ``True`` and a
    Parquet boolean are one category).  The common all-numbers case
    converts in one numpy call.
    """
    try:
        array = values if isinstance(values, np.ndarray) else np.asarray(values)
    except ValueError:  # ragged nested lists
        array = np.asarray(values, dtype=object)
    # numpy turns booleans mixed with numbers into 0/1; they are of the wrong type.
    if (
        array.ndim == 1
        and array.dtype.kind in "fiu"
        and (isinstance(values, np.ndarray) or bool not in set(map(type, values)))
    ):
        return array.astype(np.float64, copy=False), 0, 0
    floats = np.full(len(values), np.nan)
    missing = wrong = 0
    for index, value in enumerate(values):
        if value is None:
            missing += 1
        elif isinstance(value, int | float) and not isinstance(value, bool):
            try:
                floats[index] = value
            except OverflowError:  # an integer beyond float range
                floats[index] = np.inf if value > 0 else -np.inf
        else:
            wrong += 1
    return floats, missing, wrong


def split_finite(values: FloatArray, placeholders: int = 0) -> tuple[FloatArray, int, int]:
    """The finite values, and how many were NaN and ±inf.

    ``placeholders`` NaN slots stand for missing or wrong-type values that
    :func:`to_floats` already counted; they are not counted as NaN again.
    """
    mask = np.isfinite(values)
    if mask.all():
        return values, 0, 0
    inf = int(np.isinf(values).sum())
    finite = values[mask]
    return finite, len(values) - len(finite) - inf - placeholders, inf


def to_categories(
    values: Sequence[Any] | npt.NDArray[Any], spell: bool = True
) -> tuple[npt.NDArray[np.str_], int]:
    """A column as category strings without missing values, and the missing count.

    Strings are canonical (:mod:`driftgauge.canonical`: ``True``, ``true``
    and a boolean are one category, and so are ``1``, ``1.0`` and ``"1.0"``)
    unless ``spell`` is false, when a caller spells the distinct values
    itself (:func:`~driftgauge.canonical.canonical_counts`, one Python call
    per distinct value instead of one per row).
    """
    strings, whole = category_strings(values)
    if whole:
        return (canonical_strings(strings) if spell else strings), 0
    kept = [canonical_category(v) for v in values if not is_missing(v)]
    missing = len(values) - len(kept)
    return np.asarray(kept, dtype=np.str_) if kept else np.empty(0, dtype=np.str_), missing


def _spell_rows(
    values: Sequence[Any] | npt.NDArray[Any],
) -> tuple[npt.NDArray[np.str_], list[int] | None]:
    """The canonical category of each present row, and which rows are present (None: all)."""
    strings, whole = category_strings(values)
    if whole:  # no missing value: read by numpy at once, as to_categories does
        return canonical_strings(strings), None
    present = [i for i, v in enumerate(values) if not is_missing(v)]
    return np.asarray([canonical_category(values[i]) for i in present], dtype=np.str_), present


def _each_row(
    spelled: tuple[npt.NDArray[np.str_], list[int] | None],
    rows: int,
    lookup: Callable[[npt.NDArray[np.str_]], npt.NDArray[Any]],
    missing: int,
    dtype: type[np.integer[Any]],
) -> npt.NDArray[Any]:
    """``lookup`` of each of ``rows`` rows spelled by :func:`_spell_rows`, ``missing`` where
    the value is missing (rows stay aligned)."""
    texts, present = spelled
    if present is None:
        return lookup(texts)
    result = np.full(rows, missing, dtype=dtype)
    if present:
        result[present] = lookup(texts)
    return result


def category_indexes(
    values: Sequence[Any] | npt.NDArray[Any], binning: CategoricalBinning
) -> npt.NDArray[np.intp]:
    """Each row's bucket in ``binning``, -1 where the value is missing (rows stay aligned)."""
    return _each_row(_spell_rows(values), len(values), binning.indexes, -1, np.intp)


def category_indexes_and_keys(
    values: Sequence[Any] | npt.NDArray[Any], binning: CategoricalBinning
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.int64]]:
    """:func:`category_indexes` and :func:`category_keys` of ``values``, spelled once."""
    spelled = _spell_rows(values)
    return (
        _each_row(spelled, len(values), binning.indexes, -1, np.intp),
        _each_row(spelled, len(values), _keys, 0, np.int64),
    )


def category_key(text: str) -> int:
    """A category's own key: 64 bits of BLAKE2b of its canonical spelling, never 0.

    The same in every process (Python's ``hash`` of a string is not), so held
    predictions keep it across restarts.
    """
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True) or 1


def category_keys(values: Sequence[Any] | npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    """Each row's :func:`category_key`, 0 where the value is missing (rows stay aligned)."""
    return _each_row(_spell_rows(values), len(values), _keys, 0, np.int64)


def _keys(texts: npt.NDArray[np.str_]) -> npt.NDArray[np.int64]:
    """The key of each text (one hash per distinct text)."""
    if not len(texts):
        return np.zeros(0, dtype=np.int64)
    distinct, inverse = np.unique(texts, return_inverse=True)
    keys = np.fromiter((category_key(t) for t in distinct.tolist()), np.int64, len(distinct))
    return keys[inverse.ravel()]


@dataclass(frozen=True, slots=True)
class NumericBinning:
    """Fixed bins from the baseline's quantiles: ``edges`` are the inner cut points.

    Bin ``i`` holds ``edges[i-1] <= x < edges[i]``; the first and last bins
    are open to -inf and +inf, so every finite value falls in exactly one.
    """

    edges: FloatArray

    @property
    def size(self) -> int:
        return len(self.edges) + 1

    def count(self, values: FloatArray) -> CountArray:
        if not len(self.edges):  # one bin (a constant field, or edges not known yet)
            return np.array([len(values)], dtype=np.int64)
        return self.count_sorted(np.sort(values))

    def count_sorted(self, ordered: FloatArray) -> CountArray:
        """Bin counts of sorted values: one binary search per edge, none per value."""
        below = np.searchsorted(ordered, self.edges, side="left")  # values < each edge
        return np.diff(below, prepend=0, append=len(ordered)).astype(np.int64, copy=False)

    def indexes(self, values: FloatArray) -> npt.NDArray[np.intp]:
        """The bin of each (finite) value."""
        return np.searchsorted(self.edges, values, side="right")

    def slots(self, values: FloatArray) -> npt.NDArray[np.intp]:
        """The bin of each value, -1 where it is missing or not finite (rows stay aligned)."""
        return np.where(np.isfinite(values), self.indexes(values), -1)

    def labels(self) -> list[str]:
        return [str(i) for i in range(self.size)]


_BOOLEAN_CODES = {"true": "1", "false": "0"}  # CategoricalBinning.class_of
_CODE_BOOLEANS = {code: boolean for boolean, code in _BOOLEAN_CODES.items()}


@dataclass(frozen=True, slots=True)
class CategoricalBinning:
    """The baseline's top categories, frozen, plus ``__other__`` and ``__unseen__``.

    ``known`` holds every category the baseline saw when it could keep them
    all; a value outside the top categories is then ``__other__`` if known
    and ``__unseen__`` if not.  Without ``known`` nothing can be called
    unseen, so every such value is ``__other__``.
    """

    categories: tuple[str, ...]
    known: frozenset[str] | None = None
    index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", {c: i for i, c in enumerate(self.categories)})

    @property
    def size(self) -> int:
        return len(self.categories) + 2

    def labels(self) -> list[str]:
        return [*self.categories, OTHER, UNSEEN]

    def count(self, values: npt.NDArray[np.str_]) -> CountArray:
        if len(values) == 0:
            return np.zeros(self.size, dtype=np.int64)
        distinct, tally = np.unique(values, return_counts=True)
        return self.count_table(dict(zip(distinct.tolist(), tally.tolist(), strict=True)))

    def class_of(self, value: str) -> str:
        """How a class named elsewhere (a label, ``feedback.positive_class``) is spelled among
        these categories: ``true``/``false`` as ``1``/``0`` where they hold codes 0/1 and no
        booleans, and the other way round, as scikit-learn takes ``True == 1``; else itself.

        Each value has one spelling (:mod:`driftgauge.canonical`), so a label ``true`` (a
        pandas boolean column) never met the class ``1`` a classifier predicted.
        """
        seen = self.known if self.known is not None else self.index.keys()
        codes, booleans = not seen.isdisjoint(_CODE_BOOLEANS), not seen.isdisjoint(_BOOLEAN_CODES)
        if codes and not booleans:
            return _BOOLEAN_CODES.get(value, value)
        if booleans and not codes:
            return _CODE_BOOLEANS.get(value, value)
        return value

    def slot(self, value: str) -> int:
        """The bucket of one category."""
        slot = self.index.get(value)
        if slot is None:
            other = self.size - 2
            return other if self.known is None or value in self.known else other + 1
        return slot

    def indexes(self, values: npt.NDArray[np.str_]) -> npt.NDArray[np.intp]:
        """The bucket of each value (one dictionary lookup per distinct value)."""
        if len(values) == 0:
            return np.empty(0, dtype=np.intp)
        distinct, inverse = np.unique(values, return_inverse=True)
        slots = np.fromiter(
            (self.slot(v) for v in distinct.tolist()), dtype=np.intp, count=len(distinct)
        )
        return slots[inverse.ravel()]

    def count_table(self, table: Mapping[str, int]) -> CountArray:
        """Bucket counts from a ``category -> count`` table."""
        counts = np.zeros(self.size, dtype=np.int64)
        for value, n in table.items():
            counts[self.slot(value)] += n
        return counts


@dataclass(slots=True)
class NumericSummary:
    """KLL sketch, exact bin counts and moments of a numeric field.

    ``items`` is what the sketch keeps (:data:`ItemType`); bins and moments
    are always counted from the float64 values.  ``total`` is the sum of the
    finite values; where that overflows float64 (±inf, or NaN where both signs
    did) ``scaled`` holds it times 2**-64, so :attr:`mean` stays their mean.
    """

    binning: NumericBinning
    k: int = 200
    kll: Any = None
    bins: CountArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    count: int = 0
    missing: int = 0
    wrong_type: int = 0
    nan: int = 0
    inf: int = 0
    total: float = 0.0
    minimum: float = float("inf")
    maximum: float = float("-inf")
    items: ItemType = "float64"
    scaled: float = 0.0
    # Sums over the requests that held the field (driftgauge.sketches.requests): live windows
    # only, added by their tracker (update and add take no requests); zeros in a baseline.
    by_request: CountArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def mean(self) -> float:
        """The mean of the finite values (``count`` > 0), within their extremes.

        NaN where the sum overflowed without a scaled sum kept (older files: see the codec).
        """
        if math.isfinite(self.total):
            return self.total / self.count
        mean = self.scaled / self.count * 2.0**-SUM_SCALE  # inf if rounded past float64
        return min(max(mean, self.minimum), self.maximum)  # a NaN, given first, stays NaN

    def __post_init__(self) -> None:
        if self.kll is None:
            self.kll = new_kll(self.k, self.items)
        if len(self.bins) != self.binning.size:
            self.bins = np.zeros(self.binning.size, dtype=np.int64)
        if len(self.by_request) != sums_size(self.binning.size):
            self.by_request = np.zeros(sums_size(self.binning.size), dtype=np.int64)

    def update(self, values: FloatArray, missing: int = 0, wrong_type: int = 0) -> None:
        """Add one column from :func:`to_floats` (its ``nan`` slots include the missing ones)."""
        finite, nan, inf = split_finite(values, missing + wrong_type)
        self.add(finite, self.binning.count(finite), missing, wrong_type, nan, inf)

    def add(
        self,
        finite: FloatArray,
        bin_counts: CountArray,
        missing: int = 0,
        wrong_type: int = 0,
        nan: int = 0,
        inf: int = 0,
        sketch: Any = None,
    ) -> None:
        """Add finite values already counted into this summary's bins (one sketch call).

        ``sketch``, when given, already holds ``finite`` and is merged instead
        of updating with every value again (one sketch of a batch serves every window).
        """
        if len(finite) == 0:
            self.add_counted(finite, 0, 0.0, 0.0, 0.0, None, missing, wrong_type, nan, inf)
            return
        # finite values can still sum beyond float: ±inf, or NaN where both signs did
        with np.errstate(over="ignore", invalid="ignore"):
            total = float(finite.sum())
        self.add_counted(
            finite,
            len(finite),
            total,
            float(finite.min()),
            float(finite.max()),
            bin_counts,
            missing,
            wrong_type,
            nan,
            inf,
            sketch,
        )

    def add_counted(
        self,
        finite: FloatArray,
        count: int,
        total: float,
        minimum: float,
        maximum: float,
        bin_counts: CountArray | None,
        missing: int = 0,
        wrong_type: int = 0,
        nan: int = 0,
        inf: int = 0,
        sketch: Any = None,
    ) -> None:
        """Add ``count`` finite values whose sum and extremes are already known.

        ``bin_counts`` is None when the caller added them already (a shared
        :func:`~driftgauge.sketches.block.bin_table`); ``sketch`` as in :meth:`add`.
        """
        self.missing += missing
        self.wrong_type += wrong_type
        self.nan += nan
        self.inf += inf
        if not count:
            return
        batch_scaled = 0.0 if math.isfinite(total) else scaled_sum(finite)
        if sketch is not None:
            self.kll.merge(sketch)
        else:
            finite = kll_items(finite, self.items, minimum, maximum)
            if not finite.flags.writeable:  # the binding refuses read-only buffers (Arrow's, say)
                finite = finite.copy()
            self.kll.update(finite)
        if bin_counts is not None:
            self.bins += bin_counts
        self.count += count
        self.total, self.scaled = add_sums(self.total, self.scaled, total, batch_scaled)
        if minimum < self.minimum:
            self.minimum = minimum
        if maximum > self.maximum:
            self.maximum = maximum

    def merge(self, other: NumericSummary) -> None:
        self.kll.merge(other.kll)
        self.bins += other.bins
        self.by_request += other.by_request
        self.count += other.count
        self.missing += other.missing
        self.wrong_type += other.wrong_type
        self.nan += other.nan
        self.inf += other.inf
        self.total, self.scaled = add_sums(self.total, self.scaled, other.total, other.scaled)
        self.minimum = min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)

    def empty_like(self, items: ItemType | None = None) -> NumericSummary:
        """An empty summary with the same bins and k, holding ``items`` (by default this one's)."""
        return NumericSummary(binning=self.binning, k=self.k, items=items or self.items)


def frequent_lg(top: int) -> int:
    """log2 of the frequent-items map that finds a training field's ``top`` categories.

    64 slots per category kept (4,096 for the default 50), at most 65,536: with
    30,000 rows of a Zipf(1.3) field among 15,000 one-off ids, the 128 slots of a
    live window's sketch found 4 of the true top 50 and 4,096 found all 50.  The
    map grows only as distinct values arrive, so a field of few categories pays nothing.
    """
    return min(16, max(7, math.ceil(math.log2(64 * top))))


def training_frequent(top: int) -> Any:
    """An empty frequent-items sketch for a baseline build keeping ``top`` categories."""
    return ds.frequent_strings_sketch(frequent_lg(top))


@dataclass(slots=True)
class CategoricalSummary:
    """Exact counts over the baseline's frozen categories, frequent items and cardinality."""

    binning: CategoricalBinning
    lg_max_items: int = 7
    hll_lg_k: int = 12
    frequent: Any = None
    hll: Any = None
    bins: CountArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    count: int = 0
    missing: int = 0
    by_request: CountArray = field(
        default_factory=lambda: np.zeros(0, dtype=np.int64)
    )  # as numeric

    def __post_init__(self) -> None:
        if self.frequent is None:
            self.frequent = ds.frequent_strings_sketch(self.lg_max_items)
        if self.hll is None:
            self.hll = ds.hll_sketch(self.hll_lg_k)
        if len(self.bins) != self.binning.size:
            self.bins = np.zeros(self.binning.size, dtype=np.int64)
        if len(self.by_request) != sums_size(self.binning.size):
            self.by_request = np.zeros(sums_size(self.binning.size), dtype=np.int64)

    def update(self, values: npt.NDArray[np.str_], missing: int = 0) -> None:
        """Add one column of category strings (missing values already removed)."""
        distinct, tally = np.unique(values, return_counts=True)
        table = dict(zip(distinct.tolist(), tally.tolist(), strict=True))
        self.add(distinct, tally, self.binning.count_table(table), missing)

    def add(
        self,
        distinct: npt.NDArray[np.str_],
        tally: CountArray,
        bin_counts: CountArray,
        missing: int = 0,
    ) -> None:
        """Add a column given as its distinct values, their counts and its bucket counts."""
        self.missing += missing
        for value, n in zip(distinct.tolist(), tally.tolist(), strict=True):
            self.frequent.update(value, n)
            self.hll.update(value)
        self.bins += bin_counts
        self.count += int(tally.sum())

    def merge(self, other: CategoricalSummary) -> None:
        self.frequent.merge(other.frequent)
        union = ds.hll_union(self.hll_lg_k)
        union.update(self.hll)
        union.update(other.hll)
        self.hll = union.get_result(ds.tgt_hll_type.HLL_4)
        self.bins += other.bins
        self.by_request += other.by_request
        self.count += other.count
        self.missing += other.missing

    def empty_like(self) -> CategoricalSummary:
        return CategoricalSummary(
            binning=self.binning, lg_max_items=self.lg_max_items, hll_lg_k=self.hll_lg_k
        )

    @property
    def unseen(self) -> int:
        return int(self.bins[-1])


Summary = NumericSummary | CategoricalSummary
