"""The metrics listener (/metrics, /feedback, probes) under malformed HTTP from a peer."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

import pytest

from tests.e2e_support import sidecar, write_baseline, write_config
from tests.helpers import base_config

pytestmark = pytest.mark.integration

# A chunked POST whose chunk size is no hex number, a POST whose Content-Length is no number,
# a header line past aiohttp's limit: each the peer's fault, which aiohttp answers 400 and
# logged as a traceback.
MALFORMED = [
    b"POST /feedback HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    b"POST /feedback HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n{}",
    b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n",
]


def _send(port: int, message: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(message)
        answer = b""
        while chunk := connection.recv(65_536):
            answer += chunk
    return answer


def test_malformed_http_is_one_warning_line_and_the_listener_goes_on(tmp_path: Path) -> None:
    """Each malformed message is answered 400 and logged as one line naming the peer, with no
    traceback; /metrics answers afterwards."""
    config_path = write_config(tmp_path / "driftgauge.yml", base_config(tmp_path))
    write_baseline(config_path, 2_000)
    with sidecar(config_path, tmp_path / "driftgauge.log") as running:
        for message in MALFORMED:
            answer = _send(running.metrics_port, message)
            assert answer.startswith((b"HTTP/1.0 400 ", b"HTTP/1.1 400 ")), answer[:80]
        with urllib.request.urlopen(f"{running.url}/metrics", timeout=10) as response:
            assert response.status == 200
        log = running.log_text()
    assert "Traceback" not in log and "Error handling request" not in log, log
    lines = [line for line in log.splitlines() if "malformed HTTP request from 127.0.0.1" in line]
    assert len(lines) == len(MALFORMED), log
