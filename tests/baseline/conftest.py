"""A Spark session (local[2]) and a Dask LocalCluster (2 worker processes) per test module.

Both are started only when a test asks for them, bound to 127.0.0.1, and
always stopped.  Their Python workers import driftgauge and the tests'
support module from this checkout: the paths go in ``PYTHONPATH`` before
the JVM or the worker processes start.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.baseline.cluster_support import RUNNERS

REPO = Path(__file__).resolve().parents[2]


def _worker_environment() -> dict[str, str | None]:
    """Set what Python workers need; returns the previous values to restore."""
    wanted = {
        "PYTHONPATH": os.pathsep.join(
            [str(REPO / "src"), str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
        # The executors' interpreter: this one (a venv's python has pyarrow, python3 may not).
        "PYSPARK_PYTHON": sys.executable,
    }
    java = shutil.which("java")
    if "JAVA_HOME" not in os.environ and java is not None:
        wanted["JAVA_HOME"] = str(Path(java).resolve().parents[1])
    previous = {name: os.environ.get(name) for name in wanted}
    os.environ.update(wanted)
    return previous


def _restore(previous: dict[str, str | None]) -> None:
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    """A SparkSession on local[2]: no UI, two shuffle partitions, loopback only."""
    from pyspark.sql import SparkSession

    previous = _worker_environment()
    session = (
        SparkSession.builder.master("local[2]")
        .appName("driftgauge-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.memory", "1g")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    try:
        yield session
    finally:
        session.stop()
        _restore(previous)


@pytest.fixture(scope="module")
def dask_cluster() -> Iterator[Any]:
    """A distributed LocalCluster of two single-threaded worker processes on 127.0.0.1."""
    from distributed import LocalCluster

    previous = _worker_environment()
    cluster = LocalCluster(
        n_workers=2,
        processes=True,
        threads_per_worker=1,
        host="127.0.0.1",
        dashboard_address=None,
        # No dashboard, but the scheduler's HTTP server (/metrics, /health) still listens,
        # on 8787 unless told: two clusters at once (two test processes) then collide.
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
    )
    try:
        yield cluster
    finally:
        cluster.close()
        _restore(previous)


@pytest.fixture
def dask_client(dask_cluster: Any) -> Iterator[Any]:
    """A client of the shared LocalCluster, closed after the test."""
    from distributed import Client

    with Client(dask_cluster) as client:
        yield client


@pytest.fixture(scope="module")
def runners(request: pytest.FixtureRequest) -> dict[str, list[str]]:
    """Each runner's arguments: the Spark session and Dask cluster are started once."""
    request.getfixturevalue("spark")  # the command uses the running session
    cluster: Any = request.getfixturevalue("dask_cluster")
    return {**RUNNERS, "dask": ["--dask", cluster.scheduler_address]}
