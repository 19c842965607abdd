"""Model versions: read from the path or the response, bounded, and exposed under a version label."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from driftgauge.app import build_sidecar
from driftgauge.baseline import build_baseline
from driftgauge.config import Config, config_from_mapping
from driftgauge.exceptions import ConfigError
from driftgauge.exposition.collector import render_metrics
from driftgauge.monitor.versions import OTHER_VERSION, record_version
from driftgauge.runtime.state import StateStore
from driftgauge.typing import Record
from tests.helpers import base_config, training_rows, write_csv

T0 = 1_700_000_000.0


@pytest.mark.parametrize(
    ("path", "response", "version"),
    [
        ("/v2/models/wine/versions/3/infer", {"model_version": "9"}, "3"),
        ("/v1/models/wine/versions/12:predict", None, "12"),
        ("/v1/models/wine/labels/canary:predict", None, "canary"),  # TF Serving's version label
        ("/v2/models/wine/infer", {"model_version": "canary"}, "canary"),
        ("/v2/models/wine/infer", {"model_version": 2}, "2"),
        ("/v2/models/wine/infer", {"outputs": []}, ""),
        ("", {"model_version": True}, ""),
        # Escapes decoded as in model names: the response's spelling and the path's agree.
        ("/v2/models/wine/versions/v%C3%A9ga%201/infer", None, "véga 1"),
        ("/v2/models/wine/versions/100%25/infer", None, "100%"),
        ("/v2/models/wine/versions/%FF/infer", None, "%FF"),  # no UTF-8: as written
        # "versions" as a model name or in a gateway's prefix names no version.
        ("/v2/models/versions/infer", {"model_version": "1"}, "1"),
        ("/v2/models/versions/versions/3/infer", None, "3"),
        ("/gw/versions/a/v2/models/wine/infer", {"model_version": "1"}, "1"),
    ],
)
def test_the_version_comes_from_the_path_else_the_response(
    path: str, response: Any, version: str
) -> None:
    """A path's /versions/V wins over the response's model_version; no version is ""."""
    assert record_version(path, response) == version


@pytest.mark.parametrize(
    ("path", "response", "endpoint", "version"),
    [
        ("", {"outputs": []}, "canary", "canary"),
        ("", None, "default", "default"),
        ("", {"model_version": "2"}, "canary", "2"),  # the model's own word is more specific
        ("/v2/models/wine/versions/3/infer", None, "canary", "3"),
        ("", {"outputs": []}, "", ""),  # a logger without --endpoint sends it empty
        ("", {"outputs": []}, None, ""),
    ],
)
def test_a_kserve_endpoint_is_the_version_of_a_record_naming_none(
    path: str, response: Any, endpoint: str | None, version: str
) -> None:
    """The payload logger's ce-endpoint (default, canary) versions a record whose path and
    response name no version."""
    headers = {} if endpoint is None else {"ce-endpoint": endpoint}
    assert record_version(path, response, headers) == version


def _config(tmp_path: Path, **overrides: Any) -> Config:
    raw = base_config(tmp_path, protocol="kserve-v2", versions={"top": 2}, **overrides)
    raw["feedback"] = {"prediction": "class"}
    return config_from_mapping(raw, base=tmp_path)


def _record(version: str | None, alcohol: float = 13.0, rid: str = "r") -> Record:
    request = {
        "inputs": [
            {"name": "alcohol", "shape": [1], "datatype": "FP64", "data": [alcohol]},
            {"name": "ash", "shape": [1], "datatype": "FP64", "data": [2.2]},
            {"name": "region", "shape": [1], "datatype": "BYTES", "data": ["north"]},
        ]
    }
    response: dict[str, Any] = {
        "outputs": [{"name": "class", "shape": [1], "datatype": "BYTES", "data": ["a"]}]
    }
    if version is not None:
        response["model_version"] = version
    return Record(T0, request, response, "/v2/models/wine/infer", request_id=rid)


def test_the_first_versions_get_a_monitor_each_the_rest_share_other(tmp_path: Path) -> None:
    """With top 2, versions 1 and 2 are tracked apart, 3 and 4 as __other__; no version: the model."""
    config = _config(tmp_path)
    data = write_csv(tmp_path / "train.csv", training_rows(2_000))
    sidecar = build_sidecar(config, build_baseline(config, [data]))
    records = [_record(v, rid=f"r{i}") for i, v in enumerate(["1", "2", "1", "3", "4", None])]
    assert sidecar.batcher.ingest(records) == 6
    by_version = {
        m.version: m.counters()["alcohol"].observations for m in sidecar.batcher.all_monitors()
    }
    assert by_version == {"": 1, "1": 2, "2": 1, OTHER_VERSION: 2}
    # Delayed labels join in the model's own monitor, whatever the version.
    outcomes = sidecar.monitor.outcomes
    assert outcomes is not None and outcomes.pending == 6


def test_versions_are_labelled_on_metrics_each_family_once(tmp_path: Path) -> None:
    """Version monitors' samples carry version="V"; the text passes promtool and the strict parser."""
    config = _config(tmp_path)
    data = write_csv(tmp_path / "train.csv", training_rows(2_000))
    sidecar = build_sidecar(config, build_baseline(config, [data]))
    sidecar.batcher.ingest([_record("1"), _record("2", alcohol=20.0)])
    for monitor in sidecar.batcher.all_monitors():
        monitor.compute()
    text, _ = render_metrics(sidecar.registry, "text/plain", sidecar.rendered)
    body = text.decode()
    assert body.count("# TYPE driftgauge_observations_total counter") == 1
    versions = {
        sample.labels.get("version")
        for family in text_string_to_metric_families(body)
        for sample in family.samples
        if family.name == "driftgauge_observations" and sample.labels["feature"] == "alcohol"
    }
    assert versions == {None, "1", "2"}
    om, _ = render_metrics(
        sidecar.registry, "application/openmetrics-text; version=1.0.0", sidecar.rendered
    )
    assert "driftgauge_baseline_bin_ratio" in {f.name for f in openmetrics_families(om.decode())}
    checked = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_versions_are_off_unless_configured_and_bounded(tmp_path: Path) -> None:
    """Without versions:, records of every version feed the model's monitor; top is at most 20."""
    raw = base_config(tmp_path, protocol="kserve-v2")
    config = config_from_mapping(raw, base=tmp_path)
    assert config.versions == 0
    data = write_csv(tmp_path / "train.csv", training_rows(2_000))
    sidecar = build_sidecar(config, build_baseline(config, [data]))
    sidecar.batcher.ingest([_record("1"), _record("2")])
    assert [m.version for m in sidecar.batcher.all_monitors()] == [""]
    assert sidecar.monitor.counters()["alcohol"].observations == 2
    with pytest.raises(ConfigError, match=r"versions\.top: 21 is above 20"):
        config_from_mapping({**raw, "versions": {"top": 21}}, base=tmp_path)


