"""How the proxy reads a message's framing: the same bytes sent to both engines (the
``proxy_engine`` fixture) get the same answer, the stricter reading where RFC 9112 leaves one
open, as a framing read two ways is how requests are smuggled and responses split; and where
one request ends and the next begins on a connection (pipelining, a client's half-close).

A scripted upstream on loopback sends each response's exact bytes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.proxy_upstream import DOC, RawUpstream, Upstream, raw_client, raw_upstream
from tests.sources.proxy_support import StartProxy

pytestmark = pytest.mark.usefixtures("proxy_engine")  # both engines (tests/conftest.py)

CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


def _serving(response: bytes) -> Any:
    async def script(raw: RawUpstream, reader: asyncio.StreamReader, writer: Any) -> None:
        while await raw.read_request(reader) is not None:
            writer.write(response)
            await writer.drain()

    return script


@pytest.mark.parametrize(
    "head",
    [
        b"Content-Length: 5\r\nContent-Length: 5\r\n",  # RFC 9110, 8.6: MAY be refused
        b"Content-Length: 5, 5\r\n",
        b"Transfer-Encoding: \r\nContent-Length: 5\r\n",  # an empty coding list beside a length
        b"Transfer-Encoding: identity\r\nContent-Length: 5\r\n",
        b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        b"Transfer-Encoding: \r\n",
        b"Transfer-Encoding: chunked\t\r\n",  # chunked to one reader, another coding to the next
        b"Transfer-Encoding: chunked,\r\n",
        b"Transfer-Encoding: xchunked\r\n",
        b"Transfer-Encoding: chunked;q=1\r\n",
        b"Transfer-Encoding: chunked, gzip\r\n",
        b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",  # chunked twice
        b"Transfer-Encoding: gzip\r\n",  # close-delimited under a coding the client is not told of
    ],
    ids=[
        "duplicate-length",
        "length-list",
        "empty-coding-and-length",
        "identity-and-length",
        "chunked-and-length",
        "empty-coding",
        "chunked-tab",
        "chunked-comma",
        "xchunked",
        "chunked-parameter",
        "chunked-not-last",
        "chunked-twice",
        "gzip-not-chunked",
    ],
)
async def test_a_response_head_framed_ambiguously_is_a_bad_response(
    start_proxy: StartProxy, head: bytes
) -> None:
    """A response whose Content-Length or Transfer-Encoding a recipient could read otherwise than
    the proxy (or one it could relay only by changing its codings) is answered 502 bad_response,
    none of it relayed, and the client's connection serves its next request."""
    response = b"HTTP/1.1 200 OK\r\n" + head + b"\r\n" + b"hello"
    async with raw_upstream(_serving(response)) as bad:
        proxy = await start_proxy(bad.port)
        async with raw_client(proxy.port) as client:
            first = await client.request("GET", "/x")
            second = await client.request("GET", "/x")
    assert (first.status, second.status) == (502, 502)
    assert b"hello" not in first.body
    assert proxy.source_sample("driftgauge_upstream_errors_total", reason="bad_response") == 2


def _fields(count: int, size: int) -> bytes:
    return b"".join(b"X-%d: %s\r\n" % (i, b"v" * size) for i in range(count))


@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/2.0 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/0.9 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 099 Low\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\nhello",
        b"\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\n" + _fields(129, 1) + b"Content-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\n" + _fields(70, 1000) + b"Content-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\n" + _fields(200, 1000),  # and no end: not waited for
        b"HTTP/1.0 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    ],
    ids=[
        "http2",
        "http09",
        "status-99",
        "unasked-101",
        "empty-line-first",
        "129-fields",
        "70-kib-head",
        "endless-head",
        "http10-interim",
    ],
)
async def test_a_response_head_one_engine_refuses_is_refused_by_both(
    start_proxy: StartProxy, response: bytes
) -> None:
    """A head in a version other than HTTP/1.0 or 1.1, a status below 100, a 101 no upgrade
    was asked for, an empty line before the status line, more than 128 fields or more than
    64 KiB, an interim head in HTTP/1.0 (which has none): 502 bad_response at once, and nothing
    of it relayed (the Python engine relayed each but the endless head, answered 504 after
    ``timeout``; the 101 it relayed, then a 502; native relayed the final head after the
    HTTP/1.0 interim one)."""
    async with raw_upstream(_serving(response)) as bad:
        proxy = await start_proxy(bad.port, timeout=60)
        async with raw_client(proxy.port) as client:
            answer = await client.request("GET", "/x")
    assert answer.status == 502
    assert b"hello" not in answer.body
    assert proxy.source_sample("driftgauge_upstream_errors_total", reason="bad_response") == 1


