"""The drift statistics agree with scipy/numpy computed on the raw data.

KS D from two KLL sketches stays within the sketches' own reported rank
error of the exact two-sample D; PSI, JS and χ² over the baseline's bins are
exact because both sides' bin counts are exact; the PSI noise floor matches
a simulation; and the statistics hold their invariants on any input.
"""

from __future__ import annotations

import functools
import math
import zlib
from collections import Counter
from typing import Any

import datasketches as ds
import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats
from scipy.spatial import distance

from driftgauge import stats
from driftgauge.baseline import Baseline
from driftgauge.sketches.summary import (
    CategoricalSummary,
    NumericBinning,
    NumericSummary,
    to_categories,
    to_floats,
)
from tests._stats_helpers import (
    DISTRIBUTIONS,
    SHIFTS,
    baseline_from_columns,
    exact_bin_counts,
    exact_psi,
    exact_shares,
    shifted,
)

KLL_K = 200
KS_BASELINE_N = 200_000
KS_LIVE_N = 50_000
KS_SEEDS = (101, 202, 303)
PSI_BASELINE_N = 100_000
PSI_LIVE_N = 20_000

CASES = [
    pytest.param(name, shift, scale, id=f"{name}-shift{shift}-scale{scale}")
    for name in DISTRIBUTIONS
    for shift, scale in SHIFTS
]


def numeric_summary(values: Any, binning: NumericBinning | None = None) -> NumericSummary:
    summary = NumericSummary(binning or NumericBinning(np.empty(0)), k=KLL_K)
    summary.update(*to_floats(values))
    return summary


def effective_n(n: float, m: float) -> float:
    return n * m / (n + m)


# -- Kolmogorov-Smirnov ---------------------------------------------------------


@functools.cache
def ks_case(name: str, shift: float, scale: float, seed: int) -> dict[str, float]:
    """Sketch D, exact D and the sketches' combined rank error for one sample pair."""
    rng = np.random.default_rng(seed)
    sample = DISTRIBUTIONS[name]
    base = sample(rng, KS_BASELINE_N)
    live = shifted(sample(rng, KS_LIVE_N), base, shift, scale)
    a, b = numeric_summary(base), numeric_summary(live)
    assert a.kll.is_estimation_mode()
    assert b.kll.is_estimation_mode()
    d = stats.ks_statistic(a.kll, b.kll)
    error = stats.ks_rank_error(a.kll) + stats.ks_rank_error(b.kll)
    return {
        "d_sketch": d,
        "d_exact": float(scipy_stats.ks_2samp(base, live, method="asymp").statistic),
        "bound": a.kll.normalized_rank_error(False) + b.kll.normalized_rank_error(False),
        "p_sketch": stats.ks_pvalue(d, b.count, a.count, error),
        "en": effective_n(b.count, a.count),
    }


@pytest.mark.parametrize(("name", "shift", "scale"), CASES)
@pytest.mark.parametrize("seed", KS_SEEDS)
def test_ks_statistic_within_combined_rank_error(
    name: str, shift: float, scale: float, seed: int
) -> None:
    """|D_sketch − D_exact| stays within the sum of both sketches' normalized rank errors."""
    case = ks_case(name, shift, scale, seed)
    assert abs(case["d_sketch"] - case["d_exact"]) <= case["bound"]


@pytest.mark.parametrize(("name", "shift", "scale"), CASES)
@pytest.mark.parametrize("seed", KS_SEEDS)
def test_ks_pvalue_between_kolmogorov_bounds_of_exact_d(
    name: str, shift: float, scale: float, seed: int
) -> None:
    """The p-value, taken at D_sketch − error, is never below the exact D's and within 2 errors of it.

    D_sketch − error lies in [D_exact − 2·error, D_exact], so the p-value is
    conservative: sketch noise never reads as more significance than the data holds.
    """
    case = ks_case(name, shift, scale, seed)
    root = math.sqrt(case["en"])
    low = scipy_stats.kstwobign.sf(case["d_exact"] * root)
    high = scipy_stats.kstwobign.sf(max(0.0, case["d_exact"] - 2 * case["bound"]) * root)
    assert low <= case["p_sketch"] <= high