def test_versions_keep_segment_positive_rates_and_disparate_impact(tmp_path: Path) -> None:
    """A version's segments export positive_rate and disparate_impact, as the model's would."""
    raw = base_config(
        tmp_path, protocol="kserve-v2", versions={"top": 2}, segments={"features": ["region"]}
    )
    raw["feedback"] = {"prediction": "class", "positive_class": "a"}
    config = config_from_mapping(raw, base=tmp_path)
    data = write_csv(tmp_path / "train.csv", training_rows(2_000))
    sidecar = build_sidecar(config, build_baseline(config, [data]))
    rng = np.random.default_rng(1)
    regions = rng.choice(["north", "south", "east"], 600)
    classes = np.where(rng.random(600) < np.where(regions == "north", 0.8, 0.3), "a", "b")
    request = {
        "inputs": [
            {"name": "alcohol", "shape": [600], "datatype": "FP64", "data": [13.0] * 600},
            {"name": "ash", "shape": [600], "datatype": "FP64", "data": [2.2] * 600},
            {"name": "region", "shape": [600], "datatype": "BYTES", "data": regions.tolist()},
        ]
    }
    response = {
        "model_version": "1",
        "outputs": [
            {"name": "class", "shape": [600], "datatype": "BYTES", "data": classes.tolist()}
        ],
    }
    sidecar.batcher.ingest([Record(T0, request, response, "/v2/models/wine/infer", request_id="r")])
    for monitor in sidecar.batcher.all_monitors():
        monitor.compute()
    text, _ = render_metrics(sidecar.registry, "text/plain", sidecar.rendered)
    samples = [
        sample
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
        if sample.labels.get("version") == "1" and sample.labels.get("window") == "5m"
    ]
    rates = {s.labels["segment"]: s.value for s in samples if s.name == "driftgauge_positive_rate"}
    expected = {r: float(np.mean(classes[regions == r] == "a")) for r in ("north", "south", "east")}
    assert rates.keys() >= expected.keys()
    for region, rate in expected.items():
        assert rates[region] == pytest.approx(rate, abs=1e-12)
    (impact,) = [s.value for s in samples if s.name == "driftgauge_disparate_impact"]
    assert impact == pytest.approx(min(expected.values()) / max(expected.values()), abs=1e-12)


def test_version_windows_survive_a_restart(tmp_path: Path) -> None:
    """Each version's windows go into the model's snapshot and come back under their labels, in
    the order the versions appeared (so the first ``top`` keep their own); later ones share
    __other__ as before the restart."""
    config = _config(tmp_path)
    baseline = build_baseline(config, [write_csv(tmp_path / "train.csv", training_rows(2_000))])
    versions = ["2", "1", "2", "3", None, "4"]
    before = build_sidecar(config, baseline)
    before.batcher.ingest(
        [_record(v, alcohol=12.0 + i / 4, rid=f"r{i}") for i, v in enumerate(versions)]
    )
    [saved] = before.batcher.batchers
    StateStore(tmp_path / "state", saved.monitor, versions=saved.versions).save()
    after = build_sidecar(config, baseline)
    [again] = after.batcher.batchers
    assert StateStore(tmp_path / "state", again.monitor, versions=again.versions).restore()

    def windows(sidecar: Any) -> dict[str, dict[str, tuple[int, list[int]]]]:
        now = time.time()
        return {
            m.version: {
                label: (int(s["alcohol"].count), s["alcohol"].bins.tolist())
                for label, s in m.merged_windows(now).items()
            }
            for m in sidecar.batcher.all_monitors()
        }

    assert list(windows(after)) == ["", "2", "1", OTHER_VERSION]
    assert {v: w["5m"][0] for v, w in windows(after).items()} == {
        "": 1,
        "2": 2,
        "1": 1,
        OTHER_VERSION: 2,
    }
    assert windows(after) == windows(before)
    assert again.versions is not None and again.versions.monitor_for("5").version == OTHER_VERSION
