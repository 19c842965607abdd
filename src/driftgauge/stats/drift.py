"""Drift statistics: pure functions over bin counts and quantile sketches, no I/O.

Smoothing for PSI: each bin's share is floored at ``PSI_FLOOR`` (1e-4)
before the logarithm, both for the live window and for the baseline, so an
empty bin adds a large but finite term instead of infinity.  The floor is
the same one the Prometheus recording rules apply with ``clamp_min``, so a
fleet-wide PSI computed by Prometheus matches the sidecar's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import datasketches as ds
import numpy as np
import numpy.typing as npt
from scipy import special

__all__ = [
    "PSI_FLOOR",
    "CdfTable",
    "cdf_table",
    "chi2_pvalue",
    "js_distance",
    "ks_pvalue",
    "ks_rank_error",
    "ks_statistic",
    "psi",
    "psi_noise_floor",
    "shares",
]

PSI_FLOOR = 1e-4

CountLike = npt.ArrayLike


def shares(counts: CountLike) -> npt.NDArray[np.float64]:
    """Counts as proportions summing to one (all zeros stay zeros)."""
    array = np.asarray(counts, dtype=np.float64)
    total = array.sum()
    return array / total if total > 0 else np.zeros_like(array)


def psi(live: CountLike, baseline: CountLike) -> float:
    """Population stability index Σ (p − q)·ln(p / q) over shares floored at ``PSI_FLOOR``.

    ``live`` and ``baseline`` are counts (or shares) in the same bins.  Zero
    when both are empty or identical; never negative.
    """
    p = np.maximum(shares(live), PSI_FLOOR)
    q = np.maximum(shares(baseline), PSI_FLOOR)
    if not np.any(np.asarray(live, dtype=np.float64)) or not np.any(
        np.asarray(baseline, dtype=np.float64)
    ):
        return 0.0
    return float(max(0.0, np.sum((p - q) * np.log(p / q))))


def psi_noise_floor(bins: int, n: float, m: float) -> float:
    """PSI expected from sampling alone with no drift: ≈ (B − 1)(1/n + 1/m).

    Under no drift, n·PSI behaves like a χ² variable with B − 1 degrees of
    freedom per sample, so its mean is (B − 1)/n for the window plus
    (B − 1)/m for the baseline.  Infinite when either side is empty.
    """
    if n <= 0 or m <= 0 or bins < 2:
        return math.inf if bins >= 2 else 0.0
    return (bins - 1) * (1.0 / n + 1.0 / m)


def js_distance(live: CountLike, baseline: CountLike) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) between two binned distributions."""
    p, q = shares(live), shares(baseline)
    if not p.any() or not q.any():
        return 0.0
    m = (p + q) / 2
    divergence = (special.rel_entr(p, m).sum() + special.rel_entr(q, m).sum()) / (2 * math.log(2))
    return float(min(1.0, math.sqrt(max(0.0, divergence))))


