"""Prometheus rules tailored to one config: what `driftgauge rules` writes.

The rules are those of the shipped ``alert_rules/driftgauge.rules.yml``, with
the same window-agnostic agreement logic (a field drifts when every window
that exports drift gauges for it agrees), but selecting the config's model
and using its ``alerting:`` settings: thresholds, ``for:``, severities, extra
labels, the runbook URL, and per-field overrides, each of which gets rules of
its own selecting that field. Label values are written as escaped PromQL
strings, and label values of alerts as escaped Go template text, so a
feature may be named anything (``a"b\\c``, ``sepal length (cm)``, ``naïve``).

Every rule carries a ``model`` label (and an override's rules a ``feature``
label) equal to the series' own, so rules of several models, or of a field
and the other fields, never look like duplicates to ``promtool``. The
sidecar's own alerts (down, upstream errors, added latency, drops, sampling)
come once per config: a sidecar exports its service metrics once, under its
first model's label, so they select that label (``DriftgaugeSidecarDown``,
on ``up``, carries none).

The rules that need no per-field logic are tables in :mod:`driftgauge.rules.tables`;
:mod:`driftgauge.rules.writing` dumps the document and writes the files.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from driftgauge.config import Config, FieldSpec
from driftgauge.config.alerting import AlertingConfig, AlertThresholds
from driftgauge.config.validation import format_duration
from driftgauge.rules.gate import (
    READY,
    gate_record,
    gate_selector,
    gate_text,
    psi_condition,
    readiness_records,
)
from driftgauge.rules.promql import go_template_text, matchers, num
from driftgauge.rules.tables import (
    FLEET_RECORDS,
    PERFORMANCE,
    QUALITY,
    SERVICE,
    STATE,
    VERSION_RECORDS,
)

__all__ = [
    "SIDECAR_MEMORY",
    "ModelRules",
    "model_groups",
    "models_of",
    "render_rules",
]


@dataclass(frozen=True, slots=True)
class ModelRules:
    """What the rules of one model depend on."""

    model: str
    fields: tuple[FieldSpec, ...]
    alerting: AlertingConfig
    min_observations: int = 100
    state_interval: float = 30.0  # state.interval's default


def models_of(config: Config) -> list[ModelRules]:
    """The models of a config: every block of a `models:` list, or the one model."""
    return [
        ModelRules(
            model.model, model.fields, model.alerting, model.min_observations, config.state.interval
        )
        for model in config.all_models
    ]


# -- the drift alerts -----------------------------------------------------------------


# The roles the feature drift alerts (warning, critical, fleet) watch: the inputs and the
# multivariate field (PCA reconstruction error), which drifts when the inputs' joint
# distribution does. Predictions have DriftgaugePredictionDrift.
_FEATURE_ROLES = "input|multivariate"


def _agreement(metric: str, selector: str, condition: str) -> str:
    """Every window of a field that exports ``metric`` meets ``condition`` (see the shipped rules)."""
    return (
        f"min without (window) ({metric}{{{selector}}})\n"
        "and (\n"
        "    count without (window) (\n"
        f"      {condition}\n"
        "    )\n"
        f"  == count without (window) ({metric}{{{selector}}})\n"
        ")\n"
    )


class _Alerts:
    """Builds the alert rules of one model with its labels, severities and runbook links."""

    def __init__(self, model: ModelRules) -> None:
        self.model = model
        self.alerting = model.alerting
        self.model_matcher = matchers(("model", "=", model.model))

    def alert(
        self,
        name: str,
        expr: str,
        for_: float | str,
        level: str,
        summary: str,
        description: str,
        feature: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        fixed = {"model": self.model.model, **(labels or {})}
        if feature is not None:
            fixed["feature"] = feature
        return {
            "alert": name,
            "expr": expr,
            "for": for_ if isinstance(for_, str) else format_duration(for_),
            "labels": _labels(self.alerting, level, fixed),
            "annotations": _annotations(self.alerting, name, summary, description),
        }

    def drift(self) -> list[dict[str, Any]]:
        """The gates' recording rules, then warning, critical, prediction, KS and fleet drift.

        One gate per z the alerts use (defaults and overrides), recorded in the alerts'
        group so they read the multipliers of the same evaluation.
        """
        overridden = [name for name, _ in self.alerting.overrides]
        zs = set()
        for t in (self.alerting.defaults, *(t for _, t in self.alerting.overrides)):
            zs.add(t.z("warning"))
            if t.page:
                zs.add(t.z("critical"))
        rules = readiness_records(self.model.model)
        rules += [gate_record(self.model.model, z) for z in sorted(zs)]
        rules += self._drift_set(None, self.alerting.defaults, overridden, self.model.fields)
        for name, thresholds in self.alerting.overrides:
            fields = tuple(f for f in self.model.fields if f.name == name)
            rules += self._drift_set(name, thresholds, [], fields)
        return rules

    def _drift_set(
        self,
        feature: str | None,
        t: AlertThresholds,
        exclude: Sequence[str],
        fields: Sequence[FieldSpec],
    ) -> list[dict[str, Any]]:
        def selector(*extra: tuple[str, str, str]) -> str:
            pairs = [("model", "=", self.model.model), *extra]
            if feature is not None:
                pairs.append(("feature", "=", feature))
            pairs += [("feature", "!=", name) for name in exclude]
            return matchers(*pairs)

        roles = {f.role for f in fields}
        numeric = any(f.type == "numeric" for f in fields)
        warning_text = gate_text(t.significance_warning, t.noise_floor_warning)
        rules = []
        if roles & set(_FEATURE_ROLES.split("|")):
            s = selector(("role", "=~", _FEATURE_ROLES))
            warning = psi_condition(
                s, self.model.model, t.psi_warning, t.z("warning"), t.noise_floor_warning
            )
            rules.append(
                self.alert(
                    "DriftgaugeFeatureDriftWarning",
                    _agreement(READY, s, warning),
                    t.for_warning,
                    "warning",
                    "Feature {{ $labels.feature }} of model {{ $labels.model }}{{ with $labels.version }} version {{ . }}{{ end }} is drifting",
                    'PSI of {{ $labels.role }} feature {{ $labels.feature }} (model {{ $labels.model }}{{ with $labels.version }} version {{ . }}{{ end }}, instance {{ $labels.instance }}) is at least {{ $value | printf "%.3f" }} in every window with enough observations, '
                    f"above {num(t.psi_warning)}{warning_text} in each.",
                    feature,
                )
            )
            if t.page:
                rules.append(
                    self.alert(
                        "DriftgaugeFeatureDriftCritical",
                        _agreement(
                            READY,
                            s,
                            psi_condition(
                                s,
                                self.model.model,
                                t.psi_critical,
                                t.z("critical"),
                                t.noise_floor_critical,
                            ),
                        ),
                        t.for_critical,
                        "critical",
                        "Feature {{ $labels.feature }} of model {{ $labels.model }}{{ with $labels.version }} version {{ . }}{{ end }} has drifted strongly",
                        'PSI of {{ $labels.role }} feature {{ $labels.feature }} (model {{ $labels.model }}{{ with $labels.version }} version {{ . }}{{ end }}, instance {{ $labels.instance }}) is at least {{ $value | printf "%.3f" }} in every window with enough observations, '
                        f"above {num(t.psi_critical)}"
                        f"{gate_text(t.significance_critical, t.noise_floor_critical)} in each.",
                        feature,
                    )
                )
        if "prediction" in roles:
            s = selector(("role", "=", "prediction"))
            rules.append(
                self.alert(
                    "DriftgaugePredictionDrift",
                    _agreement(
                        READY,
                        s,
                        psi_condition(
                            s,
                            self.model.model,
                            t.psi_warning,
                            t.z("warning"),
                            t.noise_floor_warning,
                        ),
                    ),
                    t.for_warning,
                    "warning",
                    "Predictions of model {{ $labels.model }}{{ with $labels.version }} version {{ . }}{{ end }} are drifting ({{ $labels.feature }})",
                    'PSI of prediction {{ $labels.feature }} (model {{ $labels.model }}{{ with $labels.version }} version {{ . }}{{ end }}, instance {{ $labels.instance }}) is at least {{ $value | printf "%.3f" }} in every window with enough observations, '
                    f"above {num(t.psi_warning)}{warning_text} in each.",
                    feature,
                )
            )
        if numeric or feature is None:
            # KS gauges exist for numeric fields only, so categorical ones never take part.
            s = selector(("role", "=~", "input|prediction|multivariate"))
            condition = (
                f"driftgauge_ks_statistic{{{s}}} > {num(t.ks_statistic)}\n"
                f"      and driftgauge_ks_pvalue{{{s}}} < {num(t.ks_pvalue)}"
            )
            rules.append(
                self.alert(
                    "DriftgaugeFeatureKSDrift",
                    _agreement("driftgauge_ks_statistic", s, condition),
                    t.for_warning,
                    "warning",
                    "Distribution of {{ $labels.feature }} (model {{ $labels.model }}{{ with $labels.version }} version {{ . }}{{ end }}) differs from the baseline",
                    'Kolmogorov-Smirnov D of {{ $labels.role }} {{ $labels.feature }} (model {{ $labels.model }}{{ with $labels.version }} version {{ . }}{{ end }}, instance {{ $labels.instance }}) is at least {{ $value | printf "%.3f" }} in every window with enough observations, '
                    f"above {num(t.ks_statistic)} with p < {num(t.ks_pvalue)} in each.",
                    feature,
                )
            )
        if roles & set(_FEATURE_ROLES.split("|")):
            s = selector(("role", "=~", _FEATURE_ROLES))
            gate = gate_selector(self.model.model, t.z("warning"))
            floor = (
                f"\nand driftgauge:fleet_psi:rate5m{{{s}}}"
                f" > {num(t.noise_floor_warning)} * driftgauge:fleet_psi_noise_floor:rate5m{{{s}}}"
                if t.noise_floor_warning > 0
                else ""
            )
            rules.append(
                self.alert(
                    "DriftgaugeFleetFeatureDrift",
                    f"driftgauge:fleet_psi:rate5m{{{s}}} > {num(t.psi_warning)}\n"
                    f"and driftgauge:fleet_psi:rate5m{{{s}}}\n"
                    f"  > driftgauge:fleet_psi_noise_floor:rate5m{{{s}}}\n"
                    f"    * on (model, feature, role) group_left max by (model, feature, role) ({gate})"
                    f"{floor}\n"
                    f"and driftgauge:fleet_observations:increase5m{{{s}}}"
                    f" >= {self.model.min_observations}\n"
                    f"and driftgauge:fleet_draws:increase5m{{{s}}}\n"
                    "  >= on (model, feature, role) group_left max by (model, feature, role)"
                    f" (driftgauge:psi_min_observations{{{self.model_matcher}}})\n",
                    t.for_warning,
                    "warning",
                    "Feature {{ $labels.feature }} is drifting across the fleet of model {{ $labels.model }}",
                    'Fleet-wide PSI of {{ $labels.role }} feature {{ $labels.feature }} over all replicas of model {{ $labels.model }} is {{ $value | printf "%.3f" }} over the last 5m, '
                    f"above {num(t.psi_warning)}{warning_text}.",
                    feature,
                )
            )
        return rules


# -- the other alerts and the recording rules: the shipped ones (tables.py), for one model


def _fill(template: str, matcher: str) -> str:
    return template.replace("{M}", "{" + matcher + "}").replace("{M, ", "{" + matcher + ", ")


def _fixed(
    alerts: _Alerts,
    table: Sequence[tuple[str, ...]],
    labels: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The alerts of ``table`` selecting the model of ``alerts``."""
    matcher = alerts.model_matcher
    return [
        alerts.alert(name, _fill(expr, matcher), for_, level, summary, description, labels=labels)
        for name, expr, for_, level, summary, description in table
    ]


