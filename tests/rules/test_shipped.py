"""The Prometheus rules: promtool checks and unit tests, annotations and runbook anchors."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.rules.support import promtool

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "alert_rules" / "driftgauge.rules.yml"
RULE_TESTS = sorted((ROOT / "alert_rules" / "tests").glob("*_test.yml"))
RUNBOOK = ROOT / "docs" / "runbook.md"


def _alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_check_rules_passes() -> None:
    """`promtool check rules` accepts the rules file."""
    result = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    """Every promtool unit test file passes."""
    result = subprocess.run(
        [promtool(), "test", "rules", *map(str, RULE_TESTS)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS)


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    """Each alert has a unit test where it fires and one where it stays silent."""
    fired: set[str] = set()
    silent: set[str] = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {rule["alert"] for rule in _alerts()}
    assert names - fired == set()
    assert names - silent == set()


def test_alerts_follow_the_naming_and_annotation_conventions() -> None:
    """CamelCase Driftgauge names, a severity, and summary/description/runbook_url."""
    runbook = RUNBOOK.read_text()
    anchors = {
        re.sub(r"[^a-z0-9]+", "-", m.lower()).strip("-")
        for m in re.findall(r"^## (.+)$", runbook, re.M)
    }
    for rule in _alerts():
        name = rule["alert"]
        assert re.fullmatch(r"Driftgauge[A-Z][A-Za-z]+", name), name
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        annotations = rule["annotations"]
        assert {"summary", "description", "runbook_url"} <= set(annotations), name
        text = annotations["summary"] + annotations["description"]
        assert "{{ $labels.model }}" in text or "{{ $labels.instance }}" in text, name
        if "driftgauge_psi" in rule["expr"] or "feature" in text:
            assert "{{ $labels.feature }}" in text, name
        if (
            "fleet" not in name.lower()
            and name != "DriftgaugeSidecarDown"
            and "model" in rule["expr"] + text
        ):
            assert "{{ $labels.model }}" in text, name
        anchor = annotations["runbook_url"].rsplit("#", 1)[1]
        assert anchor == name.lower(), name
        assert anchor in anchors, f"docs/runbook.md has no section for {name}"