_ITEM_WEIGHT = np.dtype([("item", np.float64), ("weight", np.int64)])
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True, slots=True)
class CdfTable:
    """A KLL sketch's CDF as arrays: its distinct retained items and F(item) = P(X ≤ item).

    A sketch's CDF steps only at its retained items, so these arrays are the
    whole function; reading them once lets KS reuse a baseline's table.
    ``single`` tells that the items are float32 values (a live window's
    ``kll_floats_sketch``, or :meth:`float32` of a float64 table).
    """

    items: npt.NDArray[np.float64]
    cdf: npt.NDArray[np.float64]
    single: bool = False

    def at(self, points: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        index = np.searchsorted(self.items, points, side="right") - 1
        return np.where(index >= 0, self.cdf[np.maximum(index, 0)], 0.0)

    def float32(self) -> CdfTable:
        """The CDF of the same values rounded to float32 (as live sketches round them).

        Rounding is monotone, so P(round(X) ≤ round(x)) is F at the last item
        of each run of items that round alike: the table of the rounded
        sample, read without another pass over the sketch.
        """
        if self.single:
            return self
        if not len(self.items):  # an empty sketch: nothing to round
            return CdfTable(self.items, self.cdf, single=True)
        rounded = np.clip(self.items, -_FLOAT32_MAX, _FLOAT32_MAX).astype(np.float32)
        last = np.append(rounded[1:] != rounded[:-1], True)
        return CdfTable(rounded[last].astype(np.float64), self.cdf[last], single=True)


def cdf_table(sketch: Any) -> CdfTable:
    """The CDF of a KLL sketch at each of its retained items, as ``get_cdf`` reads it.

    The values come from ``get_cdf`` itself, not from the weights the
    sketch's iterator reports: after a sketch in estimation mode is merged
    into one that already holds data, the iterator (datasketches 5.2) gives
    every item weight 1, so weights summed to a fraction of ``n`` and D came
    out near 0.85 for identical distributions.
    """
    single = isinstance(sketch, ds.kll_floats_sketch)
    if sketch.is_empty():
        return CdfTable(np.empty(0), np.empty(0), single)
    pairs = np.fromiter(sketch, dtype=_ITEM_WEIGHT, count=int(sketch.num_retained))
    items = np.unique(pairs["item"])
    cdf = np.asarray(sketch.get_cdf(items, True), dtype=np.float64)[:-1]
    return CdfTable(items, cdf, single)


def ks_statistic(a: Any, b: Any) -> float:
    """Two-sample Kolmogorov-Smirnov D from two KLL sketches (or their :func:`cdf_table`).

    D = max |F_a(x) − F_b(x)| over every retained item of both, with
    F(x) = P(X ≤ x): the exact supremum of the two sketches' step CDFs.
    Error: at most the sum of both sketches' normalized rank errors
    (``normalized_rank_error(False)``), zero for sketches still in exact mode.

    When one side holds float32 items (a live window) the other is rounded
    to float32 too (:meth:`CdfTable.float32`), so D is that of the two
    samples both rounded to float32: never more than the exact D, and less
    only by values that float32 cannot tell apart (docs/statistics.md).
    """
    ta = a if isinstance(a, CdfTable) else cdf_table(a)
    tb = b if isinstance(b, CdfTable) else cdf_table(b)
    if ta.single != tb.single:
        ta, tb = ta.float32(), tb.float32()
    if not len(ta.items) or not len(tb.items):
        return 0.0
    points = np.concatenate([ta.items, tb.items])
    return float(np.max(np.abs(ta.at(points) - tb.at(points))))


def ks_rank_error(sketch: Any) -> float:
    """The sketch's normalized rank error for CDF reads, 0 while it still holds every value."""
    return float(sketch.normalized_rank_error(False)) if sketch.is_estimation_mode() else 0.0


def ks_pvalue(d: float, n: float, m: float, error: float = 0.0) -> float:
    """p-value of D from the asymptotic Kolmogorov distribution at n·m/(n + m).

    ``error`` is how far D read from sketches may overstate the exact D (the
    two sketches' rank errors summed).  The p-value is taken at D − error, so
    sketch noise never reads as significance: on large undrifted windows the
    rank error (≈1.3% per sketch at k=200) is several times the true D.
    """
    if n <= 0 or m <= 0:
        return 1.0
    effective = n * m / (n + m)
    # scipy.special.kolmogorov is the survival function of the Kolmogorov distribution.
    return float(special.kolmogorov(max(0.0, d - error) * math.sqrt(effective)))


def chi2_pvalue(live: CountLike, baseline: CountLike) -> float:
    """Chi-squared test of homogeneity of two count vectors (no continuity correction).

    Categories empty on both sides are dropped; with fewer than two left, or
    an empty side, there is nothing to test and the p-value is 1.
    """
    table = np.vstack([np.asarray(live, dtype=np.float64), np.asarray(baseline, dtype=np.float64)])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or np.any(table.sum(axis=1) == 0):
        return 1.0
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    statistic = float(((table - expected) ** 2 / expected).sum())
    return float(special.chdtrc(table.shape[1] - 1, statistic))
