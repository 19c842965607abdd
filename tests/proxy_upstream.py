"""Real servers and clients for the proxy tests, all on free 127.0.0.1 ports.

- :class:`Upstream`: a well-behaved aiohttp model server that records every
  request exactly as it arrived (method, target, raw headers, body, and the
  connection it came on) and answers on a few fixed routes.
- :class:`RawUpstream`: a bare asyncio server whose per-connection script the
  test writes, for the misbehaviour aiohttp would never commit
  (close-delimited bodies, resets mid-response, closing pooled connections).
- :class:`RawClient`: one client connection speaking bytes, with a small
  HTTP/1.1 response reader that is independent of the proxy's parser.
- :func:`running_proxy`: the sidecar in proxy mode, started the way the demo
  starts it (config → ``build_sidecar`` → ``run_until_stopped``) and always
  stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from driftgauge.app import Sidecar, build_sidecar, run_until_stopped
from driftgauge.baseline import build_baseline, save_baseline
from driftgauge.config import config_from_mapping
from tests.helpers import base_config, free_port, training_rows, write_csv

WAIT = 5.0
DOC = b"0123456789abcdef" * 77 + b"!!"  # 1234 bytes


async def until(condition: Callable[[], bool], within: float = WAIT, what: str = "") -> None:
    """Poll ``condition`` until it holds; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or 'a condition'}")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running_sidecar(sidecar: Sidecar) -> AsyncIterator[Sidecar]:
    """``run_until_stopped(sidecar)`` in this loop, yielded once its listener is up."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_until_stopped(sidecar, stop))
    try:
        await until(lambda: sidecar.proxy_port is not None or task.done(), what="the listener")
        if task.done():
            task.result()
        yield sidecar
    finally:
        stop.set()
        await asyncio.wait_for(task, 10.0)


# -- a well-behaved upstream ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Seen:
    """One request as the upstream received it."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    connection: int

    def header(self, name: str) -> str | None:
        values = self.header_all(name)
        return values[-1] if values else None

    def header_all(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]

    @property
    def names(self) -> set[str]:
        return {n.lower() for n, _ in self.headers}


