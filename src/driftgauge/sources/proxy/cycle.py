"""One request/response exchange going through the proxy, from its parsed head to the end of
its response: sending it upstream (and once more on a stale pooled connection), its idle
timeout, the relay of the response to the client, and the copies monitoring takes."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, cast

from driftgauge.sources.proxy.heads import (
    CONTINUE,
    MAX_FIELDS,
    MAX_HEAD_BYTES,
    chunked_codings,
    error_response,
    last_chunk,
    response_head,
)
from driftgauge.typing import Record

if TYPE_CHECKING:
    from driftgauge.sources.proxy.client import ClientProtocol
    from driftgauge.sources.proxy.server import ProxyServer
    from driftgauge.sources.proxy.upstream import UpstreamProtocol

__all__ = ["Cycle", "HeaderLines"]


class HeaderLines(Mapping[str, str]):
    """Header lines as the proxy read them, looked up by name in any letter case.

    The request path only hands monitoring a reference to the exchange's
    ``(name, value)`` byte pairs; a lookup decodes (Latin-1, as HTTP/1.1
    headers are) on the monitoring side.  A name sent more than once reads
    as its values joined by ``", "``.
    """

    __slots__ = ("_lines",)

    def __init__(self, lines: list[tuple[bytes, bytes]]) -> None:
        self._lines = lines

    def get(self, name: str, default: Any = None) -> Any:
        """The value of ``name``, else ``default`` (without raising and catching a KeyError)."""
        try:
            wanted = name.lower().encode("latin-1")
        except UnicodeEncodeError:
            return default
        size = len(wanted)  # most names differ in length: no lower() for them
        values = [v for key, v in self._lines if len(key) == size and key.lower() == wanted]
        return b", ".join(values).decode("latin-1") if values else default

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return cast(str, value)

    def __bool__(self) -> bool:
        return bool(self._lines)

    def __iter__(self) -> Iterator[str]:
        seen: set[bytes] = set()
        for key, _ in self._lines:
            lower = key.lower()
            if lower not in seen:
                seen.add(lower)
                yield key.decode("latin-1")

    def __len__(self) -> int:
        return len({key.lower() for key, _ in self._lines})


class Cycle:
    """One request/response pair on a client connection; the connection runs one at a time."""

    __slots__ = (
        "buffered",
        "captured_request",
        "captured_response",
        "chunked",
        "client",
        "close_delimited",
        "deadline",
        "expect_continue",
        "finished",
        "generated_id",
        "head",
        "head_fields",
        "head_sent",
        "headers",
        "http10",
        "keep_alive",
        "method",
        "monitor",
        "path",
        "replayable",
        "request_bytes",
        "request_done",
        "request_id",
        "response_bytes",
        "response_chunked",
        "response_head_fields",
        "response_headers",
        "response_reason",
        "sent",
        "server",
        "started",
        "status",
        "url",
    )

    response_headers: list[tuple[bytes, bytes]]
    response_reason: bytes

    def __init__(self, client: ClientProtocol, started: float) -> None:
        self.client = client
        self.server: ProxyServer = client.server
        # The request, as the client sent it and as it goes upstream.
        self.method = b""
        self.url = b""
        self.path = ""
        self.headers: list[tuple[bytes, bytes]] = []  # then a chunked body's trailer fields
        self.head_fields = 0  # how many of ``headers`` the head held
        self.head = b""
        self.chunked = False
        self.keep_alive = True
        self.http10 = False
        self.expect_continue = False
        self.request_id: str | None = None
        self.generated_id = False
        self.buffered: list[bytes] = []  # not sent yet, then kept to replay on a retry
        self.request_done = False
        self.replayable = True
        # What monitoring copies (None: not captured).
        self.monitor = False
        self.captured_request: bytearray | None = None
        self.captured_response: bytearray | None = None
        # The response, as the upstream sends it and as it is relayed (its headers and
        # reason start in response_begin).
        self.response_chunked = False
        self.response_head_fields = 0  # likewise for ``response_headers``
        self.close_delimited = False
        self.status = 0
        self.head_sent = False
        self.finished = False
        # Timing and size, for the observer.
        self.started = started
        self.sent = 0.0
        self.deadline = 0.0  # monotonic time by which the upstream must make progress; 0: none
        self.request_bytes = 0
        self.response_bytes = 0

    # -- the request body, from the client's parser ------------------------

    def request_body(self, body: bytes) -> None:
        self.request_bytes += len(body)  # after the answer too: the sweep sees the client send
        if self.finished:
            return  # answered before its body was all in (e.g. a 413): the rest goes nowhere
        captured = self.captured_request
        if captured is not None:
            if len(captured) + len(body) > self.server.max_body_bytes:
                self.captured_request = None
                self.monitor = False
                self.server.count_dropped("body_too_large")
            else:
                captured += body
        piece = b"%x\r\n%s\r\n" % (len(body), body) if self.chunked else body
        client = self.client
        if self is client.active and client.upstream is not None and self.sent:
            client.write_upstream(piece)
            self.keep_for_replay(piece)
            # The upstream waits on the client: not its own slowness.
            self.deadline = time.monotonic() + self.server.timeout
        else:
            self.buffered.append(piece)

    def request_complete(self) -> None:
        self.request_done = True
        if self.chunked and not self.finished:
            end = last_chunk(self.headers, self.head_fields)
            client = self.client
            if self is client.active and client.upstream is not None and self.sent:
                client.write_upstream(end)
                self.keep_for_replay(end)
                self.deadline = time.monotonic() + self.server.timeout
            else:
                self.buffered.append(end)

    def keep_for_replay(self, piece: bytes) -> None:
        """Keep a copy of what went upstream, so a stale pooled connection can be retried."""
        if not self.replayable:
            return
        if self.request_bytes > self.server.max_body_bytes:
            self.replayable = False
            self.buffered = []
        else:
            self.buffered.append(piece)

    # -- sending upstream --------------------------------------------------

    async def connect_and_send(self) -> None:
        """Open a new upstream connection and send the request on it."""
        client = self.client
        pool = self.server.pool
        try:
            connection = await pool.connect()
        except (TimeoutError, OSError) as exc:
            reason = "connect_timeout" if isinstance(exc, TimeoutError) else "connect_refused"
            if self is client.active:
                self.fail(502, reason, "upstream unavailable")
            return
        if client.closing or self is not client.active:
            pool.release(connection)
            return
        connection.reused = False
        self.send(connection)

    def send(self, connection: UpstreamProtocol) -> None:
        client = self.client
        holding = client.held_upstream is not None
        client.flush_upstream()  # anything held belongs to the previous connection
        if holding:  # the rest of this read (the body, usually) joins the head in one send
            client.held_upstream = []
        client.upstream = connection
        connection.attach(self)
        # ``buffered`` is kept after sending: the copy to replay on a retry
        data = b"".join((self.head, *self.buffered))
        if client.held_upstream is not None:  # the rest of this read joins it in one send
            client.held_upstream.append(data)
        else:
            connection.transport.write(data)
        self.sent = time.perf_counter()
        # A deadline checked by the server's sweep: cheaper than a timer handle per step.
        self.deadline = time.monotonic() + self.server.timeout

    def timed_out(self) -> None:
        """The upstream made no progress by the deadline: drop its connection, answer 504."""
        if self is self.client.active:
            self.drop_upstream()
            self.fail(504, "timeout", "upstream timed out")

    def body_stalled(self) -> None:
        """The client sent none of the request body the upstream waits for in ``client_timeout``:
        drop the upstream connection (it holds part of a request), answer 408."""
        if self is self.client.active:
            self.drop_upstream()
            self.server.metrics.client_error("client_stalled")
            self.answer(408, "client_stalled", "request body not received in time")

    def drop_upstream(self) -> None:
        client = self.client
        upstream, client.upstream = client.upstream, None
        if upstream is not None:
            upstream.cycle = None
            upstream.close()

    def count_done(self, status: int) -> None:
        """The exchange in the service metrics: its status (0: cut off), timings and sizes."""
        self.server.answered += 1
        self.server.metrics.request_done(
            status,
            self.started,
            self.sent,
            time.perf_counter(),
            self.request_bytes,
            self.response_bytes,
        )

    def client_stalled(self) -> None:
        """The client read none of its response for ``client_timeout``: drop both connections.

        Aborted, not closed: a close would wait to send what the client does not read.
        """
        client = self.client
        if self is not client.active:
            return
        self.deadline = 0.0
        self.finished = True
        self.server.metrics.client_error("client_stalled")
        self.count_done(0)
        client.active = None
        client.closing = True
        client.transport.abort()  # connection_lost drops the upstream connection too

    def upstream_lost(self, upstream: UpstreamProtocol) -> None:
        """The upstream connection closed while serving this exchange."""
        client = self.client
        client.upstream = None
        if self is not client.active:
            return
        if self.close_delimited and self.head_sent:
            self.finish_response(upstream, reusable=False)
            return
        if upstream.reused and not upstream.received_any and self.replayable and self.request_done:
            self.server.spawn(self.connect_and_send())  # stale pooled connection: retry once
            return
        self.fail(502, "upstream_reset", "upstream closed the connection")

    def fail(self, status: int, reason: str, message: str) -> None:
        """Answer for the upstream, counted; if its head already went out, only closing is left."""
        self.server.metrics.upstream_error(reason)
        self.answer(status, reason, message)

    def answer(self, status: int, reason: str, message: str) -> None:
        """Answer in the upstream's place; if its head already went out, only closing is left."""
        self.deadline = 0.0
        self.finished = True
        client = self.client
        if self.head_sent:
            self.count_done(0)
            client.active = None
            client.close()
            return
        client.write(error_response(status, reason, message))
        self.count_done(status)
        client.active = None
        # HTTP/1.0 keeps its connection only when told so, which this answer does not.
        if not self.keep_alive or self.http10 or not self.request_done:
            client.close()
        else:
            self.start_next()

    # -- the response, from the upstream's parser --------------------------

    def response_begin(self) -> None:
        self.response_headers = []
        self.response_reason = b""

    def response_headers_complete(self, upstream: UpstreamProtocol) -> None:
        client = self.client
        headers = self.response_headers
        has_length = any(n.lower() == b"content-length" for n, _ in headers)
        transfer = [v for n, v in headers if n.lower() == b"transfer-encoding"]
        parser = upstream.parser
        status = parser.get_status_code()
        # What the parser lets through and the native core refuses is refused here too: framing
        # that could be read two ways, an HTTP version it does not speak, a status outside
        # 100-999 or a 101 no upgrade was asked for (relayed, the client would switch), and a
        # head past the core's bounds (the status line and fields as read, near enough).
        if (
            (transfer and (has_length or not chunked_codings(transfer)))
            or parser.get_http_version() not in ("1.0", "1.1")
            or status < 100
            or status == 101
            or len(headers) > MAX_FIELDS
            or len(self.response_reason) + sum(len(n) + len(v) + 4 for n, v in headers) + 17
            > MAX_HEAD_BYTES
        ):
            client.upstream_failed(upstream, "bad_response")
            return
        if 100 <= status < 200:
            # 100 Continue was answered by us; pass on e.g. 103 Early Hints, but not to HTTP/1.0,
            # which knows no interim responses (RFC 9110, 15.2).
            if status != 100 and not self.http10:
                client.write(response_head(status, self.response_reason, self.response_headers))
            return
        self.status = status
        self.deadline = time.monotonic() + self.server.timeout
        self.response_head_fields = len(headers)
        upstream_chunked = bool(transfer)
        no_body = self.method == b"HEAD" or status in (204, 304)
        self.close_delimited = not has_length and not upstream_chunked and not no_body
        self.response_chunked = (upstream_chunked or self.close_delimited) and not no_body
        if self.response_chunked and self.http10:
            self.response_chunked = False
            self.keep_alive = False
        if self.monitor and 200 <= status < 300:
            self.captured_response = bytearray()
        id_line = b""
        if self.generated_id and self.request_id is not None:
            name = self.server.request_id_header
            if not any(n.lower() == name for n, _ in headers):  # not echoed by the upstream
                id_line = b"%s: %s\r\n" % (name, self.request_id.encode())
        # HTTP/1.0 closes after each answer unless told it stays open; HTTP/1.1 keeps it open.
        connection = b"close" if not self.keep_alive else b"keep-alive" if self.http10 else b""
        framing = b""
        if self.response_chunked:  # the upstream's codings (gzip stays in the bytes), or ours
            framing = b", ".join(transfer).rstrip(b" ") if upstream_chunked else b"chunked"
        client.write(
            response_head(status, self.response_reason, headers, id_line, framing, connection)
        )
        self.head_sent = True
        if self.method == b"HEAD":
            self.finish_response(upstream, reusable=upstream.parser.should_keep_alive())

    def response_body(self, body: bytes) -> None:
        self.response_bytes += len(body)
        captured = self.captured_response
        if captured is not None:
            if len(captured) + len(body) > self.server.max_body_bytes:
                self.captured_response = None
                self.server.count_dropped("body_too_large")
            else:
                captured += body
        if self.response_chunked:
            self.client.write(b"%x\r\n%s\r\n" % (len(body), body))
        else:
            self.client.write(body)
        if self.deadline:  # an idle timeout between body pieces, not a total one
            self.deadline = time.monotonic() + self.server.timeout

    def response_complete(self, upstream: UpstreamProtocol) -> None:
        if not self.head_sent:
            return  # an interim 1xx response
        if self.method == b"HEAD":
            return  # finished at its head
        self.finish_response(upstream, reusable=upstream.parser.should_keep_alive())

    def finish_response(self, upstream: UpstreamProtocol, reusable: bool) -> None:
        """The response is all relayed: report it, hand it to monitoring, free the upstream."""
        self.deadline = 0.0
        self.finished = True
        client = self.client
        if self.response_chunked:
            client.write(last_chunk(self.response_headers, self.response_head_fields))
        server = self.server
        self.count_done(self.status)
        if (
            self.monitor
            and self.captured_response is not None
            and self.captured_request is not None
        ):
            if self.request_done:
                server.queue.put(
                    Record(
                        ts=time.time(),
                        request=bytes(self.captured_request),
                        response=bytes(self.captured_response),
                        path=self.path,
                        request_id=self.request_id,
                        # Monitoring reads Content-Encoding (and Content-Type) off these.
                        headers=HeaderLines(self.headers),
                        response_headers=HeaderLines(self.response_headers),
                    )
                )
            else:  # answered before the client sent all of its body: monitoring holds part of it
                server.count_dropped("answered_early")
        client.upstream = None
        upstream.cycle = None
        if reusable and self.request_done:
            server.pool.release(upstream)
        else:
            upstream.close()
        client.active = None
        if not self.keep_alive:
            client.close()
            return
        self.start_next()

    def start_next(self) -> None:
        """This exchange is answered: start the connection's next one."""
        client = self.client
        # The upstream's back-pressure may have paused reading; an upload answered early
        # must still be read (and dropped) for the client to finish sending it.
        client.flow.resume_reading()
        if client.pending and client.pending[0].expect_continue:
            client.write(CONTINUE)  # it waits for this to send its body
        client.start_next()
