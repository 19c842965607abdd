"""Config of the rules `driftgauge rules` renders: drift thresholds, `for:`, labels, overrides.

The ``alerting:`` section is optional; its defaults are the values of the
shipped ``alert_rules/driftgauge.rules.yml``, except ``for:``, which defaults
to the config's shortest window clamped to [1m, 15m] (a 1m window should not
wait 15m to report a drift that is already complete).

A PSI alert fires when PSI is above its effect-size floor (``psi``) and above
its noise floor times the χ² significance gate at ``significance`` (the
chance, per window, of a false alarm: z = Φ⁻¹(1 − significance), rounded to
two decimals as the rules write it); ``noise_floor``, off by default, adds a
fixed multiple of the noise floor on top (the rule before the gate).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from statistics import NormalDist
from typing import Any, Literal

from driftgauge.config.validation import Errors, parse_duration, section, string, url

__all__ = [
    "DEFAULT_RUNBOOK_URL",
    "AlertThresholds",
    "AlertingConfig",
    "default_for",
    "parse_alerting",
]

DEFAULT_RUNBOOK_URL = "https://github.com/driftgauge/driftgauge/blob/main/docs/runbook.md"
_FOR_MIN, _FOR_MAX = 60.0, 900.0
_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Labels the rules set themselves (or Prometheus does): extra labels may not replace them.
_RESERVED_LABELS = ("alertname", "severity", "model", "feature", "role", "window")
_THRESHOLD_KEYS = ("psi", "significance", "noise_floor", "ks", "for", "page")
Check = Callable[[Any, str], "float | None"]


@dataclass(frozen=True, slots=True)
class AlertThresholds:
    """When a field's drift alerts fire: PSI floors, significance gates, KS, ``for:``, paging."""

    psi_warning: float = 0.02  # effect-size floor: PSI of a ~0.15 sd normal shift
    psi_critical: float = 0.25
    significance_warning: float = 0.001  # z 3.09: the 99.9% χ² gate
    significance_critical: float = 0.0001  # z 3.72: the 99.99% χ² gate
    noise_floor_warning: float = 0.0  # an extra fixed multiple of the noise floor; 0: none
    noise_floor_critical: float = 0.0
    ks_statistic: float = 0.1
    ks_pvalue: float = 0.001
    for_warning: float = 900.0  # seconds
    for_critical: float = 900.0
    page: bool = True  # False: no critical drift alert, the warning only

    def z(self, level: Literal["warning", "critical"]) -> float:
        """The gate's z for ``level``: Φ⁻¹(1 − significance), to two decimals as the rules write it."""
        alpha = self.significance_warning if level == "warning" else self.significance_critical
        return round(NormalDist().inv_cdf(1.0 - alpha), 2)


@dataclass(frozen=True, slots=True)
class AlertingConfig:
    """The ``alerting:`` section: defaults for every field, per-field overrides, and labels."""

    defaults: AlertThresholds = field(default_factory=AlertThresholds)
    overrides: tuple[tuple[str, AlertThresholds], ...] = ()  # sorted by field name
    severity_warning: str = "warning"
    severity_critical: str = "critical"
    labels: tuple[tuple[str, str], ...] = ()  # sorted by label name
    runbook_url: str = DEFAULT_RUNBOOK_URL
    scrape_job: str = "driftgauge"

    def for_field(self, name: str) -> AlertThresholds:
        """The thresholds of field ``name``: its override, else the defaults."""
        return dict(self.overrides).get(name, self.defaults)

    def runbook(self, alert: str) -> str:
        return f"{self.runbook_url}#{alert.lower()}"


def default_for(window_seconds: Sequence[float]) -> float:
    """The default ``for:``: the shortest window, clamped to [1m, 15m]."""
    shortest = min(window_seconds, default=_FOR_MAX)
    return min(_FOR_MAX, max(_FOR_MIN, shortest))


def _number(low: float, high: float, errors: Errors) -> Check:
    def check(value: Any, where: str) -> float | None:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            errors.add(where, f"{value!r} is not a number from {low:g} to {high:g}")
            return None
        return float(value)

    return check


def _duration(errors: Errors) -> Check:
    def check(value: Any, where: str) -> float | None:
        try:
            return parse_duration(string(value))
        except ValueError as exc:
            errors.add(where, str(exc))
            return None

    return check


def _pair(
    value: Any, where: str, names: tuple[str, str], check: Check, errors: Errors
) -> dict[str, float]:
    """``{names[0]: ..., names[1]: ...}``, each value passed through ``check``."""
    table = section(value, where, names, errors)
    found = {}
    for name in names:
        if table.get(name) is not None:
            number = check(table[name], f"{where}.{name}")
            if number is not None:
                found[name] = number
    return found


