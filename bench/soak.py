"""Soak: steady traffic through ``driftgauge serve`` for a bounded time; is its memory flat?

Run from the repository root (loopback only; it stops by itself)::

    .venv/bin/python -m bench.soak                     # 300 s at 200 req/s
    .venv/bin/python -m bench.soak --duration 60 --rate 100

Setup, all on 127.0.0.1:

* upstream: a small KServe v2 model server run from this file in a child
  process (raw asyncio + httptools).  It reads each request's ``input-0``
  tensor and answers a ``class`` (BYTES, "0"/"1") and a ``score`` (FP64)
  per row, computed from the row, so answers depend on the request;
* ``driftgauge serve`` (a child process): proxy mode, protocol ``kserve-v2``,
  20 numeric features ``f0..f19``, predictions ``class`` (categorical) and
  ``score`` (numeric), windows 5m and 1h, a state directory snapshotted every
  ``--state-interval`` (default 10 s), and ``feedback`` on (classification, positive class "1", ``score``
  as its probability, a bearer token), so the proxy gives every request an
  id and the prediction store holds every row until its label arrives or it
  is evicted;
* load: an open-loop aiohttp generator in this process posting 8-row bodies
  (500 distinct ones, drawn from the baseline's distributions) at ``--rate``
  requests per second, at most ``--max-in-flight`` at a time (a request that
  would exceed it is counted as not sent).  For ``--label-share`` of the
  answered requests it posts the rows' labels (the answered class, flipped
  for 10% of rows) to ``/feedback`` ``--label-delay`` seconds later, in one
  batch per second.

Every 10 s it reads the sidecar's resident set size (``VmRSS`` in
``/proc/PID/status``) and how many predictions it holds for labels.  At the
end it prints RSS at the end of the warm-up (``--warmup``, default 20% of
the run, and never before the prediction store first held 95% of
``max_pending``: it fills for about 90 s at the default rate, and memory
that grows up to a configured bound is not a leak) and at the end, the growth between
them, requests answered, errors, drops, label outcomes and latency
percentiles, stops the sidecar with SIGTERM (it must exit 0 and leave a
snapshot), and ends with the verdict on the target: RSS growth after warm-up
under 10%.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector
from prometheus_client.parser import text_string_to_metric_families

from bench._common import DATA_DIR, REPO, free_port, print_table, target_line
from driftgauge.baseline import build_baseline, save_baseline
from driftgauge.config import config_from_mapping

FEATURES = 20
ROWS = 8
ROUTE = "/v2/models/soak/infer"
TOKEN = "soak-feedback-token"
MAX_PENDING = 100_000  # the default of feedback.max_pending, spelled out
FULL_STORE = 0.95  # labels keep taking rows out of a full store: it hovers just below the bound
TARGET_GROWTH = 0.10
SAMPLE_EVERY = 10.0
BASELINE_ROWS = 20_000
WEIGHTS = np.linspace(-0.5, 0.5, FEATURES)


def location_scale(index: int) -> tuple[float, float]:
    """The normal distribution of feature ``f<index>`` (baseline and traffic alike)."""
    return float(index % 7), 1.0 + (index % 3)


def score_rows(rows: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The model: a logistic score of the standardized features."""
    centred = np.stack(
        [(rows[:, i] - location_scale(i)[0]) / location_scale(i)[1] for i in range(FEATURES)],
        axis=1,
    )
    return 1.0 / (1.0 + np.exp(-(centred @ WEIGHTS)))


# -- the upstream (a child process) -----------------------------------------------


def _answer(body: bytes) -> bytes:
    try:
        tensor = json.loads(body)["inputs"][0]
        rows = np.asarray(tensor["data"], dtype=float).reshape(tensor["shape"])
    except (ValueError, KeyError, IndexError, TypeError):
        payload = b'{"error":"bad request"}'
        return b"HTTP/1.1 400 Bad Request\r\ncontent-length: %d\r\n\r\n%s" % (len(payload), payload)
    scores = score_rows(rows)
    document = {
        "model_name": "soak",
        "outputs": [
            {
                "name": "class",
                "shape": [len(rows)],
                "datatype": "BYTES",
                "data": ["1" if s > 0.5 else "0" for s in scores],
            },
            {
                "name": "score",
                "shape": [len(rows)],
                "datatype": "FP64",
                "data": [round(float(s), 5) for s in scores],
            },
        ],
    }
    payload = json.dumps(document, separators=(",", ":")).encode()
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
        len(payload),
        payload,
    )


