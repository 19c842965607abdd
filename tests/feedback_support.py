"""Shared helpers for the data-quality, feedback, segment and performance tests.

A three-class wine classifier (``class`` in a, b, c with ``p_a`` = P(a)) or a
regressor (``score``), trained on ``base_config``'s features; an in-process
pipeline wired like ``build_sidecar`` but on a test clock; and a real sidecar
(proxy in front of a small aiohttp model server, or tail mode) that always
stops.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import ClientSession, web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sklearn import metrics as skm

from driftgauge.app import Sidecar, build_sidecar, run_until_stopped
from driftgauge.baseline import Baseline, build_baseline
from driftgauge.config import Config, ProxyConfig, config_from_mapping
from driftgauge.exposition import MonitorCollector
from driftgauge.monitor import Monitor
from driftgauge.monitor.batch import Batcher
from driftgauge.monitor.outcomes import Outcomes
from driftgauge.monitor.segments import SegmentTracker
from driftgauge.protocols import make_adapter
from driftgauge.typing import Record
from tests.helpers import base_config, free_port, training_rows, write_csv

MODEL_PATH = "/v1/models/wine:predict"
CLASSIFIER_PREDICTIONS = [
    {"name": "class", "type": "categorical"},
    {"name": "p_a", "type": "numeric"},
]
CLASSIFIER_FEEDBACK = {"prediction": "class", "probability": "p_a", "positive_class": "a"}
REGRESSOR_PREDICTIONS = [{"name": "score", "type": "numeric"}]


def classify(alcohol: float) -> str:
    """The model under test: a threshold rule on alcohol."""
    return "a" if alcohol > 13.3 else "b" if alcohol > 12.6 else "c"


def probability_a(alcohol: float) -> float:
    """The model's P(class a), strictly inside (0, 1)."""
    return 1.0 / (1.0 + math.exp(-3.0 * (alcohol - 13.3)))


def score(alcohol: float, ash: float) -> float:
    """The regressor under test."""
    return 2.0 * alcohol - ash


def classifier_columns(n: int, seed: int = 0) -> dict[str, list[Any]]:
    """Training columns: ``training_rows`` features with the classifier's outputs."""
    columns = training_rows(n, seed)
    columns["class"] = [classify(x) for x in columns["alcohol"]]
    columns["p_a"] = [round(probability_a(x), 6) for x in columns["alcohol"]]
    return columns


def regressor_columns(n: int, seed: int = 0) -> dict[str, list[Any]]:
    columns = training_rows(n, seed)
    del columns["class"]
    columns["score"] = [
        round(score(x, y), 4) for x, y in zip(columns["alcohol"], columns["ash"], strict=True)
    ]
    return columns


def truth_for(alcohol: float, rng: np.random.Generator) -> str:
    """A ground-truth label: the model's class, wrong about one time in five."""
    if rng.random() < 0.2:
        return str(rng.choice(["a", "b", "c"]))
    return classify(alcohol)


def build(
    tmp_path: Path,
    *,
    regression: bool = False,
    rows: int = 3_000,
    columns: Mapping[str, list[Any]] | None = None,
    **overrides: Any,
) -> tuple[Config, Baseline]:
    """A config (``base_config`` with the classifier or regressor and ``overrides``) and its baseline."""
    raw = base_config(
        tmp_path,
        predictions=REGRESSOR_PREDICTIONS if regression else CLASSIFIER_PREDICTIONS,
        feedback={"prediction": "score"} if regression else CLASSIFIER_FEEDBACK,
    )
    raw.update(overrides)
    config = config_from_mapping(raw, base=tmp_path)
    if columns is None:
        columns = regressor_columns(rows) if regression else classifier_columns(rows)
    data = write_csv(tmp_path / "train.csv", dict(columns))
    return config, build_baseline(config, [data])


@dataclass
class Pipeline:
    """Monitor, segment tracker, outcomes and batcher as ``build_sidecar`` wires them."""

    config: Config
    monitor: Monitor
    batcher: Batcher
    registry: CollectorRegistry
    dropped: list[tuple[str, int]] = field(default_factory=list)

    @property
    def outcomes(self) -> Outcomes:
        assert self.monitor.outcomes is not None
        return self.monitor.outcomes

    @property
    def segments(self) -> SegmentTracker:
        assert self.monitor.segments is not None
        return self.monitor.segments

    def text(self) -> str:
        """The /metrics text after a recompute."""
        self.monitor.compute()
        return generate_latest(self.registry).decode()


