"""The import contract (pyproject's [tool.importlinter]) holds, and it does catch a wrong-way import."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).with_name("lint-imports")


def lint(source: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` against the package found under ``source``, with the project's contracts."""
    env = {**os.environ, "PYTHONPATH": str(source)}
    return subprocess.run(
        [str(LINT), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=source,
    )


def test_the_package_keeps_every_contract() -> None:
    """Every layer imports only from the layers below it."""
    result = lint(ROOT / "src")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_wrong_way_import_breaks_the_layers_contract(tmp_path: Path) -> None:
    """A sketch importing the exposition layer fails the check, naming both modules."""
    shutil.copytree(ROOT / "src" / "driftgauge", tmp_path / "driftgauge")
    summary = tmp_path / "driftgauge" / "sketches" / "summary.py"
    text = summary.read_text(encoding="utf-8")
    summary.write_text(
        text.replace(
            "import datasketches as ds",
            "import datasketches as ds\nimport driftgauge.exposition.text",
            1,
        ),
        encoding="utf-8",
    )
    result = lint(tmp_path)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout
    assert "driftgauge.sketches.summary -> driftgauge.exposition.text" in result.stdout
