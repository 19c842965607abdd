"""Wiring only: config + baseline → monitor, source, recompute loop and metrics listener.

Every long-lived piece is owned by an aiohttp ``cleanup_ctx`` and stored
under a typed ``web.AppKey``.  Background tasks keep a strong reference, are
cancelled with a message at shutdown, and a task that dies turns readiness
false and is logged, as does a tailer while it cannot read its log or offset.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from aiohttp import ClientError, ClientSession, ClientTimeout, web
from prometheus_client import ProcessCollector

from driftgauge.baseline import Baseline, load_served
from driftgauge.config import CloudEventsConfig, Config, ProxyConfig, TailConfig
from driftgauge.config.sources import proxy_engine
from driftgauge.exposition import catalogue
from driftgauge.exposition.collector import (
    MetricsRegistry,
    MonitorCollector,
    RenderedSnapshot,
    feedback_routes,
    metrics_routes,
    model_feedback_routes,
)
from driftgauge.exposition.models import ModelsCollector
from driftgauge.exposition.proxy import ProxyMetrics
from driftgauge.exposition.source import SourceCollector
from driftgauge.exposition.state import SaveFailuresCollector
from driftgauge.monitor.batch import MAX_BODY_BYTES, Batcher
from driftgauge.monitor.model import Monitor
from driftgauge.monitor.route import Router
from driftgauge.monitor.versions import ModelVersions
from driftgauge.protocols import make_adapter
from driftgauge.runtime.consumer import BEHIND_SECONDS, consume
from driftgauge.runtime.state import StateStore, stray_snapshots
from driftgauge.sources.cloudevents import DROP_REASONS as CLOUDEVENTS_DROPS
from driftgauge.sources.cloudevents import ERROR_REASONS as CLOUDEVENTS_REASONS
from driftgauge.sources.cloudevents import CloudEventsSource
from driftgauge.sources.label_lines import LABEL_REASONS, label_line
from driftgauge.sources.proxy import DROP_REASONS as PROXY_DROPS
from driftgauge.sources.proxy import ERROR_REASONS as PROXY_REASONS
from driftgauge.sources.proxy import ProxyServer, RecordQueue
from driftgauge.sources.sampling import SAMPLED, Sampler
from driftgauge.sources.serverlog import ServerLog
from driftgauge.sources.tail import ERROR_REASONS as TAIL_REASONS
from driftgauge.sources.tail import TailSource
from driftgauge.typing import Record

if TYPE_CHECKING:
    from driftgauge.sources.proxy.native import NativeProxy

__all__ = ["Health", "ShutdownReport", "Sidecar", "build_sidecar", "run_until_stopped"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Health:
    """What /readyz reports: started, no background task dead, upstream reachable, not stopping,
    no tailer stalled."""

    started: bool = False
    stopping: bool = False
    upstream_ok: bool | None = None  # None: no upstream (tail source)
    failed: list[str] = field(default_factory=list)
    stalled: dict[str, str] = field(default_factory=dict)  # a tailer that cannot read, and why

    def stall(self, name: str, reason: str | None) -> None:
        """``name`` (a tailer) cannot read, and why; None: it reads again."""
        if reason is None:
            self.stalled.pop(name, None)
        else:
            self.stalled[name] = reason

    def ready(self) -> tuple[bool, str]:
        if self.stopping:
            return False, "shutting down"
        if self.failed:
            return False, f"background task died: {', '.join(self.failed)}"
        if not self.started:
            return False, "starting"
        if self.upstream_ok is False:
            return False, "upstream model server not ready"
        if self.stalled:
            return False, "; ".join(f"{name}: {why}" for name, why in self.stalled.items())
        return True, "ok"


@dataclass(slots=True)
class ShutdownReport:
    """What a shutdown did, logged as one line once the sidecar stopped."""

    finished: int | None = None  # in-flight proxied requests that completed (None: no proxy)
    cut_off: int = 0  # ... and those still running when shutdown_grace ran out
    flushed: int = 0  # queued records monitored after the proxy closed
    state: str = "no state snapshot (state.directory is not set)"

    def line(self) -> str:
        parts = []
        if self.finished is not None:
            parts.append(
                f"{self.finished} in-flight requests finished, {self.cut_off} cut off at the "
                f"grace deadline; {self.flushed} queued records monitored"
            )
        parts.append(self.state)
        return "stopped: " + "; ".join(parts)


@dataclass(slots=True)
class Sidecar:
    """The running parts of one sidecar, for the CLI, the demo and tests."""

    config: Config
    monitors: tuple[Monitor, ...]
    batcher: Router
    registry: MetricsRegistry
    health: Health
    app: web.Application
    rendered: RenderedSnapshot
    proxy_port: int | None = None  # the source's listener: the proxy's or the CloudEvents one
    native: NativeProxy | None = None  # the proxy's native engine, when it runs
    # Run at shutdown before the listeners close, so /readyz keeps answering 503 meanwhile.
    drainers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    shutdown: ShutdownReport = field(default_factory=ShutdownReport)
    # Set once every listener is bound: what writes files shared with another sidecar of the
    # same config (state snapshots, tail offsets) waits for it, see _once_serving.
    serving: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def monitor(self) -> Monitor:
        """The first (with one model, the only) model's monitor."""
        return self.monitors[0]


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


