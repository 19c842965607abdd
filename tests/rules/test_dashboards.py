"""The generated dashboards' queries, evaluated by Prometheus' engine (``promtool test rules``)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from driftgauge.config import config_from_mapping
from driftgauge.exposition.live import DROP_REASONS
from driftgauge.rules.alerts import models_of, render_rules
from driftgauge.rules.dashboards import render_dashboard
from driftgauge.rules.writing import dump_yaml
from tests.helpers import base_config
from tests.rules.support import promtool_test
from tests.rules.support import series as _series

SIDECAR = {"job": "driftgauge", "instance": "10.0.0.7:10117"}
OUTCOMES = Path(__file__).resolve().parents[2] / "src" / "driftgauge" / "monitor" / "outcomes.py"


def _service_targets(board: dict[str, Any]) -> dict[str, str]:
    """legendFormat -> expr of the service row's targets, Grafana's interval filled in."""
    (row,) = [p for p in board["panels"] if p["title"].startswith("Service")]
    return {
        t["legendFormat"]: t["expr"].replace("$__rate_interval", "5m")
        for panel in row["panels"]
        for t in panel["targets"]
    }


def test_every_models_service_row_shows_its_sidecars_requests(tmp_path: Path) -> None:
    """The second model's dashboard reads the requests its sidecar exports under no model label,
    not another sidecar's."""
    raw = base_config(tmp_path)
    model = {k: raw.pop(k) for k in ("model", "protocol", "baseline", "features", "predictions")}
    raw["models"] = [model, {**model, "model": 'iris "v2"', "baseline": str(tmp_path / "i.dgb")}]
    iris = models_of(config_from_mapping(raw, base=tmp_path))[1]
    targets = _service_targets(render_dashboard(iris.model, iris.fields, iris.alerting))
    other = {"job": "driftgauge", "instance": "10.0.0.8:10117"}  # a sidecar of wine alone
    series = [
        _series("driftgauge_baseline_info", SIDECAR | {"model": "wine"}, "1x20"),
        _series("driftgauge_baseline_info", SIDECAR | {"model": 'iris "v2"'}, "1x20"),
        _series("driftgauge_requests_total", SIDECAR | {"code": "200"}, "0+60x20"),
        _series("driftgauge_baseline_info", other | {"model": "wine"}, "1x20"),
        _series("driftgauge_requests_total", other | {"code": "200"}, "0+600x20"),
        _series("driftgauge_upstream_errors_total", SIDECAR | {"reason": "timeout"}, "0+6x20"),
    ]
    for le, count in (("0.001", 30), ("0.01", 60), ("+Inf", 60)):
        for metric in (
            "driftgauge_upstream_latency_seconds_bucket",
            "driftgauge_overhead_seconds_bucket",
        ):
            series.append(_series(metric, SIDECAR | {"le": le}, f"0+{count}x20"))
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


def test_every_models_service_row_shows_its_sidecars_drops(tmp_path: Path) -> None:
    """The second model's dashboard reads its own expired predictions, not the first model's, and
    what its sidecar's source dropped before routing (no model label), not another sidecar's."""
    raw = base_config(tmp_path)
    model = {k: raw.pop(k) for k in ("model", "protocol", "baseline", "features", "predictions")}
    raw["models"] = [model, {**model, "model": 'iris "v2"', "baseline": str(tmp_path / "i.dgb")}]
    iris = models_of(config_from_mapping(raw, base=tmp_path))[1]
    targets = _service_targets(render_dashboard(iris.model, iris.fields, iris.alerting))
    other = {"job": "driftgauge", "instance": "10.0.0.8:10117"}  # a sidecar of wine alone
    series = [
        _series("driftgauge_baseline_info", SIDECAR | {"model": "wine"}, "1x20"),
        _series("driftgauge_baseline_info", SIDECAR | {"model": 'iris "v2"'}, "1x20"),
        _series("driftgauge_baseline_info", other | {"model": "wine"}, "1x20"),
    ]
    for name, per_minute in (("wine", 60), ('iris "v2"', 120)):
        labels = SIDECAR | {"model": name, "reason": "feedback_expired"}
        series.append(_series("driftgauge_dropped_total", labels, f"0+{per_minute}x20"))
    for labels, per_minute in (
        (SIDECAR | {"reason": "queue_full"}, 6),
        (other | {"reason": "queue_full"}, 600),
    ):
        series.append(_series("driftgauge_source_dropped_total", labels, f"0+{per_minute}x20"))
    tests = [
        {
            "expr": targets["dropped: {{reason}}"],
            "eval_time": "10m",
            "exp_samples": [{"labels": '{reason="feedback_expired"}', "value": 2}],
        },
        {
            "expr": targets["source dropped: {{reason}}"],
            "eval_time": "10m",
            "exp_samples": [{"labels": '{reason="queue_full"}', "value": 0.1}],
        },
    ]
    promtool_test(
        tmp_path,
        [],
        [{"interval": "1m", "input_series": series, "promql_expr_test": tests}],
    )
    # The reasons a model counts itself (the rest are its sidecar's source's): its outcomes'.
    counted = re.findall(r'on_drop\(\s*"(\w+)"', OUTCOMES.read_text(encoding="utf-8"))
    assert set(DROP_REASONS) == set(counted)


