"""Shared by the proxy's tests: a KServe v1 model's predict handler, its request bodies, and a
sentinel request that settles what came before it."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import ClientSession, web

from tests.proxy_upstream import (
    Proxy,
    until,
)

PREDICT = "/v1/models/wine:predict"

StartProxy = Callable[..., Awaitable[Proxy]]


async def predict(request: web.Request) -> web.Response:
    """A KServe v1 model: one prediction per instance; ``X-Fail: <code>`` answers an error."""
    fail = request.headers.get("X-Fail")
    if fail:
        return web.json_response({"error": "Model wine failed: injected"}, status=int(fail))
    try:
        instances = json.loads(await request.read())["instances"]
    except (ValueError, KeyError, TypeError):
        return web.Response(body=b'{"predictions":["a"]}', content_type="application/json")
    answer: dict[str, Any] = {"predictions": ["a" if row[0] > 13 else "b" for row in instances]}
    if request.headers.get("X-Pad"):
        answer["padding"] = "x" * int(request.headers["X-Pad"])
    return web.json_response(answer)


def instances(n: int) -> bytes:
    return json.dumps({"instances": [[12.5 + i * 0.1, 2.0, "south"] for i in range(n)]}).encode()


async def sentinel(proxy: Proxy, session: ClientSession, rows_before: int = 0) -> None:
    """Send one good prediction and wait until it is ingested: what came before is settled."""
    async with session.post(proxy.url + PREDICT, data=instances(1)) as response:
        assert response.status == 200
    await until(lambda: proxy.sidecar.monitor.rows_total == rows_before + 1, what="the sentinel")