def _url(host: str, port: int, tls: object) -> str:
    """A listener's URL for the log: https with TLS, an IPv6 host in brackets."""
    return f"{'https' if tls else 'http'}://{f'[{host}]' if ':' in host else host}:{port}"


async def _cancel(task: asyncio.Task[None], name: str, grace: float = 5.0) -> None:
    """Cancel a background task and wait up to ``grace`` seconds for it; shutdown goes on either way."""
    if task.done():  # one that died was logged by _supervise: not raised again at shutdown
        return
    task.cancel(f"driftgauge shutting down: {name}")
    try:
        # asyncio.timeout, not wait_for, whose timeout escaped and cut the rest of shutdown short
        # (the last state save, the queue's flush).
        async with asyncio.timeout(grace):
            await task
    except asyncio.CancelledError:
        pass
    except TimeoutError:
        log.warning("background task %s did not stop within %g s of its cancel", name, grace)


def build_sidecar(
    config: Config, baseline: Baseline | None = None, registry: MetricsRegistry | None = None
) -> Sidecar:
    """Everything but the listeners; loads and checks each model's baseline unless one is given.

    ``baseline``, when given, is the first model's.
    """
    monitors = []
    for index, model in enumerate(config.all_models):
        held = baseline if index == 0 else None
        if held is None:
            held = load_served(model, named=bool(config.models))
        monitors.append(Monitor(model, held))
    batchers = [
        Batcher(
            make_adapter(m.config.protocol, m.config.features, m.config.predictions),
            m,
            ModelVersions.of(m),
            # A compressed body decompresses to no more than the source reads of it.
            getattr(config.source, "max_body_bytes", MAX_BODY_BYTES),
        )
        for m in monitors
    ]
    source_reasons = {
        ProxyConfig: PROXY_REASONS,
        TailConfig: TAIL_REASONS,
        CloudEventsConfig: CLOUDEVENTS_REASONS,
    }
    source_drops = {
        ProxyConfig: (*PROXY_DROPS, SAMPLED),
        TailConfig: (),
        CloudEventsConfig: (*CLOUDEVENTS_DROPS, SAMPLED),
    }
    router = Router(
        batchers,
        listed=bool(config.models),
        source_reasons=source_reasons[type(config.source)],
        source_drops=source_drops[type(config.source)],
    )
    for each in monitors:  # what its label file's tailer counts (_label_tail)
        if each.config.feedback is not None and each.config.feedback.tail is not None:
            each.parse_reasons += tuple(f"feedback_{reason}" for reason in LABEL_REASONS)
    registry = registry if registry is not None else MetricsRegistry()
    snapshot_registry = MetricsRegistry()
    if len(monitors) == 1 and batchers[0].versions is None:
        registry.register(MonitorCollector(monitors[0], "live"))
        snapshot_registry.register(MonitorCollector(monitors[0], "snapshot"))
    else:  # each family once, with every model's (and version's) samples
        registry.register(ModelsCollector(router.all_monitors, "live"))
        snapshot_registry.register(ModelsCollector(router.all_monitors, "snapshot"))
    registry.register(SourceCollector(router))  # what no model's label may carry
    ProcessCollector(registry=registry)
    rendered = RenderedSnapshot(snapshot_registry)

    def refresh_on_compute(monitor: Monitor) -> None:
        monitor.on_compute.append(lambda snapshot: rendered.refresh())

    for monitor in monitors:
        refresh_on_compute(monitor)
    for batcher in batchers:
        if batcher.versions is not None:
            batcher.versions.on_new.append(refresh_on_compute)
    monitor = monitors[0]
    health = Health()
    app = web.Application()
    sidecar = Sidecar(config, tuple(monitors), router, registry, health, app, rendered)
    app[SIDECAR_KEY] = sidecar
    names = [each.config.model for each in monitors]
    app.add_routes(metrics_routes(registry, names, health.ready, rendered))
    if monitor.outcomes is not None:
        assert config.feedback is not None
        app.add_routes(feedback_routes(monitor.outcomes, config.feedback.token))
    if any(each.config.feedback is not None and each.config.feedback.tail for each in monitors):
        app.cleanup_ctx.append(_feedback_tail_ctx)
    # Several models: each model's labels at /feedback/<model> (/feedback: the first's); none
    # taking labels, JSON 404s there that say so.
    takers = {
        each.config.model: (each.outcomes, each.config.feedback.token)
        for each in monitors
        if each.outcomes is not None and each.config.feedback is not None
    }
    if len(monitors) > 1 or not takers:
        app.add_routes(model_feedback_routes(takers, config.model))
    if config.state.directory is not None:
        # First in, so its cleanup runs last: after the proxy drained and the queue was flushed.
        app.cleanup_ctx.append(_state_ctx)
    app.cleanup_ctx.append(_recompute_ctx)
    if isinstance(config.source, TailConfig):
        app.cleanup_ctx.append(_tail_ctx)
    elif isinstance(config.source, CloudEventsConfig):
        app.cleanup_ctx.append(_cloudevents_ctx)
    else:
        app.cleanup_ctx.append(_proxy_ctx)
    return sidecar


