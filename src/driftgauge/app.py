"""Wiring only: config + baseline → monitor, source, recompute loop and metrics listener.

Every long-lived piece is owned by an aiohttp ``cleanup_ctx`` and stored
under a typed ``web.AppKey``.  Background tasks keep a strong reference, are
cancelled with a message at shutdown, and a task that dies turns readiness
false and is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CollectorRegistry, ProcessCollector

from driftgauge.baseline import Baseline, check_against, load_baseline
from driftgauge.batcher import Batcher
from driftgauge.config import Config, TailConfig
from driftgauge.exposition import MonitorCollector, metrics_routes
from driftgauge.monitor import Monitor
from driftgauge.protocols import make_adapter
from driftgauge.sources.tail import TailSource

__all__ = ["Health", "Sidecar", "build_sidecar", "run_until_stopped"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Health:
    """What /readyz reports: the first statistics computed and no background task dead."""

    started: bool = False
    failed: list[str] = field(default_factory=list)

    def ready(self) -> tuple[bool, str]:
        if self.failed:
            return False, f"background task died: {', '.join(self.failed)}"
        if not self.started:
            return False, "starting"
        return True, "ok"


@dataclass(slots=True)
class Sidecar:
    """The running parts of one sidecar, for the CLI, the demo and tests."""

    config: Config
    monitor: Monitor
    batcher: Batcher
    registry: CollectorRegistry
    health: Health
    app: web.Application


MONITOR_KEY = web.AppKey("monitor", Monitor)
SIDECAR_KEY = web.AppKey("sidecar", Sidecar)


def _supervise(name: str, health: Health, coroutine: Awaitable[None]) -> asyncio.Task[None]:
    task = asyncio.ensure_future(coroutine)

    def done(finished: asyncio.Task[None]) -> None:
        if finished.cancelled():
            return
        error = finished.exception()
        health.failed.append(name)
        if error is not None:
            log.error("background task %s died: %r", name, error)
        else:
            log.error("background task %s stopped unexpectedly", name)

    task.add_done_callback(done)
    return task


async def _cancel(task: asyncio.Task[None], name: str) -> None:
    task.cancel(f"driftgauge shutting down: {name}")
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=5.0)


def build_sidecar(
    config: Config, baseline: Baseline | None = None, registry: CollectorRegistry | None = None
) -> Sidecar:
    """Everything but the listeners; loads and checks the baseline unless one is given."""
    if baseline is None:
        baseline = load_baseline(config.baseline)
        check_against(baseline, config, config.baseline)
    monitor = Monitor(config, baseline)
    adapter = make_adapter(config.protocol, config.features, config.predictions)
    batcher = Batcher(adapter, monitor)
    registry = registry if registry is not None else CollectorRegistry()
    registry.register(MonitorCollector(monitor))
    ProcessCollector(registry=registry)
    health = Health()
    app = web.Application()
    sidecar = Sidecar(config, monitor, batcher, registry, health, app)
    app[MONITOR_KEY] = monitor
    app[SIDECAR_KEY] = sidecar
    app.add_routes(metrics_routes(registry, config.model, health.ready))
    app.cleanup_ctx.append(_recompute_ctx)
    if isinstance(config.source, TailConfig):
        app.cleanup_ctx.append(_tail_ctx)
    return sidecar


async def _recompute_loop(sidecar: Sidecar) -> None:
    interval = sidecar.config.metrics.recompute_interval
    while True:
        await asyncio.to_thread(sidecar.monitor.compute)
        sidecar.health.started = True
        await asyncio.sleep(interval)


async def _recompute_ctx(app: web.Application) -> AsyncIterator[None]:
    sidecar = app[SIDECAR_KEY]
    task = _supervise("recompute", sidecar.health, _recompute_loop(sidecar))
    yield
    await _cancel(task, "recompute")


async def _tail_ctx(app: web.Application) -> AsyncIterator[None]:
    sidecar = app[SIDECAR_KEY]
    assert isinstance(sidecar.config.source, TailConfig)
    source = TailSource(
        sidecar.config.source, sidecar.batcher.process, sidecar.monitor.count_parse_error
    )
    task = _supervise("tail", sidecar.health, source.run())
    yield
    await _cancel(task, "tail")


async def run_until_stopped(
    sidecar: Sidecar,
    stop: asyncio.Event | None = None,
    on_started: Callable[[int], None] | None = None,
) -> None:
    """Serve the metrics listener until SIGTERM/SIGINT (or ``stop``), then shut down cleanly."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    handled = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
            handled.append(signum)
    runner = web.AppRunner(sidecar.app, access_log=None, handle_signals=False)
    await runner.setup()
    host, port = sidecar.config.metrics.listen
    site = web.TCPSite(runner, host, port, reuse_address=True)
    try:
        await site.start()
        bound = runner.addresses[0][1] if runner.addresses else port
        log.info("metrics on http://%s:%s/metrics", host, bound)
        if on_started is not None:
            on_started(bound)
        await stop.wait()
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
        await runner.cleanup()
