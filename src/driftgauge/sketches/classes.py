"""Exact counts of float32 rounding classes, and the bin-edge rule computed on them.

The baseline's bin edges are boundaries of float32 rounding classes
(:mod:`driftgauge.sketches.edges`), so the exact rule needs no more than the
count of values in each class.  Classes are numbered by an order-preserving
32-bit key.  The count of every class is too much to hold, so it is taken in
two steps, each exact and mergeable by addition, so the result does not
depend on how the data was split or in which order the parts were merged:

1. ``buckets``: the count of each of the 65,536 *buckets* of classes sharing
   the key's high 16 bits, held for the occupied buckets only (:class:`KeyCounts`);
2. the count of each class inside the few buckets the rule needs
   (:class:`ClassCounts`): the buckets that may hold a point mass, and those
   holding an equal-mass target.

:func:`class_edges` applies the rule of :mod:`~driftgauge.sketches.edges` to
these counts and returns the edges with the exact count of every bin, or the
buckets it still needs counted class by class.

A field whose training data holds a large share of values float32 rounds
alike but float64 tells apart (:class:`MergedClasses`: timestamps in
nanoseconds, amounts of 10^9 and cents, values beyond float32's range) has
its classes numbered by :class:`FineClasses` instead, runs of consecutive
float64 values over the field's range: the same rule, at float64 precision.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from driftgauge.sketches.edges import constant_edges, float32_floor

__all__ = [
    "BUCKETS",
    "FLOAT32_CLASSES",
    "NO_CLASS",
    "ClassCounts",
    "ClassEdges",
    "FineClasses",
    "Float32Classes",
    "KeyCounts",
    "Keying",
    "MergedClasses",
    "add_sorted_bucket_counts",
    "class_edges",
    "class_keys",
    "float32_classes",
    "float32_normal",
    "occupied",
]

FloatArray = npt.NDArray[np.float64]
SingleArray = npt.NDArray[np.float32]
Floats = npt.NDArray[np.floating[Any]]  # float64 values, or float32 classes
KeyArray = npt.NDArray[np.uint32]
CountArray = npt.NDArray[np.int64]

BUCKETS = 1 << 16
_LOW = 16
_SIGN = np.uint32(0x80000000)
_F32_MAX = float(np.finfo(np.float32).max)
_F32_TINY = float(np.finfo(np.float32).smallest_normal)
# A key past every class's (+max float32's is 0xFF7FFFFF), in a bucket no value falls in:
# what pads a column's sorted keys to the column's length.
NO_CLASS = np.uint32(0xFFFFFFFF)
# Class counts gathered before they are combined (np.unique): at most this many, or as many
# as the classes counted so far.  The memory a ClassCounts holds is then at most about twice
# its distinct classes (and 0.8 MB): a build's parent merging many parts stays flat.
_PENDING = 1 << 16


def float32_classes(values: Floats) -> SingleArray:
    """Each finite value's float32 rounding class as a float32 value, ordered as the classes.

    Values beyond the float32 range belong to the end classes (those of
    ±max float32, which reach out to ±inf); -0.0 and 0.0 share a class (0.0).
    Sorting these float32 values orders the classes (in 60% of a float64 sort's time).
    """
    within = values if values.dtype == np.float32 else np.clip(values, -_F32_MAX, _F32_MAX)
    single: SingleArray = within.astype(np.float32)
    single += np.float32(0.0)
    return single


def float32_normal(values: FloatArray) -> bool:
    """Whether float32 rounds each of ``values`` within 2^-24 of it (relative): none lies
    beyond float32's range or, but 0, below its normal range."""
    magnitude = np.abs(values)
    return bool(
        magnitude.max(initial=0.0) <= _F32_MAX
        and ((magnitude >= _F32_TINY) | (magnitude == 0.0)).all()
    )


def class_keys(values: Floats) -> KeyArray:
    """The order-preserving key of each finite value's float32 rounding class
    (:func:`float32_classes`)."""
    single = float32_classes(values)
    bits = single.view(np.uint32)
    # Negative values: all bits flipped; others: the sign bit set.
    flip = (single.view(np.int32) >> 31).view(np.uint32) | _SIGN
    keys: KeyArray = bits ^ flip
    return keys


def class_values(keys: KeyArray) -> FloatArray:
    """The float32 value of each class key, as float64 (a key past +max gives +inf)."""
    keys = np.asarray(keys, dtype=np.uint32)
    bits = np.where(keys >> 31 != 0, keys ^ _SIGN, ~keys).astype(np.uint32)
    values: FloatArray = bits.view(np.float32).astype(np.float64)
    return values


@dataclass(frozen=True, slots=True)
class Float32Classes:
    """Classes as float32 rounds values (:func:`class_keys`): every field's, unless it is fine."""

    def keys(self, values: Floats) -> KeyArray:
        return class_keys(values)

    def floors(self, keys: KeyArray) -> FloatArray:
        """The lower boundary of each class, as float64 (+inf for a key past +max)."""
        return float32_floor(class_values(keys))


FLOAT32_CLASSES = Float32Classes()

_LOW_63 = (1 << 63) - 1
_INF_ORDER = 0x7FF0000000000000  # the order of +inf; -inf's is -1 - this
# Fine classes span at most 2^31 keys: every key is below NO_CLASS's bucket.
_FINE_BITS = 31


def _order(value: float) -> int:
    """A float64's place among all float64 values, as an integer (-0.0 is 0.0's)."""
    (bits,) = struct.unpack("<q", struct.pack("<d", value + 0.0))
    return int(bits) if bits >= 0 else -1 - (bits & _LOW_63)


def _of_order(order: int) -> float:
    order = max(-1 - _INF_ORDER, min(_INF_ORDER, order))
    bits = order if order >= 0 else (1 << 63) | (-1 - order)
    (value,) = struct.unpack("<d", struct.pack("<Q", bits))
    return float(value)


@dataclass(frozen=True, slots=True)
class FineClasses:
    """Classes finer than float32's for a field whose data needs them (:class:`MergedClasses`).

    Class ``k`` holds the float64 values whose place among all float64 values,
    counted from the field's minimum's (``base``), is ``k·2^shift`` to
    ``(k + 1)·2^shift − 1``: the range from the minimum to the maximum in at
    most 2^31 classes.  A field spanning less than 2^31 float64 values
    (10^9 ± 100, 1.7·10^18 ± 10^9, 1 ± 10^-7) has a class for each value; a
    wider one keeps 31 bits over the binades it spans (2^-29 of a value over
    10^39 to 10^40), where float32 keeps 24 over the binades its range holds.
    """

    base: int
    shift: int

    @classmethod
    def spanning(cls, minimum: float, maximum: float) -> FineClasses:
        base = _order(minimum)
        return cls(base, max(0, (_order(maximum) - base).bit_length() - _FINE_BITS))

    def keys(self, values: Floats) -> KeyArray:
        """Each value's class (values are within the range the classes span)."""
        bits = np.asarray(values, dtype=np.float64) + 0.0  # -0.0 is 0.0
        signed = bits.view(np.int64)
        order = np.where(signed >= 0, signed, -1 - (signed & _LOW_63))
        # Places relative to the minimum's, in uint64: the span can exceed int64's range.
        place = order.view(np.uint64) - np.uint64(self.base % (1 << 64))
        keys: KeyArray = np.minimum(place >> np.uint64(self.shift), (1 << _FINE_BITS) - 1).astype(
            np.uint32
        )
        return keys

    def floors(self, keys: KeyArray) -> FloatArray:
        """The lower boundary of each class: the least float64 value in it (the edge rule
        takes only a few)."""
        return np.asarray(
            [_of_order(self.base + (int(k) << self.shift)) for k in np.asarray(keys).tolist()],
            dtype=np.float64,
        )


Keying = Float32Classes | FineClasses
"""How a field's values are numbered into classes."""


def _class_index(held: SingleArray, classes: SingleArray) -> npt.NDArray[np.intp]:
    """The place of each of ``classes`` among ``held`` (sorted float32 classes), or -1.

    By a table of the buckets when each held class has a bucket of its own (point masses,
    levels), which costs a tenth of a binary search a value."""
    keys = class_keys(held).astype(np.int64)
    buckets = keys >> _LOW
    if not len(classes) or len(np.unique(buckets)) < len(buckets):
        place = np.minimum(np.searchsorted(held, classes), max(len(held) - 1, 0))
        return np.where(held[place] == classes, place, -1) if len(held) else place - 1
    table = np.full(BUCKETS, -1, dtype=np.int32)
    table[buckets] = np.arange(len(held))
    wanted = class_keys(classes)
    place = table[wanted >> _LOW].astype(np.intp)
    return np.where((place >= 0) & (keys[place] == wanted), place, -1)


@dataclass(slots=True)
class MergedClasses:
    """Whether float32 rounds alike a large share of a field's values that differ.

    Each chunk's float32 classes holding at least half of ``share`` of it are
    kept with their count and one float64 value of theirs, marked ``distinct``
    when they hold another value; merged by adding the counts and comparing
    the values.  :attr:`fine` is true when a class of distinct values holds at
    least ``share / 2`` of the data.  So when it is false, no float32 class
    holds ``share`` or more of the data beyond its most common value (a
    class's values in the chunks that did not keep it are under ``share / 2``
    of the data; its kept values are one value, or under ``share / 2`` too).
    ``share`` is the live sketch's rank error: a finer distinction is within
    what KS and the quantiles can read anyway.
    """

    share: float
    total: int = 0
    # float32 class value -> [count, one float64 value in it, whether it holds another]
    classes: dict[float, list[Any]] = field(default_factory=dict)

    def add(self, finite: FloatArray, classes: SingleArray, ordered: SingleArray) -> None:
        """Add a chunk: its finite values, their :func:`float32_classes`, and those sorted."""
        count = len(ordered)
        self.total += count
        # (A chunk of fewer than 2 / share values keeps every class.)
        least = max(1, math.ceil(self.share / 2 * count))
        # The common case, no class that large (a continuous field): one comparison a value.
        if not count or not (ordered[least - 1 :] == ordered[: count - least + 1]).any():
            return
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        lengths = np.diff(np.r_[starts, count])
        heavy = lengths >= least
        held, sizes = ordered[starts[heavy]], lengths[heavy]
        # Values equal to their class's float32 are one value: only the others in the large
        # classes (none for point masses, levels and float32 data) are looked at.
        some = held.astype(np.float64)
        distinct = np.zeros(len(held), dtype=np.bool_)
        inexact = np.flatnonzero(finite != classes)
        index = _class_index(held, classes[inexact])
        found = index >= 0
        if found.any():
            index, others = index[found], finite[inexact[found]]
            some[index] = others  # any one of them
            distinct = np.bincount(index, weights=others != some[index], minlength=len(held)) > 0
            # ... and beside the class's own float32 value, if it holds that too.
            looked_at = np.bincount(index, minlength=len(held))
            distinct |= (looked_at > 0) & (looked_at < sizes)
        rows = zip(held.tolist(), sizes.tolist(), some.tolist(), distinct.tolist(), strict=True)
        self._add({c: [n, value, d] for c, n, value, d in rows})

    def _add(self, classes: dict[float, list[Any]]) -> None:
        for key, (count, value, distinct) in classes.items():
            mine = self.classes.get(key)
            if mine is None:
                self.classes[key] = [count, value, distinct]
            else:
                mine[0] += count
                mine[2] = mine[2] or distinct or mine[1] != value

    def merge(self, other: MergedClasses) -> None:
        self.total += other.total
        self._add(other.classes)

    @property
    def fine(self) -> bool:
        least = self.share / 2 * self.total
        return any(distinct and count >= least for count, _, distinct in self.classes.values())


@dataclass(slots=True)
class KeyCounts:
    """Counts of integer keys: the sorted distinct ``keys`` and the ``counts`` of each.

    Counts are staged, and combined (:meth:`compact`) once as many are staged
    as held, so that adding, merging and pickling cost the keys occupied, not
    the key space: a part's values occupy a few thousand of the 65,536 buckets,
    where a dense array was 512 KB per field to allocate, fill, send and add
    for every part.  The memory held is at most about twice the distinct keys.
    """

    keys: KeyArray = field(default_factory=lambda: np.empty(0, dtype=np.uint32))
    counts: CountArray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    _pending: list[tuple[KeyArray, CountArray]] = field(default_factory=list)
    _pending_size: int = 0

    def stage(self, keys: KeyArray, counts: CountArray) -> None:
        """Add ``counts[i]`` to the count of ``keys[i]`` (a key may repeat)."""
        if not len(keys):
            return
        self._pending.append((keys, counts))
        self._pending_size += len(keys)
        if self._pending_size > max(_PENDING, len(self.keys)):
            self.compact()

    def merge(self, other: KeyCounts) -> None:
        other.compact()
        self.stage(other.keys, other.counts)

    def compact(self) -> None:
        """Fold the staged counts into ``keys`` and ``counts`` (sorted, one entry per key)."""
        if not self._pending:
            return
        keys = np.concatenate([self.keys, *(k for k, _ in self._pending)])
        counts = np.concatenate([self.counts, *(c for _, c in self._pending)])
        self._pending, self._pending_size = [], 0
        self.keys, inverse = np.unique(keys, return_inverse=True)
        self.counts = np.bincount(inverse, weights=counts, minlength=len(self.keys)).astype(
            np.int64
        )

    def __getstate__(self) -> dict[str, Any]:
        self.compact()
        return {"keys": self.keys, "counts": self.counts}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.keys, self.counts = state["keys"], state["counts"]
        self._pending, self._pending_size = [], 0


def add_sorted_bucket_counts(
    counts: KeyCounts, ordered: Floats, keying: Keying = FLOAT32_CLASSES
) -> KeyArray:
    """Add to ``counts`` the count of ``ordered`` (finite, ascending) in each bucket, and
    return their class keys (ascending too).

    ``ordered`` may be sorted :func:`float32_classes` (for float32 classes: the classes are
    the same).  Sorted values fill runs of buckets, counted run by run.
    """
    keys = keying.keys(ordered)
    if len(keys):
        high = keys >> np.uint32(_LOW)
        starts = np.flatnonzero(np.r_[True, high[1:] != high[:-1]])
        counts.stage(high[starts], np.diff(np.r_[starts, len(high)]))
    return keys


@dataclass(slots=True)
class ClassCounts(KeyCounts):
    """Exact counts of each class of values falling in the buckets ``wanted``."""

    wanted: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(BUCKETS, np.bool_))
    keying: Keying = FLOAT32_CLASSES

    @classmethod
    def of(cls, buckets: npt.ArrayLike, keying: Keying = FLOAT32_CLASSES) -> ClassCounts:
        wanted = np.zeros(BUCKETS, dtype=np.bool_)
        wanted[np.asarray(buckets, dtype=np.intp)] = True
        return cls(wanted=wanted, keying=keying)

    def add(self, values: FloatArray) -> None:
        keys = self.keying.keys(values)
        keys = keys[self.wanted[keys >> _LOW]]
        self.stage(keys, np.ones(len(keys), dtype=np.int64))

    def add_sorted(self, keys: KeyArray) -> None:
        """Add the classes of sorted ``keys`` (:func:`add_sorted_bucket_counts`' result, maybe
        padded with :data:`NO_CLASS`): two binary searches per wanted bucket, and a count of
        the runs found, instead of a key per value (the same counts as :meth:`add`)."""
        buckets = np.flatnonzero(self.wanted[: BUCKETS - 1]).astype(np.uint32)
        starts = np.searchsorted(keys, buckets << np.uint32(_LOW))
        stops = np.searchsorted(keys, (buckets + np.uint32(1)) << np.uint32(_LOW))
        runs = [keys[a:b] for a, b in zip(starts.tolist(), stops.tolist(), strict=True) if b > a]
        if not runs:
            return
        found = np.concatenate(runs)  # ascending, as the buckets are
        first = np.flatnonzero(np.r_[True, found[1:] != found[:-1]])
        self.stage(found[first], np.diff(np.r_[first, len(found)]))

    def __getstate__(self) -> dict[str, Any]:
        return {
            "wanted": np.flatnonzero(self.wanted),
            "keying": self.keying,
            **KeyCounts.__getstate__(self),
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.wanted = np.zeros(BUCKETS, dtype=np.bool_)
        self.wanted[state["wanted"]] = True
        self.keying = state["keying"]
        KeyCounts.__setstate__(self, state)


@dataclass(frozen=True, slots=True)
class ClassEdges:
    """The rule's result: inner edges and exact bin counts, or the buckets still needed."""

    edges: FloatArray
    counts: CountArray
    needed: frozenset[int] = frozenset()


def occupied(buckets: CountArray | KeyCounts) -> tuple[npt.NDArray[np.int64], CountArray]:
    """The buckets holding values, ascending, and how many each holds: from bucket counts
    held sparse (:class:`KeyCounts`), or from a count for every bucket."""
    if isinstance(buckets, KeyCounts):
        buckets.compact()
        return buckets.keys.astype(np.int64), buckets.counts
    held = np.flatnonzero(buckets)
    return held, buckets[held]


class _Cdf:
    """Counts below class keys, from bucket counts and the classes counted one by one."""

    def __init__(
        self, buckets: npt.NDArray[np.int64], through: CountArray, classes: ClassCounts
    ) -> None:
        classes.compact()
        self.buckets, self.through = buckets, through  # occupied, and the values up to each
        self.keys, self.counts = classes.keys, classes.counts
        self.refined, self.keying = classes.wanted, classes.keying
        self.needed: set[int] = set()

    def before(self, bucket: int) -> int:
        """How many values lie in buckets before ``bucket``."""
        index = int(np.searchsorted(self.buckets, bucket))
        return int(self.through[index - 1]) if index else 0

    def below(self, key: int) -> int:
        """How many values lie in classes before ``key`` (0 if its bucket is not counted)."""
        bucket, low = key >> _LOW, key & (BUCKETS - 1)
        if bucket >= BUCKETS:
            return self.before(BUCKETS)
        if low == 0:
            return self.before(bucket)
        if not self.refined[bucket]:
            self.needed.add(bucket)
            return self.before(bucket)
        start = np.searchsorted(self.keys, bucket << _LOW)
        stop = np.searchsorted(self.keys, key)
        return self.before(bucket) + int(self.counts[start:stop].sum())


def class_edges(
    buckets: CountArray | KeyCounts,
    classes: ClassCounts,
    bins: int,
    minimum: float,
    maximum: float,
) -> ClassEdges:
    """The rule of :mod:`driftgauge.sketches.edges`, exactly, on class counts.

    ``buckets`` holds every finite value's bucket count (see :func:`occupied`)
    and ``classes`` the class counts of some buckets; ``minimum`` and
    ``maximum`` are the exact extremes.  When the rule needs a bucket
    ``classes`` did not count, the result names it in ``needed`` (its edges and
    counts are then not final).  Point masses are classes holding at least 1/B
    of the values; each of the B − P residual edges goes below the value at
    position ⌈jR/(B − P)⌉ of the R non-point-mass values in order.  The work is
    in the occupied buckets (a few thousand), not all 65,536.
    """
    held, counts = occupied(buckets)
    through = np.cumsum(counts)
    total = int(through[-1]) if len(through) else 0
    if total == 0 or bins < 2:
        return ClassEdges(np.empty(0), np.asarray([total], dtype=np.int64))
    # Fine classes are never one: a field is fine for values float32 rounds alike that differ.
    constant = constant_edges(bins, minimum, maximum) if classes.keying == FLOAT32_CLASSES else None
    if constant is not None:  # the value's bin holds everything; the others are empty
        bin_counts = np.zeros(len(constant) + 1, dtype=np.int64)
        bin_counts[len(constant) // 2] = total
        return ClassEdges(constant, bin_counts)
    heavy_buckets = held[counts * bins >= total]
    missing = frozenset(int(b) for b in heavy_buckets if not classes.wanted[b])
    if missing:
        return ClassEdges(np.empty(0), np.asarray([total], dtype=np.int64), missing)
    cdf = _Cdf(held, through, classes)
    heavy = cdf.counts * bins >= total
    while True:
        keys = _edge_keys(cdf, counts, heavy, bins, total)
        if cdf.needed:
            return ClassEdges(
                np.empty(0), np.asarray([total], dtype=np.int64), frozenset(cdf.needed)
            )
        edges, below = _close_gaps(cdf, keys, minimum, maximum)
        if len(edges) < bins or not heavy.any():
            bin_counts = np.diff(np.concatenate([[0], below, [total]])).astype(np.int64)
            return ClassEdges(edges, bin_counts)
        # As in the sketch rule: the lightest point mass goes back to the equal-mass part.
        candidates = np.flatnonzero(heavy)
        heavy[candidates[np.argmin(cdf.counts[candidates])]] = False


def _edge_keys(
    cdf: _Cdf, counts: CountArray, heavy: npt.NDArray[np.bool_], bins: int, total: int
) -> KeyArray:
    """The class keys whose lower boundaries are edges: around point masses, between the rest.

    ``counts``: the values in each of ``cdf.buckets``."""
    masses = cdf.keys[heavy].astype(np.int64)
    keys = [masses, masses + 1]
    rest = bins - len(masses)
    residual = total - int(cdf.counts[heavy].sum())
    if rest >= 2 and residual > 0:
        # Each occupied bucket's values outside the point masses, and those up to it.
        in_masses = np.zeros(len(counts), dtype=np.int64)
        np.add.at(in_masses, np.searchsorted(cdf.buckets, masses >> _LOW), cdf.counts[heavy])
        rest_through = np.cumsum(counts - in_masses)
        light = ~heavy
        for j in range(1, rest):
            position = min((j * residual + rest - 1) // rest, residual - 1)
            index = int(np.searchsorted(rest_through, position + 1, side="left"))
            bucket = int(cdf.buckets[index])
            if not cdf.refined[bucket]:
                cdf.needed.add(bucket)
                continue
            start = np.searchsorted(cdf.keys, bucket << _LOW)
            stop = np.searchsorted(cdf.keys, (bucket + 1) << _LOW)
            inside = np.arange(start, stop)[light[start:stop]]
            before = int(rest_through[index - 1]) if index else 0
            reached = before + np.cumsum(cdf.counts[inside])
            keys.append(cdf.keys[inside[np.searchsorted(reached, position + 1)]][None])
    merged: KeyArray = np.unique(np.concatenate(keys)).astype(np.int64)
    return merged


def _close_gaps(
    cdf: _Cdf, keys: npt.NDArray[Any], minimum: float, maximum: float
) -> tuple[FloatArray, CountArray]:
    """The edges (within the data's range) and the count below each, empty bins closed.

    As in the sketch rule, the two edges of an inner bin holding no value
    become one edge halfway between them.
    """
    keying = cdf.keying
    edges = keying.floors(keys.astype(np.uint32))
    keep = (edges > minimum) & (edges <= maximum)
    edges, keys = edges[keep], keys[keep]
    below = np.asarray([cdf.below(int(k)) for k in keys], dtype=np.int64)
    if len(edges) < 2:
        return edges, below
    empty = np.flatnonzero(np.diff(below) == 0)
    kept = np.ones(len(edges), dtype=bool)
    result = edges.copy()
    for i in empty.tolist():
        if kept[i] and kept[i + 1]:
            middle = np.asarray([edges[i] / 2 + edges[i + 1] / 2])
            result[i] = keying.floors(keying.keys(middle))[0]
            kept[i + 1] = False
    return result[kept], below[kept]
