"""The generated dashboards' queries, evaluated by Prometheus' engine (``promtool test rules``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from driftgauge.config import config_from_mapping
from driftgauge.rules.alerts import models_of
from driftgauge.rules.dashboards import render_dashboard
from tests.helpers import base_config
from tests.rules.support import promtool_test
from tests.rules.support import series as _series

SIDECAR = {"job": "driftgauge", "instance": "10.0.0.7:10117"}


def _service_targets(board: dict[str, Any]) -> dict[str, str]:
    """legendFormat -> expr of the service row's targets, Grafana's interval filled in."""
    (row,) = [p for p in board["panels"] if p["title"].startswith("Service")]
    return {
        t["legendFormat"]: t["expr"].replace("$__rate_interval", "5m")
        for panel in row["panels"]
        for t in panel["targets"]
    }


def test_every_models_service_row_shows_its_sidecars_requests(tmp_path: Path) -> None:
    """The second model's dashboard reads the requests its sidecar exports under the first model's label."""
    raw = base_config(tmp_path)
    model = {k: raw.pop(k) for k in ("model", "protocol", "baseline", "features", "predictions")}
    raw["models"] = [model, {**model, "model": 'iris "v2"', "baseline": str(tmp_path / "i.dgb")}]
    iris = models_of(config_from_mapping(raw, base=tmp_path))[1]
    targets = _service_targets(render_dashboard(iris.model, iris.fields, iris.alerting))
    other = {"job": "driftgauge", "instance": "10.0.0.8:10117"}  # a sidecar of wine alone
    series = [
        _series("driftgauge_baseline_info", SIDECAR | {"model": "wine"}, "1x20"),
        _series("driftgauge_baseline_info", SIDECAR | {"model": 'iris "v2"'}, "1x20"),
        _series("driftgauge_requests_total", SIDECAR | {"model": "wine", "code": "200"}, "0+60x20"),
        _series("driftgauge_baseline_info", other | {"model": "wine"}, "1x20"),
        _series("driftgauge_requests_total", other | {"model": "wine", "code": "200"}, "0+600x20"),
        _series(
            "driftgauge_upstream_errors_total",
            SIDECAR | {"model": "wine", "reason": "timeout"},
            "0+6x20",
        ),
    ]
    for le, count in (("0.001", 30), ("0.01", 60), ("+Inf", 60)):
        for metric in (
            "driftgauge_upstream_latency_seconds_bucket",
            "driftgauge_overhead_seconds_bucket",
        ):
            series.append(_series(metric, SIDECAR | {"model": "wine", "le": le}, f"0+{count}x20"))
    tests = [
        {
            "expr": targets["{{code}}"],
            "eval_time": "10m",
            "exp_samples": [{"labels": '{code="200"}', "value": 1}],
        },
        {
            "expr": targets["upstream: {{reason}}"],
            "eval_time": "10m",
            "exp_samples": [{"labels": '{reason="timeout"}', "value": 0.1}],
        },
        {
            "expr": targets["upstream p50"],
            "eval_time": "10m",
            "exp_samples": [{"labels": "{}", "value": 0.001}],
        },
        {
            "expr": targets["added p99"],
            "eval_time": "10m",
            "exp_samples": [{"labels": "{}", "value": 0.009820000000000002}],
        },
    ]
    (tmp_path / "empty.rules.yml").write_text("groups: []\n", encoding="utf-8")
    promtool_test(
        tmp_path,
        ["empty.rules.yml"],
        [{"interval": "1m", "input_series": series, "promql_expr_test": tests}],
    )
