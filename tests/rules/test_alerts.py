"""`driftgauge rules`: the alerting config, the rendered rules (promtool), manifest and dashboard."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from driftgauge.config import Config, FieldSpec, config_from_mapping
from driftgauge.config.alerting import AlertingConfig, parse_alerting
from driftgauge.config.validation import Errors, parse_duration
from driftgauge.rules.alerts import ModelRules, models_of, render_rules
from driftgauge.rules.dashboards import render_dashboard
from driftgauge.rules.promql import go_template_text, promql_string
from driftgauge.rules.writing import dump_yaml, write_assets
from tests.helpers import base_config
from tests.rules.support import expand, promtool, promtool_test

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_RULES = ROOT / "alert_rules" / "driftgauge.rules.yml"
RUNBOOK = ROOT / "docs" / "runbook.md"
CLI = [sys.executable, "-m", "driftgauge.cli"]
WINDOW_SETS = [["1m"], ["5m", "1h"], ["15m", "6h", "1d"], ["90s", "1h30m", "1w"]]
WEIRD = ('a"b\\c', "sepal length (cm)", "od280/od315_of_diluted_wines", "naïve", "t{{ $value }}")


def _alerting(raw: Any, windows: list[str], names: list[str]) -> AlertingConfig:
    errors = Errors()
    alerting = parse_alerting(raw, [parse_duration(w) for w in windows], names, errors)
    assert errors.items == []
    return alerting


def _config(tmp_path: Path, **overrides: Any) -> Config:
    return config_from_mapping(base_config(tmp_path, **overrides), base=tmp_path)


# The fields of the promtool cases: (name, type, role), a weird name for each kind of trouble.
FIELDS = (
    ("alcohol", "numeric", "input"),
    ("ash", "numeric", "input"),
    ("hue", "numeric", "input"),
    ('a"b\\c', "numeric", "input"),
    ("sepal length (cm)", "numeric", "input"),
    ("od280/od315_of_diluted_wines", "numeric", "input"),
    ("naïve", "categorical", "input"),
    ("t{{ $value }}", "numeric", "input"),
    ("proline", "numeric", "input"),
    ("magnesium", "numeric", "input"),
    ("flavanoids", "numeric", "input"),
    ("class", "categorical", "prediction"),
)
ALERTING = {
    "severity": {"warning": "ticket", "critical": "page"},
    "labels": {"team": "ml-platform"},
    "features": {
        'a"b\\c': {"psi": {"warning": 0.5, "critical": 0.8}},  # 0.31 stays below
        "sepal length (cm)": {"psi": {"warning": 0.3, "critical": 0.4}, "for": "20m"},
        "naïve": {"page": False},
        "t{{ $value }}": {"ks": {"statistic": 0.3}},
        "proline": {"psi": {"warning": 0}},  # no effect-size floor: 0.015 fires
        "flavanoids": {
            "significance": {"warning": 1e-6, "critical": 1e-7}
        },  # z 4.75: 4x stays below
    },
}


def _model(windows: list[str], model: str = "wine") -> ModelRules:
    fields = tuple(FieldSpec(name, kind, role) for name, kind, role in FIELDS)  # type: ignore[arg-type]
    alerting = _alerting(ALERTING, windows, [f.name for f in fields])
    return ModelRules(model, fields, alerting, min_observations=100)


# -- the alerting config ----------------------------------------------------------------


def test_alerting_defaults_are_the_shipped_rules_values(tmp_path: Path) -> None:
    """Without an alerting section the thresholds are the shipped rules': PSI 0.02/0.25, gates 99.9%/99.99%, KS 0.1/0.001."""
    shipped = SHIPPED_RULES.read_text(encoding="utf-8")
    defaults = _config(tmp_path).alerting.defaults
    assert (defaults.psi_warning, defaults.psi_critical) == (0.02, 0.25)
    assert (defaults.significance_warning, defaults.significance_critical) == (0.001, 0.0001)
    assert (defaults.z("warning"), defaults.z("critical")) == (3.09, 3.72)
    assert (defaults.noise_floor_warning, defaults.noise_floor_critical) == (0.0, 0.0)
    assert (defaults.ks_statistic, defaults.ks_pvalue) == (0.1, 0.001)
    for text in ("> 0.02\n", "> 0.25\n", 'psi_chi2_gate{z="3.09"}', 'psi_chi2_gate{z="3.72"}'):
        assert text in shipped
    assert "< 0.001" in shipped
    assert defaults.page is True
    assert _config(tmp_path).alerting.severity_critical == "critical"