def wire(config: Config, baseline: Baseline, clock: Callable[[], float] = time.time) -> Pipeline:
    """The sidecar's in-process parts on ``clock``, with a fresh registry."""
    monitor = Monitor(config, baseline, clock)
    batcher = Batcher(make_adapter(config.protocol, config.features, config.predictions), monitor)
    pipeline = Pipeline(config, monitor, batcher, CollectorRegistry())

    def on_drop(reason: str, n: int) -> None:  # the monitor's own tally, and a log of the calls
        pipeline.dropped.append((reason, n))
        monitor.count_dropped(reason, n)

    if monitor.outcomes is not None:
        monitor.outcomes.on_drop = on_drop
    pipeline.registry.register(MonitorCollector(monitor))
    return pipeline


def instances(columns: Mapping[str, Sequence[Any]], start: int, stop: int) -> list[dict[str, Any]]:
    """Rows ``start:stop`` of the feature columns as KServe v1 instance objects."""
    names = ("alcohol", "ash", "region")
    return [{name: columns[name][i] for name in names} for i in range(start, stop)]


def _number(row: Mapping[str, Any], name: str, default: float) -> float:
    value = row.get(name)
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else default


def predictions_for(rows: Sequence[Mapping[str, Any]], regression: bool = False) -> list[Any]:
    """What the model answers for ``rows`` (a bad or missing input counts as a typical value)."""
    answers: list[Any] = []
    for row in rows:
        alcohol, ash = _number(row, "alcohol", 13.0), _number(row, "ash", 2.2)
        if regression:
            answers.append({"score": score(alcohol, ash)})
        else:
            answers.append({"class": classify(alcohol), "p_a": probability_a(alcohol)})
    return answers


def tail_line(ts: float, request_id: str, rows: list[dict[str, Any]], answer: list[Any]) -> str:
    """A tailed log's line: the KServe v1 request for ``rows`` and the model's ``answer``."""
    request, response = {"instances": rows}, {"predictions": answer}
    return json.dumps({"ts": ts, "id": request_id, "request": request, "response": response})


