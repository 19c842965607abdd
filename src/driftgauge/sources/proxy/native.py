"""The native engine (``source.proxy.engine: native``): forwarding in a compiled core, in a
thread of its own outside the GIL (``_native.c``), and everything else as with the Python engine.

The core forwards plain HTTP/1.1 exchanges (a ``Content-Length`` body or none, no ``Expect``,
``Upgrade`` or ``TE``, a well-formed head) and copies the bodies of monitored ones.  A
connection whose next request is anything else is handed over, before any of that request went
upstream, to the Python proxy (:class:`~.server.ProxyServer`), which serves it from then on: the
descriptor and the bytes read from it.  So HTTP/1.0, chunked uploads, ``Expect: 100-continue``,
oversized bodies and malformed heads behave exactly as with the Python engine.

What the core reports (finished exchanges, records, counts, connections handed over) is taken
in batches on the event loop when its wake-up descriptor turns readable: the service metrics,
the monitoring queue and the sampler see the same calls as from the Python engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections.abc import Iterator, Mapping
from functools import partial
from typing import Any

from driftgauge.sources.proxy._native import Core
from driftgauge.sources.proxy.client import ClientProtocol
from driftgauge.sources.proxy.heads import STATUS_LINES
from driftgauge.sources.proxy.server import ProxyServer, listen_socket
from driftgauge.typing import Record

__all__ = ["FieldLines", "NativeProxy", "resolve"]

log = logging.getLogger(__name__)

# How often the upstream's name is looked up again (the core connects to an address), and the
# least time between two lookups (after connects failed).
RESOLVE_INTERVAL = 5.0
RESOLVE_GAP = 1.0

# The core's counters, in its order (_native.c's enum from C_OFFERED on).
DROPPED = ("answered_early", "body_too_large", "queue_full")  # server.DROP_REASONS
UPSTREAM_ERRORS = (
    "connect_refused",
    "connect_timeout",
    "timeout",
    "upstream_reset",
    "bad_response",
)
COUNTERS = (
    "offered",
    "sampled",
    "unknown_path",
    *DROPPED,
    *UPSTREAM_ERRORS,
    "client_stalled",
    "handoffs",
    "accept_paused",
)


class FieldLines(Mapping[str, str]):
    """A head's field lines as the core copied them (``name: value\\r\\n`` each), looked up by name
    in any letter case; split on the first lookup (monitoring's side, not the request path's).
    A name sent more than once reads as its values joined by ``", "``."""

    __slots__ = ("_fields", "_raw")

    def __init__(self, raw: bytes) -> None:
        self._raw = raw
        self._fields: dict[str, str] | None = None

    def _split(self) -> dict[str, str]:
        if self._fields is None:
            fields: dict[str, str] = {}
            for line in self._raw.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name:
                    key = name.decode("latin-1").lower()
                    text = value.strip(b" \t").decode("latin-1")
                    fields[key] = f"{fields[key]}, {text}" if key in fields else text
            self._fields = fields
        return self._fields

    def get(self, name: str, default: Any = None) -> Any:
        if self._fields is None and not self._may_hold(name):
            return default  # the usual lookup (Content-Encoding), answered without a split
        return self._split().get(name.lower(), default)

    def _may_hold(self, name: str) -> bool:
        """False when no line starts with field ``name``: one search of the lines."""
        return f"\n{name}:".lower() in f"\n{self._raw.decode('latin-1')}".lower()

    def __bool__(self) -> bool:
        return bool(self._raw)

    def __getitem__(self, name: str) -> str:
        return self._split()[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._split())

    def __len__(self) -> int:
        return len(self._split())


class _HandedOver(ClientProtocol):
    """A connection the core handed over: the bytes it had read are parsed first."""

    def __init__(self, server: ProxyServer, data: bytes) -> None:
        super().__init__(server)
        self._data = data

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        data, self._data = self._data, b""
        if data and not self.closing:
            self.data_received(data)


async def resolve(host: str, port: int) -> list[tuple[str, int]]:
    """The addresses of ``host``, in the resolver's order (the event loop's, as the Python
    engine's connects use)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [(str(info[4][0]), int(info[4][1])) for info in infos]


