"""The Grafana tests' world: the dashboards as files, Grafana's variable formats, and a
module fixture running a real sidecar and Prometheus over drifting traffic (see
test_grafana.py)."""

from __future__ import annotations

import asyncio
import json
import math
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from aiohttp import ClientSession, ClientTimeout, web

from driftgauge.baseline import build_baseline, save_baseline
from driftgauge.config import config_from_mapping
from tests.helpers import answers_ok, free_port, serving, wait_for, write_csv
from tests.servers import Prometheus, prometheus

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "grafana"
DASHBOARD_FILES = sorted((GRAFANA / "dashboards").glob("*.json"))
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "driftgauge.yml"
RULES = ROOT / "alert_rules" / "driftgauge.rules.yml"

DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}
UNIT_PANELS = {"timeseries", "stat", "bargauge", "gauge", "barchart", "status-history"}
WINDOWS = ("10s", "30s")
# The value each dashboard variable takes in the integration tests when it is offered:
# a numeric feature (KS and quantile panels need one) and the categorical one.
PREFERRED = {"model": "wine", "feature": "alcohol", "window": WINDOWS[0], "categorical": "region"}
# What Grafana puts in for its built-in interval variables at a 1s scrape interval.
RATE_INTERVAL, INTERVAL, STEP = "10s", "2s", 2.0

# What the odd-names Prometheus sees instead of the model and two fields' names: every
# character a query could trip on but a backtick, which no Grafana format escapes
# (grafana/README.md).
ODD = {
    "wine": "wine \"red\" 'rosé' \\ /v2 (a|b)",
    "alcohol": "alc \"ohol\" 'x' \\ /°C [%] {1,2}.*+?^$",
    "region": "région \"r\" 'n' \\ /(x|y)",
}
ODD_PREFERRED = PREFERRED | {
    "model": ODD["wine"],
    "feature": ODD["alcohol"],
    "categorical": ODD["region"],
}
# Variables naming a model or field: matched as `label=~`${var:regex}`` only.
NAME_VARIABLES = ("model", "feature", "categorical")

REGIONS = ("north", "south", "east", "west")
MIX, DRIFTED_MIX = (0.4, 0.3, 0.2, 0.1), (0.1, 0.2, 0.2, 0.5)


def _load(path: Path) -> dict[str, Any]:
    board: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return board


BOARDS = {path.stem: _load(path) for path in DASHBOARD_FILES}


def _panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows included, with a collapsed row's nested panels."""
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def _query_panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    return (panel for panel in _panels(board) if panel["type"] != "row")


def _variables(board: dict[str, Any]) -> list[dict[str, Any]]:
    return list(board["templating"]["list"])


def _targets() -> Iterator[Any]:
    for name, board in BOARDS.items():
        for panel in _query_panels(board):
            for target in panel["targets"]:
                yield pytest.param(
                    name,
                    panel["title"],
                    target["expr"],
                    id=f"{name}:{panel['id']}{target['refId']}:{panel['title']}",
                )


_VARIABLE = re.compile(r"\$\{(\w+)(?:\.[^:}]+)?(?::(\w+))?\}|\$(\w+)|\[\[(\w+)(?::(\w+))?\]\]")
_LABEL_VALUES = re.compile(r"^label_values\((.*),\s*(\w+)\)$", re.S)


class AllValue(str):
    """A variable's custom all value (``allValue``): Grafana inserts it unformatted."""


Value = str | list[str]


def regex_escape(value: str) -> str:
    r"""Grafana's ``:regex`` format of one value: ``escapeRegex`` of @grafana/data (and
    ``kbn.regexEscape`` before it), ``value.replace(/[\\^$*+?.()|[\]{}\/]/g, '\\$&')``."""
    return re.sub(r"[\\^$*+?.()|\[\]{}/]", lambda match: "\\" + match.group(0), value)


