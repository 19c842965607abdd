"""The proxy's conformance tests run on both event loops `serve` may use, asyncio's and uvloop,
and on both proxy engines, python and native.

``serve`` runs on uvloop when it is installed (driftgauge.runtime.loops), so
the proxy must behave the same on both; every test in ``test_proxy.py``,
``test_proxy_faults.py``, ``test_proxy_idle.py`` and ``test_proxy_monitoring.py`` is parametrized
``[asyncio]`` and ``[uvloop]`` (the latter only when uvloop is
installed).  Other tests here keep asyncio's loop under unchanged names.  The tests of the files
that use the ``proxy_engine`` fixture run on both engines too; the native engine's only with
asyncio's loop, as its loop only serves the connections it hands over to the Python proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

from tests.proxy_upstream import Proxy, Upstream, running_proxy, upstream_server
from tests.sources.proxy_support import PREDICT, StartProxy, predict

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is the optional `fast` extra
    uvloop = None

BOTH_LOOPS = frozenset(
    {"test_proxy.py", "test_proxy_faults.py", "test_proxy_idle.py", "test_proxy_monitoring.py"}
)


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """asyncio's loop for every async test here, and uvloop too for the proxy's test files."""
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        "asyncio": asyncio.new_event_loop
    }
    if uvloop is not None and item.path.name in BOTH_LOOPS:
        factories["uvloop"] = uvloop.new_event_loop
    return factories


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The native engine on asyncio's loop only (the module docstring says why)."""
    kept, dropped = [], []
    for item in items:
        params = getattr(item, "callspec", None)
        ids = params.id if params is not None else ""
        native = params is not None and params.params.get("proxy_engine") == "native"
        (dropped if native and "uvloop" in ids else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


# -- the proxy tests' servers (test_proxy*.py) -------------------------------------------


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    async with upstream_server(routes=[web.post(PREDICT, predict)]) as server:
        yield server


@pytest.fixture
async def start_proxy(tmp_path: Path, baseline: Path) -> AsyncIterator[StartProxy]:
    """Start sidecars in front of a port (proxy options as keywords); all stopped at the end."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(upstream_port: int, **options: Any) -> Proxy:
            return await stack.enter_async_context(
                running_proxy(tmp_path, baseline, upstream_port, **options)
            )

        yield start


@pytest.fixture
async def proxy(upstream: Upstream, start_proxy: StartProxy) -> Proxy:
    return await start_proxy(upstream.port)


@pytest.fixture
async def session() -> AsyncIterator[ClientSession]:
    async with ClientSession(
        connector=TCPConnector(limit=100), timeout=ClientTimeout(total=10), auto_decompress=False
    ) as client:
        yield client
