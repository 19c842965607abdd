"""A small wine classifier for the docker-compose example: KServe v1 server, training data, traffic.

Standard library only, so it runs in the plain ``python:3.11-slim`` image.
The model is a fixed multinomial logistic regression over the 13 features of
the UCI wine data set (standardised with that data set's means and standard
deviations); it answers like KServe's sklearn server, one class index per
instance.

    python wine_model.py serve --port 9000
        POST /v1/models/wine:predict  {"instances": [[13 numbers], ...]} -> {"predictions": [0, 2, ...]}
        GET  /v1/models/wine          {"name": "wine", "ready": true}
    python wine_model.py training-data train.csv [--rows 20000]
        a CSV of synthetic training rows (one column per feature) and the model's class
    python wine_model.py traffic --url http://driftgauge:8080/v1/models/wine:predict [--drift-after 300]
        steady batched requests; after --drift-after seconds alcohol and color_intensity shift
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL = "wine"
# (name, mean, standard deviation) of the UCI wine data set's features, in column order.
FEATURES = (
    ("alcohol", 13.0006, 0.8095),
    ("malic_acid", 2.3363, 1.114),
    ("ash", 2.3665, 0.2736),
    ("alcalinity_of_ash", 19.4949, 3.3302),
    ("magnesium", 99.7416, 14.2423),
    ("total_phenols", 2.2951, 0.6241),
    ("flavanoids", 2.0293, 0.996),
    ("nonflavanoid_phenols", 0.3619, 0.1241),
    ("proanthocyanins", 1.5909, 0.5707),
    ("color_intensity", 5.0581, 2.3118),
    ("hue", 0.9574, 0.2279),
    ("od280_od315_of_diluted_wines", 2.6117, 0.708),
    ("proline", 746.8933, 314.0217),
)
NAMES = tuple(name for name, _, _ in FEATURES)
# One weight per standardised feature and class (classes 0, 1, 2).
WEIGHTS = {
    "alcohol": (1.2, -1.3, 0.1),
    "flavanoids": (0.8, 0.2, -1.0),
    "color_intensity": (0.3, -1.1, 0.8),
    "hue": (0.1, 0.6, -0.7),
    "proline": (1.0, -0.8, -0.2),
    "od280_od315_of_diluted_wines": (0.4, 0.3, -0.7),
}


def predict(row: list[float]) -> int:
    """The class index with the largest logit."""
    logits = [0.0, 0.0, 0.0]
    for (name, mean, scale), value in zip(FEATURES, row, strict=True):
        for k, weight in enumerate(WEIGHTS.get(name, (0.0, 0.0, 0.0))):
            logits[k] += weight * (value - mean) / scale
    return max(range(3), key=logits.__getitem__)


def draw(rng: random.Random, drifted: bool = False) -> list[float]:
    """One synthetic row; ``drifted`` moves alcohol up by one sd and widens color_intensity."""
    row = [round(max(0.0, rng.gauss(mean, scale)), 4) for _, mean, scale in FEATURES]
    if drifted:
        row[0] = round(row[0] + FEATURES[0][2], 4)
        mean = FEATURES[9][1]
        row[9] = round(max(0.0, mean + 1.8 * (row[9] - mean)), 4)
    return row


class Handler(BaseHTTPRequestHandler):
    server_version = "wine-model/1"

    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == f"/v1/models/{MODEL}":
            self._send(200, {"name": MODEL, "ready": True})
        else:
            self._send(404, {"error": f"no route {self.path}"})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path != f"/v1/models/{MODEL}:predict":
            self._send(404, {"error": f"no route {self.path}"})
            return
        try:
            instances = json.loads(body)["instances"]
            rows = [
                [float(row[name]) for name in NAMES]
                if isinstance(row, dict)
                else [float(v) for v in row]
                for row in instances
            ]
            predictions = [predict(row) for row in rows]
        except (ValueError, KeyError, TypeError) as exc:
            self._send(400, {"error": f"expected {{'instances': [[13 numbers], ...]}}: {exc}"})
            return
        self._send(200, {"predictions": predictions})

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve(host: str, port: int) -> None:
    server = ThreadingHTTPServer((host, port), Handler)
    print(f"wine model on http://{host}:{port}/v1/models/{MODEL}:predict", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def training_data(path: str, rows: int, seed: int) -> None:
    rng = random.Random(seed)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([*NAMES, "class"])
        for _ in range(rows):
            row = draw(rng)
            writer.writerow([*row, predict(row)])
    print(f"wrote {rows} training rows to {path}", flush=True)


def traffic(
    url: str, rate: float, batch: int, drift_after: float, duration: float, seed: int
) -> None:
    rng = random.Random(seed)
    started = time.monotonic()
    sent = failed = 0
    while duration <= 0 or time.monotonic() - started < duration:
        drifted = time.monotonic() - started >= drift_after
        body = json.dumps({"instances": [draw(rng, drifted) for _ in range(batch)]}).encode()
        request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                response.read()
            sent += batch
        except (urllib.error.URLError, OSError):
            failed += 1
        time.sleep(1.0 / rate)
    print(f"sent {sent} rows, {failed} failed requests", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serving = commands.add_parser("serve")
    serving.add_argument("--host", default="0.0.0.0")
    serving.add_argument("--port", type=int, default=9000)
    data = commands.add_parser("training-data")
    data.add_argument("path")
    data.add_argument("--rows", type=int, default=20_000)
    data.add_argument("--seed", type=int, default=1)
    load = commands.add_parser("traffic")
    load.add_argument("--url", required=True)
    load.add_argument("--rate", type=float, default=20.0, help="requests per second")
    load.add_argument("--batch", type=int, default=8, help="rows per request")
    load.add_argument("--drift-after", type=float, default=300.0, help="seconds")
    load.add_argument("--duration", type=float, default=0.0, help="seconds; 0 runs forever")
    load.add_argument("--seed", type=int, default=2)
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.host, args.port)
    elif args.command == "training-data":
        training_data(args.path, args.rows, args.seed)
    else:
        traffic(args.url, args.rate, args.batch, args.drift_after, args.duration, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
