"""The proxy source: a fail-open HTTP/1.1 reverse proxy in front of the model server.

The hot path is asyncio ``Protocol`` callbacks parsing with httptools (llhttp)
over a pool of persistent upstream connections: no task, no future and no
JSON parsing per request.  Request and response bytes stream through as they
arrive (chunked bodies, server-sent events, large bodies), in order
(pipelined requests are answered one after another), with back-pressure both
ways.  Monitoring only copies the two bodies, when they are small enough and
the path is a prediction route, into a bounded queue (:class:`RecordQueue`);
a background consumer parses them in batches.  Nothing in monitoring can fail
a request: the queue drops (and counts) when full.

Upstream failures: connection refused → 502, no response in time → 504,
each with a short JSON body and counted; a connection that breaks after the
response head was sent is closed on the client too (the only honest signal
left).  A stale pooled connection that fails before any response byte is
retried once on a new one when the whole request is still buffered.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import os
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

import httptools

from driftgauge.typing import ProxyObserver, Record

__all__ = ["ProxyServer", "RecordQueue", "UpstreamPool"]

log = logging.getLogger(__name__)

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    }
)
_BODY_METHODS = frozenset({b"POST", b"PUT", b"PATCH"})
_MAX_POOL_IDLE = 64


def _error_body(status: int, reason: str, message: str) -> bytes:
    body = b'{"error":"%s","driftgauge":"%s"}' % (message.encode(), reason.encode())
    phrase = {400: b"Bad Request", 502: b"Bad Gateway", 504: b"Gateway Timeout"}[status]
    return b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
        status,
        phrase,
        len(body),
        body,
    )


class RecordQueue:
    """A FIFO of records between the request path and the monitoring consumer,
    bounded both in records and in the bytes of the bodies it holds."""

    def __init__(
        self, capacity: int, on_drop: Callable[[str], None], max_bytes: int = 16 * 1024 * 1024
    ) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: collections.deque[tuple[Record, int]] = collections.deque()
        self._on_drop = on_drop
        self._waiter: asyncio.Event = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, record: Record) -> None:
        size = len(record.request) + len(record.response)
        if len(self._items) >= self.capacity or self.bytes + size > self.max_bytes:
            self._on_drop("queue_full")
            return
        self._items.append((record, size))
        self.bytes += size
        if len(self._items) >= 64:
            self._waiter.set()

    def take(self, limit: int) -> list[Record]:
        items = self._items
        taken = [items.popleft() for _ in range(min(limit, len(items)))]
        self.bytes -= sum(size for _, size in taken)
        return [record for record, _ in taken]

    async def wait(self, longest: float) -> None:
        """Wait until enough records are queued or ``longest`` seconds pass."""
        self._waiter.clear()
        if len(self._items) >= 64:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._waiter.wait(), longest)


@dataclass(slots=True)
class Exchange:
    """One request/response pair going through the proxy."""

    method: bytes = b""
    url: bytes = b""
    path: str = ""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    head: bytes = b""
    chunked: bool = False
    keep_alive: bool = True
    http10: bool = False
    buffered: list[bytes] = field(default_factory=list)
    request_done: bool = False
    replayable: bool = True
    monitor: bool = False
    request_body: bytearray | None = None
    response_body: bytearray | None = None
    request_id: str | None = None
    generated_id: bool = False
    started: float = 0.0
    sent: float = 0.0
    status: int = 0
    head_sent: bool = False
    finished: bool = False
    expect_continue: bool = False
    request_bytes: int = 0
    response_bytes: int = 0


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
            if connection.transport is not None:
                # A slow client may have paused it; idle, it must notice a close (and answer later).
                connection.transport.resume_reading()
            self.idle.append(connection)
        else:
            connection.close()

    async def connect(self) -> UpstreamProtocol:
        loop = asyncio.get_running_loop()
        _, protocol = await asyncio.wait_for(
            loop.create_connection(
                UpstreamProtocol,
                self.host,
                self.port,
                ssl=self.tls,
                server_hostname=self.host if self.tls else None,
            ),
            self.connect_timeout,
        )
        return protocol

    def close(self) -> None:
        self.closed = True  # a connection still being opened is closed when released
        for connection in self.idle:
            connection.close()
        self.idle.clear()


class UpstreamProtocol(asyncio.Protocol):
    """One connection to the model server; serves one exchange at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.client: ClientProtocol | None = None
        self.parser: Any = None
        self.received_any = False
        self.usable = False
        self.reused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        self.usable = True

    def attach(self, client: ClientProtocol) -> None:
        self.client = client
        self.parser = httptools.HttpResponseParser(self)
        self.received_any = False

    def close(self) -> None:
        self.usable = False
        if self.transport is not None:
            self.transport.close()

    # -- transport callbacks ----------------------------------------------

    def data_received(self, data: bytes) -> None:
        client = self.client
        if client is None or self.parser is None:
            self.close()  # bytes nobody asked for: the connection is out of step
            return
        self.received_any = True
        client.held = []
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserUpgrade, httptools.HttpParserError):
            client.upstream_failed(self, "bad_response")
        finally:
            client.flush()

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.usable = False
        client = self.client
        if client is not None:
            self.client = None
            client.upstream_lost(self)

    def pause_writing(self) -> None:
        if self.client is not None and self.client.transport is not None:
            self.client.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.client is not None and self.client.transport is not None:
            self.client.transport.resume_reading()

    # -- httptools callbacks ---------------------------------------------

    def on_message_begin(self) -> None:
        if self.client is not None:
            self.client.response_begin()

    def on_status(self, reason: bytes) -> None:
        if self.client is not None:
            self.client.response_reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.client is not None:
            self.client.response_header(name, value)

    def on_headers_complete(self) -> None:
        if self.client is not None:
            self.client.response_headers_complete(self)

    def on_body(self, body: bytes) -> None:
        if self.client is not None:
            self.client.response_body(body)

    def on_message_complete(self) -> None:
        if self.client is not None:
            self.client.response_complete(self)