def record(
    rows: list[dict[str, Any]], request_id: str | None, regression: bool = False, **request: Any
) -> Record:
    """A KServe v1 request/response pair for ``rows`` as a source would hand it over."""
    body = {"instances": rows, **request}
    return Record(
        time.time(),
        body,
        {"predictions": predictions_for(rows, regression)},
        MODEL_PATH,
        request_id,
    )


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample called ``name`` in a text exposition, as (labels, value)."""
    found = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found.append((dict(sample.labels), float(sample.value)))
    return found


def value(text: str, name: str, **labels: str) -> float | None:
    """The one sample ``name`` whose labels include ``labels``, or None."""
    matching = [v for got, v in samples(text, name) if labels.items() <= got.items()]
    assert len(matching) <= 1, f"{name}{labels} matches {len(matching)} samples"
    return matching[0] if matching else None


@dataclass
class Running:
    """A started sidecar and where to reach it."""

    sidecar: Sidecar
    session: ClientSession
    metrics_url: str
    proxy_url: str = ""
    upstream_ids: list[str | None] = field(default_factory=list)

    async def metrics(self) -> str:
        """/metrics after a recompute (of every model's monitor)."""
        for monitor in self.sidecar.monitors:
            await asyncio.to_thread(monitor.compute)
        async with self.session.get(self.metrics_url + "/metrics") as response:
            assert response.status == 200
            return await response.text()

    async def predict(
        self, rows: list[dict[str, Any]], headers: Mapping[str, str] | None = None
    ) -> tuple[str | None, list[Any]]:
        """POST rows through the proxy; the returned request id and the predictions."""
        async with self.session.post(
            self.proxy_url + MODEL_PATH, json={"instances": rows}, headers=headers
        ) as response:
            assert response.status == 200
            body = await response.json()
            return response.headers.get("X-Request-ID"), body["predictions"]

    async def feedback(
        self, body: Any, token: str | None = None, raw: bytes | None = None
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        kwargs: dict[str, Any] = {"data": raw} if raw is not None else {"json": body}
        async with self.session.post(
            self.metrics_url + "/feedback", headers=headers, **kwargs
        ) as response:
            return response.status, await response.json()


def proxy_source(upstream_port: int) -> dict[str, Any]:
    return {
        "proxy": {
            "listen": f"127.0.0.1:{free_port()}",
            "upstream": f"http://127.0.0.1:{upstream_port}",
        }
    }


@contextlib.asynccontextmanager
async def model_server(port: int, regression: bool = False) -> AsyncIterator[list[str | None]]:
    """The model on 127.0.0.1:``port``; yields the request ids it was sent."""
    seen: list[str | None] = []

    async def predict(request: web.Request) -> web.Response:
        seen.append(request.headers.get("X-Request-ID"))
        body = await request.json()
        return web.json_response({"predictions": predictions_for(body["instances"], regression)})

    app = web.Application()
    app.router.add_post(MODEL_PATH, predict)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield seen
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def running(config: Config, baseline: Baseline) -> AsyncIterator[Running]:
    """``config``'s sidecar serving on loopback (with its model server in proxy mode)."""
    async with contextlib.AsyncExitStack() as stack:
        seen: list[str | None] = []
        if isinstance(config.source, ProxyConfig):
            port = int(config.source.upstream.rsplit(":", 1)[1])
            regression = config.feedback is not None and config.feedback.task == "regression"
            seen = await stack.enter_async_context(model_server(port, regression))
        sidecar = build_sidecar(config, baseline)
        stop = asyncio.Event()
        started = asyncio.Event()
        task = asyncio.create_task(run_until_stopped(sidecar, stop, lambda _: started.set()))

        async def shutdown() -> None:
            stop.set()
            await asyncio.wait_for(task, 15.0)

        stack.push_async_callback(shutdown)
        await asyncio.wait_for(started.wait(), 10.0)
        session = await stack.enter_async_context(ClientSession())
        host, port = config.metrics.listen
        proxy_url = f"http://127.0.0.1:{sidecar.proxy_port}" if sidecar.proxy_port else ""
        yield Running(sidecar, session, f"http://{host}:{port}", proxy_url, seen)


def as_format_2(encoded: dict[str, Any]) -> dict[str, Any]:
    """``encoded`` as state format 2 held it in its JSON: ids as text, columns as base64."""
    ids = encoded["ids"]
    result: dict[str, Any] = {"ids": ids.decode() if isinstance(ids, bytes) else ids}
    for name in ("ts", "predicted", "probability", "segments"):
        data = base64.b64encode(encoded[name]["data"]).decode("ascii")
        result[name] = {**encoded[name], "data": data}
    return json.loads(json.dumps(result, allow_nan=False))


# -- shared by the outcomes tests (tests/monitor/test_outcomes*.py) --------------------------

T0 = 1_700_000_000.0
TOLERANCE = 1e-9


class Clock:
    """A test clock the pipeline reads; tests move it by hand."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def close(actual: float | None, expected: float) -> bool:
    return actual is not None and math.isclose(
        actual, expected, rel_tol=TOLERANCE, abs_tol=TOLERANCE
    )


def with_feedback(built: tuple[Config, Baseline], **feedback: Any) -> tuple[Config, Baseline]:
    """The same config and baseline with other ``feedback`` settings."""
    config, baseline = built
    assert config.feedback is not None
    return replace(config, feedback=replace(config.feedback, **feedback)), baseline


def one_row(alcohol: float = 13.5) -> list[dict[str, Any]]:
    return [{"alcohol": alcohol, "ash": 2.2, "region": "north"}]


def classification_expected(
    truth: list[str], predicted: list[str], p_a: list[float]
) -> dict[str, float]:
    """sklearn's figures for string labels, macro over the classes that occur."""
    labels = sorted(set(truth) | set(predicted))
    macro = skm.precision_recall_fscore_support(
        truth, predicted, labels=labels, average="macro", zero_division=0
    )
    positive = skm.precision_recall_fscore_support(
        truth, predicted, labels=["a"], average=None, zero_division=0
    )
    is_a = [int(t == "a") for t in truth]
    return {
        "accuracy": skm.accuracy_score(truth, predicted),
        "precision_macro": macro[0],
        "recall_macro": macro[1],
        "f1_macro": macro[2],
        "precision": positive[0][0],
        "recall": positive[1][0],
        "f1": positive[2][0],
        "log_loss": skm.log_loss(is_a, p_a, labels=[0, 1]),
        "brier": skm.brier_score_loss(is_a, p_a, pos_label=1),
    }


def proxied(
    built: tuple[Config, Baseline], tmp_path: Path, **feedback: Any
) -> tuple[Config, Baseline, int]:
    """The classifier's config in proxy mode on fresh loopback ports, with ``feedback`` settings."""
    config, baseline = with_feedback(built, **feedback)
    upstream = free_port()
    raw = base_config(tmp_path, source=proxy_source(upstream))
    source = config_from_mapping(raw, base=tmp_path)
    return replace(config, source=source.source, metrics=source.metrics), baseline, upstream
