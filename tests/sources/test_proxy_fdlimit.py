"""The proxy at its process's file-descriptor limit (RLIMIT_NOFILE), on both engines and, for the
Python engine, both event loops ``serve`` may run (a separate ``driftgauge serve`` process whose
limit the test lowers once it is up, so that it runs out with a known number of descriptors
free)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import re
import resource
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.proxy_upstream import RawClient, Upstream, serve, serve_config

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="/proc and prlimit are Linux's")

LOOPS = [
    "asyncio",
    pytest.param(
        "uvloop",
        marks=pytest.mark.skipif(importlib.util.find_spec("uvloop") is None, reason="no uvloop"),
    ),
]


def cpu_seconds(pid: int) -> float:
    """The process's CPU time so far: user and system, all its threads."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


@pytest.mark.parametrize("loop", LOOPS)
async def test_out_of_descriptors_the_proxy_pauses_accepting_serves_what_it_holds_and_resumes(
    tmp_path: Path, baseline: Path, upstream: Upstream, proxy_engine: str, loop: str
) -> None:
    """With more clients waiting than descriptors left, the proxy does not spin on its listener
    (nor log each failed accept): it pauses accepting, answers the connections it holds, counts
    and logs each pause once, and serves the waiting clients once descriptors are free again.

    The bound: 0.1 s of the process's CPU (all its threads) over 1 s at the limit. Spinning on
    accept costs a core (0.8-0.9 s here on the native engine; asyncio's own accept, which tries
    each waiting connection again at once and logs a traceback for each, 0.3 s); a pause of
    500 ms costs a few failed accepts and the held clients' two requests: 0.01 s here, and the
    bound leaves ten times that for a loaded machine."""
    raw = serve_config(tmp_path, baseline, upstream.url, proxy_engine)
    spare = 8
    with serve(tmp_path, raw, "--loop", loop) as sidecar:
        pid, port = sidecar.process.pid, sidecar.proxy_port
        held = [await RawClient.open(port) for _ in range(2)]
        for client in held:  # accepted, and an upstream connection pooled for their requests
            assert (await client.request("GET", "/doc")).status == 200
        descriptors = [int(name) for name in os.listdir(f"/proc/{pid}/fd")]
        limit = len(descriptors) + spare
        assert max(descriptors) < limit
        _, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, hard))
        waiting = [await RawClient.open(port) for _ in range(4 * spare)]
        try:
            await asyncio.sleep(0.5)  # it takes what it can and runs out
            before, start = cpu_seconds(pid), time.monotonic()
            for client in held:  # the connections it holds are answered meanwhile
                assert (await client.request("GET", "/doc")).status == 200
            await asyncio.sleep(1.0 - (time.monotonic() - start))
            used = cpu_seconds(pid) - before
            stuck = time.monotonic()
            assert used < 0.1, f"{used:.2f} s of CPU in 1 s at the descriptor limit"
            for client in held:
                await client.close()
            # The waiting clients were not reset: once some close, the others are served.
            for client in waiting[: 2 * spare]:
                await client.close()
            for client in waiting[2 * spare :]:
                assert (await client.request("GET", "/doc")).status == 200
                await client.close()
        finally:
            for client in waiting:
                with contextlib.suppress(ConnectionError):
                    await client.close()
        paused = time.monotonic() - stuck + 1.5  # the longest it can have been at the limit
        metrics = scrape(sidecar.metrics_port)
    pauses = float(
        re.search(r'driftgauge_client_errors_total\{reason="accept_paused"\} (\S+)', metrics)[1]
    )
    log = (tmp_path / "serve.log").read_text()
    logged = log.count("not accepting connections for 0.5 s")
    assert 1 <= pauses <= paused / 0.5 + 1, log
    assert logged == pauses, log
    assert "accept: Too many open files: not accepting" in log
    assert "Traceback" not in log