def _state(model: ModelRules) -> list[tuple[str, ...]]:
    """The state alerts (tables.STATE) for the model's state.interval: a range of 10m, or of
    two intervals where longer (with 10m, an interval past 10m never fired), and 5m more."""
    seconds = max(600, math.ceil(2 * model.state_interval))
    spans = {"{R}": format_duration(seconds), "{F}": format_duration(seconds + 300)}
    rows: list[tuple[str, ...]] = []
    for row in STATE:
        cells: tuple[str, ...] = row
        for placeholder, span in spans.items():
            cells = tuple(cell.replace(placeholder, span) for cell in cells)
        rows.append(cells)
    return rows


def model_groups(model: ModelRules) -> list[dict[str, Any]]:
    """The rule groups of one model: fleet recording rules, drift, version excess, data quality,
    state snapshots, performance.

    The service alerts are the sidecar's (:func:`render_rules`), not the model's.
    """
    alerts = _Alerts(model)

    def records(table: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
        # The model label too: promtool refuses two rules of one name and the same labels.
        return [
            {
                "record": name,
                "expr": _fill(expr, alerts.model_matcher),
                "labels": {"model": model.model},
            }
            for name, expr in table
        ]

    suffix = f":{model.model}"
    return [
        {"name": f"driftgauge-fleet{suffix}", "interval": "30s", "rules": records(FLEET_RECORDS)},
        {"name": f"driftgauge-drift{suffix}", "rules": alerts.drift()},
        {"name": f"driftgauge-versions{suffix}", "rules": records(VERSION_RECORDS)},
        {"name": f"driftgauge-data-quality{suffix}", "rules": _fixed(alerts, QUALITY)},
        {"name": f"driftgauge-state{suffix}", "rules": _fixed(alerts, _state(model))},
        {
            "name": f"driftgauge-performance{suffix}",
            "rules": [
                rule
                for metric, row in PERFORMANCE
                for rule in _fixed(alerts, [row], labels={"metric": metric})
            ],
        },
    ]


def _labels(alerting: AlertingConfig, level: str, fixed: Mapping[str, str]) -> dict[str, str]:
    """An alert's labels: severity, the configured extra labels and ``fixed``, sorted.

    Prometheus expands alert label values as Go templates, so every value is
    written as template text that expands to itself: a configured
    ``team: "ml {{ platform }}"`` stays that text instead of failing to load.
    """
    severity = alerting.severity_critical if level == "critical" else alerting.severity_warning
    labels = {"severity": severity, **dict(alerting.labels), **fixed}
    return {name: go_template_text(value) for name, value in sorted(labels.items())}


def _annotations(
    alerting: AlertingConfig, name: str, summary: str, description: str
) -> dict[str, str]:
    """Summary and description (templates of their own) and the runbook link, escaped as text."""
    return {
        "summary": summary,
        "description": description,
        "runbook_url": go_template_text(alerting.runbook(name)),
    }


# How long after its last scrape a sidecar still counts as one of the config's (see
# _sidecar_group): DriftgaugeSidecarDown resolves by itself after a day down.
SIDECAR_MEMORY = "1d"


def _sidecar_group(models: Sequence[ModelRules]) -> dict[str, Any]:
    """The sidecar's alerts, once per config whatever models it serves: DriftgaugeSidecarDown
    and the service alerts.

    ``up`` carries only the target's labels, so the rule keeps the targets of the
    scrape job that exported ``driftgauge_baseline_info`` of the config's first model
    (every sidecar of the config exports it) within :data:`SIDECAR_MEMORY`: with the
    rules of two configs loaded, a sidecar that goes down raises one alert, its own
    config's, with that config's labels.  The service alerts, on series without a model
    label (the proxy's requests and latencies, the source's drops and sampling rate), keep
    that config's sidecars the same way, and name its models in their description.
    """
    alerting = models[0].alerting
    job = matchers(("job", "=", alerting.scrape_job))
    served = matchers(("job", "=", alerting.scrape_job), ("model", "=", models[0].model))
    names = ", ".join(go_template_text(m.model) for m in models)
    serves = f"model{'s' if len(models) > 1 else ''} {names}"
    rule = {
        "alert": "DriftgaugeSidecarDown",
        "expr": (
            f"up{{{job}}} == 0\n"
            "and on (job, instance)\n"
            f"  last_over_time(driftgauge_baseline_info{{{served}}}[{SIDECAR_MEMORY}])\n"
        ),
        "for": "2m",
        "labels": _labels(alerting, "critical", {}),
        "annotations": _annotations(
            alerting,
            "DriftgaugeSidecarDown",
            "driftgauge sidecar {{ $labels.instance }} is down",
            "Prometheus could not scrape the driftgauge sidecar at {{ $labels.instance }} "
            f"({serves}) for 2 minutes: no drift, "
            "data-quality or service metrics are coming from it.",
        ),
    }
    of_config = f" and on (job, instance) driftgauge_baseline_info{{{served}}}"
    service = [
        {
            "alert": name,
            "expr": expr.replace("{S}", of_config),
            "for": for_,
            "labels": _labels(alerting, level, {}),
            "annotations": _annotations(
                alerting,
                name,
                summary,
                f"{description} The sidecar serves {serves}.",
            ),
        }
        for name, expr, for_, level, summary, description in SERVICE
    ]
    return {"name": "driftgauge-sidecar", "rules": [rule, *service]}


def render_rules(models: Sequence[ModelRules]) -> dict[str, Any]:
    """The rules document (``groups:``) of a sidecar serving ``models``.

    The sidecar's group (sidecar down, upstream errors, added latency, drops, sampling)
    comes once, whatever the number of models, then each model's groups.
    """
    groups = [_sidecar_group(models)]
    for model in models:
        groups += model_groups(model)
    return {"groups": groups}
