"""Several models behind one sidecar: the models: config, routing by path, one monitor per model."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from driftgauge.app import Sidecar, build_sidecar
from driftgauge.baseline import build_baseline, save_baseline
from driftgauge.config import Config, config_from_mapping
from driftgauge.exceptions import BaselineError, ConfigError
from driftgauge.exposition.collector import render_metrics
from driftgauge.exposition.live import PARSE_ERROR_REASONS
from driftgauge.monitor.route import SERVICE_HEADER, model_in_path
from driftgauge.typing import Record
from tests.helpers import base_config, training_rows, write_csv

T0 = 1_700_000_000.0


def two_models(tmp_path: Path, **second: Any) -> dict[str, Any]:
    """A config document with a KServe v2 model `wine` and an MLflow model `iris` routed by path."""
    shared = base_config(tmp_path)
    for key in ("model", "protocol", "baseline", "features", "predictions"):
        shared.pop(key)
    features = [
        {"name": "alcohol", "type": "numeric"},
        {"name": "ash", "type": "numeric"},
        {"name": "region", "type": "categorical"},
    ]
    return {
        **shared,
        "models": [
            {
                "model": "wine",
                "protocol": "kserve-v2",
                "baseline": str(tmp_path / "wine.dgb"),
                "features": features,
                "predictions": [{"name": "class", "type": "categorical"}],
            },
            {
                "model": "iris",
                "protocol": "mlflow",
                "path": "^/iris/",
                "baseline": str(tmp_path / "iris.dgb"),
                "features": features,
                "predictions": [{"name": "class", "type": "categorical"}],
                **second,
            },
        ],
    }


def with_baselines(raw: dict[str, Any], tmp_path: Path, rows: int = 500) -> Config:
    """``raw`` loaded, with a baseline built for each of its models from ``rows`` rows."""
    loaded = config_from_mapping(raw, base=tmp_path)
    data = write_csv(tmp_path / "train.csv", training_rows(rows))
    for model in loaded.all_models:
        save_baseline(build_baseline(model, [data]), model.baseline)
    return loaded


def parse_errors_shown(sidecar: Sidecar) -> dict[tuple[str, str], float]:
    """``driftgauge_parse_errors_total`` as /metrics shows it, by model and reason, and
    ``driftgauge_source_parse_errors_total`` by reason, under the model ""."""
    text, _ = render_metrics(sidecar.registry, "text/plain", sidecar.rendered)
    return {
        (sample.labels.get("model", ""), sample.labels["reason"]): sample.value
        for family in text_string_to_metric_families(text.decode())
        if family.name in ("driftgauge_parse_errors", "driftgauge_source_parse_errors")
        for sample in family.samples
        if sample.name.endswith("_total")
    }


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """Both models' config, with a baseline each."""
    return with_baselines(two_models(tmp_path), tmp_path, rows=2_000)


