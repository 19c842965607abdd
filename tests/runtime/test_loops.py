"""`serve` runs on uvloop when it is installed, on asyncio's loop with `--loop asyncio`, and says
which in its log."""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from driftgauge.baseline import Baseline
from driftgauge.config import Config
from driftgauge.exceptions import DriftgaugeError
from driftgauge.runtime import loops
from tests.helpers import answers_ok, wait_for

uvloop = pytest.importorskip("uvloop")


def test_auto_picks_uvloop_when_installed_and_asyncio_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """auto is uvloop when importable; without it, asyncio's loop; asyncio never asks."""
    assert loops.loop_factory("auto") == ("uvloop", uvloop.new_event_loop)
    assert loops.loop_factory("asyncio") == ("asyncio", None)
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
    assert loops.loop_factory("auto") == ("asyncio", None)
    with pytest.raises(DriftgaugeError, match="uvloop is not installed"):
        loops.loop_factory("uvloop")


@pytest.mark.parametrize(("choice", "module"), [("uvloop", "uvloop"), ("asyncio", "asyncio")])
def test_run_uses_the_chosen_loop_and_logs_it(
    caplog: pytest.LogCaptureFixture, choice: loops.LoopChoice, module: str
) -> None:
    """The coroutine runs on the chosen loop class; the log names it."""

    async def loop_module() -> str:
        return type(asyncio.get_running_loop()).__module__

    with caplog.at_level(logging.INFO, logger="driftgauge"):
        assert loops.run(loop_module, choice).startswith(module)
    assert f"event loop: {choice}" in caplog.text


@pytest.mark.parametrize(("argument", "expected"), [(None, "uvloop"), ("asyncio", "asyncio")])
def test_serve_logs_its_event_loop(
    make_config: Callable[..., Config],
    make_baseline: Callable[[Config, int], Baseline],
    argument: str | None,
    expected: str,
) -> None:
    """`serve` (default auto) logs `event loop: uvloop`; `--loop asyncio` logs asyncio's."""
    config = make_config()
    make_baseline(config, 500)
    assert config.path is not None
    args = [sys.executable, "-m", "driftgauge.cli", "serve", "-c", str(config.path)]
    if argument is not None:
        args += ["--loop", argument]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = config.metrics.listen[1]
        wait_for(
            lambda: process.poll() is None and answers_ok(f"http://127.0.0.1:{port}/metrics"),
            what="serve's /metrics",
        )
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert f"event loop: {expected}" in stderr


def test_no_code_sets_an_event_loop_policy() -> None:
    """The loop is chosen only by the runner's factory: no global policy is set in the package."""
    source = Path(loops.__file__).resolve().parent.parent
    offenders = [
        path.name
        for path in source.rglob("*.py")
        if "set_event_loop_policy" in path.read_text(encoding="utf-8")
    ]
    assert offenders == []
