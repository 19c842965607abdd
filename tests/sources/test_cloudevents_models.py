"""The cloudevents source in front of several models: each pair is monitored by the model named
after the InferenceService whose logger sent it (``ce-inferenceservicename``).

End to end: a sidecar built from a ``models:`` config with the real CloudEvents listener on a
loopback port, events as KServe's Go logger posts them, and the sidecar's real /metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, ClientTimeout

from driftgauge.app import Sidecar, build_sidecar
from driftgauge.baseline import build_baseline, save_baseline
from driftgauge.config import config_from_mapping
from tests.helpers import base_config, free_port, scrape, series, training_rows, write_csv
from tests.kserve_logger import CloudEvent, Message, binary, kserve_event, send, structured
from tests.proxy_upstream import running_sidecar, until

WINE, IRIS = "wine-a", "iris.v2"  # a KServe v2 and a KServe v1 InferenceService


def v2_bodies(alcohol: float) -> tuple[dict[str, Any], dict[str, Any]]:
    request = {
        "inputs": [
            {"name": "alcohol", "shape": [1], "datatype": "FP64", "data": [alcohol]},
            {"name": "ash", "shape": [1], "datatype": "FP64", "data": [2.2]},
            {"name": "region", "shape": [1], "datatype": "BYTES", "data": ["north"]},
        ]
    }
    output = {"name": "class", "shape": [1], "datatype": "BYTES", "data": ["a"]}
    return request, {"model_name": WINE, "outputs": [output]}


def v1_bodies(alcohol: float) -> tuple[dict[str, Any], dict[str, Any]]:
    return {"instances": [{"alcohol": alcohol, "ash": 2.2, "region": "south"}]}, {
        "predictions": ["b"]
    }


def event(
    kind: str,
    event_id: str,
    body: Any,
    service: str,
    component: str = "predictor",
    namespace: str = "models",
) -> CloudEvent:
    made = kserve_event("request" if kind == "request" else "response", event_id, body)
    made["inferenceservicename"] = service
    made["component"] = component
    made["namespace"] = namespace
    return made


def go_binary(made: CloudEvent) -> Message:
    """Binary mode with the header names as Go's net/http writes them (``Ce-Inferenceservicename``)."""
    headers, body = binary(made)
    return {
        "-".join(part.capitalize() for part in k.split("-")): v for k, v in headers.items()
    }, body


def pair(
    event_id: str,
    service: str,
    bodies: tuple[Any, Any],
    *,
    wire: Any = go_binary,
    component: str = "predictor",
    namespace: str = "models",
) -> list[Message]:
    request, response = bodies
    return [
        wire(event("request", event_id, request, service, component, namespace)),
        wire(event("response", event_id, response, service, component, namespace)),
    ]


@contextlib.asynccontextmanager
async def models_sidecar(
    tmp_path: Path, blocks: tuple[dict[str, Any], dict[str, Any]] | None = None
) -> AsyncIterator[Sidecar]:
    """wine-a (kserve-v2) and iris.v2 (kserve-v1) behind one CloudEvents listener, or two
    models of the given ``blocks`` (model, protocol and routing keys), in that order."""
    baseline = tmp_path / "shared.dgb"
    single = config_from_mapping(base_config(tmp_path, baseline=str(baseline)), base=tmp_path)
    data = write_csv(tmp_path / "train.csv", training_rows(2_000))
    save_baseline(build_baseline(single, [data]), baseline)
    shared = base_config(
        tmp_path, source={"cloudevents": {"listen": f"127.0.0.1:{free_port()}", "ttl": "1s"}}
    )
    fields = {key: shared.pop(key) for key in ("features", "predictions")}
    for key in ("model", "protocol", "baseline"):
        shared.pop(key)
    blocks = blocks or (
        {"model": WINE, "protocol": "kserve-v2"},
        {"model": IRIS, "protocol": "kserve-v1"},
    )
    models = [{**block, "baseline": str(baseline), **fields} for block in blocks]
    sidecar = build_sidecar(config_from_mapping({**shared, "models": models}, base=tmp_path))
    async with running_sidecar(sidecar):
        yield sidecar


def observations(sidecar: Sidecar) -> dict[str, int]:
    return {m.config.model: m.counters()["alcohol"].observations for m in sidecar.monitors}


async def test_pairs_are_monitored_by_the_model_named_after_their_inferenceservice(
    tmp_path: Path,
) -> None:
    """Binary (Go's header spelling) and structured events, in either order, reach the model
    named by their InferenceService; an InferenceService not configured is counted
    unknown_model, under no model; two services whose calls share a ce-id pair apart."""
    async with (
        models_sidecar(tmp_path) as sidecar,
        ClientSession(timeout=ClientTimeout(total=10)) as session,
    ):
        messages: list[Message] = []
        for i in range(5):
            messages += pair(f"w{i}", WINE, v2_bodies(13.0 + i))
        for i in range(3):
            wire = structured if i == 0 else go_binary
            messages += reversed(pair(f"i{i}", IRIS, v1_bodies(12.0 + i), wire=wire))
        for i in range(2):
            messages += pair(f"c{i}", "cifar", v2_bodies(1.0))
        # One caller-set Ce-Id for a call to each service: two pairs, not a mixed one.
        wine_call, iris_call = (
            pair("shared", WINE, v2_bodies(14.0)),
            pair("shared", IRIS, v1_bodies(14.0)),
        )
        messages += [wine_call[0], iris_call[0], iris_call[1], wine_call[1]]
        url = f"http://127.0.0.1:{sidecar.proxy_port}/"
        for message in messages:
            assert await send(session, url, message) == 200

        await until(lambda: observations(sidecar) == {WINE: 6, IRIS: 4}, what="both models' pairs")
        router = sidecar.batcher
        await until(lambda: router.parse_errors["unknown_model"] == 2, what="the unknown service")
        assert dict(router.parse_errors) == {"unknown_model": 2}
        assert all(not monitor.parse_errors for monitor in sidecar.monitors)
        for monitor in sidecar.monitors:
            await asyncio.to_thread(monitor.compute)
        samples = await asyncio.to_thread(scrape, sidecar.config.metrics.listen[1])
    unknown = series("driftgauge_source_parse_errors_total", reason="unknown_model")
    assert samples[unknown] == 2
    assert not any(
        value for (name, _), value in samples.items() if name == "driftgauge_parse_errors_total"
    )
    monitored = {
        dict(labels)["model"]: value
        for (name, labels), value in samples.items()
        if name == "driftgauge_rows_total"
    }
    assert monitored == {WINE: 6, IRIS: 4}


