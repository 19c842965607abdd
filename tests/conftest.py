"""Shared fixtures: configs and baselines written to tmp_path."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import settings

from driftgauge.baseline import Baseline, build_baseline, save_baseline
from driftgauge.config import Config, load_config
from tests.helpers import base_config, training_rows, write_csv
from tests.proxy_upstream import build_baseline_file

# scripts/test.sh (and so CI) runs the property tests derandomized: the same examples on
# every run, so main stays green or red for the code, not for the draw.  A plain
# `pytest` explores new examples each run.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., Config]:
    """Write a config (``base_config`` plus overrides) to tmp_path and load it."""

    def make(**overrides: Any) -> Config:
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(base_config(tmp_path, **overrides)), encoding="utf-8")
        return load_config(path)

    return make


@pytest.fixture
def make_baseline(tmp_path: Path) -> Callable[[Config, int], Baseline]:
    """Build and save the baseline of ``config`` from ``n`` synthetic training rows."""

    def make(config: Config, n: int = 5_000) -> Baseline:
        data = write_csv(tmp_path / "train.csv", training_rows(n))
        baseline = build_baseline(config, [data])
        save_baseline(baseline, config.baseline)
        return baseline

    return make


@pytest.fixture(scope="session")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The baseline file of the proxy tests' model (``tests.proxy_upstream``), built once per run."""
    return build_baseline_file(tmp_path_factory.mktemp("proxy-baseline"))
