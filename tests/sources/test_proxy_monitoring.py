"""The proxy monitors fail-open: bad bodies, a slow or failing consumer and a full queue never
alter or delay the traffic.

Real servers on loopback, as in test_proxy.py."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from aiohttp import ClientSession, web

from tests.helpers import free_port
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
from tests.sources.proxy_support import PREDICT, StartProxy, instances, predict, sentinel

pytestmark = pytest.mark.usefixtures("proxy_engine")  # both engines (tests/conftest.py)


async def test_garbage_body_on_monitored_route_is_forwarded_and_counted(
    proxy: Proxy, upstream: Upstream, session: ClientSession
) -> None:
    """Unparseable bodies go through untouched; invalid_json and the adapter's reason are counted."""
    garbage = b'{"instances": [[13.1, 2.2, "north"]'
    wrong_shape = b'{"rows": [1, 2, 3]}'
    for body in (garbage, wrong_shape):
        async with session.post(proxy.url + PREDICT, data=body) as response:
            assert response.status == 200
            assert await response.read() == b'{"predictions":["a"]}'
    assert [seen.body for seen in upstream.seen] == [garbage, wrong_shape]
    await sentinel(proxy, session)
    assert proxy.sample("driftgauge_parse_errors_total", reason="invalid_json") == 1
    assert proxy.sample("driftgauge_parse_errors_total", reason="missing_inputs") == 1
    assert proxy.sidecar.monitor.parse_errors == {"invalid_json": 1, "missing_inputs": 1}


async def test_unknown_path_post_is_forwarded_and_counted_get_is_not(
    proxy: Proxy, session: ClientSession
) -> None:
    """A POST off the prediction routes is forwarded and counted unknown_path, the source's (no
    model's); a GET is neither."""
    async with session.post(proxy.url + "/v1/models/wine:explain", data=instances(2)) as response:
        assert await response.read() == instances(2)
    async with session.get(proxy.url + "/doc") as response:
        assert await response.read() == DOC
    await sentinel(proxy, session)
    assert proxy.source_sample("driftgauge_source_parse_errors_total", reason="unknown_path") == 1
    assert proxy.sample("driftgauge_parse_errors_total", reason="unknown_path") == 0
    assert proxy.sidecar.batcher.parse_errors == {"unknown_path": 1}
    assert not proxy.sidecar.monitor.parse_errors


async def test_bodies_above_max_body_bytes_are_forwarded_but_not_monitored(
    upstream: Upstream, start_proxy: StartProxy, session: ClientSession
) -> None:
    """Too-large requests (sized or chunked) and responses pass intact; each is counted dropped."""
    proxy = await start_proxy(upstream.port, max_body_bytes=1024)
    large = instances(60)
    assert len(large) > 1024
    expected = json.dumps({"predictions": ["a" if 12.5 + i * 0.1 > 13 else "b" for i in range(60)]})
    async with session.post(proxy.url + PREDICT, data=large) as response:
        assert await response.text() == expected
    async with raw_client(proxy.port) as client:
        await client.send(
            b"POST %s HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked\r\n\r\n" % PREDICT.encode()
        )
        for start in range(0, len(large), 500):
            piece = large[start : start + 500]
            await client.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        await client.send(b"0\r\n\r\n")
        chunked = await client.response()
    assert chunked.body.decode() == expected
    async with session.post(
        proxy.url + PREDICT, data=instances(1), headers={"X-Pad": "5000"}
    ) as response:
        assert len(await response.read()) > 5000
    assert upstream.seen[0].body == large
    assert upstream.seen[1].body == large
    await sentinel(proxy, session)
    assert proxy.source_sample("driftgauge_source_dropped_total", reason="body_too_large") == 3
    assert proxy.sidecar.batcher.dropped == {"body_too_large": 3}
    assert not proxy.sidecar.monitor.dropped
    assert not proxy.sidecar.monitor.parse_errors


ANSWER = b'{"predictions":["a"]}'


async def _answer_before_the_body(
    server: RawUpstream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """A model server that answers 200 once it has the head of a request marked ``X-Early``,
    before its body; it answers other requests once it has their body."""
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        early = b"x-early:" in head.lower()
        if not early:
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(ANSWER), ANSWER))
        await writer.drain()
        if early:
            while await reader.read(65536):
                pass
            return


async def test_an_answer_before_the_request_body_is_all_in_is_relayed_and_counted_as_such(
    start_proxy: StartProxy, session: ClientSession
) -> None:
    """A 2xx the upstream sends before the client has sent the whole body reaches the client
    unchanged, and the connection goes on; monitoring holds only part of the body, so it
    drops the pair as answered_early, not as the client's invalid JSON."""
    body = instances(50)
    async with raw_upstream(_answer_before_the_body) as server:
        proxy = await start_proxy(server.port)
        async with raw_client(proxy.port) as client:
            await client.send(
                b"POST %s HTTP/1.1\r\nHost: p\r\nX-Early: 1\r\nContent-Length: %d\r\n\r\n%s"
                % (PREDICT.encode(), len(body), body[:100])
            )
            answer = await client.response()
            await client.send(body[100:])
            again = await client.request("POST", PREDICT, instances(1))
        await sentinel(proxy, session, rows_before=1)
    assert (answer.status, answer.body, again.body) == (200, ANSWER, ANSWER)
    assert proxy.source_sample("driftgauge_source_dropped_total", reason="answered_early") == 1
    assert not proxy.sidecar.monitor.parse_errors