class ClientProtocol(asyncio.Protocol):
    """One downstream client connection."""

    def __init__(self, server: ProxyServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.current: Exchange | None = None
        self.pending: collections.deque[Exchange] = collections.deque()
        self.active: Exchange | None = None
        self.upstream: UpstreamProtocol | None = None
        self.peer = b""
        self.deadline = 0.0  # monotonic time by which the upstream must make progress; 0: none
        self.held: list[bytes] | None = None  # client writes held back to go out in one send
        self.held_upstream: list[bytes] | None = None  # likewise towards the upstream
        self.response_headers: list[tuple[bytes, bytes]] = []
        self.response_reason = b""
        self.response_chunked = False
        self.closing = False

    # -- client transport -------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]).encode() if peer else b""
        if self.server.drained:  # accepted just before the listener closed: too late
            self._close()
            return
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.closing = True
        self._cancel_timer()
        if self.upstream is not None:
            self.upstream.client = None
            self.upstream.close()  # mid-exchange: the upstream connection is out of step
            self.upstream = None

    def data_received(self, data: bytes) -> None:
        self.held_upstream = []
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.flush_upstream()
            self._reject(400, "upgrade_unsupported", "protocol upgrades are not proxied")
        except httptools.HttpParserError:
            self.flush_upstream()
            self._reject(400, "bad_request", "malformed HTTP request")
        else:
            self.flush_upstream()

    def eof_received(self) -> bool | None:
        # A client may half-close after its last request: answer what is in flight, then close.
        for exchange in (self.active, *self.pending):
            if exchange is not None:
                exchange.keep_alive = False
        return True if self.active is not None or self.pending else None

    def pause_writing(self) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.resume_reading()

    def write(self, data: bytes) -> None:
        """To the client: held while a batch of upstream bytes is parsed, then sent at once."""
        if self.held is not None:
            self.held.append(data)
        elif self.transport is not None:
            self.transport.write(data)

    def flush(self) -> None:
        held, self.held = self.held, None
        if held and self.transport is not None:
            self.transport.write(held[0] if len(held) == 1 else b"".join(held))

    def write_upstream(self, data: bytes) -> None:
        """To the upstream: held while a batch of client bytes is parsed, then sent at once."""
        if self.held_upstream is not None:
            self.held_upstream.append(data)
        elif self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.write(data)

    def flush_upstream(self) -> None:
        held, self.held_upstream = self.held_upstream, None
        if held and self.upstream is not None and self.upstream.transport is not None:
            self.upstream.transport.write(held[0] if len(held) == 1 else b"".join(held))

    def _reject(self, status: int, reason: str, message: str) -> None:
        self.server.metrics.client_error(reason)
        if self.transport is not None and self.active is None:
            self.write(_error_body(status, reason, message))
        self._close()

    def _close(self) -> None:
        self.closing = True
        self.flush()
        if self.transport is not None:
            self.transport.close()

    # -- request parsing (httptools callbacks) ----------------------------

    def on_message_begin(self) -> None:
        self.current = Exchange(started=time.perf_counter())

    def on_url(self, url: bytes) -> None:
        assert self.current is not None
        self.current.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.current is not None
        self.current.headers.append((name, value))

    def on_headers_complete(self) -> None:
        exchange = self.current
        assert exchange is not None
        server = self.server
        exchange.method = self.parser.get_method()
        exchange.keep_alive = self.parser.should_keep_alive()
        exchange.http10 = self.parser.get_http_version() == "1.0"
        path_bytes = exchange.url.split(b"?", 1)[0]
        exchange.path = path_bytes.decode("latin-1")
        out = [b"%s %s HTTP/1.1\r\n" % (exchange.method, exchange.url)]
        connection_tokens: set[bytes] = set()
        forwarded_for = b""
        has_proto = False
        has_host = False
        length: int | None = None
        for name, value in exchange.headers:
            lower = name.lower()
            if lower == b"connection":
                connection_tokens.update(t.strip().lower() for t in value.split(b","))
            elif lower == b"transfer-encoding":
                exchange.chunked = b"chunked" in value.lower()
            elif lower == b"content-length":
                length = int(value) if value.strip().isdigit() else None
            elif lower == b"expect" and value.strip().lower() == b"100-continue":
                exchange.expect_continue = True
                continue
            elif lower == b"x-forwarded-for":
                forwarded_for += value + b", "  # several fields are one list: keep every hop
                continue
            elif lower == b"host":
                has_host = True
            elif lower == b"x-forwarded-proto":
                has_proto = True
            elif lower == server.request_id_header:
                exchange.request_id = value.decode("latin-1")
        for name, value in exchange.headers:
            lower = name.lower()
            if (
                lower in HOP_BY_HOP
                or lower in connection_tokens
                or lower in (b"expect", b"x-forwarded-for")
            ):
                continue
            out.append(b"%s: %s\r\n" % (name, value))
        if not has_host:  # an HTTP/1.0 client may omit it; HTTP/1.1 to the upstream needs it
            out.append(b"host: %s\r\n" % server.pool.host_header)
        out.append(b"x-forwarded-for: %s%s\r\n" % (forwarded_for, self.peer))
        if not has_proto:
            out.append(b"x-forwarded-proto: http\r\n")
        if exchange.chunked:
            out.append(b"transfer-encoding: chunked\r\n")
        if (
            server.generate_ids
            and exchange.request_id is None
            and exchange.method in _BODY_METHODS
            and server.matches(exchange.path)
        ):
            # Labels arrive later by id: give the client (and the model server) one to use.
            exchange.request_id = server.new_request_id()
            exchange.generated_id = True
            out.append(b"%s: %s\r\n" % (server.request_id_header, exchange.request_id.encode()))
        out.append(b"\r\n")
        exchange.head = b"".join(out)
        if exchange.method in _BODY_METHODS:
            if server.matches(exchange.path):
                too_big = length is not None and length > server.max_body_bytes
                exchange.monitor = not too_big
                if too_big:
                    server.count_dropped("body_too_large")
                else:
                    exchange.request_body = bytearray()
            else:
                server.count_parse_error("unknown_path")
        self.pending.append(exchange)
        if exchange.expect_continue and self.transport is not None and self.active is None:
            self.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if self.active is None:
            self._start_next()

    def on_body(self, body: bytes) -> None:
        exchange = self.current
        assert exchange is not None
        if exchange.finished:
            return  # answered before its body was all in (e.g. a 413): the rest goes nowhere
        exchange.request_bytes += len(body)
        if exchange.request_body is not None:
            if len(exchange.request_body) + len(body) > self.server.max_body_bytes:
                exchange.request_body = None
                exchange.monitor = False
                self.server.count_dropped("body_too_large")
            else:
                exchange.request_body += body
        piece = b"%x\r\n%s\r\n" % (len(body), body) if exchange.chunked else body
        if exchange is self.active and self.upstream is not None and exchange.sent:
            self.write_upstream(piece)
            self._keep_for_replay(exchange, piece)
            self._arm_timer()  # the upstream waits on the client: not its own slowness
        else:
            exchange.buffered.append(piece)

    def on_message_complete(self) -> None:
        exchange = self.current
        assert exchange is not None
        exchange.request_done = True
        if exchange.chunked and not exchange.finished:
            if exchange is self.active and self.upstream is not None and exchange.sent:
                self.write_upstream(b"0\r\n\r\n")
                self._keep_for_replay(exchange, b"0\r\n\r\n")
                self._arm_timer()
            else:
                exchange.buffered.append(b"0\r\n\r\n")
        self.current = None
        if not exchange.keep_alive and self.transport is not None:
            self.transport.pause_reading()

    def _keep_for_replay(self, exchange: Exchange, piece: bytes) -> None:
        """Keep a copy of what went upstream, so a stale pooled connection can be retried."""
        if not exchange.replayable:
            return
        if exchange.request_bytes > self.server.max_body_bytes:
            exchange.replayable = False
            exchange.buffered = []
        else:
            exchange.buffered.append(piece)

    # -- exchange lifecycle ----------------------------------------------

    def _start_next(self) -> None:
        if self.active is not None or not self.pending or self.closing:
            return
        exchange = self.pending.popleft()
        self.active = exchange
        connection = self.server.pool.take_idle()
        if connection is not None:
            connection.reused = True
            self._send(connection)
        else:
            task = asyncio.ensure_future(self._connect_and_send())
            self.server.tasks.add(task)
            task.add_done_callback(self.server.tasks.discard)

    async def _connect_and_send(self) -> None:
        exchange = self.active
        try:
            connection = await self.server.pool.connect()
        except (TimeoutError, OSError) as exc:
            reason = "connect_timeout" if isinstance(exc, TimeoutError) else "connect_refused"
            if exchange is self.active and exchange is not None:
                self._fail(exchange, 502, reason, "upstream unavailable")
            return
        if self.closing or exchange is not self.active:
            self.server.pool.release(connection)
            return
        connection.reused = False
        self._send(connection)

    def _send(self, connection: UpstreamProtocol) -> None:
        exchange = self.active
        assert exchange is not None and connection.transport is not None
        self.flush_upstream()  # anything held belongs to the previous connection
        self.upstream = connection
        connection.attach(self)
        # ``buffered`` is kept after sending: the copy to replay on a retry
        data = b"".join((exchange.head, *exchange.buffered))
        if self.held_upstream is not None:  # the rest of this read joins it in one send
            self.held_upstream.append(data)
        else:
            connection.transport.write(data)
        exchange.sent = time.perf_counter()
        self._arm_timer()

    def _arm_timer(self) -> None:
        # A deadline checked by the server's sweep: cheaper than a timer handle per step.
        self.deadline = time.monotonic() + self.server.timeout

    def _cancel_timer(self) -> None:
        self.deadline = 0.0

    def _timed_out(self, exchange: Exchange) -> None:
        if exchange is not self.active:
            return
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            upstream.client = None
            upstream.close()
        self._fail(exchange, 504, "timeout", "upstream timed out")

    def _fail(self, exchange: Exchange, status: int, reason: str, message: str) -> None:
        """Answer for the upstream; if its head already went out, only closing is left."""
        self._cancel_timer()
        exchange.finished = True
        self.server.metrics.upstream_error(reason)
        if exchange.head_sent or self.transport is None:
            self.server.metrics.request_done(
                0,
                exchange.started,
                exchange.sent,
                time.perf_counter(),
                exchange.request_bytes,
                exchange.response_bytes,
            )
            self.active = None
            self._close()
            return
        self.write(_error_body(status, reason, message))
        self.server.metrics.request_done(
            status,
            exchange.started,
            exchange.sent,
            time.perf_counter(),
            exchange.request_bytes,
            exchange.response_bytes,
        )
        self.active = None
        if not exchange.keep_alive or not exchange.request_done:
            self._close()
        else:
            self.transport.resume_reading()  # the upstream's back-pressure may have paused it
            self._start_next()

    def upstream_failed(self, upstream: UpstreamProtocol, reason: str) -> None:
        upstream.client = None
        upstream.close()
        self.upstream = None
        if self.active is not None:
            self._fail(self.active, 502, reason, "bad response from upstream")

    def upstream_lost(self, upstream: UpstreamProtocol) -> None:
        """The upstream connection closed while serving our exchange."""
        exchange = self.active
        self.upstream = None
        if exchange is None:
            return
        if self.response_close_delimited and exchange.head_sent:
            self._finish_response(exchange, upstream, reusable=False)
            return
        if (
            upstream.reused
            and not upstream.received_any
            and exchange.replayable
            and exchange.request_done
        ):
            task = asyncio.ensure_future(
                self._connect_and_send()
            )  # stale pooled connection: retry once
            self.server.tasks.add(task)
            task.add_done_callback(self.server.tasks.discard)
            return
        self._fail(exchange, 502, "upstream_reset", "upstream closed the connection")

    # -- response (called by the upstream protocol) -----------------------

    response_close_delimited = False

    def response_begin(self) -> None:
        self.response_headers = []
        self.response_reason = b""

    def response_header(self, name: bytes, value: bytes) -> None:
        self.response_headers.append((name, value))

    def response_headers_complete(self, upstream: UpstreamProtocol) -> None:
        exchange = self.active
        if exchange is None or self.transport is None:
            return
        status = upstream.parser.get_status_code()
        if 100 <= status < 200:
            if status != 100:  # 100 Continue was answered by us; pass on e.g. 103 Early Hints
                self.write(self._response_head(status, exchange, interim=True))
            return
        exchange.status = status
        self._arm_timer()
        has_length = any(n.lower() == b"content-length" for n, _ in self.response_headers)
        upstream_chunked = any(
            n.lower() == b"transfer-encoding" and b"chunked" in v.lower()
            for n, v in self.response_headers
        )
        no_body = exchange.method == b"HEAD" or status in (204, 304)
        self.response_close_delimited = not has_length and not upstream_chunked and not no_body
        self.response_chunked = (upstream_chunked or self.response_close_delimited) and not no_body
        if self.response_chunked and exchange.http10:
            self.response_chunked = False
            exchange.keep_alive = False
        if exchange.monitor and 200 <= status < 300:
            exchange.response_body = bytearray()
        self.write(self._response_head(status, exchange))
        exchange.head_sent = True
        if exchange.method == b"HEAD":
            self._finish_response(exchange, upstream, reusable=upstream.parser.should_keep_alive())

    def _response_head(self, status: int, exchange: Exchange, interim: bool = False) -> bytes:
        reason = self.response_reason or _REASONS.get(status, b"Unknown")
        out = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
        connection_tokens: set[bytes] = set()
        for name, value in self.response_headers:
            if name.lower() == b"connection":
                connection_tokens.update(t.strip().lower() for t in value.split(b","))
        for name, value in self.response_headers:
            lower = name.lower()
            if lower in HOP_BY_HOP or lower in connection_tokens:
                continue
            out.append(b"%s: %s\r\n" % (name, value))
        if not interim:
            if exchange.generated_id and exchange.request_id is not None:
                out.append(
                    b"%s: %s\r\n" % (self.server.request_id_header, exchange.request_id.encode())
                )
            if self.response_chunked:
                out.append(b"transfer-encoding: chunked\r\n")
            if not exchange.keep_alive:
                out.append(b"connection: close\r\n")
        out.append(b"\r\n")
        return b"".join(out)

    def response_body(self, body: bytes) -> None:
        exchange = self.active
        if exchange is None or self.transport is None:
            return
        exchange.response_bytes += len(body)
        if exchange.response_body is not None:
            if len(exchange.response_body) + len(body) > self.server.max_body_bytes:
                exchange.response_body = None
                self.server.count_dropped("body_too_large")
            else:
                exchange.response_body += body
        if self.response_chunked:
            self.write(b"%x\r\n%s\r\n" % (len(body), body))
        else:
            self.write(body)
        if self.deadline:  # an idle timeout between body pieces, not a total one
            self._arm_timer()

    def response_complete(self, upstream: UpstreamProtocol) -> None:
        exchange = self.active
        if exchange is None or not exchange.head_sent:
            return  # an interim 1xx response
        if exchange.method == b"HEAD":
            return  # finished at its head
        self._finish_response(exchange, upstream, reusable=upstream.parser.should_keep_alive())

    def _finish_response(
        self, exchange: Exchange, upstream: UpstreamProtocol, reusable: bool
    ) -> None:
        self._cancel_timer()
        exchange.finished = True
        if self.response_chunked and self.transport is not None:
            self.write(b"0\r\n\r\n")
        self.response_close_delimited = False
        now = time.perf_counter()
        server = self.server
        server.metrics.request_done(
            exchange.status,
            exchange.started,
            exchange.sent,
            now,
            exchange.request_bytes,
            exchange.response_bytes,
        )
        if (
            exchange.monitor
            and exchange.response_body is not None
            and exchange.request_body is not None
        ):
            server.queue.put(
                Record(
                    ts=time.time(),
                    request=bytes(exchange.request_body),
                    response=bytes(exchange.response_body),
                    path=exchange.path,
                    request_id=exchange.request_id,
                )
            )
        self.upstream = None
        upstream.client = None
        if reusable and exchange.request_done:
            server.pool.release(upstream)
        else:
            upstream.close()
        self.active = None
        if not exchange.keep_alive:
            self._close()
            return
        if self.transport is not None:
            # The upstream's back-pressure may have paused reading; an upload answered early
            # must still be read (and dropped) for the client to finish sending it.
            self.transport.resume_reading()
        if self.pending and self.pending[0].expect_continue and self.transport is not None:
            self.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self._start_next()


_REASONS = {
    200: b"OK",
    201: b"Created",
    202: b"Accepted",
    204: b"No Content",
    206: b"Partial Content",
    301: b"Moved Permanently",
    302: b"Found",
    304: b"Not Modified",
    307: b"Temporary Redirect",
    308: b"Permanent Redirect",
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    409: b"Conflict",
    413: b"Payload Too Large",
    415: b"Unsupported Media Type",
    422: b"Unprocessable Entity",
    429: b"Too Many Requests",
    500: b"Internal Server Error",
    501: b"Not Implemented",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
    103: b"Early Hints",
}


class ProxyServer:
    """The proxy listener, its upstream pool and its monitoring queue."""

    def __init__(
        self,
        upstream: str,
        matches: Callable[[str], bool],
        metrics: ProxyObserver,
        queue: RecordQueue,
        *,
        timeout: float = 60.0,
        connect_timeout: float = 5.0,
        max_body_bytes: int = 4 * 1024 * 1024,
        request_id_header: str = "x-request-id",
        generate_ids: bool = False,
        count_parse_error: Callable[[str], None] = lambda reason: None,
        count_dropped: Callable[[str], None] = lambda reason: None,
        upstream_tls: ssl.SSLContext | None = None,
        listen_tls: ssl.SSLContext | None = None,
    ) -> None:
        self.pool = UpstreamPool(upstream, connect_timeout, upstream_tls)
        self.listen_tls = listen_tls
        self.matches = matches
        self.metrics = metrics
        self.queue = queue
        self.timeout = timeout
        self.max_body_bytes = max_body_bytes
        self.request_id_header = request_id_header.lower().encode("latin-1")
        self.generate_ids = generate_ids
        self._id_prefix = f"dg-{os.getpid():x}-{int(time.time()):x}-"
        self._ids = itertools.count(1)
        self.count_parse_error = count_parse_error
        self.count_dropped = count_dropped
        self.connections: set[ClientProtocol] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.Future[None] | None = None
        self.drained = False
        self.drain_counts = (0, 0)  # in-flight exchanges at the drain: (finished, cut off)

    def new_request_id(self) -> str:
        """A request id unique to this process (cheaper than a UUID per request)."""
        return f"{self._id_prefix}{next(self._ids):x}"

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the bound port (useful with port 0)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: ClientProtocol(self),
            host,
            port,
            reuse_address=True,
            backlog=1024,
            ssl=self.listen_tls,
        )
        self._sweeper = asyncio.ensure_future(self._sweep())
        return int(self._server.sockets[0].getsockname()[1])

    async def _sweep(self) -> None:
        """Time out exchanges whose upstream made no progress by their deadline."""
        interval = min(1.0, max(0.02, self.timeout / 8))
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for connection in list(self.connections):
                if (
                    connection.deadline
                    and connection.deadline < now
                    and connection.active is not None
                ):
                    connection._timed_out(connection.active)

    def stop_accepting(self) -> None:
        if self._server is not None:
            self._server.close()

    def in_flight(self) -> int:
        """Exchanges (requests) in progress or waiting on their connection."""
        return sum((c.active is not None) + len(c.pending) for c in self.connections)

    async def drain(self, grace: float) -> tuple[int, int]:
        """Wait up to ``grace`` seconds for in-flight exchanges, then close everything (once).

        Returns how many of the exchanges in flight at the start finished and
        how many were cut off at the deadline (the same pair on later calls).
        """
        if self.drained:
            return self.drain_counts
        self.drained = True
        deadline = time.monotonic() + grace
        started = self.in_flight()
        # Exchanges end in protocol callbacks, not tasks; polling their count is simplest.
        while self.in_flight() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        cut = min(started, self.in_flight())
        self.drain_counts = (started - cut, cut)
        for connection in list(self.connections):
            connection._close()
        self.pool.close()
        if self._sweeper is not None:
            self._sweeper.cancel("proxy stopped")
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self._server is not None:
            await self._server.wait_closed()
        return self.drain_counts
