"""The proxy forwards HTTP/1.1 unchanged (its faults: test_proxy_faults.py; its monitoring:
test_proxy_monitoring.py).

Every test runs real servers on loopback: an upstream model server
(``tests.proxy_upstream``), the sidecar started as the demo starts it, and
clients speaking either aiohttp or raw bytes.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import time
from pathlib import Path

import pytest
from aiohttp import ClientSession, web

from driftgauge.config import config_from_mapping
from driftgauge.exceptions import ConfigError
from tests.helpers import base_config, free_port
from tests.proxy_upstream import (
    DOC,
    Proxy,
    RawUpstream,
    Upstream,
    raw_client,
    raw_upstream,
    until,
    upstream_server,
)
from tests.sources.proxy_support import PREDICT, StartProxy, instances

pytestmark = pytest.mark.usefixtures("proxy_engine")  # both engines (tests/conftest.py)


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
async def test_method_target_and_binary_body_reach_upstream_unchanged(
    proxy: Proxy, upstream: Upstream, method: str
) -> None:
    """Method, raw path, query string and a binary body arrive byte for byte, and come back."""
    body = bytes(range(256)) * 3
    target = "/echo/a%20b/c;v=1?x=1&y=%2F&empty=&plus=a+b&x=2"
    async with raw_client(proxy.port) as client:
        response = await client.request(method, target, body)
    assert response.status == 200
    assert response.body == body
    assert response.header("x-method") == method
    seen = upstream.seen[-1]
    assert (seen.method, seen.target, seen.body) == (method, target, body)


@pytest.mark.parametrize("size", [0, 10 * 1024 * 1024])
async def test_empty_and_ten_megabyte_bodies_pass_intact(
    proxy: Proxy, upstream: Upstream, session: ClientSession, size: int
) -> None:
    """An empty body and a 10 MB body reach the upstream and come back identical."""
    body = bytes(range(256)) * (size // 256)
    async with session.post(proxy.url + "/echo", data=io.BytesIO(body)) as response:
        assert response.status == 200
        assert response.headers["Content-Length"] == str(size)
        received = await response.read()
    assert received == body
    assert upstream.seen[-1].body == body


async def test_request_headers_pass_and_hop_by_hop_ones_are_removed(
    proxy: Proxy, upstream: Upstream
) -> None:
    """End-to-end headers (repeated ones in order) pass; hop-by-hop and Connection-named ones go."""
    headers = [
        "X-Custom: abc",
        "X-Multi: 1",
        "X-Multi: 2",
        "Connection: keep-alive, X-Drop-Me",
        "X-Drop-Me: secret",
        "Keep-Alive: timeout=5",
        "TE: gzip, deflate;q=0.5",  # no trailers: the proxy asks for nothing in its place
        "Upgrade: h2c",
        "Proxy-Connection: keep-alive",
        "Proxy-Authorization: Basic Zm9vOmJhcg==",
        "Authorization: Bearer token",
        "X-Forwarded-Proto: https",
    ]
    async with raw_client(proxy.port) as client:
        response = await client.request("POST", "/echo", b"data", headers)
    assert response.status == 200
    seen = upstream.seen[-1]
    assert seen.header("X-Custom") == "abc"
    assert seen.header_all("X-Multi") == ["1", "2"]
    assert seen.header("Authorization") == "Bearer token"
    assert seen.header("Host") == "proxy"
    assert seen.header("X-Forwarded-Proto") == "https"  # set by an earlier hop: kept
    assert seen.header("X-Forwarded-For") == "127.0.0.1"
    dropped = {
        "connection",
        "x-drop-me",
        "keep-alive",
        "te",
        "upgrade",
        "proxy-connection",
        "proxy-authorization",
    }
    assert not seen.names & dropped


async def test_forwarded_headers_append_the_client_address(
    proxy: Proxy, upstream: Upstream
) -> None:
    """X-Forwarded-For gains 127.0.0.1 after every earlier hop; X-Forwarded-Proto is set."""
    async with raw_client(proxy.port) as client:
        await client.request("GET", "/doc", headers=["X-Forwarded-For: 10.0.0.1"])
        first = upstream.seen[-1]
        await client.request(
            "GET", "/doc", headers=["X-Forwarded-For: 10.0.0.1", "X-Forwarded-For: 10.0.0.2"]
        )
        second = upstream.seen[-1]
    assert first.header_all("X-Forwarded-For") == ["10.0.0.1, 127.0.0.1"]
    assert first.header("X-Forwarded-Proto") == "http"
    assert ", ".join(second.header_all("X-Forwarded-For")) == "10.0.0.1, 10.0.0.2, 127.0.0.1"


async def _virtual_host(request: web.Request) -> web.Response:
    """A virtual host named ``localhost:<port>`` (as an https server behind SNI would be):
    any other Host is misdirected (421); the Host it saw comes back either way."""
    assert request.transport is not None
    expected = f"localhost:{request.transport.get_extra_info('sockname')[1]}"
    status = 200 if request.host == expected else 421
    return web.Response(status=status, text=request.host)


@pytest.mark.parametrize(
    ("setting", "status", "host"),
    [(None, 421, "proxy"), ("client", 421, "proxy"), ("upstream", 200, "localhost:{port}")],
)
async def test_host_header_is_the_clients_or_the_upstreams_as_configured(
    start_proxy: StartProxy, setting: str | None, status: int, host: str
) -> None:
    """source.proxy.host_header: the client's Host by default (client), the upstream URL's host
    and port (upstream), as nginx's proxy_set_header Host and Envoy's auto_host_rewrite give;
    with upstream, an HTTP/1.0 request without Host gets it too, and a client's Host is not
    sent twice."""
    async with upstream_server(routes=[web.get("/vhost", _virtual_host)]) as server:
        options = {"host_header": setting} if setting else {}
        proxy = await start_proxy(
            server.port, upstream=f"http://localhost:{server.port}", **options
        )
        async with raw_client(proxy.port) as client:
            response = await client.request("GET", "/vhost")
        async with raw_client(proxy.port) as client:
            await client.send(b"GET /vhost HTTP/1.0\r\n\r\n")
            bare = await client.response()
    expected = host.format(port=server.port)
    assert (response.status, response.body) == (status, expected.encode())
    assert server.seen[0].header_all("Host") == [expected]
    assert (bare.status, bare.body) == (200, f"localhost:{server.port}".encode())


def test_a_host_header_setting_other_than_client_or_upstream_is_refused(tmp_path: Path) -> None:
    """An unknown source.proxy.host_header is a config error naming the key and the value."""
    source = {"proxy": {"upstream": "http://127.0.0.1:9", "host_header": "rewrite"}}
    with pytest.raises(ConfigError, match=r"source\.proxy\.host_header: 'rewrite' is not one"):
        config_from_mapping(base_config(tmp_path, source=source), base=tmp_path)


async def _hop_by_hop_response(
    server: RawUpstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    while await server.read_request(reader) is not None:
        writer.write(
            b"HTTP/1.1 200 OK\r\n"
            b"Content-Length: 5\r\n"
            b"Connection: keep-alive, X-Hop-Resp\r\n"
            b"Keep-Alive: timeout=5\r\n"
            b"X-Hop-Resp: secret\r\n"
            b"Proxy-Authenticate: Basic\r\n"
            b"Set-Cookie: a=1\r\n"
            b"Set-Cookie: b=2\r\n"
            b"X-Upstream: yes\r\n"
            b"\r\n"
            b"hello"
        )
        await writer.drain()


async def test_response_headers_pass_and_hop_by_hop_ones_are_removed(
    start_proxy: StartProxy,
) -> None:
    """The client sees the upstream's end-to-end headers (both Set-Cookie), not its hop-by-hop ones."""
    async with raw_upstream(_hop_by_hop_response) as server:
        proxy = await start_proxy(server.port)
        async with raw_client(proxy.port) as client:
            response = await client.request("GET", "/x")
            again = await client.request("GET", "/y")
    assert (response.status, response.body, again.body) == (200, b"hello", b"hello")
    assert response.header("x-upstream") == "yes"
    assert response.header_all("set-cookie") == ["a=1", "b=2"]
    assert response.header("content-length") == "5"
    assert not response.names & {"connection", "keep-alive", "x-hop-resp", "proxy-authenticate"}


