"""The malloc arena bound: applied through glibc's mallopt, and an explicit environment wins."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from driftgauge.runtime.allocator import limit_arenas

PROBE = "from driftgauge.runtime.allocator import limit_arenas; print(limit_arenas())"


def run(env: dict[str, str]) -> str:
    return subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's arenas exist on Linux only")
def test_limit_arenas_applies_on_glibc() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    assert run(env) == "True"


def test_an_explicit_malloc_arena_max_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_arenas() is False
    assert run(dict(os.environ)) == "False"