def _numeric(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class NativeProxy:
    """The proxy listener served by the native core, with ``python`` for the connections it
    hands over; the same ``start``/``stop_accepting``/``drain`` as :class:`ProxyServer`.

    The core connects to an address; the upstream's name is looked up again every
    ``RESOLVE_INTERVAL`` seconds, and after a connect fails (at most every ``RESOLVE_GAP``), so
    that a Service or DNS name whose address changes is followed, as the Python engine's
    connects, which look it up each time, follow it."""

    def __init__(self, python: ProxyServer) -> None:
        self.python = python
        self.core: Core | None = None
        self.handed_over = 0  # connections served by the Python proxy, in total
        self._connect_failed = asyncio.Event()

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the bound port (useful with port 0)."""
        python = self.python
        pool = python.pool
        try:
            address: tuple[str, int] | None = (await resolve(pool.host, pool.port))[0]
        except OSError as exc:  # socket.gaierror: answered 502 until the name resolves
            log.warning("proxy: upstream %s: %s; answered 502 until it resolves", pool.host, exc)
            address = None
        with listen_socket(host, port) as listener:
            bound = int(listener.getsockname()[1])
            core = self._make_core(listener.fileno(), address)  # the core listens on a copy
        asyncio.get_running_loop().add_reader(core.wake_fd, self.collect)
        python.start_sweeping()
        core.start()
        if not _numeric(pool.host):
            python.spawn(self._follow(core, address))  # cancelled when the proxy stops
        return bound

    async def _follow(self, core: Core, address: tuple[str, int] | None) -> None:
        """Give the core the upstream name's first address whenever its own is no longer among
        those the name resolves to, and the next one after a connect failed (the Python
        engine's connects try each in turn: a server on 127.0.0.1 alone behind a ``localhost``
        that resolves to ``::1`` first is reached)."""
        pool, failed = self.python.pool, self._connect_failed
        loop = asyncio.get_running_loop()
        resolved = address is not None  # the last lookup succeeded (a failure is logged once)
        while True:
            due = loop.time() + RESOLVE_INTERVAL
            await asyncio.sleep(RESOLVE_GAP)  # however often connects fail
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(due):
                    await failed.wait()
            refused = failed.is_set()
            failed.clear()
            try:
                addresses = await resolve(pool.host, pool.port)
            except OSError as exc:  # socket.gaierror: the address known is kept
                if resolved:
                    log.warning("proxy: upstream %s: %s", pool.host, exc)
                resolved = False
            else:
                resolved = True
                if address not in addresses:
                    address = addresses[0]
                elif refused and len(addresses) > 1:
                    address = addresses[(addresses.index(address) + 1) % len(addresses)]
                else:
                    continue
                log.info("proxy: upstream %s: connecting to %s port %d", pool.host, *address)
                core.set_upstream(*address)

    def _make_core(self, listen_fd: int, address: tuple[str, int] | None) -> Core:
        python = self.python
        pool = python.pool
        status_lines = tuple(STATUS_LINES.get(status) for status in range(600))
        self.core = core = Core(
            listen_fd=listen_fd,
            upstream_host=address[0] if address else "",  # "": none yet
            upstream_port=address[1] if address else pool.port,
            host_header=pool.host_header,
            matches=python.matches,
            status_lines=status_lines,
            timeout=python.timeout,
            connect_timeout=pool.connect_timeout,
            client_timeout=python.client_timeout,
            idle_timeout=python.idle_timeout or 0.0,
            max_body_bytes=python.max_body_bytes,
            request_id_header=python.request_id_header,
            # Ids of its own, apart from those the Python proxy makes for connections handed over.
            id_prefix=f"{python.id_prefix}n".encode() if python.generate_ids else None,
            rewrite_host=python.rewrite_host,
            scheme=python.scheme,
            queue_capacity=python.queue.capacity,
            queue_bytes=python.queue.max_bytes,
        )
        return core

    def collect(self) -> None:
        """Take what the core reports: finished exchanges, counts, records, handed-over
        connections."""
        core = self.core
        if core is None:
            return
        records, done, counts, handoffs = core.take()
        python = self.python
        metrics = python.metrics
        for exchange in done:
            metrics.request_done(*exchange)
        counted = dict(zip(COUNTERS, counts, strict=True))
        sampler = python.sampler
        if sampler is not None:
            if counted["offered"]:
                sampler.tally(counted["offered"], counted["sampled"])
            core.set_rate(sampler.rate)
        if counted["unknown_path"]:
            python.count_parse_error("unknown_path", counted["unknown_path"])
        for reason in DROPPED:
            if counted[reason]:
                python.count_dropped(reason, counted[reason])
        for reason in UPSTREAM_ERRORS:
            for _ in range(counted[reason]):
                metrics.upstream_error(reason)
        if counted["connect_refused"] or counted["connect_timeout"]:
            self._connect_failed.set()  # the name may have moved: look it up again
        for _ in range(counted["client_stalled"]):
            metrics.client_error("client_stalled")
        if counted["accept_paused"]:
            python.accept_paused(core.accept_errno, counted["accept_paused"])
        queue = python.queue
        for ts, request, response, path, request_id, fields, response_fields in records:
            queue.put(
                Record(
                    ts=ts,
                    request=request,
                    response=response,
                    path=path.decode("latin-1"),
                    request_id=(
                        request_id.decode("utf-8", "surrogateescape")
                        if request_id is not None
                        else None
                    ),
                    headers=FieldLines(fields),
                    response_headers=FieldLines(response_fields),
                )
            )
        for fd, data in handoffs:
            self.handed_over += 1
            sock = socket.socket(fileno=fd)
            if python.drained:  # handed over as the proxy stopped: too late
                sock.close()
            else:
                python.spawn(python.adopt(sock, partial(_HandedOver, python, data)))

    def stop_accepting(self) -> None:
        if self.core is not None:
            self.core.drain()
        self.python.stop_accepting()

    def in_flight(self) -> int:
        core = self.core
        return (core.in_flight() if core is not None else 0) + self.python.in_flight()

    async def drain(self, grace: float) -> tuple[int, int]:
        """As :meth:`ProxyServer.drain`, over both engines' exchanges: those the core forwards,
        and those of the connections it hands over meanwhile (adopted as they come)."""
        python = self.python
        if python.drained:
            return python.drain_counts
        core = self.core
        if core is None:
            return await python.drain(grace)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        # Over at the end: the exchanges that ended meanwhile (pipelined requests the core holds
        # and those of connections it hands over are not in its in_flight at the start).
        answered = core.answered() + python.answered
        core.drain()
        for connection in list(python.connections):
            connection.shutdown()  # answer what it received, then close (as ProxyServer.drain)
        # Exchanges end in the core's thread and in protocol callbacks: polling is simplest.
        while self.in_flight() and loop.time() < deadline:
            self.collect()
            await asyncio.sleep(0.02)
        finished, cut = core.answered() + python.answered - answered, self.in_flight()
        await python.drain(0.0)  # closes what is left
        loop.remove_reader(core.wake_fd)
        core.stop()
        self.collect()  # the last exchanges counted, the last records queued
        python.drain_counts = (finished, cut)
        return python.drain_counts
