"""Connections to the model server: a pool of persistent ones, each parsing responses with
httptools and relaying them to the exchange (:class:`~.cycle.Cycle`) it serves."""

from __future__ import annotations

import asyncio
import ssl
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import httptools

from driftgauge.sources.proxy.flow import FlowControl
from driftgauge.sources.proxy.heads import MAX_HEAD_BYTES

if TYPE_CHECKING:
    from driftgauge.sources.proxy.cycle import Cycle

__all__ = ["UpstreamPool", "UpstreamProtocol"]

_MAX_POOL_IDLE = 64


class UpstreamPool:
    """Persistent connections to one upstream host:port."""

    def __init__(self, url: str, connect_timeout: float, tls: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"{url!r}: the upstream must be an http:// or https:// URL")
        if parts.scheme == "https" and tls is None:
            tls = ssl.create_default_context()
        self.tls = tls if parts.scheme == "https" else None
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if self.tls else 80)
        self.host_header = parts.netloc.rpartition("@")[2].encode("idna")
        self.connect_timeout = connect_timeout
        self.idle: list[UpstreamProtocol] = []
        self.closed = False

    def take_idle(self) -> UpstreamProtocol | None:
        while self.idle:
            connection = self.idle.pop()
            if connection.usable:
                return connection
        return None

    def release(self, connection: UpstreamProtocol) -> None:
        if connection.usable and not self.closed and len(self.idle) < _MAX_POOL_IDLE:
            # A slow client may have paused it; idle, it must notice a close (and answer later).
            connection.flow.resume_reading()
            self.idle.append(connection)
        else:
            connection.close()

    async def connect(self) -> UpstreamProtocol:
        loop = asyncio.get_running_loop()
        # asyncio.timeout, not wait_for: Python 3.11's wait_for may return the connection in
        # place of a cancel landing as the connect completes, and the request would go on.
        async with asyncio.timeout(self.connect_timeout):
            _, protocol = await loop.create_connection(
                UpstreamProtocol,
                self.host,
                self.port,
                ssl=self.tls,
                server_hostname=self.host if self.tls else None,
            )
        return protocol

    def close(self) -> None:
        self.closed = True  # a connection still being opened is closed when released
        for connection in self.idle:
            connection.close()
        self.idle.clear()


class UpstreamProtocol(asyncio.Protocol):
    """One connection to the model server; serves one exchange at a time."""

    transport: asyncio.Transport  # from connection_made, before the pool hands it out
    flow: FlowControl

    def __init__(self) -> None:
        self.cycle: Cycle | None = None
        self.parser: Any = None
        self.feeding: Cycle | None = None  # whom the bytes being parsed answer
        self.head_bytes = 0  # read while its response's head is not all in
        self.received_any = False
        self.usable = False
        self.reused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        self.flow = FlowControl(transport)
        self.usable = True

    def attach(self, cycle: Cycle) -> None:
        """Serve ``cycle``: its request goes out next, and the response parsed goes to it."""
        self.cycle = cycle
        self.parser = httptools.HttpResponseParser(self)
        self.received_any = False
        self.head_bytes = 0
        # Attached while a read is parsed (released to the pool at the end of a response, then
        # taken at once by the client's next request): the rest of that read came before its
        # request went out, so it answers nothing it asked (_current).
        self.feeding = None

    def close(self) -> None:
        self.usable = False
        self.transport.close()

    # -- transport callbacks ----------------------------------------------

    def data_received(self, data: bytes) -> None:
        cycle = self.cycle
        if cycle is None:
            self.close()  # bytes nobody asked for: the connection is out of step
            return
        client = cycle.client
        if not self.received_any and data[:1] in (b"\r", b"\n"):
            # An empty line before the status line: the parser skips it, the native core
            # refuses it (only a server reading requests is asked to skip one: RFC 9112, 2.2).
            client.upstream_failed(self, "bad_response")
            return
        self.received_any = True
        client.held = []
        self.feeding = cycle
        try:
            self.parser.feed_data(data)
            if not cycle.status and self._current() is not None:
                # Its head not all in yet: bounded, as the native core's, not buffered on.
                self.head_bytes += len(data)
                if self.head_bytes > MAX_HEAD_BYTES:
                    client.upstream_failed(self, "bad_response")
        except (httptools.HttpParserUpgrade, httptools.HttpParserError):
            if self._current() is not None:
                client.upstream_failed(self, "bad_response")
            else:  # refused at its head, or bytes after the response it asked for
                self.close()
        finally:
            self.feeding = None
            client.flush()

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.usable = False
        cycle = self.cycle
        if cycle is not None:
            self.cycle = None
            cycle.upstream_lost(self)

    def pause_writing(self) -> None:
        cycle = self.cycle
        self.flow.pause_writing(cycle.client.flow if cycle is not None else None)

    def resume_writing(self) -> None:
        cycle = self.cycle
        self.flow.resume_writing(cycle.client.flow if cycle is not None else None)

    # -- httptools callbacks ---------------------------------------------

    def _current(self) -> Cycle | None:
        """The exchange the bytes being parsed answer: None once its response is over (the
        connection released, or attached again to the next exchange)."""
        cycle = self.cycle
        return cycle if cycle is not None and cycle is self.feeding else None

    def on_message_begin(self) -> None:
        cycle = self._current()
        if cycle is None:
            # A response after the one asked for, in the same read: the connection is out of
            # step (its next exchange, if any, is sent again on a new one: upstream_lost).
            self.close()
            return
        cycle.response_begin()

    def on_status(self, reason: bytes) -> None:
        if (cycle := self._current()) is not None:
            cycle.response_reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        if (cycle := self._current()) is not None:
            cycle.response_headers.append((name, value))

    def on_headers_complete(self) -> None:
        if (cycle := self._current()) is not None:
            cycle.response_headers_complete(self)

    def on_body(self, body: bytes) -> None:
        if (cycle := self._current()) is not None:
            cycle.response_body(body)

    def on_message_complete(self) -> None:
        if (cycle := self._current()) is not None:
            cycle.response_complete(self)
