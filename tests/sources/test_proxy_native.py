"""The native engine's own behaviour, beyond the conformance suites both engines run
(tests/sources/conftest.py): what only a separate ``driftgauge serve`` process shows."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.helpers import base_config, free_port
from tests.proxy_upstream import RawClient, Upstream

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the native engine is Linux's")


@contextlib.contextmanager
def native_sidecar(tmp_path: Path, baseline: Path, upstream: Upstream) -> Iterator[tuple[int, int]]:
    """``driftgauge serve`` on the native engine in front of ``upstream``: (pid, proxy port)."""
    port, metrics = free_port(), free_port()
    raw = base_config(
        tmp_path,
        baseline=str(baseline),
        source={
            "proxy": {"listen": f"127.0.0.1:{port}", "upstream": upstream.url, "engine": "native"}
        },
        metrics={"listen": f"127.0.0.1:{metrics}"},
    )
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    with (tmp_path / "serve.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "driftgauge.cli", "serve", "-c", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while not listening(port):
                assert process.poll() is None, (tmp_path / "serve.log").read_text()
                assert time.monotonic() < deadline, "driftgauge serve did not start"
                time.sleep(0.05)
            yield process.pid, port
        finally:
            process.terminate()
            process.wait(timeout=30)


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


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
    with native_sidecar(tmp_path, baseline, upstream) as (pid, port):
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
