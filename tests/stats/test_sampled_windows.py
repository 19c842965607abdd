"""A window of uniformly sampled requests gives the same drift figures as the full window, within
the noise its smaller count implies, and its noise floor and p-values follow that count.

Under overload the proxy admits each request with probability p
(:class:`~driftgauge.sources.sampling.Sampler`), so a sampled window is a
subsample of the full one.  Conditional on the full window (N values, bin
shares p̂), the sampled window's shares p̃ over n ≈ pN values have mean p̂ and
covariance (1 − p)(diag p̂ − p̂p̂ᵀ)/n.  A second-order expansion of
PSI(p̃, q) − PSI(p̂, q) then has

* a linear term gᵀ(p̃ − p̂), g_i = ln(p̂_i/q_i) + 1 − q_i/p̂_i, of variance
  (1 − p)/n · (Σ p̂_i g_i² − (Σ p̂_i g_i)²);
* a quadratic term ½ Σ h_i (p̃_i − p̂_i)², h_i = 1/p̂_i + q_i/p̂_i², of mean
  ½ Σ h_i σ_i² and variance about ½ Σ h_i² σ_i⁴, σ_i² = (1 − p) p̂_i(1 − p̂_i)/n.

The difference must lie within its mean ± 5 standard deviations.  For KS,
sup |F̃ − F̂| is the Kolmogorov statistic of a subsample: below
K⁻¹(1e-6)·√((1 − p)/n), plus the sketches' rank errors.  Everything is
compared with exact references computed by numpy and scipy on the raw values.
"""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from scipy import special
from scipy import stats as scipy_stats

from driftgauge import stats
from driftgauge.baseline import Baseline
from driftgauge.config import Config
from driftgauge.monitor import FieldStats, Monitor
from driftgauge.sources.sampling import Sampler
from driftgauge.typing import Extracted
from tests._stats_helpers import baseline_from_columns, exact_bin_counts, exact_psi

BASELINE_N = 20_000
LIVE_N = 20_000
RATE = 0.2
MIX = {"a": 0.5, "b": 0.3, "c": 0.15, "d": 0.05}
T0 = 1_000_000.0
Z = 5.0  # standard deviations allowed (a fixed seed: this is a bound, not a coin toss)
KS_TAIL = 1e-6

# (shift of x in baseline σ, category mix of color)
CASES = [
    pytest.param(0.0, MIX, id="no-drift"),
    pytest.param(0.2, MIX, id="x-shift-0.2sd"),
    pytest.param(0.0, {"a": 0.3, "b": 0.3, "c": 0.25, "d": 0.15}, id="color-mix"),
    pytest.param(1.0, {"a": 0.7, "b": 0.2, "c": 0.05, "d": 0.05}, id="both-strong"),
]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, Baseline, dict[str, Any]]:
    rng = np.random.default_rng(11)
    columns = {
        "x": rng.normal(10.0, 2.0, BASELINE_N).tolist(),
        "color": rng.choice(list(MIX), BASELINE_N, p=list(MIX.values())).tolist(),
    }
    types = {"x": "numeric", "color": "categorical"}
    config, baseline = baseline_from_columns(
        tmp_path_factory.mktemp("sampled"), columns, types, min_observations=100
    )
    return config, baseline, columns


def admitted_mask(n: int, seed: int) -> npt.NDArray[np.bool_]:
    """Which of ``n`` one-row requests the real sampler admits at a rate held at ``RATE``."""
    sampler = Sampler(0.5, lambda: 0.0, lambda reason, count: None, draw=random.Random(seed).random)
    sampler.rate = RATE
    mask = np.fromiter((sampler.admit() for _ in range(n)), dtype=bool, count=n)
    assert sampler.admitted == int(mask.sum())
    return mask


def monitored(config: Config, baseline: Baseline, x: Any, color: Any) -> dict[str, FieldStats]:
    monitor = Monitor(config, baseline)
    for start in range(0, len(x), 1_000):  # a request a row: independent draws
        rows = range(start, min(start + 1_000, len(x)))
        monitor.ingest(
            [Extracted(1, {"x": x[j : j + 1], "color": color[j : j + 1]}) for j in rows], now=T0
        )
    return {f.spec.name: f for f in monitor.compute(T0).fields}


def psi_tolerance(full: Any, base: Any, n: int, rate: float) -> tuple[float, float]:
    """Mean and standard deviation of PSI(sampled) − PSI(full) given the full window's counts."""
    p = np.maximum(np.asarray(full, float) / np.sum(full), stats.PSI_FLOOR)
    q = np.maximum(np.asarray(base, float) / np.sum(base), stats.PSI_FLOOR)
    g = np.log(p / q) + 1 - q / p
    h = 1 / p + q / p**2
    shrink = (1 - rate) / n
    sigma2 = shrink * p * (1 - p)
    linear = shrink * (np.sum(p * g**2) - np.sum(p * g) ** 2)
    quadratic = 0.5 * np.sum(h**2 * sigma2**2)
    return 0.5 * float(np.sum(h * sigma2)), math.sqrt(linear + quadratic)


def category_counts(values: list[str], categories: tuple[str, ...]) -> list[int]:
    counted = [sum(1 for v in values if v == c) for c in categories]
    return [*counted, 0, 0]  # other, unseen: none in these samples


