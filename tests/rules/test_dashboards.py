"""The generated dashboards' queries, evaluated by Prometheus' engine (``promtool test rules``)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from driftgauge.config import config_from_mapping
from driftgauge.exposition.live import DROP_REASONS
from driftgauge.rules.alerts import models_of, render_rules
from driftgauge.rules.dashboards import FIELD_ROWS_MAX, render_dashboard
from driftgauge.rules.promql import promql_string
from driftgauge.rules.writing import dump_yaml
from tests.helpers import base_config
from tests.rules.support import promtool_test
from tests.rules.support import series as _series
from tests.system.grafana_support import regex_escape

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


def _wide(tmp_path: Path, count: int, model: str = "wine", every: int = 50) -> dict[str, Any]:
    """A config of ``count`` fields, a tenth categorical, named as a wide model's are, a few
    oddly, with thresholds of their own for one field in ``every`` (0: none)."""
    names = [f"f{i:04d}" for i in range(count)]
    names[1:5] = ["sepal length (cm)", "od280/od315_of_diluted_wines", 'it\'s "q"', "naïve"]
    features = [
        {"name": name, "type": "categorical" if i % 10 == 9 else "numeric"}
        for i, name in enumerate(names)
    ]
    stricter = {"psi": {"warning": 0.05, "critical": 0.3}, "for": "30m"}
    alerting = {"features": dict.fromkeys(names[::every] if every else [], stricter)}
    return base_config(tmp_path, model=model, features=features, alerting=alerting)


def _board(raw: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    (rules,) = models_of(config_from_mapping(raw, base=tmp_path))
    return render_dashboard(rules.model, rules.fields, rules.alerting)


def test_a_wide_models_dashboard_does_not_grow_with_its_fields(tmp_path: Path) -> None:
    """2,000 fields give a dashboard of the size 200 give, about the shipped one's (a row of
    about 50 kB for each field made a 2,000-field model's 95 MB, which Grafana could not load);
    the fields with thresholds of their own add rows up to FIELD_ROWS_MAX, not past it."""

    def size(count: int, every: int) -> int:
        return len(json.dumps(_board(_wide(tmp_path, count, every=every), tmp_path), indent=2))

    plain = {count: size(count, 0) for count in (200, 2_000)}
    assert plain[2_000] - plain[200] < 1_000, plain
    assert plain[2_000] < 200_000, plain
    # One field in 50 with thresholds of its own: 40 and 80 of them, FIELD_ROWS_MAX rows each.
    capped = {count: size(count, 50) for count in (2_000, 4_000)}
    assert capped[4_000] - capped[2_000] < 1_000, capped
    assert capped[4_000] < plain[2_000] + FIELD_ROWS_MAX * 60_000, capped


def test_a_wide_models_fields_share_a_row_per_type_repeated_over_its_variable(
    tmp_path: Path,
) -> None:
    """Past FIELD_ROWS_MAX fields, a numeric and a categorical row repeat over variables listing
    the model's fields of that type (from baseline gauges, there before any traffic), matched
    through Grafana's regex format; the model stays a literal, panels are coloured at the
    model's thresholds, and the PSI of every field is its top few."""
    model = "wine \"red\" 'rosé' \\ /v2 (a|b) $x"
    board = _board(_wide(tmp_path, FIELD_ROWS_MAX + 1, model=model), tmp_path)
    literal = promql_string(model)
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert list(variables) == ["datasource", "window", "feature", "categorical"]
    assert variables["feature"]["query"]["query"] == (
        f"label_values(driftgauge_baseline_mean{{model={literal}}}, feature)"
    )
    assert variables["categorical"]["query"]["query"] == (
        f'label_values(driftgauge_baseline_bin_ratio{{model={literal}, bin="__unseen__"}}, feature)'
    )
    for name in ("feature", "categorical"):
        assert variables[name]["multi"] and not variables[name]["includeAll"]
        assert variables[name]["definition"] == variables[name]["query"]["query"]
    repeated = [p for p in board["panels"] if p.get("repeat")]
    assert [(r["repeat"], r["title"]) for r in repeated] == [
        ("feature", "$feature (numeric)"),
        ("categorical", "$categorical (categorical)"),
    ]
    assert not any(p.get("collapsed") for p in repeated)
    start, middle = (board["panels"].index(row) for row in repeated)
    numeric = board["panels"][start + 1 : middle]
    categorical = board["panels"][middle + 1 :]
    categorical = categorical[: next(i for i, p in enumerate(categorical) if p["type"] == "row")]
    for panels, variable in ((numeric, "feature"), (categorical, "categorical")):
        exprs = [t["expr"] for p in panels for t in p["targets"]]
        assert exprs and all(f"feature=~`${{{variable}:regex}}`" in e for e in exprs), variable
        assert all(f"model={literal}" in e for e in exprs)
    numeric_text, categorical_text = json.dumps(numeric), json.dumps(categorical)
    assert "ks_statistic" in numeric_text and "ks_statistic" not in categorical_text
    assert "chi2_pvalue" in categorical_text and "chi2_pvalue" not in numeric_text
    assert "feature_quantile" in numeric_text and "$feature" not in categorical_text
    (psi,) = [p for p in numeric if p["title"] == "PSI"]
    steps = psi["fieldConfig"]["defaults"]["thresholds"]["steps"][1:]
    assert [s["value"] for s in steps] == [0.02, 0.25]
    (every,) = [p for p in board["panels"] if "most drifting" in p["title"]]
    assert every["targets"][0]["expr"].startswith(f"topk({FIELD_ROWS_MAX}, max by (feature, role)")
    panels = [p for top in board["panels"] for p in [top, *top.get("panels", [])]]
    assert len({p["id"] for p in panels}) == len(panels)
    assert all(p["gridPos"]["x"] + p["gridPos"]["w"] <= 24 for p in panels)


