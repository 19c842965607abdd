"""Generated rules end to end: model server → driftgauge proxy → Prometheus → Alertmanager → webhook.

The sidecar's config has ``windows: [1m]`` and an ``alerting:`` section
(``for: 2s`` so the test is quick, an extra ``team`` label, and an override
for ``ash``). ``driftgauge rules`` renders the rules from that config, as a
user would, and the Debian Prometheus loads the file unchanged. Drifting
``alcohol`` must raise its generated warning and critical alerts, and no
alert may name another field.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e_support import (
    BackgroundLoop,
    Traffic,
    WebhookReceiver,
    driftgauge_command,
    kserve_model_app,
    kserve_proxy_source,
    sidecar,
    wait_ready,
    write_baseline,
    write_config,
)
from tests.helpers import base_config, free_port
from tests.servers import alertmanager, prometheus, wait_for

pytestmark = pytest.mark.integration

FIELDS = ("alcohol", "ash", "region", "class")


def _describe(alerts: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return sorted(
        {(a["labels"]["alertname"], a["labels"].get("feature", "-"), a["status"]) for a in alerts}
    )


@pytest.mark.timeout(120)
def test_generated_rules_alert_on_the_drifted_feature_only(tmp_path: Path) -> None:
    """With windows [1m], drifting alcohol raises its generated warning and critical alerts, with the configured labels, and nothing names another field."""
    model_port, proxy_port = free_port(), free_port()
    raw = base_config(
        tmp_path,
        source=kserve_proxy_source(proxy_port, model_port),
        windows=["1m"],
        window_slices=5,
        min_observations=100,
        alerting={
            "for": "2s",
            "labels": {"team": "ml-platform"},
            "features": {"ash": {"psi": {"warning": 0.2, "critical": 0.5}, "page": False}},
        },
    )
    config = write_config(tmp_path / "config.yaml", raw)
    rendered = subprocess.run(
        [*driftgauge_command(), "rules", "-c", str(config), "-o", str(tmp_path / "rules")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert rendered.returncode == 0, rendered.stderr
    rules = tmp_path / "rules" / "driftgauge.rules.yml"
    write_baseline(config, 20_000)
    receiver = WebhookReceiver()
    traffic = Traffic(f"http://127.0.0.1:{proxy_port}/v1/models/wine:predict")
    with BackgroundLoop() as loop:
        loop.serve(kserve_model_app(), model_port)
        webhook = loop.serve(receiver.app(), free_port()) + "/alerts"
        with (
            sidecar(config, tmp_path / "driftgauge.log", ready=False) as running,
            alertmanager(tmp_path / "alertmanager", webhook) as am,
            prometheus(tmp_path / "prometheus", [running.target], [rules], am.url) as prom,
        ):
            wait_ready([running])
            loop.start(traffic.run())
            try:

                def every_gauge_present() -> bool:
                    found = {s["metric"]["feature"] for s in prom.query("driftgauge_psi")}
                    return found == set(FIELDS)

                wait_for(every_gauge_present, timeout=30, what="PSI of every field")
                time.sleep(4)  # several evaluations, longer than for: and group_wait
                assert receiver.received() == [], _describe(receiver.received())

                traffic.alcohol_shift = 1.6

                def warning_and_critical() -> bool:
                    names = {
                        a["labels"]["alertname"]
                        for a in receiver.received()
                        if a["labels"].get("feature") == "alcohol" and a["status"] == "firing"
                    }
                    return {
                        "DriftgaugeFeatureDriftWarning",
                        "DriftgaugeFeatureDriftCritical",
                    } <= names

                wait_for(warning_and_critical, timeout=50, what="generated alcohol drift alerts")
                time.sleep(2)  # let anything else that fired reach the webhook too
            finally:
                traffic.stop()
                loop.finish()
    received = receiver.received()
    assert {a["labels"].get("feature") for a in received} == {"alcohol"}, _describe(received)
    critical = next(
        a for a in received if a["labels"]["alertname"] == "DriftgaugeFeatureDriftCritical"
    )
    assert critical["labels"]["severity"] == "critical"
    assert critical["labels"]["team"] == "ml-platform"
    assert critical["labels"]["model"] == "wine"
    assert "window" not in critical["labels"]
    assert critical["annotations"]["runbook_url"].endswith("#driftgaugefeaturedriftcritical")
    assert (
        "above 0.25 and its noise floor times the 99.99% χ² gate"
        in critical["annotations"]["description"]
    )
    assert traffic.failed == 0