def test_every_models_service_row_shows_its_own_and_its_sidecars_parse_errors(
    tmp_path: Path,
) -> None:
    """The second model's dashboard reads its own unreadable bodies (not the first model's) and
    what its sidecar's source could not read or route (no model label), not another sidecar's."""
    raw = base_config(tmp_path)
    model = {k: raw.pop(k) for k in ("model", "protocol", "baseline", "features", "predictions")}
    raw["models"] = [model, {**model, "model": 'iris "v2"', "baseline": str(tmp_path / "i.dgb")}]
    iris = models_of(config_from_mapping(raw, base=tmp_path))[1]
    targets = _service_targets(render_dashboard(iris.model, iris.fields, iris.alerting))
    other = {"job": "driftgauge", "instance": "10.0.0.8:10117"}  # a sidecar of wine alone
    series = [
        _series("driftgauge_baseline_info", SIDECAR | {"model": "wine"}, "1x20"),
        _series("driftgauge_baseline_info", SIDECAR | {"model": 'iris "v2"'}, "1x20"),
        _series("driftgauge_baseline_info", other | {"model": "wine"}, "1x20"),
    ]
    for labels, per_minute in (
        (SIDECAR | {"model": "wine", "reason": "invalid_json"}, 60),
        (SIDECAR | {"model": 'iris "v2"', "reason": "invalid_json"}, 6),
    ):
        series.append(_series("driftgauge_parse_errors_total", labels, f"0+{per_minute}x20"))
    for labels, per_minute in (
        (SIDECAR | {"reason": "unknown_model"}, 12),
        (other | {"reason": "unknown_model"}, 600),
    ):
        series.append(_series("driftgauge_source_parse_errors_total", labels, f"0+{per_minute}x20"))
    tests = [
        {
            "expr": targets["parse error: {{reason}}"],
            "eval_time": "10m",
            "exp_samples": [{"labels": '{reason="invalid_json"}', "value": 0.1}],
        },
        {
            "expr": targets["source parse error: {{reason}}"],
            "eval_time": "10m",
            "exp_samples": [{"labels": '{reason="unknown_model"}', "value": 0.2}],
        },
    ]
    promtool_test(
        tmp_path,
        [],
        [{"interval": "1m", "input_series": series, "promql_expr_test": tests}],
    )


