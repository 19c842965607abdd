"""The upstream named by a host name whose address changes (a Kubernetes Service, a DNS name):
both engines follow it. The event loop's resolver is swapped for one that the test moves."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from driftgauge.sources.proxy import native
from tests.helpers import free_port
from tests.proxy_upstream import WAIT, RawClient, Upstream, upstream_server
from tests.sources.proxy_support import StartProxy

NAME = "model.test"


class Names:
    """The running loop's resolver, but ``model.test``: the addresses of the upstreams ``ports``
    says, in its order (all on 127.0.0.1, so the port is what moves)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, port: int) -> None:
        self.ports = [port]
        self.lookups = 0
        self._real = loop.getaddrinfo

    async def getaddrinfo(self, host: Any, port: Any, **options: Any) -> list[Any]:
        if host != NAME:
            return await self._real(host, port, **options)
        self.lookups += 1
        if not self.ports:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", p)) for p in self.ports]


@pytest.fixture
async def names(monkeypatch: pytest.MonkeyPatch, upstream: Upstream) -> Names:
    loop = asyncio.get_running_loop()
    names = Names(loop, upstream.port)
    monkeypatch.setattr(loop, "getaddrinfo", names.getaddrinfo)
    return names


@pytest.fixture
async def moved_to() -> AsyncIterator[Upstream]:
    async with upstream_server() as server:
        yield server


async def get_doc(port: int) -> int:
    """GET /doc on a new connection; its status."""
    client = await RawClient.open(port)
    try:
        return (await client.request("GET", "/doc")).status
    finally:
        await client.close()


async def test_requests_follow_the_upstream_name_to_its_new_address(
    proxy_engine: str,
    start_proxy: StartProxy,
    upstream: Upstream,
    moved_to: Upstream,
    names: Names,
) -> None:
    """When the server behind the upstream's name goes away and the name resolves to another
    address, requests go there (the native engine resolved the name only at start, and answered
    502 from then on, connecting to the old address)."""
    proxy = await start_proxy(upstream.port, upstream=f"http://{NAME}:{upstream.port}")
    assert await get_doc(proxy.port) == 200
    assert len(upstream.seen) == 1
    names.ports = [moved_to.port]
    await upstream.stop()
    deadline = time.monotonic() + WAIT
    while not moved_to.seen:  # a connect to the old address may fail first (502)
        assert time.monotonic() < deadline, "no request reached the name's new address"
        await get_doc(proxy.port)
        await asyncio.sleep(0.05)
    for _ in range(5):
        assert await get_doc(proxy.port) == 200
    assert len(moved_to.seen) == 6


async def test_an_upstream_name_without_an_address_at_start_is_served_once_it_has_one(
    proxy_engine: str, start_proxy: StartProxy, upstream: Upstream, names: Names
) -> None:
    """An upstream name that does not resolve when the proxy starts (its Service not created
    yet): the proxy starts, answers 502 meanwhile, and serves once the name resolves (the native
    engine did not start: "source.proxy.listen 127.0.0.1:PORT: Unknown error -2")."""
    names.ports = []
    proxy = await start_proxy(upstream.port, upstream=f"http://{NAME}:{upstream.port}")
    assert await get_doc(proxy.port) == 502
    names.ports = [upstream.port]
    deadline = time.monotonic() + WAIT
    while not upstream.seen:
        assert time.monotonic() < deadline, "no request reached the name once it resolved"
        await get_doc(proxy.port)
        await asyncio.sleep(0.05)
    assert await get_doc(proxy.port) == 200


async def test_requests_reach_the_next_address_of_a_name_whose_first_refuses(
    proxy_engine: str, start_proxy: StartProxy, upstream: Upstream, names: Names
) -> None:
    """A name with two addresses, the first refusing connections (``localhost`` resolving to
    ``::1`` first, the model server listening on 127.0.0.1 alone): requests reach the second, as
    the Python engine's connects try each address in turn (the native engine connected to the
    first for good, answering 502)."""
    names.ports = [free_port(), upstream.port]
    proxy = await start_proxy(upstream.port, upstream=f"http://{NAME}:{upstream.port}")
    deadline = time.monotonic() + WAIT
    while not upstream.seen:  # the native engine's first connects may fail (502)
        assert time.monotonic() < deadline, "no request reached the name's second address"
        await get_doc(proxy.port)
        await asyncio.sleep(0.05)
    for _ in range(5):
        assert await get_doc(proxy.port) == 200


async def test_the_native_engine_looks_the_name_up_again_on_a_schedule(
    monkeypatch: pytest.MonkeyPatch,
    start_proxy: StartProxy,
    upstream: Upstream,
    moved_to: Upstream,
    names: Names,
) -> None:
    """The native engine looks the name up again every RESOLVE_INTERVAL: a name moved while the
    old server still answers takes new requests to the new address, its pooled connections to
    the old one closed, and without a failed request."""
    monkeypatch.setattr(native, "RESOLVE_INTERVAL", 0.1)
    monkeypatch.setattr(native, "RESOLVE_GAP", 0.0)
    proxy = await start_proxy(
        upstream.port, upstream=f"http://{NAME}:{upstream.port}", engine="native"
    )
    assert await get_doc(proxy.port) == 200
    names.ports = [moved_to.port]
    lookups = names.lookups
    deadline = time.monotonic() + WAIT
    while names.lookups < lookups + 2:  # one lookup after the move is over: the core has it
        assert time.monotonic() < deadline, "the name was not looked up again"
        await asyncio.sleep(0.05)
    for _ in range(3):
        assert await get_doc(proxy.port) == 200
    assert (len(upstream.seen), len(moved_to.seen)) == (1, 3)


async def test_an_upstream_address_is_not_looked_up(
    monkeypatch: pytest.MonkeyPatch, proxy_engine: str, start_proxy: StartProxy, upstream: Upstream
) -> None:
    """An upstream given as an address is connected to as it is: no lookups on a schedule."""
    monkeypatch.setattr(native, "RESOLVE_INTERVAL", 0.05)
    monkeypatch.setattr(native, "RESOLVE_GAP", 0.0)
    looked_up: list[Any] = []

    async def resolve(host: str, port: int) -> list[tuple[str, int]]:
        looked_up.append(host)
        return [(host, port)]

    monkeypatch.setattr(native, "resolve", resolve)
    proxy = await start_proxy(upstream.port)
    await asyncio.sleep(0.3)
    assert await get_doc(proxy.port) == 200
    assert len(looked_up) <= 1  # the native engine's start
