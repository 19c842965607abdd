"""The wiring in app.py: background tasks supervised and cancelled, the upstream watch."""

from __future__ import annotations

import asyncio
import socket

import pytest

from driftgauge import app


async def test_stopping_a_background_task_that_died_logs_it_once_and_raises_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A task that died is logged and marked failed when it dies; shutdown's cancel of it
    neither raises its exception again (a traceback at exit) nor waits."""
    health = app.Health()

    async def dies() -> None:
        raise RuntimeError("boom")

    task = app._supervise("recompute", health, dies())
    with caplog.at_level("ERROR", logger="driftgauge.app"):
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0)  # the done callback
        await app._cancel(task, "recompute")
    assert health.failed == ["recompute"]
    assert caplog.text.count("background task recompute died: RuntimeError('boom')") == 1


async def test_a_task_slow_to_stop_is_logged_and_shutdown_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A task still running ``timeout`` after its cancel is logged, not raised: the rest of
    shutdown (the last state save, the queue's flush) still runs."""
    release = asyncio.Event()

    async def slow_to_stop() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await release.wait()  # cleanup that takes its time
            raise

    task = asyncio.ensure_future(slow_to_stop())
    await asyncio.sleep(0)
    try:
        with caplog.at_level("WARNING", logger="driftgauge.app"):
            await app._cancel(task, "state snapshots", grace=0.05)
    finally:
        release.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert "background task state snapshots did not stop within 0.05 s" in caplog.text


async def test_the_upstream_watch_stops_at_the_first_cancel_whenever_it_comes() -> None:
    """A cancel that lands as the watch's connect to a refused port fails is not lost: with
    asyncio.wait_for (Python 3.11) the connect's error was raised in its place, the loop went
    on, and a stop that cancels once (asyncio.run's, at exit) waited for ever."""
    from driftgauge.config import ProxyConfig

    with socket.socket() as probe:  # a port nothing listens on: every connect is refused
        probe.bind(("127.0.0.1", 0))
        refused = probe.getsockname()[1]
    config = ProxyConfig(listen=("127.0.0.1", 0), upstream=f"http://127.0.0.1:{refused}")
    for turns in range(40):  # cancel after each number of loop turns, the race's among them
        task = asyncio.ensure_future(app._watch_upstream(config, app.Health()))
        for _ in range(turns):
            await asyncio.sleep(0)
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=1.0)
        assert done, f"still running 1 s after a cancel at turn {turns}"
        task.cancel()  # (a task that went on: stop it for good before failing)
        assert task.cancelled()


@pytest.mark.parametrize(
    ("host", "tls", "url"),
    [
        ("127.0.0.1", None, "http://127.0.0.1:8080"),
        ("::1", None, "http://[::1]:8080"),
        ("0.0.0.0", object(), "https://0.0.0.0:8080"),
    ],
)
def test_listeners_are_logged_as_urls_a_client_can_use(host: str, tls: object, url: str) -> None:
    """An IPv6 host goes in brackets (http://::1:8080 is no URL) and a TLS listener is https."""
    assert app._url(host, 8080, tls) == url