def test_ks_pvalue_is_not_tiny_for_undrifted_continuous_data() -> None:
    """Without drift, at most a few of nine continuous sample pairs have p < 0.01."""
    pvalues = [
        ks_case(name, 0.0, 1.0, seed)["p_sketch"]
        for name in ("normal", "lognormal", "bimodal")
        for seed in KS_SEEDS
    ]
    assert sum(p < 0.01 for p in pvalues) < 3


@pytest.mark.parametrize("name", list(DISTRIBUTIONS))
def test_ks_statistic_is_exact_while_sketches_are_in_exact_mode(name: str) -> None:
    """With n ≤ k both sketches keep every value and D equals scipy's D."""
    rng = np.random.default_rng(7)
    sample = DISTRIBUTIONS[name]
    for shift, scale in SHIFTS:
        base = sample(rng, 150)
        live = shifted(sample(rng, 120), base, shift, scale)
        a, b = numeric_summary(base), numeric_summary(live)
        assert not a.kll.is_estimation_mode()
        assert not b.kll.is_estimation_mode()
        d = stats.ks_statistic(a.kll, b.kll)
        exact = scipy_stats.ks_2samp(base, live, method="asymp").statistic
        assert d == pytest.approx(exact, abs=1e-12)
        expected_p = scipy_stats.kstwobign.sf(exact * math.sqrt(effective_n(120, 150)))
        assert stats.ks_pvalue(d, 120, 150) == pytest.approx(expected_p, rel=1e-9, abs=1e-300)


def test_ks_statistic_uses_every_retained_item_of_both_sketches() -> None:
    """D is the largest CDF gap over all items either sketch retains, light ones included."""
    rng = np.random.default_rng(5)
    a = numeric_summary(rng.lognormal(0.0, 1.0, 200_000)).kll
    b = numeric_summary(rng.lognormal(0.05, 1.0, 50_000)).kll
    points = np.union1d([item for item, _ in a], [item for item, _ in b]).tolist()
    gap = np.abs(np.asarray(a.get_cdf(points, True)) - np.asarray(b.get_cdf(points, True)))
    assert stats.ks_statistic(a, b) == float(gap.max())


def test_ks_statistic_sees_a_shifted_constant() -> None:
    """Two different constants are D = 1 apart; the same constant is D = 0."""
    a, b = numeric_summary(np.full(1000, 3.0)), numeric_summary(np.full(500, 4.0))
    assert stats.ks_statistic(a.kll, b.kll) == 1.0
    assert stats.ks_statistic(a.kll, numeric_summary(np.full(10, 3.0)).kll) == 0.0


def test_ks_statistic_of_an_empty_sketch_is_zero() -> None:
    """An empty side gives D = 0 and p = 1 instead of an exception."""
    empty, full = ds.kll_doubles_sketch(KLL_K), numeric_summary(np.arange(10.0)).kll
    assert stats.ks_statistic(empty, full) == 0.0
    assert stats.ks_statistic(full, empty) == 0.0
    assert stats.ks_statistic(empty, empty) == 0.0
    assert stats.ks_pvalue(0.5, 0, 10) == 1.0


def test_float32_table_of_an_empty_sketch_is_empty() -> None:
    """An empty float64 sketch's table rounds to an empty float32 one (it raised IndexError)."""
    table = stats.cdf_table(ds.kll_doubles_sketch(KLL_K)).float32()
    assert table.single and len(table.items) == len(table.cdf) == 0
    live = ds.kll_floats_sketch(KLL_K)
    live.update(np.arange(10.0, dtype=np.float32))
    assert stats.ks_statistic(table, live) == 0.0


