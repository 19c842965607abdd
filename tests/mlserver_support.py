"""A real MLServer (Seldon's Open Inference Protocol server) serving scikit-learn models.

``serve_models(root, [ModelSpec(...), ...])`` writes each model to its own
folder under ``root`` (``model.joblib`` and ``model-settings.json``), starts
``mlserver start root`` on free loopback ports (HTTP, gRPC and metrics; no
parallel worker processes), waits for ``/v2/health/ready`` and for every
model's ``/v2/models/{name}/ready``, and always stops it.  Several models are
served at once, one per subfolder.

``bench/proxy.py --upstream mlserver`` starts its model server through this
module too (with ``wrap`` for CPU pinning and ``env`` for its settings), so
the tests and the benchmark run MLServer the same way.

MLServer comes from the ``mlserver`` extra (``scripts/setup.sh ...,mlserver``);
without it the tests using this module are skipped (:data:`MLSERVER`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tests.helpers import free_port

__all__ = ["MLSERVER", "MLServer", "ModelSpec", "serve_models", "skip_without_mlserver"]

MLSERVER = Path(sys.executable).with_name("mlserver")
START_TIMEOUT = 120.0  # two shared cores: importing MLServer and scikit-learn takes a while


def skip_without_mlserver() -> Any:
    """A ``pytest.mark.skipif`` for machines without the ``mlserver`` extra."""
    import pytest

    return pytest.mark.skipif(
        not MLSERVER.exists(), reason="MLServer is not installed (the `mlserver` extra)"
    )


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One model to serve: a fitted scikit-learn estimator and its metadata tensors.

    ``inputs`` and ``outputs`` are Open Inference Protocol tensor metadata
    (``{"name", "datatype", "shape"}``); MLServer publishes them at
    ``GET /v2/models/{name}`` as they are written here.
    """

    name: str
    estimator: Any
    inputs: Sequence[dict[str, Any]] = ()
    outputs: Sequence[dict[str, Any]] = ()
    version: str | None = "v1"
    parameters: dict[str, Any] = field(default_factory=dict)
    implementation: str = "mlserver_sklearn.SKLearnModel"


@dataclass(frozen=True, slots=True)
class MLServer:
    """A running MLServer: its HTTP base URL, ports and process id."""

    url: str
    http_port: int
    grpc_port: int
    root: Path
    metrics_port: int = 0
    pid: int = 0

    def get(self, path: str) -> Any:
        """GET ``path`` as JSON."""
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            return json.loads(response.read())

    def post(self, path: str, body: Any) -> Any:
        """POST JSON ``body`` to ``path``; the answer as JSON."""
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())


def write_model(root: Path, spec: ModelSpec) -> Path:
    """``root/<name>[-<version>]/``: the pickled estimator and its ``model-settings.json``."""
    import joblib

    folder = root / (spec.name if spec.version is None else f"{spec.name}-{spec.version}")
    folder.mkdir(parents=True)
    joblib.dump(spec.estimator, folder / "model.joblib")
    parameters: dict[str, Any] = {"uri": "./model.joblib", **spec.parameters}
    if spec.version is not None:
        parameters["version"] = spec.version
    settings: dict[str, Any] = {
        "name": spec.name,
        "implementation": spec.implementation,
        "parameters": parameters,
    }
    if spec.inputs:
        settings["inputs"] = list(spec.inputs)
    if spec.outputs:
        settings["outputs"] = list(spec.outputs)
    (folder / "model-settings.json").write_text(json.dumps(settings, indent=2), encoding="utf-8")
    return folder


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError as exc:
        exc.close()
        return False
    except OSError:
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, SIGKILL it if it lingers."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@contextlib.contextmanager
def serve_models(
    root: Path,
    models: Sequence[ModelSpec],
    *,
    wrap: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> Iterator[MLServer]:
    """Serve ``models`` from ``root`` with a real MLServer; stopped when the block ends.

    ``wrap`` prefixes the command (``taskset -c 1``: it execs, so the process
    id stays MLServer's); ``env`` adds to or overrides the environment.
    """
    root.mkdir(parents=True, exist_ok=True)
    for spec in models:
        write_model(root, spec)
    http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "MLSERVER_HOST": "127.0.0.1",
        "MLSERVER_HTTP_PORT": str(http_port),
        "MLSERVER_GRPC_PORT": str(grpc_port),
        "MLSERVER_METRICS_PORT": str(metrics_port),
        "MLSERVER_PARALLEL_WORKERS": "0",  # inference in the server process: no worker pool
        "MLSERVER_LOAD_MODELS_AT_STARTUP": "true",
        **(env or {}),
    }
    log = (root / "mlserver.log").open("wb")
    process = subprocess.Popen(
        [*wrap, str(MLSERVER), "start", str(root)],
        cwd=root,  # MLServer keeps .metrics/ and .envs/ in its working directory
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = MLServer(
        f"http://127.0.0.1:{http_port}", http_port, grpc_port, root, metrics_port, process.pid
    )
    try:
        urls = [server.url + "/v2/health/ready"]
        urls += [f"{server.url}/v2/models/{quote(spec.name, safe='')}/ready" for spec in models]
        deadline = time.monotonic() + START_TIMEOUT
        while not all(map(_ready, urls)):
            if process.poll() is not None or time.monotonic() > deadline:
                log.flush()
                output = (root / "mlserver.log").read_text(errors="replace")[-3000:]
                what = "exited" if process.poll() is not None else "is not ready in time"
                raise RuntimeError(f"MLServer {what}; its log ends:\n{output}")
            time.sleep(0.25)
        yield server
    finally:
        _stop(process)
        log.close()
