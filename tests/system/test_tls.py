"""TLS: an https upstream trusted through a custom CA, and TLS on both listeners."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest
from aiohttp import ClientConnectorCertificateError, ClientSession, web

from driftgauge.app import build_sidecar, run_until_stopped
from driftgauge.baseline import build_baseline, save_baseline
from driftgauge.config import config_from_mapping
from tests.helpers import base_config, free_port, training_rows, write_csv


async def test_tls_everywhere(tmp_path: Path, pki: Path) -> None:
    """Client → TLS proxy → https upstream (custom CA), told X-Forwarded-Proto: https; metrics
    over TLS; rows monitored."""
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(pki / "server.pem", pki / "server.key")
    client_tls = ssl.create_default_context(cafile=str(pki / "ca.pem"))

    forwarded: list[str | None] = []

    async def predict(request: web.Request) -> web.Response:
        forwarded.append(request.headers.get("X-Forwarded-Proto"))
        body = await request.json()
        return web.json_response({"predictions": [{"class": "a"} for _ in body["instances"]]})

    upstream = web.Application()
    upstream.router.add_post("/v1/models/wine:predict", predict)
    runner = web.AppRunner(upstream)
    await runner.setup()
    up_port, proxy_port = free_port(), free_port()
    await web.TCPSite(runner, "127.0.0.1", up_port, ssl_context=server_tls).start()
    tls = {"cert_file": str(pki / "server.pem"), "key_file": str(pki / "server.key")}
    raw = base_config(
        tmp_path,
        source={
            "proxy": {
                "listen": f"127.0.0.1:{proxy_port}",
                "upstream": f"https://127.0.0.1:{up_port}",
                "ca_file": str(pki / "ca.pem"),
                "tls": tls,
            }
        },
    )
    raw["metrics"]["tls"] = tls
    config = config_from_mapping(raw, base=tmp_path)
    save_baseline(
        build_baseline(config, [write_csv(tmp_path / "t.csv", training_rows(1_000))]),
        config.baseline,
    )
    sidecar = build_sidecar(config)
    stop = asyncio.Event()
    serving = asyncio.create_task(run_until_stopped(sidecar, stop))
    try:
        columns = training_rows(8, 3)
        rows = [{k: columns[k][i] for k in ("alcohol", "ash", "region")} for i in range(8)]
        async with ClientSession() as session:
            for _ in range(50):
                try:
                    async with session.post(
                        f"https://127.0.0.1:{proxy_port}/v1/models/wine:predict",
                        json={"instances": rows},
                        ssl=client_tls,
                    ) as response:
                        assert response.status == 200
                        assert len((await response.json())["predictions"]) == 8
                        break
                except OSError:
                    await asyncio.sleep(0.1)
            else:
                raise AssertionError("the TLS proxy never answered")
            # a client without the CA is refused
            with pytest.raises(ClientConnectorCertificateError):
                async with session.post(
                    f"https://127.0.0.1:{proxy_port}/v1/models/wine:predict", json={}
                ):
                    pass
            for _ in range(50):
                if sidecar.monitor.rows_total == 8:
                    break
                await asyncio.sleep(0.05)
            assert sidecar.monitor.rows_total == 8
            assert forwarded == ["https"]  # the client's scheme: TLS ends at the proxy
            port = config.metrics.listen[1]
            async with session.get(f"https://127.0.0.1:{port}/healthz", ssl=client_tls) as response:
                assert response.status == 200
    finally:
        stop.set()
        await serving
        await runner.cleanup()