def _thresholds(value: Any, where: str, base: AlertThresholds, errors: Errors) -> AlertThresholds:
    """``base`` with what ``value`` sets (psi, significance, noise_floor, ks, for, page)."""
    table = section(value, where, _THRESHOLD_KEYS, errors)
    pairs = {
        "psi": (("warning", "critical"), _number(0, 100, errors)),
        "significance": (("warning", "critical"), _number(1e-12, 0.1, errors)),
        "noise_floor": (("warning", "critical"), _number(0, 1000, errors)),
        "ks": (("statistic", "pvalue"), _number(1e-300, 1, errors)),
        "for": (("warning", "critical"), _duration(errors)),
    }
    changes: dict[str, Any] = {}
    for key, (names, check) in pairs.items():
        if key == "for" and isinstance(table.get("for"), str):  # one duration for both
            seconds = check(table["for"], f"{where}.for")
            if seconds is not None:
                changes["for_warning"] = changes["for_critical"] = seconds
            continue
        for name, number in _pair(table.get(key), f"{where}.{key}", names, check, errors).items():
            changes[f"{key}_{name}"] = number
    if table.get("page") is not None:
        if isinstance(table["page"], bool):
            changes["page"] = table["page"]
        else:
            errors.add(f"{where}.page", f"{table['page']!r} is not true or false")
    result = replace(base, **changes)
    if result.psi_warning > result.psi_critical:
        errors.add(
            f"{where}.psi",
            f"warning {result.psi_warning:g} is above critical {result.psi_critical:g}",
        )
    if result.significance_warning < result.significance_critical:
        errors.add(
            f"{where}.significance",
            f"warning {result.significance_warning:g} is below critical "
            f"{result.significance_critical:g} (the critical gate must be the stricter)",
        )
    return result


def _field_key(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if _LABEL_NAME.match(name) else f"{prefix}[{name!r}]"


def parse_alerting(
    value: Any, window_seconds: Sequence[float], field_names: Sequence[str], errors: Errors
) -> AlertingConfig:
    """Validate the ``alerting:`` section; every problem is added to ``errors`` with its key path."""
    keys = (*_THRESHOLD_KEYS, "severity", "labels", "runbook_url", "scrape_job", "features")
    table = section(value, "alerting", keys, errors)
    seconds = default_for(window_seconds)
    base = AlertThresholds(for_warning=seconds, for_critical=seconds)
    defaults = _thresholds(
        {k: table[k] for k in _THRESHOLD_KEYS if k in table}, "alerting", base, errors
    )
    severity = section(table.get("severity"), "alerting.severity", ("warning", "critical"), errors)
    names = {}
    for level in ("warning", "critical"):
        try:
            names[level] = string(severity.get(level, level))
        except ValueError as exc:
            errors.add(f"alerting.severity.{level}", str(exc))
            names[level] = level
    labels = table.get("labels") or {}
    if not isinstance(labels, Mapping):
        errors.add(
            "alerting.labels", f"expected a mapping of label names to values, got {labels!r}"
        )
        labels = {}
    extra = []
    for name, text in labels.items():
        where = f"alerting.labels.{name}"
        if not isinstance(name, str) or not _LABEL_NAME.match(name) or name.startswith("__"):
            errors.add(where, f"{name!r} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*, no __)")
        elif name in _RESERVED_LABELS:
            errors.add(where, f"{name!r} is set by the rules themselves")
        elif isinstance(text, bool) or not isinstance(text, str | int | float) or text == "":
            errors.add(where, f"{text!r} is not a non-empty string")
        else:
            extra.append((name, str(text)))
    runbook = DEFAULT_RUNBOOK_URL
    if table.get("runbook_url") is not None:
        try:
            runbook = url(table["runbook_url"])
            if "#" in runbook:
                errors.add("alerting.runbook_url", f"{runbook!r} must not hold a #fragment")
        except ValueError as exc:
            errors.add("alerting.runbook_url", str(exc))
    job = "driftgauge"
    if table.get("scrape_job") is not None:
        try:
            job = string(table["scrape_job"])
        except ValueError as exc:
            errors.add("alerting.scrape_job", str(exc))
    features = table.get("features") or {}
    overrides = []
    if not isinstance(features, Mapping):
        errors.add("alerting.features", f"expected a mapping of field names, got {features!r}")
        features = {}
    for name in features:
        where = _field_key("alerting.features", str(name))
        if name not in field_names:
            errors.add(where, "not a configured feature or prediction")
            continue
        overrides.append((name, _thresholds(features[name], where, defaults, errors)))
    return AlertingConfig(
        defaults=defaults,
        overrides=tuple(sorted(overrides, key=lambda item: item[0])),
        severity_warning=names["warning"],
        severity_critical=names["critical"],
        labels=tuple(sorted(extra)),
        runbook_url=runbook,
        scrape_job=job,
    )