def run_upstream(port: int) -> None:
    """Serve the model on 127.0.0.1:``port`` until SIGTERM."""
    import httptools

    class Model(asyncio.Protocol):
        def __init__(self) -> None:
            self.transport: asyncio.Transport | None = None
            self.parser = httptools.HttpRequestParser(self)
            self.body: list[bytes] = []

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport  # type: ignore[assignment]

        def data_received(self, data: bytes) -> None:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserError:
                if self.transport is not None:
                    self.transport.close()

        def on_message_begin(self) -> None:
            self.body = []

        def on_body(self, body: bytes) -> None:
            self.body.append(body)

        def on_message_complete(self) -> None:
            if self.transport is not None:
                self.transport.write(_answer(b"".join(self.body)))

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Model, "127.0.0.1", port, reuse_address=True)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        async with server:
            await stop.wait()

    asyncio.run(serve())


# -- the sidecar ------------------------------------------------------------------------


def sidecar_config(
    proxy: int, metrics: int, upstream: int, baseline: Path, state: Path, interval: str = "10s"
) -> dict[str, Any]:
    return {
        "model": "soak",
        "protocol": "kserve-v2",
        "source": {
            "proxy": {"listen": f"127.0.0.1:{proxy}", "upstream": f"http://127.0.0.1:{upstream}"}
        },
        "metrics": {"listen": f"127.0.0.1:{metrics}"},
        "baseline": str(baseline),
        "features": [{"name": f"f{i}", "type": "numeric"} for i in range(FEATURES)],
        "predictions": [
            {"name": "class", "type": "categorical"},
            {"name": "score", "type": "numeric"},
        ],
        "windows": ["5m", "1h"],
        "feedback": {
            "prediction": "class",
            "task": "classification",
            "positive_class": "1",
            "probability": "score",
            "token": TOKEN,
            "max_pending": MAX_PENDING,
        },
        "state": {"directory": str(state), "interval": interval},
        "log": {"level": "WARNING"},
    }


def make_baseline() -> Path:
    """A baseline for the soak's fields, built with the real ``build_baseline`` (cached)."""
    path = DATA_DIR / "soak-baseline.dgb"
    if path.exists():
        return path
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    rows = np.column_stack([rng.normal(*location_scale(i), BASELINE_ROWS) for i in range(FEATURES)])
    scores = score_rows(rows)
    data = DATA_DIR / "soak-train.csv"
    with data.open("w") as handle:
        handle.write(",".join([*(f"f{i}" for i in range(FEATURES)), "class", "score"]) + "\n")
        for row, score in zip(rows, scores, strict=True):
            values = ",".join(f"{v:.5g}" for v in row)
            handle.write(f"{values},{int(score > 0.5)},{score:.5f}\n")
    config = config_from_mapping(sidecar_config(0, 0, 0, path, DATA_DIR), base=DATA_DIR)
    save_baseline(build_baseline(config, [data]), path)
    return path


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


@contextlib.contextmanager
def child(argv: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A child process (own session, output to ``log``), stopped with SIGTERM then SIGKILL."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            argv, stdout=output, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


async def wait_listening(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port}") from None
            await asyncio.sleep(0.1)
            continue
        writer.close()
        await writer.wait_closed()
        return


async def scrape(session: ClientSession, port: int) -> dict[str, dict[str, float]]:
    """name → {label text → value} of the sidecar's /metrics."""
    async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
        text = await response.text()
    samples: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()) if k != "model")
            samples.setdefault(sample.name, {})[labels] = sample.value
    return samples


# -- the load -----------------------------------------------------------------------------