async def test_a_transformer_and_its_predictor_are_monitored_as_two_models(
    tmp_path: Path,
) -> None:
    """One InferenceService, its transformer and its predictor both logging, the same ce-id for
    one call through both: the transformer's pairs (raw KServe v1 rows) reach the model naming
    ``component: transformer``, the predictor's (KServe v2 tensors) the one naming
    ``predictor``; its explainer's, which no model takes, count as unknown_model."""
    raw = "wine raw/ünïcode"  # the transformer's model, named apart from the service
    blocks = (
        {"model": WINE, "protocol": "kserve-v2", "component": "predictor"},
        {
            "model": raw,
            "protocol": "kserve-v1",
            "inferenceservice": WINE,
            "component": "transformer",
        },
    )
    async with (
        models_sidecar(tmp_path, blocks) as sidecar,
        ClientSession(timeout=ClientTimeout(total=10)) as session,
    ):
        messages: list[Message] = []
        for i in range(4):  # one call: the transformer's pair wraps its predictor's
            outer = pair(f"call{i}", WINE, v1_bodies(12.0 + i), component="transformer")
            inner = pair(f"call{i}", WINE, v2_bodies(13.0 + i))
            messages += [outer[0], inner[0], inner[1], outer[1]]
        messages += pair("why", WINE, v1_bodies(1.0), component="explainer")
        url = f"http://127.0.0.1:{sidecar.proxy_port}/"
        for message in messages:
            assert await send(session, url, message) == 200
        await until(lambda: observations(sidecar) == {WINE: 4, raw: 4}, what="both components")
        predictor, transformer = sidecar.monitors
        router = sidecar.batcher
        await until(lambda: router.parse_errors["unknown_model"] == 1, what="the explainer")
        assert dict(router.parse_errors) == {"unknown_model": 1}
        assert not predictor.parse_errors and not transformer.parse_errors
        # Each model's adapter read every body it got (a v1 body read as v2 is a parse error).
        for monitor in (predictor, transformer):
            counters = monitor.counters()
            assert [(c.observations, c.missing) for c in counters.values()] == [(4, 0)] * len(
                counters
            )


async def test_one_inferenceservice_name_in_two_namespaces_is_monitored_as_two_models(
    tmp_path: Path,
) -> None:
    """Two InferenceServices named wine-a, in the namespaces prod and staging, log to one
    sidecar with the same ce-ids: prod's pairs reach the model naming ``namespace: prod``,
    staging's the one naming ``staging`` (never mixed, each with its own values), and a third
    namespace's, which no model takes, count as unknown_model, under no model."""
    staging = "wine-staging"
    blocks = (
        {"model": WINE, "protocol": "kserve-v2", "namespace": "prod"},
        {
            "model": staging,
            "protocol": "kserve-v2",
            "inferenceservice": WINE,
            "namespace": "staging",
        },
    )
    async with (
        models_sidecar(tmp_path, blocks) as sidecar,
        ClientSession(timeout=ClientTimeout(total=10)) as session,
    ):
        messages: list[Message] = []
        for i in range(4):
            messages += pair(f"call{i}", WINE, v2_bodies(10.0), namespace="prod")
            messages += pair(f"call{i}", WINE, v2_bodies(14.0), namespace="staging")
        for i in range(3):
            messages += pair(f"dev{i}", WINE, v2_bodies(1.0), wire=structured, namespace="dev")
        url = f"http://127.0.0.1:{sidecar.proxy_port}/"
        for message in messages:
            assert await send(session, url, message) == 200
        await until(lambda: observations(sidecar) == {WINE: 4, staging: 4}, what="both namespaces")
        prod, stage = sidecar.monitors
        router = sidecar.batcher
        await until(lambda: router.parse_errors["unknown_model"] == 3, what="the dev namespace")
        assert dict(router.parse_errors) == {"unknown_model": 3}
        assert not prod.parse_errors and not stage.parse_errors
        for monitor in sidecar.monitors:
            await asyncio.to_thread(monitor.compute)
        samples = await asyncio.to_thread(scrape, sidecar.config.metrics.listen[1])
    mean = "driftgauge_feature_mean"
    means = {
        dict(labels)["model"]: value
        for (name, labels), value in samples.items()
        if name == mean and dict(labels)["feature"] == "alcohol" and dict(labels)["window"] == "5m"
    }
    assert means == {WINE: 10.0, staging: 14.0}
