"""Sums over requests and the design effect they give, against numpy on the raw counts."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats

from driftgauge.sketches.requests import (
    DESIGN_EFFECT_SIGNIFICANCE,
    counted_by_request,
    design_effect,
    one_request_sums,
    request_sums,
    request_variance,
    single_row_sums,
)

Counts = npt.NDArray[np.int64]
BINS = 10
EDGES = scipy_stats.norm.ppf(np.linspace(0.1, 0.9, 9))  # deciles of a standard normal


def correlated_requests(
    rng: np.random.Generator, requests: int, rows: int, shared: float = 0.2, shift: float = 0.0
) -> Counts:
    """Per-request bin counts of a standard normal whose rows of a request share an offset
    carrying ``shared`` of the variance."""
    offsets = np.repeat(rng.normal(size=requests) * np.sqrt(shared), rows)
    values = offsets + rng.normal(size=requests * rows) * np.sqrt(1 - shared) + shift
    owners = np.repeat(np.arange(requests), rows)
    return counted_by_request(np.searchsorted(EDGES, values, "right"), owners, requests, BINS)


def reference_mean_design_effect(y: Counts) -> float:
    """The brief's first-order Rao–Scott δ, written out: v_i, d_i, Σ (1 − p_i)·d_i/(k − 1)."""
    m = y.sum(axis=1).astype(float)
    n, r = m.sum(), len(y)
    p = y.sum(axis=0) / n
    held = p > 0
    v = r / (r - 1) * ((y - np.outer(m, p)) ** 2).sum(axis=0) / n**2
    d = v[held] / (p[held] * (1 - p[held]) / n)
    return float(((1 - p[held]) * d).sum() / (held.sum() - 1))


def reference_sums(y: Counts) -> list[int]:
    """The sums of requests' bin counts, one request at a time in Python."""
    total = [0] * (4 + 2 * y.shape[1])
    for row in y.tolist():
        m, s = sum(row), sum(i * c for i, c in enumerate(row))
        if m:
            total[0] += 1
        total[1] += m * m
        total[2] += s * s
        total[3] += s * m
        for i, c in enumerate(row):
            total[4 + 2 * i] += c * c
            total[5 + 2 * i] += c * m
    return total


requests_strategy = st.lists(
    st.lists(st.integers(0, BINS - 1), min_size=0, max_size=12), min_size=1, max_size=30
)


def per_request_counts(requests: list[list[int]]) -> Counts:
    return np.array([np.bincount(r, minlength=BINS) for r in requests], dtype=np.int64)


@settings(max_examples=200, deadline=None)
@given(requests_strategy, st.data())
def test_slices_sums_merge_into_the_sums_of_their_requests_together(
    requests: list[list[int]], data: st.DataObject
) -> None:
    """The sums of any split of requests into slices, added, are the sums of all of them,
    and each is what a request-by-request loop gives."""
    y = per_request_counts(requests)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(y)), max_size=4)))
    parts = np.split(y, cuts)
    merged = sum((request_sums(part) for part in parts), start=np.zeros(4 + 2 * BINS, np.int64))
    assert merged.tolist() == request_sums(y).tolist() == reference_sums(y)


@given(st.lists(st.integers(0, 40), min_size=BINS, max_size=BINS))
def test_one_row_requests_and_one_request_need_only_the_bin_counts(counts: list[int]) -> None:
    """Requests of one row each, and one request holding every row, give their sums from the
    bin counts alone."""
    bins = np.array(counts, dtype=np.int64)
    one_hot = np.repeat(np.eye(BINS, dtype=np.int64), bins, axis=0)
    assert single_row_sums(bins).tolist() == reference_sums(one_hot)
    assert one_request_sums(bins).tolist() == reference_sums(bins[None])


def test_a_block_is_counted_by_request_as_each_of_its_fields() -> None:
    """A rows × fields table of bins (-1 for none) counts each field as its own column would."""
    rng = np.random.default_rng(4)
    slots = rng.integers(-1, BINS, size=(300, 3))
    owners = np.sort(rng.integers(0, 40, size=300))
    block = counted_by_request(slots, owners, 40, BINS)
    for j in range(3):
        column = counted_by_request(slots[:, j], owners, 40, BINS)
        assert block[:, j].tolist() == column.tolist()
        kept = slots[:, j] >= 0
        assert column.sum() == kept.sum()


@pytest.mark.parametrize(("requests", "rows"), [(20, 50), (100, 10), (200, 50), (7, 3)])
def test_the_mean_design_effect_is_the_rao_scott_formula_on_the_raw_counts(
    requests: int, rows: int
) -> None:
    """δ from the sums equals the first-order Rao–Scott δ computed on the per-request counts."""
    rng = np.random.default_rng(requests + rows)
    for _ in range(20):
        y = correlated_requests(rng, requests, rows)
        found = request_variance(y.sum(axis=0), request_sums(y))
        assert found is not None
        assert found.requests == requests
        assert found.mean == pytest.approx(reference_mean_design_effect(y), rel=1e-9)


