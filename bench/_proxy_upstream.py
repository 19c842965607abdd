"""A small, fast KServe v2 model server for ``bench/proxy.py``.

``POST /v2/models/m/infer`` answers a fixed, valid Open Inference Protocol
response for 8 rows (the bytes are built once).  The server also checks what
it receives: a body that differs in any byte from :data:`REQUEST_BODY` gets
``422`` (so a proxy that altered a request shows up as a non-2xx response in
the load generator), and ``GET /stats`` reports how many good and bad
requests arrived (so lost or duplicated requests show up too).

It is a raw asyncio ``Protocol`` with httptools, one process, so it costs as
little CPU as a Python server can.  Run as::

    python -m bench._proxy_upstream --port 9000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from typing import Any

import httptools
import numpy as np

__all__ = [
    "FEATURES",
    "MODEL",
    "REQUEST_BODY",
    "RESPONSE_BODY",
    "ROUTE",
    "ROWS",
    "feature_location_scale",
]

ROWS = 8
FEATURES = 20
MODEL = "m"
ROUTE = f"/v2/models/{MODEL}/infer"


def feature_location_scale(index: int) -> tuple[float, float]:
    """The normal distribution of feature ``f<index>`` (also used for the baseline)."""
    return float(index % 7), 1.0 + (index % 3)


def _request_body() -> bytes:
    rng = np.random.default_rng(11)
    rows = [
        [round(float(rng.normal(*feature_location_scale(i))), 4) for i in range(FEATURES)]
        for _ in range(ROWS)
    ]
    body = {
        "id": "bench",
        "inputs": [
            {"name": "input-0", "shape": [ROWS, FEATURES], "datatype": "FP64", "data": rows}
        ],
    }
    return json.dumps(body, separators=(",", ":")).encode()


def _response_body() -> bytes:
    rng = np.random.default_rng(12)
    scores = [round(float(x), 4) for x in rng.uniform(0.0, 1.0, ROWS)]
    body = {
        "model_name": MODEL,
        "model_version": "1",
        "id": "bench",
        "outputs": [{"name": "score", "shape": [ROWS], "datatype": "FP64", "data": scores}],
    }
    return json.dumps(body, separators=(",", ":")).encode()


REQUEST_BODY = _request_body()
RESPONSE_BODY = _response_body()


def _response(status: bytes, body: bytes) -> bytes:
    return b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
        status,
        len(body),
        body,
    )


_OK = _response(b"200 OK", RESPONSE_BODY)
_ALTERED = _response(b"422 Unprocessable Entity", b'{"error":"request body altered"}')
_NOT_FOUND = _response(b"404 Not Found", b'{"error":"not found"}')
_ROUTE_BYTES = ROUTE.encode()


class _Counts:
    def __init__(self) -> None:
        self.ok = 0
        self.altered = 0


class _Upstream(asyncio.Protocol):
    def __init__(self, counts: _Counts) -> None:
        self.counts = counts
        self.transport: asyncio.Transport | None = None
        self.parser: Any = httptools.HttpRequestParser(self)
        self.url = b""
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    def on_message_begin(self) -> None:
        self.url = b""
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        transport = self.transport
        if transport is None:
            return
        if self.url == _ROUTE_BYTES:
            body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
            if body == REQUEST_BODY:
                self.counts.ok += 1
                transport.write(_OK)
            else:
                self.counts.altered += 1
                transport.write(_ALTERED)
        elif self.url == b"/stats":
            stats = b'{"ok":%d,"altered":%d}' % (self.counts.ok, self.counts.altered)
            transport.write(_response(b"200 OK", stats))
        else:
            transport.write(_NOT_FOUND)
        if not self.parser.should_keep_alive():
            transport.close()


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    counts = _Counts()
    server = await loop.create_server(
        lambda: _Upstream(counts), host, port, reuse_address=True, backlog=1024
    )
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