async def _answer_empty(
    server: RawUpstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    while await server.read_request(reader) is not None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()


async def test_an_empty_response_body_ends_its_exchange_and_the_connection_goes_on(
    start_proxy: StartProxy,
) -> None:
    """A response of ``Content-Length: 0`` is over at its head: answered at once, three times on
    one connection (the native core once waited for a body byte that never came)."""
    async with raw_upstream(_answer_empty) as server:
        proxy = await start_proxy(server.port)
        async with raw_client(proxy.port) as client:
            for _ in range(3):
                response = await client.request("GET", "/empty", within=2.0)
                assert (response.status, response.body) == (200, b"")
    assert proxy.source_sample("driftgauge_requests_total", code="200") == 3


async def test_status_codes_and_bodies_pass_unchanged(proxy: Proxy) -> None:
    """200/201/204/304/404/500 with their bodies (none for 204/304) on one reused connection."""
    async with raw_client(proxy.port) as client:
        for code in (200, 201, 204, 304, 404, 500, 200):
            response = await client.request("GET", f"/status/{code}")
            assert response.status == code
            assert response.header("x-upstream") == f"status-{code}"
            expected = b"" if code in (204, 304) else f"status {code} body".encode()
            assert response.body == expected


async def test_status_reason_phrases_pass_unchanged(proxy: Proxy) -> None:
    """The upstream's reason phrase is kept, also for codes the proxy has no name for."""
    async with raw_client(proxy.port) as client:
        teapot = await client.request("GET", "/status/418?reason=I%27m%20a%20teapot")
        custom = await client.request("GET", "/status/200?reason=Fine%20Thanks")
    assert (teapot.status, teapot.reason, teapot.body) == (418, "I'm a teapot", b"status 418 body")
    assert (custom.status, custom.reason) == (200, "Fine Thanks")


async def test_head_keeps_content_length_sends_no_body_and_connection_stays_usable(
    proxy: Proxy, upstream: Upstream
) -> None:
    """HEAD answers the GET's Content-Length with no body; the next request on it works."""
    async with raw_client(proxy.port) as client:
        head = await client.request("HEAD", "/doc")
        get = await client.request("GET", "/doc")
        head_again = await client.request("HEAD", "/doc")
        post = await client.request("POST", "/echo", b"after head")
    assert head.status == 200
    assert head.header("content-length") == str(len(DOC))
    assert head.body == b""
    assert get.body == DOC
    assert head_again.status == 200
    assert post.body == b"after head"
    assert len(upstream.connections) == 1


async def test_keep_alive_reuses_one_upstream_connection(proxy: Proxy, upstream: Upstream) -> None:
    """Sequential requests, on one client connection and then another, share one upstream connection."""
    async with raw_client(proxy.port) as client:
        for index in range(20):
            response = await client.request("POST", "/echo", b"request %d" % index)
            assert response.body == b"request %d" % index
    async with raw_client(proxy.port) as client:
        for _ in range(5):
            assert (await client.request("GET", "/doc")).body == DOC
    assert len(upstream.seen) == 25
    assert len(upstream.connections) == 1


async def test_chunked_request_body_reaches_upstream_intact(
    proxy: Proxy, upstream: Upstream
) -> None:
    """A Transfer-Encoding: chunked upload sent in pieces arrives whole."""
    pieces = [b"hello ", bytes(range(256)), b"x" * 70_000, b"\r\n0\r\n"]
    async with raw_client(proxy.port) as client:
        await client.send(b"POST /echo HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in pieces:
            await client.send(b"%x\r\n%s\r\n" % (len(piece), piece))
            await asyncio.sleep(0.01)
        await client.send(b"0\r\n\r\n")
        response = await client.response()
    body = b"".join(pieces)
    assert response.status == 200
    assert response.body == body
    assert upstream.seen[-1].body == body
    assert upstream.seen[-1].header("Transfer-Encoding") == "chunked"


async def test_chunked_response_reaches_client_intact(proxy: Proxy) -> None:
    """A streamed (chunked) upstream response arrives chunked and whole."""
    async with raw_client(proxy.port) as client:
        response = await client.request("GET", "/stream?parts=5&gap=0")
    assert response.status == 200
    assert response.header("transfer-encoding") == "chunked"
    assert response.header("content-type") == "text/event-stream"
    assert response.body == b"".join(b"data: event %d\n\n" % i for i in range(5))


async def _trailers_back(
    server: RawUpstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Keep each request's head and chunked body (trailer and all) in ``server.heads``; answer
    a chunked body with a trailer of its own."""
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        server.heads.append(head)
        if b"chunked" in head:
            server.heads.append(await reader.readuntil(b"\r\n\r\n"))  # no CRLF CRLF inside
        writer.write(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Digest, X-Count\r\n"
            b"\r\n5\r\nworld\r\n0\r\nX-Digest: sha-256=Ygl\r\nx-count:  2\r\n\r\n"
        )
        await writer.drain()


async def test_chunked_trailers_pass_unchanged_both_ways(start_proxy: StartProxy) -> None:
    """Trailer fields after a chunked body reach the upstream, and the client, as they were sent;
    the Trailer field announcing them too; the connection goes on after."""
    async with raw_upstream(_trailers_back) as server:
        proxy = await start_proxy(server.port)
        async with raw_client(proxy.port) as client:
            await client.send(
                b"POST /up HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked\r\n"
                b"Trailer: X-Checksum\r\n\r\n5\r\nhello\r\n"
            )
            await client.send(b"0\r\nX-Checksum: crc32=3610a686\r\nX-Two: a, b\r\n\r\n")
            async with asyncio.timeout(5):
                head = await client.reader.readuntil(b"\r\n\r\n")
                body = await client.reader.readuntil(b"\r\n\r\n")
            again = await client.request("POST", "/next", b"x")
    assert server.heads[0].lower().count(b"trailer: x-checksum\r\n") == 1
    assert server.heads[1] == (
        b"5\r\nhello\r\n0\r\nX-Checksum: crc32=3610a686\r\nX-Two: a, b\r\n\r\n"
    )
    assert b"\r\ntrailer: x-digest, x-count\r\n" in head.lower()
    assert body == b"5\r\nworld\r\n0\r\nX-Digest: sha-256=Ygl\r\nx-count: 2\r\n\r\n"
    assert (again.status, again.body) == (200, b"world")
    assert again.trailers == [("x-digest", "sha-256=Ygl"), ("x-count", "2")]


async def _trailers_when_asked(
    server: RawUpstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Answer chunked, with a trailer field only when the request's TE lists trailers (as a
    gRPC-web or digest-computing server does)."""
    while (request := await server.read_request(reader)) is not None:
        asked = any(
            line.lower().startswith(b"te:") and b"trailers" in line.lower()
            for line in request[0].split(b"\r\n")
        )
        trailer = b"X-Status: 0\r\n" if asked else b""
        writer.write(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nworld\r\n0\r\n%s\r\n"
            % trailer
        )
        await writer.drain()


@pytest.mark.parametrize("te", ["trailers", "deflate;q=0.5, Trailers"])
async def test_a_clients_te_trailers_is_sent_upstream_as_the_proxys_own(
    start_proxy: StartProxy, te: str
) -> None:
    """TE is hop-by-hop, but the proxy relays trailers: an HTTP/1.1 client's TE listing trailers
    goes upstream as the proxy's own TE: trailers (with Connection: TE, RFC 9110, 10.1.4), so
    an upstream that sends trailers only when asked sends them, and they reach the client."""
    async with raw_upstream(_trailers_when_asked) as server:
        proxy = await start_proxy(server.port)
        async with raw_client(proxy.port) as client:
            asked = await client.request("GET", "/t", headers=[f"TE: {te}"])
            plain = await client.request("GET", "/t")
    assert asked.trailers == [("x-status", "0")]
    assert asked.body == plain.body == b"world"
    assert plain.trailers == []
    head = server.heads[0].lower()
    assert b"\r\nte: trailers\r\n" in head
    assert b"\r\nconnection: te\r\n" in head
    assert b"deflate" not in head
    assert b"\r\nte:" not in server.heads[1].lower()


async def test_an_http10_clients_te_trailers_is_not_sent_upstream(
    start_proxy: StartProxy,
) -> None:
    """An HTTP/1.0 client gets no chunked body, so no trailers: the proxy asks for none."""
    async with raw_upstream(_trailers_when_asked) as server:
        proxy = await start_proxy(server.port)
        async with raw_client(proxy.port) as client:
            await client.send(b"GET /t HTTP/1.0\r\nHost: p\r\nTE: trailers\r\n\r\n")
            response = await client.response()
    assert (response.status, response.body) == (200, b"world")
    assert b"\r\nte:" not in server.heads[0].lower()
    assert b"connection: te" not in server.heads[0].lower()


async def _gzip_transfer_coded(
    server: RawUpstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    while True:
        server.heads.append(await reader.readuntil(b"\r\n\r\n"))
        server.heads.append(await reader.readuntil(b"\r\n0\r\n\r\n"))
        body = gzip.compress(b"coded answer")
        writer.write(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n"
            % (len(body), body)
        )
        await writer.drain()


async def test_transfer_codings_besides_chunked_are_kept_both_ways(
    start_proxy: StartProxy,
) -> None:
    """A body sent with Transfer-Encoding: gzip, chunked goes on chunked by the proxy but still
    gzip-coded, so the field goes on whole (only 'chunked' went on: the bytes read as plain)."""
    coded = gzip.compress(b"coded request")
    async with raw_upstream(_gzip_transfer_coded) as server:
        proxy = await start_proxy(server.port)
        async with raw_client(proxy.port) as client:
            await client.send(
                b"POST /up HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                b"%x\r\n%s\r\n0\r\n\r\n" % (len(coded), coded)
            )
            response = await client.response()
    assert b"\r\ntransfer-encoding: gzip, chunked\r\n" in server.heads[0].lower()
    assert server.heads[1] == b"%x\r\n%s\r\n0\r\n\r\n" % (len(coded), coded)
    assert response.header_all("transfer-encoding") == ["gzip, chunked"]
    assert gzip.decompress(response.body) == b"coded answer"


async def test_server_sent_events_arrive_incrementally(
    upstream: Upstream, start_proxy: StartProxy, session: ClientSession
) -> None:
    """Each event arrives when sent; a stream longer than ``timeout`` lives while events flow."""
    proxy = await start_proxy(upstream.port, timeout=0.8)
    arrivals: list[tuple[float, bytes]] = []
    started = time.monotonic()
    async with session.get(proxy.url + "/stream?parts=4&gap=0.3") as response:
        while line := await response.content.readuntil(b"\n\n"):
            arrivals.append((time.monotonic() - started, line))
    ended = time.monotonic() - started
    assert [line for _, line in arrivals] == [b"data: event %d\n\n" % i for i in range(4)]
    assert arrivals[0][0] < ended - 0.6
    assert arrivals[1][0] - arrivals[0][0] > 0.15


async def test_pipelined_requests_are_answered_in_order(proxy: Proxy, upstream: Upstream) -> None:
    """Three requests in one write get three responses in request order, even when the first is slowest."""
    async with raw_client(proxy.port) as client:
        await client.send(
            b"GET /slow?delay=0.2 HTTP/1.1\r\nHost: p\r\n\r\n"
            b"HEAD /doc HTTP/1.1\r\nHost: p\r\n\r\n"
            b"POST /echo HTTP/1.1\r\nHost: p\r\nContent-Length: 5\r\n\r\nthird"
        )
        first = await client.response()
        second = await client.response(head=True)
        third = await client.response()
        again = await client.request("GET", "/doc")
    assert (first.status, first.body) == (200, b"slow answer")
    assert (second.status, second.header("content-length"), second.body) == (200, "1234", b"")
    assert (third.status, third.body) == (200, b"third")
    assert again.body == DOC
    assert [seen.target for seen in upstream.seen] == ["/slow?delay=0.2", "/doc", "/echo", "/doc"]


@pytest.mark.parametrize(
    "last",
    [
        b"GET /slow?delay=0.2 HTTP/1.1\r\nHost: p\r\nConnection: close\r\n",
        b"GET /slow?delay=0.2 HTTP/1.0\r\n",
    ],
    ids=["connection-close", "http10"],
)
async def test_a_request_pipelined_after_the_last_one_is_ignored_and_the_last_answered(
    proxy: Proxy, upstream: Upstream, last: bytes
) -> None:
    """A request sent in the same write after one that closes the connection (Connection: close,
    HTTP/1.0) is not processed, as RFC 9112 (9.6) asks; the closing request is still answered,
    then the connection ends."""
    async with raw_client(proxy.port) as client:
        await client.send(last + b"\r\nGET /doc HTTP/1.1\r\nHost: p\r\n\r\n")
        answer = await client.response()
        assert await client.closed()
    assert (answer.status, answer.body) == (200, b"slow answer")
    assert [seen.target for seen in upstream.seen] == ["/slow?delay=0.2"]
    assert proxy.source_sample("driftgauge_client_errors_total", reason="bad_request") == 0


async def test_fifty_concurrent_clients_each_get_their_own_answer(
    proxy: Proxy, upstream: Upstream, session: ClientSession
) -> None:
    """50 concurrent requests are all answered, each with the response to its own request."""

    async def one(index: int) -> tuple[int, bytes, bytes]:
        body = b"client %03d " % index * (index + 1)
        async with session.post(proxy.url + f"/echo?i={index}", data=body) as response:
            return response.status, await response.read(), body

    results = await asyncio.gather(*(one(i) for i in range(50)))
    assert all(status == 200 for status, _, _ in results)
    assert all(received == sent for _, received, sent in results)
    assert len(upstream.seen) == 50


async def test_slow_upload_is_not_an_upstream_timeout(
    upstream: Upstream, start_proxy: StartProxy
) -> None:
    """A chunked upload that takes longer than ``timeout`` in total still gets the answer."""
    proxy = await start_proxy(upstream.port, timeout=0.8)
    pieces = [b"piece %d;" % i for i in range(6)]
    async with raw_client(proxy.port) as client:
        await client.send(b"POST /echo HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in pieces:
            await asyncio.sleep(0.2)
            await client.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        await client.send(b"0\r\n\r\n")
        response = await client.response()
    assert (response.status, response.body) == (200, b"".join(pieces))
    assert proxy.source_sample("driftgauge_upstream_errors_total", reason="timeout") == 0


async def _early_hints(
    server: RawUpstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    while await server.read_request(reader) is not None:
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </model.json>; rel=preload\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal")
        await writer.drain()


async def test_interim_103_response_is_passed_on_before_the_final_one(
    start_proxy: StartProxy,
) -> None:
    """A 103 Early Hints reaches the client with its headers, then the final response."""
    async with raw_upstream(_early_hints) as server:
        proxy = await start_proxy(server.port)
        async with raw_client(proxy.port) as client:
            await client.send(b"GET /hints HTTP/1.1\r\nHost: p\r\n\r\n")
            interim = await client.response()
            final = await client.response()
            again = await client.request("GET", "/hints")
            assert (await client.response()).body == b"final"
    assert interim.status == 103
    assert interim.header("link") == "</model.json>; rel=preload"
    assert (final.status, final.body) == (200, b"final")
    assert again.status == 103


async def test_an_http10_client_gets_no_interim_response(start_proxy: StartProxy) -> None:
    """HTTP/1.0 knows no 1xx: a 103 from the upstream is not passed on to it (RFC 9110, 15.2),
    and its first answer is the final one."""
    async with raw_upstream(_early_hints) as server:
        proxy = await start_proxy(server.port)
        async with raw_client(proxy.port) as client:
            await client.send(b"GET /hints HTTP/1.0\r\nHost: p\r\n\r\n")
            response = await client.response()
    assert (response.status, response.body) == (200, b"final")


async def test_expect_100_continue_gets_interim_then_final_response(
    proxy: Proxy, upstream: Upstream
) -> None:
    """The client waiting on Expect: 100-continue gets 100 Continue, sends, then gets the answer."""
    async with raw_client(proxy.port) as client:
        await client.send(
            b"POST /echo HTTP/1.1\r\nHost: p\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = await client.response()
        await client.send(b"hello world")
        final = await client.response()
    assert interim.status == 100
    assert (final.status, final.body) == (200, b"hello world")
    assert upstream.seen[-1].body == b"hello world"


async def test_expect_100_continue_from_an_http10_client_is_ignored(
    proxy: Proxy, upstream: Upstream
) -> None:
    """HTTP/1.0 has no interim responses: its Expect: 100-continue gets no 100 (RFC 9110,
    10.1.1), only the final answer."""
    async with raw_client(proxy.port) as client:
        await client.send(
            b"POST /echo HTTP/1.0\r\nHost: p\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\n\r\nhello"
        )
        response = await client.response()
    assert (response.status, response.body) == (200, b"hello")
    assert upstream.seen[-1].body == b"hello"


async def test_client_half_close_after_its_request_is_still_answered(proxy: Proxy) -> None:
    """A client that shuts down its sending side after the request gets the answer, then EOF."""
    async with raw_client(proxy.port) as client:
        await client.send(b"POST /echo HTTP/1.1\r\nHost: p\r\nContent-Length: 4\r\n\r\nlast")
        client.writer.write_eof()
        response = await client.response()
        assert await client.closed()
    assert (response.status, response.body) == (200, b"last")


async def test_http10_client_gets_its_response_and_the_connection_closes(proxy: Proxy) -> None:
    """HTTP/1.0 without keep-alive (with or without Host) and Connection: close end after the answer."""
    async with raw_client(proxy.port) as client:
        await client.send(b"GET /doc HTTP/1.0\r\nHost: p\r\n\r\n")
        response = await client.response()
        assert await client.closed()
    assert (response.status, response.body) == (200, DOC)
    async with raw_client(proxy.port) as client:
        await client.send(b"GET /stream?parts=3&gap=0 HTTP/1.0\r\n\r\n")
        streamed = await client.response()
        assert await client.closed()
    assert streamed.header("transfer-encoding") is None
    assert streamed.body == b"".join(b"data: event %d\n\n" % i for i in range(3))
    async with raw_client(proxy.port) as client:
        closing = await client.request("GET", "/doc", headers=["Connection: close"])
        assert await client.closed()
    assert (closing.body, closing.header("connection")) == (DOC, "close")


async def test_http10_keep_alive_client_is_told_its_connection_stays_open(proxy: Proxy) -> None:
    """An HTTP/1.0 client asking for keep-alive gets ``Connection: keep-alive`` with each answer
    the proxy keeps its connection open after (without it, HTTP/1.0 reads the answer as the
    last), and its next request is served on the same connection."""
    async with raw_client(proxy.port) as client:
        for _ in range(2):
            await client.send(b"GET /doc HTTP/1.0\r\nHost: p\r\nConnection: keep-alive\r\n\r\n")
            response = await client.response()
            assert (response.status, response.body) == (200, DOC)
            assert response.header("connection") == "keep-alive"


async def test_http10_keep_alive_client_answered_by_the_proxy_is_closed_after(
    start_proxy: StartProxy,
) -> None:
    """The proxy's own 502 to an HTTP/1.0 keep-alive client says no keep-alive, so the
    connection ends after it (the client would wait for a close otherwise)."""
    proxy = await start_proxy(free_port())  # nothing listens there: 502
    async with raw_client(proxy.port) as client:
        await client.send(b"GET /doc HTTP/1.0\r\nHost: p\r\nConnection: keep-alive\r\n\r\n")
        response = await client.response()
        assert response.status == 502
        assert response.header("connection") is None
        assert await client.closed(within=2.0)


async def _close_delimited(
    server: RawUpstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    if await server.read_request(reader) is None:
        return
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n")
    for index in range(4):
        writer.write(bytes([65 + index]) * 50_000)
        await writer.drain()
        await asyncio.sleep(0.01)


async def test_close_delimited_upstream_response_reaches_client_whole(
    start_proxy: StartProxy,
) -> None:
    """A body ended by the upstream closing is delivered whole; the client connection lives on."""
    async with raw_upstream(_close_delimited) as server:
        proxy = await start_proxy(server.port)
        async with raw_client(proxy.port) as client:
            first = await client.request("GET", "/a")
            second = await client.request("GET", "/b")
    expected = b"A" * 50_000 + b"B" * 50_000 + b"C" * 50_000 + b"D" * 50_000
    assert (first.status, first.body) == (200, expected)
    assert second.body == expected
    assert server.connections == 2


@pytest.mark.parametrize(
    "garbage",
    [
        b"THIS IS NOT HTTP\r\n\r\n",
        b"GET /doc HTTP/1.1\r\nBad Header Line\r\n\r\n",
        b"GET /doc HTTP/1.1\nHost: p\n\n",  # bare LFs: no CRLF CRLF ever ends it
    ],
    ids=["garbage", "field", "bare-lf"],
)
async def test_malformed_request_gets_400_and_others_are_still_served(
    proxy: Proxy, upstream: Upstream, garbage: bytes
) -> None:
    """A malformed request is answered 400 and closed; other clients are unaffected."""
    async with raw_client(proxy.port) as bad, raw_client(proxy.port) as good:
        await bad.send(garbage)
        response = await bad.response()
        assert await bad.closed()
        assert (await good.request("GET", "/doc")).body == DOC
    assert response.status == 400
    assert response.header("content-type") == "application/json"
    assert "error" in json.loads(response.body)
    assert [seen.target for seen in upstream.seen] == ["/doc"]
    assert proxy.source_sample("driftgauge_client_errors_total", reason="bad_request") == 1


@pytest.mark.parametrize(
    "start", [b"GET /doc HTTP/1.1\r\nHost: p\r\nX-Big: ", b"GET /doc?"], ids=["field", "target"]
)
async def test_a_request_head_beyond_64_kib_gets_431_and_is_not_buffered(
    proxy: Proxy, upstream: Upstream, start: bytes
) -> None:
    """A request line or header field that does not end is answered 431 and closed once the head
    passes 64 KiB (it was buffered without bound); a 60 KiB head sent in pieces is forwarded."""
    async with raw_client(proxy.port) as client:
        await client.send(start)
        for _ in range(64):  # 4 MiB: the proxy answers, then reads and drops the rest
            await client.send(b"a" * 65536)
        response = await client.response()
        assert await client.closed()
    assert response.status == 431
    assert json.loads(response.body)["driftgauge"] == "head_too_large"
    assert proxy.source_sample("driftgauge_client_errors_total", reason="head_too_large") == 1
    assert not upstream.seen
    async with raw_client(proxy.port) as client:
        await client.send(b"GET /doc HTTP/1.1\r\nHost: p\r\n")
        for index in range(15):
            await client.send(b"X-Field-%d: %s\r\n" % (index, b"v" * 4000))
            await asyncio.sleep(0.01)
        await client.send(b"\r\n")
        fine = await client.response()
    assert (fine.status, fine.body) == (200, DOC)
    assert upstream.seen[-1].header("X-Field-14") == "v" * 4000


@pytest.mark.parametrize(
    "head",
    [
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c, websocket\r\n\r\n",
        b"CONNECT model:80 HTTP/1.1\r\nHost: model:80\r\n\r\n",
    ],
    ids=["websocket", "h2c or websocket", "CONNECT"],
)
async def test_protocol_upgrade_gets_400_and_never_reaches_upstream(
    proxy: Proxy, upstream: Upstream, head: bytes
) -> None:
    """A protocol upgrade other than h2c (WebSocket, CONNECT) is answered 400 and closed."""
    async with raw_client(proxy.port) as client:
        await client.send(head)
        response = await client.response()
        assert await client.closed()
    assert response.status == 400
    assert json.loads(response.body)["error"]
    assert upstream.seen == []
    assert proxy.source_sample("driftgauge_client_errors_total", reason="upgrade_unsupported") == 1


# As curl --http2 sends it on a plain connection.
H2C_OFFER = (
    b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
    b"HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"
)


async def test_an_h2c_offer_is_answered_as_http11_and_monitored(
    proxy: Proxy, upstream: Upstream
) -> None:
    """An offer of h2c is ignored (RFC 9113, 3.2): the request, body and all, goes upstream as
    HTTP/1.1 without the offer's headers, is monitored, and the request pipelined after it is
    answered too; a chunked body arriving after the head's read is read whole."""
    body = instances(2)
    async with raw_client(proxy.port) as client:
        await client.send(
            b"POST %s HTTP/1.1\r\nHost: p\r\n%sContent-Length: %d\r\n\r\n%s"
            % (PREDICT.encode(), H2C_OFFER, len(body), body)
            + b"GET /doc HTTP/1.1\r\nHost: p\r\n\r\n"
        )
        predicted = await client.response()
        doc = await client.response()
        # HTTP2-Settings not named in Connection, the chunked body in a later read.
        await client.send(
            b"POST /echo HTTP/1.1\r\nHost: p\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
            b"HTTP2-Settings: AAMAAABk\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        await asyncio.sleep(0.05)
        await client.send(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        echoed = await client.response()
    assert (predicted.status, json.loads(predicted.body)) == (200, {"predictions": ["b", "b"]})
    assert (doc.status, doc.body) == (200, DOC)
    assert (echoed.status, echoed.body) == (200, b"abcde")
    assert [seen.target for seen in upstream.seen] == [PREDICT, "/doc", "/echo"]
    assert [upstream.seen[0].body, upstream.seen[2].body] == [body, b"abcde"]
    for seen in upstream.seen:
        assert not seen.names & {"upgrade", "http2-settings", "connection"}
    await until(lambda: proxy.sidecar.monitor.rows_total == 2, what="the two rows")
    assert proxy.source_sample("driftgauge_client_errors_total", reason="upgrade_unsupported") == 0
