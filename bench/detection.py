"""Drift detection: false alarms, detection rate and delay of drift alert rules, side by side.

Run from the repository root (needs Evidently, which driftgauge itself never
imports: ``.venv/bin/pip install -e '.[bench]'`` or ``pip install evidently``)::

    .venv/bin/python -m bench.detection            # about 4-5 minutes on 2 shared cores
    .venv/bin/python -m bench.detection --quick    # about 30 s: a smoke run, noisy figures
    .venv/bin/python -m bench.detection --markdown # the tables as Markdown (docs/statistics.md)

Every window is scored once and every rule reads the same statistics, so the
columns differ only by the rule.  The rules:

- driftgauge's statistics come from driftgauge's own code: the baseline is
  built by :func:`driftgauge.baseline.build_baseline` from a Parquet file of
  the reference (equal-mass bins from its KLL sketch, exact counts); each
  live window is 10 slices, each a :class:`NumericSummary` (KLL k=200 plus
  bin counts), merged as the sidecar's sliced windows merge them; and
  :func:`driftgauge.monitor.field_stats` computes PSI, the noise floor, JS,
  KS D and its p-value (taken at D minus both sketches' rank errors) exactly
  as the sidecar exports them.  A normed Wasserstein distance, which
  driftgauge does not export, is computed from the same two KLL sketches
  (mean |quantile difference| over 200 ranks, over the baseline's spread).
- Evidently's default per-column drift test is chosen and run by Evidently
  itself (``get_stattest(..., None)``, what ``ValueDrift`` and
  ``DataDriftPreset`` use for a numeric column): reference above 1,000 rows,
  Wasserstein distance / reference std ≥ 0.1; otherwise KS p ≤ 0.05; columns
  with ≤ 5 distinct values get Jensen-Shannon ≥ 0.1 or χ²/Z p ≤ 0.05.

Data: synthetic shapes with a 10,000-row reference (normal, lognormal,
uniform, exponential, Poisson(3), 70% zeros, bimodal; and, reported apart as a
stress case, 85% zeros, where only 2 of the 10 baseline bins hold data),
drifted by moving the mean by k standard deviations (k = 0.1, 0.25, 0.5;
Poisson by raising λ, the zero-inflated shapes by moving only their non-zero
values, so both keep their support).  And the numeric features (more than 5
distinct values) of scikit-learn's bundled wine, breast-cancer and diabetes
data (no download), two ways: as the issue asks, one random half is the
reference and windows are drawn with replacement from the other half (the two
halves differ by their own sampling noise, which no window can average away,
so "undrifted" windows there are slightly drifted and every test's false
alarms grow with the window); and, as an exact null, the whole data set is
the population that a half-size reference and the windows are both drawn
from with replacement.  Drift adds k reference std to the window.

A window alarms when a rule's condition holds on it (one evaluation; the
shipped alerts also need the 5m and 1h windows to agree and ``for: 15m``,
which only lowers both rates).  False alarms are per 1,000 undrifted
windows; detection is the share of drifted windows that alarm; delay is the
median, over streams of drifted windows, of the index of the first alarm
(">L" when most streams of L windows never alarm).
"""

from __future__ import annotations

import argparse
import math
import pickle
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml
from scipy import stats as sstats

from bench._common import print_table, write_parquet
from driftgauge import stats
from driftgauge.baseline import FieldBaseline, build_baseline
from driftgauge.config import config_from_mapping
from driftgauge.monitor.fields import field_stats
from driftgauge.sketches.summary import LIVE_ITEMS, NumericSummary

try:
    import pandas as pd
    from evidently import __version__ as EVIDENTLY_VERSION
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType
except ImportError as exc:  # pragma: no cover - the message is the point
    raise SystemExit(
        "bench.detection compares with Evidently: pip install -e '.[bench]' (or pip install evidently)"
    ) from exc

Array = npt.NDArray[np.float64]
SHIFTS = (0.1, 0.25, 0.5)
WINDOWS = (100, 1_000, 10_000)
REFERENCE_ROWS = 10_000
SLICES = 10  # the default window_slices: a live window is a merge of this many slice sketches
MIN_OBSERVATIONS = 100
BINS = 10  # the default sketch.bins
W_RANKS = (np.arange(200) + 0.5) / 200


