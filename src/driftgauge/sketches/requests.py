"""Sums over the requests of a window: how alike the rows of one request are.

Rows of one request are often alike (a batch scoring one customer's
transactions), so a window's bin counts vary more than its row count says.
Each summary keeps, beside its bin counts, sums over the requests r that held
a value of the field (m_r of its values, y_ri of them in bin i, s_r = Σ_i i·y_ri
their bin indexes' sum), laid out as one int64 array of ``SUMS + 2·bins``::

    [R, Σ m_r², Σ s_r², Σ s_r·m_r, Σ y_r0², Σ y_r0·m_r, Σ y_r1², Σ y_r1·m_r, ...]

All are additive, so slices merge into windows by summing, as bin counts do;
bins past a field's own (the padding of a table of several fields) stay 0.
:func:`driftgauge.stats.design_effect` reads them.  For requests of one row
they follow from the bin counts alone (:func:`single_row_sums`), so the
common case costs one small array per field.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import special

__all__ = [
    "DESIGN_EFFECT_SIGNIFICANCE",
    "DIRECTIONS_PER_DF",
    "SUMS",
    "RequestVariance",
    "counted_by_request",
    "design_effect",
    "one_request_sums",
    "request_sums",
    "request_variance",
    "single_row_sums",
    "sums_size",
]

CountArray = npt.NDArray[np.int64]

SUMS = 4
"""The sums before the bins': requests, Σ m², Σ s², Σ s·m."""

DESIGN_EFFECT_SIGNIFICANCE = 0.001
"""The upper tail :func:`design_effect`'s tail correction keeps: the shipped warning's gate."""

DIRECTIONS_PER_DF = 1 / 3
"""The directions of ν beyond one that :func:`design_effect` credits in its F tail's denominator
per df of the requests: ∞ credits all ν (Thomas–Rao), 0 one (F(ν, R − 1)); a third holds the
warning's rate at 2–5 requests (bench.design_effect, docs/statistics.md)."""


def sums_size(bins: int) -> int:
    """The length of the sums of a field of ``bins`` bins."""
    return SUMS + 2 * bins


def single_row_sums(bin_counts: CountArray) -> CountArray:
    """The sums of ``bin_counts[..., i]`` requests of one row each in bin i (any leading axes)."""
    bins = bin_counts.shape[-1]
    index = np.arange(bins, dtype=np.int64)
    result = np.empty((*bin_counts.shape[:-1], sums_size(bins)), dtype=np.int64)
    rows = bin_counts.sum(axis=-1)
    result[..., 0] = rows
    result[..., 1] = rows
    result[..., 2] = bin_counts @ (index * index)
    result[..., 3] = bin_counts @ index
    result[..., SUMS::2] = bin_counts
    result[..., SUMS + 1 :: 2] = bin_counts
    return result


def one_request_sums(bin_counts: CountArray) -> CountArray:
    """The sums of one request whose rows have ``bin_counts[..., i]`` values in bin i."""
    bins = bin_counts.shape[-1]
    rows = bin_counts.sum(axis=-1)
    score = bin_counts @ np.arange(bins, dtype=np.int64)
    result = np.empty((*bin_counts.shape[:-1], sums_size(bins)), dtype=np.int64)
    result[..., 0] = rows > 0
    result[..., 1] = rows * rows
    result[..., 2] = score * score
    result[..., 3] = score * rows
    result[..., SUMS::2] = bin_counts * bin_counts
    result[..., SUMS + 1 :: 2] = bin_counts * rows[..., None]
    return result


