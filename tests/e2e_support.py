"""Shared pieces of the end-to-end tests: rules rewriting, sidecar processes, servers in a thread.

- :func:`rewrite_rules` makes a test-only copy of ``alert_rules/driftgauge.rules.yml``
  with short ranges and ``for:`` durations and nothing else changed (it also maps
  ``window="…"`` matchers, which the project's rules no longer have);
  :func:`masked` is how a test proves that.
- :func:`sidecar` runs ``driftgauge serve -c CONFIG`` as a real process and
  always stops it.
- :class:`BackgroundLoop` runs aiohttp servers (a KServe v1 model server, an
  Alertmanager webhook receiver) and a traffic generator on an event loop in
  a thread, so synchronous tests can drive the blocking Prometheus and
  Alertmanager helpers of ``tests.servers`` at the same time.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import yaml
from aiohttp import ClientError, ClientSession, ClientTimeout, web
from prometheus_client.parser import text_string_to_metric_families

from driftgauge.baseline import build_baseline, save_baseline
from driftgauge.config import load_config
from driftgauge.config.validation import parse_duration
from tests.helpers import training_rows, write_csv
from tests.servers import wait_for

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "alert_rules" / "driftgauge.rules.yml"

_T = TypeVar("_T")

# -- the test-only rules copy ---------------------------------------------------------

_WINDOW = re.compile(r'window="([^"]*)"')
_RANGE = re.compile(r"\[(\d+(?:ms|[smhdwy]))\]")
# A range ago (the fleet's sidecars first scraped before their range): the range too.
_OFFSET = re.compile(r"\boffset \d+(?:ms|[smhdwy])\b")
# The fleet's observations, a rate times the range's seconds (increase() is rate() times
# the range): the seconds follow the range.
_RANGE_SECONDS = re.compile(r"(:rate5m \* )\d+\b")


def rewrite_expr(expr: str, windows: Mapping[str, str], range_: str) -> str:
    """``expr`` with each ``window="…"`` mapped through ``windows`` and every ``[range]`` and
    ``offset`` set to ``range_`` (and the range's seconds that turn the fleet's rate into its
    observations)."""

    def window(match: re.Match[str]) -> str:
        if match.group(1) not in windows:
            raise ValueError(f"no test window for window={match.group(1)!r} in {expr!r}")
        return f'window="{windows[match.group(1)]}"'

    expr = _RANGE_SECONDS.sub(rf"\g<1>{parse_duration(range_):g}", expr)
    expr = _OFFSET.sub(f"offset {range_}", expr)
    return _RANGE.sub(f"[{range_}]", _WINDOW.sub(window, expr))


def masked(expr: str) -> str:
    """``expr`` with window matchers, range durations and offsets blanked, for comparing rule
    copies."""
    expr = _OFFSET.sub("offset RANGE", _RANGE_SECONDS.sub(r"\g<1>SECONDS", expr))
    return _RANGE.sub("[RANGE]", _WINDOW.sub('window="WINDOW"', expr))


def rewrite_rules(
    document: Mapping[str, Any],
    windows: Mapping[str, str],
    range_: str,
    for_: str,
    interval: str,
    groups: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """A copy of a rules file with test-sized windows, ranges, ``for:`` and group intervals.

    Only the named ``groups`` are kept when given.  Rule names, labels,
    annotations and the rest of every expression stay as they are.
    """
    result: dict[str, Any] = copy.deepcopy(dict(document))
    kept = []
    for group in result["groups"]:
        if groups is not None and group["name"] not in groups:
            continue
        if "interval" in group:
            group["interval"] = interval
        for rule in group["rules"]:
            rule["expr"] = rewrite_expr(rule["expr"], windows, range_)
            if "for" in rule:
                rule["for"] = for_
        kept.append(group)
    result["groups"] = kept
    return result


def write_test_rules(path: Path, **rewrite: Any) -> dict[str, Any]:
    """Write :func:`rewrite_rules` of the project's rules to ``path``; returns the document."""
    document = rewrite_rules(yaml.safe_load(RULES.read_text(encoding="utf-8")), **rewrite)
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return document


