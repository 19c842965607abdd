"""The proxy closes client connections that hold it without a request in progress: one idle
between requests (``idle_timeout``), one that sends no request or sends its request head too
slowly (``client_timeout``); never one whose exchange is in flight.

Real servers on loopback, as in test_proxy.py."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from driftgauge.config import config_from_mapping
from driftgauge.exceptions import ConfigError
from tests.helpers import base_config
from tests.proxy_upstream import DOC, RawUpstream, Upstream, raw_client, raw_upstream
from tests.sources.proxy_support import PREDICT, StartProxy

pytestmark = pytest.mark.usefixtures("proxy_engine")  # both engines (tests/conftest.py)


async def test_a_connection_idle_between_requests_is_closed_silently_after_idle_timeout(
    upstream: Upstream, start_proxy: StartProxy
) -> None:
    """A keep-alive connection with nothing of a next request for ``idle_timeout`` is closed
    without an answer (RFC 9112, 9.6), not before; nothing is counted as a client error."""
    proxy = await start_proxy(upstream.port, idle_timeout=0.5)
    async with raw_client(proxy.port) as client:
        assert (await client.request("GET", "/doc")).body == DOC
        idle = time.monotonic()
        async with asyncio.timeout(5):
            assert await client.reader.read() == b""
        assert time.monotonic() - idle >= 0.5
    assert proxy.source_sample("driftgauge_client_errors_total", reason="client_stalled") == 0


async def test_a_connection_that_sends_no_request_is_closed_after_client_timeout(
    upstream: Upstream, start_proxy: StartProxy
) -> None:
    """A new connection on which no request starts within ``client_timeout`` is closed silently
    (as nginx's client_header_timeout), however long ``idle_timeout`` is."""
    proxy = await start_proxy(upstream.port, client_timeout=0.5)
    async with raw_client(proxy.port) as client:
        opened = time.monotonic()
        async with asyncio.timeout(5):
            assert await client.reader.read() == b""
        assert time.monotonic() - opened >= 0.5


@pytest.mark.parametrize("trickle", [False, True], ids=["stopped", "byte-by-byte"])
async def test_a_request_head_not_in_within_client_timeout_is_answered_408(
    upstream: Upstream, start_proxy: StartProxy, trickle: bool
) -> None:
    """A request head begun but not finished within ``client_timeout`` (stopped, or sent a byte
    at a time as a slowloris does) is answered 408 and closed, counted client_stalled, and the
    proxy serves on."""
    proxy = await start_proxy(upstream.port, client_timeout=0.5)
    async with raw_client(proxy.port) as client:
        started = time.monotonic()
        await client.send(b"GET /doc HTTP/1.1\r\n")

        async def send_slowly() -> None:
            for byte in b"Host: proxy\r\nX-Slow: " + b"s" * 100:
                await asyncio.sleep(0.05)
                await client.send(bytes([byte]))

        sending = asyncio.ensure_future(send_slowly() if trickle else asyncio.sleep(0))
        try:
            answer = await client.response(within=5)
        finally:
            sending.cancel()
        assert answer.status == 408
        assert time.monotonic() - started >= 0.5
        assert await client.closed()
    assert proxy.source_sample("driftgauge_client_errors_total", reason="client_stalled") == 1
    async with raw_client(proxy.port) as again:
        assert (await again.request("GET", "/doc")).body == DOC


async def _answer_413_at_the_head(
    server: RawUpstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\n\r\ntoo large")
    await writer.drain()
    while await reader.read(65536):
        pass


async def test_a_request_body_stalled_after_its_answer_is_closed_after_client_timeout(
    start_proxy: StartProxy,
) -> None:
    """A client that stops sending a request body the upstream already answered (413 at the
    head) is closed once no body byte came for ``client_timeout``, counted client_stalled; one
    still sending slowly is read on."""
    async with raw_upstream(_answer_413_at_the_head) as server:
        proxy = await start_proxy(server.port, client_timeout=0.5)
        async with raw_client(proxy.port) as slow, raw_client(proxy.port) as stalled:
            for client in (slow, stalled):
                await client.send(
                    b"POST /upload HTTP/1.1\r\nHost: p\r\nContent-Length: 100\r\n\r\n"
                )
                assert (await client.response()).status == 413
            started = time.monotonic()
            for _ in range(8):  # 1.6 s, a byte every 0.2 s
                await slow.send(b"u")
                await asyncio.sleep(0.2)
            assert await stalled.closed(within=0.1)
            assert time.monotonic() - started >= 0.5
            await slow.send(b"u" * 92)
            assert (await slow.request("GET", "/next")).status == 413
    assert proxy.source_sample("driftgauge_client_errors_total", reason="client_stalled") == 1


@pytest.mark.parametrize(
    ("upstream_timeout", "client_timeout"), [(1.0, 0.5), (0.3, 1.0)], ids=["shorter", "longer"]
)
async def test_a_request_body_stalled_before_its_answer_is_answered_408(
    upstream: Upstream, start_proxy: StartProxy, upstream_timeout: float, client_timeout: float
) -> None:
    """A client that stops sending its request body while the model waits for the rest gets 408
    once no byte came for ``client_timeout``, whether shorter or longer than ``timeout``,
    counted client_stalled: the upstream, kept waiting by the client, is not counted timed out
    (it was answered 504 after ``timeout`` and counted upstream_errors_total{reason="timeout"})."""
    proxy = await start_proxy(
        upstream.port, timeout=upstream_timeout, client_timeout=client_timeout
    )
    async with raw_client(proxy.port) as client:
        await client.send(
            b"POST %s HTTP/1.1\r\nHost: p\r\nContent-Length: 1000\r\n\r\n{" % PREDICT.encode()
        )
        started = time.monotonic()
        answer = await client.response(within=5)
        waited = time.monotonic() - started
        assert await client.closed()
    assert answer.status == 408
    assert client_timeout <= waited < client_timeout + 1
    assert proxy.source_sample("driftgauge_client_errors_total", reason="client_stalled") == 1
    assert proxy.source_sample("driftgauge_upstream_errors_total", reason="timeout") == 0
    assert proxy.source_sample("driftgauge_requests_total", code="408") == 1


async def _read_the_head_only(
    server: RawUpstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    await reader.readuntil(b"\r\n\r\n")
    await asyncio.sleep(30)  # reads no body: the proxy's writes back up, then its client's


async def test_an_upstream_that_stops_reading_a_body_is_still_timed_out(
    start_proxy: StartProxy,
) -> None:
    """An upload the upstream stops reading holds the client back, not the other way round:
    504 after ``timeout``, counted timeout, even with a longer ``client_timeout``."""
    async with raw_upstream(_read_the_head_only) as server:
        proxy = await start_proxy(server.port, timeout=0.5, client_timeout=5)
        body = b"u" * (32 * 1024 * 1024)
        async with raw_client(proxy.port) as client:
            head = b"POST /upload HTTP/1.1\r\nHost: p\r\nContent-Length: %d\r\n\r\n" % len(body)
            sending = asyncio.ensure_future(client.send(head + body))
            try:
                answer = await client.response(within=4)
            finally:
                sending.cancel()
    assert answer.status == 504
    assert proxy.source_sample("driftgauge_upstream_errors_total", reason="timeout") == 1
    assert proxy.source_sample("driftgauge_client_errors_total", reason="client_stalled") == 0


async def test_a_connection_waiting_on_a_slow_upstream_is_not_idle(
    upstream: Upstream, start_proxy: StartProxy
) -> None:
    """An exchange in flight far longer than ``idle_timeout`` and ``client_timeout`` (the model
    is slow) keeps its connection: it is answered and the connection goes on."""
    proxy = await start_proxy(upstream.port, idle_timeout=0.2, client_timeout=0.2)
    async with raw_client(proxy.port) as client:
        slow = await client.request("GET", "/slow?delay=1.5", within=5)
        after = await client.request("GET", "/doc")
    assert (slow.status, slow.body) == (200, b"slow answer")
    assert after.body == DOC
    assert proxy.source_sample("driftgauge_client_errors_total", reason="client_stalled") == 0


async def test_a_connection_reused_just_under_idle_timeout_stays_open(
    upstream: Upstream, start_proxy: StartProxy
) -> None:
    """Requests each sent a little before ``idle_timeout`` runs out all go through on the one
    connection, for several times ``idle_timeout`` in all."""
    proxy = await start_proxy(upstream.port, idle_timeout=0.6)
    async with raw_client(proxy.port) as client:
        for _ in range(5):
            assert (await client.request("GET", "/doc")).body == DOC
            await asyncio.sleep(0.45)
        assert (await client.request("GET", "/doc")).body == DOC
    assert len(upstream.seen) == 6


async def test_the_drain_still_finishes_what_is_in_flight_and_closes_idle_connections(
    upstream: Upstream, start_proxy: StartProxy
) -> None:
    """At shutdown an exchange in flight still finishes and an idle connection still closes at
    once, idle_timeout or not."""
    proxy = await start_proxy(upstream.port, idle_timeout=30, shutdown_grace=5)
    async with raw_client(proxy.port) as busy, raw_client(proxy.port) as idle:
        assert (await idle.request("GET", "/doc")).body == DOC
        await busy.send(b"GET /slow?delay=1 HTTP/1.1\r\nHost: proxy\r\n\r\n")
        await asyncio.sleep(0.2)
        stopping = asyncio.ensure_future(proxy.stop())
        assert await idle.closed(within=1)
        answer = await busy.response(within=5)
        await stopping
    assert (answer.status, answer.body) == (200, b"slow answer")
    assert (proxy.sidecar.shutdown.finished, proxy.sidecar.shutdown.cut_off) == (1, 0)


@pytest.mark.parametrize(
    ("setting", "expected"), [(None, 3600.0), ("90s", 90.0), (15, 15.0), ("none", None)]
)
def test_idle_timeout_is_a_duration_or_none(
    tmp_path: Path, setting: object, expected: float | None
) -> None:
    """source.proxy.idle_timeout: 1h by default, a duration, or none (never closed)."""
    proxy = {"upstream": "http://127.0.0.1:9"} | (
        {} if setting is None else {"idle_timeout": setting}
    )
    config = config_from_mapping(base_config(tmp_path, source={"proxy": proxy}), base=tmp_path)
    assert config.source.idle_timeout == expected  # type: ignore[union-attr]


@pytest.mark.parametrize("setting", [0, "0s", -5, "soon"])
def test_an_idle_timeout_that_is_no_duration_is_refused(tmp_path: Path, setting: object) -> None:
    """0 (which nginx's keepalive_timeout takes for no keep-alive at all), a negative number or
    a word other than none is a config error naming the key."""
    source = {"proxy": {"upstream": "http://127.0.0.1:9", "idle_timeout": setting}}
    with pytest.raises(ConfigError, match=r"source\.proxy\.idle_timeout: .*none"):
        config_from_mapping(base_config(tmp_path, source=source), base=tmp_path)
