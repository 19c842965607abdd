"""The Grafana assets: dashboard structure, provisioning, and every panel query on real data.

The module fixture runs the real thing once: a small KServe v1 model server,
``driftgauge serve`` as a proxy in front of it with 10s and 30s windows,
traffic whose ``alcohol``, ``color_intensity`` and ``region`` drift after a
few seconds (with missing and invalid values, a route the model answers 500,
requests that time out, an unreadable body and an oversized one), and the
Debian Prometheus scraping the sidecar every second with the project's rules.
Every target of every panel, its variables resolved as Grafana would, must
then parse and return data, both as an instant and as a range query.

A second Prometheus scrapes the same sidecar through a proxy that renames the
model and two fields to names holding quotes, a backslash, a slash, regex
metacharacters, spaces and non-ASCII letters, and every query must return data
there too, its variables formatted exactly as Grafana formats them.
"""

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
from tests.helpers import answers_ok, free_port, wait_for, write_csv
from tests.rules.support import promtool_test, series
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


def _fast_rules(path: Path) -> Path:
    """The project's rules, every group evaluated each second instead of every 30s."""
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    for group in document["groups"]:
        group["interval"] = "1s"
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

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _referenced_metrics() -> set[str]:
    names = set()
    for board in BOARDS.values():
        for panel in _query_panels(board):
            for target in panel["targets"]:
                names.update(re.findall(r"\b(driftgauge[_:][A-Za-z0-9_:]+)", target["expr"]))
    return names


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


# -- dashboard structure ------------------------------------------------------------


def test_dashboards_have_stable_unique_uids() -> None:
    """Both dashboards exist with their fixed uids, a current schema and the driftgauge tag."""
    uids = [board["uid"] for board in BOARDS.values()]
    assert sorted(uids) == ["driftgauge-model", "driftgauge-overview"]
    for name, board in BOARDS.items():
        assert board["uid"] == name, "file name and uid agree"
        assert board["schemaVersion"] >= 39
        assert board["id"] is None, "exported for provisioning, without a database id"
        assert "driftgauge" in board["tags"]


def test_panel_ids_are_unique_and_panels_fit_the_grid() -> None:
    """Panel ids are unique per dashboard and every panel lies within the 24-column grid."""
    for board in BOARDS.values():
        panels = list(_panels(board))
        ids = [panel["id"] for panel in panels]
        assert len(ids) == len(set(ids)), board["uid"]
        for panel in panels:
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]


def test_every_query_uses_the_datasource_variable() -> None:
    """Panels, targets, query variables and annotations all read the ${datasource} variable."""
    for board in BOARDS.values():
        variable = next(v for v in _variables(board) if v["name"] == "datasource")
        assert variable["type"] == "datasource" and variable["query"] == "prometheus"
        for panel in _query_panels(board):
            assert panel["datasource"] == DATASOURCE_REF, panel["title"]
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["datasource"] == DATASOURCE_REF, panel["title"]
        for other in _variables(board):
            if other["type"] == "query":
                assert other["datasource"] == DATASOURCE_REF, other["name"]
        for annotation in board["annotations"]["list"]:
            if not annotation.get("builtIn"):
                assert annotation["datasource"] == DATASOURCE_REF, annotation["name"]


def test_model_dashboard_offers_model_feature_and_window_variables() -> None:
    """The drill-down selects datasource, model, feature and window from label values."""
    variables = {v["name"]: v for v in _variables(BOARDS["driftgauge-model"])}
    assert {"datasource", "model", "feature", "window", "categorical"} <= set(variables)
    assert variables["model"]["query"]["query"].startswith("label_values(")
    assert "{model=~`${model:regex}`}" in variables["feature"]["query"]["query"]


