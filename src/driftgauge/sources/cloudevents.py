"""The ``cloudevents`` source: receive KServe's payload logger, pair request and response events.

What KServe's logger sends (kserve/kserve ``pkg/logger/handler.go``, ``worker.go``,
``types.go`` as of commit 0217bdab; the agent's flags in ``cmd/agent/main.go``): for every inference call it queues
a request event and, only when the model answered 200, a response event, and its workers POST
each one on its own, in CloudEvents 1.0 *binary* mode (sdk-go ``WithEncodingBinary``):

* ``ce-specversion: 1.0``, ``ce-id`` (the caller's ``Ce-Id`` header, else a fresh UUID: the
  same for the request and its response), ``ce-type`` ``org.kubeflow.serving.inference.request``
  or ``org.kubeflow.serving.inference.response``, ``ce-source`` (``--source-uri``, by default
  ``http://localhost:9081/``), ``ce-time`` (sdk-go ``WithTimeNow``);
* extensions ``ce-inferenceservicename``, ``ce-namespace``, ``ce-component`` (predictor,
  transformer or explainer), ``ce-endpoint`` (default or canary), ``ce-metadata`` (a JSON
  object of the request headers listed in ``metadataHeaders``) and, when the InferenceService
  has any, ``ce-annotations`` (JSON);
* ``Content-Type``: the *inference request's* Content-Type, for the response event too; the
  body: the request or response body, unchanged.

The HTTP path of the inference call is not sent, so records carry ``path=""`` (the protocol
adapters take any body then, as for a tail log without paths).  They carry instead, as their
``headers`` (in the binary binding's spelling, ``ce-inferenceservicename`` and so on), the
request event's origin: ``source``, ``inferenceservicename``, ``namespace``, ``component`` and
``endpoint``; with several models the sidecar routes each record to the model named after its
InferenceService, by its namespace and component (:mod:`driftgauge.monitor.route`).  Events pair by id within one origin
(:mod:`driftgauge.sources.pairing`): a transformer's and a predictor's events, or two services'
whose callers set the same ``Ce-Id``, never pair with each other.  The workers send each event
once: no retries, whatever the answer, but they are few (5) behind a 100-entry queue that
blocks the model's request path when full, so this source answers at once and does all work
after answering.  A sender that does retry replays events: those of a pair already made are
counted as duplicates, not monitored twice.

Answers: 200 (empty) to every POST that is a CloudEvent by its headers (``ce-specversion``, or
a ``Content-Type`` of ``application/cloudevents+json`` or ``application/cloudevents-batch+json``),
even when an event in it is unusable: that is counted, never reported back (KServe's worker
only treats 200 as success in its log line, and a retrying sender must not resend garbage).
A POST that is no CloudEvent at all gets 400; another method 405.  Counted reasons, passed to
``on_error`` (``driftgauge_source_parse_errors_total{reason}``): ``cloudevents_not_cloudevent``,
``cloudevents_body_too_large``, ``cloudevents_invalid_envelope``, ``cloudevents_missing_id``,
``cloudevents_unknown_type``, ``cloudevents_invalid_data``, ``cloudevents_duplicate``,
``cloudevents_unpaired_request``, ``cloudevents_unpaired_response``,
``cloudevents_forward_failed``, ``cloudevents_forward_dropped``, and
``cloudevents_incomplete`` for a POST whose sender closed the connection before its body
ended, or whose body stopped arriving (``BODY_IDLE_SECONDS`` to twice that without a byte:
answered 408, one warning line; nothing of it is read or forwarded), and
``cloudevents_bad_request`` for a message aiohttp's HTTP parser refuses (a malformed chunk
size, a header line too long: answered 400, logged as one warning line naming the peer, not a
traceback; aiohttp's compiled parser never reports a bad chunk after the body began, so that
body stops arriving).  Paired records wait for the
batcher in a list bounded by ``max_pending``; beyond it they are dropped and passed to
``on_dropped`` as ``cloudevents_overload`` (``driftgauge_source_dropped_total{reason}``).  With a
``sampler`` (:mod:`driftgauge.sources.sampling`), each pair is first admitted or not with the
sampler's rate, before its bodies are parsed: under overload a uniform sample of the pairs is
monitored (the rest counted as ``sampled`` by the sampler) instead of whole bursts dropped.
The sampler reads :meth:`CloudEventsSource.backlog`: how long the oldest paired record has
waited for the batcher, against ``BEHIND_SECONDS``.  Not how full the list is: the consumer
gathers pairs on purpose for up to ``BATCH_DELAY`` before each batch, and with a small
``max_pending`` a gathered batch, even one pair, would read as a list filling up.  A pair
waits far longer than the gathering only when monitoring cannot keep up, whatever
``max_pending`` is.  A gathered batch is also kept under ``BATCH_FILL`` of ``max_pending``, so
gathering never overflows the list.

With ``forward``, every POST read (up to ``max_body_bytes``) is also sent on, unchanged (method,
headers but hop-by-hop ones and Host, body; a body with a Content-Encoding as read, decoded,
without that header), from a bounded queue by a few background workers with a timeout: a slow
or dead target never slows the answers; a full queue drops (counted).

With ``tls`` the listener speaks https (KServe's logger posts to an https URL with the CA from
its ``certName``); with ``ca_file`` an https forward target may use a private CA.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import math
import re
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_to_bytes

from aiohttp import ClientError, ClientSession, ClientTimeout, web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import CIMultiDict

from driftgauge.config import CloudEventsConfig
from driftgauge.jsonbody import decode_json
from driftgauge.sources.bodies import BODY_IDLE_SECONDS, read_body
from driftgauge.sources.pairing import Kind, PairingStore
from driftgauge.sources.sampling import QUEUE_LOW, Sampler, capped_pause
from driftgauge.sources.serverlog import ServerLog
from driftgauge.sources.tail import parse_timestamp
from driftgauge.typing import Record

__all__ = [
    "BATCH_CONTENT_TYPE",
    "DROP_REASONS",
    "ERROR_REASONS",
    "REQUEST_TYPE",
    "RESPONSE_TYPE",
    "STRUCTURED_CONTENT_TYPE",
    "CloudEventsSource",
    "Event",
    "Forwarder",
    "is_cloudevent",
    "parse_events",
]

log = logging.getLogger(__name__)

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"
_KINDS: dict[str, Kind] = {REQUEST_TYPE: "request", RESPONSE_TYPE: "response"}
# What on_error may be told (see the module docstring).
ERROR_REASONS = tuple(
    f"cloudevents_{reason}"
    for reason in (
        "not_cloudevent",
        "body_too_large",
        "invalid_envelope",
        "missing_id",
        "unknown_type",
        "invalid_data",
        "duplicate",
        "unpaired_request",
        "unpaired_response",
        "forward_failed",
        "forward_dropped",
        "incomplete",
        "bad_request",
    )
)
# What on_dropped may be told, before a record is routed to a model.
DROP_REASONS = ("cloudevents_overload",)

FORWARD_WORKERS = 4
# KServe's logger bounds neither ce-metadata (the logged request headers) nor ce-annotations;
# Go's servers take headers up to 1 MiB (net/http DefaultMaxHeaderBytes), aiohttp's 8 KiB lines.
MAX_HEADER_BYTES = 1 << 20
BATCH_DELAY = 0.02  # paired records gather this long before one on_records call ...
MAX_BATCH = 256  # ... or until there are this many ...
BATCH_FILL = 0.05  # ... or this share of max_pending (at least one record)
SLICE_SECONDS = 0.005  # on_records calls are sized to take about this long on the loop
# A pair that has waited this long reads to the sampler as a full list (3 s): the consumer is
# behind once a pair waits QUEUE_LOW of it, 15 times the gathering (a loop stall of a few
# tens of milliseconds is not, nor a process starved of CPU for a moment: at 5 times, 100 ms,
# two busy cores beside the test suite sampled pairs away), far behind from QUEUE_HIGH of it
# (the rate then halves).
BEHIND_SECONDS = 15 * BATCH_DELAY / QUEUE_LOW
# The attributes KServe's logger stamps alike on a call's request and response events: where
# the events come from.  Kept with each record as headers, in the binary binding's spelling.
ORIGIN_ATTRIBUTES = ("source", "inferenceservicename", "namespace", "component", "endpoint")
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "expect",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "content-encoding",  # the body is read decoded, and goes on so
    }
)


@dataclass(frozen=True, slots=True)
class Event:
    """One received CloudEvent: what pairing needs of it."""

    id: str
    type: str
    time: str | None
    data: Any  # bytes (binary mode, data_base64), a JSON value (structured ``data``) or None
    # ORIGIN_ATTRIBUTES the event has, by their binary-mode header names ("ce-component"...).
    origin: Mapping[str, str] = field(default_factory=dict)
    # A binary-mode id that was percent-decoded, as sent: what a sender that does not encode
    # meant, and pairs with a structured event of that id (sources/pairing.py).
    sent: str | None = None


def _media_type(headers: Mapping[str, str]) -> str:
    return headers.get("Content-Type", "").partition(";")[0].strip().lower()


def is_cloudevent(headers: Mapping[str, str]) -> bool:
    """True when the headers say binary mode (``ce-specversion``) or a structured/batch body."""
    media = _media_type(headers)
    return "ce-specversion" in headers or media.startswith("application/cloudevents")


_ORIGIN_HEADERS = tuple(f"ce-{name}" for name in ORIGIN_ATTRIBUTES)


# A header value as the HTTP binding (3.1.3.2) encodes it: printable ASCII but space, '"' and
# '%', and escapes ("%C3%A9").
_ENCODED = re.compile(r"(?:[!#$&-~]|%[0-9A-Fa-f]{2})*")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        return None
    value = value.strip(" \t")
    # One round of percent-decoding, for a value the binding's encoding could have made.  Any
    # other ("100%", "a%2F b", escapes of bytes that are no UTF-8) comes from a sender that does
    # not encode (sdk-go: KServe's logger; the Python SDK's 1.x API) and is taken as sent, as
    # its structured events carry it.  An id of escapes alone ("a%2Fb") may be either: read
    # decoded, it keeps its spelling as sent for pairing (Event.sent).
    if "%" not in value or _ENCODED.fullmatch(value) is None:
        return value
    try:
        return unquote_to_bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        return value


def _from_envelope(envelope: Any) -> Event | str:
    """A structured-mode event (a JSON object) as an Event, or the reason it is not one."""
    if not isinstance(envelope, dict) or not isinstance(envelope.get("specversion"), str):
        return "cloudevents_invalid_envelope"
    event_id, event_type = envelope.get("id"), envelope.get("type")
    if not isinstance(event_id, str) or not event_id:
        return "cloudevents_missing_id"
    if not isinstance(event_type, str):
        return "cloudevents_unknown_type"
    when = envelope.get("time")
    data: Any = envelope.get("data")
    if "data_base64" in envelope:
        try:
            data = base64.b64decode(envelope["data_base64"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            return "cloudevents_invalid_data"
    origin = {
        f"ce-{name}": value
        for name in ORIGIN_ATTRIBUTES
        if isinstance(value := envelope.get(name), str)
    }
    return Event(event_id, event_type, when if isinstance(when, str) else None, data, origin)


def parse_events(headers: Mapping[str, str], body: bytes) -> tuple[list[Event], list[str]]:
    """The events of one HTTP message (binary, structured or batch mode) and the reasons for
    those that could not be read.  Call only when :func:`is_cloudevent` holds."""
    media = _media_type(headers)
    if media.startswith("application/cloudevents"):  # structured, or batch (a JSON array)
        try:
            document = decode_json(body)
        except (ValueError, RecursionError):
            return [], ["cloudevents_invalid_envelope"]
        envelopes = document if media == BATCH_CONTENT_TYPE else [document]
        if not isinstance(envelopes, list):
            return [], ["cloudevents_invalid_envelope"]
        events: list[Event] = []
        errors: list[str] = []
        for envelope in envelopes:
            parsed = _from_envelope(envelope)
            if isinstance(parsed, str):
                errors.append(parsed)
            else:
                events.append(parsed)
        return events, errors
    event_id, event_type = _header(headers, "ce-id"), _header(headers, "ce-type")
    if not event_id:
        return [], ["cloudevents_missing_id"]
    if event_type is None:
        return [], ["cloudevents_unknown_type"]
    origin = {
        name: value for name in _ORIGIN_HEADERS if (value := _header(headers, name)) is not None
    }
    sent = headers["ce-id"].strip(" \t")
    when = _header(headers, "ce-time")
    event = Event(
        event_id, event_type, when, body or None, origin, None if sent == event_id else sent
    )
    return [event], []


def _event_time(event: Event, now: float) -> float:
    if event.time is not None:
        with contextlib.suppress(ValueError):
            return parse_timestamp(event.time)
    return now


@dataclass(frozen=True, slots=True)
class _Outgoing:
    method: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


class Forwarder:
    """Sends messages on to ``url`` from a bounded queue; never blocks the caller."""

    def __init__(
        self,
        url: str,
        timeout: float,
        queue_size: int,
        on_error: Callable[[str], None],
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.url, self._timeout, self._on_error, self._tls = url, timeout, on_error, tls
        self._queue: asyncio.Queue[_Outgoing] = asyncio.Queue(queue_size)

    def offer(self, method: str, headers: Sequence[tuple[bytes, bytes]], body: bytes) -> None:
        """Queue one message as received; counted as dropped when the queue is full."""
        kept = tuple(
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in headers
            if name.decode("latin-1").lower() not in _HOP_BY_HOP
        )
        try:
            self._queue.put_nowait(_Outgoing(method, kept, body))
        except asyncio.QueueFull:
            self._on_error("cloudevents_forward_dropped")

    def __len__(self) -> int:
        return self._queue.qsize()

    async def run(self, workers: int = FORWARD_WORKERS) -> None:
        """Forward until cancelled, ``workers`` messages at a time."""
        timeout = ClientTimeout(total=self._timeout)
        async with ClientSession(timeout=timeout) as session, asyncio.TaskGroup() as group:
            for _ in range(workers):
                group.create_task(self._work(session))

    async def _work(self, session: ClientSession) -> None:
        # Don't add headers the sender did not send (those it sent are kept as they were).
        skip = ("User-Agent", "Accept", "Accept-Encoding")
        while True:
            message = await self._queue.get()
            headers = CIMultiDict(message.headers)
            try:
                async with session.request(
                    message.method,
                    self.url,
                    headers=headers,
                    data=message.body,
                    ssl=self._tls if self._tls is not None else True,
                    skip_auto_headers=[name for name in skip if name not in headers],
                ) as response:
                    await response.read()
                    ok = 200 <= response.status < 300
            except (ClientError, OSError, TimeoutError, ValueError):
                ok = False
            if not ok:
                self._on_error("cloudevents_forward_failed")


class CloudEventsSource:
    """The listener, the pairing store, the record batches and the forwarder of one sidecar.

    ``start()`` binds the listener, ``run()`` (a supervised task) hands paired records to
    ``on_records`` in batches, expires unpaired events and forwards; ``close()`` stops the
    listener and hands over what is paired, before ``run()`` is cancelled.
    """

    def __init__(
        self,
        config: CloudEventsConfig,
        on_records: Callable[[list[Record]], None],
        on_error: Callable[[str], None],
        *,
        on_dropped: Callable[[str], None] | None = None,
        max_batch: int = MAX_BATCH,
        clock: Callable[[], float] = time.monotonic,
        sampler: Sampler | None = None,
    ) -> None:
        self.config = config
        self._on_records, self._on_error, self._max_batch = on_records, on_error, max_batch
        self._on_dropped = on_dropped or on_error
        self.sampler = sampler
        self.store = PairingStore(config.max_pending, config.ttl, on_error, clock)
        self.forwarder = None
        if config.forward:
            tls = ssl.create_default_context(cafile=config.ca_file) if config.ca_file else None
            self.forwarder = Forwarder(
                config.forward, config.forward_timeout, config.forward_queue_size, on_error, tls
            )
        self._ready: list[Record] = []
        self._slice = 16  # records per on_records call, adapted to SLICE_SECONDS
        self._each = 0.0  # the CPU seconds a record took in the last call
        self._clock = clock
        self._arrived: list[float] = []  # when each of _ready was paired (clock seconds)
        # Records gathered for one batch at most: never so many that max_pending overflows.
        self._gather = min(max_batch, max(1, int(config.max_pending * BATCH_FILL)))
        self._wake = asyncio.Event()  # a record is ready ...
        self._gathered = asyncio.Event()  # ... and _gather of them
        self._runner: web.AppRunner | None = None
        self._server_log = ServerLog(log, lambda: on_error("cloudevents_bad_request"))

    async def start(self) -> int:
        """Listen on ``config.listen``; returns the port bound."""
        app = web.Application(client_max_size=self.config.max_body_bytes)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=5.0,
            max_line_size=MAX_HEADER_BYTES,
            max_field_size=MAX_HEADER_BYTES,
            logger=self._server_log,
        )
        await runner.setup()
        host, port = self.config.listen
        tls = self.config.tls.server_context() if self.config.tls else None
        await web.TCPSite(runner, host, port, reuse_address=True, ssl_context=tls).start()
        self._runner = runner
        return int(runner.addresses[0][1]) if runner.addresses else port

    async def run(self) -> None:
        """Hand over paired records, expire unpaired events and forward, until cancelled."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._deliver())
            if self.forwarder is not None:
                group.create_task(self.forwarder.run())

    async def close(self) -> None:
        """Stop listening (requests in flight finish), hand over every paired record, and count
        the events still waiting for their other half as unpaired."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        self._hand_over(len(self._ready))
        # Halves still waiting for their other half never will: counted as expired ones are.
        if waiting := self.store.expire(math.inf):
            log.info("shutting down with %d events unpaired (counted)", waiting)
        if self.sampler is not None:
            self.sampler.flush()
        if self.forwarder is not None and len(self.forwarder):
            log.info("shutting down with %d events not yet forwarded", len(self.forwarder))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            raise web.HTTPMethodNotAllowed(request.method, ["POST"])
        headers = request.headers
        cloudevent = is_cloudevent(headers)
        try:
            body = await read_body(request, BODY_IDLE_SECONDS)
        except web.HTTPRequestEntityTooLarge:
            self._on_error("cloudevents_body_too_large")
            return self._answer(cloudevent)
        except ConnectionResetError:  # the sender left before its body ended: no one to answer
            self._on_error("cloudevents_incomplete")
            return self._answer(cloudevent)
        except HttpProcessingError as exc:  # a body the parser refused (a bad chunk size)
            self._server_log.malformed(request.remote, exc)
            raise web.HTTPBadRequest(text="malformed HTTP request body") from None
        except TimeoutError:
            self._on_error("cloudevents_incomplete")
            log.warning(
                "no byte of a POST body from %s for %g s: answered 408",
                request.remote,
                BODY_IDLE_SECONDS,
            )
            raise web.HTTPRequestTimeout(text="the request body stopped arriving") from None
        if self.forwarder is not None:
            self.forwarder.offer(request.method, request.raw_headers, body)
        if cloudevent:
            events, errors = parse_events(headers, body)
            for reason in errors:
                self._on_error(reason)
            now = time.time()
            for event in events:
                self._accept(event, now)
        else:
            self._on_error("cloudevents_not_cloudevent")
        return self._answer(cloudevent)

    @staticmethod
    def _answer(cloudevent: bool) -> web.Response:
        if cloudevent:
            return web.Response(status=200)
        return web.json_response(
            {"error": "not a CloudEvent: no ce-specversion header, no application/cloudevents"},
            status=400,
        )

    def _accept(self, event: Event, now: float) -> None:
        kind = _KINDS.get(event.type)
        if kind is None:
            self._on_error("cloudevents_unknown_type")
            return
        record = self.store.add(
            kind,
            event.id,
            event.data,
            _event_time(event, now),
            origin=event.origin,
            sent=event.sent,
        )
        if record is None:
            return
        if self.sampler is not None and not self.sampler.admit():
            return
        if len(self._ready) >= self.config.max_pending:  # monitoring can't keep up: shed load
            self._on_dropped("cloudevents_overload")
            return
        self._ready.append(record)
        self._arrived.append(self._clock())
        self._wake.set()
        if len(self._ready) >= self._gather:
            self._gathered.set()

    async def _deliver(self) -> None:
        sweep = min(1.0, self.config.ttl / 4)
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(sweep):
                    await self._wake.wait()
            if self._wake.is_set() and len(self._ready) < self._gather:
                # Let more pairs complete: fewer, larger batches.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(BATCH_DELAY):
                        await self._gathered.wait()
            self._wake.clear()
            self._gathered.clear()
            self.store.expire()
            if self.sampler is not None:
                self.sampler.update()
            while self._ready:
                # Batches sized to cost about SLICE_SECONDS, each followed by a pause as long
                # as its CPU: monitoring gets at most half the loop and answers stay prompt.
                # Not its wall time: on a busy node a call of 0.2 ms of CPU spanned 60-500 ms,
                # and as long a pause let a max_pending of 5 overflow at 100 pairs a second.
                # At most MAX_PAUSE_FACTOR times what the batch was sized to cost (see
                # sampling.capped_pause, which runtime.consumer's pause takes too).
                handed = min(self._slice, len(self._ready))
                took = self._hand_over(handed)
                sized = max(SLICE_SECONDS, handed * self._each)
                self._each = took / handed
                ideal = int(handed * SLICE_SECONDS / max(took, 1e-6))
                self._slice = max(1, min(self._max_batch, ideal))
                await asyncio.sleep(capped_pause(took, sized))

    def backlog(self) -> float:
        """How far monitoring is behind (0 to 1): how long the oldest paired record has waited
        for the batcher, as a share of ``BEHIND_SECONDS`` (1 from there on)."""
        if not self._arrived:
            return 0.0
        return min(1.0, (self._clock() - self._arrived[0]) / BEHIND_SECONDS)

    def _hand_over(self, n: int) -> float:
        """Hand the first ``n`` ready records to ``on_records``; returns the CPU seconds (thread
        time) that took."""
        batch, self._ready = self._ready[:n], self._ready[n:]
        del self._arrived[:n]
        if not batch:
            return 0.0
        started = time.thread_time()
        self._on_records(batch)
        took = time.thread_time() - started
        if self.sampler is not None:
            self.sampler.charge(took, len(batch))
            self.sampler.update()
        return took
