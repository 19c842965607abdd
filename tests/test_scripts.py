"""scripts/: what a new user runs first, with the interpreter and venv it finds."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_setup_recreates_a_venv_that_an_earlier_run_left_without_pip(tmp_path: Path) -> None:
    """A .venv whose python has no pip (Debian's venv without python3-venv leaves one) is made again."""
    shutil.copytree(ROOT / "scripts", tmp_path / "scripts")
    log = tmp_path / "calls.log"
    # The venv python an interrupted `python3 -m venv` left: no pip until venv runs again.
    _executable(
        tmp_path / ".venv" / "bin" / "python",
        f"""#!/bin/sh
if [ "$1 $2" = "-m pip" ] && [ ! -e {tmp_path}/pip ]; then
  echo "No module named pip" >&2; exit 1
fi
echo "venv python $*" >> {log}
""",
    )
    system_python = _executable(
        tmp_path / "python3",
        f"""#!/bin/sh
if [ "$1 $2" = "-m venv" ]; then touch {tmp_path}/pip; echo "venv $3" >> {log}; exit 0; fi
exec {sys.executable} "$@"
""",
    )
    result = subprocess.run(
        ["bash", str(tmp_path / "scripts" / "setup.sh"), "fast"],
        env=os.environ | {"PYTHON": str(system_python)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    calls = log.read_text(encoding="utf-8").splitlines()
    assert calls[0] == "venv .venv"
    assert calls[-1].startswith("venv python -m pip install") and calls[-1].endswith("-e .[fast]")
