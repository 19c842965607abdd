"""Shared fixtures: configs and baselines written to tmp_path."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import settings

from driftgauge.baseline import Baseline, build_baseline, save_baseline
from driftgauge.config import Config, load_config
from tests import proxy_upstream
from tests.helpers import base_config, training_rows, write_csv
from tests.proxy_upstream import PROXY_ENGINES, build_baseline_file

# scripts/test.sh (and so CI) runs the property tests derandomized: the same examples on
# every run, so main stays green or red for the code, not for the draw.  A plain
# `pytest` explores new examples each run.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(params=PROXY_ENGINES)
def proxy_engine(request: pytest.FixtureRequest) -> Iterator[str]:
    """The test runs once per proxy engine: the sidecars ``running_proxy`` starts use it."""
    proxy_upstream.engine["default"] = request.param
    try:
        yield request.param
    finally:
        proxy_upstream.engine["default"] = "python"


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


@pytest.fixture
def umask() -> Iterator[Callable[[int], int]]:
    """Sets this process's umask for the test (``umask(0o077)``); the previous one comes back."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield os.umask
    os.umask(previous)


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private CA and a certificate for 127.0.0.1 signed by it (ca.pem, server.pem, server.key)."""
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test CA",
             "-keyout", d / "ca.key", "-out", d / "ca.pem")  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
             "-keyout", d / "server.key", "-out", d / "server.csr")  # fmt: skip
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", d / "server.csr", "-CA", d / "ca.pem", "-CAkey", d / "ca.key",
             "-CAcreateserial", "-days", "2", "-extfile", d / "ext.cnf", "-out", d / "server.pem")  # fmt: skip
    return d
