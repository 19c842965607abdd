"""Reference computations and data for the statistical-core tests.

Everything here is computed directly on raw values with numpy/scipy, never
through driftgauge, so the tests compare driftgauge's sketches and bins with
an independent exact answer.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from driftgauge.baseline import Baseline, build_baseline
from driftgauge.config import Config, config_from_mapping

FloatArray = npt.NDArray[np.float64]
Sampler = Callable[[np.random.Generator, int], FloatArray]

PSI_FLOOR = 1e-4


def _normal(rng: np.random.Generator, n: int) -> FloatArray:
    return rng.normal(10.0, 2.0, n)


def _lognormal(rng: np.random.Generator, n: int) -> FloatArray:
    return rng.lognormal(0.0, 1.0, n)


def _ties(rng: np.random.Generator, n: int) -> FloatArray:
    # A normal rounded to a grid of 0.5: about nine values carry nearly all the mass.
    return np.round(rng.normal(0.0, 1.0, n) * 2.0) / 2.0


def _bimodal(rng: np.random.Generator, n: int) -> FloatArray:
    left = rng.random(n) < 0.3
    return np.where(left, rng.normal(-3.0, 0.5, n), rng.normal(2.0, 1.0, n))


def _integer(rng: np.random.Generator, n: int) -> FloatArray:
    return rng.poisson(4.0, n).astype(np.float64)


def _constant(rng: np.random.Generator, n: int) -> FloatArray:
    return np.full(n, 7.25)


DISTRIBUTIONS: dict[str, Sampler] = {
    "normal": _normal,
    "lognormal": _lognormal,
    "ties": _ties,
    "bimodal": _bimodal,
    "integer": _integer,
    "constant": _constant,
}

# (location shift in baseline standard deviations, scale factor about the mean)
SHIFTS: list[tuple[float, float]] = [(0.0, 1.0), (0.05, 1.0), (0.2, 1.0), (1.0, 1.0), (0.0, 1.5)]


def shifted(values: FloatArray, reference: FloatArray, shift: float, scale: float) -> FloatArray:
    """``values`` moved by ``shift`` of the reference's σ and scaled about its mean."""
    if shift == 0.0 and scale == 1.0:
        # (x − c) + c is not always x in floating point, which would break the ties.
        return values
    center = float(reference.mean())
    sd = float(reference.std()) or 1.0
    return (values - center) * scale + center + shift * sd


def exact_bin_counts(values: FloatArray, edges: FloatArray) -> npt.NDArray[np.int64]:
    """Counts in the bins ``[-inf, e0), [e0, e1), …, [e_last, inf)`` by explicit comparisons."""
    values = values[np.isfinite(values)]
    bounds = np.concatenate([[-np.inf], edges, [np.inf]])
    return np.asarray(
        [np.count_nonzero((values >= lo) & (values < hi)) for lo, hi in itertools.pairwise(bounds)],
        dtype=np.int64,
    )


def exact_shares(counts: npt.ArrayLike) -> FloatArray:
    array = np.asarray(counts, dtype=np.float64)
    return array / array.sum()


def exact_psi(live_counts: npt.ArrayLike, base_counts: npt.ArrayLike) -> float:
    """Σ (p − q)·ln(p / q) over shares floored at 1e-4, written out independently."""
    p = np.maximum(exact_shares(live_counts), PSI_FLOOR)
    q = np.maximum(exact_shares(base_counts), PSI_FLOOR)
    return float(np.sum((p - q) * np.log(p / q)))


def write_csv(path: Path, columns: Mapping[str, Sequence[Any]]) -> Path:
    """A CSV with a header; floats written with ``repr`` so they read back bit for bit."""
    names = list(columns)
    texts = [[_cell(v) for v in column] for column in columns.values()]
    with path.open("w", encoding="utf-8") as handle:
        handle.write(",".join(names) + "\n")
        handle.writelines(",".join(row) + "\n" for row in zip(*texts, strict=True))
    return path


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float | np.floating):
        return repr(float(value))
    return str(value)


def make_config(tmp_path: Path, features: Sequence[tuple[str, str]], **overrides: Any) -> Config:
    """A valid tail-source config over ``features`` (name, type) with ``overrides`` on top."""
    raw: dict[str, Any] = {
        "model": "test",
        "protocol": "kserve-v1",
        "source": {"tail": {"path": str(tmp_path / "requests.jsonl")}},
        "baseline": str(tmp_path / "baseline.dgb"),
        "features": [{"name": name, "type": kind} for name, kind in features],
        "windows": ["1m"],
        "min_observations": 100,
    }
    raw.update(overrides)
    return config_from_mapping(raw, base=tmp_path)


def baseline_from_columns(
    tmp_path: Path,
    columns: Mapping[str, Sequence[Any]],
    types: Mapping[str, str],
    **overrides: Any,
) -> tuple[Config, Baseline]:
    """Write ``columns`` to a CSV in ``tmp_path`` and build a baseline from it."""
    config = make_config(tmp_path, [(name, types[name]) for name in columns], **overrides)
    data = write_csv(tmp_path / "train.csv", columns)
    return config, build_baseline(config, [data])