def _queries(board: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every target, query variable and annotation of ``board``."""
    for panel in _query_panels(board):
        for target in panel["targets"]:
            yield panel["title"], target["expr"]
    for variable in _variables(board):
        if variable["type"] == "query":
            yield f"${variable['name']}", variable["query"]["query"]
            yield f"${variable['name']}", variable["definition"]
    for annotation in board["annotations"]["list"]:
        if "expr" in annotation:
            yield annotation["name"], annotation["expr"]


def test_names_are_matched_through_grafanas_regex_format_only() -> None:
    """A model or field variable appears only as label=~`${var:regex}`.

    Grafana's Prometheus datasource escapes a plain "$var" for neither a quote nor (by
    default) correctly for an apostrophe, and ``:doublequote``, ``:singlequote`` and
    ``:json`` leave backslashes as they are; ``:regex`` escapes every metacharacter and
    backslash, and a raw string keeps the result as it is.
    """
    reference = re.compile(r"\$\{?(\w+)[^\w]?")
    for board in BOARDS.values():
        for where, query in _queries(board):
            for match in reference.finditer(query):
                if match.group(1) in NAME_VARIABLES:
                    start = query.rfind("=~`", 0, match.start())
                    assert start == match.start() - 3, (where, query)
                    assert query[match.start() :].startswith(f"${{{match.group(1)}:regex}}`")


def test_drill_down_links_percent_encode_names() -> None:
    """Links into the drill-down carry a clicked name percent-encoded (a name may hold & or #)."""
    links = [
        link["url"]
        for board in BOARDS.values()
        for panel in _query_panels(board)
        for config in [panel["fieldConfig"]["defaults"], *panel["fieldConfig"]["overrides"]]
        for link in _links(config)
    ]
    assert len(links) == 3
    for url in links:
        for match in re.finditer(r"\$\{(__[^}:]+)(?::(\w+))?\}", url):
            assert match.group(1) == "__url_time_range" or match.group(2) == "percentencode", url


def _links(config: Any) -> Iterator[dict[str, Any]]:
    """Every data link (a mapping with a url) anywhere in ``config``."""
    if isinstance(config, dict):
        if isinstance(config.get("url"), str) and "title" in config:
            yield config
        for value in config.values():
            yield from _links(value)
    elif isinstance(config, list):
        for value in config:
            yield from _links(value)


def test_multi_value_variables_are_only_matched_as_regex() -> None:
    """A variable that can hold several values (or All) only appears after =~."""
    for board in BOARDS.values():
        multi = [v["name"] for v in _variables(board) if v.get("multi") or v.get("includeAll")]
        for panel in _query_panels(board):
            for target in panel["targets"]:
                for name in multi:
                    assert not re.search(rf'[^=~!]=\s*"\${name}"', target["expr"]), panel["title"]


def _alert_threshold(alert: str, metric: str) -> float:
    """The number ``metric`` is compared with (``>`` or ``<``) in the expression of ``alert``."""
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    rules = {r["alert"]: r["expr"] for g in groups for r in g["rules"] if "alert" in r}
    return float(re.findall(rf"{metric}\{{[^}}]*\}} [<>] ([0-9.]+)", rules[alert])[0])


def _shown_thresholds(panel: dict[str, Any], name: str) -> Iterator[tuple[str, list[float]]]:
    """Threshold values of a panel titled with ``name``, and of its columns named with it."""
    if re.search(rf"\b{name}\b", panel["title"]):
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        yield panel["title"], [step["value"] for step in steps[1:]]
    for override in panel["fieldConfig"]["overrides"]:
        column = str(override["matcher"].get("options"))
        if re.search(rf"\b{name}\b", column):
            for item in override["properties"]:
                if item["id"] == "thresholds":
                    values = [step["value"] for step in item["value"]["steps"][1:]]
                    yield f"{panel['title']} / {column}", values


def test_psi_panels_have_the_alert_rule_thresholds() -> None:
    """Every panel or table column showing PSI is coloured at the drift alerts' effect-size floors 0.02 and 0.25."""
    expected = [
        _alert_threshold("DriftgaugeFeatureDriftWarning", "driftgauge:psi_ready"),
        _alert_threshold("DriftgaugeFeatureDriftCritical", "driftgauge:psi_ready"),
    ]
    assert expected == [0.02, 0.25]
    for board in BOARDS.values():
        shown = [item for panel in _query_panels(board) for item in _shown_thresholds(panel, "PSI")]
        assert len(shown) >= 4, board["uid"]
        for where, values in shown:
            assert values == expected, where


def test_the_readme_states_the_psi_colours() -> None:
    """grafana/README.md names the PSI thresholds the panels are coloured at."""
    readme = " ".join((GRAFANA / "README.md").read_text(encoding="utf-8").split())
    found = re.search(
        r"PSI is coloured at ([0-9.]+) \(warning\) and ([0-9.]+) \(critical\)", readme
    )
    assert found, "the README no longer says how PSI is coloured"
    shown = {
        tuple(values)
        for board in BOARDS.values()
        for panel in _query_panels(board)
        for _where, values in _shown_thresholds(panel, "PSI")
    }
    assert shown == {(float(found.group(1)), float(found.group(2)))}


def test_ks_panels_have_the_ks_alert_threshold() -> None:
    """Every panel or column showing the KS statistic is coloured at the KS alert's 0.1."""
    expected = [_alert_threshold("DriftgaugeFeatureKSDrift", "driftgauge_ks_statistic")]
    for board in BOARDS.values():
        shown = [item for panel in _query_panels(board) for item in _shown_thresholds(panel, "KS")]
        assert shown, board["uid"]
        for where, values in shown:
            assert values == expected, where


def test_invalid_value_panels_read_the_share_the_invalid_values_alert_reads(
    tmp_path: Path,
) -> None:
    """Half of alcohol's values wrong-typed reads 50%, as DriftgaugeInvalidValuesHigh's ratio does;
    an unseen category's share of region stays its share of observations."""
    values: dict[str, Value] = PREFERRED | {"__rate_interval": "5m", "datasource": "prometheus"}
    panels = [
        (board["uid"], panel)
        for board in BOARDS.values()
        for panel in _query_panels(board)
        if panel["title"].startswith("Invalid values")
    ]
    assert {uid for uid, _ in panels} == {"driftgauge-overview", "driftgauge-model"}
    rules = [
        {"record": f"panel_{i}", "expr": substitute(panel["targets"][0]["expr"], values)}
        for i, (_, panel) in enumerate(panels)
    ]
    (tmp_path / "panels.yml").write_text(
        yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}), encoding="utf-8"
    )
    sidecar = {"job": "driftgauge", "instance": "10.0.0.1:10117", "model": "wine"}
    alcohol, region = sidecar | {"feature": "alcohol"}, sidecar | {"feature": "region"}
    numeric_reasons = {
        "wrong_type": "0+30x10",
        "nan": "0x10",
        "inf": "0x10",
        "out_of_range": "0x10",
    }
    inputs = [
        series("driftgauge_observations_total", alcohol | {"role": "input"}, "0+30x10"),
        series("driftgauge_observations_total", region | {"role": "input"}, "0+60x10"),
        series(
            "driftgauge_invalid_total",
            region | {"role": "input", "reason": "unseen_category"},
            "0+6x10",
        ),
    ] + [
        series("driftgauge_invalid_total", alcohol | {"role": "input", "reason": reason}, values)
        for reason, values in numeric_reasons.items()
    ]
    shares = {"wrong_type": 0.5, "nan": 0.0, "inf": 0.0, "out_of_range": 0.0}
    expected = {
        "driftgauge-model": [({"reason": r}, v) for r, v in shares.items()],
        "driftgauge-overview": [
            ({"model": "wine", "feature": "alcohol", "reason": r}, v) for r, v in shares.items()
        ]
        + [({"model": "wine", "feature": "region", "reason": "unseen_category"}, 0.1)],
    }
    promtool_test(
        tmp_path,
        ["panels.yml"],
        [
            {
                "interval": "1m",
                "input_series": inputs,
                "promql_expr_test": [
                    {
                        "expr": f"panel_{i}",
                        "eval_time": "5m",
                        "exp_samples": [
                            {"labels": series(f"panel_{i}", labels, "")["series"], "value": v}
                            for labels, v in expected[uid]
                        ],
                    }
                    for i, (uid, _) in enumerate(panels)
                ],
            }
        ],
    )


