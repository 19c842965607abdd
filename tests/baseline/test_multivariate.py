"""Multivariate drift: the PCA fitted from streamed moments, and a correlation flip caught by it alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import ks_2samp
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from driftgauge.baseline import (
    build_baseline,
    check_against,
    describe,
    load_baseline,
    local,
    save_baseline,
)
from driftgauge.baseline.multivariate import (
    FOLDS,
    Copies,
    CrossFit,
    FoldedMoments,
    Moments,
    PcaModel,
    folds,
)
from driftgauge.config import Config, MultivariateConfig, config_from_mapping
from driftgauge.exceptions import BaselineError, ConfigError
from driftgauge.sketches import NumericSummary
from driftgauge.typing import Extracted
from tests.feedback_support import wire
from tests.helpers import base_config, write_csv

T0 = 1_700_000_000.0
ROWS = 20_000
LIVE = 5_000


def correlated(n: int, rho: float, rng: np.random.Generator) -> np.ndarray[Any, Any]:
    """n rows of two standard normal features with correlation ``rho`` (identical marginals)."""
    first = rng.normal(size=n)
    second = rho * first + np.sqrt(1 - rho**2) * rng.normal(size=n)
    return np.column_stack([10.0 + 2.0 * first, -5.0 + 0.5 * second])


def mv_config(tmp_path: Path, **multivariate: Any) -> Config:
    raw = base_config(
        tmp_path,
        features=[
            {"name": "x1", "type": "numeric"},
            {"name": "x2", "type": "numeric"},
            {"name": "noise", "type": "numeric"},
        ],
        predictions=[{"name": "class", "type": "categorical"}],
        windows=["1h"],
        multivariate={"features": ["x1", "x2"], **multivariate},
    )
    return config_from_mapping(raw, base=tmp_path)


def training(tmp_path: Path, rng: np.random.Generator) -> Path:
    data = correlated(ROWS, 0.8, rng)
    return write_csv(
        tmp_path / "train.csv",
        {
            "x1": data[:, 0].tolist(),
            "x2": data[:, 1].tolist(),
            "noise": rng.normal(size=ROWS).tolist(),
            "class": ["a"] * ROWS,
        },
    )


def test_pca_matches_scikit_learn_on_the_raw_data(tmp_path: Path) -> None:
    """Components, kept variance and every row's reconstruction error equal sklearn's PCA."""
    rng = np.random.default_rng(0)
    data = np.column_stack([correlated(4_000, 0.6, rng), rng.normal(3.0, 4.0, 4_000)])
    moments = Moments(3)
    for part in np.array_split(data, 7):
        moments.add(part)
    model = PcaModel.fit(MultivariateConfig(("a", "b", "c"), 2), moments)
    standard = StandardScaler().fit_transform(data)
    reference = PCA(n_components=2).fit(standard)
    assert np.allclose(np.abs(model.components.T), np.abs(reference.components_), atol=1e-9)
    assert model.explained == pytest.approx(reference.explained_variance_ratio_.sum(), rel=1e-9)
    rebuilt = reference.inverse_transform(reference.transform(standard))
    want = np.sqrt(((standard - rebuilt) ** 2).sum(axis=1))
    assert np.allclose(model.errors(data), want, atol=1e-9)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 400), st.integers(1, 400), st.floats(-1e6, 1e6))
def test_merged_moments_equal_one_pass(first: int, second: int, offset: float) -> None:
    """Moments summed in two parts and merged give the one-pass mean and covariance."""
    rng = np.random.default_rng(first * 1000 + second)
    data = rng.normal(size=(first + second, 3)) * [1.0, 10.0, 0.1] + offset
    whole, left, right = Moments(3), Moments(3), Moments(3)
    whole.add(data)
    left.add(data[:first])
    right.add(data[first:])
    left.merge(right)
    mean, covariance = left.mean_and_covariance()
    assert left.count == whole.count
    assert np.allclose(mean, data.mean(axis=0), rtol=1e-9, atol=1e-6)
    assert np.allclose(covariance, np.cov(data.T, bias=True), rtol=1e-6, atol=1e-6)


def test_rows_the_components_span_exactly_have_no_error_however_the_build_splits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """b = 2a with one component: every row is rebuilt exactly, and its error was rounding
    noise (about 1e-17) whose bins followed the order the parts' moments were summed in
    (1 and 2 workers gave bins 560, 437, 823, ... and 571, 446, 830, ...). It is 0, in
    every build; an error the rows do have is kept."""
    rng = np.random.default_rng(1)
    n = 20_000
    a = rng.normal(0.0, 1.0, n)
    raw = base_config(
        tmp_path,
        features=[{"name": name, "type": "numeric"} for name in "abk"],
        predictions=[{"name": "class", "type": "categorical"}],
        windows=["1h"],
        multivariate={"features": ["a", "b"], "components": 1},
    )
    config = config_from_mapping(raw, base=tmp_path)
    columns = {
        "a": a.tolist(),
        "b": (2 * a).tolist(),
        "k": rng.normal(size=n).tolist(),
        "class": ["x"] * n,
    }
    path = write_csv(tmp_path / "train.csv", columns)
    monkeypatch.setattr(local, "PART_BYTES", 200_000)
    monkeypatch.setattr(local, "MIN_PART_BYTES", 50_000)
    built = [build_baseline(config, [path], workers=w, chunk_rows=5_000) for w in (1, 2, 2)]
    for baseline in built:
        summary = baseline.fields["reconstruction_error"].summary
        assert isinstance(summary, NumericSummary)
        assert summary.maximum == 0.0 and summary.count == n
        assert (
            summary.bins.tolist() == built[0].fields["reconstruction_error"].summary.bins.tolist()
        )
    model = built[0].multivariate
    assert model is not None
    off = np.column_stack([a[:5], 2 * a[:5] + 1e-6])  # 1e-6 off the line: an error, kept
    assert np.all(model.errors(off) > 0)


def equicorrelated(
    n: int, width: int, rho: float, rng: np.random.Generator
) -> np.ndarray[Any, Any]:
    """n rows of ``width`` standard normal features, every pair of correlation ``rho``."""
    shared = rng.normal(size=(n, 1))
    return np.sqrt(rho) * shared + np.sqrt(1 - rho) * rng.normal(size=(n, width))


def test_the_baselines_errors_come_from_a_pca_fitted_without_each_rows_fold() -> None:
    """Every training row's baseline error equals scikit-learn's: a PCA of the other folds'
    standardised rows, with as many components as the PCA of every row (the sidecar's)."""
    rng = np.random.default_rng(8)
    data = equicorrelated(3_000, 6, 0.5, rng) * [1.0, 2.0, 3.0, 0.5, 10.0, 1.0] + 7.0
    moments = FoldedMoments(6)
    for part in np.array_split(data, 5):
        moments.add(part)
    config = MultivariateConfig(tuple("abcdef"), 0.8)
    model, crossfit = CrossFit.fit(config, moments)
    kept = model.components.shape[1]
    fold = folds(data)
    want = np.empty(len(data))
    for index in range(FOLDS):
        scaler = StandardScaler().fit(data[fold != index])
        reference = PCA(n_components=kept).fit(scaler.transform(data[fold != index]))
        standard = scaler.transform(data[fold == index])
        rebuilt = reference.inverse_transform(reference.transform(standard))
        want[fold == index] = np.sqrt(((standard - rebuilt) ** 2).sum(axis=1))
    assert np.allclose(crossfit.errors(data), want, atol=1e-9)
    every = Moments(6)
    every.add(data)
    assert np.allclose(model.errors(data), PcaModel.fit(config, every).errors(data), atol=1e-9)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 300), st.integers(1, 6), st.integers(0, 2**32 - 1))
