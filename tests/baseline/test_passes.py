"""Pass states as a cluster runner moves them: an empty state out to each part, a filled one back."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from driftgauge.baseline import build_baseline
from driftgauge.baseline.datafiles import read_chunks
from driftgauge.baseline.runner import PassState
from driftgauge.config import Config, config_from_mapping
from tests.baseline.test_determinism import signature
from tests.helpers import base_config, write_csv

S = TypeVar("S", bound=PassState)
WIDTH, ROWS, PARTS = 8, 30_000, 3


class PartsRunner:
    """Each part fills a copy of the pass's empty state, merged in the parts' order; with
    ``pickled``, the copy is unpickled and its filled state's pickle comes back to be
    merged, as a Spark task's or a Dask partition's does (the pickles' sizes are kept)."""

    def __init__(self, paths: list[Path], config: Config, pickled: bool) -> None:
        self.parts = [list(read_chunks(path, config.columns)) for path in paths]
        self.pickled = pickled
        self.sent: dict[str, list[int]] = {}

    def run(self, state: S, stage: str) -> S:
        template = pickle.dumps(state.empty(), protocol=pickle.HIGHEST_PROTOCOL)
        for part in self.parts:
            filled = pickle.loads(template) if self.pickled else state.empty()
            for chunk in part:
                filled.add(chunk)
            if self.pickled:
                cell = pickle.dumps(filled, protocol=pickle.HIGHEST_PROTOCOL)
                self.sent.setdefault(stage, []).append(len(cell))
                filled = pickle.loads(cell)
            state.merge(filled)
        return state


def test_filled_states_come_back_without_the_cross_fit_and_build_the_same(
    tmp_path: Path,
) -> None:
    """Pass 1b's and pass 2's filled states carried the cross-fit (its Copies, 9 bytes a
    distinct training row, up to 9 MiB) back from every part, though merging never reads it;
    they come back without it, and the build is the one made without pickles, exactly."""
    names = [f"x{i}" for i in range(WIDTH)]
    rng = np.random.default_rng(3)
    values = rng.normal(size=(ROWS, 2)) @ rng.normal(size=(2, WIDTH))
    values += 0.1 * rng.normal(size=(ROWS, WIDTH))
    columns: dict[str, Any] = {n: values[:, i].round(4) for i, n in enumerate(names)}
    columns["class"] = np.array(["a", "b"] * (ROWS // 2))
    paths = [
        write_csv(
            tmp_path / f"train-{i}.csv", {n: c[i::PARTS].tolist() for n, c in columns.items()}
        )
        for i in range(PARTS)
    ]
    raw = base_config(
        tmp_path,
        features=[{"name": n, "type": "numeric"} for n in names],
        predictions=[{"name": "class", "type": "categorical"}],
        multivariate={"features": names},
    )
    config = config_from_mapping(raw, base=tmp_path)
    runner = PartsRunner(paths, config, pickled=True)
    built = build_baseline(config, runner)
    unpickled = build_baseline(config, PartsRunner(paths, config, pickled=False))
    assert signature(built) == signature(unpickled)
    assert signature(built) == signature(build_baseline(config, paths, workers=1))
    assert built.multivariate is not None
    assert pickle.dumps(built.multivariate) == pickle.dumps(unpickled.multivariate)
    copies = ROWS * 9  # every row distinct: its hash and its count
    assert min(runner.sent["pass 1/2: sketches"]) > copies / PARTS  # each part's own rows
    assert max(runner.sent["pass 1b: multivariate"]) < copies / 10
    assert max(runner.sent["pass 2/2: exact bins"]) < copies / 10