def rules_by_name(document: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every rule of a rules document under its alert name, or record name and labels.

    A recording rule may be written once per label value (the χ² gates, one per ``z``).
    """
    return {
        rule.get("alert")
        or rule["record"] + "".join(f"{{{k}={v}}}" for k, v in rule.get("labels", {}).items()): rule
        for group in document["groups"]
        for rule in group["rules"]
    }


# -- sidecar configs, baselines and processes ---------------------------------------


def write_config(path: Path, raw: Mapping[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(dict(raw), sort_keys=False), encoding="utf-8")
    load_config(path)  # fail here, not in a subprocess, on a bad config
    return path


def write_baseline(config_path: Path, rows: int, seed: int = 0) -> dict[str, list[Any]]:
    """Build and save the baseline of the config at ``config_path``; returns the training columns."""
    config = load_config(config_path)
    columns = training_rows(rows, seed=seed)
    data = write_csv(config_path.parent / f"train-{seed}.csv", columns)
    save_baseline(build_baseline(config, [data]), config.baseline)
    return columns


def driftgauge_command() -> list[str]:
    """The installed ``driftgauge`` console script next to this interpreter, else ``-m``."""
    script = Path(sys.executable).parent / "driftgauge"
    return [str(script)] if script.exists() else [sys.executable, "-m", "driftgauge.cli"]


def _http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    """Every sample of a /metrics page under (name, labels)."""
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@dataclass
class SidecarProcess:
    """A running ``driftgauge serve``."""

    process: subprocess.Popen[bytes]
    metrics_port: int
    log: Path

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.metrics_port}"

    @property
    def url(self) -> str:
        return f"http://{self.target}"

    def scrape(self) -> Samples:
        return scrape(f"{self.url}/metrics")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _stop_all(processes: list[subprocess.Popen[bytes]], timeout: float = 15.0) -> None:
    """SIGTERM to every process still running, then wait for each (kill after ``timeout``)."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextlib.contextmanager
def sidecars(
    *runs: tuple[Path, Path], ready: bool = True, timeout: float = 60.0
) -> Iterator[list[SidecarProcess]]:
    """``driftgauge serve -c CONFIG`` for each (config, log) pair, all started at once.

    With ``ready`` it yields once every /readyz answers 200 (else call
    :func:`wait_ready` later); SIGTERM (then kill) for each at exit.
    """
    with contextlib.ExitStack() as stack:
        running: list[SidecarProcess] = []
        processes: list[subprocess.Popen[bytes]] = []
        stack.callback(_stop_all, processes)
        for config_path, log_path in runs:
            port = load_config(config_path).metrics.listen[1]
            log = stack.enter_context(log_path.open("wb"))
            process = subprocess.Popen(
                [*driftgauge_command(), "serve", "-c", str(config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            processes.append(process)
            running.append(SidecarProcess(process, port, log_path))
        if ready:
            wait_ready(running, timeout)
        yield running


def wait_ready(running: list[SidecarProcess], timeout: float = 60.0) -> None:
    """Wait until every sidecar's /readyz answers 200; fail with its log if one exits."""
    for one in running:

        def ready(one: SidecarProcess = one) -> bool:
            if one.process.poll() is not None:
                raise AssertionError(f"driftgauge serve exited early:\n{one.log_text()}")
            return _http_status(f"{one.url}/readyz") == 200

        wait_for(ready, timeout=timeout, interval=0.1, what=f"sidecar {one.target} ready")


@contextlib.contextmanager
def sidecar(
    config_path: Path, log_path: Path, ready: bool = True, timeout: float = 60.0
) -> Iterator[SidecarProcess]:
    """One of :func:`sidecars`."""
    with sidecars((config_path, log_path), ready=ready, timeout=timeout) as running:
        yield running[0]


def wait_all(conditions: list[Callable[[], Any]], timeout: float, what: str) -> None:
    """Poll until every condition holds at once."""
    wait_for(lambda: all(condition() for condition in conditions), timeout=timeout, what=what)


# -- servers and traffic on a background event loop -----------------------------------


class BackgroundLoop:
    """An asyncio event loop in a daemon thread; ``run`` executes a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="e2e-loop", daemon=True)
        self._runners: list[web.AppRunner] = []
        self._tasks: list[asyncio.Task[Any]] = []

    def __enter__(self) -> BackgroundLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.run(self._shutdown())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
            self.loop.close()

    async def _shutdown(self) -> None:
        for task in self._tasks:
            task.cancel("test finished")
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for runner in reversed(self._runners):
            await runner.cleanup()
        await self.loop.shutdown_asyncgens()

    def finish(self, timeout: float = 10.0) -> None:
        """Wait for the background coroutines to end by themselves (cancel them after ``timeout``)."""

        async def wait() -> None:
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=timeout)

        self.run(wait(), timeout=timeout + 5)

    def run(self, coroutine: Coroutine[Any, Any, _T], timeout: float = 30.0) -> _T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def start(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        """Run ``coroutine`` in the background until it ends or the loop is closed."""

        async def create() -> asyncio.Task[Any]:
            return asyncio.ensure_future(coroutine)

        self._tasks.append(self.run(create()))

    def serve(self, app: web.Application, port: int) -> str:
        """Serve ``app`` on 127.0.0.1:``port`` until exit; returns its base URL."""

        async def start() -> None:
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
            await runner.setup()
            self._runners.append(runner)
            await web.TCPSite(runner, "127.0.0.1", port).start()

        self.run(start())
        return f"http://127.0.0.1:{port}"


ASH_MEDIAN = float(np.exp(0.8))  # training_rows draws ash from lognormal(0.8, 0.2)


def kserve_proxy_source(proxy_port: int, model_port: int) -> dict[str, Any]:
    """The ``source:`` of a sidecar proxying to :func:`kserve_model_app` on ``model_port``."""
    return {
        "proxy": {
            "listen": f"127.0.0.1:{proxy_port}",
            "upstream": f"http://127.0.0.1:{model_port}",
            "readiness_path": "/v1/models/wine",
            "shutdown_grace": 1,
        }
    }


def kserve_model_app(model: str = "wine") -> web.Application:
    """A KServe v1 model server whose class depends on ``ash`` alone (``a`` below its median)."""

    async def predict(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response(
            {
                "predictions": [
                    {"class": "a" if row["ash"] < ASH_MEDIAN else "b"} for row in body["instances"]
                ]
            }
        )

    async def ready(request: web.Request) -> web.Response:
        return web.json_response({"name": model, "ready": True})

    app = web.Application()
    app.router.add_post(f"/v1/models/{model}:predict", predict)
    app.router.add_get(f"/v1/models/{model}", ready)
    return app


@dataclass
class WebhookReceiver:
    """Collects the alerts Alertmanager POSTs to its webhook (Alertmanager webhook format v4)."""

    alerts: list[dict[str, Any]] = field(default_factory=list)
    posts: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> web.Application:
        async def receive(request: web.Request) -> web.Response:
            payload = await request.json()
            with self._lock:
                self.posts += 1
                self.alerts.extend(payload["alerts"])
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_post("/alerts", receive)
        return app

    def received(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.alerts)


def live_rows(rng: np.random.Generator, n: int, alcohol_shift: float = 0.0) -> list[dict[str, Any]]:
    """Rows from ``training_rows``' population, ``alcohol`` moved by ``alcohol_shift``."""
    alcohol = (rng.normal(13.0, 0.8, n) + alcohol_shift).round(4)
    ash = rng.lognormal(0.8, 0.2, n).round(4)
    region = rng.choice(["north", "south", "east"], n, p=[0.5, 0.3, 0.2])
    return [
        {"alcohol": float(a), "ash": float(b), "region": str(r)}
        for a, b, r in zip(alcohol, ash, region, strict=True)
    ]


@dataclass
class Traffic:
    """Batched KServe v1 requests at a steady rate; set ``alcohol_shift`` to drift ``alcohol``."""

    url: str
    rate: float = 20.0
    rows_per_request: int = 10
    alcohol_shift: float = 0.0
    seed: int = 1
    sent: int = 0
    failed: int = 0
    stopping: bool = False

    def stop(self) -> None:
        """End ``run`` after the request in flight (cancelling mid-connect can leak a socket)."""
        self.stopping = True

    async def run(self) -> None:
        rng = np.random.default_rng(self.seed)
        period = 1.0 / self.rate
        next_at = time.monotonic()
        async with ClientSession(timeout=ClientTimeout(total=5)) as session:
            while not self.stopping:
                rows = live_rows(rng, self.rows_per_request, self.alcohol_shift)
                try:
                    async with session.post(self.url, json={"instances": rows}) as response:
                        await response.read()
                        if response.status == 200:
                            self.sent += len(rows)
                        else:
                            self.failed += 1
                except (OSError, ClientError, TimeoutError):
                    self.failed += 1
                next_at += period
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