async def _once_serving(sidecar: Sidecar, run: Callable[[], Awaitable[None]]) -> None:
    """``run()`` once every listener is bound.

    The same config started twice (a second container, a restart before the first stopped)
    shares the state directory and offset files: the one that fails to bind must not write
    its restored, older snapshot or its offsets over those of the one serving.
    """
    await sidecar.serving.wait()
    await run()


async def _finished_in_thread(function: Callable[[], None]) -> None:
    """``function()`` in a worker thread; cancelled, this waits for it to return, then raises.

    A cancel does not stop the thread: the snapshot loop's tidy or save would go on beside
    the last save at shutdown, tidy removing that save's temporary, an older save replacing it.
    """
    work = asyncio.ensure_future(asyncio.to_thread(function))
    try:
        await asyncio.shield(work)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):  # shutdown's last save follows, logged on its own
            await work
        raise


async def _snapshot_loop(store: StateStore, interval: float) -> None:
    await _finished_in_thread(store.tidy)  # serving: no other sidecar's save is in progress
    while True:
        await asyncio.sleep(interval)
        try:
            await _finished_in_thread(store.save)
        except Exception as exc:  # a full disk must not stop monitoring; the next interval retries
            store.failures += 1
            log.error("cannot write the state snapshot %s: %s", store.path, exc)


async def _state_ctx(app: web.Application) -> AsyncIterator[None]:
    sidecar = app[SIDECAR_KEY]
    directory = sidecar.config.state.directory
    assert directory is not None
    stores = [
        StateStore(directory, batcher.monitor, versions=batcher.versions)
        for batcher in sidecar.batcher.batchers
    ]
    stray = await asyncio.to_thread(stray_snapshots, directory, (s.path for s in stores))
    if stray:
        log.warning(
            "state snapshots of no configured model in %s (a renamed or removed model's; "
            "nothing reads them): %s",
            directory,
            ", ".join(path.name for path in stray),
        )

    def failures() -> list[tuple[str, int]]:
        return [(store.monitor.config.model, store.failures) for store in stores]

    sidecar.registry.register(SaveFailuresCollector(failures))  # each model's at 0 from the start
    tasks = []
    for store in stores:
        await asyncio.to_thread(store.restore)
        snapshots = partial(_snapshot_loop, store, sidecar.config.state.interval)
        tasks.append(
            _supervise("state snapshots", sidecar.health, _once_serving(sidecar, snapshots))
        )
    yield
    for task in tasks:
        await _cancel(task, "state snapshots")
    if not sidecar.serving.is_set():  # a listener failed to bind: see _once_serving
        sidecar.shutdown.state = "no state snapshot written (never served)"
        return
    written = []
    for store in stores:
        try:
            await asyncio.to_thread(store.save)
            written.append(f"state snapshot written to {store.path}")
        except Exception as exc:
            log.error("cannot write the state snapshot %s: %s", store.path, exc)
            written.append(f"state snapshot NOT written to {store.path} (error above)")
    sidecar.shutdown.state = "; ".join(written)