def test_models_share_the_sidecar_keys_and_keep_their_own(config: Config) -> None:
    """Each model has its protocol, baseline and route; windows and listeners are shared."""
    wine, iris = config.all_models
    assert (wine.model, wine.protocol, wine.route) == ("wine", "kserve-v2", None)
    assert (iris.model, iris.protocol, iris.route) == ("iris", "mlflow", "^/iris/")
    assert wine.baseline != iris.baseline
    assert wine.windows == iris.windows and wine.metrics == iris.metrics
    assert config.model == "wine" and config.models == (wine, iris)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"path": "("}, r"models\[1\]\.path: '\(' is not a regular expression"),
        ({"model": "wine"}, r"models\[1\]\.model: 'wine' is configured more than once"),
        ({"features": [{"name": "x", "type": "numerc"}]}, r"models\[1\]\.features\[0\]\.type"),
        ({"colour": 1}, r"models\[1\]\.colour: unknown key"),
        ({"component": ""}, r"models\[1\]\.component: expected a non-empty string, got ''"),
        ({"inferenceservice": 3}, r"models\[1\]\.inferenceservice: expected a non-empty str"),
        (
            {"inferenceservice": "wine"},
            r"models\[1\]\.inferenceservice: the events of InferenceService 'wine' already go "
            r"to model 'wine' \(set `component` to tell them apart\)",
        ),
        ({"namespace": ""}, r"models\[1\]\.namespace: expected a non-empty string, got ''"),
        ({"namespace": ["prod"]}, r"models\[1\]\.namespace: expected a non-empty string"),
        ({"namespace": "Prod"}, r"models\[1\]\.namespace: 'Prod' is not a Kubernetes namespace"),
        ({"namespace": "-prod"}, r"models\[1\]\.namespace: '-prod' is not a Kubernetes"),
        ({"namespace": "p" * 64}, r"models\[1\]\.namespace: 'p+' is not a Kubernetes"),
    ],
)
def test_a_bad_model_block_is_named_by_its_position(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    """Problems inside a block carry the key path models[i]...."""
    with pytest.raises(ConfigError, match=message):
        config_from_mapping(two_models(tmp_path, **change), base=tmp_path)


def test_the_components_of_one_inferenceservice_are_routed_apart(tmp_path: Path) -> None:
    """`inferenceservice` and `component` route CloudEvents records: a component-named model
    before the service's model naming none; a service's component no model takes goes to none
    (not to a model by another rule); the same origin twice is refused."""
    raw = two_models(tmp_path, inferenceservice="wine", component="transformer")
    config = config_from_mapping(raw, base=tmp_path)
    assert [m.origin for m in config.all_models] == [("wine", None), ("wine", "transformer")]
    raw["models"][0]["component"] = "transformer"
    with pytest.raises(ConfigError, match=r"component 'transformer' of InferenceService 'wine'"):
        config_from_mapping(raw, base=tmp_path)
    raw["models"][0]["component"] = "predictor"
    loaded = with_baselines(raw, tmp_path)
    router = build_sidecar(loaded).batcher
    names = {
        (service, component): found.monitor.config.model if found else None
        for service in ("wine", "iris", None)
        for component in ("predictor", "transformer", "explainer", None)
        for found in [router.route("", service, component)[0]]
    }
    assert names == {
        ("wine", "predictor"): "wine",
        ("wine", "transformer"): "iris",
        ("wine", "explainer"): None,  # no model of wine takes it
        ("wine", None): None,
        ("iris", "predictor"): None,  # `iris` names another service: its own name is no route
        ("iris", "transformer"): None,
        ("iris", "explainer"): None,
        ("iris", None): None,
        (None, "predictor"): None,
        (None, "transformer"): None,
        (None, "explainer"): None,
        (None, None): None,
    }


def test_model_keys_at_the_top_beside_models_are_refused(tmp_path: Path) -> None:
    """With models:, a top-level `protocol` is an error naming the key."""
    raw = {**two_models(tmp_path), "protocol": "kserve-v1"}
    with pytest.raises(ConfigError, match="protocol: with `models:` this key belongs in each"):
        config_from_mapping(raw, base=tmp_path)


def test_a_shared_key_problem_is_reported_once(tmp_path: Path) -> None:
    """A bad shared key is one message, not one per model."""
    raw = {**two_models(tmp_path), "windows": ["soon"]}
    with pytest.raises(ConfigError) as caught:
        config_from_mapping(raw, base=tmp_path)
    assert str(caught.value).count("windows[0]") == 1


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/v2/models/wine/infer", "wine"),
        ("/v2/models/wine/versions/3/infer", "wine"),
        ("/v1/models/wine:predict", "wine"),
        ("/v1/models/wine/versions/2:predict", "wine"),
        # Only V1's route ends the name at a colon: a V2 name may hold one.
        ("/v2/models/wine:canary/infer", "wine:canary"),
        ("/v2/models/wine:canary/versions/3/infer", "wine:canary"),
        ("/invocations", None),
        ("/iris/invocations", None),
    ],
)
def test_model_names_are_read_from_kserve_and_tfserving_paths(path: str, name: str | None) -> None:
    """The model name of a KServe v1/v2 or TF Serving route."""
    assert model_in_path(path) == name


