"""Proxy overhead: throughput and latency direct, through nginx and through driftgauge.

Run from the repository root::

    .venv/bin/python -m bench.proxy               # about 3 minutes on 2 shared cores
    .venv/bin/python -m bench.proxy --profile     # + py-spy profiles and monitoring steps timed
    .venv/bin/python -m bench.proxy --uvloop      # + driftgauge on uvloop (see below)
    .venv/bin/python -m bench.proxy --quick       # 1 round of 2 s runs: a smoke run
    .venv/bin/python -m bench.proxy --reference ../main --loop uvloop  # before/after, same run
    .venv/bin/python -m bench.proxy --upstream mlserver   # in front of a real MLServer (below)
    .venv/bin/python -m bench.proxy --upstream mlserver --proxy-core 0  # MLServer on a core alone

Setup, all on 127.0.0.1 (as in the issue's reference setup):

* upstream: a small KServe v2 model server (``bench/_proxy_upstream.py``, raw
  asyncio + httptools, precomputed response for 8 rows), pinned to core 1; it
  answers 422 to any request body that differs from the one sent, and counts
  what it received;
* nginx (Debian package): a minimal reverse-proxy config (one process,
  ``upstream`` with ``keepalive 32``, HTTP/1.1 to the upstream), core 1;
* ``driftgauge serve`` with monitoring on: protocol ``kserve-v2``, 20 numeric
  features ``f0..f19`` and one numeric prediction, a baseline built here with
  ``build_baseline`` (``bench/.data/``), core 1;
* ``driftgauge serve`` with monitoring off: the same config but protocol
  ``kserve-v1``, so the v2 route never matches and no body is copied, queued
  or parsed (each request only bumps ``source_parse_errors_total{reason="unknown_path"}``);
* with ``--uvloop``: the monitoring-on sidecar again, ``serve --loop uvloop``
  (the other sidecars run ``--loop asyncio``, so the two loops are compared;
  a stock ``serve`` picks uvloop when installed).  uvloop comes from the
  ``fast`` extra, or from ``bench/.data/uvloop`` (``pip install --target
  bench/.data/uvloop uvloop``);
* load: wrk (Debian package) pinned to core 0, ``-t1``, a Lua script posting
  the 8-row v2 body; without wrk, an aiohttp load generator (much slower: it
  can become the bottleneck, and the output says so).

Two load shapes, 1 connection (latency) and ``--conns`` connections
(throughput, default 32), ``--rounds`` interleaved rounds (default 3) in which
the configurations run in rotating order, every other round reversed (a tree
and its ``--reference`` take turns running first: the first of two runs
measured 6-14 µs more CPU per request at one connection on 2026-12-04,
whichever tree it was).  Ratios are medians of the
per-round ratios.  Each run also reads the CPU time (user + system, from
``/proc``) of the proxy and the upstream: CPU per request does not depend on
what else the shared machine runs, unlike requests per second.

Targets (issue #13), driftgauge with monitoring on: ≥ 0.5× nginx's throughput;
≤ 150 µs of CPU per request (≤ 90 µs with monitoring off); added p50 latency on
one connection < 200 µs; and, from the first issue, monitoring costs < 10% of
the proxy's throughput (on vs off); no request lost or altered.

``--reference CHECKOUT`` adds the monitoring-on and -off sidecars of another
checkout (its ``src/`` first on ``PYTHONPATH``), run in the same rounds: a
before/after comparison that the shared machine's swings do not skew.

``--upstream mlserver`` puts a real model server in place of the small one:
MLServer (the ``mlserver`` extra) serving a scikit-learn ``LogisticRegression``
on the same 20 features, as one process (no parallel workers) pinned to core 1
(``bench/_mlserver_upstream.py``).  The request is the same; the response is
MLServer's (``predict``: one class per row), monitored as a categorical prediction
against a baseline of the training rows.  A request altered on the way fails
MLServer's check (HTTP 400), and MLServer's ``model_infer_request_*`` counters
take the place of the small server's ``/stats``.  The throughput shape
defaults to 16 connections there, and the throughput target is the issue's
figure in front of a real model server: ≥ 0.98× nginx.  By default the proxies
share core 1 with the upstream, so every µs of their CPU is taken from the
model server's (the worst case).  ``--proxy-core 0`` moves nginx and the
sidecars to the load generator's core and leaves core 1 to the upstream, as
in a Kubernetes pod whose model container has CPU of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from bench._common import DATA_DIR, REPO, free_port, print_table, target_line
from bench._mlserver_upstream import (
    PREDICTION,
    MLServerUpstream,
    build_mlserver_baseline,
    mlserver_available,
    serve_mlserver,
    train_model,
)
from bench._proxy_upstream import (
    FEATURES,
    REQUEST_BODY,
    ROUTE,
    ROWS,
    feature_location_scale,
)
from driftgauge.baseline import build_baseline, save_baseline
from driftgauge.config import config_from_mapping

TARGET_VS_NGINX = 0.5  # issue #13 (was 0.8)
TARGET_VS_NGINX_MLSERVER = 0.98  # in front of a real model server (--upstream mlserver)
TARGET_ADDED_P50_US = 200.0
TARGET_CPU_ON_US = 150.0  # issue #13: proxy CPU per request, monitoring on ...
TARGET_CPU_OFF_US = 90.0  # ... and off, at the throughput shape
TARGET_MONITORING_COST = 0.10
BASELINE_ROWS = 20_000
LOAD_CORE, SERVER_CORE = 0, 1
PYTHON = sys.executable
CONFIGS = (
    "direct",
    "nginx",
    "driftgauge",
    "driftgauge-off",
    "driftgauge-uvloop",
    "driftgauge-ref",
    "driftgauge-ref-off",
)
LABELS = {
    "direct": "direct",
    "nginx": "nginx",
    "driftgauge": "driftgauge (monitoring on)",
    "driftgauge-off": "driftgauge (monitoring off)",
    "driftgauge-uvloop": "driftgauge on uvloop (monitoring on)",
    "driftgauge-ref": "reference checkout (monitoring on)",
    "driftgauge-ref-off": "reference checkout (monitoring off)",
}
UVLOOP_DIR = DATA_DIR / "uvloop"  # `pip install --target` here: uvloop without touching the venv
INSTALL_HINT = "apt-get install -y nginx wrk"


# -- processes -------------------------------------------------------------


def _pinning() -> bool:
    return shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2


def pinned(core: int, argv: Sequence[str]) -> list[str]:
    """``argv`` under ``taskset -c core`` when that is possible."""
    return ["taskset", "-c", str(core), *argv] if _pinning() else list(argv)


class Processes:
    """Child processes, each in its own process group, all stopped on exit."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.children: dict[str, tuple[subprocess.Popen[bytes], Path, TextIO]] = {}

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> int:
        log_path = self.workdir / f"{name}.log"
        log = log_path.open("w")
        child = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env=env,
            start_new_session=True,
        )
        self.children[name] = (child, log_path, log)
        return child.pid

    def log_tail(self, name: str, lines: int = 15) -> str:
        _, log_path, _ = self.children[name]
        text = log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def check_alive(self, name: str) -> None:
        child, _, _ = self.children[name]
        if child.poll() is not None:
            raise RuntimeError(
                f"{name} exited with {child.returncode}; its log ends:\n{self.log_tail(name)}"
            )

    def stop(self, name: str, grace: float = 10.0) -> int | None:
        child, _, log = self.children.pop(name)
        if child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGTERM)
            try:
                child.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
                child.wait()
        log.close()
        return child.returncode

    def stop_all(self) -> None:
        for name in reversed(list(self.children)):
            self.stop(name)


