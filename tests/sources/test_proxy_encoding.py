"""Compressed bodies through the real proxy: forwarded byte for byte, monitored decompressed.

A scripted upstream on loopback reads the raw bytes the proxy forwards
(aiohttp would decompress them first) and answers gzip when asked to.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from driftgauge.sources.proxy.cycle import HeaderLines
from tests.proxy_upstream import RawUpstream, Script, raw_client, raw_upstream, running_proxy, until

pytestmark = pytest.mark.usefixtures("proxy_engine")  # both engines (tests/conftest.py)

PREDICT = "/v1/models/wine:predict"
ROWS = [[12.5 + i * 0.1, 2.0 + i * 0.05, ["north", "south", "east"][i % 3]] for i in range(12)]

Encode = Callable[[bytes], bytes]
ENCODERS: dict[str, Encode] = {"gzip": gzip.compress, "deflate": zlib.compress}
WINDOW_BITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
MODEL_READS = 1024 * 1024  # the most of a compressed request body the model inflates


def model_server(received: list[bytes], sent: list[bytes]) -> Script:
    """A KServe v1 model speaking raw HTTP: it keeps each request body as it arrived and each
    answer as it sent it, reads a gzip or deflate request, and answers in the coding the
    request's ``Accept-Encoding`` names first."""

    async def serve(server: RawUpstream, reader: asyncio.StreamReader, writer: Any) -> None:
        while (request := await server.read_request(reader)) is not None:
            head, body = request
            received.append(body)
            headers = {
                name.strip().lower(): value.strip()
                for name, _, value in (
                    line.decode("latin-1").partition(":") for line in head.split(b"\r\n")[1:]
                )
            }
            data = body
            coding = headers.get("content-encoding")
            if coding in WINDOW_BITS:
                # At most MODEL_READS bytes: inflated whole, a zip bomb's 256 MiB held the
                # loop the proxy and the client share too (seconds under load: 5 s timed out).
                data = zlib.decompressobj(WINDOW_BITS[coding]).decompress(body, MODEL_READS)
            try:
                rows = json.loads(data)["instances"]
            except ValueError:
                rows = []
            answer = json.dumps({"predictions": ["a" if r[0] > 13 else "b" for r in rows]})
            encoded, extra = answer.encode(), b""
            accepted = headers.get("accept-encoding", "").split(",")[0].strip()
            if accepted in ENCODERS:
                encoded = ENCODERS[accepted](encoded)
                extra = b"Content-Encoding: %s\r\n" % accepted.encode()
            sent.append(encoded)
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n%s"
                b"Content-Length: %d\r\n\r\n%s" % (extra, len(encoded), encoded)
            )
            await writer.drain()

    return serve


def counters(proxy: Any) -> dict[str, tuple[int, dict[str, int], list[int]]]:
    return {
        name: (c.observations, dict(c.invalid), c.bins.tolist())
        for name, c in proxy.sidecar.monitor.counters().items()
    }


@pytest.mark.parametrize(
    ("request_coding", "response_coding"),
    [("gzip", None), (None, "gzip"), ("gzip", "gzip"), ("deflate", "deflate")],
    ids=["gzip-request", "gzip-response", "gzip-both", "deflate-both"],
)
async def test_compressed_bodies_pass_unchanged_and_are_monitored(
    tmp_path: Path, baseline: Path, request_coding: str | None, response_coding: str | None
) -> None:
    """A gzip (or deflate) request and response: both byte for byte, and the rows monitored as
    the same rows sent plain are."""
    received: list[bytes] = []
    sent: list[bytes] = []
    plain = json.dumps({"instances": ROWS}).encode()
    body, headers = plain, ["Content-Type: application/json"]
    if request_coding is not None:
        body = ENCODERS[request_coding](plain)
        headers.append(f"Content-Encoding: {request_coding}")
    if response_coding is not None:
        headers.append(f"Accept-Encoding: {response_coding}")
    async with (
        raw_upstream(model_server(received, sent)) as upstream,
        running_proxy(tmp_path, baseline, upstream.port) as proxy,
        raw_client(proxy.port) as client,
    ):
        answer = await client.request("POST", PREDICT, body, headers)
        assert answer.status == 200
        assert answer.body == sent[-1]
        assert answer.header("content-encoding") == response_coding
        assert received == [body]
        monitor = proxy.sidecar.monitor
        await until(lambda: monitor.rows_total == len(ROWS), what="the compressed rows")
        assert not monitor.parse_errors
        compressed = counters(proxy)
        assert compressed["class"][0] == len(ROWS)  # the response was read too
        # The same rows plain: every count doubles.
        again = await client.request("POST", PREDICT, plain, ["Content-Type: application/json"])
        assert again.status == 200
        await until(lambda: monitor.rows_total == 2 * len(ROWS), what="the plain rows")
        assert not monitor.parse_errors
    doubled = {
        name: (2 * n, {k: 2 * v for k, v in invalid.items()}, [2 * b for b in bins])
        for name, (n, invalid, bins) in compressed.items()
    }
    assert counters(proxy) == doubled


async def test_a_zip_bomb_is_forwarded_and_counted_not_inflated(
    tmp_path: Path, baseline: Path
) -> None:
    """256 MiB of zeros in 250 kB of gzip: forwarded intact, decoded_too_large, never inflated."""
    compressor = zlib.compressobj(9, wbits=16 + zlib.MAX_WBITS)
    zeros = bytes(1024 * 1024)
    bomb = b"".join([compressor.compress(zeros) for _ in range(256)]) + compressor.flush()
    received: list[bytes] = []
    sent: list[bytes] = []
    async with (
        raw_upstream(model_server(received, sent)) as upstream,
        running_proxy(tmp_path, baseline, upstream.port) as proxy,
        raw_client(proxy.port) as client,
    ):
        answer = await client.request("POST", PREDICT, bomb, ["Content-Encoding: gzip"])
        assert answer.status == 200
        assert received == [bomb]
        monitor = proxy.sidecar.monitor
        await until(lambda: bool(monitor.parse_errors), what="the bomb counted")
        assert monitor.parse_errors == {"decoded_too_large": 1}
        assert proxy.sample("driftgauge_parse_errors_total", reason="decoded_too_large") == 1
        assert monitor.rows_total == 0


def test_header_lines_are_looked_up_in_any_letter_case() -> None:
    """The proxy's headers for monitoring: any case, repeated names joined, names as sent."""
    headers = HeaderLines(
        [
            (b"Content-Type", b"text/csv"),
            (b"content-encoding", b"gzip"),
            (b"X-Tag", b"a"),
            (b"x-tag", b"b"),
        ]
    )
    assert headers["CONTENT-TYPE"] == "text/csv"
    assert headers.get("Content-Encoding") == "gzip"
    assert headers["X-TAG"] == "a, b"
    assert headers.get("Accept") is None
    assert headers.get("é") is None
    assert list(headers) == ["Content-Type", "content-encoding", "X-Tag"]
    assert len(headers) == 3
    assert dict(headers.items())["X-Tag"] == "a, b"
