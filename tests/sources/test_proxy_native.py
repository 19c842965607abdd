"""The native engine's own behaviour, beyond the conformance suites both engines run
(tests/sources/conftest.py): what only a separate ``driftgauge serve`` process shows."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.proxy_upstream import RawClient, Upstream, serve, serve_config

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the native engine is Linux's")


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        (line,) = [line for line in status if line.startswith("VmRSS:")]
    return int(line.split()[1]) * 1024


async def test_a_connection_idle_after_a_large_upload_holds_no_copy_of_it(
    tmp_path: Path, baseline: Path, upstream: Upstream
) -> None:
    """The copy of a body kept to send again on a stale pooled connection goes with its
    exchange: keep-alive connections idle after a large upload each (a pool's) hold no
    memory for it until they close (the Python engine's do not either)."""
    body = b"u" * (3 * 1024 * 1024)
    raw = serve_config(tmp_path, baseline, upstream.url, "native")
    with serve(tmp_path, raw) as sidecar:
        pid, port = sidecar.process.pid, sidecar.proxy_port
        clients = [await RawClient.open(port) for _ in range(24)]
        try:
            assert (await clients[0].request("POST", "/status/200", body)).status == 200
            before = rss_bytes(pid)
            for client in clients[1:]:
                assert (await client.request("POST", "/status/200", body)).status == 200
            grown = rss_bytes(pid) - before
        finally:
            for client in clients:
                await client.close()
    assert grown < len(clients) * len(body) / 4, f"{grown / 2**20:.0f} MiB held"
