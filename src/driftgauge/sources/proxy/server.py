"""The proxy listener: its client connections, its upstream pool, the sweep that times out
stalled exchanges, and the drain at shutdown."""

from __future__ import annotations

import asyncio
import errno
import itertools
import logging
import math
import os
import socket
import ssl
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from driftgauge.sources.proxy.capture import RecordQueue
from driftgauge.sources.proxy.client import ClientProtocol
from driftgauge.sources.proxy.upstream import UpstreamPool
from driftgauge.sources.sampling import Sampler
from driftgauge.typing import ProxyObserver

__all__ = ["ACCEPT_PAUSE", "DROP_REASONS", "ERROR_REASONS", "ProxyServer", "listen_socket"]

log = logging.getLogger(__name__)

# What count_parse_error may be told: a body sent to a path that is no prediction route.
ERROR_REASONS = ("unknown_path",)
# What count_dropped and its RecordQueue may be told, before a record is routed to a model.
DROP_REASONS = ("answered_early", "body_too_large", "queue_full")
# Out of descriptors (or memory), accept fails while the listener stays readable: accepting again
# at once would spin. Accepting pauses this long, as nginx's does, its clients waiting in the
# backlog; the connections held are served meanwhile. (asyncio's own accept tries each waiting
# connection at once and logs each failure; libuv's, under uvloop, resets them.)
ACCEPT_PAUSE = 0.5
_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_ACCEPT_BATCH = 128  # connections taken in one turn of the loop, the others' turns between


