"""Where a numeric field's baseline bin edges go.

The rule, for ``B`` bins (``sketch.bins``):

1. **Point masses get a bin of their own.**  A value holding at least 1/B
   of the baseline's mass (the zeros of a zero-inflated amount, the levels
   of a count or a flag) is a bin ``[v, v]``, so a shift in the rest of the
   distribution is not hidden behind it.
2. **The rest is split into equal-mass bins**: ``B`` minus the number of
   point masses, at the quantiles of the values that are not point masses,
   so the total stays ``B`` and the continuous part keeps its resolution.
   Quantiles that coincide (ties) collapse into one edge.
3. **Edges sit between float32 values.**  Every edge is the lower boundary
   of a float32 rounding class (the midpoint between two adjacent float32
   numbers), never a data value.  Two values equal at float32 precision,
   such as 0.2 from a float64 CSV and 0.20000000298 from an FP32 tensor,
   therefore always fall in the same bin; an edge never splits a tie.
4. **A constant field has three bins** (:func:`constant_edges`): below its
   value, its value, and above (with ``B = 2``: its value or below, and
   above).  The baseline's end bins are empty, which the rule otherwise
   avoids, but a single bin would keep PSI at 0 whatever arrives.

Bin ``i`` holds ``edges[i-1] <= x < edges[i]`` (see
:class:`~driftgauge.sketches.summary.NumericBinning`).  The baseline build
applies the rule exactly, to counts of float32 classes
(:mod:`driftgauge.sketches.classes`); :func:`equal_mass_edges` applies it to
a KLL sketch, where no exact counts exist (a merge of baselines built with
different edges) and as the build's guess of where the exact edges fall.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "EDGE_SKETCH_K",
    "bin_ranges",
    "constant_edges",
    "equal_mass_edges",
    "float32_ceiling",
    "float32_floor",
]

FloatArray = npt.NDArray[np.float64]

# KLL accuracy of the sketch the baseline's edges come from (rank error ≈ 0.07%).
EDGE_SKETCH_K = 4096
# Ranks probed when looking for point masses and residual quantiles: far finer than any bin.
_GRID = 4_096


def float32_floor(values: npt.ArrayLike) -> FloatArray:
    """The lower boundary of each value's float32 rounding class, as float64.

    ``x >= float32_floor(v)`` exactly when ``x`` rounds to ``float32(v)`` or
    above (round-half-even decides a value exactly between two float32s).
    Values beyond the float32 range are returned as they are.
    """
    array = np.asarray(values, dtype=np.float64)
    with np.errstate(over="ignore"):
        single = array.astype(np.float32)
        below = np.nextafter(single, np.float32(-np.inf))
    midpoint = (single.astype(np.float64) + below.astype(np.float64)) / 2
    # A value exactly on the midpoint rounds to the neighbour with an even last bit.
    even = (single.view(np.uint32) & 1) == 0
    boundary = np.where(even, midpoint, np.nextafter(midpoint, np.inf))
    # The class of -max(float32) reaches down to where rounding overflows: -inf will do.
    boundary = np.where(np.isfinite(below), boundary, -np.inf)
    return np.where(np.isfinite(single), boundary, array)


def float32_ceiling(values: FloatArray) -> FloatArray:
    """The upper boundary of each value's float32 rounding class (the next class's floor)."""
    with np.errstate(over="ignore"):
        single = values.astype(np.float32)
        above = np.nextafter(single, np.float32(np.inf))
    ceiling = np.where(np.isfinite(above), float32_floor(above.astype(np.float64)), np.inf)
    with np.errstate(over="ignore"):
        return np.where(np.isfinite(single), ceiling, np.nextafter(values, np.inf))


def constant_edges(bins: int, minimum: float, maximum: float) -> FloatArray | None:
    """The edges of a field whose values all round to one float32, else None: that class's
    lower and upper boundaries (the upper one only for two bins), so a value below or
    above it has a bin of its own."""
    floor = float32_floor([minimum, maximum])
    if floor[0] != floor[1]:
        return None
    ceiling = float32_ceiling(np.asarray([maximum], dtype=np.float64))
    return ceiling if bins < 3 else np.asarray([floor[0], ceiling[0]])


def equal_mass_edges(sketch: Any, bins: int, minimum: float, maximum: float) -> FloatArray:
    """The inner bin edges of a field whose values ``sketch`` (a KLL sketch) summarises.

    ``minimum`` and ``maximum`` are the exact extremes; no edge is placed at
    or below the minimum or above the maximum, where it would leave an end
    bin empty in the baseline, unless the field is constant (:func:`constant_edges`).
    """
    if sketch.is_empty() or bins < 2:
        return np.empty(0)
    constant = constant_edges(bins, minimum, maximum)
    if constant is not None:
        return constant
    ranks = np.linspace(0.0, 1.0, _GRID + 1)
    values = np.unique(np.asarray(sketch.get_quantiles(ranks), dtype=np.float64))
    points = values.tolist()
    below = np.asarray(sketch.get_cdf(points, False), dtype=np.float64)[:-1]
    upto = np.asarray(sketch.get_cdf(points, True), dtype=np.float64)[:-1]
    mass = upto - below
    heavy = mass >= 1.0 / bins
    while True:
        edges = _edges(values, upto, mass, heavy, bins, minimum, maximum)
        edges = _close_gaps(sketch, edges)
        if len(edges) < bins or not heavy.any():
            return edges
        # Point masses inside the range split the rest into more runs than there are bins
        # left for it: the lightest point mass goes back to the equal-mass part.
        lightest = np.flatnonzero(heavy)[np.argmin(mass[heavy])]
        heavy[lightest] = False


def _edges(
    values: FloatArray,
    upto: FloatArray,
    mass: FloatArray,
    heavy: npt.NDArray[np.bool_],
    bins: int,
    minimum: float,
    maximum: float,
) -> FloatArray:
    """The edges around the point masses ``values[heavy]`` and between equal-mass bins of the rest."""
    masses = values[heavy]
    edges = [float32_floor(masses), float32_ceiling(masses)]
    rest = bins - len(masses)
    residual = 1.0 - float(mass[heavy].sum())
    if rest >= 2 and residual > 0:
        # The share of the non-point-mass values at or below each grid value; each edge goes
        # below the first value reaching its target share (the residual's inverse CDF).
        heavy_upto = np.cumsum(np.where(heavy, mass, 0.0))
        share = (upto - heavy_upto) / residual
        targets = np.arange(1, rest) / rest
        candidates = np.flatnonzero(~heavy)
        if len(candidates):
            at = np.searchsorted(share[candidates], targets - 1e-12, side="left")
            chosen = candidates[at[at < len(candidates)]]
            edges.append(float32_floor(values[chosen]))
    merged = np.unique(np.concatenate(edges))
    return merged[(merged > minimum) & (merged <= maximum)]


def _close_gaps(sketch: Any, edges: FloatArray) -> FloatArray:
    """Replace the two edges of each interior bin the sketch holds nothing in by one midpoint.

    Point masses side by side (the levels 0, 1, 2 of a code) leave such
    empty bins between them; a value that later falls in a gap goes to the
    nearer level's bin instead of to a bin the baseline never filled.
    """
    if len(edges) < 2:
        return edges
    below = np.asarray(sketch.get_cdf(edges.tolist(), False), dtype=np.float64)[:-1]
    empty = np.flatnonzero(np.diff(below) <= 0)  # bin i+1 lies between edges i and i+1
    if not len(empty):
        return edges
    kept = np.ones(len(edges), dtype=bool)
    result = edges.copy()
    for i in empty.tolist():
        if kept[i] and kept[i + 1]:
            result[i] = float32_floor([edges[i] / 2 + edges[i + 1] / 2])[0]
            kept[i + 1] = False
    return result[kept]


def bin_ranges(
    edges: FloatArray, minimum: float, maximum: float, float64: bool = False
) -> list[str]:
    """Each bin as readable text: ``= v`` for a single value's bin, else its range.

    The end bins are open to ±inf; they are shown from the minimum and to
    the maximum the baseline saw.  A range beside a single value's bin is
    shown open at that value (``(0, 0.59)``, not from the class boundary
    just above 0, 7.00649e-46).  The edges of a field of ``float64`` classes
    (:class:`~driftgauge.sketches.classes.FineClasses`) are float64 values,
    shown in full.
    """
    if float64:
        return _float64_ranges(edges, minimum, maximum)
    if not len(edges):
        return [f"= {minimum:.7g}" if minimum == maximum else f"[{minimum:.6g}, {maximum:.6g}]"]
    bounds = [-math.inf, *map(float, edges), math.inf]
    singles: list[float | None] = [
        _single_value(low, high, minimum, maximum) for low, high in itertools.pairwise(bounds)
    ]
    texts = []
    for i, single in enumerate(singles):
        low, high = bounds[i], bounds[i + 1]
        before = singles[i - 1] if i else None
        after = singles[i + 1] if i + 1 < len(singles) else None
        if high <= minimum:  # a constant field's empty end bins
            texts.append(f"< {minimum:.7g}")
        elif low > maximum:
            texts.append(f"> {maximum:.7g}")
        elif single is not None:
            texts.append(f"= {single:.7g}")
        else:
            start = (
                f"({before:.7g}"
                if before is not None
                else f"[{minimum if low == -math.inf else low:.6g}"
            )
            end = (
                f"{maximum:.6g}]"
                if high == math.inf
                else f"{after:.7g})"
                if after is not None
                else f"{high:.6g})"
            )
            texts.append(f"{start}, {end}")
    return texts


def _float64_ranges(edges: FloatArray, minimum: float, maximum: float) -> list[str]:
    """:func:`bin_ranges` of float64 edges: a bin of one float64 value is ``= v``."""
    bounds = [-math.inf, *map(float, edges), math.inf]
    texts = []
    for low, high in itertools.pairwise(bounds):
        if math.isfinite(low) and high == math.nextafter(low, math.inf):
            texts.append(f"= {low!r}")
        else:
            start = minimum if low == -math.inf else low
            end = f"{maximum!r}]" if high == math.inf else f"{high!r})"
            texts.append(f"[{start!r}, {end}")
    return texts


def _single_value(low: float, high: float, minimum: float, maximum: float) -> float | None:
    """The value of bin ``[low, high)`` if it holds one float32 class of the data, else None."""
    if low == -math.inf:
        return minimum if high == float32_ceiling(np.asarray([minimum]))[0] else None
    if high == math.inf:
        return maximum if low == float32_floor([maximum])[0] else None
    return float(np.float32((low + high) / 2)) if _single_class(low, high) else None


def _single_class(low: float, high: float) -> bool:
    """Whether ``[low, high)`` is exactly one float32 rounding class."""
    centre = np.asarray([float(np.float32((low + high) / 2))])
    return bool(float32_floor(centre)[0] == low and float32_ceiling(centre)[0] == high)