@pytest.mark.parametrize("code", ["400", "500"])
async def test_error_responses_are_forwarded_and_not_monitored(
    proxy: Proxy, session: ClientSession, code: str
) -> None:
    """Non-2xx answers reach the client unchanged and add no observation and no parse error."""
    async with session.post(
        proxy.url + PREDICT, data=instances(4), headers={"X-Fail": code}
    ) as response:
        assert response.status == int(code)
        assert await response.json() == {"error": "Model wine failed: injected"}
    await sentinel(proxy, session)
    counters = proxy.sidecar.monitor.counters()
    assert {name: c.observations for name, c in counters.items()} == dict.fromkeys(
        ("alcohol", "ash", "region", "class"), 1
    )
    assert not proxy.sidecar.monitor.parse_errors
    assert proxy.source_sample("driftgauge_requests_total", code=code) == 1


async def test_full_queue_drops_observations_never_requests(
    start_proxy: StartProxy, session: ClientSession
) -> None:
    """With queue_size 1 a burst is answered in full; what did not fit is counted queue_full."""
    burst = 40
    arrived = 0
    all_arrived = asyncio.Event()

    async def held_predict(request: web.Request) -> web.Response:
        nonlocal arrived
        arrived += 1
        if arrived == burst:
            all_arrived.set()
        await asyncio.wait_for(all_arrived.wait(), 5)  # answer the whole burst at once
        return await predict(request)

    async with upstream_server(routes=[web.post(PREDICT, held_predict)]) as server:
        proxy = await start_proxy(server.port, queue_size=1)

        async def one(index: int) -> tuple[int, Any]:
            body = json.dumps({"instances": [[12.0 + index * 0.1, 2.0, "east"]] * 8})
            async with session.post(proxy.url + PREDICT, data=body) as response:
                return response.status, await response.json()

        results = await asyncio.gather(*(one(i) for i in range(burst)))
    for index, (status, answer) in enumerate(results):
        assert status == 200
        assert answer == {"predictions": ["a" if 12.0 + index * 0.1 > 13 else "b"] * 8}
    monitor, router = proxy.sidecar.monitor, proxy.sidecar.batcher
    await until(lambda: monitor.rows_total // 8 + router.dropped["queue_full"] == burst)
    assert router.dropped["queue_full"] >= 1
    assert proxy.source_sample("driftgauge_source_dropped_total", reason="queue_full") >= 1


async def test_readiness_follows_the_upstream(
    start_proxy: StartProxy, session: ClientSession
) -> None:
    """/readyz is 503 while the upstream is down and 200 once its readiness path answers 200."""
    port = free_port()

    async def ready(request: web.Request) -> web.Response:
        return web.json_response({"name": "wine", "ready": True})

    proxy = await start_proxy(port, readiness_path="/v1/models/wine")

    async def readyz() -> tuple[int, str]:
        async with session.get(proxy.metrics_url + "/readyz") as response:
            return response.status, await response.text()

    async def wait_for(status: int, text: str) -> None:
        deadline = time.monotonic() + 6.0
        while (answer := await readyz()) != (status, text):
            assert time.monotonic() < deadline, f"/readyz stayed {answer}"
            await asyncio.sleep(0.05)

    await wait_for(503, "not ready: upstream model server not ready\n")
    async with upstream_server(routes=[web.get("/v1/models/wine", ready)], port=port):
        await wait_for(200, "ready: ok\n")
    await wait_for(503, "not ready: upstream model server not ready\n")


async def test_requests_and_latency_histograms_count_every_request(
    proxy: Proxy, session: ClientSession
) -> None:
    """requests_total by code and the latency/overhead histograms see every forwarded request."""
    targets = ["/doc", "/doc", "/doc", "/status/404", "/status/404", "/status/500", "/status/201"]
    for target in targets:
        async with session.get(proxy.url + target) as response:
            await response.read()
    await until(
        lambda: proxy.source_sample("driftgauge_upstream_latency_seconds_count") == len(targets)
    )
    assert proxy.source_sample("driftgauge_requests_total", code="200") == 3
    assert proxy.source_sample("driftgauge_requests_total", code="404") == 2
    assert proxy.source_sample("driftgauge_requests_total", code="500") == 1
    assert proxy.source_sample("driftgauge_requests_total", code="201") == 1
    assert proxy.source_sample("driftgauge_overhead_seconds_count") == len(targets)
    assert proxy.source_sample("driftgauge_upstream_latency_seconds_sum") > 0
    assert proxy.source_sample("driftgauge_request_size_bytes_count") == len(targets)