def test_a_rows_fold_follows_from_its_values_alone(rows: int, width: int, seed: int) -> None:
    """The same fold in any order and split of the rows (every runner's partitioning), for
    copies of a row, and for -0.0 and 0.0; every fold gets a share of many rows."""
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(rows, width)).round(int(rng.integers(0, 3)))
    fold = folds(data)
    assert ((fold >= 0) & (fold < FOLDS)).all()
    order = rng.permutation(rows)
    assert np.array_equal(folds(data[order]), fold[order])
    split = int(rng.integers(0, rows + 1))
    assert np.array_equal(np.concatenate([folds(data[:split]), folds(data[split:])]), fold)
    zeros = np.zeros((2, width))
    zeros[1] = -0.0
    assert folds(zeros)[0] == folds(zeros)[1]
    many = folds(rng.normal(size=(20_000, width)))
    assert np.bincount(many, minlength=FOLDS).min() > 20_000 / FOLDS * 0.9


def _undrifted(
    tmp_path: Path, data: np.ndarray[Any, Any], fresh: np.ndarray[Any, Any], components: float
) -> tuple[Any, dict[str, np.ndarray[Any, Any]]]:
    """A baseline of ``data`` (features f0, f1, ..., all multivariate) and the live rows
    ``fresh`` through the monitor: the stats of reconstruction_error, and the errors of the
    training rows cross-fitted and in sample, and of the live rows."""
    rows, width = data.shape
    names = [f"f{i}" for i in range(width)]
    raw = base_config(
        tmp_path,
        features=[{"name": name, "type": "numeric"} for name in names],
        predictions=[{"name": "class", "type": "categorical"}],
        windows=["1h"],
        multivariate={"features": names, "components": components},
    )
    config = config_from_mapping(raw, base=tmp_path)
    columns: dict[str, list[Any]] = {name: data[:, i].tolist() for i, name in enumerate(names)}
    baseline = build_baseline(
        config, [write_csv(tmp_path / "train.csv", {**columns, "class": ["a"] * rows})]
    )
    assert baseline.multivariate is not None
    pipeline = wire(config, baseline, lambda: T0)
    for part in np.array_split(fresh, 10):
        batch = {name: part[:, i] for i, name in enumerate(names)}
        pipeline.monitor.ingest([Extracted(len(part), batch)], now=T0)
    stats = {s.spec.name: s for s in pipeline.monitor.compute().fields}["reconstruction_error"]
    moments = FoldedMoments(width)
    moments.add(data)
    _, crossfit = CrossFit.fit(MultivariateConfig(tuple(names), components), moments)
    errors = {
        "cross-fitted": crossfit.errors(data),
        "in sample": baseline.multivariate.errors(data),
        "live": baseline.multivariate.errors(fresh),
    }
    return stats, errors


