"""The client side of the proxy: one asyncio ``Protocol`` per downstream connection.

It receives the transport's and the request parser's callbacks, starts one
:class:`~.cycle.Cycle` per request, runs pipelined requests one after
another, and batches what goes out on each side into one send per read.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import TYPE_CHECKING, cast

import httptools

from driftgauge.sources.proxy.cycle import Cycle
from driftgauge.sources.proxy.flow import FlowControl
from driftgauge.sources.proxy.heads import (
    BODY_METHODS,
    CONTINUE,
    MAX_HEAD_BYTES,
    error_response,
    h2c_replay,
    request_head,
)

if TYPE_CHECKING:
    from driftgauge.sources.proxy.server import ProxyServer
    from driftgauge.sources.proxy.upstream import UpstreamProtocol

__all__ = ["ClientProtocol", "Lingering"]

# How long a connection closed while its client was still sending reads on (Lingering).
LINGER_SECONDS = 10.0


class Lingering(asyncio.Protocol):
    """A client connection the proxy is done with while its client still sends (a request answered
    before it was all in): its answer sent and its writing side closed, it reads and drops the
    rest, and closes at the client's end or after ``LINGER_SECONDS``.

    Closing at once with bytes unread resets the connection, and a client that sends its whole
    request before reading (Python's http.client) never reads the answer (RFC 9112, 9.6: close
    in stages).
    """

    def __init__(self, transport: asyncio.Transport, lingering: set[asyncio.Transport]) -> None:
        self._transport = transport
        self._lingering = lingering
        lingering.add(transport)
        self._timer = asyncio.get_running_loop().call_later(LINGER_SECONDS, transport.close)

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool | None:
        return None  # the client is done too: close

    def connection_lost(self, exc: Exception | None) -> None:
        self._timer.cancel()
        self._lingering.discard(self._transport)


class ClientProtocol(asyncio.Protocol):
    """One downstream client connection."""

    transport: asyncio.Transport  # from connection_made, before any other callback
    flow: FlowControl

    def __init__(self, server: ProxyServer) -> None:
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.current: Cycle | None = None  # the request being parsed
        self.pending: collections.deque[Cycle] = collections.deque()  # parsed, not started
        self.active: Cycle | None = None  # the exchange in progress
        self.upstream: UpstreamProtocol | None = None  # the connection serving ``active``
        self.peer = b""
        self.held: list[bytes] | None = None  # client writes held back to go out in one send
        self.held_upstream: list[bytes] | None = None  # likewise towards the upstream
        self.closing = False
        self.last_parsed = False  # a request that ends the connection was parsed: read no more
        self.draining = False
        self.replay: bytes | None = None  # an ignored h2c offer's head, to parse again without it
        self.rejection: bytes | None = None  # the answer to a bad request, after those before it
        self.head_bytes = 0  # bytes of the request head being parsed, but the read it began in
        # For the server's sweep: how many requests began here; since when (monotonic) it has
        # seen the connection wait on its client (0.0: not seen so), and how far it had got.
        self.requests = 0
        self.waiting_since = 0.0
        self.waiting_at = (0, 0)  # (requests, body bytes of the request being read)

    # -- client transport -------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        self.flow = FlowControl(transport)
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]).encode() if peer else b""
        if self.server.drained:  # accepted just before the listener closed: too late
            self.close()
            return
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.release()

    def release(self) -> None:
        """The connection serves no more exchanges: drop it from the server, and its upstream."""
        self.server.connections.discard(self)
        self.closing = True
        self.active = None  # an exchange still connecting upstream must not answer it
        upstream = self.upstream
        if upstream is not None:
            upstream.cycle = None
            upstream.close()  # mid-exchange: the upstream connection is out of step
            self.upstream = None

    def data_received(self, data: bytes) -> None:
        self.held_upstream = []
        cycle = self.current
        try:
            self.feed(data)
        except httptools.HttpParserUpgrade:
            self.flush_upstream()
            self._reject(400, "upgrade_unsupported", "protocol upgrades are not proxied")
        except httptools.HttpParserError:
            self.flush_upstream()
            # The parser refuses bytes after a request that closes the connection: requests sent
            # after it are not processed (RFC 9112, 9.6), but it is still answered.
            if not self.last_parsed:
                self._reject(400, "bad_request", "malformed HTTP request")
        else:
            self.flush_upstream()
            # A head that was coming in before this read and still is: all of it was head.
            if cycle is not None and cycle is self.current and not cycle.head:
                self.head_bytes += len(data)
                if self.head_bytes > MAX_HEAD_BYTES:
                    self._reject(431, "head_too_large", "request head too large")

    def feed(self, data: bytes) -> None:
        """Parse ``data``; an offer to upgrade to h2c is parsed again as the HTTP/1.1 request it also is.

        The parser stops after the head of any upgrade request, leaving its body
        unread; for an h2c offer the head is fed again without ``Upgrade`` to a
        new parser, followed by what came after it.
        """
        while True:
            try:
                self.parser.feed_data(data)
                return
            except httptools.HttpParserUpgrade as upgrade:
                replay, self.replay = self.replay, None
                if replay is None:
                    raise
                self.parser = httptools.HttpRequestParser(self)
                data = replay + data[upgrade.args[0] :]

    def eof_received(self) -> bool | None:
        # A client may half-close after its last request: answer what is in flight, every
        # pipelined request in order, then close after the last of them.
        last = self.pending[-1] if self.pending else self.active
        if last is None:
            return None
        if self.rejection is None:  # else the rejection, answered after them, closes
            last.keep_alive = False
        return True

    def pause_writing(self) -> None:
        upstream = self.upstream
        self.flow.pause_writing(upstream.flow if upstream is not None else None)

    def resume_writing(self) -> None:
        upstream = self.upstream
        self.flow.resume_writing(upstream.flow if upstream is not None else None)

    # -- writes, batched --------------------------------------------------

    def write(self, data: bytes) -> None:
        """To the client: held while a batch of upstream bytes is parsed, then sent at once."""
        if self.held is not None:
            self.held.append(data)
        else:
            self.transport.write(data)

    def flush(self) -> None:
        held, self.held = self.held, None
        if held:
            self.transport.write(held[0] if len(held) == 1 else b"".join(held))

    def write_upstream(self, data: bytes) -> None:
        """To the upstream: held while a batch of client bytes is parsed, then sent at once."""
        if self.held_upstream is not None:
            self.held_upstream.append(data)
        elif self.upstream is not None:
            self.upstream.transport.write(data)

    def flush_upstream(self) -> None:
        held, self.held_upstream = self.held_upstream, None
        if held and self.upstream is not None:
            self.upstream.transport.write(held[0] if len(held) == 1 else b"".join(held))

    # -- the connection's life --------------------------------------------

    def close(self, linger: bool = False) -> None:
        """Send what is held and close; while the client is still sending (a request not all
        read, or ``linger``), its writing side only, then it lingers (:class:`Lingering`)."""
        if self.closing:
            return
        self.closing = True
        self.flush()
        transport = self.transport
        if (linger or self.current is not None) and transport.can_write_eof():
            self.release()
            transport.set_protocol(Lingering(transport, self.server.lingering))
            try:
                transport.write_eof()
            except OSError:  # reset by the client while not read (asyncio's loop)
                transport.abort()
                return
            self.flow.resume_reading()
        else:
            transport.close()

    def shutdown(self) -> None:
        """The proxy is stopping: answer what was received (pipelined requests too), then close."""
        self.draining = True
        if self.active is None and not self.pending:
            self.close()

    def waiting(self, now: float) -> None:
        """The server's sweep found no exchange in progress: close the connection if its client
        has held it for too long without sending.

        A new connection gets ``client_timeout`` for its first request and a keep-alive one
        ``idle_timeout`` (None: no limit) for the next, closed without an answer (RFC 9112,
        9.6); a head begun and not finished in ``client_timeout`` is answered 408, as nginx's
        ``client_header_timeout``, and a body the upstream already answered that gets no byte
        for ``client_timeout`` is closed. The clock starts again at the first sweep that sees
        the connection waiting with a new request or body byte since (one count per request,
        no clock read), so it closes no earlier than the limit after the client's last send.
        """
        if self.closing:
            return
        cycle = self.current
        at = (self.requests, cycle.request_bytes if cycle is not None else 0)
        if not self.waiting_since or at != self.waiting_at:
            self.waiting_since = now
            self.waiting_at = at
            return
        waited = now - self.waiting_since
        server = self.server
        if cycle is None:
            limit = server.idle_timeout if self.requests else server.client_timeout
            if limit is not None and waited > limit:
                self.close()
        elif waited > server.client_timeout:
            if not cycle.head:
                self._reject(408, "client_stalled", "request head not received in time")
            else:  # answered before its body was all in: the answer is out, only closing is left
                server.metrics.client_error("client_stalled")
                self.close()

    def start_next(self) -> None:
        """Start the next pipelined exchange, if none is in progress."""
        if self.active is not None or self.closing:
            return
        if not self.pending:
            if self.rejection is not None:
                self.write(self.rejection)
                self.close(linger=True)
            elif self.draining:
                self.close()
            return
        cycle = self.pending.popleft()
        self.active = cycle
        server = self.server
        connection = server.pool.take_idle()
        if connection is not None:
            connection.reused = True
            cycle.send(connection)
        else:
            server.spawn(cycle.connect_and_send())

    def upstream_failed(self, upstream: UpstreamProtocol, reason: str) -> None:
        """The upstream broke the protocol: drop the connection, answer for the exchange."""
        upstream.cycle = None
        upstream.close()
        self.upstream = None
        if self.active is not None:
            self.active.fail(502, reason, "bad response from upstream")

    def _reject(self, status: int, reason: str, message: str) -> None:
        self.server.metrics.client_error(reason)
        active = self.active
        if active is self.current and active is not None:
            # Its own body is malformed: the upstream never gets the rest, so it is answered
            # now (unless the upstream already began), as nginx does, not timed out.
            active.drop_upstream()
            active.answer(status, reason, message)
            return
        if active is not None:
            # Pipelined behind requests still being answered: they are answered first, in
            # order (RFC 9112, 9.3.2), then this, as nginx does and the native core (which
            # hands the connection over only once they are); a request whose body is what was
            # malformed is not started.
            if self.pending and self.pending[-1] is self.current:
                self.pending.pop()
            self.rejection = error_response(status, reason, message)
            self.last_parsed = True
            self.flow.pause_reading()
            return
        self.write(error_response(status, reason, message))
        self.close(linger=True)

    # -- request parsing (httptools callbacks) ----------------------------

    def on_message_begin(self) -> None:
        self.current = Cycle(self, time.perf_counter())
        self.head_bytes = 0
        self.requests += 1

    def on_url(self, url: bytes) -> None:
        assert self.current is not None
        self.current.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.current is not None
        self.current.headers.append((name, value))

    def on_headers_complete(self) -> None:
        cycle = self.current
        assert cycle is not None
        server = self.server
        parser = self.parser
        if parser.should_upgrade():
            # Never started: the parser stops after this head. An h2c offer is then parsed again
            # without it (RFC 9113, 3.2: a server without HTTP/2 answers as if it were absent);
            # any other upgrade (WebSocket, CONNECT) is answered 400 by data_received.
            self.replay = h2c_replay(
                parser.get_method(), cycle.url, parser.get_http_version(), cycle.headers
            )
            self.current = None
            return
        cycle.head_fields = len(cycle.headers)
        cycle.method = method = parser.get_method()
        cycle.keep_alive = parser.should_keep_alive()
        cycle.http10 = parser.get_http_version() == "1.0"
        cycle.path = path = cycle.url.split(b"?", 1)[0].decode("latin-1")
        body_method = method in BODY_METHODS
        predicted = body_method and server.matches(path)
        # A ValueError (a body of no known length) stops the parser: data_received answers 400.
        (
            cycle.head,
            cycle.chunked,
            length,
            expect_continue,
            cycle.request_id,
            cycle.generated_id,
        ) = request_head(
            method,
            cycle.url,
            cycle.headers,
            self.peer,
            server.pool.host_header,
            server.request_id_header,
            server.id_source if predicted else None,
            server.scheme,
            server.rewrite_host,
            cycle.http10,
        )
        # HTTP/1.0 knows no interim responses: it must not get a 100 (RFC 9110, 10.1.1).
        cycle.expect_continue = expect_continue and not cycle.http10
        if predicted:
            if length is not None and length > server.max_body_bytes:
                server.count_dropped("body_too_large")
            elif server.admit():  # under overload, a uniform sample (sources/sampling.py)
                cycle.monitor = True
                cycle.captured_request = bytearray()
        elif body_method:
            server.count_parse_error("unknown_path")
        self.pending.append(cycle)
        if self.active is None:
            if cycle.expect_continue:
                self.write(CONTINUE)
            self.start_next()

    def on_body(self, body: bytes) -> None:
        assert self.current is not None
        self.current.request_body(body)

    def on_message_complete(self) -> None:
        cycle = self.current
        if cycle is None:  # a protocol upgrade, refused (on_headers_complete)
            return
        cycle.request_complete()
        self.current = None
        if not cycle.keep_alive:
            self.last_parsed = True
            self.flow.pause_reading()
