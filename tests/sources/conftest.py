"""The proxy's conformance tests run on both event loops `serve` may use: asyncio's and uvloop.

``serve`` runs on uvloop when it is installed (driftgauge.runtime.loops), so
the proxy must behave the same on both; every test in ``test_proxy.py`` is
parametrized ``[asyncio]`` and ``[uvloop]`` (the latter only when uvloop is
installed).  Other tests here keep asyncio's loop under unchanged names.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is the optional `fast` extra
    uvloop = None

BOTH_LOOPS = frozenset({"test_proxy.py"})


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """asyncio's loop for every async test here, and uvloop too for the proxy conformance file."""
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        "asyncio": asyncio.new_event_loop
    }
    if uvloop is not None and item.path.name in BOTH_LOOPS:
        factories["uvloop"] = uvloop.new_event_loop
    return factories