# -- PSI, JS and the baseline's bins ------------------------------------------------


@pytest.fixture(scope="module")
def psi_baseline(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Baseline, dict[str, np.ndarray[Any, Any]]]:
    """A baseline built from a CSV holding one column per distribution, and the raw columns."""
    rng = np.random.default_rng(2024)
    raw = {name: sample(rng, PSI_BASELINE_N) for name, sample in DISTRIBUTIONS.items()}
    gappy = rng.normal(0.0, 1.0, PSI_BASELINE_N)
    gappy[rng.random(PSI_BASELINE_N) < 0.05] = np.nan
    raw["gappy"] = gappy
    columns = {
        name: [None if math.isnan(v) else v for v in values.tolist()]
        for name, values in raw.items()
    }
    types = dict.fromkeys(columns, "numeric")
    _, baseline = baseline_from_columns(tmp_path_factory.mktemp("psi"), columns, types)
    return baseline, raw


@pytest.mark.parametrize("name", [*DISTRIBUTIONS, "gappy"])
def test_baseline_bins_are_exact_counts_on_its_edges(
    psi_baseline: tuple[Baseline, dict[str, np.ndarray[Any, Any]]], name: str
) -> None:
    """The bin counts a CSV baseline stores equal numpy's counts of the raw data on its edges."""
    baseline, raw = psi_baseline
    summary = baseline.fields[name].summary
    assert isinstance(summary, NumericSummary)
    values = raw[name]
    edges = summary.binning.edges
    expected = exact_bin_counts(values, edges)
    assert summary.bins.tolist() == expected.tolist()
    assert summary.count == int(np.isfinite(values).sum()) == int(summary.bins.sum())
    assert summary.missing == int(np.isnan(values).sum())
    assert baseline.fields[name].ratios == exact_shares(expected).tolist()
    assert np.all(np.diff(edges) > 0)
    if name == "constant":  # below, the value, above: only the value's bin is filled
        assert edges[0] <= summary.minimum < edges[1] and summary.bins.tolist()[::2] == [0, 0]
    else:
        assert np.all(edges > summary.minimum)
        assert summary.bins[0] > 0


def test_baseline_edges_are_deduplicated_under_ties(
    psi_baseline: tuple[Baseline, dict[str, np.ndarray[Any, Any]]],
) -> None:
    """Heavy ties give fewer bins than asked for; a constant column gives three: below its
    value, its value and above (one bin kept PSI at 0 whatever arrived)."""
    baseline, _ = psi_baseline
    sizes = {name: held.summary.binning.size for name, held in baseline.fields.items()}
    assert sizes["normal"] == sizes["lognormal"] == sizes["bimodal"] == 10
    assert 2 <= sizes["ties"] < 10
    assert 2 <= sizes["integer"] < 10
    assert sizes["constant"] == 3


def live_against(
    psi_baseline: tuple[Baseline, dict[str, np.ndarray[Any, Any]]],
    name: str,
    shift: float,
    scale: float,
) -> tuple[NumericSummary, NumericSummary, np.ndarray[Any, Any]]:
    baseline, raw = psi_baseline
    base = baseline.fields[name].summary
    assert isinstance(base, NumericSummary)
    rng = np.random.default_rng(zlib.crc32(f"{name}/{shift}/{scale}".encode()))
    values = shifted(DISTRIBUTIONS[name](rng, PSI_LIVE_N), raw[name], shift, scale)
    live = numeric_summary(values, base.binning)
    return live, base, values


