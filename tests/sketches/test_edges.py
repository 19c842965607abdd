"""Baseline bin edges: point masses, equal-mass bins for the rest, float32-safe edges, against exact references."""

from __future__ import annotations

import math
from typing import Any

import datasketches as ds
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftgauge import stats
from driftgauge.sketches.edges import (
    EDGE_SKETCH_K,
    bin_ranges,
    equal_mass_edges,
    float32_ceiling,
    float32_floor,
)

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
BINS = 10
N = 100_000


def sketch_of(values: FloatArray, k: int = EDGE_SKETCH_K) -> Any:
    sketch = ds.kll_doubles_sketch(k)
    sketch.update(np.ascontiguousarray(values, dtype=np.float64))
    return sketch


def edges_of(values: FloatArray, bins: int = BINS) -> FloatArray:
    return equal_mass_edges(sketch_of(values), bins, float(values.min()), float(values.max()))


def counts(values: FloatArray, edges: FloatArray) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Exact bin counts by the sidecar's rule: bin i holds edges[i-1] <= x < edges[i]."""
    return np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)


def exact_rule_edges(values: FloatArray, bins: int = BINS) -> tuple[FloatArray, FloatArray]:
    """The binning rule computed exactly on the raw data: (point masses, residual quantiles)."""
    distinct, tally = np.unique(values, return_counts=True)
    heavy = tally >= len(values) / bins
    masses = distinct[heavy]
    rest = np.sort(values[~np.isin(values, masses)])
    parts = bins - len(masses)
    if parts < 2 or not len(rest):
        return masses, np.empty(0)
    # The smallest value with at least j/parts of the residual mass below it.
    positions = np.ceil(np.arange(1, parts) / parts * len(rest) - 1e-9).astype(int)
    return masses, rest[np.minimum(positions, len(rest) - 1)]


def shapes(rng: np.random.Generator, n: int = N) -> dict[str, FloatArray]:
    mixture = rng.random(n) < 0.5
    return {
        "normal": rng.normal(0.0, 1.0, n),
        "lognormal": rng.lognormal(0.0, 1.0, n),
        "uniform": rng.uniform(-3.0, 3.0, n),
        "bimodal": np.where(mixture, rng.normal(-3.0, 0.5, n), rng.normal(2.0, 1.0, n)),
        "integers with ties": rng.poisson(4.0, n).astype(np.float64),
        "70% zeros": np.where(rng.random(n) < 0.7, 0.0, rng.lognormal(0.0, 1.0, n)),
        "0.1 grid": rng.integers(1, 26, n) / 10.0,
    }


SHAPES = list(shapes(np.random.default_rng(0), 10))


@pytest.mark.parametrize("shape", SHAPES)
def test_edges_are_within_the_sketch_rank_error_of_the_exact_rule(shape: str) -> None:
    """Each target share falls within 0.1% rank of the value an edge sits below.

    An edge below value ``v`` has the residual share ``[below(v), upto(v)]``
    around it: one point for continuous data, a level's whole share with ties.
    With ties (integers, a 0.1 grid) a target share can fall within the sketch's
    rank error of a level's boundary (0.8 of a 25-level grid is exactly the top
    of the 20th level); the sketch may then pick either level, and the target
    still lies within that error of the chosen level's share.
    """
    values = shapes(np.random.default_rng(1))[shape]
    edges = edges_of(values)
    masses, quantiles = exact_rule_edges(values)
    tally = counts(values, edges)
    for mass in masses:  # each point mass sits alone in its bin
        slot = np.searchsorted(edges, mass, side="right")
        assert tally[slot] == np.count_nonzero(values == mass), (shape, mass)
    rest = np.sort(values[~np.isin(values, masses)])
    parts = len(quantiles) + 1
    # 0.1% of all the data, as a share of the residual part, plus the sketch grid's step.
    tolerance = (0.001 + 1 / 4_096) * len(values) / len(rest)
    first = np.searchsorted(rest, edges, side="left")
    below = first / len(rest)
    # The share at or below the first value above each edge (the edge's level, with ties).
    upto = np.searchsorted(rest, rest[np.minimum(first, len(rest) - 1)], side="right") / len(rest)
    for j in range(1, parts):
        target = j / parts
        assert np.any((below - tolerance <= target) & (target <= upto + tolerance)), (shape, j)


