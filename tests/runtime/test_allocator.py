"""The malloc arena bound (applied through glibc's mallopt, an explicit environment wins) and
the startup objects frozen out of the garbage collector's passes."""

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


FREEZE_PROBE = """
import gc
from driftgauge.runtime.allocator import freeze_startup_objects
built = [[i] for i in range(1000)]  # lists: always tracked by the collector
freeze_startup_objects()
later = [[i] for i in range(10)]
tracked = {id(o) for generation in (0, 1, 2) for o in gc.get_objects(generation)}
print(gc.get_freeze_count() >= 1000, any(id(o) in tracked for o in built), all(id(o) in tracked for o in later))
"""


def test_objects_built_before_the_freeze_leave_the_collectors_passes_later_ones_do_not() -> None:
    done = subprocess.run(
        [sys.executable, "-c", FREEZE_PROBE], capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["True", "False", "True"]