def test_psi_heat_map_and_top_features_cover_the_overview() -> None:
    """The overview has a PSI-by-feature heat map over time and a topk of drifting features."""
    panels = list(_query_panels(BOARDS["driftgauge-overview"]))
    heat = [p for p in panels if p["type"] in {"status-history", "state-timeline", "heatmap"}]
    assert any("by (model, feature)" in t["expr"] for p in heat for t in p["targets"])
    top = [p for p in panels if p["type"] in {"bargauge", "table"}]
    assert any(t["expr"].startswith("topk(") for p in top for t in p["targets"])


def test_every_visual_panel_has_a_unit() -> None:
    """Timeseries, stat, bar and status panels all set a unit."""
    for board in BOARDS.values():
        for panel in _query_panels(board):
            if panel["type"] in UNIT_PANELS:
                assert panel["fieldConfig"]["defaults"].get("unit"), panel["title"]


def test_dashboards_link_to_each_other() -> None:
    """The overview links to the drill-down and back, keeping the time range."""
    pairs = {"driftgauge-overview": "driftgauge-model", "driftgauge-model": "driftgauge-overview"}
    for name, other in pairs.items():
        links = [link for link in BOARDS[name]["links"] if f"/d/{other}" in link.get("url", "")]
        assert links, name
        assert all(link["keepTime"] for link in links)