# -- data --------------------------------------------------------------------

Draw = Callable[[np.random.Generator, int, float], Array]


def _additive(base: Callable[[np.random.Generator, int], Array], sd: float) -> Draw:
    return lambda rng, n, k: base(rng, n) + k * sd


def _poisson(lam: float) -> Draw:
    # The mean moves k sd (sd = √λ) and the values stay integers.
    return lambda rng, n, k: rng.poisson(lam + k * math.sqrt(lam), n).astype(np.float64)


def _population_sd(base: Callable[[np.random.Generator, int], Array]) -> float:
    return float(np.std(base(np.random.default_rng(12345), 2_000_000)))


def _zero_inflated(zeros: float) -> Draw:
    """``zeros`` zeros, the rest lognormal; drift moves only the non-zero values.

    They move by k·sd/(1 − zeros), so the mean moves k sd and a zero stays a zero.
    """

    def base(rng: np.random.Generator, n: int) -> Array:
        return np.where(rng.random(n) < zeros, 0.0, rng.lognormal(0.0, 0.5, n))

    step = _population_sd(base) / (1.0 - zeros)

    def draw(rng: np.random.Generator, n: int, k: float) -> Array:
        values = base(rng, n)
        values[values > 0] += k * step
        return values

    return draw


def synthetic_shapes() -> dict[str, Draw]:
    """Feature shapes and how each drifts by k standard deviations."""
    bases: dict[str, Callable[[np.random.Generator, int], Array]] = {
        "normal": lambda rng, n: rng.normal(0.0, 1.0, n),
        "lognormal": lambda rng, n: rng.lognormal(0.0, 0.75, n),
        "uniform": lambda rng, n: rng.uniform(0.0, 1.0, n),
        "exponential": lambda rng, n: rng.exponential(1.0, n),
        "bimodal": lambda rng, n: np.where(
            rng.random(n) < 0.5, rng.normal(-2.0, 1.0, n), rng.normal(2.0, 1.0, n)
        ),
    }
    shapes = {name: _additive(base, _population_sd(base)) for name, base in bases.items()}
    shapes["poisson(3)"] = _poisson(3.0)
    shapes["70% zeros"] = _zero_inflated(0.7)
    # Not among the shapes: with 85% zeros only 2 of the 10 bins hold data (χ² with
    # 1 degree of freedom), the worst case for a fixed multiple of the noise floor.
    shapes["85% zeros"] = _zero_inflated(0.85)
    order = ["normal", "lognormal", "uniform", "exponential", "poisson(3)", "70% zeros"]
    return {name: shapes[name] for name in [*order, "bimodal", "85% zeros"]}


def real_features() -> dict[str, dict[str, Array]]:
    """Numeric columns (more than 5 distinct values) of scikit-learn's bundled data sets."""
    from sklearn import datasets

    result: dict[str, dict[str, Array]] = {}
    for name, loader in (
        ("wine", datasets.load_wine),
        ("breast_cancer", datasets.load_breast_cancer),
        ("diabetes", datasets.load_diabetes),
    ):
        bunch = loader()
        columns = {
            str(feature): np.asarray(bunch.data[:, i], dtype=np.float64)
            for i, feature in enumerate(bunch.feature_names)
        }
        result[name] = {f: v for f, v in columns.items() if len(np.unique(v)) > 5}
    return result


# -- scoring -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Source:
    """One feature against one reference: its baseline as driftgauge holds it, and its windows."""

    group: str  # "synthetic" or a data set's name
    name: str
    held: FieldBaseline
    base_cdf: stats.CdfTable
    base_quantiles: Array
    base_spread: float
    reference: Any  # pandas Series, for Evidently
    draw: Draw