def request_sums(counts: CountArray) -> CountArray:
    """The sums of requests whose bin counts are ``counts[r, ..., i]`` (request r first)."""
    bins = counts.shape[-1]
    cells = math.prod(counts.shape[1:-1])
    # In float64 (exact below 2**53), where numpy's products run through BLAS: each
    # request's size m, score s and bin counts y side by side, then their squares summed
    # and their products with m summed.
    each = counts.reshape(counts.shape[0], cells, bins).astype(np.float64) @ _spread(bins)
    sizes = each[..., 0]
    squares = np.einsum("rkj,rkj->kj", each, each)
    products = np.einsum("rkj,rk->kj", each, sizes)
    result = np.empty((cells, sums_size(bins)), dtype=np.int64)
    result[:, 0] = np.count_nonzero(sizes, axis=0)
    result[:, 1:3] = squares[:, :2]
    result[:, 3] = products[:, 1]
    result[:, SUMS::2] = squares[:, 2:]
    result[:, SUMS + 1 :: 2] = products[:, 2:]
    return result.reshape(*counts.shape[1:-1], sums_size(bins))


@functools.cache
def _spread(bins: int) -> npt.NDArray[np.float64]:
    """The matrix taking a request's bin counts to (m, s, y_0, ..., y_{bins-1})."""
    spread = np.zeros((bins, bins + 2))
    spread[:, 0] = 1
    spread[:, 1] = np.arange(bins)
    spread[:, 2:] = np.eye(bins)
    return spread


def counted_by_request(
    slots: npt.NDArray[np.integer[Any]], owners: npt.NDArray[np.intp], requests: int, bins: int
) -> CountArray:
    """Each request's bin counts from each value's bin and request: one bincount.

    ``slots`` holds a value's bin (-1 for none) per row, or per row and field
    (a block: the result is then requests × fields × ``bins``); ``owners`` its
    request, per row.
    """
    fields = slots.shape[1] if slots.ndim == 2 else 1
    cells = owners * (fields * bins)
    keys = (
        (cells[:, None] + np.arange(0, fields * bins, bins)) + slots
        if slots.ndim == 2
        else cells + slots
    )
    if slots.min(initial=0) < 0:
        keys = keys[slots >= 0]
    counts = np.bincount(keys.ravel(), minlength=requests * fields * bins)
    return counts.reshape(requests, *slots.shape[1:], bins)


@dataclass(frozen=True, slots=True)
class RequestVariance:
    """How much more a window's bin shares vary than its row count says (its rows in requests).

    ``mean`` is Rao–Scott's first-order design effect δ: with n rows, p_i the bin
    shares and v_i = R/(R−1)·Σ_r (y_ri − p_i·m_r)²/n² each share's cluster-robust
    variance, δ = n·Σ_i v_i/p_i / (k − 1) over the ``cells`` k bins holding data
    (= Σ_i (1 − p_i)·d_i/(k − 1), d_i = v_i/(p_i(1 − p_i)/n)).  ``location`` is
    the design effect of the mean bin index, the direction a request's shared
    offset moves a window along numeric bins.
    """

    requests: int
    cells: int
    mean: float
    location: float


def request_variance(bins: npt.ArrayLike, sums: npt.ArrayLike) -> RequestVariance | None:
    """The :class:`RequestVariance` of a window's ``bins`` and its sums over requests
    (:mod:`driftgauge.sketches.requests`); None where there is none to estimate: no rows,
    one row a request, fewer than two requests or two bins holding data, no spread."""
    counts = np.asarray(bins, dtype=np.float64)
    table = np.asarray(sums, dtype=np.float64)
    n, requests, sizes_sq = float(counts.sum()), int(table[0]), float(table[1])
    if n <= 0 or sizes_sq <= n or requests < 2:  # Σ m² = n: one row a request
        return None
    p = counts / n
    held = p > 0
    cells = int(np.count_nonzero(held))
    scale = requests / (requests - 1) / (n * n)
    residual = table[SUMS::2] - 2 * p * table[SUMS + 1 :: 2] + p * p * sizes_sq
    # fsum: numpy's sums and dot products round by the arrays' alignment, and a restored
    # window must read the very same figures.
    trace = n * math.fsum((scale * residual[held] / p[held]).tolist())  # (k − 1)·δ
    if cells < 2 or trace <= 0:  # every request split alike: no variance between them
        return None
    index = np.arange(len(p), dtype=np.float64)
    mean = math.fsum((index * p).tolist())
    spread = math.fsum((index * index * p).tolist()) - mean * mean
    location = trace
    if spread > 0:
        scores = table[2] - 2 * mean * table[3] + mean * mean * sizes_sq
        location = min(trace, n * scale * scores / spread)
    return RequestVariance(requests, cells, trace / (cells - 1), location)