def test_undrifted_rows_read_no_drift_from_a_thousand_training_rows(tmp_path: Path) -> None:
    """20 correlated features, 1,000 training rows: a PCA rebuilds its own rows better than
    new ones, so the training rows' own errors read undrifted live rows as drift (PSI
    0.10-0.11, past the shipped warning in every window). Cross-fitted, they do not, and
    the live errors' distribution matches the baseline's (scipy's KS on the raw errors)."""
    rng = np.random.default_rng(9)
    data, fresh = equicorrelated(1_000, 20, 0.5, rng), equicorrelated(10_000, 20, 0.5, rng)
    stats, errors = _undrifted(tmp_path, data, fresh, 0.9)
    assert stats.psi is not None and stats.psi < 0.03, stats.psi
    assert ks_2samp(errors["cross-fitted"], errors["live"]).pvalue > 0.001
    assert ks_2samp(errors["in sample"], errors["live"]).pvalue < 1e-6


def _whole_numbers(n: int, width: int, rng: np.random.Generator) -> np.ndarray[Any, Any]:
    """n rows of ``width`` correlated counts 0 to 4: most rows are copies of another."""
    shared = rng.normal(size=(n, 1))
    return np.clip(np.round(1.5 + shared + 0.6 * rng.normal(size=(n, width))), 0, 4)