def wait_for_port(processes: Processes, name: str, port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        processes.check_alive(name)
        with contextlib.suppress(OSError):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1.0)
            conn.connect()
            conn.close()
            return
        time.sleep(0.05)
    raise RuntimeError(f"{name} did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


def http_request(
    port: int, method: str, path: str, body: bytes | None = None
) -> tuple[int, bytes, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10.0)
    try:
        headers = {"content-type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read(), {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | None) -> tuple[float, float]:
    """User and system CPU seconds of a process, all its threads (``/proc/PID/stat``)."""
    if pid is None:
        return 0.0, 0.0
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rpartition(")")[2].split()
    return int(fields[11]) / _CLOCK_TICKS, int(fields[12]) / _CLOCK_TICKS


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each thread of a process, by thread id."""
    seconds = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(FileNotFoundError), open(f"/proc/{pid}/task/{tid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
            seconds[int(tid)] = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    return seconds


def cpu_by_thread(
    name: str, pid: int, load: Load, port: int, conns: int, seconds: float, upstream: int
) -> str:
    """A sidecar's CPU per request split between its Python (main) thread and the others: the
    native engine's forwarding thread, and worker threads if any."""
    before = thread_cpu(pid)
    result = load.run(port, conns, seconds, upstream)
    after = thread_cpu(pid)
    answered = max(result.requests + result.upstream_extra, 1)
    spent = {tid: cpu - before.get(tid, 0.0) for tid, cpu in after.items()}
    python = spent.pop(pid, 0.0)
    others = sorted(spent.values(), reverse=True)
    busiest = others[0] if others else 0.0
    return (
        f"  {LABELS[name]:<28} Python thread {python / answered * 1e6:4.0f} µs, "
        f"busiest other thread {busiest / answered * 1e6:4.0f} µs, "
        f"the rest {sum(others[1:]) / answered * 1e6:3.0f} µs a request "
        f"({result.rps:,.0f} req/s, {conns} connections)"
    )


def upstream_counts(port: int) -> tuple[int, int]:
    status, body, _ = http_request(port, "GET", "/stats")
    assert status == 200, status
    stats = json.loads(body)
    return int(stats["ok"]), int(stats["altered"])


# -- the pieces under test ---------------------------------------------------


def make_baseline() -> Path:
    """A baseline for f0..f19 + score, built with the real ``build_baseline``."""
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / f"proxy-baseline-{FEATURES}f.dgb"
    if path.exists():
        return path
    rng = np.random.default_rng(5)
    columns = [rng.normal(*feature_location_scale(i), BASELINE_ROWS) for i in range(FEATURES)]
    columns.append(rng.uniform(0.0, 1.0, BASELINE_ROWS))
    header = ",".join([*(f"f{i}" for i in range(FEATURES)), "score"])
    data = DATA_DIR / f"proxy-train-{FEATURES}f-{BASELINE_ROWS}.csv"
    np.savetxt(
        data, np.column_stack(columns), delimiter=",", header=header, comments="", fmt="%.6g"
    )
    config = config_from_mapping(sidecar_config("kserve-v2", 0, 0, 0, path), base=DATA_DIR)
    save_baseline(build_baseline(config, [data]), path)
    return path


def sidecar_config(
    protocol: str, listen: int, metrics: int, upstream: int, baseline: Path
) -> dict[str, Any]:
    return {
        "model": "bench",
        "protocol": protocol,
        "source": {
            "proxy": {
                "listen": f"127.0.0.1:{listen}",
                "upstream": f"http://127.0.0.1:{upstream}",
            }
        },
        "metrics": {"listen": f"127.0.0.1:{metrics}"},
        "baseline": str(baseline),
        "features": [{"name": f"f{i}", "type": "numeric"} for i in range(FEATURES)],
        "predictions": [{"name": "score", "type": "numeric"}],
        "windows": ["5m", "1h"],
    }


NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream model {{
        server 127.0.0.1:{upstream};
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://model;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""

WRK_SCRIPT = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[{body}]==]
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("DGBENCH %d %d %d %d %d %d %d %.1f %.1f\\n",
    summary.duration, summary.requests, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


# -- load --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Result:
    """One load run against one configuration."""

    rps: float
    p50_us: float
    p99_us: float
    requests: int
    errors: int  # socket errors + non-2xx/3xx responses
    upstream_extra: int  # requests the upstream answered minus those the load generator counted
    altered: int  # request bodies the upstream saw changed
    proxy_cpu_us: float  # CPU time (user + system) of the proxy process per request
    proxy_sys_us: float  # of which system (kernel: syscalls, loopback TCP)
    upstream_cpu_us: float  # CPU time of the upstream process per request


_WRK_UNITS = {"us": 1.0, "ms": 1e3, "s": 1e6}


def parse_load_output(text: str) -> tuple[float, float, float, int, int]:
    """rps, p50 µs, p99 µs, requests, errors from a load run's output."""
    match = re.search(r"^DGBENCH (.+)$", text, re.MULTILINE)
    if match:
        values = [float(v) for v in match.group(1).split()]
        duration_us, requests = values[0], int(values[1])
        errors = int(sum(values[2:7]))
        return requests / (duration_us / 1e6), values[7], values[8], requests, errors
    # wrk's own text output (--latency), for a wrk build whose Lua ``done`` hook did not run.
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    percentiles = {
        p: float(v) * _WRK_UNITS[u]
        for p, v, u in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s)\s*$", text, re.MULTILINE)
    }
    requests = int(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    errors = int(non_2xx.group(1)) if non_2xx else 0
    errors += sum(int(v) for v in sockets.groups()) if sockets else 0
    return rps, percentiles["50"], percentiles["99"], requests, errors


class Load:
    """wrk when installed, else the aiohttp load generator in this file; pinned to core 0."""

    def __init__(self, workdir: Path, use_wrk: bool) -> None:
        self.wrk = shutil.which("wrk") if use_wrk else None
        self.script = workdir / "post.lua"
        self.script.write_text(WRK_SCRIPT.format(body=REQUEST_BODY.decode()))
        self.name = "wrk" if self.wrk else "aiohttp load generator"
        # What the upstream answered and refused, read before and after each run.
        self.counts: Callable[[int], tuple[int, int]] = upstream_counts

    def argv(self, port: int, conns: int, seconds: float) -> list[str]:
        url = f"http://127.0.0.1:{port}{ROUTE}"
        if self.wrk:
            duration = f"{max(1, round(seconds))}s"
            return pinned(
                LOAD_CORE,
                [
                    self.wrk,
                    "-t1",
                    f"-c{conns}",
                    f"-d{duration}",
                    "--latency",
                    "-s",
                    str(self.script),
                    url,
                ],
            )
        return pinned(
            LOAD_CORE,
            [PYTHON, "-m", "bench.proxy", "--loadgen", url, str(conns), str(seconds)],
        )

    def run(
        self,
        port: int,
        conns: int,
        seconds: float,
        upstream: int,
        proxy_pid: int | None = None,
        upstream_pid: int | None = None,
    ) -> Result:
        ok_before, altered_before = self.counts(upstream)
        cpu_before = cpu_seconds(proxy_pid), cpu_seconds(upstream_pid)
        done = subprocess.run(
            self.argv(port, conns, seconds),
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=seconds + 60,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{self.name} failed ({done.returncode}): {done.stderr.strip()}")
        rps, p50, p99, requests, errors = parse_load_output(done.stdout)
        time.sleep(0.05)  # let the last in-flight answers land before reading the counts
        cpu_after = cpu_seconds(proxy_pid), cpu_seconds(upstream_pid)
        ok_after, altered_after = self.counts(upstream)
        answered = max(ok_after - ok_before, 1)
        return Result(
            rps=rps,
            p50_us=p50,
            p99_us=p99,
            requests=requests,
            errors=errors,
            upstream_extra=ok_after - ok_before - requests,
            altered=altered_after - altered_before,
            proxy_cpu_us=(sum(cpu_after[0]) - sum(cpu_before[0])) / answered * 1e6,
            proxy_sys_us=(cpu_after[0][1] - cpu_before[0][1]) / answered * 1e6,
            upstream_cpu_us=(sum(cpu_after[1]) - sum(cpu_before[1])) / answered * 1e6,
        )


async def _aiohttp_load(url: str, conns: int, seconds: float) -> str:
    from aiohttp import ClientError, ClientSession, TCPConnector

    latencies: list[float] = []
    errors = collections.Counter[str]()
    headers = {"content-type": "application/json"}
    async with ClientSession(connector=TCPConnector(limit=conns)) as session:
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    async with session.post(url, data=REQUEST_BODY, headers=headers) as response:
                        await response.read()
                        if response.status >= 400:
                            errors["status"] += 1
                except (ClientError, OSError):
                    errors["read"] += 1
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conns)))
        elapsed = time.perf_counter() - started
    array = np.array(latencies) * 1e6
    p50, p99 = (float(np.percentile(array, q)) for q in (50, 99))
    return (
        f"DGBENCH {elapsed * 1e6:.0f} {len(latencies)} 0 {errors['read']} 0 "
        f"{errors['status']} 0 {p50:.1f} {p99:.1f}"
    )


# -- profile -------------------------------------------------------------------


def _frame_name(frame: str) -> str:
    """``name (path/to/file.py:12)`` → ``name (file.py:12)``."""
    match = re.match(r"^(.*) \((.*?)(:\d+)?\)$", frame)
    if not match:
        return frame
    name, path, line = match.groups()
    return f"{name} ({Path(path).name}{line or ''})"


_SELECTED_FRAMES = (
    "EpollSelector.select",
    "_SelectorSocketTransport._read_ready__data_received",
    "ClientProtocol.data_received",
    "UpstreamProtocol.data_received",
    "ClientProtocol.on_headers_complete",
    "Cycle.response_headers_complete",
    "Cycle.finish_response",
    "_SelectorSocketTransport.write",
    "BaseEventLoop.call_later",
    "TimerHandle.cancel",
    "ProxyMetrics.request_done",
    "RecordQueue.put",
    "consume",
    "Batcher.extract",
    "Monitor.ingest",
)


def summarize_folded(path: Path, top: int) -> list[str]:
    """Own and inclusive shares of the main thread's samples in py-spy's folded output."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    stacks: list[tuple[list[str], int]] = []
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = stack.split(";")
        if not frames[0].startswith("thread ("):
            continue  # a stack py-spy split over two lines (rare): leave it out
        threads[frames[0]] += int(count_text)
        stacks.append((frames, int(count_text)))
    if not stacks:
        return ["(no samples)"]
    main_thread = threads.most_common(1)[0][0]
    total = 0
    for frames, count in stacks:
        if frames[0] != main_thread:
            continue
        total += count
        names = [_frame_name(f) for f in frames[1:]]
        if names:
            own[names[-1]] += count
        for name in set(names):
            inclusive[name] += count
    others = ", ".join(f"{t}: {n}" for t, n in threads.items() if t != main_thread) or "none"
    lines = [
        f"  main thread: {total} samples (other threads: {others})",
        f"  {'own':>6} {'incl':>6}  function (top {top} by own time, share of main-thread samples)",
    ]
    for name, count in own.most_common(top):
        lines.append(f"  {count / total:6.1%} {inclusive[name] / total:6.1%}  {name}")
    lines.append("  inclusive share of selected frames:")
    for key in _SELECTED_FRAMES:
        for name, count in sorted(inclusive.items(), key=lambda item: -item[1]):
            if name.startswith(key + " "):
                lines.append(f"  {count / total:13.1%}  {name}")
    return lines


def profile_sidecar(
    name: str,
    pid: int,
    load: Load,
    port: int,
    conns: int,
    seconds: float,
    upstream: int,
    upstream_pid: int,
) -> list[str]:
    """py-spy on a running sidecar during a throughput run; top frames by own time."""
    py_spy = shutil.which("py-spy") or str(Path(PYTHON).parent / "py-spy")
    if not Path(py_spy).exists():
        return [f"py-spy not found: install it with `{PYTHON} -m pip install py-spy`"]
    folded = DATA_DIR / f"proxy-profile-{name}.folded"
    folded.unlink(missing_ok=True)
    argv = pinned(
        LOAD_CORE,
        [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(round(seconds) + 1),
            "--rate",
            "200",
            "--nonblocking",
            "--function",
            "--threads",
            "--format",
            "raw",
            "--output",
            str(folded),
        ],
    )
    spy = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        time.sleep(0.5)
        result = load.run(port, conns, seconds, upstream, pid, upstream_pid)
        out, _ = spy.communicate(timeout=seconds + 30)
    finally:
        if spy.poll() is None:
            spy.kill()
            spy.wait()
    if spy.returncode != 0 or not folded.exists():
        return [f"py-spy failed ({spy.returncode}): {out.decode(errors='replace').strip()}"]
    lines = [
        f"{LABELS[name]}, {conns} connections, sampled by py-spy --nonblocking at 200 Hz: "
        f"{result.rps:,.0f} req/s, {result.proxy_cpu_us:.0f} µs CPU per request; "
        f"folded stacks in {folded.relative_to(REPO)} (speedscope or flamegraph.pl read them)"
    ]
    return lines + summarize_folded(folded, 20)


def syscalls_per_request(
    name: str, pid: int, load: Load, port: int, conns: int, seconds: float, upstream: int
) -> str:
    """System calls per request of one proxy process (and its threads), from ``strace -c``."""
    strace = shutil.which("strace")
    if strace is None:
        return f"{LABELS[name]}: strace not found (`apt-get install -y strace`)"
    out = DATA_DIR / f"proxy-strace-{name}.txt"
    tracer = subprocess.Popen(
        pinned(LOAD_CORE, [strace, "-c", "-f", "-p", str(pid), "-o", str(out)]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.0)
        result = load.run(port, conns, seconds, upstream)
    finally:
        tracer.send_signal(signal.SIGINT)
        try:
            tracer.wait(15)
        except subprocess.TimeoutExpired:
            tracer.kill()
            tracer.wait()
    calls: dict[str, int] = {}
    for line in out.read_text().splitlines() if out.exists() else ():
        match = re.match(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", line)
        if match and match.group(2) != "total":
            calls[match.group(2)] = int(match.group(1))
    answered = max(result.requests + result.upstream_extra, 1)
    top = sorted(calls.items(), key=lambda item: -item[1])[:7]
    shown = ", ".join(f"{count / answered:.2f} {call}" for call, count in top)
    return (
        f"  {LABELS[name]:<28} {sum(calls.values()) / answered:5.2f} per request: {shown} "
        f"({answered:,} requests, {conns} connections, under strace)"
    )


def monitoring_breakdown(config_path: Path) -> list[str]:
    """CPU microseconds per request of each monitoring step, timed in this process."""
    from bench._proxy_upstream import RESPONSE_BODY
    from driftgauge.baseline import load_baseline
    from driftgauge.config import load_config
    from driftgauge.monitor import Monitor
    from driftgauge.monitor.batch import Batcher, decode_json
    from driftgauge.protocols import make_adapter
    from driftgauge.typing import Record

    config = load_config(config_path)
    monitor = Monitor(config, load_baseline(config.baseline))
    adapter = make_adapter(config.protocol, config.features, config.predictions)
    batcher = Batcher(adapter, monitor)
    record = Record(ts=time.time(), request=REQUEST_BODY, response=RESPONSE_BODY, path=ROUTE)
    request, response = decode_json(REQUEST_BODY), decode_json(RESPONSE_BODY)
    extracted = adapter.extract(request, response)

    steps: list[tuple[str, Callable[[], object], int]] = [
        (
            "orjson decode of both bodies",
            lambda: (decode_json(REQUEST_BODY), decode_json(RESPONSE_BODY)),
            1,
        ),
        (
            "adapter.extract (KServe v2 → 21 columns)",
            lambda: adapter.extract(request, response),
            1,
        ),
    ]
    for size in (16, 64, 256):
        pieces = [extracted] * size
        steps.append(
            (f"Monitor.ingest, batch of {size} requests", partial(monitor.ingest, pieces), size)
        )
    for size in (16, 64, 256):
        records = [record] * size
        steps.append(
            (
                f"Batcher.ingest (all of it), batch of {size}",
                partial(batcher.ingest, records),
                size,
            )
        )
    # CPU time of this thread (not wall time: the shared machine preempts), rounds interleaved.
    repeats = []
    for _, fn, _ in steps:
        started = time.thread_time()
        fn()
        repeats.append(max(1, int(0.05 / max(time.thread_time() - started, 1e-6))))
    samples: list[list[float]] = [[] for _ in steps]
    for _ in range(5):
        for index, ((_, fn, size), repeat) in enumerate(zip(steps, repeats, strict=True)):
            started = time.thread_time()
            for _ in range(repeat):
                fn()
            samples[index].append((time.thread_time() - started) / (repeat * size) * 1e6)
    lines = [
        f"  {statistics.median(times):8.1f} µs CPU per request  {name}"
        for (name, _, _), times in zip(steps, samples, strict=True)
    ]
    import cProfile
    import io
    import pstats

    records = [record] * 64
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(20):
        batcher.ingest(records)
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(14)
    lines.append("  cProfile of Batcher.ingest, 20 batches of 64 requests, by own time:")
    table = text.getvalue().splitlines()
    header = next(i for i, line in enumerate(table) if line.strip().startswith("ncalls"))
    prefix = str(REPO / "src") + "/"
    lines += [f"    {line.strip().replace(prefix, '')}" for line in table[header:] if line.strip()]
    return lines


# -- metrics -------------------------------------------------------------------


def scrape(port: int) -> dict[str, dict[str, float]]:
    """Samples of /metrics: name → {label text → value}."""
    status, body, _ = http_request(port, "GET", "/metrics")
    assert status == 200, status
    samples: dict[str, dict[str, float]] = collections.defaultdict(dict)
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()) if k != "model")
            samples[sample.name][labels] = sample.value
    return samples


def settled_metrics(port: int, timeout: float = 10.0) -> dict[str, dict[str, float]]:
    """Scrape once the monitoring queue is empty and the row count stopped moving."""
    deadline = time.monotonic() + timeout
    previous = -1.0
    while True:
        samples = scrape(port)
        rows = sum(samples.get("driftgauge_rows_total", {}).values())
        depth = sum(samples.get("driftgauge_queue_depth", {}).values())
        if (depth == 0 and rows == previous) or time.monotonic() > deadline:
            return samples
        previous = rows
        time.sleep(0.3)


# -- report --------------------------------------------------------------------


def _median(values: Sequence[float]) -> float:
    return statistics.median(values)


@dataclass(slots=True)
class Runs:
    """Every result by load shape (connections) and configuration, in round order."""

    by_shape: dict[int, dict[str, list[Result]]]

    def configs(self) -> list[str]:
        first = next(iter(self.by_shape.values()))
        return [c for c in first if first[c]]

    def ratio(self, shape: int, subject: str, reference: str) -> float:
        """Median of the per-round throughput ratios."""
        pairs = zip(self.by_shape[shape][subject], self.by_shape[shape][reference], strict=True)
        return _median([s.rps / r.rps for s, r in pairs])

    def added(self, shape: int, config: str, field: str) -> float:
        """Median of the per-round differences to direct."""
        pairs = zip(self.by_shape[shape][config], self.by_shape[shape]["direct"], strict=True)
        return _median([getattr(s, field) - getattr(d, field) for s, d in pairs])

    def median(self, shape: int, config: str, field: str) -> float:
        return _median([getattr(r, field) for r in self.by_shape[shape][config]])


def report(
    runs: Runs,
    conns: int,
    checks: list[str],
    lossless: bool,
    monitored: bool,
    target_vs_nginx: float = TARGET_VS_NGINX,
) -> None:
    configs = runs.configs()
    shapes = sorted(runs.by_shape)
    rounds = len(runs.by_shape[shapes[0]]["direct"])
    rows = []
    for shape in shapes:
        for config in configs:
            direct = config == "direct"
            rows.append(
                [
                    LABELS[config],
                    shape,
                    f"{runs.median(shape, config, 'rps'):,.0f}",
                    f"{runs.median(shape, config, 'p50_us'):.0f}",
                    f"{runs.median(shape, config, 'p99_us'):.0f}",
                    "" if direct else f"{runs.added(shape, config, 'p50_us'):+.0f}",
                    "" if direct else f"{runs.added(shape, config, 'p99_us'):+.0f}",
                    "1.00" if direct else f"{runs.ratio(shape, config, 'direct'):.2f}",
                    "" if direct else f"{runs.median(shape, config, 'proxy_cpu_us'):.0f}",
                    "" if direct else f"{runs.median(shape, config, 'proxy_sys_us'):.0f}",
                    f"{runs.median(shape, config, 'upstream_cpu_us'):.0f}",
                ]
            )
    print_table(
        f"Medians of {rounds} rounds (latency in µs; added and × direct: median over rounds of "
        "the same-round difference or ratio to direct; CPU: user+system µs per request, and the system part)",
        [
            "config",
            "conns",
            "req/s",
            "p50",
            "p99",
            "added p50",
            "added p99",
            "× direct",
            "proxy CPU",
            "of it sys",
            "upstream CPU",
        ],
        rows,
    )
    has_nginx = "nginx" in configs
    uvloop = "driftgauge-uvloop" in configs
    ratio_rows = []
    for shape in shapes:
        ratio_rows.append(
            [
                shape,
                f"{runs.ratio(shape, 'driftgauge', 'nginx'):.2f}" if has_nginx else "n/a",
                f"{runs.ratio(shape, 'driftgauge-off', 'nginx'):.2f}" if has_nginx else "n/a",
                f"{runs.ratio(shape, 'nginx', 'direct'):.2f}" if has_nginx else "n/a",
                f"{runs.ratio(shape, 'driftgauge', 'direct'):.2f}",
                f"{1 - runs.ratio(shape, 'driftgauge', 'driftgauge-off'):.1%}",
                f"{runs.median(shape, 'driftgauge', 'proxy_cpu_us') / runs.median(shape, 'driftgauge-off', 'proxy_cpu_us') - 1:+.0%}",
                *(
                    [f"{runs.ratio(shape, 'driftgauge-uvloop', 'nginx'):.2f}"]
                    if uvloop and has_nginx
                    else []
                ),
            ]
        )
    print_table(
        "Throughput ratios (median of per-round ratios); monitoring cost = 1 − on/off "
        "throughput, and the extra proxy CPU per request it takes",
        [
            "conns",
            "dg/nginx",
            "dg-off/nginx",
            "nginx/direct",
            "dg/direct",
            "monitoring cost",
            "monitoring CPU",
            *(["dg-uvloop/nginx"] if uvloop and has_nginx else []),
        ],
        ratio_rows,
    )
    print()
    for line in checks:
        print(line)
    print()
    if has_nginx:
        vs_nginx = runs.ratio(conns, "driftgauge", "nginx")
        target_line(
            f"driftgauge ≥ {target_vs_nginx}× nginx throughput ({conns} connections)",
            vs_nginx >= target_vs_nginx,
            f"{vs_nginx:.2f}×",
        )
    else:
        print(f"target driftgauge ≥ {target_vs_nginx}× nginx throughput: NOT MEASURED (no nginx)")
    added_p50 = runs.added(1, "driftgauge", "p50_us")
    target_line(
        f"added p50 latency on one connection < {TARGET_ADDED_P50_US:.0f} µs",
        added_p50 < TARGET_ADDED_P50_US,
        f"{added_p50:+.0f} µs; nginx adds {runs.added(1, 'nginx', 'p50_us'):+.0f} µs"
        if has_nginx
        else f"{added_p50:+.0f} µs",
    )
    cost = 1 - runs.ratio(conns, "driftgauge", "driftgauge-off")
    target_line(
        f"monitoring costs < {TARGET_MONITORING_COST:.0%} of the proxy's throughput",
        cost < TARGET_MONITORING_COST,
        f"{cost:.1%} at {conns} connections",
    )
    for config, limit in (("driftgauge", TARGET_CPU_ON_US), ("driftgauge-off", TARGET_CPU_OFF_US)):
        cpu = runs.median(conns, config, "proxy_cpu_us")
        target_line(
            f"{LABELS[config]}: ≤ {limit:.0f} µs CPU per request ({conns} connections)",
            cpu <= limit,
            f"{cpu:.0f} µs; nginx {runs.median(conns, 'nginx', 'proxy_cpu_us'):.0f} µs"
            if has_nginx
            else f"{cpu:.0f} µs",
        )
    target_line("no request lost or altered", lossless, "see the checks above")
    target_line(
        "every answered request monitored (rows = 8 × requests, none dropped)",
        monitored,
        "see the checks above",
    )
    if "driftgauge-ref" in configs and has_nginx:
        print(
            f"(reference checkout, same run: monitoring on "
            f"{runs.median(conns, 'driftgauge-ref', 'proxy_cpu_us'):.0f} µs CPU per request and "
            f"{runs.ratio(conns, 'driftgauge-ref', 'nginx'):.2f}× nginx at {conns} connections, "
            f"off {runs.median(conns, 'driftgauge-ref-off', 'proxy_cpu_us'):.0f} µs; added p50 on "
            f"one connection {runs.added(1, 'driftgauge-ref', 'p50_us'):+.0f} µs)"
        )
    if uvloop and has_nginx:
        print(
            f"(not a target: driftgauge on uvloop, monitoring on: "
            f"{runs.ratio(conns, 'driftgauge-uvloop', 'nginx'):.2f}× nginx at {conns} connections, "
            f"added p50 on one connection {runs.added(1, 'driftgauge-uvloop', 'p50_us'):+.0f} µs)"
        )


def report_cpu_bound(runs: Runs) -> None:
    """Throughput ratios to nginx predicted from CPU per request, as if core 1 ran only the bench.

    In front of a model server that saturates core 1, throughput follows
    1 / (upstream CPU + proxy CPU) per request.  CPU per request moves far
    less with the neighbours' load than requests per second do, so this is
    the steadier figure on a shared machine.  The upstream's CPU is the
    median over all runs of the shape, so the proxies are compared against
    one and the same model server.
    """
    rows = []
    for shape in sorted(runs.by_shape):
        by_config = runs.by_shape[shape]
        upstream = _median([r.upstream_cpu_us for rs in by_config.values() for r in rs])
        nginx = runs.median(shape, "nginx", "proxy_cpu_us")
        row: list[object] = [shape, f"{upstream:.0f}", f"{nginx:.0f}"]
        for name in ("driftgauge", "driftgauge-off"):
            proxy = runs.median(shape, name, "proxy_cpu_us")
            row += [f"{proxy:.0f}", f"{(upstream + nginx) / (upstream + proxy):.2f}"]
        rows.append(row)
    print_table(
        "CPU-bound estimate: (upstream CPU + nginx CPU) / (upstream CPU + driftgauge CPU), "
        "µs per request (medians)",
        ["conns", "upstream", "nginx", "dg", "est. dg/nginx", "dg-off", "est. dg-off/nginx"],
        rows,
    )


# -- main ------------------------------------------------------------------------


def tool_check(use_wrk: bool) -> tuple[bool, bool]:
    has_nginx = shutil.which("nginx") is not None
    has_wrk = shutil.which("wrk") is not None
    if not has_nginx or not has_wrk:
        missing = " and ".join(n for n, ok in (("nginx", has_nginx), ("wrk", has_wrk)) if not ok)
        print(f"note: {missing} not found; install with `{INSTALL_HINT}`", file=sys.stderr)
    if not has_nginx:
        print("note: running without the nginx reference", file=sys.stderr)
    if not has_wrk and use_wrk:
        print("note: using the aiohttp load generator (it may be the bottleneck)", file=sys.stderr)
    if not _pinning():
        print("note: taskset missing or < 2 cores: processes are not pinned", file=sys.stderr)
    return has_nginx, has_wrk and use_wrk


def uvloop_env() -> dict[str, str] | None:
    """The environment in which the venv's Python imports uvloop, or None."""
    env = dict(os.environ)
    if UVLOOP_DIR.is_dir():
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(UVLOOP_DIR), env.get("PYTHONPATH")]))
    probe = subprocess.run(
        [PYTHON, "-c", "import uvloop"], env=env, capture_output=True, check=False
    )
    return env if probe.returncode == 0 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument(
        "--conns",
        type=int,
        help="connections of the throughput shape (default 32; 16 with --upstream mlserver)",
    )
    parser.add_argument(
        "--upstream",
        choices=UPSTREAMS,
        default="stub",
        help="stub: the small precomputed-answer server (default); "
        "mlserver: a real MLServer with a scikit-learn model (the `mlserver` extra)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the sidecars under load, time monitoring steps",
    )
    parser.add_argument(
        "--uvloop",
        action="store_true",
        help="add driftgauge on uvloop (the others run asyncio's loop)",
    )
    parser.add_argument("--no-wrk", action="store_true", help="use the aiohttp load generator")
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop", "auto"),
        default="asyncio",
        help="serve --loop of the driftgauge sidecars (default asyncio; --uvloop adds uvloop)",
    )
    parser.add_argument(
        "--reference",
        type=Path,
        metavar="CHECKOUT",
        help="also run the sidecars from another checkout's src/ (say, main), side by side",
    )
    parser.add_argument(
        "--proxy-core",
        type=int,
        choices=(LOAD_CORE, SERVER_CORE),
        default=SERVER_CORE,
        help=f"the core of nginx and the sidecars (default {SERVER_CORE}: the upstream's; "
        f"{LOAD_CORE}: the load generator's, so the upstream has a core of its own, as a model "
        "container with its own CPU beside its sidecar in a Kubernetes pod)",
    )
    parser.add_argument(
        "--engine",
        choices=("python", "native"),
        default="python",
        help="source.proxy.engine of this checkout's sidecars (default python; the reference "
        "checkout's keep their own default)",
    )
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s runs")
    parser.add_argument(
        "--loadgen", nargs=3, metavar=("URL", "CONNS", "SECONDS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.loadgen:
        url, conns, seconds = args.loadgen
        print(asyncio.run(_aiohttp_load(url, int(conns), float(seconds))))
        return
    if args.quick:
        args.rounds, args.duration = 1, 2.0
    if args.conns is None:
        args.conns = 16 if args.upstream == "mlserver" else 32
    if args.upstream == "mlserver" and not mlserver_available():
        sys.exit(f"--upstream mlserver needs MLServer: `{PYTHON} -m pip install -e '.[mlserver]'`")
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))  # run finally:
    has_nginx, use_wrk = tool_check(not args.no_wrk)
    uvloop = uvloop_env() if args.uvloop else None
    if args.uvloop and uvloop is None:
        print(
            f"note: uvloop is not importable; skipping that configuration (install it apart from "
            f"the venv: `{PYTHON} -m pip install --target {UVLOOP_DIR.relative_to(REPO)} uvloop`)",
            file=sys.stderr,
        )
    if _pinning():
        os.sched_setaffinity(0, {LOAD_CORE})  # this process mostly waits; keep it off core 1
    with workspace() as tmp, model_server(args.upstream) as (baseline, mlserver):
        processes = Processes(tmp)
        try:
            run(args, tmp, processes, baseline, has_nginx, use_wrk, uvloop, mlserver)
        finally:
            processes.stop_all()