@pytest.mark.parametrize(("requests", "rows"), [(20, 50), (100, 10), (200, 50)])
def test_the_mean_design_effect_is_the_variance_of_the_shares_over_windows(
    requests: int, rows: int
) -> None:
    """Averaged over 2,000 windows, δ is within 10% of the design effect the shares' empirical
    variance across those windows gives (n·Σ Var(p_i)/p_i / (B − 1)): the estimate is unbiased
    enough for the noise floor.  (10%: 2,000 windows measure each variance within ~3%, and δ
    from R requests is biased low by about 1/R.)"""
    rng = np.random.default_rng(7 + rows)
    n = requests * rows
    shares, estimates = [], []
    for _ in range(2000):
        y = correlated_requests(rng, requests, rows)
        shares.append(y.sum(axis=0) / n)
        found = request_variance(y.sum(axis=0), request_sums(y))
        estimates.append(found.mean if found is not None else 1.0)
    p = np.mean(shares, axis=0)
    empirical = n * float((np.var(shares, axis=0, ddof=1) / p).sum()) / (BINS - 1)
    assert empirical > 1.15  # the offset does inflate the variance (so the check means something)
    assert float(np.mean(estimates)) == pytest.approx(empirical, rel=0.10)


def test_requests_of_one_row_keep_the_design_effect_at_one() -> None:
    """Independent rows (one a request) read as such: δ exactly 1, the noise floor unchanged."""
    rng = np.random.default_rng(2)
    for n in (100, 1_000, 10_000):
        bins = np.bincount(rng.integers(0, BINS, n), minlength=BINS)
        assert design_effect(bins, single_row_sums(bins), BINS - 1) == 1.0


def test_one_request_counts_as_one_draw_and_a_few_as_each_one() -> None:
    """A window of one request cannot estimate how alike its rows are: it counts as one draw
    (δ = n); more requests never push δ past that bound, Σ m²/n."""
    rng = np.random.default_rng(3)
    y = correlated_requests(rng, 1, 500)
    assert design_effect(y.sum(axis=0), request_sums(y), BINS - 1) == 500.0
    for requests in (2, 3, 5):
        y = correlated_requests(rng, requests, 100)
        assert 1.0 <= design_effect(y.sum(axis=0), request_sums(y), BINS - 1) <= 100.0


@pytest.mark.parametrize("requests", [20, 4])
def test_the_design_effect_is_the_mean_one_times_the_tail_of_its_few_requests(
    requests: int,
) -> None:
    """δ applied = δ·F(ν, min(ν, 1 + (R − 1)/3)·(R − 1))/(χ²(df)/df) at 99.9%, ν
    Satterthwaite's df of the location contrast and the rest (scipy.stats as the reference):
    4 requests credit at most 2 directions in the denominator (they credited ν)."""
    rng = np.random.default_rng(5)
    y = correlated_requests(rng, requests, 50)
    found = request_variance(y.sum(axis=0), request_sums(y))
    assert found is not None
    trace = found.mean * (found.cells - 1)
    rest = (trace - found.location) / (found.cells - 2)
    lambdas = np.array([found.location] + [rest] * (found.cells - 2))
    nu = lambdas.sum() ** 2 / (lambdas**2).sum()
    q = 1 - DESIGN_EFFECT_SIGNIFICANCE
    credited = min(nu, 1 + (requests - 1) / 3)
    assert (credited < nu) == (requests == 4)
    tail = scipy_stats.f.ppf(q, nu, credited * (requests - 1)) / (scipy_stats.chi2.ppf(q, 9) / 9)
    expected = found.mean * tail
    assert expected > found.mean > 1
    assert design_effect(y.sum(axis=0), request_sums(y), 9) == pytest.approx(expected, rel=1e-9)


def test_requests_all_in_one_bin_count_as_one_draw_each() -> None:
    """Requests whose values all fall in one bin (each request one category, as the same
    category three times) cannot tell how alike their rows are, as one request cannot: each
    counts as one draw (δ = Σ m²/n), not every row as one (δ was 1, and three undrifted
    requests of one category read 300 independent draws of it)."""
    y = np.zeros((3, BINS), dtype=np.int64)
    y[:, 2] = 100
    assert design_effect(y.sum(axis=0), request_sums(y), BINS - 1) == 100.0
    y[:, 2] = [50, 100, 150]
    assert design_effect(y.sum(axis=0), request_sums(y), BINS - 1) == 35_000 / 300
    ones = np.zeros(BINS, dtype=np.int64)
    ones[2] = 300  # one-row requests all in one bin are still independent draws
    assert design_effect(ones, single_row_sums(ones), BINS - 1) == 1.0