async def _recompute_loop(sidecar: Sidecar) -> None:
    interval = sidecar.config.metrics.recompute_interval

    while True:
        for monitor in sidecar.batcher.all_monitors():  # models and their versions
            await asyncio.to_thread(monitor.compute)
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
    router = sidecar.batcher
    source = TailSource(
        sidecar.config.source,
        router.process,
        router.count_parse_error,
        on_stall=partial(sidecar.health.stall, "tail"),
    )
    task = _supervise("tail", sidecar.health, _once_serving(sidecar, source.run))
    yield
    await _cancel(task, "tail")


@contextlib.asynccontextmanager
async def _listening(key: str, address: tuple[str, int]) -> AsyncIterator[None]:
    """A listener's bind failure as one line naming its config key and address ("metrics.listen
    127.0.0.1:10117: Address already in use"), not asyncio's text without the key."""
    try:
        yield
    except OSError as exc:
        host, port = address
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise OSError(exc.errno, reason, f"{key} {host}:{port}") from None


async def _cloudevents_ctx(app: web.Application) -> AsyncIterator[None]:
    sidecar = app[SIDECAR_KEY]
    config = sidecar.config.source
    assert isinstance(config, CloudEventsConfig)
    router = sidecar.batcher
    sampler = Sampler(config.cpu_budget, lambda: source.backlog(), router.count_dropped)
    source = CloudEventsSource(
        config,
        router.process,
        router.count_parse_error,
        on_dropped=router.count_dropped,
        sampler=sampler,
    )
    catalogue.SAMPLING_RATE.gauge(sidecar.registry).set_function(lambda: sampler.rate)
    async with _listening("source.cloudevents.listen", config.listen):
        sidecar.proxy_port = await source.start()
    log.info("CloudEvents on %s", _url(config.listen[0], sidecar.proxy_port, config.tls))
    task = _supervise("cloudevents", sidecar.health, source.run())
    sidecar.drainers.append(source.close)  # stop receiving while /readyz already says 503
    yield
    await source.close()  # a no-op for the listener when drained already; hands over the rest
    await _cancel(task, "cloudevents")


async def _feedback_tail_ctx(app: web.Application) -> AsyncIterator[None]:
    """Follow the ``feedback.tail`` of each model that names one (not only the first's)."""
    sidecar = app[SIDECAR_KEY]
    tasks = [
        _supervise(
            "feedback tail",
            sidecar.health,
            _once_serving(sidecar, _label_tail(monitor, sidecar.health).run),
        )
        for monitor in sidecar.monitors
        if monitor.config.feedback is not None and monitor.config.feedback.tail is not None
    ]
    yield
    for task in tasks:
        await _cancel(task, "feedback tail")


def _label_tail(monitor: Monitor, health: Health) -> TailSource:
    """A tailer of ``monitor``'s label log, joining its lines with ``monitor``'s predictions."""
    outcomes, feedback = monitor.outcomes, monitor.config.feedback
    assert outcomes is not None and feedback is not None and feedback.tail is not None

    def on_records(records: list[Record]) -> None:
        outcomes.label_tailed([(r.request_id or "", r.request) for r in records])

    def on_error(reason: str) -> None:
        monitor.count_parse_error(f"feedback_{reason}")

    config = TailConfig(path=feedback.tail, state_file=feedback.tail_state_file)
    stall = partial(health.stall, f"feedback tail of {monitor.config.model}")
    return TailSource(config, on_records, on_error, parse_line=label_line, on_stall=stall)


async def _watch_upstream(config: ProxyConfig, health: Health) -> None:
    """Readiness follows the model server: its readiness path, or a TCP connect."""
    parts = urlsplit(config.upstream)
    host, port = (
        parts.hostname or "127.0.0.1",
        parts.port or (443 if parts.scheme == "https" else 80),
    )
    tls = ssl.create_default_context(cafile=config.ca_file) if config.ca_file else None
    async with ClientSession(timeout=ClientTimeout(total=2.0)) as session:
        while True:
            try:
                if config.readiness_path:
                    url = config.upstream + config.readiness_path
                    async with session.get(url, ssl=tls if tls is not None else True) as response:
                        health.upstream_ok = response.status == 200
                else:
                    # asyncio.timeout, not wait_for: Python 3.11's wait_for raises the connect's
                    # error in place of a cancel that lands as the connect fails (lost cancel).
                    async with asyncio.timeout(2.0):
                        _, writer = await asyncio.open_connection(host, port)
                    writer.close()
                    health.upstream_ok = True
            except (OSError, TimeoutError, ClientError):
                health.upstream_ok = False
            await asyncio.sleep(2.0)


