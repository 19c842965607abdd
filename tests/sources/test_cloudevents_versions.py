"""The cloudevents source with ``versions:``: KServe's ``ce-endpoint`` (default, canary) is the
version of a pair naming none, so a canary rollout's two endpoints drift apart.

End to end: a sidecar with the real CloudEvents listener on a loopback port, events built with
the CloudEvents SDK as KServe's logger posts them, the per-version figures read on the real
/metrics and checked against numpy on each endpoint's own rows.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import ClientSession, ClientTimeout

from driftgauge.app import build_sidecar
from driftgauge.baseline import build_baseline, save_baseline
from driftgauge.config import config_from_mapping
from tests._stats_helpers import exact_bin_counts, exact_psi
from tests.helpers import base_config, free_port, scrape, training_rows, write_csv
from tests.kserve_logger import binary, kserve_event, send
from tests.proxy_upstream import running_sidecar, until

ROWS = 400  # per endpoint
BATCH = 20  # rows per inference call


def bodies(protocol: str, alcohol: list[float]) -> tuple[dict[str, Any], dict[str, Any]]:
    """One call's request and response bodies (no version named in either)."""
    n = len(alcohol)
    if protocol == "kserve-v1":
        rows = [{"alcohol": x, "ash": 2.2, "region": "north"} for x in alcohol]
        return {"instances": rows}, {"predictions": ["a"] * n}
    tensors = [
        {"name": "alcohol", "shape": [n], "datatype": "FP64", "data": alcohol},
        {"name": "ash", "shape": [n], "datatype": "FP64", "data": [2.2] * n},
        {"name": "region", "shape": [n], "datatype": "BYTES", "data": ["north"] * n},
    ]
    output = {"name": "class", "shape": [n], "datatype": "BYTES", "data": ["a"] * n}
    return {"inputs": tensors}, {"model_name": "wine", "outputs": [output]}


@pytest.mark.parametrize("protocol", ["kserve-v2", "kserve-v1"])
async def test_canary_and_default_endpoints_are_monitored_as_two_versions(
    tmp_path: Path, protocol: str
) -> None:
    """With versions on, pairs of the default and the canary endpoint feed version="default"
    and version="canary" (a KServe v1 model's too: the endpoint needs no versioned protocol);
    each version's PSI, mean and observations are numpy's on that endpoint's rows alone."""
    baseline_path = tmp_path / "wine.dgb"
    listen = f"127.0.0.1:{free_port()}"
    raw = base_config(
        tmp_path,
        protocol=protocol,
        baseline=str(baseline_path),
        source={"cloudevents": {"listen": listen, "ttl": "5s"}},
        versions={"top": 3},
    )
    config = config_from_mapping(raw, base=tmp_path)
    data = write_csv(tmp_path / "train.csv", training_rows(3_000))
    baseline = build_baseline(config, [data])
    save_baseline(baseline, baseline_path)
    rng = np.random.default_rng(7)
    rows = {
        "default": rng.normal(13.0, 0.8, ROWS).round(4),
        "canary": rng.normal(13.6, 1.0, ROWS).round(4),  # the canary's inputs drifted
    }
    sidecar = build_sidecar(config)
    async with (
        running_sidecar(sidecar),
        ClientSession(timeout=ClientTimeout(total=10)) as session,
    ):
        url = f"http://127.0.0.1:{sidecar.proxy_port}/"
        for start in range(0, ROWS, BATCH):
            for endpoint, values in rows.items():
                request, response = bodies(protocol, values[start : start + BATCH].tolist())
                call = f"{endpoint}-{start}"  # each call's id: one pair per call
                for kind, body in (("request", request), ("response", response)):
                    event = kserve_event(kind, call, body)
                    event["endpoint"] = endpoint
                    assert await send(session, url, binary(event)) == 200

        def by_version() -> dict[str, int]:
            return {
                m.version: m.counters()["alcohol"].observations
                for m in sidecar.batcher.all_monitors()
            }

        await until(
            lambda: by_version() == {"": 0, "default": ROWS, "canary": ROWS}, what="both versions"
        )
        for monitor in sidecar.batcher.all_monitors():
            await asyncio.to_thread(monitor.compute)
        samples = await asyncio.to_thread(scrape, sidecar.config.metrics.listen[1])

    def gauge(name: str, version: str) -> float:
        found = [
            value
            for (metric, labels), value in samples.items()
            if metric == name
            and dict(labels).get("version") == version
            and dict(labels)["feature"] == "alcohol"
            and dict(labels)["window"] == "5m"
        ]
        assert len(found) == 1, (name, version, found)
        return found[0]

    summary = baseline.fields["alcohol"].summary
    base_counts = summary.bins
    assert not sidecar.monitor.parse_errors
    for endpoint, values in rows.items():
        live = exact_bin_counts(values.astype(np.float64), summary.binning.edges)
        assert math.isclose(
            gauge("driftgauge_psi", endpoint), exact_psi(live, base_counts), rel_tol=1e-9
        )
        assert math.isclose(gauge("driftgauge_feature_mean", endpoint), float(values.mean()))
        assert gauge("driftgauge_window_observations", endpoint) == ROWS
    assert gauge("driftgauge_psi", "canary") > 5 * gauge("driftgauge_psi", "default")