def baselines(columns: dict[str, Array], workdir: Path, tag: str) -> dict[str, FieldBaseline]:
    """driftgauge baselines of ``columns``, built by ``build_baseline`` from a Parquet file."""
    names = {name: f"f{i:03d}" for i, name in enumerate(columns)}
    config = config_from_mapping(
        {
            "model": "detection",
            "protocol": "kserve-v2",
            "source": {"tail": {"path": str(workdir / "unused.jsonl")}},
            "baseline": str(workdir / "unused.dgb"),
            "features": [{"name": field, "type": "numeric"} for field in names.values()],
            "windows": ["5m"],
            "min_observations": MIN_OBSERVATIONS,
            "sketch": {"bins": BINS, "kll_k": 200},
        },
        base=workdir,
    )
    path = write_parquet(
        workdir / f"{tag}.parquet", {names[n]: values for n, values in columns.items()}
    )
    built = build_baseline(config, [path])
    return {name: built.fields[field] for name, field in names.items()}


def make_source(group: str, name: str, held: FieldBaseline, reference: Array, draw: Draw) -> Source:
    summary = held.summary
    assert isinstance(summary, NumericSummary)
    quantiles = np.asarray(summary.kll.get_quantiles(W_RANKS.tolist()), dtype=np.float64)
    return Source(
        group,
        name,
        held,
        stats.cdf_table(summary.kll),
        quantiles,
        max(float(np.std(quantiles)), 1e-3),
        pd.Series(reference),
        draw,
    )


FIELDS = ("n", "psi", "floor", "bins", "pmin", "js", "ks_d", "ks_p", "w_sketch", "evidently")


def score(source: Source, values: Array) -> tuple[float, ...]:
    """Every statistic a rule may read, for one live window."""
    held = source.held
    summary = held.summary
    assert isinstance(summary, NumericSummary)
    live = summary.empty_like(LIVE_ITEMS)  # as the sidecar's windows hold them
    for part in np.array_split(values, SLICES):
        piece = summary.empty_like(LIVE_ITEMS)
        piece.update(part)
        live.merge(piece)
    result = field_stats(held.spec, "w", live, held, MIN_OBSERVATIONS, source.base_cdf)
    assert result.psi is not None and result.psi_noise_floor is not None
    quantiles = np.asarray(live.kll.get_quantiles(W_RANKS.tolist()), dtype=np.float64)
    w_sketch = float(np.mean(np.abs(quantiles - source.base_quantiles))) / source.base_spread
    current = pd.Series(values)
    test = get_stattest(source.reference, current, ColumnType.Numerical, None)
    drifted = test(source.reference, current, ColumnType.Numerical, None).drifted
    return (
        float(len(values)),
        result.psi,
        result.psi_noise_floor,
        float(max(2, np.count_nonzero(summary.bins))),
        float(min(r for r in held.ratios if r > 0)),
        result.js_distance or 0.0,
        result.ks_statistic or 0.0,
        result.ks_pvalue if result.ks_pvalue is not None else 1.0,
        w_sketch,
        float(bool(drifted)),
    )


@dataclass(slots=True)
class Runs:
    """Scored windows of one kind: rows of FIELDS, grouped as (stream, window in stream)."""

    rows: list[tuple[float, ...]]
    shape: tuple[int, int]
    source: str

    def table(self) -> dict[str, Array]:
        array = np.asarray(self.rows, dtype=np.float64).reshape(*self.shape, len(FIELDS))
        return {name: array[..., i] for i, name in enumerate(FIELDS)}


@dataclass(frozen=True, slots=True)
class Plan:
    references: int  # synthetic references per shape
    splits: int  # random splits (and bootstrap references) per data set
    null_windows: int  # undrifted windows per source and window size
    streams: int  # drifted streams per source, window size and shift
    length: int  # windows per drifted stream
    real_null: int
    real_streams: int
    real_length: int


FULL = Plan(references=3, splits=2, null_windows=160, streams=5, length=6, real_null=6, real_streams=2, real_length=3)  # fmt: skip
QUICK = Plan(references=1, splits=1, null_windows=30, streams=3, length=3, real_null=1, real_streams=1, real_length=1)  # fmt: skip

Results = dict[tuple[str, int, float], list[Runs]]  # (group kind, window, shift) -> runs