def listen_socket(host: str, port: int) -> socket.socket:
    """A non-blocking TCP listener on ``host:port`` (``::`` and other IPv6 addresses too)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # [::] is an IPv6 listener
    listener = socket.create_server((host, port), family=family, backlog=1024)
    listener.setblocking(False)
    return listener


def _always() -> bool:
    return True


class Count(Protocol):
    """Counts ``n`` events of ``reason`` (the monitor's ``count_dropped`` and
    ``count_parse_error``)."""

    def __call__(self, reason: str, n: int = 1, /) -> None: ...


def _uncounted(reason: str, n: int = 1, /) -> None:
    pass


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
        client_timeout: float = 60.0,
        idle_timeout: float | None = 3600.0,
        max_body_bytes: int = 4 * 1024 * 1024,
        request_id_header: str = "x-request-id",
        generate_ids: bool = False,
        rewrite_host: bool = False,
        count_parse_error: Count = _uncounted,
        count_dropped: Count = _uncounted,
        upstream_tls: ssl.SSLContext | None = None,
        listen_tls: ssl.SSLContext | None = None,
        sampler: Sampler | None = None,
    ) -> None:
        self.pool = UpstreamPool(upstream, connect_timeout, upstream_tls)
        self.listen_tls = listen_tls
        self.scheme = b"https" if listen_tls is not None else b"http"  # X-Forwarded-Proto
        self.rewrite_host = rewrite_host  # Host: the upstream's, not the client's
        self.matches = matches
        self.metrics = metrics
        self.queue = queue
        self.timeout = timeout
        self.client_timeout = client_timeout
        self.idle_timeout = idle_timeout  # a keep-alive connection without a request (None: kept)
        self.max_body_bytes = max_body_bytes
        self.request_id_header = request_id_header.lower().encode("latin-1")
        self.generate_ids = generate_ids
        self.id_prefix = f"dg-{os.getpid():x}-{int(time.time()):x}-"
        self._ids = itertools.count(1)
        # What makes ids for monitored requests that come without one (None: ids are not made).
        self.id_source: Callable[[], str] | None = self.new_request_id if generate_ids else None
        self.count_parse_error = count_parse_error
        self.count_dropped = count_dropped
        # Whether monitoring takes a prediction request, asked before its body is copied.
        self.sampler = sampler
        self.admit: Callable[[], bool] = sampler.admit if sampler is not None else _always
        self.connections: set[ClientProtocol] = set()
        # Client connections closed while their client still sent, read to their end.
        self.lingering: set[asyncio.Transport] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self._listener: socket.socket | None = None
        self._resume: asyncio.TimerHandle | None = None  # accepting again after a pause
        self._sweeper: asyncio.Future[None] | None = None
        self.drained = False
        self.answered = 0  # exchanges over (answered, failed or cut off), in total
        self.drain_counts = (0, 0)  # in-flight exchanges at the drain: (finished, cut off)

    def new_request_id(self) -> str:
        """A request id unique to this process (cheaper than a UUID per request)."""
        return f"{self.id_prefix}{next(self._ids):x}"

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run ``coroutine`` as a task the server keeps (and cancels if it outlives the drain)."""
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the bound port (useful with port 0)."""
        self._listener = listener = listen_socket(host, port)
        asyncio.get_running_loop().add_reader(listener, self._accept)
        self.start_sweeping()
        return int(listener.getsockname()[1])

    def _accept(self) -> None:
        listener = self._listener
        if listener is None:
            return
        for _ in range(_ACCEPT_BATCH):
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno not in _EXHAUSTED:
                    raise
                loop = asyncio.get_running_loop()
                loop.remove_reader(listener)
                self._resume = loop.call_later(ACCEPT_PAUSE, self._accept_again)
                self.accept_paused(exc.errno)
                return
            # asyncio's transports set TCP_NODELAY only where the proto is TCP's; accept's is 0
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.spawn(self.adopt(sock, lambda: ClientProtocol(self)))

    def _accept_again(self) -> None:
        self._resume = None
        if self._listener is not None:
            asyncio.get_running_loop().add_reader(self._listener, self._accept)

    def accept_paused(self, error: int, pauses: int = 1) -> None:
        """Accepting paused ``pauses`` times, out of descriptors (``error``): counted, logged."""
        for _ in range(pauses):
            self.metrics.client_error("accept_paused")
        log.warning(
            "proxy: accept: %s: not accepting connections for %g s (those open are served)",
            os.strerror(error),
            ACCEPT_PAUSE,
        )

    async def adopt(self, sock: socket.socket, protocol: Callable[[], ClientProtocol]) -> None:
        """Serve the accepted connection ``sock`` with ``protocol()`` (TLS first, if listening so)."""
        try:
            await asyncio.get_running_loop().connect_accepted_socket(
                protocol, sock, ssl=self.listen_tls
            )
        except OSError:
            sock.close()  # the client left meanwhile (or failed the TLS handshake)

    def start_sweeping(self) -> None:
        """Time out stalled exchanges and idle connections from now on (:meth:`start` does;
        the native engine, which listens itself, calls it for the connections it hands over)."""
        if self._sweeper is None:
            self._sweeper = asyncio.ensure_future(self._sweep())

    async def _sweep(self) -> None:
        """Time out exchanges whose upstream made no progress by their deadline, and
        connections whose client holds them without a request (ClientProtocol.waiting).

        An upstream is not read while its client does not read what it was sent (back-pressure):
        its deadline starts again, as the client holds it back, not its own slowness; once the
        client has read nothing for ``client_timeout``, both connections are dropped. An
        upstream waiting for the rest of a request body is not timed out either: the client is,
        after ``client_timeout`` without a byte of it.
        """
        shortest = min(self.timeout, self.client_timeout, self.idle_timeout or math.inf)
        interval = min(1.0, max(0.02, shortest / 8))
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for connection in list(self.connections):
                cycle = connection.active
                if cycle is None:
                    if not connection.pending:
                        connection.waiting(now)
                    continue
                connection.waiting_since = 0.0  # an exchange in flight: the client is not idle
                if not cycle.deadline:
                    continue
                flow = connection.flow
                if flow.write_paused and now - flow.write_paused_at >= self.client_timeout:
                    cycle.client_stalled()
                elif not (cycle.request_done or cycle.status or flow.read_paused):
                    # The upstream waits for the body: the deadline was last moved by a piece of
                    # it (or the head), and only the client is late.
                    if now - (cycle.deadline - self.timeout) > self.client_timeout:
                        cycle.body_stalled()
                elif cycle.deadline < now:
                    if flow.write_paused:  # held back by its client, not slow itself
                        cycle.deadline = now + self.timeout
                    else:
                        cycle.timed_out()

    def stop_accepting(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            asyncio.get_running_loop().remove_reader(listener)
            listener.close()
        if self._resume is not None:
            self._resume.cancel()

    def in_flight(self) -> int:
        """Exchanges (requests) in progress or waiting on their connection."""
        return sum((c.active is not None) + len(c.pending) for c in self.connections)

    async def drain(self, grace: float) -> tuple[int, int]:
        """Stop accepting, let each connection finish what it received for up to ``grace``
        seconds, then close what is left (once).

        Returns how many of the exchanges in flight at the start finished and
        how many were cut off at the deadline (the same pair on later calls).
        """
        if self.drained:
            return self.drain_counts
        self.drained = True
        self.stop_accepting()
        deadline = time.monotonic() + grace
        started = self.in_flight()
        for connection in list(self.connections):
            connection.shutdown()
        # Exchanges end in protocol callbacks, not tasks; polling their count is simplest.
        while self.in_flight() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        cut = min(started, self.in_flight())
        self.drain_counts = (started - cut, cut)
        for connection in list(self.connections):
            connection.close()
        for transport in list(self.lingering):
            transport.close()
        self.pool.close()
        tasks = [self._sweeper, *self.tasks] if self._sweeper is not None else [*self.tasks]
        for task in tasks:
            task.cancel("proxy stopped")
        await asyncio.gather(*tasks, return_exceptions=True)
        return self.drain_counts