def test_every_models_alert_annotations_show_its_sidecars_alerts(tmp_path: Path) -> None:
    """On the generated rules' alerts, each model's dashboard marks its sidecar's service alerts
    (raised under no model label) and DriftgaugeSidecarDown, and only its own model's
    other alerts; odd names both."""
    first, second = "wine \"red\" 'rosé' \\ /v2 (a|b)", "iris \"v2\" 'ü' \\ /x (cm)"
    raw = base_config(tmp_path)
    model = {k: raw.pop(k) for k in ("model", "protocol", "baseline", "features", "predictions")}
    raw["models"] = [
        {**model, "model": first},
        {**model, "model": second, "baseline": str(tmp_path / "i.dgb")},
    ]
    models = models_of(config_from_mapping(raw, base=tmp_path))
    (tmp_path / "both.rules.yml").write_text(dump_yaml(render_rules(models)), encoding="utf-8")
    down = {"job": "driftgauge", "instance": "10.0.0.9:10117"}  # another sidecar of the config
    series = [
        _series("driftgauge_baseline_info", SIDECAR | {"model": first}, "1x30"),
        _series("driftgauge_baseline_info", SIDECAR | {"model": second}, "1x30"),
        _series("driftgauge_requests_total", SIDECAR | {"code": "200"}, "0+60x30"),
        _series("driftgauge_requests_total", SIDECAR | {"code": "502"}, "0+60x30"),
        _series("driftgauge_baseline_info", down | {"model": first}, "1x3 stale"),
        _series("driftgauge_baseline_info", down | {"model": second}, "1x3 stale"),
        _series("up", down, "1x3 0x27"),
    ]
    field = SIDECAR | {"model": first, "feature": "alcohol", "role": "input"}
    series += [
        _series("driftgauge_missing_total", field, "0+10x30"),
        _series("driftgauge_observations_total", field, "0+90x30"),
    ]
    service = {
        ("DriftgaugeUpstreamErrors", SIDECAR["instance"]),
        ("DriftgaugeSidecarDown", down["instance"]),
    }
    expected = {
        first: service | {("DriftgaugeMissingValuesHigh", SIDECAR["instance"])},
        second: service,
    }
    tests = []
    for rules in models:
        board = render_dashboard(rules.model, rules.fields, rules.alerting)
        (annotation,) = [a for a in board["annotations"]["list"] if "expr" in a]
        tests.append(
            {
                "expr": f"count by (alertname, instance) ({annotation['expr']})",
                "eval_time": "20m",
                "exp_samples": [
                    {
                        "labels": _series("", {"alertname": n, "instance": i}, "")["series"],
                        "value": 1,
                    }
                    for n, i in sorted(expected[rules.model])
                ],
            }
        )
    promtool_test(
        tmp_path,
        ["both.rules.yml"],
        [{"interval": "1m", "input_series": series, "promql_expr_test": tests}],
    )


def test_fields_panels_share_what_holds_no_name_and_keep_their_own_thresholds(
    tmp_path: Path,
) -> None:
    """Each field's panels are the template's filled in with its name and coloured at its own
    thresholds, sharing the parts that hold neither with the other fields' panels (a
    2,000-field dashboard took 17 s copying the template for each), so a field's thresholds
    never reach the next field's panels."""
    raw = base_config(
        tmp_path,
        alerting={
            "features": {
                "alcohol": {
                    "psi": {"warning": 0.3, "critical": 0.4},
                    "significance": {"warning": 1e-6, "critical": 1e-7},
                }
            }
        },
    )
    raw["features"].insert(2, {"name": "proline", "type": "numeric"})
    rules = models_of(config_from_mapping(raw, base=tmp_path))[0]
    board = render_dashboard(rules.model, rules.fields, rules.alerting)
    rows = {
        row["title"].split(" (")[0]: row["panels"]
        for row in board["panels"]
        if row["type"] == "row" and row.get("collapsed")
    }

    def colours(name: str) -> tuple[list[float], set[str]]:
        psi = [p for p in rows[name] if p["title"] == "PSI"]
        gate = {t.get("legendFormat", "") for p in rows[name] for t in p["targets"]}
        steps = psi[0]["fieldConfig"]["defaults"]["thresholds"]["steps"][1:]
        return [s["value"] for s in steps], {g for g in gate if g.startswith("significance")}

    assert colours("alcohol") == ([0.3, 0.4], {"significance gate (z 4.75)"})
    assert colours("ash") == colours("proline") == ([0.02, 0.25], {"significance gate (z 3.09)"})
    ash, proline = rows["ash"], rows["proline"]
    assert [p["title"].replace("ash", "proline") for p in ash] == [p["title"] for p in proline]
    shared = [a["fieldConfig"] is b["fieldConfig"] for a, b in zip(ash, proline, strict=True)]
    assert sum(shared) >= len(shared) / 2, shared
    assert json.dumps(ash).count('"ash"') == json.dumps(proline).count('"proline"')