def test_a_small_models_fields_keep_a_row_each(tmp_path: Path) -> None:
    """Up to FIELD_ROWS_MAX fields, each has its own collapsed row and there is no field variable."""
    board = _board(_wide(tmp_path, FIELD_ROWS_MAX - 1), tmp_path)
    assert [v["name"] for v in board["templating"]["list"]] == ["datasource", "window"]
    rows = [p for p in board["panels"] if p["type"] == "row" and p.get("collapsed")]
    assert len(rows) == FIELD_ROWS_MAX + 1  # the features, the prediction and the service row
    assert not any(p.get("repeat") for p in board["panels"])


def test_a_name_no_variable_can_select_keeps_a_row_of_its_own(tmp_path: Path) -> None:
    """A field named with a backtick (which would end the raw string around ${feature:regex})
    is left out of the variables' values and keeps its own row, written as a literal."""
    raw = _wide(tmp_path, 40)
    odd = "back`tick"
    raw["features"][7]["name"] = odd
    board = _board(raw, tmp_path)
    for variable in board["templating"]["list"][2:]:
        pattern = re.compile(variable["regex"].strip("/"))
        assert pattern.search("f0001") and pattern.search('a"b\\c /x') and not pattern.search(odd)
    (row,) = [p for p in board["panels"] if p.get("collapsed") and p["title"].startswith(odd)]
    exprs = [t["expr"] for p in row["panels"] for t in p["targets"]]
    assert exprs and all(f"feature={promql_string(odd)}" in e for e in exprs)


def test_a_wide_models_fields_with_thresholds_of_their_own_keep_rows_coloured_at_them(
    tmp_path: Path,
) -> None:
    """Shared rows are coloured at the model's thresholds, so the fields whose PSI, KS or
    significance thresholds differ keep rows of their own, coloured at theirs, and the
    variables leave them out; a field whose override changes only ``for:`` stays shared.
    Past FIELD_ROWS_MAX such fields, the rest share the rows (each row is about 50 kB)."""
    raw = _wide(tmp_path, 40, every=0)
    odd, category = 'alc "ohol" /°C [%] {1,2}.*+?^$ (a|b)', raw["features"][9]["name"]
    raw["features"][3]["name"] = odd
    raw["alerting"] = {
        "features": {
            odd: {"psi": {"warning": 0.05, "critical": 0.3}},
            category: {"ks": {"statistic": 0.2}, "psi": {"warning": 0.04}},
            "f0005": {"for": "30m"},
        }
    }
    board = _board(raw, tmp_path)
    rows = {p["title"]: p["panels"] for p in board["panels"] if p.get("collapsed")}
    psi_steps = {
        title.rsplit(" (", 1)[0]: [
            s["value"]
            for p in panels
            if p["title"] == "PSI"
            for s in p["fieldConfig"]["defaults"]["thresholds"]["steps"][1:]
        ]
        for title, panels in rows.items()
    }
    assert psi_steps[odd] == [0.05, 0.3]
    assert psi_steps[category] == [0.04, 0.25]
    assert "f0005" not in psi_steps
    kinds = {"feature": ("numeric", odd), "categorical": ("categorical", category)}
    for variable in board["templating"]["list"][2:]:
        kind, apart = kinds[variable["name"]]
        pattern = re.compile(variable["regex"][1:-1])  # JavaScript's and Python's alike here
        assert not pattern.search(apart), variable["name"]
        names = [f["name"] for f in raw["features"] if f["type"] == kind and f["name"] != apart]
        assert all(pattern.search(name) for name in [*names, f"{apart}x", f"x{apart}"])
    raw["alerting"] = {
        "features": {f["name"]: {"psi": {"critical": 0.3}} for f in raw["features"][:25]}
    }
    board = _board(raw, tmp_path)
    own = [p["title"] for p in board["panels"] if p.get("collapsed")]
    assert len(own) == FIELD_ROWS_MAX + 1, own  # and the service row
    assert [t.rsplit(" (", 1)[0] for t in own[:-1]] == [f["name"] for f in raw["features"][:20]]