async def _proxy_ctx(app: web.Application) -> AsyncIterator[None]:
    sidecar = app[SIDECAR_KEY]
    config = sidecar.config.source
    assert isinstance(config, ProxyConfig)
    router = sidecar.batcher
    metrics = ProxyMetrics(sidecar.registry)
    queue = RecordQueue(config.queue_size, router.count_dropped, config.queue_bytes)
    sampler = Sampler(
        config.cpu_budget, lambda: queue.backlog(BEHIND_SECONDS), router.count_dropped
    )
    server = ProxyServer(
        config.upstream,
        sidecar.batcher.matches,
        metrics,
        queue,
        timeout=config.timeout,
        connect_timeout=config.connect_timeout,
        client_timeout=config.client_timeout,
        idle_timeout=config.idle_timeout,
        max_body_bytes=config.max_body_bytes,
        request_id_header=config.request_id_header,
        generate_ids=sidecar.config.feedback is not None,
        rewrite_host=config.host_header == "upstream",
        count_parse_error=router.count_parse_error,
        count_dropped=router.count_dropped,
        upstream_tls=ssl.create_default_context(cafile=config.ca_file) if config.ca_file else None,
        listen_tls=config.tls.server_context() if config.tls else None,
        sampler=sampler,
    )
    proxy: ProxyServer | NativeProxy = server
    engine = proxy_engine(config)
    if engine == "native":
        # Imported only when asked for: an install may lack the compiled core (config says so).
        from driftgauge.sources.proxy import native

        proxy = sidecar.native = native.NativeProxy(server)
        sidecar.registry.before_scrape.append(proxy.collect)
    sidecar.health.upstream_ok = False
    host, port = config.listen
    # Bound first: a failed bind leaves no task behind (orphans cancelled at exit hung it).
    async with _listening("source.proxy.listen", config.listen):
        sidecar.proxy_port = await proxy.start(host, port)
    consumer = _supervise(
        "monitoring consumer", sidecar.health, consume(queue, sidecar.batcher, metrics, sampler)
    )
    watcher = _supervise("upstream watch", sidecar.health, _watch_upstream(config, sidecar.health))
    log.info(
        "proxy on %s -> %s (%s engine)",
        _url(host, sidecar.proxy_port, config.tls),
        config.upstream,
        engine,
    )

    async def drain() -> None:
        sidecar.health.stopping = True
        proxy.stop_accepting()
        finished, cut_off = await proxy.drain(config.shutdown_grace)
        sidecar.shutdown.finished, sidecar.shutdown.cut_off = finished, cut_off

    sidecar.drainers.append(drain)
    yield
    await drain()  # a no-op when run_until_stopped drained already
    await _cancel(watcher, "upstream watch")
    await _cancel(consumer, "monitoring consumer")
    sampler.flush()  # the last requests not admitted, counted
    while len(queue):  # what was answered is also monitored: flush the queue into the sketches
        records = queue.take(1024)
        sidecar.batcher.ingest(records)
        sidecar.shutdown.flushed += len(records)


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
    server_log = ServerLog(log, lambda: None)  # a scraper's or /feedback sender's bad HTTP
    runner = web.AppRunner(sidecar.app, access_log=None, handle_signals=False, logger=server_log)
    await runner.setup()
    host, port = sidecar.config.metrics.listen
    tls = sidecar.config.metrics.tls
    site = web.TCPSite(
        runner, host, port, reuse_address=True, ssl_context=tls.server_context() if tls else None
    )
    try:
        async with _listening("metrics.listen", (host, port)):
            await site.start()
        bound = runner.addresses[0][1] if runner.addresses else port
        sidecar.serving.set()  # the source's listener was bound in runner.setup()
        log.info("metrics on %s/metrics", _url(host, bound, tls))
        if on_started is not None:
            on_started(bound)
        await stop.wait()
        sidecar.health.stopping = True
        for drain in sidecar.drainers:  # in-flight requests finish while /readyz says 503
            await drain()
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
        await runner.cleanup()
    log.info("%s", sidecar.shutdown.line())