class Upstream:
    """An aiohttp model server on a free port that records what it receives.

    Routes: ``/status/{code}?reason=`` answers that code, ``GET /doc`` a fixed
    1234-byte document, ``GET /big?size=`` that many bytes, ``GET /stream`` server-sent events (``?parts=&gap=``),
    ``/slow?delay=`` answers late, and any other path echoes the request body.
    ``routes`` given by the test take precedence.
    """

    def __init__(self, routes: Iterable[web.RouteDef] = (), port: int | None = None) -> None:
        self.port = port or free_port()
        self.seen: list[Seen] = []
        self.release = asyncio.Event()
        self.app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[self._record])
        self.app.add_routes(list(routes))
        self.app.add_routes(
            [
                web.route("*", "/status/{code}", self._status),
                web.get("/doc", self._doc),
                web.get("/big", self._big),
                web.get("/stream", self._stream),
                web.route("*", "/slow", self._slow),
                web.route("*", "/{tail:.*}", self._echo),
            ]
        )
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def connections(self) -> set[int]:
        """The client ports of the connections requests came on."""
        return {seen.connection for seen in self.seen}

    async def start(self) -> Upstream:
        self.release.clear()
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()
        return self

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            server = runner.server
            await runner.cleanup()
            # A connection accepted just as the listener closed (the sidecar's readiness
            # watcher connects every 2 s) registers after the cleanup closed the others;
            # left open, it leaks past the test's event loop.
            await asyncio.sleep(0.01)
            if server is not None:
                for handler in list(server.connections):
                    handler.force_close()

    @web.middleware
    async def _record(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        body = await request.read()
        assert request.transport is not None
        peer = request.transport.get_extra_info("peername")
        self.seen.append(
            Seen(
                request.method,
                request.raw_path,
                tuple((n.decode("latin-1"), v.decode("latin-1")) for n, v in request.raw_headers),
                body,
                int(peer[1]),
            )
        )
        return await handler(request)

    async def _status(self, request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        body = None if code in (204, 304) else f"status {code} body".encode()
        return web.Response(
            status=code,
            reason=request.query.get("reason"),
            body=body,
            headers={"X-Upstream": f"status-{code}"},
        )

    async def _doc(self, request: web.Request) -> web.Response:
        return web.Response(body=DOC, content_type="text/plain", headers={"X-Upstream": "doc"})

    async def _big(self, request: web.Request) -> web.Response:
        size = int(request.query["size"])
        return web.Response(body=bytes(range(256)) * (size // 256) + b"!" * (size % 256))

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        parts = int(request.query.get("parts", "3"))
        gap = float(request.query.get("gap", "0.2"))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for index in range(parts):
            if index:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.release.wait(), gap)
            await response.write(b"data: event %d\n\n" % index)
        await response.write_eof()
        return response

    async def _slow(self, request: web.Request) -> web.Response:
        delay = float(request.query.get("delay", "2"))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.release.wait(), delay)
        return web.Response(body=b"slow answer")

    async def _echo(self, request: web.Request) -> web.Response:
        return web.Response(
            body=await request.read(),
            content_type="application/octet-stream",
            headers={"X-Upstream": "echo", "X-Method": request.method},
        )


@contextlib.asynccontextmanager
async def upstream_server(
    routes: Iterable[web.RouteDef] = (), port: int | None = None
) -> AsyncIterator[Upstream]:
    server = await Upstream(routes, port).start()
    try:
        yield server
    finally:
        await server.stop()


# -- a scripted raw upstream ------------------------------------------------------

Script = Callable[["RawUpstream", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes] | None:
    """One request's head and (Content-Length or chunked) body; None at end of stream."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lower = head.lower()
    if b"transfer-encoding: chunked" in lower:
        body = await reader.readuntil(b"0\r\n\r\n")
    else:
        length = 0
        for line in lower.split(b"\r\n"):
            if line.startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        body = await reader.readexactly(length)
    return head, body


class RawUpstream:
    """A bare asyncio server running ``script`` on every connection.

    ``connections`` counts connections that sent a request (the sidecar's
    readiness watcher also connects, without sending anything).
    """

    def __init__(self, script: Script, port: int | None = None) -> None:
        self.port = port or free_port()
        self.script = script
        self.heads: list[bytes] = []
        self._numbers: dict[asyncio.StreamReader, int] = {}
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def connections(self) -> int:
        return len(self._numbers)

    def number(self, reader: asyncio.StreamReader) -> int:
        """1 for the first connection that sent a request, 2 for the second..."""
        return self._numbers[reader]

    async def read_request(self, reader: asyncio.StreamReader) -> tuple[bytes, bytes] | None:
        request = await read_request(reader)
        if request is not None:
            self._numbers.setdefault(reader, len(self._numbers) + 1)
            self.heads.append(request[0])
        return request

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            await self.script(self, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def start(self) -> RawUpstream:
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", self.port, reuse_address=True
        )
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()
            self._server = None


@contextlib.asynccontextmanager
async def raw_upstream(script: Script) -> AsyncIterator[RawUpstream]:
    server = await RawUpstream(script).start()
    try:
        yield server
    finally:
        await server.stop()


# -- a raw client -----------------------------------------------------------------


@dataclass(slots=True)
class Response:
    """One HTTP response as a client read it off the wire."""

    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    chunked_pieces: list[bytes] = field(default_factory=list)
    trailers: list[tuple[str, str]] = field(default_factory=list)  # after a chunked body

    def header(self, name: str) -> str | None:
        values = [v for n, v in self.headers if n == name.lower()]
        return values[-1] if values else None

    def header_all(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n == name.lower()]

    @property
    def names(self) -> set[str]:
        return {n for n, _ in self.headers}


async def read_response(reader: asyncio.StreamReader, *, head: bool = False) -> Response:
    """Read one response (interim 1xx responses are returned on their own)."""
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw.decode("latin-1").split("\r\n")
    version, status_text, *rest = lines[0].split(" ", 2)
    status = int(status_text)
    headers = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.append((name.strip().lower(), value.strip()))
    response = Response(version, status, rest[0] if rest else "", headers, b"")
    transfer = response.header("transfer-encoding") or ""
    length = response.header("content-length")
    if head or 100 <= status < 200 or status in (204, 304):
        return response
    if "chunked" in transfer.lower():
        pieces = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
                    name, _, value = line.decode("latin-1").partition(":")
                    response.trailers.append((name.strip().lower(), value.strip()))
                break
            piece = await reader.readexactly(size + 2)
            assert piece.endswith(b"\r\n"), "chunk not terminated by CRLF"
            pieces.append(piece[:-2])
        response.chunked_pieces = pieces
        response.body = b"".join(pieces)
    elif length is not None:
        response.body = await reader.readexactly(int(length))
    else:
        response.body = await reader.read()  # close-delimited
    return response


class RawClient:
    """One client connection to the proxy, written and read as bytes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int, receive_buffer: int | None = None) -> RawClient:
        """Connect; a small ``receive_buffer`` (SO_RCVBUF) makes back-pressure come early."""
        sock = socket.socket()
        sock.setblocking(False)
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        try:
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        except OSError:
            sock.close()
            raise
        reader, writer = await asyncio.open_connection(sock=sock)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self, *, head: bool = False, within: float = WAIT) -> Response:
        async with asyncio.timeout(within):
            return await read_response(self.reader, head=head)

    async def request(
        self,
        method: str,
        target: str,
        body: bytes = b"",
        headers: Iterable[str] = (),
        within: float = WAIT,
    ) -> Response:
        """Send one HTTP/1.1 request with a Content-Length and read its response."""
        lines = [f"{method} {target} HTTP/1.1", "Host: proxy", *headers]
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        await self.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        return await self.response(head=method == "HEAD", within=within)

    async def closed(self, within: float = WAIT) -> bool:
        """True when the proxy ends the connection (after whatever it still sends)."""
        async with asyncio.timeout(within):
            try:
                while await self.reader.read(65536):
                    pass
            except ConnectionError:
                pass
        return True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


@contextlib.asynccontextmanager
async def raw_client(port: int, receive_buffer: int | None = None) -> AsyncIterator[RawClient]:
    client = await RawClient.open(port, receive_buffer)
    try:
        yield client
    finally:
        await client.close()


# -- the sidecar in proxy mode ------------------------------------------------------


def build_baseline_file(directory: Path) -> Path:
    """A baseline for ``base_config``'s fields (the same for every protocol)."""
    config = config_from_mapping(base_config(directory), base=directory)
    baseline = build_baseline(config, [write_csv(directory / "train.csv", training_rows(2_000))])
    save_baseline(baseline, config.baseline)
    return config.baseline


# The proxy engine running_proxy starts unless told (the `proxy_engine` fixture sets it).
PROXY_ENGINES = ("python", "native")
engine = {"default": "python"}


@dataclass(slots=True)
class Proxy:
    """A running sidecar in proxy mode."""

    sidecar: Sidecar
    port: int
    stop_event: asyncio.Event
    task: asyncio.Task[None]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        host, port = self.sidecar.config.metrics.listen
        return f"http://{host}:{port}"

    def sample(self, name: str, **labels: str) -> float:
        """A sample of the sidecar's registry (0 when absent), ``model`` label implied."""
        return self.source_sample(name, model="wine", **labels)

    def source_sample(self, name: str, **labels: str) -> float:
        """A sample of the sidecar's registry (0 when absent), no label implied: the source's;
        read as a scrape reads it (after the native proxy core's counts are brought in)."""
        self.sidecar.registry.refresh()
        value = self.sidecar.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    async def stop(self) -> None:
        self.stop_event.set()
        await asyncio.wait_for(self.task, 10.0)


@contextlib.asynccontextmanager
async def running_proxy(
    tmp_path: Path,
    baseline: Path,
    upstream_port: int,
    *,
    protocol: str = "kserve-v1",
    fields: dict[str, Any] | None = None,
    **proxy: Any,
) -> AsyncIterator[Proxy]:
    """Start the sidecar with its proxy in front of ``upstream_port``; stop it afterwards."""
    port = free_port()
    source = {
        "listen": f"127.0.0.1:{port}",
        "upstream": f"http://127.0.0.1:{upstream_port}",
        "shutdown_grace": 1,
        "engine": engine["default"],
        **proxy,
    }
    raw = base_config(
        tmp_path,
        protocol=protocol,
        source={"proxy": source},
        baseline=str(baseline),
        **(fields or {}),
    )
    config = config_from_mapping(raw, base=tmp_path)
    sidecar = build_sidecar(config)
    stop = asyncio.Event()
    task = asyncio.create_task(run_until_stopped(sidecar, stop))
    running = Proxy(sidecar, port, stop, task)
    try:
        deadline = time.monotonic() + WAIT
        # Both listeners: the proxy's, and /metrics (which may open a moment later).
        waiting = [("127.0.0.1", port), config.metrics.listen]
        while waiting:
            if task.done():
                task.result()
                raise AssertionError("the sidecar stopped while starting")
            try:
                _, writer = await asyncio.open_connection(*waiting[0])
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.01)
                continue
            writer.close()
            await writer.wait_closed()
            waiting.pop(0)
        yield running
    finally:
        await running.stop()