def test_a_wide_models_shared_rows_select_odd_names(tmp_path: Path) -> None:
    """Each model's variables list its own fields of each type, odd names included, and a
    shared row's query with a value in Grafana's regex format selects that field alone."""
    first, second = "wine \"red\" 'rosé' \\ /v2 (a|b)", "iris \"v2\" 'ü' \\ /x (cm)"
    odd_numeric, odd_categorical = "alc \"ohol\" 'x' \\ /°C [%] {1,2}.*+?^$", "région (x|y)"
    raw = base_config(tmp_path)
    model = {k: raw.pop(k) for k in ("model", "protocol", "baseline", "features", "predictions")}
    model["features"] = [
        {"name": odd_numeric, "type": "numeric"},
        {"name": "alc", "type": "numeric"},
        {"name": odd_categorical, "type": "categorical"},
    ]
    raw["models"] = [
        {**model, "model": first},
        {**model, "model": second, "baseline": str(tmp_path / "i.dgb")},
    ]
    models = models_of(config_from_mapping(raw, base=tmp_path))
    series = []
    for index, name in enumerate((first, second)):
        numeric = [odd_numeric, "alc"][index:]  # the second model's sidecar lacks one
        for field in numeric:
            labels = {"model": name, "feature": field, "role": "input"}
            series.append(_series("driftgauge_baseline_mean", labels, "1x5"))
            psi = "0.5x5" if field == "alc" else f"0.{index + 1}x5"
            series.append(_series("driftgauge_psi", labels | {"window": "5m"}, psi))
        for field, role in ((odd_categorical, "input"), ("class", "prediction")):
            labels = {"model": name, "feature": field, "role": role}
            for bin_ in ("north", "__unseen__"):
                series.append(
                    _series("driftgauge_baseline_bin_ratio", labels | {"bin": bin_}, "0x5")
                )
    tests = []
    for index, rules in enumerate(models):
        board = render_dashboard(rules.model, rules.fields, rules.alerting, rows_up_to=0)
        variables = {v["name"]: v for v in board["templating"]["list"]}
        offered = {
            "feature": [odd_numeric, "alc"][index:],
            "categorical": [odd_categorical, "class"],
        }
        for variable, fields in offered.items():
            found = re.fullmatch(
                r"label_values\((.*), feature\)", variables[variable]["definition"]
            )
            assert found
            tests.append(
                {
                    "expr": f"count by (feature) ({found.group(1)})",
                    "eval_time": "2m",
                    "exp_samples": [
                        {"labels": _series("", {"feature": f}, "")["series"], "value": 1}
                        for f in sorted(fields)
                    ],
                }
            )
        (psi,) = [p for p in board["panels"] if p.get("title") == "PSI of $feature"]
        expr = psi["targets"][0]["expr"].replace("${feature:regex}", regex_escape(odd_numeric))
        labels = {"model": rules.model, "feature": odd_numeric, "role": "input", "window": "5m"}
        tests.append(
            {
                "expr": expr.replace("$window", "5m"),
                "eval_time": "2m",
                "exp_samples": [
                    {"labels": _series("driftgauge_psi", labels, "")["series"], "value": 0.1}
                ]
                if index == 0
                else [],
            }
        )
    promtool_test(
        tmp_path,
        [],
        [{"interval": "1m", "input_series": series, "promql_expr_test": tests}],
    )