def _unmodelled(expr: str) -> str:
    """A generated expression as the shipped file writes it: no model matcher, one space."""
    expr = re.sub(r'\{model="wine"\}', "", expr).replace('model="wine", ', "")
    return " ".join(expr.split())


def test_default_drift_rules_are_the_shipped_ones(tmp_path: Path) -> None:
    """With the defaults, the gates' recording rules and the PSI drift alerts are the shipped PromQL."""
    shipped_groups = yaml.safe_load(SHIPPED_RULES.read_text(encoding="utf-8"))["groups"]
    shipped = {
        (rule.get("alert") or rule["record"], rule.get("labels", {}).get("z")): rule["expr"]
        for group in shipped_groups
        if group["name"] == "driftgauge-drift"
        for rule in group["rules"]
    }
    config = _config(tmp_path, min_observations=100)  # the shipped fleet alert's 100
    (group,) = [
        g
        for g in render_rules(models_of(config))["groups"]
        if g["name"].startswith("driftgauge-drift:")
    ]
    generated = {
        (rule.get("alert") or rule["record"], rule["labels"].get("z")): rule["expr"]
        for rule in group["rules"]
        if rule.get("labels", {}).get("feature") is None
    }
    assert set(generated) == set(shipped)
    for key, expr in generated.items():
        assert _unmodelled(expr) == " ".join(shipped[key].split()), key


def test_generated_rules_record_every_shipped_recording_rule(tmp_path: Path) -> None:
    """Shipped and generated rules define the same recording-rule names (README: load one of
    them); the version excess is the shipped PromQL for the config's model."""
    shipped_groups = yaml.safe_load(SHIPPED_RULES.read_text(encoding="utf-8"))["groups"]
    shipped = {r["record"]: r["expr"] for g in shipped_groups for r in g["rules"] if "record" in r}
    generated = {
        r["record"]: r["expr"]
        for g in render_rules(models_of(_config(tmp_path)))["groups"]
        for r in g["rules"]
        if "record" in r
    }
    assert set(shipped) <= set(generated)
    excess = "driftgauge:psi_version_excess"
    assert _unmodelled(generated[excess]) == " ".join(shipped[excess].split())


@pytest.mark.parametrize(
    ("windows", "expected"),
    [
        (["1m"], 60),
        (["30s"], 60),
        (["5m", "1h"], 300),
        (["15m", "6h", "1d"], 900),
        (["6h"], 900),
        (["1m30s", "1w"], 90),
    ],
)
def test_default_for_is_the_shortest_window_clamped(
    tmp_path: Path, windows: list[str], expected: float
) -> None:
    """for: defaults to the shortest window, clamped to [1m, 15m]."""
    alerting = _config(tmp_path, windows=windows).alerting
    assert (alerting.defaults.for_warning, alerting.defaults.for_critical) == (expected, expected)


def test_overrides_inherit_the_model_settings(tmp_path: Path) -> None:
    """A feature override changes only what it names; the rest comes from the section's defaults."""
    config = _config(
        tmp_path,
        alerting={
            "psi": {"warning": 0.15},
            "for": {"critical": "30m"},
            "features": {"alcohol": {"page": False, "psi": {"critical": 0.5}}},
        },
    )
    alcohol = config.alerting.for_field("alcohol")
    assert (alcohol.psi_warning, alcohol.psi_critical, alcohol.page) == (0.15, 0.5, False)
    assert (alcohol.for_warning, alcohol.for_critical) == (300.0, 1800.0)
    assert config.alerting.for_field("ash") == config.alerting.defaults


