"""Test helpers: configs, training data and free loopback ports."""

from __future__ import annotations

import asyncio
import collections
import socket
import socketserver
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

# Ports handed out lately: the kernel may give the same free port to two probes in a row.
_HANDED_OUT: collections.deque[int] = collections.deque(maxlen=1024)


Server = TypeVar("Server", bound=socketserver.BaseServer)


@contextmanager
def serving(server: Server) -> Iterator[Server]:
    """``server`` (a ``http.server.ThreadingHTTPServer`` on loopback) serving from a thread;
    shut down, closed and joined after."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now, and none of the last 1,024 handed out here.

    Two calls in a row (a config's proxy and metrics listeners) once got the same port,
    and the config was refused for giving one port to both.
    """
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.append(port)
            return port


def base_config(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    """A small valid config (two numeric, one categorical feature; one prediction) as a dict."""
    raw: dict[str, Any] = {
        "model": "wine",
        "protocol": "kserve-v1",
        "source": {"tail": {"path": str(tmp_path / "requests.jsonl"), "poll_interval": 0.02}},
        "metrics": {"listen": f"127.0.0.1:{free_port()}", "recompute_interval": "1s"},
        "baseline": str(tmp_path / "baseline.dgb"),
        "features": [
            {"name": "alcohol", "type": "numeric"},
            {"name": "ash", "type": "numeric"},
            {"name": "region", "type": "categorical"},
        ],
        "predictions": [{"name": "class", "type": "categorical"}],
        "windows": ["5m", "1h"],
        "min_observations": 50,
    }
    raw.update(overrides)
    return raw


def training_rows(n: int, seed: int = 0) -> dict[str, list[Any]]:
    """Columns of a training set matching ``base_config``."""
    rng = np.random.default_rng(seed)
    return {
        "alcohol": rng.normal(13.0, 0.8, n).round(4).tolist(),
        "ash": rng.lognormal(0.8, 0.2, n).round(4).tolist(),
        "region": rng.choice(["north", "south", "east"], n, p=[0.5, 0.3, 0.2]).tolist(),
        "class": rng.choice(["a", "b"], n).tolist(),
    }


def write_csv(path: Path, columns: dict[str, list[Any]]) -> Path:
    names = list(columns)
    with path.open("w", encoding="utf-8") as handle:
        handle.write(",".join(names) + "\n")
        for row in zip(*columns.values(), strict=True):
            handle.write(",".join("" if v is None else str(v) for v in row) + "\n")
    return path


def burn(seconds: float) -> None:
    """Spend ``seconds`` of this thread's CPU time (what ingestion costs, as the sampler reads it)."""
    until = time.thread_time() + seconds
    while time.thread_time() < until:
        pass


async def eventually(check: Any, within: float = 10.0) -> None:
    """:func:`wait_for` for coroutines: poll ``check()`` without blocking the event loop."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def wait_for(
    condition: Any, timeout: float = 30.0, interval: float = 0.1, what: str = "condition"
) -> Any:
    """Poll ``condition()`` until it returns a truthy value (returned) or time runs out."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except (OSError, ValueError, KeyError) as exc:
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"{what} not met within {timeout}s (last error: {last_error!r})")


def answers_ok(url: str) -> bool:
    """GET ``url`` answers 200; an error answer is closed at once (no socket left behind)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError as exc:
        exc.close()
        return False


Series = tuple[str, tuple[tuple[str, str], ...]]


def series(name: str, **labels: str) -> Series:
    """The key of one sample in :func:`scrape`'s result."""
    return name, tuple(sorted(labels.items()))


def scrape(port: int) -> dict[Series, float]:
    """Every sample of a real /metrics scrape on 127.0.0.1:``port``."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