def test_undrifted_rows_of_repeated_values_read_no_drift(tmp_path: Path) -> None:
    """Four features of whole numbers 0-4 (counts, ratings), 5,000 training rows: copies of
    a row share a fold, and the sidecar's PCA, fitted on them, rebuilds a live copy, so
    with every error cross-fitted undrifted rows read PSI 0.24 and KS 0.22, past the
    shipped rules.  A repeated row's baseline error is the whole PCA's: no drift, and the
    live errors' distribution is the baseline's (scipy's KS on the raw errors)."""
    rng = np.random.default_rng(0)
    data, fresh = _whole_numbers(5_000, 4, rng), _whole_numbers(10_000, 4, rng)
    stats, errors = _undrifted(tmp_path, data, fresh, 0.8)
    assert stats.psi is not None and stats.psi < 0.02, stats.psi
    assert ks_2samp(errors["cross-fitted"], errors["live"]).statistic < 0.04


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 300), st.integers(1, 4), st.integers(0, 2**32 - 1), st.integers(1, 400))
def test_which_rows_repeat_follows_from_the_rows_alone(
    rows: int, width: int, seed: int, limit: int
) -> None:
    """Copies counts the same rows as repeated in any order and split (every runner's
    partitioning), -0.0 as 0.0; past its limit of distinct rows every row is repeated."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 3, size=(rows, width)).astype(np.float64)
    data[rng.random(rows) < 0.1] *= -1.0  # -0.0 among them
    once = Copies(limit)
    once.add(data)
    order = rng.permutation(rows)
    split = int(rng.integers(0, rows + 1))
    left, right = Copies(limit), Copies(limit)
    left.add(data[order][:split])
    right.add(data[order][split:])
    right.merge(left)
    assert np.array_equal(once.repeated(data), right.repeated(data))
    _, inverse, counts = np.unique(data + 0.0, axis=0, return_inverse=True, return_counts=True)
    want = counts[inverse.ravel()] > 1 if len(counts) <= limit else np.ones(rows, dtype=bool)
    assert np.array_equal(once.repeated(data), want)


def test_rows_the_components_span_exactly_sent_as_float32_have_no_error_either() -> None:
    """total = a + b: the rows have error 0, but sent as an FP32 tensor sends them (numpy
    float32, Triton's binary data) they were off the plane by float32's rounding, about 1e-7
    of their size, far above float64's, and undrifted traffic read PSI 7.3 and KS 0.72 on the
    error against a baseline all at 0. Float32's rounding is no error; 0.001 off still is."""
    rng = np.random.default_rng(8)
    a, b = rng.normal(50.0, 10.0, 5_000).round(2), rng.normal(20.0, 5.0, 5_000).round(2)
    rows = np.column_stack([a, b, a + b])
    moments = Moments(3)
    moments.add(rows)
    model = PcaModel.fit(MultivariateConfig(("a", "b", "total"), 2), moments)
    live = rows[:1_000]
    assert not model.errors(live).any()
    assert not model.errors(live.astype(np.float32).astype(np.float64)).any()
    off = live.copy()
    off[:, 2] += 1e-3
    assert np.all(model.errors(off) > 0)
    assert np.all(model.errors(off.astype(np.float32).astype(np.float64)) > 0)


def test_variance_share_keeps_the_fewest_components_but_never_all() -> None:
    """0.95 of two strongly correlated features keeps one component (two would rebuild exactly)."""
    moments = Moments(2)
    moments.add(correlated(5_000, 0.8, np.random.default_rng(1)))
    model = PcaModel.fit(MultivariateConfig(("a", "b")), moments)
    assert model.components.shape == (2, 1)
    assert model.explained == pytest.approx(0.9, abs=0.02)


@pytest.mark.parametrize(("rows", "width"), [(1, 2), (3, 6), (4, 4)])
def test_no_more_complete_rows_than_features_is_refused(rows: int, width: int) -> None:
    """N rows of P >= N features span at most N - 1 of the P directions, so the PCA rebuilds
    its own training rows better than any other row can be (3 rows of 6 features: every
    training error 0, and undrifted live rows read PSI 18.4, KS 1): the fit refuses."""
    moments = Moments(width)
    moments.add(np.random.default_rng(rows).normal(size=(rows, width)))
    names = tuple(f"f{i}" for i in range(width))
    with pytest.raises(ValueError, match=rf"multivariate: {rows} training rows? holds? every"):
        PcaModel.fit(MultivariateConfig(names), moments)
    moments.add(np.random.default_rng(width).normal(size=(width + 1 - rows, width)))
    assert PcaModel.fit(MultivariateConfig(names), moments).components.shape[0] == width


def test_a_live_row_far_beyond_the_training_range_has_a_large_error_not_0() -> None:
    """A row's squares past float64 (values beyond about 1e154 standard deviations) made its
    error and size inf, and inf <= 1e-9 * inf called it rounding: error 0, the best rebuilt
    row there is, with a RuntimeWarning on stderr. Its error is its distance, and a row
    past float64 itself (a DBL_MAX sentinel) has an infinite one."""
    moments = Moments(2)
    moments.add(correlated(2_000, 0.8, np.random.default_rng(4)))
    model = PcaModel.fit(MultivariateConfig(("a", "b")), moments)
    # b's standard deviation is 0.5: the third row's b is past float64 once standardised.
    far = np.asarray([[1e160, -1e160], [1e200, 1e200], [10.0, 1.7976931348623157e308]])
    errors = model.errors(np.vstack([far, [[10.0, -5.0]]]))
    scaled = model.errors(far[:1] * 1e-150) * 1e150  # the same row, nearer: as far, to scale
    assert errors[0] == pytest.approx(scaled[0], rel=1e-9)
    assert errors[1] > 1e199 and errors[2] == np.inf
    assert errors[3] == pytest.approx(float(model.errors(np.asarray([[10.0, -5.0]]))[0]))


def test_a_feature_whose_variance_overflows_is_named() -> None:
    """Values near 1e300 square past float64: the fit names the feature instead of numpy's
    'Eigenvalues did not converge'."""
    moments = Moments(2)
    data = correlated(1_000, 0.8, np.random.default_rng(2))
    data[:, 1] *= 1e300
    moments.add(data)
    with pytest.raises(ValueError, match=r"multivariate: the variance of b overflows float64"):
        PcaModel.fit(MultivariateConfig(("a", "b")), moments)


def send(config: Config, baseline: Any, rho: float, seed: int) -> dict[str, Any]:
    """Live rows of correlation ``rho`` through the monitor; the stats of each field by name."""
    pipeline = wire(config, baseline, lambda: T0)
    rng = np.random.default_rng(seed)
    data = correlated(LIVE, rho, rng)
    noise = rng.normal(size=LIVE)
    for start in range(0, LIVE, 500):
        part = slice(start, start + 500)
        columns = {"x1": data[part, 0], "x2": data[part, 1], "noise": noise[part]}
        pipeline.monitor.ingest([Extracted(500, columns)], now=T0)
    return {s.spec.name: s for s in pipeline.monitor.compute().fields}


def test_a_correlation_flip_alarms_on_the_multivariate_field_and_nothing_else(
    tmp_path: Path,
) -> None:
    """+0.8 → −0.8 with the same marginals: x1, x2 stay at their noise floor; the PCA error drifts."""
    rng = np.random.default_rng(2)
    config = mv_config(tmp_path)
    baseline = build_baseline(config, [training(tmp_path, rng)])
    assert baseline.fields["reconstruction_error"].spec.role == "multivariate"
    flipped = send(config, baseline, -0.8, seed=3)
    steady = send(config, baseline, 0.8, seed=4)

    def alarms(stats: Any) -> bool:  # the shipped warning rule: PSI > 0.1 and > 4x noise floor
        ready = stats.psi is not None
        return bool(ready and stats.psi > 0.1 and stats.psi > 4 * stats.psi_noise_floor)

    assert alarms(flipped["reconstruction_error"])
    assert flipped["reconstruction_error"].ks_statistic > 0.3
    for name in ("x1", "x2", "noise"):
        assert not alarms(flipped[name]), name
    assert not any(alarms(steady[name]) for name in ("x1", "x2", "noise", "reconstruction_error"))


def test_rows_missing_a_feature_are_missing_for_the_multivariate_field(tmp_path: Path) -> None:
    """A row without x2 has no reconstruction error: counted missing, never NaN or invalid."""
    rng = np.random.default_rng(5)
    config = mv_config(tmp_path)
    baseline = build_baseline(config, [training(tmp_path, rng)])
    pipeline = wire(config, baseline, lambda: T0)
    columns = {"x1": [10.0, 11.0, 9.0], "x2": [-5.0, None, -4.5], "noise": [0.0, 0.1, 0.2]}
    pipeline.monitor.ingest([Extracted(3, columns)], now=T0)
    counters = pipeline.monitor.counters()["reconstruction_error"]
    assert (counters.observations, counters.missing) == (2, 1)
    assert not counters.invalid.get("nan")


def test_the_multivariate_field_is_never_counted_as_a_missing_field(tmp_path: Path) -> None:
    """Rows with x2 null or without it have no reconstruction error: missing, but no request
    carries the field, so none lacked it (driftgauge_missing_fields_total counted both, the
    null's row too, where a JSON null is only missing)."""
    rng = np.random.default_rng(7)
    config = mv_config(tmp_path)
    baseline = build_baseline(config, [training(tmp_path, rng)])
    pipeline = wire(config, baseline, lambda: T0)
    columns = {"x1": [10.0, 11.0, 9.0], "x2": [-5.0, None, None], "noise": [0.0, 0.1, 0.2]}
    pipeline.monitor.ingest([Extracted(3, columns, absent={"x2": 1})], now=T0)
    counters = pipeline.monitor.counters()
    assert (counters["x2"].missing, counters["x2"].absent) == (2, 1)
    error = counters["reconstruction_error"]
    assert (error.observations, error.missing, error.absent) == (1, 2, 0)


def test_baseline_file_round_trips_the_pca_and_check_wants_it(tmp_path: Path) -> None:
    """The saved baseline holds the PCA; a baseline built without multivariate fails `check`."""
    rng = np.random.default_rng(6)
    config = mv_config(tmp_path)
    data = training(tmp_path, rng)
    built = build_baseline(config, [data])
    save_baseline(built, config.baseline)
    loaded = load_baseline(config.baseline)
    assert loaded.multivariate is not None and built.multivariate is not None
    assert np.array_equal(loaded.multivariate.components, built.multivariate.components)
    check_against(loaded, config, config.baseline)
    text = describe(loaded, config.baseline)
    assert "multivariate: PCA of x1, x2: 1 of 2 components" in text
    assert "reconstruction_error  (numeric multivariate" in text
    plain = config_from_mapping(
        {**base_config(tmp_path), "features": [{"name": "x1", "type": "numeric"}]}, base=tmp_path
    )
    with pytest.raises(BaselineError, match="reconstruction_error"):
        check_against(build_baseline(plain, [data]), config, config.baseline)


@pytest.mark.parametrize(
    ("multivariate", "message"),
    [
        ({"features": ["x1"]}, "at least two distinct numeric features"),
        ({"features": ["x1", "region"]}, "'region' is not a numeric feature"),
        ({"features": ["x1", "ash", "x1"]}, r"multivariate\.features\[2\]: 'x1' is listed twice"),
        ({"features": ["x1", "ash"], "components": 2}, "one less than the number of features"),
        ({"features": ["x1", "ash"], "components": 1.5}, "variance share"),
        ({"features": ["x1", "ash"], "name": "ash"}, "already a feature"),
        ({"features": ["x1", "ash"], "color": 1}, "multivariate.color"),
    ],
)
def test_bad_multivariate_config_names_the_key(
    tmp_path: Path, multivariate: dict[str, Any], message: str
) -> None:
    """Each mistake in `multivariate:` is a ConfigError naming its key."""
    raw = base_config(tmp_path, multivariate=multivariate)
    raw["features"] = [
        {"name": "x1", "type": "numeric"},
        {"name": "ash", "type": "numeric"},
        {"name": "region", "type": "categorical"},
    ]
    with pytest.raises(ConfigError, match=message):
        config_from_mapping(raw, base=tmp_path)


def test_the_multivariate_field_counts_each_request_s_rows(tmp_path: Path) -> None:
    """Requests of several rows (one with a row missing x2, which has no error) give the
    multivariate field the sums over requests of each request's own errors."""
    from driftgauge.sketches.requests import request_sums

    rng = np.random.default_rng(8)
    config = mv_config(tmp_path)
    baseline = build_baseline(config, [training(tmp_path, rng)])
    assert baseline.multivariate is not None
    pipeline = wire(config, baseline, lambda: T0)
    pieces, per_request = [], []
    for size in (5, 1, 12, 7, 3):
        data = correlated(size, 0.8, rng)
        x2: list[float | None] = data[:, 1].tolist()
        if size == 12:
            x2[4] = None
        columns = {"x1": data[:, 0].tolist(), "x2": x2, "noise": [0.0] * size}
        pieces.append(Extracted(size, columns))
        complete = data[[v is not None for v in x2]]
        per_request.append(baseline.multivariate.errors(complete))
    pipeline.monitor.ingest(pieces, now=T0)
    summary = pipeline.monitor.merged_windows(T0)["1h"]["reconstruction_error"]
    binning = baseline.fields["reconstruction_error"].summary.binning
    counts = np.array([binning.count(errors) for errors in per_request], dtype=np.int64)
    assert summary.by_request.tolist() == request_sums(counts).tolist()
