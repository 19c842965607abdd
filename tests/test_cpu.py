"""numpy's AVX-512 sort left out on AMD Zen 4 only, before numpy is imported, never over the
user's setting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from driftgauge.cpu import VARIABLE, zen4

SRC = Path(__file__).resolve().parents[1] / "src"
ZEN4 = "vendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\nflags\t\t: fpu sse avx2 avx512f avx512bw\n"
ZEN3 = "vendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\nflags\t\t: fpu sse avx2\n"
ZEN5 = "vendor_id\t: AuthenticAMD\ncpu family\t: 26\nflags\t\t: fpu avx2 avx512f\n"
INTEL = "vendor_id\t: GenuineIntel\ncpu family\t: 6\nflags\t\t: fpu avx2 avx512f\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (ZEN4, True),
        (ZEN4 + "\n" + INTEL, True),  # the first processor's block decides
        (INTEL + "\n" + ZEN4, False),
        (ZEN3, False),
        (ZEN5, False),
        (INTEL, False),
        ("", False),
    ],
)
def test_only_zen4_is_zen4(text: str, expected: bool) -> None:
    assert zen4(text) is expected


def _run(code: str, cpuinfo: Path, **env: str) -> str:
    """``code`` in a fresh interpreter with driftgauge/cpu.py loaded by path (not the package,
    whose import applies the real /proc/cpuinfo), ``cpu`` bound to it."""
    load = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('cpu', {str(SRC / 'driftgauge' / 'cpu.py')!r})\n"
        "cpu = importlib.util.module_from_spec(spec); spec.loader.exec_module(cpu)\n"
    )
    environment = {k: v for k, v in os.environ.items() if k != VARIABLE} | env
    done = subprocess.run(
        [sys.executable, "-c", load + code.replace("CPUINFO", repr(str(cpuinfo)))],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@pytest.mark.parametrize(("text", "set_it"), [(ZEN4, True), (ZEN3, False), (INTEL, False)])
def test_zen4_leaves_numpys_avx512_targets_out(tmp_path: Path, text: str, set_it: bool) -> None:
    """On Zen 4 numpy then dispatches no AVX-512 sort (its X86_V4 target is off); elsewhere, as
    it chooses."""
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(text)
    out = _run(
        "import os\nprint(cpu.prefer_avx2_sort(CPUINFO), os.environ.get('NPY_DISABLE_CPU_FEATURES'))\n"
        "import numpy as np\nprint(np._core._multiarray_umath.__cpu_features__.get('X86_V4'))",
        cpuinfo,
    )
    first, dispatch = out.splitlines()
    assert first.startswith(str(set_it))
    if set_it:
        assert "X86_V4" in first and dispatch == "False"


def test_the_users_setting_and_an_imported_numpy_are_left_alone(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(ZEN4)
    user = _run(
        "import os\nprint(cpu.prefer_avx2_sort(CPUINFO), repr(os.environ[cpu.VARIABLE]))",
        cpuinfo,
        NPY_DISABLE_CPU_FEATURES="",
    )
    assert user == "False ''"
    late = _run(
        "import numpy, os\nprint(cpu.prefer_avx2_sort(CPUINFO), cpu.VARIABLE in os.environ)",
        cpuinfo,
    )
    assert late == "False False"
    missing = _run("print(cpu.prefer_avx2_sort(CPUINFO + '-none'))", cpuinfo)
    assert missing == "False"