@pytest.mark.parametrize("shape", SHAPES)
def test_psi_is_within_five_percent_of_the_exact_rule(shape: str) -> None:
    """PSI on the sketch's edges matches PSI on the exactly-computed edges of the same rule."""
    rng = np.random.default_rng(2)
    baseline = shapes(rng)[shape]
    live = shapes(rng, 60_000)[shape]
    # Drift inside the baseline's support: a fifth of the rows drawn from its upper half.
    upper = baseline[baseline > np.median(baseline)]
    moved = rng.random(len(live)) < 0.2
    live[moved] = rng.choice(upper, int(moved.sum()))
    masses, quantiles = exact_rule_edges(baseline)
    exact = np.unique(
        np.concatenate([float32_floor(quantiles), float32_floor(masses), float32_ceiling(masses)])
    )
    exact = exact[exact > baseline.min()]
    ours = edges_of(baseline)
    want = stats.psi(counts(live, exact), counts(baseline, exact))
    got = stats.psi(counts(live, ours), counts(baseline, ours))
    assert got == pytest.approx(want, rel=0.05), shape


def test_zero_inflated_shift_reads_as_drift() -> None:
    """70% zeros, the rest shifted by 0.2 sd: the zeros' own bin lets PSI see it (≈ 0.2; quantile bins read ≈ 0.01)."""
    rng = np.random.default_rng(3)
    n, m = 100_000, 60_000

    def draw(size: int, shift: float) -> FloatArray:
        return np.where(rng.random(size) < 0.7, 0.0, rng.exponential(1.0, size) + shift)

    baseline = draw(n, 0.0)
    live = draw(m, 0.2 * float(baseline.std()))
    edges = edges_of(baseline)
    assert bin_ranges(edges, float(baseline.min()), float(baseline.max()))[0] == "= 0"
    assert len(edges) == BINS - 1
    psi = stats.psi(counts(live, edges), counts(baseline, edges))
    assert psi == pytest.approx(0.2, abs=0.03)
    deciles = np.unique(np.quantile(baseline, np.arange(1, BINS) / BINS, method="inverted_cdf"))
    plain = deciles[deciles > 0]  # the plain equal-mass rule: zeros share a bin with small values
    assert stats.psi(counts(live, plain), counts(baseline, plain)) < 0.02
    assert psi > 10 * stats.psi_noise_floor(BINS, m, n)


def test_bimodal_middle_edge_is_the_exact_median() -> None:
    """In the valley between two modes the middle edge is at the exact median's rank, not ±1.3%."""
    rng = np.random.default_rng(4)
    values = np.concatenate([rng.normal(-3.0, 0.5, 50_000), rng.normal(3.0, 0.5, 50_000)])
    edges = edges_of(values)
    ordered = np.sort(values)
    ranks = np.searchsorted(ordered, edges) / len(values)
    assert np.min(np.abs(ranks - 0.5)) <= 0.001


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=200, deadline=None)
@given(st.lists(finite, min_size=1, max_size=300), st.integers(2, 20))
def test_a_value_and_its_float32_rounding_share_a_bin(values: list[float], bins: int) -> None:
    """Whatever the data, x and float32(x) fall in the same bin (values beyond float32 range aside)."""
    array = np.asarray(values, dtype=np.float64)
    edges = edges_of(array, bins)
    assert np.all(np.diff(edges) > 0)
    with np.errstate(over="ignore"):
        single = array.astype(np.float32)
    usable = np.isfinite(single)
    rounded = single[usable].astype(np.float64)
    assert np.array_equal(
        np.searchsorted(edges, array[usable], side="right"),
        np.searchsorted(edges, rounded, side="right"),
    )