UPSTREAMS = ("stub", "mlserver")
MLSERVER_DESCRIPTION = (
    "MLServer, scikit-learn LogisticRegression (3 classes), one process (parallel workers 0)"
)


@contextlib.contextmanager
def model_server(kind: str) -> Iterator[tuple[Path, MLServerUpstream | None]]:
    """The sidecars' baseline, and MLServer running (pinned to core 1) if ``kind`` asks for it.

    The small upstream is started by :func:`run` with the other processes.
    """
    if kind != "mlserver":
        yield make_baseline(), None
        return
    print("training the model and starting MLServer (about 30 s on 2 shared cores)")
    model, rows, predictions = train_model()
    baseline = build_mlserver_baseline(
        rows,
        predictions,
        lambda: {
            **sidecar_config("kserve-v2", 0, 0, 0, DATA_DIR / "unused.dgb"),
            "predictions": [PREDICTION],
        },
    )
    with serve_mlserver(model, wrap=pinned(SERVER_CORE, [])) as mlserver:
        yield baseline, mlserver


@contextlib.contextmanager
def workspace() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="driftgauge-bench-proxy-") as tmp:
        yield Path(tmp)


def run(
    args: argparse.Namespace,
    tmp: Path,
    processes: Processes,
    baseline: Path,
    has_nginx: bool,
    use_wrk: bool,
    uvloop: dict[str, str] | None,
    mlserver: MLServerUpstream | None = None,
) -> None:
    configs = [
        c
        for c in CONFIGS
        if (c != "nginx" or has_nginx)
        and (c != "driftgauge-uvloop" or uvloop is not None)
        and (not c.startswith("driftgauge-ref") or args.reference is not None)
    ]
    ports = {c: free_port() for c in configs}
    if mlserver is not None:
        upstream = ports["direct"] = mlserver.port
        upstream_pid = mlserver.pid
    else:
        upstream = ports["direct"]
        upstream_pid = processes.start(
            "upstream",
            pinned(SERVER_CORE, [PYTHON, "-m", "bench._proxy_upstream", "--port", str(upstream)]),
        )
        wait_for_port(processes, "upstream", upstream)
    pids: dict[str, int] = {}
    if has_nginx:
        conf = tmp / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=tmp, upstream=upstream, port=ports["nginx"]))
        nginx = shutil.which("nginx") or "nginx"
        argv = [nginx, "-c", str(conf), "-p", str(tmp), "-e", str(tmp / "nginx-error.log")]
        pids["nginx"] = processes.start("nginx", pinned(args.proxy_core, argv))
        wait_for_port(processes, "nginx", ports["nginx"])
    sidecars = [c for c in configs if c.startswith("driftgauge")]
    metrics = {name: free_port() for name in sidecars}
    config_paths: dict[str, Path] = {}
    for name in sidecars:
        protocol = "kserve-v1" if name.endswith("-off") else "kserve-v2"
        path = config_paths[name] = tmp / f"{name}.yaml"
        raw = sidecar_config(protocol, ports[name], metrics[name], upstream, baseline)
        if not name.startswith("driftgauge-ref"):
            raw["source"]["proxy"]["engine"] = args.engine
        if mlserver is not None:
            raw["predictions"] = [PREDICTION]
        path.write_text(json.dumps(raw, indent=2))  # JSON is YAML
        loop = "uvloop" if name == "driftgauge-uvloop" else args.loop
        driftgauge = str(Path(PYTHON).parent / "driftgauge")
        argv = [driftgauge, "--log-level", "WARNING", "serve", "-c", str(path), "--loop", loop]
        env = uvloop if name == "driftgauge-uvloop" else None
        if name.startswith("driftgauge-ref"):  # the other checkout's code, first on the path
            source = str(args.reference.resolve() / "src")
            inherited = os.environ.get("PYTHONPATH")
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [source, inherited])))
        pids[name] = processes.start(name, pinned(args.proxy_core, argv), env=env)
    for name in sidecars:
        wait_for_port(processes, name, ports[name])
        wait_for_port(processes, name, metrics[name])
    load = Load(tmp, use_wrk)
    if mlserver is not None:
        load.counts = lambda _port: mlserver.counts()
    if not _pinning():
        print(f"load, upstream, nginx and driftgauge unpinned; {os.cpu_count()} cores (shared)")
    elif args.proxy_core == SERVER_CORE:
        print(
            f"load: {load.name} pinned to core {LOAD_CORE}; upstream, nginx and driftgauge "
            f"pinned to core {SERVER_CORE}; {os.cpu_count()} cores (shared)"
        )
    else:
        print(
            f"load: {load.name}, nginx and driftgauge pinned to core {LOAD_CORE}; upstream "
            f"pinned to core {SERVER_CORE}; {os.cpu_count()} cores (shared)"
        )
    print(
        f"sidecars: serve --loop {args.loop}, engine {args.engine}"
        + (f"; reference checkout {args.reference}" if args.reference is not None else "")
    )
    print(
        f"upstream: {MLSERVER_DESCRIPTION if mlserver else 'bench/_proxy_upstream.py'}; "
        f"body: KServe v2, {ROWS} rows × {FEATURES} FP64 features, {len(REQUEST_BODY)} bytes; "
        f"{args.rounds} rounds × {args.duration:g} s per run; shapes: 1 and {args.conns} connections"
    )

    if not load.wrk:
        print(
            "note: the aiohttp load generator saturates long before nginx or the upstream do, "
            "so throughput ratios are squeezed toward 1; use wrk for real numbers"
        )
    checks: list[str] = []
    lossless = True
    status, direct_body, direct_headers = http_request(upstream, "POST", ROUTE, REQUEST_BODY)
    assert status == 200, status
    for config in configs[1:]:
        status, body, headers = http_request(ports[config], "POST", ROUTE, REQUEST_BODY)
        same = (
            status == 200
            and body == direct_body
            and headers.get("content-type") == direct_headers["content-type"]
        )
        lossless &= same
        checks.append(
            f"check: response through {LABELS[config]} identical to direct (status, "
            f"content-type, body bytes): {'yes' if same else f'NO (status {status})'}"
        )
    for config in configs:  # warm-up
        load.run(ports[config], args.conns, 1.0, upstream)

    shapes = [1, args.conns]
    runs = Runs({s: {c: [] for c in configs} for s in shapes})
    for round_index in range(args.rounds):
        turn = round_index % len(configs)
        order = configs[turn:] + configs[:turn]
        if round_index % 2:  # reversed: no configuration always runs just before another
            order.reverse()
        table = []
        for shape in shapes:
            for config in order:
                result = load.run(
                    ports[config], shape, args.duration, upstream, pids.get(config), upstream_pid
                )
                runs.by_shape[shape][config].append(result)
                table.append(
                    [
                        LABELS[config],
                        shape,
                        f"{result.rps:,.0f}",
                        f"{result.p50_us:.0f}",
                        f"{result.p99_us:.0f}",
                        f"{result.proxy_cpu_us:.0f}" if config != "direct" else "",
                        f"{result.proxy_sys_us:.0f}" if config != "direct" else "",
                        f"{result.upstream_cpu_us:.0f}",
                        result.requests,
                        result.errors,
                        result.altered,
                        result.upstream_extra,
                    ]
                )
                if result.errors or result.altered or not 0 <= result.upstream_extra <= shape:
                    lossless = False
        print_table(
            f"Round {round_index + 1} of {args.rounds} (order: {', '.join(order)}; latency in "
            "µs; CPU: user+system µs per request, and the system part)",
            [
                "config",
                "conns",
                "req/s",
                "p50",
                "p99",
                "proxy CPU",
                "of it sys",
                "upstream CPU",
                "requests",
                "errors",
                "altered",
                "upstream−counted",
            ],
            table,
        )
    results = [r for by_config in runs.by_shape.values() for rs in by_config.values() for r in rs]
    extras = [r.upstream_extra for r in results]
    checks.append(
        f"check: load runs: {sum(r.requests for r in results):,} responses counted, "
        f"{sum(r.errors for r in results)} socket errors or non-2xx, "
        f"{sum(r.altered for r in results)} request bodies altered (the upstream compares every "
        f"byte), upstream answered − load counted per run in [{min(extras)}, {max(extras)}] "
        "(≥ 0 and ≤ connections: only requests in flight when the load stopped)"
    )
    monitored = True
    for name in sidecars:
        processes.check_alive(name)
        samples = settled_metrics(metrics[name])
        by_code = samples["driftgauge_requests_total"]
        answered = by_code.get("code=200", 0.0)
        rows_seen = sum(samples.get("driftgauge_rows_total", {}).values())
        dropped = sum(
            sum(samples.get(family, {}).values())
            for family in ("driftgauge_dropped_total", "driftgauge_source_dropped_total")
        )
        errors = {k: int(v) for k, v in samples.get("driftgauge_parse_errors_total", {}).items()}
        source = samples.get("driftgauge_source_parse_errors_total", {})
        errors |= {f"source {k}": int(v) for k, v in source.items()}
        codes = ", ".join(f"{k}: {v:,.0f}" for k, v in by_code.items())
        if name.endswith("-off"):
            checks.append(
                f"check: {LABELS[name]}: {answered:,.0f} requests answered ({codes}); "
                f"driftgauge_rows_total {rows_seen:,.0f}; parse errors {errors} "
                "(unknown_path: monitoring skipped each request)"
            )
            continue
        ok = rows_seen == answered * ROWS and dropped == 0
        monitored &= ok
        checks.append(
            f"check: {LABELS[name]}: {answered:,.0f} requests answered ({codes}); "
            f"driftgauge_rows_total {rows_seen:,.0f} = {rows_seen / max(answered, 1):.3f} × "
            f"requests (expected {ROWS}); dropped (model's and source's) {dropped:,.0f}; "
            f"parse errors {errors or 0}"
        )
    report(
        runs,
        args.conns,
        checks,
        lossless,
        monitored,
        TARGET_VS_NGINX_MLSERVER if mlserver else TARGET_VS_NGINX,
    )
    if mlserver is not None and "nginx" in configs and args.proxy_core == SERVER_CORE:
        report_cpu_bound(runs)  # its estimate holds where the proxies share the upstream's core
    if args.profile:
        print("\nProfile (py-spy from core 0; shares are of the sidecar's main-thread samples)")
        for name in ("driftgauge", "driftgauge-off"):
            for line in profile_sidecar(
                name,
                pids[name],
                load,
                ports[name],
                args.conns,
                args.duration,
                upstream,
                upstream_pid,
            ):
                print(line)
        print("\nCPU by thread (/proc/PID/task; the native engine forwards in a thread of its own)")
        for name in [c for c in configs if c.startswith("driftgauge")]:
            print(
                cpu_by_thread(
                    name, pids[name], load, ports[name], args.conns, args.duration, upstream
                )
            )
        print("\nSystem calls per request (strace -c -f on the proxy process, 3 s runs)")
        for name in [c for c in configs if c in ("nginx", "driftgauge-off", "driftgauge")]:
            print(
                syscalls_per_request(name, pids[name], load, ports[name], args.conns, 3.0, upstream)
            )
        if mlserver is not None:
            return  # the in-process steps replay the small server's response, not MLServer's
        print("\nMonitoring steps timed in-process (bench process, core 0, same body and config)")
        try:
            for line in monitoring_breakdown(config_paths["driftgauge"]):
                print(line)
        except Exception as exc:  # the profile is extra: never lose the results over it
            print(f"  failed: {type(exc).__name__}: {exc}")


if __name__ == "__main__":
    main()
