"""Drift alerts end to end: model server → driftgauge proxy → Prometheus → Alertmanager → webhook.

Every piece is a real process or server on 127.0.0.1: a KServe v1 model
server and a webhook receiver on an event loop in a thread, ``driftgauge
serve`` as a subprocess in proxy mode in front of the model, and the Debian
packages' Prometheus and Alertmanager.  Prometheus loads a test-only copy of
``alert_rules/driftgauge.rules.yml`` that differs only in its sizes: every
rate range and offset 10s, every ``for:`` 2s and rule group intervals 1s.  The rules name
no window, so the sidecar's ``windows`` are whatever each case configures
(two short windows like the default pair, or a single ``1m``) and the rules
are the same.  The model's class depends on ``ash`` only, so drifting
``alcohol`` leaves the predictions undrifted.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e_support import (
    RULES,
    BackgroundLoop,
    Traffic,
    WebhookReceiver,
    kserve_model_app,
    kserve_proxy_source,
    masked,
    rewrite_expr,
    rules_by_name,
    sidecar,
    wait_ready,
    write_baseline,
    write_config,
    write_test_rules,
)
from tests.helpers import base_config, free_port
from tests.servers import Prometheus, alertmanager, prometheus, wait_for

pytestmark = pytest.mark.integration


TEST_RULES: dict[str, Any] = {"windows": {}, "range_": "10s", "for_": "2s", "interval": "1s"}
# The sidecar's `windows` of each case: two windows like the default [5m, 1h], and one.
WINDOW_SETS = [pytest.param(("10s", "30s"), id="10s,30s"), pytest.param(("1m",), id="1m")]
DRIFT_ALERTS = {
    "DriftgaugeFeatureDriftWarning",
    "DriftgaugeFeatureDriftCritical",
    "DriftgaugePredictionDrift",
    "DriftgaugeFeatureKSDrift",
    "DriftgaugeFleetFeatureDrift",
}
FIELDS = ("alcohol", "ash", "region", "class")


def _drift_alerts(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [a for a in alerts if a["labels"]["alertname"] in DRIFT_ALERTS]


def _describe(alerts: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return sorted(
        {
            (
                a["labels"]["alertname"],
                a["labels"].get("feature", "-"),
                a.get("status", a.get("state")),
            )
            for a in alerts
        }
    )


def test_test_rules_differ_from_the_project_rules_only_in_sizes(tmp_path: Path) -> None:
    """The rewritten rules keep every name, label, annotation and expression but ranges and for."""
    original = rules_by_name(yaml.safe_load(RULES.read_text()))
    rewritten = rules_by_name(write_test_rules(tmp_path / "rules.yml", **TEST_RULES))
    assert list(rewritten) == list(original)
    assert set(original) >= DRIFT_ALERTS
    for name, rule in original.items():
        copy = rewritten[name]
        assert masked(copy["expr"]) == masked(rule["expr"]), name
        assert copy["expr"] == rewrite_expr(rule["expr"], {}, "10s"), name
        assert copy.get("for") == ("2s" if "for" in rule else None), name
        drop = {"expr", "for"}
        assert {k: v for k, v in copy.items() if k not in drop} == {
            k: v for k, v in rule.items() if k not in drop
        }, name


def test_project_rules_name_no_window() -> None:
    """No rule selects a window: the shipped rules work for any `windows` of the sidecar."""
    for name, rule in rules_by_name(yaml.safe_load(RULES.read_text())).items():
        assert "window=" not in rule["expr"].replace(" ", ""), name
        assert "window!" not in rule["expr"].replace(" ", ""), name


@pytest.mark.timeout(150)
@pytest.mark.parametrize("windows", WINDOW_SETS)
def test_drifting_one_feature_alerts_for_that_feature_only(
    tmp_path: Path, windows: tuple[str, ...]
) -> None:
    """Undrifted traffic raises no drift alert; drifting alcohol brings its warning and critical alerts, and none for any other feature."""
    rules = tmp_path / "rules.yml"
    write_test_rules(rules, **TEST_RULES)
    model_port, proxy_port = free_port(), free_port()
    raw = base_config(
        tmp_path,
        source=kserve_proxy_source(proxy_port, model_port),
        windows=list(windows),
        window_slices=5,
        min_observations=100,
    )
    config = write_config(tmp_path / "config.yaml", raw)
    write_baseline(config, 20_000)
    receiver = WebhookReceiver()
    traffic = Traffic(f"http://127.0.0.1:{proxy_port}/v1/models/wine:predict")
    with BackgroundLoop() as loop:
        loop.serve(kserve_model_app(), model_port)
        webhook_port = free_port()
        webhook = loop.serve(receiver.app(), webhook_port) + "/alerts"
        with (
            sidecar(config, tmp_path / "driftgauge.log", ready=False) as running,
            alertmanager(tmp_path / "alertmanager", webhook) as am,
            prometheus(tmp_path / "prometheus", [running.target], [rules], am.url) as prom,
        ):
            wait_ready([running])
            loop.start(traffic.run())
            try:
                _watch(prom, receiver, traffic, windows)
            finally:
                traffic.stop()
                loop.finish()


def _watch(
    prom: Prometheus, receiver: WebhookReceiver, traffic: Traffic, windows: tuple[str, ...]
) -> None:
    """Phase 1 without drift, phase 2 with alcohol drifted; assert what reaches the webhook."""

    # Phase 1: no drift. Wait until Prometheus holds PSI for every field in every
    # window (so every window holds min_observations) and the fleet's PSI of every
    # input (the sidecar counts once it was scraped a range ago), then watch for a while.
    def every_gauge_present() -> bool:
        series = prom.query(
            "driftgauge_psi and on (instance, feature, window) "
            "driftgauge_window_observations >= 100"
        )
        found = {(s["metric"]["feature"], s["metric"]["window"]) for s in series}
        fleet = {s["metric"]["feature"] for s in prom.query("driftgauge:fleet_psi:rate5m")}
        inputs = set(FIELDS) - {"class"}
        return found == {(f, w) for f in FIELDS for w in windows} and fleet >= inputs

    wait_for(every_gauge_present, timeout=45, what="PSI of every field in every window")
    assert all(group["health"] == "ok" for group in _rule_health(prom)), _rule_health(prom)
    # Several evaluations, longer than `for:` plus Alertmanager's group_wait.
    time.sleep(6)
    assert _drift_alerts(receiver.received()) == []
    assert _drift_alerts(prom.alerts()) == [], _describe(prom.alerts())
    assert traffic.failed == 0

    # Phase 2: shift alcohol by two standard deviations.
    traffic.alcohol_shift = 1.6

    def warning_and_critical() -> bool:
        names = {
            a["labels"]["alertname"]
            for a in receiver.received()
            if a["labels"].get("feature") == "alcohol" and a["status"] == "firing"
        }
        return {"DriftgaugeFeatureDriftWarning", "DriftgaugeFeatureDriftCritical"} <= names

    wait_for(warning_and_critical, timeout=60, what="alcohol drift alerts at the webhook")
    time.sleep(2)  # let anything else that fired reach the webhook too
    received = receiver.received()
    drift = _drift_alerts(received)
    assert {a["labels"].get("feature") for a in drift} == {"alcohol"}, _describe(received)
    assert {a["labels"].get("feature", "alcohol") for a in received} == {"alcohol"}, _describe(
        received
    )
    critical = next(
        a for a in drift if a["labels"]["alertname"] == "DriftgaugeFeatureDriftCritical"
    )
    assert critical["labels"]["severity"] == "critical"
    assert "window" not in critical["labels"]  # the alert is about the field, over all windows
    assert critical["labels"]["model"] == "wine"
    assert critical["annotations"]["runbook_url"].endswith("#driftgaugefeaturedriftcritical")
    assert traffic.failed == 0


def _rule_health(prom: Prometheus) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{prom.url}/api/v1/rules", timeout=5) as response:
        groups = json.loads(response.read())["data"]["groups"]
    return [rule for group in groups for rule in group["rules"]]