@pytest.mark.parametrize(
    "body",
    [
        b"2 \r\nok\r\n0\r\n\r\n",  # whitespace after the size: RFC 9112's BWS, before no ";"
        b"2\t\r\nok\r\n0\r\n\r\n",
        b"2 ;a=b\r\nok\r\n0\r\n\r\n",  # BWS before ";": valid, but the parsers on the way differ
        b"2;\r\nok\r\n0\r\n\r\n",  # an empty extension
        b"2; a\r\nok\r\n0\r\n\r\n",
        b"2;a=b;\r\nok\r\n0\r\n\r\n",
        b"2;a=b=c\r\nok\r\n0\r\n\r\n",
        b'2;a="b\r\nok\r\n0\r\n\r\n',  # a quoted string left open
        b"2;a b\r\nok\r\n0\r\n\r\n",
        b"2\r\nok\r\n0\r\nContent-Length: 9\r\n\r\n",  # framing in the trailer section
    ],
    ids=[
        "size-space",
        "size-tab",
        "space-before-extension",
        "empty-extension",
        "space-after-semicolon",
        "extension-then-semicolon",
        "two-equals",
        "open-quote",
        "space-in-extension",
        "trailer-length",
    ],
)
async def test_a_malformed_chunk_line_cuts_the_response(
    start_proxy: StartProxy, body: bytes
) -> None:
    """A chunk-size line outside the grammar both engines read (hex digits, then ``;name`` or
    ``;name=value`` with no whitespace) or a Content-Length trailer field: the response is cut
    there, its data not relayed, counted bad_response."""
    async with raw_upstream(_serving(CHUNKED + body)) as bad:
        proxy = await start_proxy(bad.port)
        async with raw_client(proxy.port) as client:
            await client.send(b"GET /x HTTP/1.1\r\nHost: p\r\n\r\n")
            async with asyncio.timeout(5):
                received = await client.reader.read()
    head, _, rest = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert not rest.endswith(b"0\r\n\r\n")  # never a whole message
    if not body.startswith(b"2\r\n"):
        assert b"ok" not in rest
    assert proxy.source_sample("driftgauge_upstream_errors_total", reason="bad_response") == 1


@pytest.mark.parametrize(
    ("transfer", "body"),
    [
        (b"chunked", b"2;a=b\r\nok\r\n0\r\n\r\n"),
        (b"chunked", b'2;a="b c";d\r\nok\r\n0;x=y\r\n\r\n'),
        (b"chunked", b"002\r\nok\r\n0\r\n\r\n"),
        (b"Chunked ", b"2\r\nok\r\n0\r\n\r\n"),
        (b"gzip, chunked", b"2\r\nok\r\n0\r\n\r\n"),
    ],
    ids=["extension", "quoted-extension", "leading-zeros", "letter-case", "gzip-chunked"],
)
async def test_a_well_framed_chunked_response_is_relayed_without_extensions(
    start_proxy: StartProxy, transfer: bytes, body: bytes
) -> None:
    """Chunk extensions and sizes both engines read alike are relayed as the proxy's own
    chunk-size lines (an extension goes no further), the codings as they came."""
    response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: " + transfer + b"\r\n\r\n" + body
    async with raw_upstream(_serving(response)) as good:
        proxy = await start_proxy(good.port)
        async with raw_client(proxy.port) as client:
            await client.send(b"GET /x HTTP/1.1\r\nHost: p\r\n\r\n")
            async with asyncio.timeout(5):
                received = await client.reader.readuntil(b"\r\n0\r\n\r\n")
            again = await client.request("GET", "/x")
    head, _, chunks = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\ntransfer-encoding: " + transfer.strip() in head
    assert chunks == b"2\r\nok\r\n0\r\n\r\n"
    assert again.body == b"ok"
    assert proxy.source_sample("driftgauge_upstream_errors_total", reason="bad_response") == 0