@pytest.mark.parametrize(
    ("alerting", "message"),
    [
        ({"psi": {"warning": 0.3}}, "alerting.psi: warning 0.3 is above critical 0.25"),
        ({"psi": {"warning": -0.1}}, "alerting.psi.warning: -0.1 is not a number from 0 to 100"),
        (
            {"significance": {"warning": 0.5}},
            "alerting.significance.warning: 0.5 is not a number from",
        ),
        (
            {"features": {"ash": {"significance": {"warning": 1e-5}}}},
            "alerting.features.ash.significance: warning 1e-05 is below critical 0.0001",
        ),
        ({"treshold": 1}, "alerting.treshold: unknown key"),
        ({"features": {"nope": {}}}, "alerting.features.nope: not a configured feature"),
        (
            {"features": {"ash": {"psi": {"warn": 1}}}},
            "alerting.features.ash.psi.warn: unknown key",
        ),
        ({"for": {"warning": "5 min"}}, "alerting.for.warning: '5 min' is not a duration"),
        ({"ks": {"pvalue": 2}}, "alerting.ks.pvalue: 2 is not a number from"),
        ({"labels": {"severity": "x"}}, "alerting.labels.severity: 'severity' is set by the rules"),
        ({"labels": {"a-b": "x"}}, "alerting.labels.a-b: 'a-b' is not a label name"),
        ({"runbook_url": "ftp://x"}, "alerting.runbook_url: 'ftp://x' is not an http"),
        ({"page": "no"}, "alerting.page: 'no' is not true or false"),
    ],
)
def test_bad_alerting_values_name_the_key_path(
    tmp_path: Path, alerting: dict[str, Any], message: str
) -> None:
    """Every bad alerting value is a ConfigError naming its key path."""
    with pytest.raises(ValueError, match=re.escape(message)):
        _config(tmp_path, alerting=alerting)


# -- escaping -----------------------------------------------------------------------


def test_promql_strings_escape_quotes_backslashes_and_grafana_variables() -> None:
    """Quote and backslash are escaped; $ and [ become hex escapes; UTF-8 stays as it is."""
    assert promql_string('a"b\\c') == '"a\\"b\\\\c"'
    assert promql_string("naïve / x (cm)") == '"naïve / x (cm)"'
    assert promql_string("$x[[y]]") == '"\\x24x\\x5b\\x5by]]"'
    assert go_template_text("t{{ $value }}") == 't{{ "{{" }} $value }}'


def test_weird_label_values_reach_promql_and_yaml_intact(tmp_path: Path) -> None:
    """Each weird name is selected by an escaped matcher, and an override's label loads back as text."""
    document = yaml.safe_load(dump_yaml(render_rules([_model(["5m", "1h"])])))
    rules = [rule for group in document["groups"] for rule in group["rules"]]
    exprs = "\n".join(rule["expr"] for rule in rules)
    for name in ALERTING["features"]:
        assert (
            f"feature={promql_string(name)}" in exprs or f"feature!={promql_string(name)}" in exprs
        )
    labels = {rule["labels"].get("feature") for rule in rules if "alert" in rule}
    assert 'a"b\\c' in labels
    assert 't{{ "{{" }} $value }}' in labels


# -- promtool -----------------------------------------------------------------------


