"""The proxy survives upstream faults: refused, slow, reset or dead upstreams and what follows.

Real servers on loopback, as in test_proxy.py."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import http.client
import json
import socket
import struct
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.helpers import free_port
from tests.proxy_upstream import (
    DOC,
    Proxy,
    RawClient,
    RawUpstream,
    Upstream,
    raw_client,
    raw_upstream,
    running_proxy,
    until,
    upstream_server,
)
from tests.sources.proxy_support import PREDICT, StartProxy, instances, predict

pytestmark = pytest.mark.usefixtures("proxy_engine")  # both engines (tests/conftest.py)


async def test_upstream_down_gives_502_then_recovers(start_proxy: StartProxy) -> None:
    """Nothing listening: 502 with a short JSON body, counted; once it starts, requests succeed."""
    port = free_port()
    proxy = await start_proxy(port)
    async with raw_client(proxy.port) as client:
        refused = await client.request("GET", "/doc")
        async with upstream_server(port=port):
            recovered = await client.request("GET", "/doc")
    assert refused.status == 502
    assert refused.header("content-type") == "application/json"
    assert len(refused.body) < 200
    assert "error" in json.loads(refused.body)
    assert recovered.body == DOC
    assert proxy.source_sample("driftgauge_upstream_errors_total", reason="connect_refused") == 1
    assert proxy.source_sample("driftgauge_requests_total", code="502") == 1
    assert proxy.source_sample("driftgauge_requests_total", code="200") == 1


def _post_all_then_read(port: int, body: bytes) -> tuple[int, bytes]:
    """POST ``body`` as Python's http.client does: all of it sent before the answer is read."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", PREDICT, body=body)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


async def test_a_client_still_uploading_when_answered_still_reads_the_answer(
    start_proxy: StartProxy,
) -> None:
    """An answer the proxy gives before a large upload is all in (502: nothing listens) reaches a
    client that sends its whole body before reading: the proxy half-closes and reads the rest
    (RFC 9112, 9.6), where closing with the body unread reset the connection under the answer."""
    proxy = await start_proxy(free_port())
    for _ in range(3):
        status, body = await asyncio.to_thread(_post_all_then_read, proxy.port, b"u" * 16_000_000)
        assert (status, json.loads(body)["driftgauge"]) == (502, "connect_refused")


async def test_a_connection_closed_while_its_exchange_connects_upstream_is_left_alone(
    start_proxy: StartProxy,
) -> None:
    """A malformed request pipelined behind one still connecting upstream is answered after it:
    the first, refused a moment later, gets its 502, then the malformed one its 400 and the
    connection closes, with no task dying (a 502 written after the connection's writing side was
    closed was a RuntimeError, when the Python proxy closed at the malformed request at once).

    The native engine hands a request it does not forward itself to the Python proxy once the
    one before it is answered; the Python engine holds the 400 until then.
    """
    proxy = await start_proxy(free_port())
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    try:
        async with raw_client(proxy.port) as client:
            await client.send(b"GET /doc HTTP/1.1\r\nHost: p\r\n\r\nTHIS IS NOT HTTP\r\n\r\n")
            assert (await client.response()).status == 502
            assert (await client.response()).status == 400
            assert await client.reader.read() == b""
        await asyncio.sleep(0.1)
        gc.collect()  # a task's unretrieved exception is reported when it is collected
    finally:
        loop.set_exception_handler(None)
    assert errors == []
    assert proxy.source_sample("driftgauge_client_errors_total", reason="bad_request") == 1


async def test_slow_upstream_gives_504_and_the_connection_goes_on(
    upstream: Upstream, start_proxy: StartProxy
) -> None:
    """An upstream slower than ``timeout`` is answered 504 in about ``timeout``; counted."""
    proxy = await start_proxy(upstream.port, timeout=0.5)
    async with raw_client(proxy.port) as client:
        started = time.monotonic()
        response = await client.request("GET", "/slow?delay=3")
        elapsed = time.monotonic() - started
        after = await client.request("GET", "/doc")
    assert response.status == 504
    assert response.header("content-type") == "application/json"
    assert "error" in json.loads(response.body)
    assert 0.4 < elapsed < 2.0
    assert after.body == DOC
    assert proxy.source_sample("driftgauge_upstream_errors_total", reason="timeout") == 1
    assert proxy.source_sample("driftgauge_requests_total", code="504") == 1


