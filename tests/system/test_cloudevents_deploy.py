"""The CloudEvents example config and the KServe payload-logger manifests are consistent and valid."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from driftgauge.baseline import build_baseline, save_baseline
from driftgauge.config import CloudEventsConfig, config_from_mapping, load_config
from tests.helpers import training_rows, write_csv

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "wine-cloudevents.yaml"
KSERVE = ROOT / "deploy" / "kubernetes" / "kserve-logger"
SIDECAR = ROOT / "deploy" / "kubernetes" / "driftgauge-sidecar.yaml"


def test_example_config_passes_driftgauge_check(tmp_path: Path) -> None:
    """examples/wine-cloudevents.yaml loads, and `driftgauge check` accepts it with its baseline."""
    config_path = tmp_path / EXAMPLE.name
    shutil.copy(EXAMPLE, config_path)
    config = load_config(config_path)
    assert isinstance(config.source, CloudEventsConfig)
    assert config.source.listen == ("0.0.0.0", 8080)
    data = write_csv(tmp_path / "train.csv", training_rows(2_000))
    save_baseline(build_baseline(config, [data]), config.baseline)
    result = subprocess.run(
        [sys.executable, "-m", "driftgauge.cli", "check", "-c", str(config_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: ")


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _one(documents: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [d for d in documents if d["kind"] == kind]
    return found


def test_inferenceservice_logger_posts_to_driftgauges_events_port() -> None:
    """logger.url names the Service, whose port leads to the container port driftgauge listens on."""
    documents = _documents(KSERVE / "driftgauge.yaml")
    configmap = _one(documents, "ConfigMap")
    raw = yaml.safe_load(configmap["data"]["config.yaml"])
    config = config_from_mapping(raw, base=Path("/etc/driftgauge"))
    assert isinstance(config.source, CloudEventsConfig)
    logger = _one(_documents(KSERVE / "inferenceservice.yaml"), "InferenceService")["spec"][
        "predictor"
    ]["logger"]
    assert logger["mode"] == "all"
    url = urlsplit(logger["url"])
    service = _one(documents, "Service")
    assert url.hostname == service["metadata"]["name"]
    (port,) = [p for p in service["spec"]["ports"] if p["port"] == url.port]
    deployment = _one(documents, "Deployment")
    assert deployment["spec"]["replicas"] == 1  # a request and its response must meet
    template = deployment["spec"]["template"]
    assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
    (container,) = template["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports[port["targetPort"]] == config.source.listen[1]
    assert ports["metrics"] == config.metrics.listen[1]
    assert template["metadata"]["annotations"]["prometheus.io/port"] == str(ports["metrics"])
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    assert volumes["driftgauge-config"]["configMap"]["name"] == configmap["metadata"]["name"]


def test_logger_config_monitors_the_same_model_as_the_sidecar_example() -> None:
    """The logger example and the proxy sidecar example differ only in the source."""
    logger_raw = yaml.safe_load(
        _one(_documents(KSERVE / "driftgauge.yaml"), "ConfigMap")["data"]["config.yaml"]
    )
    sidecar_raw = yaml.safe_load(_one(_documents(SIDECAR), "ConfigMap")["data"]["config.yaml"])
    assert logger_raw.pop("source").keys() == {"cloudevents"}
    assert sidecar_raw.pop("source").keys() == {"proxy"}
    assert logger_raw == sidecar_raw