def _check_rules(path: Path) -> None:
    result = subprocess.run(
        [promtool(), "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr
    assert "FAILED" not in result.stdout + result.stderr, result.stdout + result.stderr


@pytest.mark.parametrize("windows", WINDOW_SETS, ids=",".join)
def test_promtool_accepts_the_rules_of_a_config(tmp_path: Path, windows: list[str]) -> None:
    """`promtool check rules` passes (no duplicate-rule lint) on a config's rendered rules."""
    config = _config(
        tmp_path,
        windows=windows,
        alerting={
            "labels": {"team": "ml-platform"},
            "features": {"region": {"page": False}, "alcohol": {"for": "30m"}},
        },
    )
    written = write_assets(config, tmp_path / "out")
    _check_rules(written[0])


def test_promtool_accepts_weird_names_and_several_models(tmp_path: Path) -> None:
    """Weird feature and model names, overrides and two models in one file all pass promtool."""
    models = [_model(["1m"]), _model(["1m"], model='wine/v2 "x" \\ naïve')]
    path = tmp_path / "rules.yml"
    path.write_text(dump_yaml(render_rules(models)), encoding="utf-8")
    _check_rules(path)


def _series(metric: str, labels: dict[str, str]) -> str:
    return metric + "{" + ", ".join(f"{k}={promql_string(v)}" for k, v in labels.items()) + "}"


# Per field: PSI, noise floor and (numeric) KS D and p in every window; `hue` drifts in
# the longest window only.
DRIFTED = {"psi": 0.31, "floor": 0.002, "ks": 0.25, "p": 1e-9}
QUIET = {"psi": 0.003, "floor": 0.002, "ks": 0.02, "p": 0.4}  # 1.5x its noise floor
VALUES = {
    "alcohol": DRIFTED,
    "ash": QUIET,
    'a"b\\c': DRIFTED | {"ks": 0.02, "p": 0.4},
    "sepal length (cm)": DRIFTED | {"psi": 0.35, "ks": 0.02, "p": 0.4},
    "od280/od315_of_diluted_wines": DRIFTED,
    "naïve": DRIFTED | {"psi": 0.5},
    "t{{ $value }}": QUIET | {"ks": 0.25, "p": 1e-9},
    # 7.5x its noise floor, significant, but below the 0.02 effect-size floor ...
    "magnesium": QUIET | {"psi": 0.015},
    # ... which proline's override sets to 0
    "proline": QUIET | {"psi": 0.015},
    # 4x its noise floor: above the default 99.9% gate (3.12x), below flavanoids' z 4.75 (4.58x)
    "flavanoids": QUIET | {"psi": 0.08, "floor": 0.02},
    "class": QUIET,
}
# What fires for each field (alert, rule severity name).
EXPECTED = {
    "alcohol": [
        "DriftgaugeFeatureDriftWarning",
        "DriftgaugeFeatureDriftCritical",
        "DriftgaugeFeatureKSDrift",
    ],
    "sepal length (cm)": ["DriftgaugeFeatureDriftWarning"],
    "od280/od315_of_diluted_wines": [
        "DriftgaugeFeatureDriftWarning",
        "DriftgaugeFeatureDriftCritical",
        "DriftgaugeFeatureKSDrift",
    ],
    "naïve": ["DriftgaugeFeatureDriftWarning"],  # page: false, so no critical
    "proline": ["DriftgaugeFeatureDriftWarning"],
}
CHECKED = (
    "DriftgaugeFeatureDriftWarning",
    "DriftgaugeFeatureDriftCritical",
    "DriftgaugeFeatureKSDrift",
    "DriftgaugePredictionDrift",
)


def _unit_test(
    model: ModelRules, windows: list[str], rules: dict[str, Any]
) -> list[dict[str, Any]]:
    """A promtool test file: the VALUES series for every window, the EXPECTED alerts at 40m."""
    base = {"job": "driftgauge", "instance": "10.0.0.7:10117", "model": model.model}
    specs = {f.name: f for f in model.fields}
    series = []
    for spec in model.fields:  # the baselines' bin shares: 10 bins, or 3 categories (df 2)
        shares = (
            {str(i): 0.1 for i in range(10)}
            if spec.type == "numeric"
            else {"a": 0.5, "b": 0.3, "c": 0.2, "__other__": 0.0, "__unseen__": 0.0}
        )
        for label, share in shares.items():
            labels = base | {"feature": spec.name, "role": spec.role, "bin": label}
            series.append(
                {
                    "series": _series("driftgauge_baseline_bin_ratio", labels),
                    "values": f"{share}x50",
                }
            )
    for name, values in VALUES.items():
        spec = specs[name]
        for window in windows:
            labels = base | {"feature": name, "role": spec.role, "window": window}
            series.append(
                {"series": _series("driftgauge_window_observations", labels), "values": "5000x50"}
            )
            series.append(
                {"series": _series("driftgauge_psi", labels), "values": f"{values['psi']}x50"}
            )
            series.append(
                {
                    "series": _series("driftgauge_psi_noise_floor", labels),
                    "values": f"{values['floor']}x50",
                }
            )
            if spec.type == "numeric":
                series.append(
                    {
                        "series": _series("driftgauge_ks_statistic", labels),
                        "values": f"{values['ks']}x50",
                    }
                )
                series.append(
                    {
                        "series": _series("driftgauge_ks_pvalue", labels),
                        "values": f"{values['p']}x50",
                    }
                )
    if len(windows) > 1:  # hue: drifted in the longest window, not in the others
        for window in windows:
            labels = base | {"feature": "hue", "role": "input", "window": window}
            psi = DRIFTED["psi"] if window == windows[-1] else QUIET["psi"]
            series.append({"series": _series("driftgauge_psi", labels), "values": f"{psi}x50"})
            series.append(
                {"series": _series("driftgauge_psi_noise_floor", labels), "values": "0.002x50"}
            )
    by_rule = {
        (rule["alert"], rule["labels"].get("feature")): rule
        for group in rules["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    checks = []
    for alert in CHECKED:
        expected = []
        for name, alerts in EXPECTED.items():
            if alert not in alerts:
                continue
            rule = by_rule.get((alert, go_template_text(name))) or by_rule[(alert, None)]
            labels = base | {"feature": name, "role": specs[name].role}
            labels |= {k: (name if k == "feature" else v) for k, v in rule["labels"].items()}
            value = VALUES[name]["ks" if "KS" in alert else "psi"]
            annotations = {k: expand(v, labels, value) for k, v in rule["annotations"].items()}
            expected.append({"exp_labels": labels, "exp_annotations": annotations})
        checks.append({"eval_time": "40m", "alertname": alert, "exp_alerts": expected})
    return [{"interval": "1m", "input_series": series, "alert_rule_test": checks}]


@pytest.mark.parametrize("windows", WINDOW_SETS, ids=",".join)
def test_drifted_fields_fire_with_the_configured_thresholds(
    tmp_path: Path, windows: list[str]
) -> None:
    """promtool: drifted fields fire, undrifted ones and those under their override stay silent, the never-page field only warns."""
    model = _model(windows)
    rules = render_rules([model])
    (tmp_path / "rules.yml").write_text(dump_yaml(rules), encoding="utf-8")
    promtool_test(tmp_path, ["rules.yml"], _unit_test(model, windows, rules))
    severities = {
        rule["labels"]["severity"]
        for group in rules["groups"]
        for rule in group["rules"]
        if rule.get("labels", {}).get("feature") == "naïve"
    }
    assert severities == {"ticket"}


# Two replicas of a field of 10 baseline bins (df 9: gate 3.12x its noise floor at z 3.09)
# and a two-valued one (df 1: 11.16x), PSI and noise floor per replica in both windows,
# and each replica's bin counters a minute (flag's drawn by replica A alone).
REPLICAS = {
    "10.0.0.7:10117": {
        "x": {"psi": 0.31, "floor": 0.002, "bins": [600] + [60] * 9},
        "flag": {"psi": 0.03, "floor": 0.004, "bins": [28, 22]},  # 7.5x: only df 9 passes it
    },
    "10.0.0.8:10117": {
        "x": {"psi": 0.03, "floor": 0.004, "bins": [60] * 10},  # 7.5x, above 0.02
        "flag": {"psi": 0.05, "floor": 0.004, "bins": [0, 0]},  # 12.5x
    },
}
# What fires: (alert, instance or None for the fleet, field, value)
FLEET_SHARES = [660 / 1740] + [120 / 1740] * 9
FLEET_X = sum((s - 0.1) * math.log(s / 0.1) for s in FLEET_SHARES)
FIRES = [
    ("DriftgaugeFeatureDriftWarning", "10.0.0.7:10117", "x", 0.31),
    ("DriftgaugeFeatureDriftWarning", "10.0.0.8:10117", "x", 0.03),
    ("DriftgaugeFeatureDriftWarning", "10.0.0.8:10117", "flag", 0.05),
    ("DriftgaugeFeatureDriftCritical", "10.0.0.7:10117", "x", 0.31),
    # flag's fleet PSI 0.029 over 250 observations: 6.9x its floor, under its gate
    ("DriftgaugeFleetFeatureDrift", None, "x", FLEET_X),
]


def test_each_replica_and_field_is_gated_by_its_own_baseline_bins(tmp_path: Path) -> None:
    """promtool, two replicas and two windows: each field's χ² gate follows its own bins
    (df 9 and 1) on each replica and in the fleet, and the fleet counts every replica's
    observations (the bins counted once an evaluation for every gate, the counters read
    once by the fleet rate)."""
    windows = ["5m", "1h"]
    fields = (FieldSpec("x", "numeric", "input"), FieldSpec("flag", "categorical", "input"))
    model = ModelRules("wine", fields, _alerting({}, windows, ["x", "flag"]), min_observations=100)
    rules = render_rules([model])
    (tmp_path / "rules.yml").write_text(dump_yaml(rules), encoding="utf-8")
    inputs = []
    for instance, values in REPLICAS.items():
        sidecar = {"job": "driftgauge", "instance": instance, "model": "wine"}
        info = sidecar | {"baseline_id": "b1", "created": "2026-01-01", "rows": "5000"}
        inputs.append({"series": _series("driftgauge_baseline_info", info), "values": "1x50"})
        for name, field in values.items():
            labels = sidecar | {"feature": name, "role": "input"}
            bins = field["bins"]
            for i, per_minute in enumerate(bins):
                labels_bin = labels | {"bin": str(i)}
                ratio = _series("driftgauge_baseline_bin_ratio", labels_bin)
                inputs.append({"series": ratio, "values": f"{1 / len(bins)}x50"})
                count = _series("driftgauge_bin_observations_total", labels_bin)
                inputs.append({"series": count, "values": f"0+{per_minute}x50"})
            baseline = _series("driftgauge_baseline_observations", labels)
            inputs.append({"series": baseline, "values": "5000x50"})
            for window in windows:
                labels_window = labels | {"window": window}
                for metric, value in (
                    ("driftgauge_psi", field["psi"]),
                    ("driftgauge_psi_noise_floor", field["floor"]),
                    ("driftgauge_window_observations", 5000),
                ):
                    inputs.append(
                        {"series": _series(metric, labels_window), "values": f"{value}x50"}
                    )
    by_name = {
        rule["alert"]: rule
        for group in rules["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    checks = []
    for alert in (
        "DriftgaugeFeatureDriftWarning",
        "DriftgaugeFeatureDriftCritical",
        "DriftgaugeFleetFeatureDrift",
    ):
        expected = []
        for name, instance, feature, value in FIRES:
            if name != alert:
                continue
            where = (
                {"instance": instance, "job": "driftgauge"} if instance else {"baseline_id": "b1"}
            )
            labels = where | {"model": "wine", "feature": feature, "role": "input"}
            labels |= by_name[alert]["labels"]
            annotations = {
                k: expand(v, labels, value) for k, v in by_name[alert]["annotations"].items()
            }
            expected.append({"exp_labels": labels, "exp_annotations": annotations})
        checks.append({"eval_time": "40m", "alertname": alert, "exp_alerts": expected})
    observations = {
        "expr": "driftgauge:fleet_observations:increase5m",
        "eval_time": "40m",
        "exp_samples": [
            {
                "labels": _series(
                    "driftgauge:fleet_observations:increase5m",
                    {"model": "wine", "baseline_id": "b1", "feature": feature, "role": "input"},
                ),
                "value": 5
                * sum(
                    per_minute
                    for replica in REPLICAS.values()
                    for per_minute in replica[feature]["bins"]
                ),
            }
            for feature in ("x", "flag")
        ],
    }
    promtool_test(
        tmp_path,
        ["rules.yml"],
        [
            {
                "interval": "1m",
                "input_series": inputs,
                "alert_rule_test": checks,
                "promql_expr_test": [observations],
            }
        ],
    )


# Each replica's observations a minute in x's 10 bins (600): fleet PSI 0.028 over 6,000 in 5m.
ALIKE_BINS = (45, 48, 51, 54, 57, 63, 66, 69, 72, 75)


def test_the_fleet_counts_each_replica_s_rows_over_its_design_effect(tmp_path: Path) -> None:
    """promtool, two replicas of 3,000 observations in 5m each, one of requests of alike rows
    (design effect 10 in its 5m and 1h windows), one of independent rows (1): the fleet's
    design effect is their mean weighted by each window's rows, 5.5, so 6,000 rows are 1,091
    draws, and the fleet PSI of 0.028 is under its gate (0.031; 0.010 when every row counted
    as a draw, and the fleet alert fired)."""
    windows = ["5m", "1h"]
    fields = (FieldSpec("x", "numeric", "input"),)
    model = ModelRules("wine", fields, _alerting({}, windows, ["x"]), min_observations=100)
    (tmp_path / "rules.yml").write_text(dump_yaml(render_rules([model])), encoding="utf-8")
    inputs = []
    for instance, design_effect in (("10.0.0.7:10117", 10), ("10.0.0.8:10117", 1)):
        sidecar = {"job": "driftgauge", "instance": instance, "model": "wine"}
        info = sidecar | {"baseline_id": "b1", "created": "2026-01-01", "rows": "5000"}
        inputs.append({"series": _series("driftgauge_baseline_info", info), "values": "1x50"})
        labels = sidecar | {"feature": "x", "role": "input"}
        for i, per_minute in enumerate(ALIKE_BINS):
            labels_bin = labels | {"bin": str(i)}
            ratio = _series("driftgauge_baseline_bin_ratio", labels_bin)
            inputs.append({"series": ratio, "values": "0.1x50"})
            count = _series("driftgauge_bin_observations_total", labels_bin)
            inputs.append({"series": count, "values": f"0+{per_minute}x50"})
        baseline = _series("driftgauge_baseline_observations", labels)
        inputs.append({"series": baseline, "values": "5000x50"})
        for window, rows in (("5m", 3000), ("1h", 36000)):
            at = labels | {"window": window}
            for metric, value in (
                ("driftgauge_window_observations", rows),
                ("driftgauge_design_effect", design_effect),
            ):
                inputs.append({"series": _series(metric, at), "values": f"{value}x50"})
    fleet = {"model": "wine", "baseline_id": "b1", "feature": "x", "role": "input"}
    records = [
        {
            "expr": name,
            "eval_time": "40m",
            "exp_samples": [{"labels": _series(name, fleet), "value": value}],
        }
        for name, value in (
            ("driftgauge:fleet_design_effect", 5.5),
            ("driftgauge:fleet_draws:increase5m", 6000 / 5.5),
            ("driftgauge:fleet_psi_noise_floor:rate5m", 9 * (5.5 / 6000 + 1 / 5000)),
        )
    ]
    checks = [{"eval_time": "40m", "alertname": "DriftgaugeFleetFeatureDrift", "exp_alerts": []}]
    promtool_test(
        tmp_path,
        ["rules.yml"],
        [
            {
                "interval": "1m",
                "input_series": inputs,
                "alert_rule_test": checks,
                "promql_expr_test": records,
            }
        ],
    )


# -- outputs ------------------------------------------------------------------------


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


def test_rendering_twice_gives_the_same_bytes(tmp_path: Path) -> None:
    """Two runs (two processes, two hash seeds) write byte-identical files."""
    config = tmp_path / "config.yaml"
    raw = base_config(
        tmp_path,
        alerting={
            "labels": {"team": "ml", "tier": "1"},
            "features": {"region": {"page": False}, "ash": {"psi": {"warning": 0.2}}},
        },
    )
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    outputs = []
    for run in ("a", "b"):
        result = _run("rules", "-c", config, "-o", tmp_path / run)
        assert result.returncode == 0, result.stderr
        files = sorted(
            p.relative_to(tmp_path / run) for p in (tmp_path / run).rglob("*") if p.is_file()
        )
        outputs.append({p: (tmp_path / run / p).read_bytes() for p in files})
    assert outputs[0] == outputs[1]
    assert {str(p) for p in outputs[0]} == {
        "driftgauge.rules.yml",
        "driftgauge-prometheusrule.yaml",
        "dashboards/driftgauge-model-wine.json",
    }


def test_the_manifest_holds_the_same_groups(tmp_path: Path) -> None:
    """The PrometheusRule is monitoring.coreos.com/v1 with the rules file's groups and a DNS name."""
    written = write_assets(_config(tmp_path), tmp_path / "out")
    rules = yaml.safe_load(written[0].read_text(encoding="utf-8"))
    manifest = yaml.safe_load(written[1].read_text(encoding="utf-8"))
    assert manifest["apiVersion"] == "monitoring.coreos.com/v1"
    assert manifest["kind"] == "PrometheusRule"
    assert re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", manifest["metadata"]["name"])
    assert manifest["spec"]["groups"] == rules["groups"]


def test_a_bad_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """A bad alerting section ends like any config error: one line naming the key, exit 2."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(base_config(tmp_path, alerting={"psi": {"warning": "high"}})))
    result = _run("rules", "-c", config, "-o", tmp_path / "out")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "alerting.psi.warning" in lines[0], result.stderr
    assert not (tmp_path / "out").exists()


def test_the_runbook_covers_every_generated_alert(tmp_path: Path) -> None:
    """Every generated alert name has a runbook section, and its runbook_url points at it."""
    anchors = {
        re.sub(r"[^a-z0-9]+", "-", m.lower()).strip("-")
        for m in re.findall(r"^## (.+)$", RUNBOOK.read_text(encoding="utf-8"), re.M)
    }
    rules = render_rules([_model(["5m", "1h"])])
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                assert re.fullmatch(r"Driftgauge[A-Z][A-Za-z]+", rule["alert"])
                assert rule["alert"].lower() in anchors, rule["alert"]
                assert rule["annotations"]["runbook_url"].endswith("#" + rule["alert"].lower())
                assert {"summary", "description", "runbook_url"} == set(rule["annotations"])


# -- the dashboard ------------------------------------------------------------------


def _panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for top in board["panels"] for p in [top, *top.get("panels", [])]]


def test_the_packaged_template_is_the_shipped_dashboard() -> None:
    """The dashboard template inside the package is grafana/dashboards/driftgauge-model.json."""
    packaged = ROOT / "src" / "driftgauge" / "rules" / "assets" / "driftgauge-model.json"
    shipped = ROOT / "grafana" / "dashboards" / "driftgauge-model.json"
    assert packaged.read_bytes() == shipped.read_bytes()


def test_the_dashboard_fixes_the_model_and_lists_each_field() -> None:
    """One row per field, its name as an escaped literal, KS only for numeric fields, override thresholds."""
    model = _model(["5m", "1h"], model='wine "x"')
    board = render_dashboard(model.model, model.fields, model.alerting)
    assert [v["name"] for v in board["templating"]["list"]] == ["datasource", "window"]
    rows = [p for p in board["panels"] if p["type"] == "row" and p.get("collapsed")]
    assert [r["title"].rsplit(" (", 1)[0] for r in rows[: len(FIELDS)]] == [f[0] for f in FIELDS]
    panels = _panels(board)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    assert all(p["gridPos"]["x"] + p["gridPos"]["w"] <= 24 for p in panels)
    exprs = json.dumps([t["expr"] for p in panels for t in p.get("targets", [])])
    assert "$model" not in exprs and "$feature" not in exprs and "$categorical" not in exprs
    for row, (name, kind, _role) in zip(rows, FIELDS, strict=False):
        queries = [t["expr"] for p in row["panels"] for t in p["targets"]]
        assert all(f"feature={promql_string(name)}" in q for q in queries), name
        assert all('model="wine \\"x\\""' in q for q in queries), name
        assert any("ks_statistic" in q for q in queries) == (kind == "numeric"), name
        assert any("chi2_pvalue" in q for q in queries) == (kind == "categorical"), name
    sepal = next(r for r in rows if r["title"].startswith("sepal length (cm)"))
    psi = next(p for p in sepal["panels"] if p["title"] == "PSI")
    steps = [s["value"] for s in psi["fieldConfig"]["defaults"]["thresholds"]["steps"][1:]]
    assert steps == [0.3, 0.4]
    flavanoids = next(r for r in rows if r["title"].startswith("flavanoids"))
    (gated,) = [p for p in flavanoids["panels"] if "psi_chi2_gate" in json.dumps(p["targets"])]
    assert 'driftgauge:psi_chi2_gate{z="4.75"}' in gated["targets"][1]["expr"]
    assert "psi_chi2_gate at 99.9999%" in gated["description"]


def test_config_dataclass_accepts_weird_names_end_to_end(tmp_path: Path) -> None:
    """write_assets renders rules and a dashboard for a model and fields with weird names."""
    config = dataclasses.replace(
        _config(tmp_path),
        model="naïve/model",
        features=tuple(FieldSpec(n, "numeric", "input") for n in WEIRD),
    )
    written = write_assets(config, tmp_path / "out")
    _check_rules(written[0])
    board = json.loads(written[2].read_text(encoding="utf-8"))
    assert board["title"] == "driftgauge / naïve/model"
    assert re.fullmatch(r"[a-z0-9-]{1,40}", board["uid"])