@pytest.mark.parametrize(
    "transfer",
    [b"gzip", b"xchunked", b"chunked\t", b"chunked;q=1", b"identity"],
    ids=["gzip", "xchunked", "chunked-tab", "chunked-parameter", "identity"],
)
async def test_a_request_body_of_no_known_length_is_answered_400(
    start_proxy: StartProxy, transfer: bytes
) -> None:
    """A request whose Transfer-Encoding does not end in chunked has a body of no known length:
    400 and the connection closed (RFC 9112, 6.3), none of it sent upstream, where the proxy
    sent its head on (with a body of none, as its parser reads it, and ``xchunked`` or
    ``chunked\\t`` as the framing header: the upstream could read the body that follows)."""
    async with raw_upstream(_serving(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")) as up:
        proxy = await start_proxy(up.port)
        async with raw_client(proxy.port) as client:
            assert (await client.request("GET", "/warm")).body == b"ok"  # a pooled connection
            await client.send(
                b"POST /echo HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: " + transfer + b"\r\n\r\n"
                b"3\r\nabc\r\n0\r\n\r\n"
            )
            answer = await client.response()
            assert await client.closed()
    assert (answer.status, json.loads(answer.body)["driftgauge"]) == (400, "bad_request")
    assert [head for head in up.heads if head.startswith(b"POST")] == []
    assert proxy.source_sample("driftgauge_client_errors_total", reason="bad_request") == 1


@pytest.mark.parametrize(
    "length", [b"0000000000000000000005", b"9223372036854775807"], ids=["leading-zeros", "huge"]
)
async def test_a_content_length_the_parser_reads_is_read_alike(
    start_proxy: StartProxy, length: bytes
) -> None:
    """A Content-Length with leading zeros is relayed with its body, and one the body never
    reaches has its head relayed and is cut when the upstream closes (native refused both
    502, past 18 digits)."""
    response = b"HTTP/1.1 200 OK\r\nContent-Length: " + length + b"\r\n\r\nhello"

    async def script(raw: RawUpstream, reader: asyncio.StreamReader, writer: Any) -> None:
        await raw.read_request(reader)
        writer.write(response)
        await writer.drain()

    async with raw_upstream(script) as up:
        proxy = await start_proxy(up.port)
        async with raw_client(proxy.port) as client:
            await client.send(b"GET /x HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n")
            async with asyncio.timeout(5):
                received = await client.reader.read()
    assert received.startswith(b"HTTP/1.1 200 OK\r\nContent-Length: " + length + b"\r\n")
    assert received.endswith(b"\r\n\r\nhello")


GET = b"GET /doc HTTP/1.1\r\nHost: p\r\n\r\n"


@pytest.mark.parametrize(
    ("requests", "bodies"),
    [
        (GET * 3, [DOC, DOC, DOC]),
        (b"POST /echo HTTP/1.1\r\nHost: p\r\nContent-Length: 3\r\n\r\nabc" + GET, [b"abc", DOC]),
        (GET + b"GET /doc HTTP/1.0\r\n\r\n", [DOC, DOC]),  # handed over by the native core
        (
            GET + b"POST /echo HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\n\r\n",
            [DOC, b"abc"],
        ),
        (GET + b"GET /doc HTTP/1.1\r\nHo", [DOC]),  # a head cut short: nothing to answer
    ],
    ids=["three-gets", "post-then-get", "then-http10", "then-chunked", "then-part-of-a-head"],
)
async def test_pipelined_requests_before_a_half_close_are_all_answered(
    upstream: Upstream, start_proxy: StartProxy, requests: bytes, bodies: list[bytes]
) -> None:
    """A client that sends its requests in one write and then shuts its writing side down gets
    every answer in order, the last saying ``Connection: close``, then the connection closes (as
    nginx with ``proxy_ignore_client_abort on``); only the first was answered before."""
    proxy = await start_proxy(upstream.port)
    async with raw_client(proxy.port) as client:
        await client.send(requests)
        client.writer.write_eof()
        answers = [await client.response() for _ in bodies]
        assert await client.closed()
    assert [answer.body for answer in answers] == bodies
    assert [answer.header("connection") for answer in answers][-1] == "close"
    assert all(answer.header("connection") is None for answer in answers[:-1])


BAD_UPLOAD = (
    b"POST /echo HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nZZ\r\n"
)


@pytest.mark.parametrize("half_close", [False, True], ids=["open", "half-closed"])
@pytest.mark.parametrize(
    "malformed", [b"THIS IS NOT HTTP\r\n\r\n", BAD_UPLOAD], ids=["head", "chunked-body"]
)
async def test_a_malformed_request_pipelined_behind_a_good_one_is_answered_after_it(
    upstream: Upstream, start_proxy: StartProxy, malformed: bytes, half_close: bool
) -> None:
    """The request before it gets its answer, then the malformed one its 400 and the connection
    closes, the malformed one never sent upstream (the Python engine closed at once, the first
    request unanswered)."""
    proxy = await start_proxy(upstream.port)
    async with raw_client(proxy.port) as client:
        await client.send(GET + malformed)
        if half_close:
            client.writer.write_eof()
        first = await client.response()
        second = await client.response()
        assert await client.closed()
    assert (first.status, first.body, second.status) == (200, DOC, 400)
    assert [seen.target for seen in upstream.seen] == ["/doc"]
    assert proxy.source_sample("driftgauge_client_errors_total", reason="bad_request") == 1


async def test_a_malformed_upload_body_is_answered_400_at_once(
    upstream: Upstream, start_proxy: StartProxy
) -> None:
    """A chunked upload whose body turns malformed after its head went upstream is answered 400
    at once, its upstream connection dropped, not left to the upstream's ``timeout``."""
    proxy = await start_proxy(upstream.port, timeout=60)
    async with raw_client(proxy.port) as client:
        await client.send(BAD_UPLOAD)
        answer = await client.response()
        assert await client.closed()
    assert answer.status == 400
    assert proxy.source_sample("driftgauge_client_errors_total", reason="bad_request") == 1


@pytest.mark.parametrize(
    "extra",
    [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray", b"XYZ"],
    ids=["a-response", "garbage"],
)
async def test_bytes_after_a_response_do_not_answer_the_next_pipelined_request(
    start_proxy: StartProxy, extra: bytes
) -> None:
    """An upstream that sends more than the response asked for, in the same write (a response
    nobody asked for, or garbage): the client's next pipelined request still gets its own
    answer, from a connection in step (the Python engine handed the same connection straight to
    it, its parser still reading those bytes: they answered it, a 502 or the stray response)."""

    async def script(raw: RawUpstream, reader: asyncio.StreamReader, writer: Any) -> None:
        while (request := await raw.read_request(reader)) is not None:
            if request[0].startswith(b"GET /first "):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + extra)
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal")
            await writer.drain()

    async with raw_upstream(script) as sloppy:
        proxy = await start_proxy(sloppy.port)
        async with raw_client(proxy.port) as client:
            await client.send(
                b"GET /first HTTP/1.1\r\nHost: p\r\n\r\n" + GET.replace(b"/doc", b"/next")
            )
            first = await client.response()
            second = await client.response()
    assert (first.body, second.status, second.body) == (b"ok", 200, b"real")
    assert proxy.source_sample("driftgauge_upstream_errors_total", reason="bad_response") == 0
