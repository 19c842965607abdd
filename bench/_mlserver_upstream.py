"""A real model server for ``bench/proxy.py --upstream mlserver``: MLServer and scikit-learn.

The model is a ``LogisticRegression`` (3 classes) on the benchmark's 20
features ``f0..f19`` (the distributions of :func:`feature_location_scale`),
trained at start on 20,000 generated rows and saved with joblib into
``bench/.data/proxy-mlserver/m/``.  MLServer serves it as model ``m`` with
its scikit-learn runtime (plus a check that the request arrived unaltered,
:mod:`bench._mlserver_runtime`), so the benchmark's request
(:data:`REQUEST_BODY`, 8 rows × 20 FP64) and route are unchanged; the answer
is MLServer's own: ``predict``, an ``INT64`` ``[8, 1]`` tensor of classes.

MLServer runs as one process: ``MLSERVER_PARALLEL_WORKERS=0`` keeps inference
in the server process (no worker pool), so pinning it to one core and reading
its CPU time from ``/proc`` see all of it.  ``MLSERVER_DEBUG=false`` turns off
its per-request access log, as a production deployment would.

The baseline of the sidecars is built with ``build_baseline`` from the
training rows and the model's predictions on them: the drift the sidecar
computes is that of the traffic against the data the model was trained on.
"""

from __future__ import annotations

import contextlib
import shutil
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from bench._common import DATA_DIR, REPO
from bench._proxy_upstream import FEATURES, MODEL, feature_location_scale
from driftgauge.baseline import build_baseline, save_baseline
from driftgauge.config import config_from_mapping

__all__ = [
    "PREDICTION",
    "MLServerUpstream",
    "mlserver_available",
    "serve_mlserver",
    "train_model",
]

PREDICTION = {"name": "predict", "type": "categorical"}
TRAIN_ROWS = 20_000
CLASSES = 3
ROOT = DATA_DIR / "proxy-mlserver"  # MLServer's model repository (git-ignored)


def mlserver_available() -> bool:
    """Whether the ``mlserver`` extra (MLServer and its scikit-learn runtime) is installed."""
    from tests.mlserver_support import MLSERVER

    return MLSERVER.exists()


def train_model() -> tuple[Any, np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """A 3-class ``LogisticRegression`` on ``f0..f19``, its training rows and its predictions."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(21)
    rows = np.column_stack(
        [rng.normal(*feature_location_scale(i), TRAIN_ROWS) for i in range(FEATURES)]
    )
    weights = rng.normal(0.0, 1.0, FEATURES)
    score = (rows - rows.mean(axis=0)) / rows.std(axis=0) @ weights
    score += rng.normal(0.0, 0.5 * score.std(), TRAIN_ROWS)
    labels = np.digitize(score, np.quantile(score, [1 / 3, 2 / 3]))
    model = LogisticRegression(max_iter=2_000).fit(rows, labels)
    return model, rows, model.predict(rows)


def build_mlserver_baseline(
    rows: np.ndarray[Any, Any],
    predictions: np.ndarray[Any, Any],
    sidecar_config: Callable[[], dict[str, Any]],
) -> Path:
    """The sidecars' baseline: ``build_baseline`` over the training rows and predictions."""
    data = ROOT.parent / f"proxy-mlserver-train-{FEATURES}f-{TRAIN_ROWS}.csv"
    header = ",".join([*(f"f{i}" for i in range(FEATURES)), str(PREDICTION["name"])])
    np.savetxt(
        data,
        np.column_stack([rows, predictions]),
        delimiter=",",
        header=header,
        comments="",
        fmt=["%.6g"] * FEATURES + ["%d"],
    )
    path = ROOT.parent / f"proxy-mlserver-baseline-{FEATURES}f.dgb"
    config = config_from_mapping(sidecar_config(), base=DATA_DIR)
    save_baseline(build_baseline(config, [data]), path)
    return path


class MLServerUpstream:
    """A running MLServer: its ports, process id and inference counts."""

    def __init__(self, port: int, metrics_port: int, pid: int) -> None:
        self.port = port
        self.metrics_port = metrics_port
        self.pid = pid

    def counts(self) -> tuple[int, int]:
        """Inferences MLServer answered and failed (an altered request fails the check)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        totals = {"model_infer_request_success": 0.0, "model_infer_request_failure": 0.0}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                name = sample.name.removesuffix("_total")
                if name in totals and sample.labels.get("model") == MODEL:
                    totals[name] += sample.value
        return int(totals["model_infer_request_success"]), int(
            totals["model_infer_request_failure"]
        )


@contextlib.contextmanager
def serve_mlserver(model: Any, wrap: Sequence[str] = ()) -> Iterator[MLServerUpstream]:
    """MLServer serving ``model`` as ``m`` from ``bench/.data/proxy-mlserver/``, one process."""
    from tests.mlserver_support import ModelSpec, serve_models

    shutil.rmtree(ROOT, ignore_errors=True)
    spec = ModelSpec(
        MODEL,
        model,
        inputs=[{"name": "input-0", "datatype": "FP64", "shape": [-1, FEATURES]}],
        outputs=[{"name": "predict", "datatype": "INT64", "shape": [-1, 1]}],
        version=None,
        implementation="bench._mlserver_runtime.CheckedSKLearnModel",
    )
    env = {
        "MLSERVER_DEBUG": "false",  # no access log line per request
        "PYTHONPATH": str(REPO),  # for bench._mlserver_runtime
    }
    with serve_models(ROOT, [spec], wrap=wrap, env=env) as server:
        yield MLServerUpstream(server.http_port, server.metrics_port, server.pid)