# -- provisioning -------------------------------------------------------------------


def test_datasource_provisioning_matches_the_dashboards() -> None:
    """The provisioned Prometheus has the uid the dashboards' datasource variable defaults to."""
    document = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))
    assert document["apiVersion"] == 1
    (source,) = document["datasources"]
    assert source["type"] == "prometheus" and source["uid"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    for board in BOARDS.values():
        variable = next(v for v in _variables(board) if v["type"] == "datasource")
        assert variable["current"]["value"] == source["uid"]


def test_dashboard_provisioning_loads_the_mounted_folder() -> None:
    """The provider reads /var/lib/grafana/dashboards, where the README mounts grafana/dashboards."""
    document = yaml.safe_load(PROVIDERS.read_text(encoding="utf-8"))
    assert document["apiVersion"] == 1
    (provider,) = document["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    readme = (GRAFANA / "README.md").read_text(encoding="utf-8")
    assert "grafana/dashboards:/var/lib/grafana/dashboards" in readme
    assert "/etc/grafana/provisioning" in readme


# -- against a real Prometheus --------------------------------------------------------


@pytest.mark.integration
def test_variable_queries_return_values(scraped: Scraped) -> None:
    """Each query variable resolves to values, including the test's model, feature and window."""
    for board in BOARDS.values():
        values = scraped.values(board)
        for name in ("model", "window"):
            assert values[name] in {PREFERRED[name], ".*"}, (board["uid"], name)
    model = scraped.values(BOARDS["driftgauge-model"])
    assert {k: model[k] for k in PREFERRED} == PREFERRED
    feature = next(v for v in _variables(BOARDS["driftgauge-model"]) if v["name"] == "feature")
    features = scraped.label_values(substitute(feature["query"]["query"], model))
    assert features == sorted(["alcohol", "ash", "color_intensity", "region", "class", "score"])


@pytest.mark.integration
@pytest.mark.parametrize(("dashboard", "title", "expr"), list(_targets()))
def test_panel_query_returns_data(scraped: Scraped, dashboard: str, title: str, expr: str) -> None:
    """The target parses and returns data as an instant query and over the test's time span."""
    assert_returns_data(scraped, title, substitute(expr, scraped.values(BOARDS[dashboard])))


def _odd(scraped: Scraped) -> Scraped:
    assert scraped.odd is not None
    return scraped.odd


@pytest.mark.integration
def test_variable_queries_offer_odd_names(scraped: Scraped) -> None:
    """With quotes, backslash, slash, metacharacters and non-ASCII in the names, the variables resolve to them."""
    odd = _odd(scraped)
    for board in BOARDS.values():
        assert odd.values(board)["model"] in (ODD["wine"], [ODD["wine"]]), board["uid"]
    model = odd.values(BOARDS["driftgauge-model"])
    assert {k: model[k] for k in ODD_PREFERRED} == ODD_PREFERRED
    feature = next(v for v in _variables(BOARDS["driftgauge-model"]) if v["name"] == "feature")
    features = odd.label_values(substitute(feature["query"]["query"], model))
    assert features == sorted(
        [ODD["alcohol"], "ash", "color_intensity", ODD["region"], "class", "score"]
    )


@pytest.mark.integration
@pytest.mark.parametrize(("dashboard", "title", "expr"), list(_targets()))
def test_panel_query_returns_data_for_odd_names(
    scraped: Scraped, dashboard: str, title: str, expr: str
) -> None:
    """Each target returns data when the model and fields have odd names, formatted as Grafana does."""
    odd = _odd(scraped)
    assert_returns_data(odd, title, substitute(expr, odd.values(BOARDS[dashboard])))


@pytest.mark.integration
def test_a_plain_quoted_variable_breaks_on_odd_names(scraped: Scraped) -> None:
    """Why the regex format: Grafana's default escaping of model="$model" yields invalid PromQL."""
    odd = _odd(scraped)
    query = substitute('driftgauge_baseline_info{model="$model"}', {"model": ODD["wine"]})
    url = f"{odd.server.url}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=10)
    refused.value.close()
    assert refused.value.code == 400
    escaped = substitute(
        "driftgauge_baseline_info{model=~`${model:regex}`}", {"model": ODD["wine"]}
    )
    assert _api(odd.server, "query", {"query": escaped})["result"]


def assert_returns_data(scraped: Scraped, title: str, query: str) -> None:
    """``query`` returns data as an instant query now and over the test's time span."""
    now = time.time()
    instant = _api(scraped.server, "query", {"query": query, "time": now})
    assert instant["result"], f"{title}: no data now for {query!r}"
    params = {"query": query, "start": scraped.started, "end": now, "step": STEP}
    ranged = _api(scraped.server, "query_range", params)
    assert any(series["values"] for series in ranged["result"]), f"{title}: no data for {query!r}"


@pytest.mark.integration
def test_annotation_queries_parse(scraped: Scraped) -> None:
    """The alert annotations' queries are valid PromQL with the variables filled in, odd names too."""
    for view in (scraped, _odd(scraped)):
        for board in BOARDS.values():
            values = view.values(board)
            for annotation in board["annotations"]["list"]:
                if "expr" in annotation:
                    _api(view.server, "query", {"query": substitute(annotation["expr"], values)})


@pytest.mark.integration
def test_drift_shows_on_the_heat_map_only_after_it_starts(scraped: Scraped) -> None:
    """On the heat map, alcohol stays below 0.1 before the drift and ends above 0.25."""
    board = BOARDS["driftgauge-overview"]
    heat = next(p for p in _query_panels(board) if p["type"] == "status-history")
    query = substitute(heat["targets"][0]["expr"], scraped.values(board))

    def alcohol() -> list[tuple[float, float]]:
        params = {"query": query, "start": scraped.started, "end": time.time(), "step": 1.0}
        series = _api(scraped.server, "query_range", params)["result"]
        found = next(s for s in series if s["metric"]["feature"] == "alcohol")
        return [(float(t), float(v)) for t, v in found["values"]]

    before = [v for t, v in alcohol() if t < scraped.world.drift_started]
    assert before and float(np.median(before)) < 0.1
    # The short window fills with drifted traffic at the traffic's pace: on a busy
    # machine that can take a few more seconds than the fixture waited.
    wait_for(lambda: alcohol()[-1][1] > 0.25, timeout=40, what="alcohol's PSI above 0.25")