def kserve_v2_request(rows: list[dict[str, Any]], **top: Any) -> dict[str, Any]:
    """The KServe V2 request of ``rows`` (alcohol FP64 [n], ash FP32 [n, 1], region BYTES [n]),
    with ``top`` as extra top-level members (an ``id``, say)."""
    n = len(rows)
    return {
        **top,
        "inputs": [
            {
                "name": "alcohol",
                "shape": [n],
                "datatype": "FP64",
                "data": [r["alcohol"] for r in rows],
            },
            {
                "name": "ash",
                "shape": [n, 1],
                "datatype": "FP32",
                "data": [[r["ash"]] for r in rows],
            },
            {
                "name": "region",
                "shape": [n],
                "datatype": "BYTES",
                "data": [r["region"] for r in rows],
            },
        ],
    }


# -- the sidecar as a process: ``driftgauge serve`` -----------------------------------------


@dataclass
class ServeProcess:
    """A running ``driftgauge serve`` in proxy mode."""

    process: subprocess.Popen[bytes]
    proxy_port: int
    metrics_port: int

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.proxy_port}{path}"


def serve_ready(port: int) -> bool:
    """Whether ``driftgauge serve``'s metrics listener on ``port`` reports ready."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:  # refused, or 503 (HTTPError is an OSError)
        return False


def serve_config(tmp_path: Path, baseline: Path, upstream: str, engine: str) -> dict[str, Any]:
    """A proxy-mode config for :func:`serve`: the proxy on ``engine`` in front of ``upstream``
    (a URL), it and /metrics on free loopback ports."""
    proxy = {"listen": f"127.0.0.1:{free_port()}", "upstream": upstream, "engine": engine}
    return base_config(
        tmp_path,
        baseline=str(baseline),
        source={"proxy": proxy},
        metrics={"listen": f"127.0.0.1:{free_port()}"},
    )


@contextlib.contextmanager
def serve(tmp_path: Path, raw: dict[str, Any], *args: str) -> Iterator[ServeProcess]:
    """``driftgauge serve`` on the config ``raw`` (and ``args``), waited for until ready; killed
    afterwards."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    proxy_port = int(raw["source"]["proxy"]["listen"].rsplit(":", 1)[1])
    metrics_port = int(raw["metrics"]["listen"].rsplit(":", 1)[1])
    with (tmp_path / "serve.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "driftgauge.cli", "serve", "-c", str(config), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while not serve_ready(metrics_port):
                assert process.poll() is None, (tmp_path / "serve.log").read_text()
                assert time.monotonic() < deadline, "driftgauge serve did not become ready"
                time.sleep(0.1)
            yield ServeProcess(process, proxy_port, metrics_port)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