@settings(max_examples=200, deadline=None)
@given(st.lists(finite, min_size=1, max_size=300), st.integers(2, 20))
def test_no_end_bin_is_left_empty_and_bins_never_exceed_the_setting(
    values: list[float], bins: int
) -> None:
    """At most ``bins`` bins; the first and last bins hold baseline values, but for a
    constant field's: below its value (from 3 bins), its value, above."""
    array = np.asarray(values, dtype=np.float64)
    edges = edges_of(array, bins)
    assert len(edges) + 1 <= bins
    tally = counts(array, edges)
    assert tally.sum() == len(array)
    if len(np.unique(float32_floor(array))) == 1:
        assert tally.tolist() == ([len(array), 0] if bins < 3 else [0, len(array), 0])
    else:
        assert tally[0] > 0 and tally[-1] > 0


@given(finite)
def test_float32_floor_is_the_rounding_boundary(value: float) -> None:
    """x >= float32_floor(v) exactly when float32(x) >= float32(v), probed at the neighbours."""
    with np.errstate(over="ignore"):
        single = np.float32(value)
        below = np.nextafter(single, np.float32(-np.inf))
    if not np.isfinite(single) or not np.isfinite(below):
        return
    floor = float32_floor([value])[0]
    assert np.float32(floor) in (single, below)
    assert np.float32(np.nextafter(floor, np.inf)) == single
    assert np.float32(np.nextafter(floor, -np.inf)) < single


def test_ranges_name_point_masses_and_ends() -> None:
    """inspect's bin text: ``= v`` for a point mass, ranges closed at the data's extremes."""
    values = np.concatenate([np.zeros(700), np.linspace(1.0, 2.0, 300)])
    edges = edges_of(values)
    texts = bin_ranges(edges, 0.0, 2.0)
    assert texts[0] == "= 0"
    assert texts[1].startswith("(0, ")  # not from the class boundary above 0, 7.00649e-46
    tails = np.concatenate([np.linspace(-2.0, -0.5, 300), np.full(700, 1.0)])
    around = bin_ranges(edges_of(tails), -2.0, 1.0)
    assert around[-1] == "= 1" and around[-2].endswith(", 1)"), around
    assert texts[-1].endswith(", 2]")
    assert len(texts) == len(edges) + 1
    assert bin_ranges(np.empty(0), 7.0, 7.0) == ["= 7"]


@pytest.mark.parametrize(("bins", "texts"), [(10, ["< 7", "= 7", "> 7"]), (2, ["= 7", "> 7"])])
def test_a_constant_field_has_bins_beside_its_value(bins: int, texts: list[str]) -> None:
    """One bin kept a constant field's PSI at 0 whatever arrived: the sketch rule gives the same
    bins as the exact one, and a live value off the constant lands outside its bin."""
    values = np.full(1_000, 7.0)
    edges = edges_of(values, bins)
    assert bin_ranges(edges, 7.0, 7.0) == texts
    live = np.asarray([7.0, np.float32(7.0), 6.5, 7.5])
    assert counts(live, edges).tolist() == ([1, 2, 1] if bins > 2 else [3, 1])


def test_float64_edges_are_shown_in_full_and_a_one_value_bin_as_that_value() -> None:
    """A field of float64 classes (1.7e18 ± 1e6, 5e39) is shown at float64's digits, with no
    float32 arithmetic (5e39 overflowed it): every range distinct, a bin of one float64 '= v'."""
    point, after = 1.7e18, math.nextafter(1.7e18, math.inf)
    edges = np.asarray([point - 1024, point, after, point + 4096])
    texts = bin_ranges(edges, point - 4096, point + 8192, float64=True)
    assert texts == [
        f"[{point - 4096!r}, {point - 1024!r})",
        f"[{point - 1024!r}, {point!r})",
        f"= {point!r}",
        f"[{after!r}, {point + 4096!r})",
        f"[{point + 4096!r}, {point + 8192!r}]",
    ]
    assert bin_ranges(np.asarray([5e39]), 1e39, 9e39, float64=True) == [
        "[1e+39, 5e+39)",
        "[5e+39, 9e+39]",
    ]