@pytest.mark.parametrize(("name", "shift", "scale"), CASES)
def test_psi_matches_exact_psi_on_the_baseline_edges(
    psi_baseline: tuple[Baseline, dict[str, np.ndarray[Any, Any]]],
    name: str,
    shift: float,
    scale: float,
) -> None:
    """PSI from the summaries is within 5% of numpy's exact PSI wherever that is ≥ 0.02."""
    live, base, values = live_against(psi_baseline, name, shift, scale)
    _, raw = psi_baseline
    edges = base.binning.edges
    live_counts = exact_bin_counts(values, edges)
    assert live.bins.tolist() == live_counts.tolist()
    exact = exact_psi(live_counts, exact_bin_counts(raw[name], edges))
    value = stats.psi(live.bins, base.bins)
    if exact >= 0.02:
        assert abs(value - exact) <= 0.05 * exact
    # Both sides are exact counts, so the only difference left is float rounding.
    assert value == pytest.approx(exact, rel=1e-9, abs=1e-12)
    if name == "constant":  # shifted, every live value left the training value's bin
        moved = 2 * (1 - stats.PSI_FLOOR) * math.log(1 / stats.PSI_FLOOR)  # floored shares
        assert value == (pytest.approx(moved) if shift else 0.0)


@pytest.mark.parametrize(("name", "shift", "scale"), CASES)
def test_js_distance_matches_scipy_on_exact_shares(
    psi_baseline: tuple[Baseline, dict[str, np.ndarray[Any, Any]]],
    name: str,
    shift: float,
    scale: float,
) -> None:
    """JS distance equals scipy's base-2 Jensen-Shannon distance of the exact bin shares."""
    live, base, values = live_against(psi_baseline, name, shift, scale)
    _, raw = psi_baseline
    edges = base.binning.edges
    p = exact_shares(exact_bin_counts(values, edges))
    q = exact_shares(exact_bin_counts(raw[name], edges))
    expected = float(distance.jensenshannon(p, q, base=2.0))
    assert stats.js_distance(live.bins, base.bins) == pytest.approx(expected, abs=1e-12)


def test_psi_floors_empty_bins_at_one_in_ten_thousand() -> None:
    """An empty bin on one side adds a finite term computed with the 1e-4 share floor."""
    value = stats.psi([50, 50, 0], [40, 40, 20])
    expected = sum((p - q) * math.log(p / q) for p, q in [(0.5, 0.4), (0.5, 0.4), (1e-4, 0.2)])
    assert value == pytest.approx(expected, rel=1e-12)


# -- noise floor ----------------------------------------------------------------


@pytest.mark.parametrize("n", [500, 5000])
def test_mean_undrifted_psi_is_near_the_noise_floor(n: int) -> None:
    """Mean PSI of same-distribution samples is within 25% of (B − 1)(1/n + 1/m)."""
    bins, m, repetitions = 10, 10_000, 200
    rng = np.random.default_rng(n)
    values = []
    for _ in range(repetitions):
        base = rng.lognormal(0.0, 1.0, m)
        live = rng.lognormal(0.0, 1.0, n)
        binning = NumericBinning(np.quantile(base, np.arange(1, bins) / bins))
        values.append(stats.psi(binning.count(live), binning.count(base)))
    ratio = float(np.mean(values)) / stats.psi_noise_floor(bins, n, m)
    assert 0.75 <= ratio <= 1.25


def test_noise_floor_is_infinite_for_an_empty_side_and_zero_for_one_bin() -> None:
    """No observations means no PSI can be told from noise; one bin cannot drift."""
    assert stats.psi_noise_floor(10, 0, 100) == math.inf
    assert stats.psi_noise_floor(10, 100, 0) == math.inf
    assert stats.psi_noise_floor(1, 100, 100) == 0.0
    assert stats.psi_noise_floor(10, 100, 1000) == pytest.approx(9 * (1 / 100 + 1 / 1000))


# -- categorical: χ², JS and PSI over the frozen categories --------------------------

BASE_MIX = {"a": 0.40, "b": 0.25, "c": 0.15, "d": 0.10, "e": 0.07, "f": 0.03}
LIVE_MIX = {"a": 0.30, "b": 0.28, "c": 0.15, "d": 0.08, "e": 0.10, "f": 0.05, "g": 0.03, "h": 0.01}