def prometheus_regular_escape(value: str) -> str:
    r"""Grafana's Prometheus datasource's default for a single-valued variable (the
    ``prometheusSpecialCharsInLabelValues`` toggle off, its default): ``\`` doubled, ``'`` as
    ``\\'`` (two backslashes), ``"`` left alone."""
    return value.replace("\\", "\\\\").replace("'", "\\\\'")


def _percent_encode(value: str) -> str:
    """``:percentencode``: encodeURIComponent, plus ``!'()*``."""
    return urllib.parse.quote(value, safe="-_.~")


def grafana_format(value: Value, fmt: str | None) -> str:
    """``value`` as Grafana inserts it with format ``fmt`` (None: the datasource's default)."""
    if isinstance(value, AllValue) and fmt not in ("text", "percentencode", "queryparam"):
        return str(value)
    if fmt == "regex":
        escaped = (
            [regex_escape(value)] if isinstance(value, str) else list(map(regex_escape, value))
        )
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
    if fmt == "percentencode":
        return _percent_encode(value if isinstance(value, str) else "{" + ",".join(value) + "}")
    assert fmt is None, f"format {fmt} not modelled"
    assert isinstance(value, str), "a multi-value variable needs a format in these dashboards"
    return prometheus_regular_escape(value)


def substitute(text: str, values: dict[str, Value]) -> str:
    """Grafana's variable interpolation: ``$var``, ``${var}``, ``${var:fmt}``, ``[[var]]``."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3) or match.group(4)
        fmt = match.group(2) or match.group(5)
        if name not in values:
            raise KeyError(f"undefined variable ${name} in {text!r}")
        return grafana_format(values[name], fmt)

    return _VARIABLE.sub(replace, text)


def _api(server: Prometheus, path: str, params: dict[str, Any]) -> Any:
    """A Prometheus API call; a rejected query fails with Prometheus' own error message."""
    url = f"{server.url}/api/v1/{path}?" + urllib.parse.urlencode(params, doseq=True)
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            body = json.loads(exc.read())
    assert body["status"] == "success", f"{params}: {body.get('errorType')}: {body.get('error')}"
    return body["data"]


# The fleet counts a replica once it was first scraped 5m ago: 5s here, so the fixture's
# minute of traffic has the fleet's series too.
_FIRST_SCRAPED = re.compile(r"(driftgauge_baseline_info(?:\{[^}]*\})?) offset 5m\b")


def _fast_rules(path: Path) -> Path:
    """The project's rules, every group evaluated each second instead of every 30s, and the
    fleet's replicas counted 5s after their first scrape instead of 5m."""
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    guarded = 0
    for group in document["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            rule["expr"], found = _FIRST_SCRAPED.subn(r"\1 offset 5s", rule["expr"])
            guarded += found
    assert guarded, "no rule holds the fleet's first-scrape guard any more: update _FIRST_SCRAPED"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


# -- the model, its server and the traffic ---------------------------------------------


def _draw(rng: np.random.Generator, n: int, drifted: bool) -> list[dict[str, Any]]:
    alcohol = rng.normal(13.8 if drifted else 13.0, 0.8, n)
    ash = rng.normal(2.4, 0.27, n)
    color = 5.0 + rng.normal(0.0, 2.3 * (1.8 if drifted else 1.0), n)
    regions = rng.choice(REGIONS, size=n, p=DRIFTED_MIX if drifted else MIX)
    return [
        {"alcohol": round(a, 3), "ash": round(s, 3), "color_intensity": round(c, 3), "region": r}
        for a, s, c, r in zip(
            alcohol.tolist(), ash.tolist(), color.tolist(), regions.tolist(), strict=True
        )
    ]


def _number(value: Any, default: float) -> float:
    return float(value) if isinstance(value, int | float) else default


def _predict(row: dict[str, Any]) -> dict[str, Any]:
    """A fixed logistic "model": the score follows alcohol and colour, so predictions drift too."""
    z = (_number(row.get("alcohol"), 13.0) - 13.0) / 0.8 + 0.5 * (
        _number(row.get("color_intensity"), 5.0) - 5.0
    ) / 2.3
    score = 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))
    label = "high" if score > 0.6 else "low" if score < 0.4 else "mid"
    return {"class": label, "score": round(score, 4)}


