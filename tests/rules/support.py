"""What the promtool tests of the rendered rules and dashboards share."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from driftgauge.rules.promql import promql_string
from driftgauge.rules.writing import dump_yaml


def promtool() -> str:
    path = shutil.which("promtool")
    assert path is not None, "promtool missing: scripts/test.sh installs the prometheus package"
    return path


def series(metric: str, labels: dict[str, str], values: str) -> dict[str, str]:
    """A promtool input series: ``metric{labels}`` (escaped) with expanding ``values``."""
    text = ", ".join(f"{k}={promql_string(v)}" for k, v in labels.items())
    return {"series": f"{metric}{{{text}}}", "values": values}


def expand(template: str, labels: dict[str, str], value: float) -> str:
    """The template forms the annotations use, expanded as Prometheus does: labels, string
    constants (how "{{" is written as text), ``$value`` formats, and ``{{ with $labels.X }}…
    {{ . }}…{{ end }}`` (nothing when the series has no such label)."""

    def scoped(match: re.Match[str]) -> str:
        label = labels.get(match.group(1), "")
        return match.group(2).replace("{{ . }}", label) if label else ""

    def one(match: re.Match[str]) -> str:
        action = match.group(1).strip()
        if action.startswith('"'):
            return str(yaml.safe_load(action))
        if action.startswith("$labels."):
            return labels.get(action.removeprefix("$labels."), "")
        if action == "$value | humanizePercentage":
            return f"{value * 100:.4g}%"
        if action == "$value | humanizeDuration":
            assert 0.001 <= value < 1, "only milliseconds are expanded here"
            return f"{value * 1000:.4g}ms"
        printf = re.fullmatch(r'\$value \| printf "(%[.0-9]*[fg])"', action)
        assert printf, action
        return printf.group(1) % value

    template = re.sub(r"\{\{ with \$labels\.(\w+) \}\}(.*?)\{\{ end \}\}", scoped, template)
    return re.sub(r"\{\{(.*?)\}\}", one, template)


def promtool_test(
    directory: Path, rule_files: list[str], tests: list[dict[str, Any]], interval: str = "1m"
) -> None:
    """Run ``promtool test rules`` on ``tests`` over ``rule_files`` (names in ``directory``),
    evaluated every ``interval``."""
    document = {"rule_files": rule_files, "evaluation_interval": interval, "tests": tests}
    (directory / "test.yml").write_text(dump_yaml(document), encoding="utf-8")
    result = subprocess.run(
        [promtool(), "test", "rules", "test.yml"],
        capture_output=True,
        text=True,
        check=False,
        cwd=directory,
    )
    assert result.returncode == 0, result.stdout + result.stderr