def design_effect(bins: npt.ArrayLike, sums: npt.ArrayLike, df: int) -> float:
    """How many rows of the window count as one independent draw for the noise floor.

    ``bins``, ``sums`` as :func:`request_variance` takes them; ``df`` the noise
    floor's degrees of freedom (baseline bins holding data − 1).  Alike rows of
    a request mostly move a window along the bins (a shared offset), which puts
    most of the excess variance in one direction, and PSI's tail is then far
    heavier than δ·χ²(df)'s (δ the mean design effect).  So the location
    contrast keeps its own design effect and the other directions share the
    rest, giving Satterthwaite's df ν (Rao–Scott's second order), and the few
    requests a window may hold estimate all of it with R − 1 df (Kish's effective
    count n²/Σ m_r² − 1 where their sizes differ, a few large requests weighing
    most), crediting at most 1 + (R − 1)/3 of the ν directions with them, as ν too
    comes from those few requests: the result is δ times F(ν, min(ν, 1 + (R − 1)/3)·(R − 1))'s
    quantile over χ²(df)/df's at
    ``DESIGN_EFFECT_SIGNIFICANCE``, so PSI over the noise floor of n/that rows
    keeps the χ² gate's false-alarm rate.  1 for requests of one row each
    (independent draws, as before), never below 1, and never above Σ m_r²/n:
    each request one draw (n/R for requests of m rows), which it is where one
    request holds every row, or one bin every value (nothing tells how alike
    the rows are, as with one request).
    """
    table = np.asarray(sums, dtype=np.float64)
    n = float(np.sum(bins))
    if n <= 0 or table[0] < 1:
        return 1.0
    clustered = max(1.0, float(table[1]) / n)  # each request one draw: the bound
    if table[0] < 2 or np.count_nonzero(bins) < 2:  # nor do requests all in one bin
        return clustered
    found = request_variance(bins, table)
    if found is None:
        return 1.0
    trace, rest = found.mean * (found.cells - 1), found.cells - 2
    nu = 1.0
    if rest:
        others = (trace - found.location) / rest
        nu = trace * trace / (found.location**2 + rest * others * others)
    # Requests of unequal sizes estimate the variance from fewer of them than R: Kish's
    # effective count n²/Σ m_r² (R for requests of one size) gives the estimate's df.
    estimating = min(found.requests, n * n / float(table[1])) - 1
    if estimating <= 0:
        return clustered
    # Each of ν directions estimated from that many df would give ν times them, but ν comes
    # from the same few requests: where their shared offsets happen to agree, the location's
    # excess reads small, ν large and the floor low at once (2-5 requests: 3% of undrifted
    # windows warned).  So a window is credited at most 1 + df/3 directions: all ν from
    # 3(ν − 1) + 1 requests of one size on (25 for independent rows over 10 bins), and fewer
    # widen the floor of independent rows too (docs/statistics.md: the trade-off).
    directions = min(nu, 1 + estimating * DIRECTIONS_PER_DF)
    tail = special.fdtri(nu, directions * estimating, 1 - DESIGN_EFFECT_SIGNIFICANCE)
    gate = special.chdtri(max(df, 1), DESIGN_EFFECT_SIGNIFICANCE) / max(df, 1)
    return min(clustered, max(1.0, found.mean * float(tail) / float(gate)))