def v2_record(model: str, alcohol: float) -> Record:
    request = {
        "inputs": [
            {"name": "alcohol", "shape": [1], "datatype": "FP64", "data": [alcohol]},
            {"name": "ash", "shape": [1], "datatype": "FP64", "data": [2.2]},
            {"name": "region", "shape": [1], "datatype": "BYTES", "data": ["north"]},
        ]
    }
    response = {"outputs": [{"name": "class", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}
    return Record(T0, request, response, f"/v2/models/{model}/infer")


def mlflow_record(path: str) -> Record:
    request = {"dataframe_records": [{"alcohol": 12.0, "ash": 2.0, "region": "south"}]}
    return Record(T0, request, {"predictions": ["b"]}, path)


def test_records_go_to_their_model_and_unknown_models_are_counted(config: Config) -> None:
    """v2 by the name in the path, MLflow by its path pattern; another model's records are only
    counted, as the sidecar's (no model's) unknown_model."""
    sidecar = build_sidecar(config)
    wine, iris = sidecar.monitors
    rows = sidecar.batcher.ingest(
        [
            v2_record("wine", 13.0),
            v2_record("wine", 14.0),
            mlflow_record("/iris/invocations"),
            v2_record("cifar", 1.0),
            mlflow_record("/invocations"),
        ]
    )
    assert rows == 3
    assert wine.counters()["alcohol"].observations == 2
    assert iris.counters()["alcohol"].observations == 1
    assert sidecar.batcher.parse_errors == {"unknown_model": 2}
    assert not wine.parse_errors and not iris.parse_errors
    assert parse_errors_shown(sidecar)["", "unknown_model"] == 2
    assert parse_errors_shown(sidecar)["wine", "invalid_json"] == 0
    assert ("wine", "unknown_model") not in parse_errors_shown(sidecar)
    assert sidecar.batcher.matches("/v2/models/cifar/infer")


def test_the_namespaces_of_one_inferenceservice_name_are_routed_apart(tmp_path: Path) -> None:
    """`namespace` routes CloudEvents records (``ce-namespace``) as `component` does: the
    model naming the record's namespace before one naming none (then by component); a record
    of a namespace no model of its service takes, or naming none, goes to no model (counted
    unknown_model); the same service and namespace twice is refused."""
    raw = two_models(tmp_path, inferenceservice="wine", namespace="staging")
    raw["models"][0]["namespace"] = "staging"
    with pytest.raises(ConfigError, match=r"InferenceService 'wine' in namespace 'staging'"):
        config_from_mapping(raw, base=tmp_path)
    raw["models"][0]["namespace"] = "prod"
    loaded = config_from_mapping(raw, base=tmp_path)
    assert [(m.origin, m.namespace) for m in loaded.all_models] == [
        (("wine", None), "prod"),
        (("wine", None), "staging"),
    ]
    data = write_csv(tmp_path / "train.csv", training_rows(500))
    for model in loaded.all_models:
        save_baseline(build_baseline(model, [data]), model.baseline)
    sidecar = build_sidecar(loaded)
    router = sidecar.batcher
    names = {
        namespace: found.monitor.config.model if found else None
        for namespace in ("prod", "staging", "dev", None)
        for found in [router.route("", "wine", "predictor", namespace)[0]]
    }
    assert names == {"prod": "wine", "staging": "iris", "dev": None, None: None}
    # A model naming no namespace takes the others' namespaces, after those naming theirs; a
    # component-named model of no namespace comes after a namespace-named one of any component.
    del raw["models"][1]["namespace"]
    raw["models"][1]["component"] = "transformer"
    router = build_sidecar(config_from_mapping(raw, base=tmp_path)).batcher
    names = {
        (namespace, component): found.monitor.config.model if found else None
        for namespace in ("prod", "dev")
        for component in ("predictor", "transformer")
        for found in [router.route("", "wine", component, namespace)[0]]
    }
    assert names == {
        ("prod", "predictor"): "wine",
        ("prod", "transformer"): "wine",
        ("dev", "predictor"): None,
        ("dev", "transformer"): "iris",
    }

    def from_namespace(namespace: str) -> Record:
        record = v2_record("ignored", 13.0)
        headers = {"ce-inferenceservicename": "wine", "ce-namespace": namespace}
        return Record(T0, record.request, record.response, "", "id", headers)

    wine, iris = sidecar.monitors
    assert sidecar.batcher.ingest([from_namespace(n) for n in ("prod", "dev", "dev")]) == 1
    assert wine.counters()["alcohol"].observations == 1
    assert sidecar.batcher.parse_errors == {"unknown_model": 2}  # dev's: no model of wine's
    assert not wine.parse_errors
    assert iris.counters()["alcohol"].observations == 0 and not iris.parse_errors


def test_records_naming_their_inferenceservice_go_to_the_model_of_that_name(
    config: Config,
) -> None:
    """Pathless records (CloudEvents) route by ``ce-inferenceservicename``, whatever the model's
    protocol; a service no model is named after is counted unknown_model, the sidecar's."""
    sidecar = build_sidecar(config)
    wine, iris = sidecar.monitors

    def from_service(record: Record, service: str) -> Record:
        headers = {"ce-inferenceservicename": service, "ce-component": "predictor"}
        return Record(T0, record.request, record.response, "", "id", headers)

    rows = sidecar.batcher.ingest(
        [
            from_service(v2_record("ignored", 13.0), "wine"),
            from_service(mlflow_record(""), "iris"),
            from_service(mlflow_record(""), "iris"),
            from_service(v2_record("wine", 13.0), "cifar"),
            Record(T0, None, None, ""),
        ]
    )
    assert rows == 3
    assert wine.counters()["alcohol"].observations == 1
    assert iris.counters()["alcohol"].observations == 2
    assert sidecar.batcher.parse_errors == {"unknown_model": 2}  # cifar's, and one naming none
    assert not wine.parse_errors and not iris.parse_errors


def test_which_paths_keep_their_bodies_is_remembered_within_a_bound(config: Config) -> None:
    """Every answer is the routes' own, asked again or after the remembered paths are dropped."""
    router = build_sidecar(config).batcher
    paths = ["/v2/models/wine/infer", "/iris/invocations", "/healthz", "/v2/models/x/ready", ""]
    expected = [True, True, False, False, True]
    for _ in range(2):
        assert [router.matches(p) for p in paths] == expected
    for i in range(3000):  # clients choose paths: what is remembered stays bounded
        assert router.matches(f"/static/{i}") is False
    assert len(router._matches) <= 1024
    assert [router.matches(p) for p in paths] == expected


def test_each_models_baseline_must_hold_values(config: Config, tmp_path: Path) -> None:
    """A later model's baseline with a field without values is refused when the sidecar is built
    (its numeric field would have had no bins)."""
    iris = config.all_models[1]
    data = write_csv(tmp_path / "no-ash.csv", training_rows(500) | {"ash": [None] * 500})
    save_baseline(build_baseline(iris, [data]), iris.baseline)
    with pytest.raises(BaselineError, match="numeric field 'ash' has no finite value") as caught:
        build_sidecar(config)
    assert str(caught.value).startswith(f"model 'iris': {iris.baseline}: ")  # which model


def test_a_single_model_sidecar_takes_every_record(tmp_path: Path) -> None:
    """With one model, records are monitored whatever model name their path carries (as before)."""
    raw = base_config(tmp_path, protocol="kserve-v2")
    raw["predictions"] = [{"name": "class", "type": "categorical"}]
    single = config_from_mapping(raw, base=tmp_path)
    data = write_csv(tmp_path / "train.csv", training_rows(2_000))
    sidecar = build_sidecar(single, build_baseline(single, [data]))
    assert sidecar.batcher.ingest([v2_record("another-name", 13.0)]) == 1
    assert not sidecar.monitor.parse_errors and not sidecar.batcher.parse_errors


def test_a_models_list_of_one_takes_no_record_naming_another_model(tmp_path: Path) -> None:
    """`models:` with one block is routed like a list: a record naming another model (in its
    path) or another InferenceService is counted unknown_model, not monitored as this model;
    a record naming none is still this model's."""
    raw = two_models(tmp_path)
    raw["models"] = raw["models"][:1]
    listed = config_from_mapping(raw, base=tmp_path)
    data = write_csv(tmp_path / "train.csv", training_rows(2_000))
    sidecar = build_sidecar(listed, build_baseline(listed, [data]))

    pathless = replace(v2_record("wine", 13.0), path="")
    rows = sidecar.batcher.ingest(
        [
            v2_record("wine", 13.0),
            v2_record("cifar", 13.0),
            replace(pathless, headers={SERVICE_HEADER: "wine"}),
            replace(pathless, headers={SERVICE_HEADER: "other"}),
            pathless,
        ]
    )
    assert rows == 3
    assert sidecar.monitor.counters()["alcohol"].observations == 3
    assert sidecar.batcher.parse_errors == {"unknown_model": 2}
    assert not sidecar.monitor.parse_errors


def test_metrics_write_each_family_once_with_every_model(config: Config) -> None:
    """Both models' samples sit in one block per family; promtool and the strict parser accept it."""
    sidecar = build_sidecar(config)
    sidecar.batcher.ingest([v2_record("wine", 13.0), mlflow_record("/iris/invocations")])
    for monitor in sidecar.monitors:
        monitor.compute()
    text, _ = render_metrics(sidecar.registry, "text/plain", sidecar.rendered)
    body = text.decode()
    assert body.count("# TYPE driftgauge_observations_total counter") == 1
    assert body.count("# TYPE driftgauge_build_info gauge") == 1
    models = {
        sample.labels.get("model")
        for family in text_string_to_metric_families(body)
        for sample in family.samples
        if family.name == "driftgauge_observations"
    }
    assert models == {"wine", "iris"}
    om, _ = render_metrics(
        sidecar.registry, "application/openmetrics-text; version=1.0.0", sidecar.rendered
    )
    strict = {family.name for family in openmetrics_families(om.decode())}  # raises if invalid
    assert {"driftgauge_observations", "driftgauge_baseline"} <= strict
    checked = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


async def test_feedback_names_the_models_that_take_labels_when_the_first_takes_none(
    tmp_path: Path,
) -> None:
    """Only the second model takes labels: POST /feedback (the first model's) answers a JSON
    404 naming /feedback/<model> of those that do, as /feedback/<other> does, not aiohttp's
    plain-text page; the landing page names both models."""
    from aiohttp.test_utils import TestClient, TestServer

    raw = two_models(tmp_path, feedback={"prediction": "class"})
    raw["models"][1]["model"] = "iris setosa/ü"
    loaded = with_baselines(raw, tmp_path)
    sidecar = build_sidecar(loaded)
    async with TestClient(TestServer(sidecar.app)) as client:
        answer = await client.post("/feedback", json=[{"id": "w-1", "label": "a"}])
        assert answer.status == 404
        error = (await answer.json())["error"]
        assert "'wine'" in error and "/feedback/iris%20setosa%2F%C3%BC" in error, error
        landing = await (await client.get("/")).text()
        assert "models <code>wine</code>, <code>iris setosa/ü</code>" in landing


@pytest.mark.parametrize("models", [1, 2], ids=["one model", "two models"])
async def test_feedback_says_no_model_takes_labels_when_none_does(
    tmp_path: Path, models: int
) -> None:
    """No feedback: block anywhere: POST /feedback and /feedback/<model> answer a JSON 404
    saying so, as the other errors there are JSON, not aiohttp's plain-text page."""
    from aiohttp.test_utils import TestClient, TestServer

    raw = base_config(tmp_path) if models == 1 else two_models(tmp_path)
    loaded = with_baselines(raw, tmp_path)
    sidecar = build_sidecar(loaded)
    async with TestClient(TestServer(sidecar.app)) as client:
        for path, said in (
            ("/feedback", "no model takes labels: the config has no feedback: block"),
            ("/feedback/wine", "no model 'wine' takes labels"),
        ):
            answer = await client.post(path, json=[{"id": "w-1", "label": "a"}])
            assert (answer.status, await answer.json()) == (404, {"error": said}), path


async def test_each_model_takes_its_labels_at_its_own_feedback_path(tmp_path: Path) -> None:
    """/feedback/<model> joins labels with that model's predictions; /feedback is the first model's."""
    from aiohttp.test_utils import TestClient, TestServer

    raw = two_models(tmp_path, feedback={"prediction": "class"})
    raw["models"][0]["feedback"] = {"prediction": "class"}
    loaded = with_baselines(raw, tmp_path, rows=2_000)
    sidecar = build_sidecar(loaded)
    iris_record = mlflow_record("/iris/invocations")
    wine_record = v2_record("wine", 13.0)
    sidecar.batcher.ingest(
        [
            Record(T0, iris_record.request, iris_record.response, iris_record.path, "i-1"),
            Record(T0, wine_record.request, wine_record.response, wine_record.path, "w-1"),
        ]
    )
    async with TestClient(TestServer(sidecar.app)) as client:
        iris = await client.post("/feedback/iris", json=[{"id": "i-1", "label": "b"}])
        assert (await iris.json())["matched"] == 1
        wrong = await client.post("/feedback/iris", json=[{"id": "w-1", "label": "a"}])
        assert (await wrong.json())["unmatched"] == 1
        wine = await client.post("/feedback", json=[{"id": "w-1", "label": "a"}])
        assert (await wine.json())["matched"] == 1


SOURCES: dict[str, dict[str, Any]] = {
    "tail": {},  # two_models' own
    "cloudevents": {"cloudevents": {"listen": "127.0.0.1:0"}},
    "proxy": {"proxy": {"listen": "127.0.0.1:0", "upstream": "http://127.0.0.1:9"}},
}


@pytest.mark.parametrize("models", [0, 1, 2], ids=["no models list", "a list of 1", "of 2"])
@pytest.mark.parametrize("source", sorted(SOURCES))
def test_every_reason_the_source_may_count_is_exposed_from_0_under_no_model(
    tmp_path: Path, source: str, models: int
) -> None:
    """The reasons the sidecar's source and its routing count (a tail line too long, a
    CloudEvent without id, a POST off the prediction routes, a record for no model of a
    models: list) are driftgauge_source_parse_errors_total's, without a model label, each at 0
    before the first one so that rate() and increase() see that one too; they were the first
    model's, beside its own.  Each model shows the protocols' reasons alone.  A config without
    models: routes nothing: no unknown_model."""
    from driftgauge.sources import cloudevents, proxy, tail

    raw = base_config(tmp_path) if models == 0 else two_models(tmp_path)
    if models == 1:
        raw["models"] = raw["models"][:1]
    if SOURCES[source]:
        raw["source"] = SOURCES[source]
    loaded = with_baselines(raw, tmp_path)
    sidecar = build_sidecar(loaded)
    shown = parse_errors_shown(sidecar)
    expected = {
        "tail": tail.ERROR_REASONS,
        "cloudevents": cloudevents.ERROR_REASONS,
        "proxy": proxy.ERROR_REASONS,
    }
    routed = ("unknown_model",) if models else ()
    sidecars = {reason: value for (model, reason), value in shown.items() if not model}
    assert sidecars == dict.fromkeys((*expected[source], *routed), 0.0)
    for model in (each.model for each in loaded.all_models):
        assert {reason for (name, reason) in shown if name == model} == set(PARSE_ERROR_REASONS)


@pytest.mark.parametrize("models", [0, 2], ids=["no models list", "of 2"])
@pytest.mark.parametrize("source", sorted(SOURCES))
def test_every_drop_the_source_may_count_is_exposed_from_0_under_no_model(
    tmp_path: Path, source: str, models: int
) -> None:
    """What the source may drop before routing (the proxy's full queue, oversize body and early
    answer, a CloudEvents overload, a request sampled out; nothing for the tail) is
    driftgauge_source_dropped_total's, without a model label, each at 0 from the start; each
    model shows only what it drops after routing (its held predictions')."""
    from driftgauge.sources import cloudevents, proxy

    raw = base_config(tmp_path) if models == 0 else two_models(tmp_path)
    if SOURCES[source]:
        raw["source"] = SOURCES[source]
    loaded = with_baselines(raw, tmp_path)
    sidecar = build_sidecar(loaded)
    text, _ = render_metrics(sidecar.registry, "text/plain", sidecar.rendered)
    shown = {
        (sample.labels.get("model", ""), sample.labels["reason"]): sample.value
        for family in text_string_to_metric_families(text.decode())
        if family.name in ("driftgauge_dropped", "driftgauge_source_dropped")
        for sample in family.samples
    }
    expected = {
        "tail": (),
        "cloudevents": (*cloudevents.DROP_REASONS, "sampled"),
        "proxy": (*proxy.DROP_REASONS, "sampled"),
    }
    sidecars = {reason: value for (model, reason), value in shown.items() if not model}
    assert sidecars == dict.fromkeys(expected[source], 0.0)
    for model in (each.model for each in loaded.all_models):
        owned = {reason: v for (name, reason), v in shown.items() if name == model}
        assert owned == {"feedback_expired": 0.0, "feedback_no_id": 0.0}


def test_a_label_file_s_reasons_are_exposed_from_0_under_its_model(tmp_path: Path) -> None:
    """A feedback.tail line that cannot be read counts feedback_invalid_json (or _record, or
    feedback_line_too_long) under the model whose labels it holds; those were exposed only
    from their first count, so rate() and increase() missed that first one."""
    raw = two_models(tmp_path, feedback={"prediction": "class", "tail": "iris-labels.jsonl"})
    loaded = with_baselines(raw, tmp_path)
    sidecar = build_sidecar(loaded)
    shown = parse_errors_shown(sidecar)
    reasons = ("feedback_invalid_json", "feedback_invalid_record", "feedback_line_too_long")
    assert {reason: shown.get(("iris", reason)) for reason in reasons} == dict.fromkeys(reasons, 0)
    assert not {("wine", reason) for reason in reasons} & set(shown)  # no label file of its own


def test_the_sources_list_every_reason_they_count() -> None:
    """Each reason literal of the tail and CloudEvents sources is in their ERROR_REASONS."""
    import re

    from driftgauge.sources import cloudevents, pairing, tail

    written = {
        token
        for module in (cloudevents, pairing)
        for token in re.findall(r"cloudevents_[a-z_]*[a-z]", Path(module.__file__).read_text())
    }
    drops = {"cloudevents_overload", "cloudevents_unpaired"}  # a drop; an f-string's start
    assert written - drops == set(cloudevents.ERROR_REASONS)
    assert set(tail.ERROR_REASONS) <= set(
        re.findall(r'"([a-z_]+)"', Path(tail.__file__).read_text())
    )