def _model_app() -> web.Application:
    """KServe v1: predict, readiness, a route answering 500 and one slower than the proxy waits."""

    async def predict(request: web.Request) -> web.Response:
        try:
            instances = (await request.json())["instances"]
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": "expected {'instances': [...]}"}, status=400)
        return web.json_response({"predictions": [_predict(row) for row in instances]})

    async def ready(request: web.Request) -> web.Response:
        return web.json_response({"name": "wine", "ready": True})

    async def explain(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"error": "explainer crashed"}, status=500)

    async def slow(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(3.0)
        return web.json_response({"predictions": []})

    app = web.Application()
    app.router.add_post("/v1/models/wine:predict", predict)
    app.router.add_get("/v1/models/wine", ready)
    app.router.add_post("/v1/models/wine:explain", explain)
    app.router.add_post("/v1/models/wine:slow", slow)
    return app


class World:
    """The model server and the client traffic, on an event loop in a background thread."""

    def __init__(self, model_port: int, proxy_port: int, drift_after: float) -> None:
        self.model_port = model_port
        self.base = f"http://127.0.0.1:{proxy_port}/v1/models/wine"
        self.drift_after = drift_after
        self.drift_started = math.inf  # wall-clock time, once the traffic drifts
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._quiet: asyncio.Event | None = None
        self._up = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)
        self._traffic: Any = None

    def start(self) -> None:
        self._thread.start()
        assert self._up.wait(10), "model server did not start"

    def start_traffic(self) -> None:
        assert self._loop is not None
        self._traffic = asyncio.run_coroutine_threadsafe(self._send(), self._loop)

    def stop(self) -> None:
        """Stop the traffic, then the model server; re-raises what failed in the traffic."""
        try:
            if self._loop is not None and self._quiet is not None:
                self._loop.call_soon_threadsafe(self._quiet.set)
            if self._traffic is not None:
                self._traffic.result(timeout=10)
        finally:
            if self._loop is not None and self._stop is not None:
                self._loop.call_soon_threadsafe(self._stop.set)
            if self._thread.is_alive():
                self._thread.join(timeout=10)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop, self._quiet = asyncio.Event(), asyncio.Event()
        runner = web.AppRunner(_model_app(), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", self.model_port).start()
            self._up.set()
            await self._stop.wait()
        finally:
            await runner.cleanup()

    async def _send(self) -> None:
        assert self._quiet is not None
        rng = np.random.default_rng(11)
        started = time.monotonic()
        async with ClientSession(timeout=ClientTimeout(total=10)) as session:
            incidents = asyncio.create_task(self._incidents(session))
            tick = 0
            while not self._quiet.is_set():
                drifted = time.monotonic() - started >= self.drift_after
                if drifted and self.drift_started == math.inf:
                    self.drift_started = time.time()
                rows = _draw(rng, 8, drifted)
                if tick % 10 == 0:  # missing, wrong type, out of range, unseen category
                    rows[0] = {
                        "alcohol": None,
                        "ash": "n/a",
                        "color_intensity": 1e6,
                        "region": "atlantis",
                    }
                async with session.post(f"{self.base}:predict", json={"instances": rows}) as reply:
                    assert reply.status == 200, await reply.text()
                tick += 1
                await asyncio.sleep(0.025)
            await incidents

    async def _incidents(self, session: ClientSession) -> None:
        """Every other second: a 500 from the model, an upstream timeout, an unreadable body."""
        assert self._quiet is not None
        big = {"instances": _draw(np.random.default_rng(3), 2000, drifted=False)}
        async with session.post(f"{self.base}:predict", json=big) as reply:  # over max_body_bytes
            assert reply.status == 200
        while not self._quiet.is_set():
            async with session.post(f"{self.base}:explain", json={"instances": []}) as reply:
                assert reply.status == 500
            async with session.post(f"{self.base}:slow", json={"instances": []}) as reply:
                assert reply.status == 504
            async with session.post(f"{self.base}:predict", data=b"{not json") as reply:
                assert reply.status == 400, await reply.text()
            await asyncio.sleep(2.0)


# -- the fixture ---------------------------------------------------------------------


@dataclass
class Scraped:
    """A Prometheus fed by the sidecar, and the variable values its dashboards are tested with.

    ``pick_all``: a variable that offers All takes it (else the preferred value alone);
    ``odd`` is the Prometheus that sees the sidecar's series under :data:`ODD` names.
    """

    server: Prometheus
    world: World
    started: float
    preferred: dict[str, str] = field(default_factory=lambda: dict(PREFERRED))
    pick_all: bool = True
    odd: Scraped | None = None

    def values(self, board: dict[str, Any]) -> dict[str, Value]:
        """The dashboard's variables resolved in order, as Grafana does on load."""
        now = time.time()
        values: dict[str, Value] = {
            "__rate_interval": RATE_INTERVAL,
            "__interval": INTERVAL,
            "__interval_ms": str(int(float(INTERVAL[:-1]) * 1000)),
            "__range": f"{math.ceil(now - self.started)}s",
            "__range_s": str(math.ceil(now - self.started)),
            "__range_ms": str(math.ceil(now - self.started) * 1000),
        }
        for variable in _variables(board):
            if variable["type"] == "datasource":
                values[variable["name"]] = "prometheus"
                continue
            options = self.label_values(substitute(variable["query"]["query"], values))
            assert options, f"variable {variable['name']} has no values"
            preferred = self.preferred.get(variable["name"])
            chosen = preferred if preferred in options else options[0]
            if variable.get("includeAll") and self.pick_all:
                values[variable["name"]] = AllValue(variable["allValue"])
            elif variable.get("multi"):
                values[variable["name"]] = [chosen]
            else:
                values[variable["name"]] = chosen
        return values

    def label_values(self, query: str) -> list[str]:
        match = _LABEL_VALUES.match(query.strip())
        assert match, f"not a label_values() query: {query!r}"
        selector, label = match.groups()
        params = {"match[]": selector, "start": self.started, "end": time.time()}
        return sorted(_api(self.server, f"label/{label}/values", params))


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def _exposition_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def renamed(text: str) -> str:
    """Exposition text with the model and the :data:`ODD` fields renamed."""
    for plain, odd in ODD.items():
        label = "model" if plain == "wine" else "feature"
        text = text.replace(f'{label}="{plain}"', f'{label}="{_exposition_escape(odd)}"')
    return text


@contextmanager
def renaming_proxy(metrics_url: str) -> Iterator[str]:
    """A loopback /metrics serving ``metrics_url``'s, renamed (:func:`renamed`); its host:port."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            try:
                with urllib.request.urlopen(metrics_url, timeout=5) as response:
                    body = renamed(response.read().decode("utf-8")).encode("utf-8")
            except OSError:
                self.send_error(503)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with serving(ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)) as server:
        yield f"127.0.0.1:{server.server_address[1]}"


def _referenced_metrics() -> set[str]:
    names = set()
    for board in BOARDS.values():
        for panel in _query_panels(board):
            for target in panel["targets"]:
                names.update(re.findall(r"\b(driftgauge[_:][A-Za-z0-9_:]+)", target["expr"]))
    return names


# The model's fields, for the live sidecar here and the configs the generated dashboards are for.
FIELDS: dict[str, list[dict[str, str]]] = {
    "features": [
        {"name": "alcohol", "type": "numeric"},
        {"name": "ash", "type": "numeric"},
        {"name": "color_intensity", "type": "numeric"},
        {"name": "region", "type": "categorical"},
    ],
    "predictions": [
        {"name": "class", "type": "categorical"},
        {"name": "score", "type": "numeric"},
    ],
}


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraped]:
    """A real sidecar fed drifting traffic, scraped by a real Prometheus with the rules."""
    tmp = tmp_path_factory.mktemp("grafana")
    model_port, proxy_port, metrics_port = free_port(), free_port(), free_port()
    raw = {
        "model": "wine",
        "protocol": "kserve-v1",
        "source": {
            "proxy": {
                "listen": f"127.0.0.1:{proxy_port}",
                "upstream": f"http://127.0.0.1:{model_port}",
                "readiness_path": "/v1/models/wine",
                "timeout": 2,
                "max_body_bytes": 65536,
            }
        },
        "metrics": {"listen": f"127.0.0.1:{metrics_port}", "recompute_interval": "1s"},
        "baseline": "baseline.dgb",
        **FIELDS,
        "windows": list(WINDOWS),
        "min_observations": 50,
    }
    config_path = tmp / "driftgauge.yml"
    config_path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    training = [row | _predict(row) for row in _draw(np.random.default_rng(0), 5000, False)]
    data = write_csv(tmp / "train.csv", {k: [row[k] for row in training] for k in training[0]})
    config = config_from_mapping(raw, base=tmp)
    save_baseline(build_baseline(config, [data]), config.baseline)

    world = World(model_port, proxy_port, drift_after=8.0)
    log_path = tmp / "driftgauge.log"
    sidecar: subprocess.Popen[bytes] | None = None
    rules = _fast_rules(tmp / "rules.yml")
    with (
        log_path.open("wb") as log,
        prometheus(tmp / "prometheus", [f"127.0.0.1:{metrics_port}"], [rules]) as server,
        renaming_proxy(f"http://127.0.0.1:{metrics_port}/metrics") as odd_target,
        prometheus(tmp / "prometheus-odd", [odd_target], [rules]) as odd_server,
    ):
        try:
            world.start()
            command = [sys.executable, "-m", "driftgauge.cli", "--log-level", "WARNING"]
            sidecar = subprocess.Popen(
                [*command, "serve", "-c", str(config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            ready = f"http://127.0.0.1:{metrics_port}/readyz"
            try:
                wait_for(lambda: answers_ok(ready), what="driftgauge ready")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{log_path.read_text()}") from None
            started = time.time()
            world.start_traffic()
            odd = Scraped(odd_server, world, started, dict(ODD_PREFERRED), pick_all=False)
            scraped = Scraped(server, world, started, odd=odd)
            wanted = _referenced_metrics()

            def names(on: Prometheus) -> set[str]:
                found = on.query('count by (__name__) ({__name__=~"driftgauge.+"})')
                return {series["metric"]["__name__"] for series in found}

            def everything_scraped() -> bool:
                drifted = server.query(
                    f'driftgauge_psi{{feature="alcohol", window="{WINDOWS[0]}"}} > 0.25'
                )
                return wanted <= names(server) and wanted <= names(odd_server) and bool(drifted)

            try:
                wait_for(everything_scraped, timeout=60, interval=1.0, what="all metrics scraped")
            except AssertionError as exc:
                missing = sorted((wanted - names(server)) | (wanted - names(odd_server)))
                raise AssertionError(f"{exc}; missing: {missing}") from None
            yield scraped
        finally:
            try:
                world.stop()
            finally:
                if sidecar is not None:
                    _stop(sidecar)


def assert_returns_data(scraped: Scraped, title: str, query: str) -> None:
    """``query`` returns data as an instant query now and over the test's time span."""
    now = time.time()
    instant = _api(scraped.server, "query", {"query": query, "time": now})
    assert instant["result"], f"{title}: no data now for {query!r}"
    params = {"query": query, "start": scraped.started, "end": now, "step": STEP}
    ranged = _api(scraped.server, "query_range", params)
    assert any(series["values"] for series in ranged["result"]), f"{title}: no data for {query!r}"