def run_source(
    source: Source,
    rng: np.random.Generator,
    null: int,
    streams: int,
    length: int,
    results: Results,
    kind: str,
) -> None:
    for n in WINDOWS:
        rows = [score(source, source.draw(rng, n, 0.0)) for _ in range(null)]
        results.setdefault((kind, n, 0.0), []).append(Runs(rows, (1, null), source.name))
        for k in SHIFTS:
            rows = [score(source, source.draw(rng, n, k)) for _ in range(streams * length)]
            results.setdefault((kind, n, k), []).append(Runs(rows, (streams, length), source.name))


SYNTHETIC = "synthetic"
STRESS = "stress: 85% zeros"
HALVES = "real: held-out half"
BOOTSTRAP = "real: bootstrap"
KINDS = (SYNTHETIC, STRESS, HALVES, BOOTSTRAP)


def collect(plan: Plan, seed: int, workdir: Path, real: bool) -> Results:
    rng = np.random.default_rng(seed)
    results: Results = {}
    shapes = synthetic_shapes()
    for replica in range(plan.references):
        references = {name: draw(rng, REFERENCE_ROWS, 0.0) for name, draw in shapes.items()}
        held = baselines(references, workdir, f"synthetic{replica}")
        for name, draw in shapes.items():
            source = make_source(SYNTHETIC, name, held[name], references[name], draw)
            kind = STRESS if name == "85% zeros" else SYNTHETIC
            run_source(source, rng, plan.null_windows, plan.streams, plan.length, results, kind)
    if not real:
        return results
    for dataset, columns in real_features().items():
        rows = len(next(iter(columns.values())))
        for replica in range(plan.splits):
            # The design: reference a random half, windows resampled from the other.
            order = rng.permutation(rows)
            halves = (order[: rows // 2], order[rows // 2 :])
            # An exact null for comparison: the data set is the population, and reference and
            # windows are both drawn from it with replacement.
            bootstrap = (rng.integers(0, rows, rows // 2), np.arange(rows))
            designs = ((HALVES, halves), (BOOTSTRAP, bootstrap))
            for index, (kind, (ref_rows, live_rows)) in enumerate(designs):
                references = {f: v[ref_rows] for f, v in columns.items()}
                held = baselines(references, workdir, f"{dataset}-{replica}-{index}")
                for feature, values in columns.items():
                    pool, sd = values[live_rows], float(np.std(references[feature]))

                    def draw(g: np.random.Generator, n: int, k: float, p: Array = pool, s: float = sd) -> Array:  # fmt: skip
                        return g.choice(p, n, replace=True) + k * s

                    source = make_source(dataset, feature, held[feature], references[feature], draw)  # fmt: skip
                    run_source(
                        source,
                        rng,
                        plan.real_null,
                        plan.real_streams,
                        plan.real_length,
                        results,
                        kind,
                    )
    return results


# -- rules -----------------------------------------------------------------------

Rule = Callable[[dict[str, Array]], npt.NDArray[np.bool_]]


def chi2_gate(df: Array | float, z: float) -> Array | float:
    """χ²(df) quantile / df by Wilson–Hilferty: what PromQL can compute (``sqrt``, ``^``).

    With no drift PSI / noise floor behaves like χ²(df)/df, df = occupied baseline bins − 1,
    so ``psi > noise_floor · chi2_gate(df, z)`` alarms with probability ≈ 1 − Φ(z).
    """
    a = 2.0 / (9.0 * np.asarray(df, dtype=np.float64))
    return (1.0 - a + z * np.sqrt(a)) ** 3  # type: ignore[no-any-return]


Z999 = float(sstats.norm.isf(1e-3))  # 3.090
Z9999 = float(sstats.norm.isf(1e-4))  # 3.719


def _gate(z: float) -> Rule:
    return lambda t: t["psi"] > t["floor"] * chi2_gate(t["bins"] - 1, z)


@dataclass(frozen=True, slots=True)
class Candidate:
    label: str
    condition: str
    rule: Rule


GATE = "driftgauge:psi_chi2_gate"
SHIPPED_RULES = Path(__file__).resolve().parent.parent / "alert_rules" / "driftgauge.rules.yml"


def _shipped_rules() -> dict[str, str]:
    groups = yaml.safe_load(SHIPPED_RULES.read_text(encoding="utf-8"))["groups"]
    return {r.get("alert") or r["record"]: r["expr"] for g in groups for r in g["rules"]}


def shipped_thresholds(alert: str) -> tuple[float, float]:
    """The effect-size floor and the gate's z of a shipped PSI alert, read from its PromQL.

    So the "shipped" columns are the rules in alert_rules/driftgauge.rules.yml, whatever
    they are edited to (warning today: PSI > 0.02 and z 3.09, the 99.9% gate).
    """
    expr = _shipped_rules()[alert]
    floor = re.search(r'driftgauge:psi_ready\{role="input"\} > ([0-9.]+)', expr)
    z = re.search(rf'{GATE}\{{z="([0-9.]+)"\}}', expr)
    assert floor is not None and z is not None, f"{alert} is not a χ² gate rule"
    return float(floor[1]), float(z[1])


SHIPPED_PSI, SHIPPED_Z = shipped_thresholds("DriftgaugeFeatureDriftWarning")
SHIPPED_PSI_CRITICAL, SHIPPED_Z_CRITICAL = shipped_thresholds("DriftgaugeFeatureDriftCritical")


def shipped_min_expected() -> float:
    """Observations each baseline bin must expect before a window counts (the rules' readiness)."""
    expr = _shipped_rules()["driftgauge:psi_min_observations"]
    found = re.match(r"([0-9.]+) / min without \(bin\)", expr)
    assert found is not None, "driftgauge:psi_min_observations is not N / min bin share"
    return float(found[1])


MIN_EXPECTED = shipped_min_expected()


def _ready(t: dict[str, Array]) -> npt.NDArray[np.bool_]:
    """driftgauge:psi_ready: the window holds MIN_EXPECTED / (smallest baseline bin share) draws
    (its values: the benchmark's rows are independent, design effect 1)."""
    return t["n"] >= MIN_EXPECTED / t["pmin"]  # type: ignore[no-any-return]


CANDIDATES = (
    Candidate(
        "shipped",
        f"driftgauge_psi > {SHIPPED_PSI} and driftgauge_psi > driftgauge_psi_noise_floor * "
        f'{GATE}{{z="{SHIPPED_Z}"}}, in windows holding {MIN_EXPECTED:g} / the smallest '
        "baseline bin share (DriftgaugeFeatureDriftWarning)",
        lambda t: _ready(t) & (t["psi"] > SHIPPED_PSI) & _gate(SHIPPED_Z)(t),
    ),
    Candidate(
        "evidently",
        "Evidently's default column drift test (ValueDrift / DataDriftPreset)",
        lambda t: t["evidently"] > 0,
    ),
    Candidate(
        "old shipped",
        "driftgauge_psi > 0.1 and driftgauge_psi > 4 * driftgauge_psi_noise_floor (the warning until issue 12)",
        lambda t: (t["psi"] > 0.1) & (t["psi"] > 4 * t["floor"]),
    ),
    Candidate(
        "shipped critical",
        f"driftgauge_psi > {SHIPPED_PSI_CRITICAL} and driftgauge_psi > driftgauge_psi_noise_floor * "
        f'{GATE}{{z="{SHIPPED_Z_CRITICAL}"}}, ready windows (DriftgaugeFeatureDriftCritical)',
        lambda t: _ready(t) & (t["psi"] > SHIPPED_PSI_CRITICAL) & _gate(SHIPPED_Z_CRITICAL)(t),
    ),
    Candidate("psi>0.1", "driftgauge_psi > 0.1", lambda t: t["psi"] > 0.1),
    Candidate(
        "ks shipped",
        "driftgauge_ks_statistic > 0.1 and driftgauge_ks_pvalue < 0.001 (DriftgaugeFeatureKSDrift)",
        lambda t: (t["ks_d"] > 0.1) & (t["ks_p"] < 0.001),
    ),
    Candidate(
        "psi>4·floor",
        "driftgauge_psi > 4 * driftgauge_psi_noise_floor (the old shipped rule without psi > 0.1)",
        lambda t: t["psi"] > 4 * t["floor"],
    ),
    Candidate(
        "χ² gate 99.9%",
        f"driftgauge_psi > driftgauge_psi_noise_floor * {GATE} (z = {Z999:.3f})",
        _gate(Z999),
    ),
    Candidate(
        "χ² gate 99.99%",
        f"driftgauge_psi > driftgauge_psi_noise_floor * {GATE} (z = {Z9999:.3f})",
        _gate(Z9999),
    ),
    Candidate("ks p<0.01", "driftgauge_ks_pvalue < 0.01", lambda t: t["ks_p"] < 0.01),
    Candidate(
        "W>0.1 & gate 99.9%",
        "Wasserstein / baseline spread > 0.1 (from the KLL sketches; not exported) and χ² gate 99.9%",
        lambda t: (t["w_sketch"] > 0.1) & _gate(Z999)(t),
    ),
)
REFERENCE = CANDIDATES[1]


# -- report ------------------------------------------------------------------------


def _alarms(rule: Rule, runs: list[Runs]) -> npt.NDArray[np.bool_]:
    return np.concatenate([rule(r.table()).ravel() for r in runs])


def delay(alarms: npt.NDArray[np.bool_]) -> str:
    """Median index (1-based) of the first alarm over streams; '>L' when most never alarm."""
    length = alarms.shape[1]
    first = np.where(alarms.any(axis=1), alarms.argmax(axis=1) + 1, length + 1)
    median = float(np.median(first))
    return f">{length}" if median > length else f"{median:g}"


def report(results: Results, kind: str, candidates: Sequence[Candidate]) -> list[list[str]]:
    rows: list[list[str]] = []
    for n in WINDOWS:
        null = results[(kind, n, 0.0)]
        cells = [f"{1000 * _alarms(c.rule, null).mean():.1f}" for c in candidates]
        rows.append([f"{n:,}", "false alarms /1000", *cells])
        for k in SHIFTS:
            runs = results[(kind, n, k)]
            cells = []
            for c in candidates:
                streams = np.concatenate([c.rule(r.table()) for r in runs], axis=0)
                cells.append(f"{100 * streams.mean():.1f}% / {delay(streams)}")
            rows.append([f"{n:,}", f"{k:g} sd: detected / delay", *cells])
    return rows


def worst_false_alarms(
    results: Results, kind: str, candidates: Sequence[Candidate]
) -> list[list[str]]:
    """Per window size, the highest false-alarm rate of any one source (shape or feature)."""
    rows = []
    for n in WINDOWS:
        cells = []
        for c in candidates:
            by_source: dict[str, list[float]] = {}
            for run in results[(kind, n, 0.0)]:
                by_source.setdefault(run.source, []).extend(c.rule(run.table()).ravel().tolist())
            rates = {source: float(np.mean(v)) for source, v in by_source.items()}
            name = max(rates, key=rates.__getitem__)
            cells.append(f"{1000 * rates[name]:.0f} ({name})" if rates[name] else "0")
        rows.append([f"{n:,}", *cells])
    return rows


def meets_target(results: Results, kind: str, candidate: Candidate) -> tuple[bool, str]:
    """False alarms ≤ 1% at every window size; detection ≥ Evidently's at 0.25 and 0.5 sd from 1,000 rows."""
    worst_fa = max(_alarms(candidate.rule, results[(kind, n, 0.0)]).mean() for n in WINDOWS)
    gaps = [
        _alarms(candidate.rule, results[(kind, n, k)]).mean()
        - _alarms(REFERENCE.rule, results[(kind, n, k)]).mean()
        for n in WINDOWS[1:]
        for k in SHIFTS[1:]
    ]
    met = worst_fa <= 0.01 and min(gaps) >= 0.0
    return met, f"false alarms ≤ {1000 * worst_fa:.1f}/1000, detection vs Evidently {100 * min(gaps):+.1f} points at worst"  # fmt: skip


def check_evidently_report(seed: int) -> str:
    """Evidently's ``Report([ValueDrift])`` gives the same score and method as the direct call.

    The benchmark calls the per-column test the way ``ValueDrift`` does, without the
    report around it (thousands of reports would take hours); this checks on a few windows,
    both test paths (Wasserstein for a large reference, KS for a small one), that nothing
    in between changes the verdict.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    rng = np.random.default_rng(seed)
    definition = DataDefinition(numerical_columns=["x"])
    checked = []
    for rows in (REFERENCE_ROWS, 300):
        reference = rng.lognormal(0.0, 0.75, rows)
        for k in (0.0, 0.25):
            current = rng.lognormal(0.0, 0.75, 1_000) + k * float(np.std(reference))
            ref, cur = pd.Series(reference), pd.Series(current)
            test = get_stattest(ref, cur, ColumnType.Numerical, None)
            direct = test(ref, cur, ColumnType.Numerical, None)
            snapshot = Report([ValueDrift(column="x")]).run(
                Dataset.from_pandas(pd.DataFrame({"x": current}), data_definition=definition),
                Dataset.from_pandas(pd.DataFrame({"x": reference}), data_definition=definition),
            )
            metric = snapshot.dict()["metrics"][0]
            same = math.isclose(metric["value"], direct.drift_score, rel_tol=1e-9, abs_tol=1e-12)
            if not same or metric["config"].get("threshold") != direct.actual_threshold:
                raise SystemExit(f"Evidently's report disagrees with the direct test: {metric}")
            checked.append(test.name)
    return f"Report([ValueDrift]) matches the direct test ({', '.join(sorted(set(checked)))})"


def markdown(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    print(f"\n{title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(str(c) for c in row) + " |")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer windows: under a minute")
    parser.add_argument("--no-real", action="store_true", help="synthetic shapes only")
    parser.add_argument("--seed", type=int, default=20_261_202)
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    parser.add_argument("--dump", type=Path, help="pickle the scored windows to this file")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    verified = check_evidently_report(args.seed)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="driftgauge-detection-") as tmp:
        results = collect(plan, args.seed, Path(tmp), real=not args.no_real)
    elapsed = time.perf_counter() - started
    if args.dump:
        args.dump.write_bytes(pickle.dumps(results))
    show = markdown if args.markdown else print_table
    print(
        f"Evidently {EVIDENTLY_VERSION}; {BINS} bins, KLL k=200, {SLICES} slices per window; "
        f"{'quick' if args.quick else 'full'} run, scored in {elapsed:.0f} s; {verified}"
    )
    header = ["window", "", *(c.label for c in CANDIDATES)]
    for kind in [k for k in KINDS if (k, WINDOWS[0], 0.0) in results]:
        sources = {r.source for r in results[(kind, WINDOWS[0], 0.0)]}
        null = sum(len(r.rows) for r in results[(kind, WINDOWS[0], 0.0)])
        drifted = sum(len(r.rows) for r in results[(kind, WINDOWS[0], SHIFTS[0])])
        show(
            f"{kind}: {len(sources)} sources; per window size {null} undrifted windows, "
            f"{drifted} drifted per shift",
            header,
            report(results, kind, CANDIDATES),
        )
        show(
            f"{kind}: the worst single source's false alarms /1000",
            ["window", *(c.label for c in CANDIDATES)],
            worst_false_alarms(results, kind, CANDIDATES),
        )
    print("\nrules (a window alarms when the condition holds):")
    for c in CANDIDATES:
        print(f"  {c.label:<20} {c.condition}")
    print(
        f"  {GATE} = (1 - 2/(9·df) + z·sqrt(2/(9·df)))^3, "
        "df = count without (bin) (driftgauge_baseline_bin_ratio > 0) - 1"
    )
    print(f"\ntarget on the {SYNTHETIC} shapes (≤ 1% false alarms; detection ≥ Evidently's):")
    for c in [CANDIDATES[0], *CANDIDATES[2:]]:
        met, detail = meets_target(results, SYNTHETIC, c)
        print(f"  {c.label:<20} {'MET' if met else 'missed'} ({detail})")


if __name__ == "__main__":
    main()