def bodies(count: int, seed: int = 9) -> list[bytes]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        rows = np.column_stack([rng.normal(*location_scale(i), ROWS) for i in range(FEATURES)])
        tensor = {
            "name": "input-0",
            "shape": [ROWS, FEATURES],
            "datatype": "FP64",
            "data": rows.round(4).tolist(),
        }
        out.append(json.dumps({"inputs": [tensor]}, separators=(",", ":")).encode())
    return out


@dataclass
class Tally:
    """What the load generator saw."""

    sent: int = 0
    not_sent: int = 0  # would have exceeded --max-in-flight
    statuses: Counter[int] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    labels_posted: int = 0
    label_posts_failed: int = 0
    missing_ids: int = 0

    @property
    def answered(self) -> int:
        return self.statuses[200]

    @property
    def errors(self) -> int:
        return sum(n for code, n in self.statuses.items() if code != 200) + sum(
            self.failures.values()
        )


@dataclass
class Sample:
    at: float
    rss: int
    answered: int
    errors: int
    pending: float  # predictions held for labels (driftgauge_pending_predictions)


async def drive(
    args: argparse.Namespace, proxy: int, metrics: int, pid: int
) -> tuple[Tally, list[Sample]]:
    tally = Tally()
    samples: list[Sample] = []
    payloads = bodies(500)
    rng = random.Random(3)
    labels: deque[tuple[float, list[dict[str, str]]]] = deque()
    in_flight: set[asyncio.Task[None]] = set()
    loop = asyncio.get_running_loop()
    start = loop.time()
    end = start + args.duration

    async with ClientSession(
        connector=TCPConnector(limit=args.max_in_flight),
        timeout=ClientTimeout(total=30),
    ) as session:

        async def one(index: int) -> None:
            sent = time.perf_counter()
            try:
                async with session.post(
                    f"http://127.0.0.1:{proxy}{ROUTE}",
                    data=payloads[index % len(payloads)],
                    headers={"Content-Type": "application/json"},
                ) as response:
                    body = await response.read()
                    request_id = response.headers.get("X-Request-ID")
                    tally.statuses[response.status] += 1
            except (ClientError, TimeoutError) as exc:
                tally.failures[type(exc).__name__] += 1
                return
            tally.latencies.append(time.perf_counter() - sent)
            if response.status != 200 or rng.random() >= args.label_share:
                return
            if request_id is None:
                tally.missing_ids += 1
                return
            classes = json.loads(body)["outputs"][0]["data"]
            items = [
                {
                    "id": f"{request_id}:{row}",
                    "label": c if rng.random() >= 0.1 else str(1 - int(c)),
                }
                for row, c in enumerate(classes)
            ]
            labels.append((loop.time() + args.label_delay, items))

        async def post_labels(final: bool = False) -> None:
            batch: list[dict[str, str]] = []
            while labels and (final or labels[0][0] <= loop.time()):
                batch.extend(labels.popleft()[1])
            if not batch:
                return
            try:
                async with session.post(
                    f"http://127.0.0.1:{metrics}/feedback",
                    json=batch,
                    headers={"Authorization": f"Bearer {TOKEN}"},
                ) as response:
                    await response.read()
                    if response.status == 200:
                        tally.labels_posted += len(batch)
                    else:
                        tally.label_posts_failed += 1
            except (ClientError, TimeoutError):
                tally.label_posts_failed += 1

        async def labeller() -> None:
            while loop.time() < end:
                await asyncio.sleep(1.0)
                await post_labels()

        async def sampler() -> None:
            while True:
                try:
                    held = _total(await scrape(session, metrics), "driftgauge_pending_predictions")
                except (ClientError, TimeoutError):
                    held = math.nan
                at = loop.time() - start
                samples.append(Sample(at, rss(pid), tally.answered, tally.errors, held))
                last = samples[-1]
                print(
                    f"  {last.at:6.0f} s  RSS {last.rss / 2**20:7.1f} MiB  "
                    f"answered {last.answered:>8,}  errors {last.errors:,}  "
                    f"held {last.pending:>7,.0f}",
                    flush=True,
                )
                if loop.time() >= end:
                    return
                await asyncio.sleep(min(SAMPLE_EVERY, max(0.0, end - loop.time())))

        helpers = [asyncio.create_task(labeller()), asyncio.create_task(sampler())]
        interval = 1.0 / args.rate
        next_at = start
        index = 0
        while next_at < end:
            if len(in_flight) < args.max_in_flight:
                task = asyncio.create_task(one(index))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                tally.sent += 1
            else:
                tally.not_sent += 1
            index += 1
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - loop.time()))
        if in_flight:
            await asyncio.wait(in_flight, timeout=30)
        await asyncio.gather(*helpers)
        await post_labels(final=True)
    return tally, samples


