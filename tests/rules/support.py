"""What the promtool tests of the rendered rules and dashboards share."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

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


def promtool_test(directory: Path, rule_files: list[str], tests: list[dict[str, Any]]) -> None:
    """Run ``promtool test rules`` on ``tests`` over ``rule_files`` (names in ``directory``)."""
    document = {"rule_files": rule_files, "evaluation_interval": "1m", "tests": tests}
    (directory / "test.yml").write_text(dump_yaml(document), encoding="utf-8")
    result = subprocess.run(
        [promtool(), "test", "rules", "test.yml"],
        capture_output=True,
        text=True,
        check=False,
        cwd=directory,
    )
    assert result.returncode == 0, result.stdout + result.stderr
