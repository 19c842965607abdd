"""Which engine serves what: the native core forwards plain HTTP/1.1 itself and hands every other
connection to the Python proxy before any of its request went upstream (sources/proxy/native.py).

The behaviour on both engines is the conformance suites' (tests/conftest.py's ``proxy_engine``);
these tests check that the core really is the one forwarding, and that the config picks the engine.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from driftgauge.config import config_from_mapping
from driftgauge.config.sources import ProxyConfig, proxy_engine
from driftgauge.exceptions import ConfigError
from tests.helpers import base_config, free_port
from tests.proxy_upstream import DOC, Upstream, raw_client, read_response, serve
from tests.sources.proxy_support import PREDICT, StartProxy, instances


async def test_plain_http11_exchanges_are_forwarded_by_the_core_itself(
    upstream: Upstream, start_proxy: StartProxy
) -> None:
    """Keep-alive requests, a prediction and a ``Connection: close`` one: none handed over, all
    answered, every one counted."""
    proxy = await start_proxy(upstream.port, engine="native")
    native = proxy.sidecar.native
    assert native is not None
    async with raw_client(proxy.port) as client:
        for _ in range(5):
            assert (await client.request("GET", "/doc")).body == DOC
        predicted = await client.request("POST", PREDICT, instances(3))
        assert predicted.status == 200
    async with raw_client(proxy.port) as client:
        last = await client.request("GET", "/doc", headers=["Connection: close"])
        assert last.body == DOC
        assert last.header("connection") == "close"
        assert await client.closed()
    assert native.handed_over == 0
    assert proxy.source_sample("driftgauge_requests_total", code="200") == 7


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /doc HTTP/1.0\r\n\r\n", 200),
        (
            b"POST /echo HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\n\r\n",
            200,
        ),
        (b"GET /doc HTTP/1.1\nHost: p\n\n", 400),  # as the Python proxy's parser answers it
    ],
    ids=["http10", "chunked", "bare-lf"],
)
async def test_other_requests_are_handed_to_the_python_proxy_and_answered(
    upstream: Upstream, start_proxy: StartProxy, request_bytes: bytes, status: int
) -> None:
    """HTTP/1.0, a chunked upload, a head of bare LFs: the connection is handed over (counted
    once) after the plain request before it was answered by the core, and the Python proxy
    answers it as it does on its own (a head of bare LFs is malformed to its parser: 400)."""
    proxy = await start_proxy(upstream.port, engine="native")
    native = proxy.sidecar.native
    assert native is not None
    async with raw_client(proxy.port) as client:
        assert (await client.request("GET", "/doc")).body == DOC
        await client.send(request_bytes)
        answer = await client.response()
    assert answer.status == status
    assert native.handed_over == 1
    assert proxy.source_sample("driftgauge_requests_total", code="200") == 1 + (status == 200)


async def test_the_core_listens_on_an_ipv6_address(
    tmp_path: Path, baseline: Path, upstream: Upstream
) -> None:
    """``listen: "[::1]:port"`` on the native engine: an IPv6 listener, and the client's address
    in X-Forwarded-For as the Python proxy writes it."""
    port = free_port()
    proxy = {"listen": f"[::1]:{port}", "upstream": upstream.url, "engine": "native"}
    raw = base_config(
        tmp_path,
        baseline=str(baseline),
        source={"proxy": proxy},
        metrics={"listen": f"127.0.0.1:{free_port()}"},
    )
    with serve(tmp_path, raw):
        reader, writer = await asyncio.open_connection("::1", port)
        try:
            writer.write(b"GET /doc HTTP/1.1\r\nHost: p\r\n\r\n")
            response = await read_response(reader)
        finally:
            writer.close()
    assert response.body == DOC
    assert upstream.seen[-1].header("x-forwarded-for") == "::1"


def _proxy_config(tmp_path: Path, **proxy: object) -> ProxyConfig:
    raw = base_config(tmp_path, source={"proxy": {"upstream": "http://127.0.0.1:9", **proxy}})
    source = config_from_mapping(raw, base=tmp_path).source
    assert isinstance(source, ProxyConfig)
    return source


def test_auto_is_native_for_plain_http_and_python_for_tls(tmp_path: Path, pki: Path) -> None:
    assert proxy_engine(_proxy_config(tmp_path)) == "native"
    assert proxy_engine(_proxy_config(tmp_path, upstream="https://127.0.0.1:9")) == "python"
    tls = {"cert_file": str(pki / "server.pem"), "key_file": str(pki / "server.key")}
    assert proxy_engine(_proxy_config(tmp_path, tls=tls)) == "python"
    assert proxy_engine(_proxy_config(tmp_path, engine="python")) == "python"


@pytest.mark.parametrize(
    ("proxy", "message"),
    [
        ({"engine": "rust"}, "source.proxy.engine: "),
        ({"engine": "native", "upstream": "https://127.0.0.1:9"}, "native forwards plain HTTP"),
    ],
)
def test_an_engine_that_cannot_serve_the_config_is_a_config_error(
    tmp_path: Path, proxy: dict[str, object], message: str
) -> None:
    raw = base_config(tmp_path, source={"proxy": {"upstream": "http://127.0.0.1:9", **proxy}})
    with pytest.raises(ConfigError, match="source.proxy.engine") as error:
        config_from_mapping(raw, base=tmp_path)
    assert message in str(error.value)
