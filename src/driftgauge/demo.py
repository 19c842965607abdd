"""``driftgauge demo``: a model server, the sidecar and drifting traffic, all on loopback.

The demo trains a small multinomial logistic regression on a synthetic
wine-like data set (8 numeric features and a categorical ``region``),
builds the baseline from that training data with the real baseline code,
serves the model over KServe v1 on 127.0.0.1, and puts the sidecar in front
of it as a proxy.  A traffic generator sends batched requests through the
proxy; after a third of the run it shifts ``alcohol``, widens
``color_intensity`` and changes the ``region`` mix.  Every two seconds the
demo scrapes the sidecar's real ``/metrics`` over HTTP and shows per-feature
PSI, noise floor, KS and status; at the end it names the features found
drifted and checks them against the ones it drifted (exit 1 on a mismatch).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from aiohttp import ClientSession, ClientTimeout, web
from prometheus_client.parser import text_string_to_metric_families

from driftgauge.baseline import build_baseline, save_baseline
from driftgauge.config import DEFAULT_METRICS_PORT, Config, config_from_mapping

__all__ = ["DRIFTED", "is_drifting", "run_demo"]

NUMERIC = (
    "alcohol",
    "malic_acid",
    "ash",
    "magnesium",
    "flavanoids",
    "color_intensity",
    "hue",
    "proline",
)
REGIONS = ("north", "south", "east", "west")
CLASSES = ("class_0", "class_1", "class_2")
DRIFTED = ("alcohol", "color_intensity", "region")
_MEANS = np.array([13.0, 2.3, 2.4, 100.0, 2.0, 5.0, 0.96, 750.0])
_SCALES = np.array([0.8, 1.1, 0.27, 14.0, 1.0, 2.3, 0.23, 315.0])
_REGION_MIX = np.array([0.4, 0.3, 0.2, 0.1])
_DRIFTED_REGION_MIX = np.array([0.1, 0.2, 0.2, 0.5])
SHORT_WINDOW = "30s"


def is_drifting(psi: float, noise_floor: float) -> bool:
    """The demo's verdict: PSI ≥ 0.1 and ≥ 10× its noise floor.

    Stricter than the drift alerts (PSI above 0.02 and the χ² gate, README), whose 0.1%
    false alarms per field and window the one-scrape summary must not trip over.
    """
    return psi >= 0.1 and psi >= 10 * noise_floor


@dataclass(slots=True)
class Population:
    """Draws feature rows; ``drifted`` switches to the shifted population."""

    rng: np.random.Generator
    drifted: bool = False

    def draw(self, n: int) -> tuple[npt.NDArray[np.float64], list[str]]:
        z = self.rng.standard_normal((n, len(NUMERIC)))
        z[:, 4] = 0.6 * z[:, 0] + 0.8 * z[:, 4]  # flavanoids follow alcohol, as in real wine
        x = _MEANS + _SCALES * z
        mix = _REGION_MIX
        if self.drifted:
            x[:, 0] += 1.0 * _SCALES[0]
            x[:, 5] = _MEANS[5] + 1.8 * (x[:, 5] - _MEANS[5])
            mix = _DRIFTED_REGION_MIX
        regions = self.rng.choice(len(REGIONS), size=n, p=mix)
        return x, [REGIONS[i] for i in regions]


class Model:
    """Multinomial logistic regression trained by gradient descent at start."""

    def __init__(
        self, x: npt.NDArray[np.float64], regions: Sequence[str], labels: npt.NDArray[np.int64]
    ) -> None:
        self.mean, self.scale = x.mean(axis=0), x.std(axis=0)
        design = self._design(x, regions)
        self.weights = np.zeros((design.shape[1], len(CLASSES)))
        onehot = np.eye(len(CLASSES))[labels]
        for _ in range(300):
            gradient = design.T @ (self._softmax(design @ self.weights) - onehot) / len(design)
            self.weights -= 0.5 * gradient

    def _design(
        self, x: npt.NDArray[np.float64], regions: Sequence[str]
    ) -> npt.NDArray[np.float64]:
        region = np.array([[r == name for name in REGIONS] for r in regions], dtype=np.float64)
        return np.hstack([(x - self.mean) / self.scale, region, np.ones((len(x), 1))])

    @staticmethod
    def _softmax(logits: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)  # type: ignore[no-any-return]

    def predict(self, x: npt.NDArray[np.float64], regions: Sequence[str]) -> list[dict[str, Any]]:
        probabilities = self._softmax(self._design(x, regions) @ self.weights)
        best = probabilities.argmax(axis=1)
        return [
            {"class": CLASSES[k], "score": round(float(probabilities[i, k]), 6)}
            for i, k in enumerate(best)
        ]


def _labels(
    x: npt.NDArray[np.float64], regions: Sequence[str], rng: np.random.Generator
) -> npt.NDArray[np.int64]:
    z = (x - _MEANS) / _SCALES
    region_effect = np.array([0.5 if r == "north" else 0.0 for r in regions])
    logits = np.stack(
        [
            1.2 * z[:, 0] + z[:, 4],
            -z[:, 0] + 0.8 * z[:, 5] + region_effect,
            -0.6 * z[:, 3] - z[:, 6],
        ],
        1,
    )
    logits += rng.gumbel(size=logits.shape)
    labels: npt.NDArray[np.int64] = logits.argmax(axis=1).astype(np.int64)
    return labels


def _rows(x: npt.NDArray[np.float64], regions: Sequence[str]) -> list[dict[str, Any]]:
    return [
        {
            **{name: round(float(v), 4) for name, v in zip(NUMERIC, row, strict=True)},
            "region": region,
        }
        for row, region in zip(x, regions, strict=True)
    ]


def free_port(preferred: int | None = None) -> int:
    """``preferred`` when it is free on 127.0.0.1, else a free port the OS picks."""
    for candidate in ([preferred] if preferred else []) + [0]:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return int(probe.getsockname()[1])
    raise OSError("no free port on 127.0.0.1")


def demo_config(workdir: Path, metrics_port: int, proxy_port: int, model_port: int) -> Config:
    raw = {
        "model": "wine",
        "protocol": "kserve-v1",
        "source": {
            "proxy": {
                "listen": f"127.0.0.1:{proxy_port}",
                "upstream": f"http://127.0.0.1:{model_port}",
                "readiness_path": "/v1/models/wine",
            }
        },
        "metrics": {"listen": f"127.0.0.1:{metrics_port}", "recompute_interval": "2s"},
        "baseline": str(workdir / "wine.dgb"),
        "features": [{"name": n, "type": "numeric"} for n in NUMERIC]
        + [{"name": "region", "type": "categorical"}],
        "predictions": [
            {"name": "class", "type": "categorical"},
            {"name": "score", "type": "numeric"},
        ],
        "windows": [SHORT_WINDOW, "5m"],
        "min_observations": 200,
    }
    return config_from_mapping(raw, base=workdir)


def _model_app(model: Model) -> web.Application:
    """A KServe v1 model server: predict and the model's readiness route."""

    async def predict(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            instances = body["instances"]
            x = np.array([[row[n] for n in NUMERIC] for row in instances], dtype=np.float64)
            regions = [str(row["region"]) for row in instances]
        except (ValueError, KeyError, TypeError):
            message = "expected {'instances': [{feature: value}, ...]}"
            return web.json_response({"error": message}, status=400)
        return web.json_response({"predictions": model.predict(x, regions)})

    async def ready(request: web.Request) -> web.Response:
        return web.json_response({"name": "wine", "ready": True})

    app = web.Application()
    app.router.add_post("/v1/models/wine:predict", predict)
    app.router.add_get("/v1/models/wine", ready)
    return app


async def _traffic(
    url: str, population: Population, stop: asyncio.Event, rate: float = 40.0
) -> None:
    async with ClientSession(timeout=ClientTimeout(total=5)) as session:
        while not stop.is_set():
            x, regions = population.draw(8)
            with contextlib.suppress(Exception):  # the demo's model server may be stopping
                async with session.post(url, json={"instances": _rows(x, regions)}) as response:
                    await response.read()
            await asyncio.sleep(1.0 / rate)


async def scrape(url: str) -> dict[tuple[str, str, str], dict[str, float]]:
    """``(feature, role, window) -> {metric: value}`` from a real /metrics scrape."""
    async with (
        ClientSession(timeout=ClientTimeout(total=5)) as session,
        session.get(url) as response,
    ):
        text = await response.text()
    table: dict[tuple[str, str, str], dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if "window" in labels and "feature" in labels and "q" not in labels:
                key = (labels["feature"], labels["role"], labels["window"])
                table.setdefault(key, {})[sample.name.removeprefix("driftgauge_")] = sample.value
    return table


def _render(
    table: dict[tuple[str, str, str], dict[str, float]], elapsed: float, drifting: bool
) -> str:
    phase = "drift injected" if drifting else "no drift yet"
    lines = [
        f"driftgauge demo  t={elapsed:5.1f}s  ({phase}; window {SHORT_WINDOW})",
        f"{'field':<16}{'role':<11}{'n':>7}{'PSI':>9}{'floor':>9}{'KS D':>8}{'JS':>7}  status",
    ]
    for (feature, role, window), values in sorted(
        table.items(), key=lambda kv: (kv[0][1], kv[0][0])
    ):
        if window != SHORT_WINDOW:
            continue
        n = int(values.get("window_observations", 0))
        psi, floor = values.get("psi"), values.get("psi_noise_floor")
        if psi is None or floor is None:
            lines.append(
                f"{feature:<16}{role:<11}{n:>7}{'-':>9}{'-':>9}{'-':>8}{'-':>7}  warming up"
            )
            continue
        ks = values.get("ks_statistic")
        status = "DRIFT" if is_drifting(psi, floor) else "ok"
        ks_text = f"{ks:.3f}" if ks is not None else "-"
        lines.append(
            f"{feature:<16}{role:<11}{n:>7}{psi:>9.4f}{floor:>9.4f}{ks_text:>8}{values.get('js_distance', math.nan):>7.3f}  {status}"
        )
    return "\n".join(lines)


async def _run(duration: float, metrics_port: int | None, seed: int) -> int:
    from driftgauge.app import build_sidecar, run_until_stopped

    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory(prefix="driftgauge-demo-") as tmp:
        workdir = Path(tmp)
        population = Population(rng)
        x, regions = population.draw(20_000)
        labels = _labels(x, regions, rng)
        model = Model(x, regions, labels)
        train = workdir / "train.jsonl"
        with train.open("w", encoding="utf-8") as handle:
            for row, prediction in zip(_rows(x, regions), model.predict(x, regions), strict=True):
                handle.write(json.dumps(row | prediction) + "\n")
        port = free_port(metrics_port if metrics_port is not None else DEFAULT_METRICS_PORT)
        model_port, proxy_port = free_port(), free_port()
        config = demo_config(workdir, port, proxy_port, model_port)
        baseline = await asyncio.to_thread(build_baseline, config, [train])
        save_baseline(baseline, config.baseline)
        sidecar = build_sidecar(config)
        model_runner = web.AppRunner(_model_app(model), access_log=None)
        await model_runner.setup()
        await web.TCPSite(model_runner, "127.0.0.1", model_port).start()
        stop, stop_traffic = asyncio.Event(), asyncio.Event()
        serving = asyncio.create_task(run_until_stopped(sidecar, stop))
        url = f"http://127.0.0.1:{proxy_port}/v1/models/wine:predict"
        traffic = asyncio.create_task(_traffic(url, population, stop_traffic))
        metrics_url = f"http://127.0.0.1:{port}/metrics"
        interactive = sys.stdout.isatty()
        print(f"model server  http://127.0.0.1:{model_port}  (KServe v1, model 'wine')")
        print(f"proxy         http://127.0.0.1:{proxy_port}  (driftgauge in front of it)")
        print(f"metrics       {metrics_url}")
        print(
            f"baseline      {baseline.rows:,} training rows; drift goes into {', '.join(DRIFTED)} after a third of the run"
        )
        started = time.monotonic()
        drift_at = (duration / 3) if duration > 0 else 30.0
        table: dict[tuple[str, str, str], dict[str, float]] = {}
        try:
            while duration <= 0 or time.monotonic() - started < duration:
                await asyncio.sleep(2.0)
                if serving.done():
                    break
                elapsed = time.monotonic() - started
                population.drifted = elapsed >= drift_at
                with contextlib.suppress(Exception):
                    table = await scrape(metrics_url)
                screen = _render(table, elapsed, population.drifted)
                if interactive:
                    sys.stdout.write("\x1b[H\x1b[2J" + screen + "\n")
                else:
                    print(screen, end="\n\n")
                sys.stdout.flush()
        except asyncio.CancelledError:
            pass
        finally:
            stop_traffic.set()
            await asyncio.gather(traffic, return_exceptions=True)
            stop.set()
            await asyncio.gather(serving, return_exceptions=True)
            await model_runner.cleanup()
        return _summary(table)


def _drifting(table: dict[tuple[str, str, str], dict[str, float]], wanted: str) -> list[str]:
    return sorted(
        feature
        for (feature, role, window), values in table.items()
        if role == wanted
        and window == SHORT_WINDOW
        and "psi" in values
        and is_drifting(values["psi"], values["psi_noise_floor"])
    )


def _summary(table: dict[tuple[str, str, str], dict[str, float]]) -> int:
    found, predictions = _drifting(table, "input"), _drifting(table, "prediction")
    expected = sorted(DRIFTED)
    print("\nsummary")
    print(f"  drifted inputs found:    {', '.join(found) or 'none'}")
    print(f"  drifted inputs injected: {', '.join(expected)}")
    print(f"  prediction drift:        {', '.join(predictions) or 'none'}")
    if found == expected:
        print("  result: detected exactly the drifted features")
        return 0
    print("  result: MISMATCH between detected and injected drift")
    return 1


def run_demo(duration: float = 60.0, metrics_port: int | None = None, seed: int = 7) -> int:
    """Run the demo; returns the process exit code."""
    try:
        return asyncio.run(_run(duration, metrics_port, seed))
    except KeyboardInterrupt:
        return 130