async def test_pipelined_expect_100_continue_after_a_504_still_gets_its_interim_response(
    upstream: Upstream, start_proxy: StartProxy
) -> None:
    """A request waiting on Expect: 100-continue behind one the proxy answers 504 gets its
    100 Continue once that answer is out, as it does behind one the upstream answers."""
    proxy = await start_proxy(upstream.port, timeout=0.5)
    async with raw_client(proxy.port) as client:
        await client.send(
            b"GET /slow?delay=3 HTTP/1.1\r\nHost: p\r\n\r\n"
            b"POST /echo HTTP/1.1\r\nHost: p\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        assert (await client.response()).status == 504
        assert (await client.response(within=1.0)).status == 100
        await client.send(b"hello")
        final = await client.response()
    assert (final.status, final.body) == (200, b"hello")


async def _reset_after_head(
    server: RawUpstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    while (request := await server.read_request(reader)) is not None:
        if b" /reset " in request[0]:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.transport.abort()
            return
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()


async def test_upstream_reset_mid_response_closes_the_client_connection(
    start_proxy: StartProxy,
) -> None:
    """After the head went out, a reset can only be passed on by closing; the next connection works."""
    async with raw_upstream(_reset_after_head) as server:
        proxy = await start_proxy(server.port)
        async with raw_client(proxy.port) as client:
            with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
                await client.request("GET", "/reset")
        async with raw_client(proxy.port) as client:
            after = await client.request("GET", "/fine")
    assert after.body == b"ok"
    await until(lambda: proxy.source_sample("driftgauge_requests_total", code="0") == 1)
    assert proxy.source_sample("driftgauge_upstream_errors_total", reason="upstream_reset") == 1


async def _answer_then_close_when_idle(
    server: RawUpstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    request = await server.read_request(reader)
    if request is None:
        return
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(request[1]), request[1]))
    await writer.drain()
    await asyncio.sleep(0.05)  # an idle timeout shorter than the client's


async def test_pooled_connection_closed_by_upstream_while_idle_is_not_used(
    start_proxy: StartProxy,
) -> None:
    """After the upstream closed an idle pooled connection, the next request still succeeds."""
    async with raw_upstream(_answer_then_close_when_idle) as server:
        proxy = await start_proxy(server.port)
        async with raw_client(proxy.port) as client:
            first = await client.request("POST", "/echo", b"one")
            await asyncio.sleep(0.2)
            second = await client.request("POST", "/echo", b"two")
    assert (first.body, second.body) == (b"one", b"two")
    assert server.connections == 2
    assert proxy.source_sample("driftgauge_requests_total", code="200") == 2


async def _close_on_second_request(
    server: RawUpstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    while (request := await server.read_request(reader)) is not None:
        if server.number(reader) == 1 and len(server.heads) == 2:
            return  # the idle timer fired just as the request arrived: close unanswered
        body = request[1]
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()


async def test_stale_pooled_connection_is_retried_once_on_a_new_one(
    start_proxy: StartProxy,
) -> None:
    """A pooled connection that closes without answering is retried, body and all, on a new one."""
    async with raw_upstream(_close_on_second_request) as server:
        proxy = await start_proxy(server.port)
        async with raw_client(proxy.port) as client:
            first = await client.request("POST", "/echo", b"one")
            second = await client.request("POST", "/echo", b"two")
    assert (first.status, first.body) == (200, b"one")
    assert (second.status, second.body) == (200, b"two")
    assert server.connections == 2
    assert len(server.heads) == 3
    for reason in ("upstream_reset", "connect_refused", "bad_response"):
        assert proxy.source_sample("driftgauge_upstream_errors_total", reason=reason) == 0


async def test_large_response_to_a_slow_reader_leaves_the_pool_usable(
    proxy: Proxy, upstream: Upstream
) -> None:
    """Back-pressure from a slow client (small receive buffer, late reads) loses nothing and
    leaves the pooled upstream connection usable for the next requests."""
    size = 8 * 1024 * 1024
    async with raw_client(proxy.port, receive_buffer=4096) as client:
        await client.send(b"GET /big?size=%d HTTP/1.1\r\nHost: p\r\n\r\n" % size)
        await asyncio.sleep(0.2)  # fill every buffer on the way: the proxy must pause
        async with asyncio.timeout(10):
            head = await client.reader.readuntil(b"\r\n\r\n")
            received = bytearray()
            while len(received) < size:
                received += await client.reader.read(65536)
                await asyncio.sleep(0.0005)
        assert head.startswith(b"HTTP/1.1 200")
        assert bytes(received) == bytes(range(256)) * (size // 256)
        for _ in range(3):
            assert (await client.request("GET", "/doc", within=2.0)).body == DOC
    async with raw_client(proxy.port) as client:
        assert (await client.request("GET", "/doc", within=2.0)).body == DOC
    assert len(upstream.connections) == 1


async def test_a_client_reading_slower_than_timeout_is_not_an_upstream_timeout(
    upstream: Upstream, start_proxy: StartProxy
) -> None:
    """A client that stops reading a large response for longer than ``timeout`` (so the proxy
    stops reading the upstream) still gets all of it: the upstream was not the slow one."""
    proxy = await start_proxy(upstream.port, timeout=0.5)
    size = 8 * 1024 * 1024
    async with raw_client(proxy.port, receive_buffer=4096) as client:
        await client.send(b"GET /big?size=%d HTTP/1.1\r\nHost: p\r\n\r\n" % size)
        await asyncio.sleep(1.5)  # three timeouts without reading: every buffer on the way fills
        async with asyncio.timeout(10):
            head = await client.reader.readuntil(b"\r\n\r\n")
            received = bytearray()
            while len(received) < size and (piece := await client.reader.read(65536)):
                received += piece
        assert head.startswith(b"HTTP/1.1 200")
        assert len(received) == size
        assert (await client.request("GET", "/doc", within=2.0)).body == DOC
    assert proxy.source_sample("driftgauge_upstream_errors_total", reason="timeout") == 0


async def test_a_client_that_reads_nothing_is_dropped_after_client_timeout(
    upstream: Upstream, start_proxy: StartProxy
) -> None:
    """A client that stops reading its response holds its exchange and an upstream connection
    for ``client_timeout`` only: then both are dropped, counted client_stalled (not an upstream
    timeout), and the proxy serves on."""
    proxy = await start_proxy(upstream.port, timeout=0.3, client_timeout=1)
    size = 8 * 1024 * 1024
    async with raw_client(proxy.port, receive_buffer=4096) as client:
        await client.send(b"GET /big?size=%d HTTP/1.1\r\nHost: p\r\n\r\n" % size)
        await until(
            lambda: (
                proxy.source_sample("driftgauge_client_errors_total", reason="client_stalled") == 1
            ),
            what="the stalled client dropped",
        )
        received = 0
        async with asyncio.timeout(10):
            with contextlib.suppress(ConnectionError):
                while piece := await client.reader.read(65536):
                    received += len(piece)
        assert received < size  # cut off, not finished
    assert proxy.source_sample("driftgauge_upstream_errors_total", reason="timeout") == 0
    assert proxy.source_sample("driftgauge_requests_total", code="0") == 1
    async with raw_client(proxy.port) as again:
        assert (await again.request("GET", "/doc")).body == DOC


async def test_a_client_that_reads_nothing_is_dropped_after_a_client_timeout_below_timeout(
    upstream: Upstream, start_proxy: StartProxy
) -> None:
    """``client_timeout`` shorter than ``timeout`` bounds a client that reads nothing on its own:
    dropped after about ``client_timeout``, not held until ``timeout`` runs out first."""
    proxy = await start_proxy(upstream.port, timeout=5, client_timeout=0.5)
    size = 8 * 1024 * 1024
    async with raw_client(proxy.port, receive_buffer=4096) as client:
        started = time.monotonic()
        await client.send(b"GET /big?size=%d HTTP/1.1\r\nHost: p\r\n\r\n" % size)
        await until(
            lambda: (
                proxy.source_sample("driftgauge_client_errors_total", reason="client_stalled") == 1
            ),
            within=4,
            what="the stalled client dropped",
        )
        assert time.monotonic() - started < 3
    assert proxy.source_sample("driftgauge_upstream_errors_total", reason="timeout") == 0


async def _answer_before_reading_the_body(
    server: RawUpstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    if head.startswith(b"POST /upload "):
        await asyncio.sleep(0.3)  # not reading: the proxy's writes back up
        writer.write(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\n\r\ntoo large")
        await writer.drain()
        await asyncio.sleep(0.3)
        return
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    await writer.drain()
    while await reader.read(65536):
        pass


async def test_early_answer_to_a_large_upload_does_not_stall_the_client(
    start_proxy: StartProxy,
) -> None:
    """An upstream that answers 413 before reading a large upload: the client can finish and go on."""
    body = b"u" * (32 * 1024 * 1024)
    async with raw_upstream(_answer_before_reading_the_body) as server:
        proxy = await start_proxy(server.port)
        async with raw_client(proxy.port) as client:

            async def upload() -> None:
                await client.send(
                    b"POST /upload HTTP/1.1\r\nHost: p\r\nContent-Length: %d\r\n\r\n" % len(body)
                )
                await client.send(body)

            sending = asyncio.create_task(upload())
            try:
                answer = await client.response()
                assert (answer.status, answer.body) == (413, b"too large")
                async with asyncio.timeout(5):
                    await sending
            finally:
                sending.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sending
            after = await client.request("GET", "/next")
    assert (after.status, after.body) == (200, b"ok")


async def test_a_request_id_the_upstream_echoes_is_not_added_twice(
    tmp_path: Path, baseline: Path
) -> None:
    """With ids made for labels, a request without one gets one, in the answer too; an upstream
    that echoes the X-Request-ID it was sent (a correlation-id middleware) has it once."""

    async def echo_id(request: web.Request) -> web.Response:
        answer = await predict(request)
        answer.headers["X-Request-ID"] = request.headers["X-Request-ID"]
        return answer

    feedback = {"feedback": {"prediction": "class"}}
    async with (
        upstream_server(routes=[web.post(PREDICT, echo_id)]) as upstream,
        running_proxy(tmp_path, baseline, upstream.port, fields=feedback) as proxy,
        raw_client(proxy.port) as client,
    ):
        response = await client.request("POST", PREDICT, instances(2))
        assert response.status == 200
        made = upstream.seen[-1].header("X-Request-ID")
        assert made is not None
        assert response.header_all("x-request-id") == [made]


async def test_an_upstream_that_stops_reading_an_upload_is_timed_out_not_the_client(
    start_proxy: StartProxy,
) -> None:
    """An upstream that reads the head and then none of a large body makes the proxy stop
    reading the client (back-pressure): the client is not the late one, so the upstream is
    timed out after ``timeout`` (504, counted timeout), not the client after ``client_timeout``
    (408 client_stalled)."""

    async def script(raw: RawUpstream, reader: asyncio.StreamReader, writer: Any) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(10)  # reads nothing of the body

    size = 32 * 1024 * 1024  # more than every socket buffer on the way holds
    request = b"POST /upload HTTP/1.1\r\nHost: p\r\nContent-Length: %d\r\n\r\n" % size
    request += b"u" * size
    async with raw_upstream(script) as slow:
        proxy = await start_proxy(slow.port, timeout=2, client_timeout=0.5, max_body_bytes=2 * size)
        async with raw_client(proxy.port) as client:
            client.writer.write(request)
            response = await client.response(within=10)
    assert response.status == 504
    assert proxy.source_sample("driftgauge_upstream_errors_total", reason="timeout") == 1
    assert proxy.source_sample("driftgauge_client_errors_total", reason="client_stalled") == 0


async def test_an_upstream_that_never_accepts_is_answered_after_connect_timeout(
    start_proxy: StartProxy,
) -> None:
    """An upstream whose listener never accepts (its backlog full, so the connect hangs) is
    answered 502 after ``connect_timeout``, counted connect_timeout, however long ``timeout``
    and ``client_timeout`` are."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        filling = [socket.socket() for _ in range(3)]
        try:
            for sock in filling:  # the accept queue full: later connects get no answer
                sock.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    sock.connect(("127.0.0.1", port))
            proxy = await start_proxy(port, connect_timeout=0.1, timeout=60, client_timeout=60)
            async with raw_client(proxy.port) as client:
                for _ in range(3):
                    started = time.monotonic()
                    response = await client.request("GET", "/doc")
                    assert response.status == 502
                    assert time.monotonic() - started < 0.6
        finally:
            for sock in filling:
                sock.close()
    assert proxy.source_sample("driftgauge_upstream_errors_total", reason="connect_timeout") == 3


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\nContent-Length: 2\n\n",  # bare LFs: no CRLF CRLF ever ends it
        b"HTTP/1.1 200 O\nX-Injected: 1\nK\r\nContent-Length: 2\r\n\r\n",  # in the reason
    ],
    ids=["head", "reason"],
)
async def test_a_response_head_with_bare_line_feeds_is_a_bad_response_at_once(
    start_proxy: StartProxy, head: bytes
) -> None:
    """A response head with a line ended by a bare LF is answered 502 bad_response as soon as
    it arrives (not a 504 once ``timeout`` passed), and none of it reaches the client."""

    async def script(raw: RawUpstream, reader: asyncio.StreamReader, writer: Any) -> None:
        await raw.read_request(reader)
        writer.write(head + b"ok")
        await writer.drain()
        await asyncio.sleep(10)

    async with raw_upstream(script) as bad:
        proxy = await start_proxy(bad.port, timeout=60)
        async with raw_client(proxy.port) as client:
            response = await client.request("GET", "/x")
    assert response.status == 502
    assert response.header("x-injected") is None
    assert proxy.source_sample("driftgauge_upstream_errors_total", reason="bad_response") == 1


@pytest.mark.parametrize(
    "body",
    [
        b"2\r\nok\r\n0\r\nbad trailer\r\n\r\n",  # a trailer line without a colon
        b"2\r\nok\r\n0\r\nX-T: a\nX-Injected: 1\r\n\r\n",  # a bare LF in a trailer line
        b"2;a=b\nX-Injected: 1\r\nok\r\n0\r\n\r\n",  # a bare LF in a chunk extension
    ],
    ids=["trailer-no-colon", "trailer-bare-lf", "extension-bare-lf"],
)
async def test_a_malformed_chunked_framing_line_is_not_relayed(
    start_proxy: StartProxy, body: bytes
) -> None:
    """A chunk-size or trailer line the client could read otherwise than the proxy did (a bare
    LF, no colon) is not passed on: the response is cut there, counted bad_response."""

    async def script(raw: RawUpstream, reader: asyncio.StreamReader, writer: Any) -> None:
        await raw.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
        await writer.drain()
        await asyncio.sleep(10)

    async with raw_upstream(script) as bad:
        proxy = await start_proxy(bad.port)
        async with raw_client(proxy.port) as client:
            await client.send(b"GET /x HTTP/1.1\r\nHost: p\r\n\r\n")
            async with asyncio.timeout(5):
                received = await client.reader.read()
    assert received.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"X-Injected" not in received
    assert b"bad trailer" not in received
    assert proxy.source_sample("driftgauge_upstream_errors_total", reason="bad_response") == 1


async def test_an_upstream_lost_after_its_paused_client_reset_is_no_error(
    start_proxy: StartProxy,
) -> None:
    """A client reset while the proxy does not read it (its upload held back by an upstream
    that reads none of it but began its answer), then the upstream closing mid-answer: the
    client's connection, already gone, is closed quietly, not with an exception in a
    callback (shutting down its writing side failed: ENOTCONN)."""
    close_upstream = asyncio.Event()

    async def script(raw: RawUpstream, reader: asyncio.StreamReader, writer: Any) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npart")  # answers early
        await close_upstream.wait()  # reads none of the body

    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    try:
        async with raw_upstream(script) as slow:
            proxy = await start_proxy(slow.port)
            size = 16 * 1024 * 1024
            client = await RawClient.open(proxy.port)
            client.writer.write(
                b"POST /upload HTTP/1.1\r\nHost: p\r\nContent-Length: %d\r\n\r\n" % size
                + b"u" * size
            )
            await asyncio.sleep(0.5)  # every buffer on the way full: the proxy reads no more
            sock = client.writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.writer.transport.abort()  # a reset the proxy does not read
            await asyncio.sleep(0.2)
            close_upstream.set()
            await asyncio.sleep(0.3)
    finally:
        loop.set_exception_handler(None)
    assert errors == []
