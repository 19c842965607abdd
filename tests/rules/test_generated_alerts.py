"""promtool unit tests of what `driftgauge rules` writes beyond the per-field drift logic.

Each test renders the rules of one or more configs, writes a promtool test
file of input series and expected alerts next to them, and runs
``promtool test rules``: labels fire exactly as configured, a down sidecar
alerts once with its own config's labels, only lost observations count as
dropped, the multivariate field drifts like an input, the service alerts come
once per sidecar, and regressors get a performance alert.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

from driftgauge.config import Config, config_from_mapping
from driftgauge.exposition.catalogue import METRICS_VERSION
from driftgauge.exposition.live import DROP_REASONS
from driftgauge.rules.alerts import models_of, render_rules
from driftgauge.rules.tables import NOT_LOST
from driftgauge.rules.writing import dump_yaml
from driftgauge.sources.cloudevents import DROP_REASONS as CLOUDEVENTS_DROPS
from driftgauge.sources.proxy import DROP_REASONS as PROXY_DROPS
from driftgauge.sources.sampling import SAMPLED
from tests.helpers import base_config
from tests.rules.support import expand, promtool, promtool_test
from tests.rules.support import series as _series

SIDECAR = {"job": "driftgauge", "instance": "10.0.0.7:10117"}
WARNING = {"severity": "warning"}
SOURCE_DROPS = (*PROXY_DROPS, *CLOUDEVENTS_DROPS, SAMPLED)
SRC = Path(__file__).resolve().parents[2] / "src" / "driftgauge"


def _config(tmp_path: Path, **overrides: Any) -> Config:
    return config_from_mapping(base_config(tmp_path, **overrides), base=tmp_path)


def _rule(config: Config, name: str) -> dict[str, Any]:
    """The rendered alert rule ``name`` of ``config`` (the first, if several)."""
    groups = render_rules(models_of(config))["groups"]
    return next(r for g in groups for r in g["rules"] if r.get("alert") == name)


def _fires(rule: dict[str, Any], labels: dict[str, str], value: float) -> dict[str, Any]:
    """The expected alert of ``rule`` on a series with ``labels`` and value ``value``."""
    return {
        "exp_labels": labels,
        "exp_annotations": {k: expand(v, labels, value) for k, v in rule["annotations"].items()},
    }


def _run(tmp_path: Path, configs: dict[str, Config], tests: list[dict[str, Any]]) -> None:
    """``promtool check rules`` and ``promtool test rules`` on each config's rendered rules."""
    files = []
    for name, config in configs.items():
        path = tmp_path / f"{name}.rules.yml"
        path.write_text(dump_yaml(render_rules(models_of(config))), encoding="utf-8")
        files.append(path.name)
        checked = subprocess.run(
            [promtool(), "check", "rules", str(path)], capture_output=True, text=True, check=False
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
    promtool_test(tmp_path, files, tests)


# -- labels ------------------------------------------------------------------------------

ODD_LABELS = {"team": "ml {{ platform }}", "tier": "{{3}}", "note": 'a "b" \\ $value'}
ODD_SEVERITY = {"warning": "P{{3}}", "critical": "P{{ 1 }} {{ $labels.instance }}"}


def test_extra_labels_and_severities_fire_exactly_as_configured(tmp_path: Path) -> None:
    """Labels, severities and a runbook URL holding Go template syntax pass promtool and fire as written."""
    config = _config(
        tmp_path,
        alerting={
            "labels": ODD_LABELS,
            "severity": ODD_SEVERITY,
            "runbook_url": "https://wiki.example/{{ runbooks }}",
        },
    )
    wine = SIDECAR | {"model": "wine"}
    series = [
        _series("up", SIDECAR, "0x20"),
        _series("driftgauge_baseline_info", wine, "1x20"),
        _series("driftgauge_source_dropped_total", SIDECAR | {"reason": "queue_full"}, "0+5x20"),
    ]
    down = _rule(config, "DriftgaugeSidecarDown")
    dropped = _rule(config, "DriftgaugeObservationsDropped")
    down_labels = SIDECAR | ODD_LABELS | {"severity": ODD_SEVERITY["critical"]}
    dropped_labels = (
        {"instance": SIDECAR["instance"], "reason": "queue_full"}
        | ODD_LABELS
        | {"severity": ODD_SEVERITY["warning"]}
    )
    checks = [
        {
            "alertname": "DriftgaugeSidecarDown",
            "eval_time": "5m",
            "exp_alerts": [_fires(down, down_labels, 0)],
        },
        {
            "alertname": "DriftgaugeObservationsDropped",
            "eval_time": "15m",
            "exp_alerts": [_fires(dropped, dropped_labels, 50)],
        },
    ]
    assert _fires(down, down_labels, 0)["exp_annotations"]["runbook_url"] == (
        "https://wiki.example/{{ runbooks }}#driftgaugesidecardown"
    )
    _run(
        tmp_path,
        {"wine": config},
        [{"interval": "1m", "input_series": series, "alert_rule_test": checks}],
    )


# -- DriftgaugeSidecarDown -----------------------------------------------------------------

TEAM_A = "10.0.0.1:10117"
TEAM_B = "10.0.0.2:10117"


def _two_models(tmp_path: Path) -> Config:
    raw = base_config(tmp_path)
    model = {k: raw.pop(k) for k in ("model", "protocol", "baseline", "features", "predictions")}
    raw["models"] = [model, {**model, "model": "iris", "baseline": str(tmp_path / "iris.dgb")}]
    return config_from_mapping(raw, base=tmp_path)


def _two_teams(tmp_path: Path) -> dict[str, Config]:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    return {
        "team-a": _config(tmp_path / "a", model="wine", alerting={"labels": {"team": "a"}}),
        "team-b": _config(
            tmp_path / "b",
            model="iris",
            alerting={"labels": {"team": "b"}, "severity": {"critical": "page"}},
        ),
    }


def _sidecar(instance: str, model: str, up: str, info: str) -> list[dict[str, str]]:
    target = {"job": "driftgauge", "instance": instance}
    return [
        _series("up", target, up),
        _series("driftgauge_baseline_info", target | {"model": model, "rows": "5000"}, info),
    ]


def test_a_sidecar_down_raises_one_alert_with_its_own_configs_labels(tmp_path: Path) -> None:
    """Two configs' rules loaded: each down sidecar fires once, with its owner's labels; up ones never."""
    configs = _two_teams(tmp_path)
    a = _rule(configs["team-a"], "DriftgaugeSidecarDown")
    b = _rule(configs["team-b"], "DriftgaugeSidecarDown")
    a_labels = {"job": "driftgauge", "instance": TEAM_A, "team": "a", "severity": "critical"}
    b_labels = {"job": "driftgauge", "instance": TEAM_B, "team": "b", "severity": "page"}
    # a's sidecar stops answering at 10m (its series go stale), b's at 30m.
    series = [
        *_sidecar(TEAM_A, "wine", "1x10 0x40", "1x10 stale"),
        *_sidecar(TEAM_B, "iris", "1x30 0x20", "1x30 stale"),
    ]
    checks = [
        {"alertname": "DriftgaugeSidecarDown", "eval_time": "9m", "exp_alerts": []},
        {"alertname": "DriftgaugeSidecarDown", "eval_time": "11m", "exp_alerts": []},  # for: 2m
        {
            "alertname": "DriftgaugeSidecarDown",
            "eval_time": "20m",
            "exp_alerts": [_fires(a, a_labels, 0)],
        },
        {
            "alertname": "DriftgaugeSidecarDown",
            "eval_time": "40m",
            "exp_alerts": [_fires(a, a_labels, 0), _fires(b, b_labels, 0)],
        },
    ]
    assert "(model wine)" in a["annotations"]["description"]
    _run(tmp_path, configs, [{"interval": "1m", "input_series": series, "alert_rule_test": checks}])


def test_sidecars_of_no_loaded_config_raise_nothing(tmp_path: Path) -> None:
    """A down target that never exported a loaded config's model, or another job's, is not alerted."""
    configs = _two_teams(tmp_path)
    series = [
        *_sidecar("10.0.0.3:10117", "churn", "1x5 0x20", "1x5 stale"),
        _series("up", {"job": "driftgauge", "instance": "10.0.0.4:10117"}, "0x25"),
        _series("up", {"job": "node", "instance": TEAM_A}, "0x25"),
        _series(
            "driftgauge_baseline_info", {"job": "node", "instance": TEAM_A, "model": "wine"}, "1x25"
        ),
    ]
    checks = [{"alertname": "DriftgaugeSidecarDown", "eval_time": "20m", "exp_alerts": []}]
    _run(tmp_path, configs, [{"interval": "1m", "input_series": series, "alert_rule_test": checks}])


def test_every_model_of_a_multi_model_sidecar_is_named_once(tmp_path: Path) -> None:
    """A sidecar serving two models fires one alert naming both."""
    config = _two_models(tmp_path)
    rule = _rule(config, "DriftgaugeSidecarDown")
    labels = {"job": "driftgauge", "instance": TEAM_A, "severity": "critical"}
    series = [
        *_sidecar(TEAM_A, "wine", "1x5 0x20", "1x5 stale"),
        _series(
            "driftgauge_baseline_info",
            {"job": "driftgauge", "instance": TEAM_A, "model": "iris"},
            "1x5 stale",
        ),
    ]
    checks = [
        {
            "alertname": "DriftgaugeSidecarDown",
            "eval_time": "15m",
            "exp_alerts": [_fires(rule, labels, 0)],
        }
    ]
    assert "(models wine, iris)" in rule["annotations"]["description"]
    _run(
        tmp_path,
        {"both": config},
        [{"interval": "1m", "input_series": series, "alert_rule_test": checks}],
    )


# -- DriftgaugeObservationsDropped -----------------------------------------------------------

# driftgauge_source_dropped_total reasons that lose observations the drift figures would have had.
LOST = {"queue_full", "body_too_large", "answered_early", "cloudevents_overload"}


def _dropped_reasons() -> set[str]:
    """Every reason the sidecar counts drops under: the ones it starts at 0 and every literal
    the package passes to a drop counter (``count_dropped("queue_full")``, ``on_drop(...)``)."""
    call = re.compile(r'(?:count_dropped|on_dropped|on_drop)\(\s*"(\w+)"')
    found = {reason for path in SRC.rglob("*.py") for reason in call.findall(path.read_text())}
    return found | set(DROP_REASONS) | set(SOURCE_DROPS)


def test_every_drop_reason_is_either_a_loss_or_not() -> None:
    """Each reason the source counts is classified: a new one must be added to LOST or NOT_LOST;
    a model's own reasons (after routing) are never the source's."""
    assert _dropped_reasons() - set(DROP_REASONS) == LOST | {NOT_LOST}
    assert not set(DROP_REASONS) & set(SOURCE_DROPS)


def test_only_lost_observations_raise_observations_dropped(tmp_path: Path) -> None:
    """The source's queue, body-size and CloudEvents drops fire; its sampling does not, nor do a
    model's own drops (expired unlabelled predictions)."""
    config = _config(tmp_path, feedback={"prediction": "class", "task": "classification"})
    rule = _rule(config, "DriftgaugeObservationsDropped")
    wine = SIDECAR | {"model": "wine"}
    reasons = sorted(_dropped_reasons() - set(DROP_REASONS))
    series = [
        _series("driftgauge_baseline_info", wine, "1x20"),
        *(
            _series("driftgauge_source_dropped_total", SIDECAR | {"reason": reason}, "0+3x20")
            for reason in reasons
        ),
        *(
            _series("driftgauge_dropped_total", wine | {"reason": reason}, "0+3x20")
            for reason in DROP_REASONS
        ),
    ]
    fired = [
        _fires(rule, {"instance": SIDECAR["instance"], "reason": reason, "severity": "warning"}, 30)
        for reason in reasons
        if reason in LOST
    ]
    checks = [
        {"alertname": "DriftgaugeObservationsDropped", "eval_time": "15m", "exp_alerts": fired}
    ]
    _run(
        tmp_path,
        {"wine": config},
        [{"interval": "1m", "input_series": series, "alert_rule_test": checks}],
    )


# -- the multivariate field ------------------------------------------------------------------


def _field(
    name: str,
    role: str,
    psi: float,
    version: str = "",
    rows: tuple[int, int] = (5000, 60000),
    design_effect: float | None = None,
) -> list[dict[str, str]]:
    """A numeric field's 10 equal baseline bins and two windows (5m, 1h) of ``rows`` with PSI
    ``psi`` (of one model version: the sidecar labels each of its series so), and their
    ``design_effect`` where one is given."""
    labels = SIDECAR | {"model": "wine", "feature": name, "role": role}
    if version:
        labels["version"] = version
    series = [
        _series("driftgauge_baseline_bin_ratio", labels | {"bin": str(b)}, "0.1x40")
        for b in range(10)
    ]
    for window, floor, n in zip(("5m", "1h"), ("0.002", "0.0002"), rows, strict=True):
        at = labels | {"window": window}
        series.append(_series("driftgauge_psi", at, f"{psi}x40"))
        series.append(_series("driftgauge_psi_noise_floor", at, f"{floor}x40"))
        series.append(_series("driftgauge_window_observations", at, f"{n}x40"))
        if design_effect is not None:
            series.append(_series("driftgauge_design_effect", at, f"{design_effect}x40"))
    return series


def test_psi_drift_of_the_multivariate_field_alerts(tmp_path: Path) -> None:
    """The reconstruction error's PSI raises the feature drift warning and critical; quiet inputs do not."""
    config = _config(tmp_path, multivariate={"features": ["alcohol", "ash"]})
    warning = _rule(config, "DriftgaugeFeatureDriftWarning")
    critical = _rule(config, "DriftgaugeFeatureDriftCritical")
    field = SIDECAR | {"model": "wine", "feature": "reconstruction_error", "role": "multivariate"}
    series = [
        *_field("reconstruction_error", "multivariate", 0.4),
        *_field("alcohol", "input", 0.004),
    ]
    checks = [
        {
            "alertname": "DriftgaugeFeatureDriftWarning",
            "eval_time": "20m",
            "exp_alerts": [_fires(warning, field | {"severity": "warning"}, 0.4)],
        },
        {
            "alertname": "DriftgaugeFeatureDriftCritical",
            "eval_time": "20m",
            "exp_alerts": [_fires(critical, field | {"severity": "critical"}, 0.4)],
        },
    ]
    _run(
        tmp_path,
        {"wine": config},
        [{"interval": "1m", "input_series": series, "alert_rule_test": checks}],
    )


def test_a_window_is_ready_once_its_bins_expect_eight_draws_not_eight_rows(
    tmp_path: Path,
) -> None:
    """Readiness counts a window's observations over its design effect: windows of 300 and
    3,600 rows in requests of 100 alike rows (design effect 100: 3 and 36 draws, below the 80
    that 10 equal bins need) raise nothing however far PSI is past its floor; the same rows at
    design effect 2 (150 and 1,800 draws) fire, and so do they where the sidecar exports no
    design effect (every row a draw)."""
    config = _config(tmp_path)
    warning = _rule(config, "DriftgaugeFeatureDriftWarning")
    rows = (300, 3600)
    series = [
        *_field("alcohol", "input", 0.4, rows=rows, design_effect=100),
        *_field("ash", "input", 0.4, rows=rows, design_effect=2),
        *_field("hue", "input", 0.4, rows=rows),
    ]
    fired = [
        _fires(warning, SIDECAR | {"model": "wine", "feature": f, "role": "input"} | WARNING, 0.4)
        for f in ("ash", "hue")
    ]
    checks = [
        {"alertname": "DriftgaugeFeatureDriftWarning", "eval_time": "20m", "exp_alerts": fired}
    ]
    _run(
        tmp_path,
        {"wine": config},
        [{"interval": "1m", "input_series": series, "alert_rule_test": checks}],
    )


def test_a_drifting_canary_alerts_under_its_version_and_says_so(tmp_path: Path) -> None:
    """With versions on, the canary's drift fires with its ``version`` label and names the version
    in its text (two versions' alerts read alike); the stable version stays quiet."""
    config = _config(tmp_path, protocol="kserve-v2", versions={"top": 2})
    warning = _rule(config, "DriftgaugeFeatureDriftWarning")
    canary = SIDECAR | {"model": "wine", "feature": "alcohol", "role": "input", "version": "2"}
    series = [*_field("alcohol", "input", 0.4, "2"), *_field("alcohol", "input", 0.004, "1")]
    fired = _fires(warning, canary | {"severity": "warning"}, 0.4)
    assert fired["exp_annotations"]["summary"] == (
        "Feature alcohol of model wine version 2 is drifting"
    )
    assert (
        "(model wine version 2, instance 10.0.0.7:10117)" in fired["exp_annotations"]["description"]
    )
    checks = [
        {"alertname": "DriftgaugeFeatureDriftWarning", "eval_time": "20m", "exp_alerts": [fired]}
    ]
    _run(
        tmp_path,
        {"wine": config},
        [{"interval": "1m", "input_series": series, "alert_rule_test": checks}],
    )


# -- the sidecar's service alerts --------------------------------------------------------------

SERVICE = (
    "DriftgaugeUpstreamErrors",
    "DriftgaugeAddedLatencyHigh",
    "DriftgaugeObservationsDropped",
    "DriftgaugeMonitoringSampled",
    "DriftgaugeRulesOutdated",
)


def test_service_alerts_come_once_per_sidecar_of_the_config(tmp_path: Path) -> None:
    """With two models, each service alert is one rule, on series without a model label, keeping
    the sidecars that export the first model's baseline_info; it carries no model label and its
    description names both models."""
    groups = render_rules(models_of(_two_models(tmp_path)))["groups"]
    for name in SERVICE:
        (rule,) = [r for g in groups for r in g["rules"] if r.get("alert") == name]
        assert 'driftgauge_baseline_info{job="driftgauge", model="wine"}' in rule["expr"], name
        assert "iris" not in rule["expr"], name
        assert "serves models wine, iris" in rule["annotations"]["description"], name
        assert "model" not in rule["labels"], name


def test_service_alerts_of_a_multi_model_sidecar_fire(tmp_path: Path) -> None:
    """The proxy's errors and latency, and its source's drops and sampling (all under no model)
    raise one alert each; another config's sidecar raises none here."""
    config = _two_models(tmp_path)
    wine = SIDECAR | {"model": "wine"}
    other = {"job": "driftgauge", "instance": "10.0.0.8:10117"}
    series = [
        _series("driftgauge_baseline_info", wine, "1x40"),
        _series("driftgauge_baseline_info", wine | {"model": "iris"}, "1x40"),
        _series("driftgauge_baseline_info", other | {"model": "cifar"}, "1x40"),
        *(
            _series("driftgauge_requests_total", sidecar | {"code": code}, f"0+{n}x30")
            for sidecar in (SIDECAR, other)
            for code, n in (("200", 80), ("502", 20))
        ),
        *(
            _series("driftgauge_overhead_seconds_bucket", sidecar | {"le": le}, f"0+{n}x30")
            for sidecar in (SIDECAR, other)
            for le, n in (("0.001", 90), ("0.01", 100), ("+Inf", 100))
        ),
        _series("driftgauge_source_dropped_total", SIDECAR | {"reason": "queue_full"}, "0+1x30"),
        _series("driftgauge_source_dropped_total", SIDECAR | {"reason": "sampled"}, "0+50x30"),
        _series("driftgauge_sampling_rate", SIDECAR, "0.5x40"),
        _series("driftgauge_source_dropped_total", other | {"reason": "queue_full"}, "0+1x30"),
        _series("driftgauge_sampling_rate", other, "0.5x40"),
    ]
    sidecar = {"instance": SIDECAR["instance"]}
    checks = [
        {
            "alertname": "DriftgaugeUpstreamErrors",
            "eval_time": "20m",
            "exp_alerts": [
                _fires(
                    _rule(config, "DriftgaugeUpstreamErrors"),
                    sidecar | {"severity": "critical"},
                    0.2,
                )
            ],
        },
        {
            "alertname": "DriftgaugeAddedLatencyHigh",
            "eval_time": "20m",
            "exp_alerts": [
                _fires(
                    _rule(config, "DriftgaugeAddedLatencyHigh"),
                    sidecar | {"severity": "warning"},
                    0.0091,
                )
            ],
        },
        {
            "alertname": "DriftgaugeObservationsDropped",
            "eval_time": "20m",
            "exp_alerts": [
                _fires(
                    _rule(config, "DriftgaugeObservationsDropped"),
                    sidecar | {"reason": "queue_full", "severity": "warning"},
                    10,
                )
            ],
        },
        {
            "alertname": "DriftgaugeMonitoringSampled",
            "eval_time": "35m",
            "exp_alerts": [
                _fires(
                    _rule(config, "DriftgaugeMonitoringSampled"),
                    sidecar | {"severity": "warning"},
                    0.5,
                )
            ],
        },
    ]
    _run(
        tmp_path,
        {"both": config},
        [{"interval": "1m", "input_series": series, "alert_rule_test": checks}],
    )


# -- DriftgaugeStateNotSaved ---------------------------------------------------------------------


def test_each_model_whose_snapshot_keeps_failing_alerts_under_its_own_label(tmp_path: Path) -> None:
    """Each model's snapshot is its own file: iris failing for 15m fires under iris, wine's
    one failure that the next interval repaired fires nothing."""
    config = _two_models(tmp_path)
    series = [
        _series("driftgauge_state_save_failures_total", SIDECAR | {"model": "wine"}, "0x5 1x30"),
        _series("driftgauge_state_save_failures_total", SIDECAR | {"model": "iris"}, "0x5 2+2x30"),
    ]
    rule = _rule(config, "DriftgaugeStateNotSaved")
    alert = SIDECAR | {"model": "iris", "severity": "warning"}
    checks = [
        {"alertname": "DriftgaugeStateNotSaved", "eval_time": "15m", "exp_alerts": []},
        {
            "alertname": "DriftgaugeStateNotSaved",
            "eval_time": "25m",
            "exp_alerts": [_fires(rule, alert, 20)],
        },
    ]
    _run(
        tmp_path,
        {"both": config},
        [{"interval": "1m", "input_series": series, "alert_rule_test": checks}],
    )


def test_a_snapshot_failing_at_every_long_interval_alerts_and_one_failure_does_not(
    tmp_path: Path,
) -> None:
    """With state.interval 20m each failure raised increase(...[10m]) for 10 minutes only,
    so the 15m the rule asked for was never met and a sidecar failing every save never
    alerted; the range is now two intervals (40m) and the wait 5m more, so iris failing at
    every interval fires and wine's one failure, repaired at the next save, does not."""
    raw = base_config(tmp_path, state={"directory": "state", "interval": "20m"})
    model = {k: raw.pop(k) for k in ("model", "protocol", "baseline", "features", "predictions")}
    raw["models"] = [model, {**model, "model": "iris", "baseline": str(tmp_path / "iris.dgb")}]
    config = config_from_mapping(raw, base=tmp_path)
    rule = _rule(config, "DriftgaugeStateNotSaved")
    assert (rule["expr"], rule["for"]) == (
        'increase(driftgauge_state_save_failures_total{model="wine"}[40m]) > 0',
        "45m",
    )
    every = " ".join(str(0 if t < 5 else (t - 5) // 20 + 1) for t in range(180))
    series = [
        _series("driftgauge_state_save_failures_total", SIDECAR | {"model": "wine"}, "0x5 1x175"),
        _series("driftgauge_state_save_failures_total", SIDECAR | {"model": "iris"}, every),
    ]
    alert = SIDECAR | {"model": "iris", "severity": "warning"}
    checks = [
        {"alertname": "DriftgaugeStateNotSaved", "eval_time": "45m", "exp_alerts": []},
        {
            "alertname": "DriftgaugeStateNotSaved",
            "eval_time": "60m",
            "exp_alerts": [_fires(_rule_of(config, "iris"), alert, 2)],
        },
        {
            "alertname": "DriftgaugeStateNotSaved",
            "eval_time": "170m",
            "exp_alerts": [_fires(_rule_of(config, "iris"), alert, 2)],
        },
    ]
    _run(
        tmp_path,
        {"both": config},
        [{"interval": "1m", "input_series": series, "alert_rule_test": checks}],
    )


def _rule_of(config: Config, model: str) -> dict[str, Any]:
    """The rendered DriftgaugeStateNotSaved rule of ``model``."""
    groups = render_rules(models_of(config))["groups"]
    return next(r for g in groups if g["name"] == f"driftgauge-state:{model}" for r in g["rules"])


# -- DriftgaugePerformanceDrop -------------------------------------------------------------------


def test_performance_drop_covers_classifiers_and_regressors(tmp_path: Path) -> None:
    """Accuracy 5% below a day ago fires, and so does RMSE 5% above it; steady or better figures do not."""
    config = _config(tmp_path)
    groups = render_rules(models_of(config))["groups"]
    rules = {
        r["labels"]["metric"]: r
        for g in groups
        for r in g["rules"]
        if r.get("alert") == "DriftgaugePerformanceDrop"
    }
    assert set(rules) == {"accuracy", "rmse"}
    wine = SIDECAR | {"model": "wine", "window": "1h"}
    series = [
        _series("driftgauge_performance", wine | {"metric": "accuracy"}, "0.9x300 0.8x20"),
        _series("driftgauge_performance", wine | {"metric": "rmse"}, "2x300 2.5x20"),
        _series("driftgauge_performance", wine | {"metric": "mae"}, "1x300 3x20"),
        _series(
            "driftgauge_performance",
            SIDECAR | {"model": "wine", "window": "5m", "metric": "rmse"},
            "2x300 1.9x20",
        ),
    ]
    fired = [
        _fires(rules[metric], wine | {"metric": metric, "severity": "warning"}, value)
        for metric, value in (("accuracy", 0.8), ("rmse", 2.5))
    ]
    checks = [
        {"alertname": "DriftgaugePerformanceDrop", "eval_time": "25h", "exp_alerts": []},
        {"alertname": "DriftgaugePerformanceDrop", "eval_time": "26h", "exp_alerts": fired},
    ]
    _run(
        tmp_path,
        {"wine": config},
        [{"interval": "5m", "input_series": series, "alert_rule_test": checks}],
    )


def test_rules_of_another_metrics_version_than_the_sidecar_s_fire(tmp_path: Path) -> None:
    """A sidecar without ``metrics_version`` (before it existed) or of another version than the
    rules' raises DriftgaugeRulesOutdated after 30m; one of the rules' version, or another
    config's sidecar, does not."""
    config = _two_models(tmp_path)
    wine = SIDECAR | {"model": "wine"}
    current = {"job": "driftgauge", "instance": "10.0.0.9:10117"}
    other = {"job": "driftgauge", "instance": "10.0.0.8:10117"}
    version = str(METRICS_VERSION)
    series = [
        _series("driftgauge_baseline_info", wine, "1x60"),
        _series("driftgauge_baseline_info", current | {"model": "wine"}, "1x60"),
        _series("driftgauge_baseline_info", other | {"model": "cifar"}, "1x60"),
        _series("driftgauge_build_info", SIDECAR | {"version": "0.1.0"}, "1x60"),
        _series(
            "driftgauge_build_info",
            current | {"version": "0.1.0", "metrics_version": version},
            "1x60",
        ),
        _series("driftgauge_build_info", other | {"version": "0.1.0"}, "1x60"),
    ]
    rule = _rule(config, "DriftgaugeRulesOutdated")
    fired = SIDECAR | {"version": "0.1.0", "severity": "warning"}
    checks = [
        {"alertname": "DriftgaugeRulesOutdated", "eval_time": "25m", "exp_alerts": []},
        {
            "alertname": "DriftgaugeRulesOutdated",
            "eval_time": "40m",
            "exp_alerts": [_fires(rule, fired, 1)],
        },
    ]
    _run(
        tmp_path,
        {"both": config},
        [{"interval": "1m", "input_series": series, "alert_rule_test": checks}],
    )