def draw(rng: np.random.Generator, mix: dict[str, float], n: int) -> list[str]:
    return rng.choice(list(mix), n, p=list(mix.values())).tolist()


@pytest.fixture(scope="module")
def category_baseline(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[CategoricalSummary, list[str]]:
    """A categorical baseline keeping the top three of six categories, and its raw column."""
    rng = np.random.default_rng(99)
    raw = draw(rng, BASE_MIX, 20_000)
    _, baseline = baseline_from_columns(
        tmp_path_factory.mktemp("categories"),
        {"color": raw},
        {"color": "categorical"},
        sketch={"top_categories": 3},
    )
    summary = baseline.fields["color"].summary
    assert isinstance(summary, CategoricalSummary)
    return summary, raw


def exact_buckets(values: list[str], top: tuple[str, ...], known: set[str]) -> list[int]:
    """Counts per top category, then known-but-not-top, then never seen in the baseline."""
    tally = Counter(values)
    other = sum(n for c, n in tally.items() if c not in top and c in known)
    unseen = sum(n for c, n in tally.items() if c not in known)
    return [tally[c] for c in top] + [other, unseen]


@pytest.mark.parametrize("mix", [BASE_MIX, LIVE_MIX], ids=["undrifted", "drifted"])
def test_chi2_pvalue_matches_scipy_on_exact_category_counts(
    category_baseline: tuple[CategoricalSummary, list[str]], mix: dict[str, float]
) -> None:
    """χ² p-value, JS and PSI over the frozen categories equal scipy/numpy on the raw counts."""
    base, raw = category_baseline
    top = tuple(sorted(BASE_MIX, key=lambda c: -BASE_MIX[c])[:3])
    assert base.binning.categories == top
    live_raw = draw(np.random.default_rng(len(mix)), mix, 5_000)
    live = base.empty_like()
    live.update(*to_categories(live_raw))
    expected_live = exact_buckets(live_raw, top, set(BASE_MIX))
    expected_base = exact_buckets(raw, top, set(BASE_MIX))
    assert live.bins.tolist() == expected_live
    assert base.bins.tolist() == expected_base
    assert live.unseen == sum(1 for c in live_raw if c not in BASE_MIX)
    table = np.asarray([expected_live, expected_base])
    table = table[:, table.sum(axis=0) > 0]
    expected_p = scipy_stats.chi2_contingency(table, correction=False).pvalue
    assert stats.chi2_pvalue(live.bins, base.bins) == pytest.approx(
        expected_p, rel=1e-9, abs=1e-300
    )
    js = distance.jensenshannon(exact_shares(expected_live), exact_shares(expected_base), base=2.0)
    assert stats.js_distance(live.bins, base.bins) == pytest.approx(float(js), abs=1e-12)
    assert stats.psi(live.bins, base.bins) == pytest.approx(exact_psi(expected_live, expected_base))
    if mix is LIVE_MIX:
        assert live.unseen > 0
        assert stats.chi2_pvalue(live.bins, base.bins) < 1e-6


def test_chi2_pvalue_is_one_when_there_is_nothing_to_test() -> None:
    """An empty side, or fewer than two occupied categories, gives p = 1."""
    assert stats.chi2_pvalue([0, 0, 0], [5, 3, 2]) == 1.0
    assert stats.chi2_pvalue([4, 0, 0], [9, 0, 0]) == 1.0
    assert stats.chi2_pvalue([], []) == 1.0


# -- invariants on any input -----------------------------------------------------------

counts = st.lists(st.integers(0, 10**6), min_size=1, max_size=20)
count_pairs = st.integers(1, 20).flatmap(
    lambda size: st.tuples(
        st.lists(st.integers(0, 10**6), min_size=size, max_size=size),
        st.lists(st.integers(0, 10**6), min_size=size, max_size=size),
    )
)


@settings(max_examples=150, deadline=None)
@given(count_pairs)
def test_psi_is_non_negative_and_symmetric(pair: tuple[list[int], list[int]]) -> None:
    """PSI ≥ 0, PSI(a, b) = PSI(b, a), and it is finite even with empty bins."""
    live, base = pair
    value = stats.psi(live, base)
    assert value >= 0.0
    assert math.isfinite(value)
    assert value == pytest.approx(stats.psi(base, live), rel=1e-9, abs=1e-12)


@settings(max_examples=150, deadline=None)
@given(counts, st.integers(1, 1000))
def test_psi_of_identical_distributions_is_zero(values: list[int], factor: int) -> None:
    """PSI(x, x) = 0, and also between x and any multiple of x (the same shares)."""
    assert stats.psi(values, values) == 0.0
    assert stats.psi([v * factor for v in values], values) == pytest.approx(0.0, abs=1e-12)


@settings(max_examples=150, deadline=None)
@given(count_pairs)
def test_js_distance_lies_between_zero_and_one(pair: tuple[list[int], list[int]]) -> None:
    """JS distance is in [0, 1] and (nearly) 0 for identical inputs."""
    live, base = pair
    assert 0.0 <= stats.js_distance(live, base) <= 1.0
    assert stats.js_distance(live, live) == pytest.approx(0.0, abs=1e-7)


@settings(max_examples=150, deadline=None)
@given(count_pairs)
def test_chi2_pvalue_is_a_probability(pair: tuple[list[int], list[int]]) -> None:
    """The χ² p-value is in [0, 1] for any pair of count vectors."""
    assert 0.0 <= stats.chi2_pvalue(*pair) <= 1.0


@settings(max_examples=150, deadline=None)
@given(
    st.floats(0.0, 1.0),
    st.floats(0.0, 1.0),
    st.integers(1, 10**7),
    st.integers(1, 10**7),
)
def test_ks_pvalue_is_a_probability_decreasing_in_d(d1: float, d2: float, n: int, m: int) -> None:
    """The KS p-value is in [0, 1] and never rises as D grows."""
    low, high = sorted((d1, d2))
    p_low, p_high = stats.ks_pvalue(low, n, m), stats.ks_pvalue(high, n, m)
    assert 0.0 <= p_high <= p_low <= 1.0


@pytest.mark.parametrize(
    ("live", "base"),
    [([], []), ([0, 0], [0, 0]), ([0, 0], [3, 4]), ([5], [7]), ([1, 2], [0, 0])],
)
def test_statistics_on_empty_or_single_bin_counts_do_not_raise(
    live: list[int], base: list[int]
) -> None:
    """Empty, all-zero and single-bin inputs give PSI 0, JS 0 and p = 1."""
    assert stats.psi(live, base) == 0.0
    assert stats.js_distance(live, base) == 0.0
    assert stats.chi2_pvalue(live, base) == 1.0


def test_statistics_pipeline_survives_missing_and_non_finite_values() -> None:
    """A live column of nothing but None, NaN and ±inf yields zeros, not exceptions."""
    base = numeric_summary(np.arange(1000.0), NumericBinning(np.array([250.0, 500.0, 750.0])))
    live = base.empty_like()
    live.update(*to_floats([None, float("nan"), float("inf"), -float("inf"), None]))
    assert (live.count, live.missing, live.nan, live.inf) == (0, 2, 1, 2)
    assert stats.psi(live.bins, base.bins) == 0.0
    assert stats.js_distance(live.bins, base.bins) == 0.0
    assert stats.ks_statistic(live.kll, base.kll) == 0.0


def test_ks_of_merged_batch_sketches_matches_scipy() -> None:
    """Windows fed by merging per-batch sketches (the monitor's path for batches of 1,024+
    values): D within the two sketches' rank errors of scipy's exact D on the raw values.

    datasketches 5.2's iterator reports weight 1 for every item of such a sketch; D read
    from those weights was about 0.85 for two samples of one distribution.
    """
    rng = np.random.default_rng(11)
    window, reference = ds.kll_doubles_sketch(200), ds.kll_doubles_sketch(200)
    live, base = [], rng.normal(size=20_000)
    reference.update(base)
    for _ in range(3):
        values = np.sort(rng.normal(size=1_500))
        batch = ds.kll_doubles_sketch(200)
        batch.update(values)
        window.merge(batch)
        live.append(values)
    exact = scipy_stats.ks_2samp(np.concatenate(live), base).statistic
    bound = stats.ks_rank_error(window) + stats.ks_rank_error(reference)
    assert abs(stats.ks_statistic(window, reference) - exact) <= bound
    table = stats.cdf_table(window)
    assert np.allclose(table.cdf, window.get_cdf(table.items, True)[:-1])
    assert table.cdf[-1] == 1.0


# -- float32 live sketches against a float64 baseline ------------------------------------

F32_MAX = float(np.finfo(np.float32).max)


def _float32(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.clip(values, -F32_MAX, F32_MAX).astype(np.float32).astype(np.float64)


def _rounding_slack(live: npt.NDArray[np.float64], base: npt.NDArray[np.float64]) -> float:
    """ρ: the largest share either sample holds in one float32 class of two or more distinct values."""
    distinct = np.unique(np.concatenate([live, base]))
    classes, members = np.unique(_float32(distinct), return_counts=True)
    crowded = classes[members > 1]
    worst = 0.0
    for sample in (live, base):
        rounded = _float32(sample)
        inside = rounded[np.isin(rounded, crowded)]
        if len(inside):
            worst = max(worst, np.unique(inside, return_counts=True)[1].max() / len(sample))
    return float(worst)


def _shape(rng: np.random.Generator, shape: str, n: int, shift: float) -> npt.NDArray[np.float64]:
    values = rng.normal(shift, 1.0, n)
    if shape == "grid":  # tenths: almost none is a float32 value, many tie
        return np.round(values * 10.0) / 10.0
    if shape == "huge":  # some beyond float32's range, clamped to its largest value
        return values * 2e38
    if shape == "close":  # pairs of values float32 cannot tell apart
        return 1.0 + np.round(values * 4.0) * 1e-9
    return values


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from(["normal", "grid", "huge", "close"]),
    st.integers(20, 30_000),
    st.floats(0.0, 0.5),
)
def test_ks_of_a_float32_window_stays_within_the_stated_bound(
    seed: int, shape: str, n: int, shift: float
) -> None:
    """A float32 live sketch against a float64 baseline: D_float32 ≤ D ≤ D_float32 + ρ and
    |D_sketch − D_float32| ≤ both rank errors, all against scipy's exact D on raw values."""
    rng = np.random.default_rng(seed)
    base, live = _shape(rng, shape, 20_000, 0.0), _shape(rng, shape, n, shift)
    reference = ds.kll_doubles_sketch(200)
    reference.update(base)
    window = NumericSummary(NumericBinning(np.array([0.0])), items="float32")
    window.update(live)
    assert isinstance(window.kll, ds.kll_floats_sketch)
    exact = float(scipy_stats.ks_2samp(live, base).statistic)
    rounded = float(scipy_stats.ks_2samp(_float32(live), _float32(base)).statistic)
    error = stats.ks_rank_error(window.kll) + stats.ks_rank_error(reference)
    assert rounded <= exact + 1e-12
    assert exact - rounded <= _rounding_slack(live, base) + 1e-12
    for other in (reference, stats.cdf_table(reference).float32()):
        d = stats.ks_statistic(window.kll, other)
        assert abs(d - rounded) <= error + 1e-12
        assert d <= exact + error + 1e-12  # never more than the raw data's D plus sketch error