@pytest.mark.parametrize(("shift", "mix"), CASES)
def test_a_sampled_window_matches_the_full_one_within_its_noise(
    built: tuple[Config, Baseline, dict[str, Any]], shift: float, mix: dict[str, float]
) -> None:
    """PSI (numeric and categorical) and KS D of a 20% uniform sample of a 20,000-value window
    equal the full window's within the subsample noise; the sampled window's count, noise
    floor and KS p-value are those of the admitted count."""
    config, baseline, columns = built
    rng = np.random.default_rng(int(shift * 10) + len(mix) + int(mix["a"] * 100))
    x = rng.normal(10.0 + shift * 2.0, 2.0, LIVE_N)
    color = rng.choice(list(mix), LIVE_N, p=list(mix.values()))
    keep = admitted_mask(LIVE_N, seed=5)
    n = int(keep.sum())
    assert abs(n - RATE * LIVE_N) < 5 * math.sqrt(LIVE_N * RATE * (1 - RATE))

    full = monitored(config, baseline, x.tolist(), color.tolist())
    sampled = monitored(config, baseline, x[keep].tolist(), color[keep].tolist())
    base_x = np.asarray(columns["x"])
    edges = baseline.fields["x"].summary.binning.edges
    categories = baseline.fields["color"].summary.binning.categories
    m = baseline.fields["x"].summary.count

    # The sampled window holds the admitted values, and its noise floor is theirs.
    assert sampled["x"].observations == sampled["color"].observations == n
    assert full["x"].observations == LIVE_N
    bins = int(np.count_nonzero(baseline.fields["x"].summary.bins))
    assert sampled["x"].psi_noise_floor == pytest.approx((bins - 1) * (1 / n + 1 / m))
    assert full["x"].psi_noise_floor == pytest.approx((bins - 1) * (1 / LIVE_N + 1 / m))

    # PSI: both windows' figures are exact, and their difference is within the subsample noise.
    checks = [
        ("x", exact_bin_counts(x, edges), exact_bin_counts(x[keep], edges)),
        (
            "color",
            category_counts(color.tolist(), categories),
            category_counts(color[keep].tolist(), categories),
        ),
    ]
    for name, full_counts, kept_counts in checks:
        base_counts = baseline.fields[name].summary.bins
        assert full[name].psi == pytest.approx(exact_psi(full_counts, base_counts), rel=1e-9)
        assert sampled[name].psi == pytest.approx(exact_psi(kept_counts, base_counts), rel=1e-9)
        bias, sd = psi_tolerance(full_counts, base_counts, n, RATE)
        difference = _value(sampled[name].psi) - _value(full[name].psi)
        assert abs(difference - bias) <= Z * sd, (name, difference, bias, sd)

    # KS: exact D of each window (scipy) within the sketches' error of the monitor's, and the
    # two windows' D within the subsample's Kolmogorov bound.
    exact_full = scipy_stats.ks_2samp(x, base_x).statistic
    exact_kept = scipy_stats.ks_2samp(x[keep], base_x).statistic
    limit = special.kolmogi(KS_TAIL) * math.sqrt((1 - RATE) / n)
    assert abs(exact_kept - exact_full) <= limit
    base_error = stats.ks_rank_error(baseline.fields["x"].summary.kll)
    for window, exact in ((full, exact_full), (sampled, exact_kept)):
        assert abs(_value(window["x"].ks_statistic) - exact) <= 2 * base_error + 0.02
    # The p-value is read at the admitted count (sketch error aside, scipy's asymptotic one).
    scipy_p = scipy_stats.ks_2samp(x[keep], base_x, method="asymp").pvalue
    assert _value(sampled["x"].ks_pvalue) >= scipy_p * (1 - 1e-9) or scipy_p < 1e-12
    if shift >= 1.0:
        assert _value(sampled["x"].ks_pvalue) < 1e-6  # strong drift stays significant at n


def _value(figure: float | None) -> float:
    assert figure is not None
    return figure


def test_sampling_adds_only_the_predicted_psi_bias_and_the_noise_floor_follows_it(
    built: tuple[Config, Baseline, dict[str, Any]],
) -> None:
    """Over 200 samplings of one undrifted window, the mean PSI excess of the sampled window
    over the full one is the predicted quadratic bias; over 200 fresh undrifted windows, PSI of
    the sampled window divided by the noise floor at the admitted count averages 1 (so the
    significance gate stays calibrated), where the floor at the full count would read 3."""
    _, baseline, _ = built
    summary = baseline.fields["x"].summary
    edges, base_counts = summary.binning.edges, summary.bins
    bins, m = int(np.count_nonzero(base_counts)), int(summary.count)
    repetitions = 200
    rng = np.random.default_rng(23)
    x = rng.normal(10.0, 2.0, LIVE_N)
    full_counts = exact_bin_counts(x, edges)
    full_psi = stats.psi(full_counts, base_counts)
    excess = []
    for seed in range(repetitions):
        keep = admitted_mask(LIVE_N, seed=1_000 + seed)
        excess.append(stats.psi(exact_bin_counts(x[keep], edges), base_counts) - full_psi)
    bias, sd = psi_tolerance(full_counts, base_counts, int(RATE * LIVE_N), RATE)
    assert abs(float(np.mean(excess)) - bias) <= Z * sd / math.sqrt(repetitions)

    at_admitted, at_full = [], []
    for seed in range(repetitions):
        window = rng.normal(10.0, 2.0, LIVE_N)
        keep = admitted_mask(LIVE_N, seed=5_000 + seed)
        value = stats.psi(exact_bin_counts(window[keep], edges), base_counts)
        at_admitted.append(value / stats.psi_noise_floor(bins, int(keep.sum()), m))
        at_full.append(value / stats.psi_noise_floor(bins, LIVE_N, m))
    # PSI / floor follows χ²(B − 1)/(B − 1): the mean of 200 has sd √(2/(B − 1)/200) ≈ 0.03.
    assert 0.85 <= float(np.mean(at_admitted)) <= 1.15
    assert float(np.mean(at_full)) > 2.5