# -- the run --------------------------------------------------------------------------------


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else math.nan


def _total(samples: dict[str, dict[str, float]], name: str) -> float:
    return sum(samples.get(name, {}).values())


def _by_label(samples: dict[str, dict[str, float]], name: str) -> str:
    values = {k: v for k, v in samples.get(name, {}).items() if v}
    return ", ".join(f"{k}: {v:,.0f}" for k, v in sorted(values.items())) or "none"


async def soak(args: argparse.Namespace, workdir: Path) -> bool:
    baseline = make_baseline()
    upstream, proxy, metrics = free_port(), free_port(), free_port()
    state = workdir / "state"
    config = workdir / "soak.yaml"
    raw = sidecar_config(proxy, metrics, upstream, baseline, state, args.state_interval)
    config.write_text(json.dumps(raw))
    python = sys.executable
    upstream_argv = [python, "-m", "bench.soak", "--upstream-port", str(upstream)]
    serve_argv = [str(Path(python).parent / "driftgauge"), "serve", "-c", str(config)]
    with (
        child(upstream_argv, workdir / "upstream.log") as model,
        child(serve_argv, workdir / "serve.log") as sidecar,
    ):
        await wait_listening(upstream, model, "the upstream")
        await wait_listening(proxy, sidecar, "driftgauge serve")
        print(
            f"soak: {args.duration:.0f} s at {args.rate:g} req/s ({ROWS} rows x {FEATURES} "
            f"features, kserve-v2), labels for {args.label_share:.0%} of requests after "
            f"{args.label_delay:g} s; snapshots every {args.state_interval}; "
            f"warm-up {args.warmup:.0f} s; sidecar pid {sidecar.pid}",
            flush=True,
        )
        tally, rss_samples = await drive(args, proxy, metrics, sidecar.pid)
        async with ClientSession(timeout=ClientTimeout(total=10)) as session:
            await asyncio.sleep(2.0)  # let the consumer take what is queued
            final = await scrape(session, metrics)
        sidecar.send_signal(signal.SIGTERM)
        exit_code = await asyncio.to_thread(sidecar.wait, 30)
    snapshot = state / "soak.state"

    # Warm-up ends at --warmup, and not before the prediction store is full: until then RSS
    # grows with it by design (bounded by max_pending), which is not what the soak looks for.
    full = next((s for s in rss_samples if s.pending >= FULL_STORE * MAX_PENDING), None)
    warm = next(
        (s for s in rss_samples if s.at >= max(args.warmup, full.at if full else 0.0)),
        rss_samples[-1],
    )
    print(
        f"prediction store full (>= {FULL_STORE:.0%} of max_pending {MAX_PENDING:,}) at "
        + (f"{full.at:.0f} s" if full else "no sample")
        + f"; warm-up ends at the later of that and --warmup {args.warmup:.0f} s"
    )
    first, last = rss_samples[0], rss_samples[-1]
    peak = max(s.rss for s in rss_samples)
    growth = (last.rss - warm.rss) / warm.rss
    elapsed = max(last.at, 1e-9)
    mib = 2**20
    print_table(
        "sidecar RSS",
        ["when", "seconds", "RSS MiB"],
        [
            ["first sample", f"{first.at:.0f}", f"{first.rss / mib:.1f}"],
            ["warm-up end", f"{warm.at:.0f}", f"{warm.rss / mib:.1f}"],
            ["end", f"{last.at:.0f}", f"{last.rss / mib:.1f}"],
            ["peak", "", f"{peak / mib:.1f}"],
        ],
    )
    print(f"RSS growth after warm-up: {growth:+.1%} ({(last.rss - warm.rss) / mib:+.1f} MiB)")
    middle = next(sample for sample in rss_samples if sample.at >= last.at / 2)
    print(
        f"RSS growth over the second half ({middle.at:.0f}-{last.at:.0f} s): "
        f"{(last.rss - middle.rss) / middle.rss:+.1%} (information: a bounded store that is "
        "still filling at the end of the warm-up shows here as flat)"
    )
    print(
        f"requests: sent {tally.sent:,} ({tally.sent / elapsed:.0f}/s), answered 200 "
        f"{tally.answered:,}, errors {tally.errors:,} "
        f"(statuses {dict(tally.statuses)}, failures {dict(tally.failures)}), "
        f"not sent (over --max-in-flight) {tally.not_sent:,}"
    )
    print(
        f"latency (client): p50 {statistics.median(tally.latencies) * 1000:.2f} ms, "
        f"p99 {_percentile(tally.latencies, 0.99) * 1000:.2f} ms, "
        f"max {max(tally.latencies) * 1000:.1f} ms"
    )
    print(
        f"sidecar: rows {_total(final, 'driftgauge_rows_total'):,.0f}; "
        f"dropped {_by_label(final, 'driftgauge_dropped_total')}; "
        f"source dropped {_by_label(final, 'driftgauge_source_dropped_total')}; "
        f"parse errors {_by_label(final, 'driftgauge_parse_errors_total')}; "
        f"source parse errors {_by_label(final, 'driftgauge_source_parse_errors_total')}; "
        f"upstream errors {_by_label(final, 'driftgauge_upstream_errors_total')}"
    )
    print(
        f"labels: posted {tally.labels_posted:,} (failed posts {tally.label_posts_failed}, "
        f"answers without an id {tally.missing_ids}); sidecar: "
        f"{_by_label(final, 'driftgauge_labels_total')}; pending predictions "
        f"{_total(final, 'driftgauge_pending_predictions'):,.0f}"
    )
    size = f"{snapshot.stat().st_size:,} bytes" if snapshot.exists() else "missing"
    print(f"SIGTERM: exit code {exit_code}; state snapshot {size}")
    healthy = tally.errors == 0 and exit_code == 0 and snapshot.exists()
    if not healthy:
        print(f"run NOT clean: see {workdir}/serve.log")
    # A warm-up that ends near the end of the run leaves nothing to measure: no verdict then.
    measured = last.at - warm.at
    enough = measured >= 0.5 * args.duration
    met = enough and growth < TARGET_GROWTH
    seen = f"{growth:+.1%} over {measured:.0f} s"
    if not enough:
        seen += f", NOT MEASURED: under half of the run ({args.duration:.0f} s) after warm-up"
    target_line(f"RSS growth < {TARGET_GROWTH:.0%} after warm-up", met, seen)
    return met and healthy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=300.0, help="seconds (default 300)")
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--warmup", type=float, default=None, help="default: 20%% of --duration")
    parser.add_argument("--label-share", type=float, default=0.3)
    parser.add_argument("--label-delay", type=float, default=5.0, help="seconds")
    parser.add_argument("--max-in-flight", type=int, default=64)
    parser.add_argument("--state-interval", default="10s", help="state snapshot interval")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument("--upstream-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.upstream_port is not None:
        run_upstream(args.upstream_port)
        return
    if args.warmup is None:
        args.warmup = 0.2 * args.duration
    workdir = Path(tempfile.mkdtemp(prefix="driftgauge-soak-"))
    try:
        ok = asyncio.run(soak(args, workdir))
    finally:
        if not args.keep:
            for path in sorted(workdir.rglob("*"), reverse=True):
                path.rmdir() if path.is_dir() else path.unlink()
            workdir.rmdir()
        else:
            print(f"work directory kept: {workdir}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
