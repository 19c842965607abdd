"""Exposition: the Prometheus collector over the monitor and the metrics HTTP endpoints.

``MonitorCollector`` reads the monitor's latest immutable
:class:`~driftgauge.monitor.Snapshot` (drift figures, recomputed on a
schedule) and a copy of its cumulative counters, so a scrape never computes
statistics.  Its ``collect()`` yields prometheus_client families, always;
besides, it is a :class:`DirectWriter`: it writes the same samples straight
to text, which the render functions ask of it explicitly.  The snapshot part
is written once per recompute (:class:`~driftgauge.exposition.snapshot.SnapshotFamilies`,
kept by :class:`RenderedSnapshot`); the counters at each scrape
(:class:`~driftgauge.exposition.live.LiveFamilies`), and everything else in
the registry (process and proxy metrics) goes through prometheus_client's
encoders (:func:`render_metrics`).  Every family is declared in
:mod:`~driftgauge.exposition.catalogue`.  ``metrics_routes`` serves
``/metrics`` (Prometheus text or OpenMetrics by the ``Accept`` header, gzip
when asked), ``/healthz``, ``/readyz`` and a landing page at ``/``.
"""

from __future__ import annotations

import asyncio
import hmac
import html
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Literal, NamedTuple, Protocol, runtime_checkable
from urllib.parse import quote

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.exposition import choose_encoder, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.registry import Collector

from driftgauge import __version__
from driftgauge.exposition.gzipjoin import Deflated, gzip_join
from driftgauge.exposition.live import LiveFamilies
from driftgauge.exposition.snapshot import SnapshotFamilies
from driftgauge.monitor.model import Monitor
from driftgauge.monitor.outcomes import Outcomes, parse_labels
from driftgauge.sources.bodies import BODY_IDLE_SECONDS, read_body

__all__ = [
    "DirectWriter",
    "MetricsRegistry",
    "MonitorCollector",
    "RegistryParts",
    "RenderedSnapshot",
    "feedback_routes",
    "metrics_routes",
    "model_feedback_routes",
    "render_metrics",
]

# How long POST /feedback keeps trying labels that match no held prediction, and how often:
# the proxy registers a prediction a fraction of a second after answering (up to 0.25 s idle).
LABEL_WAIT_SECONDS = 1.0
LABEL_RETRY_SECONDS = 0.05

Part = Literal["all", "snapshot", "live"]
"""What a collector yields: ``snapshot`` changes only at a recompute (and can be
rendered once then), ``live`` holds the counters read at every scrape."""

# Escaping schemes (negotiated by Accept; none named means underscores) that
# leave legacy metric and label names, as all of driftgauge's are, unchanged.
_DIRECT_ESCAPINGS = frozenset({"", "underscores", "allow-utf-8"})
# zlib level for what a gzip scrape compresses itself (the live part); the
# snapshot part is compressed at the default level once per recompute.
# Level 1 costs about a third of level 6 for a slightly larger body.
_SCRAPE_GZIP_LEVEL = 1


@runtime_checkable
class DirectWriter(Protocol):
    """A collector that also writes its samples straight to exposition text.

    Both writers give, byte for byte, what prometheus_client's encoders give
    for the collector's ``collect()`` when no name escaping renames anything
    (without OpenMetrics' ``# EOF``); the render functions call them instead
    of ``collect()`` because formatting fixed series directly is many times
    faster.
    """

    def write_text(self, openmetrics: bool) -> list[bytes]:
        """The samples now, in one format (what a scrape appends)."""
        ...

    def write_deflated(self) -> tuple[list[Deflated], list[Deflated]]:
        """The samples now in the text format and in OpenMetrics, each piece also deflated."""
        ...


class RegistryParts(NamedTuple):
    """A registry's collectors, in registration order: those written directly, and the rest."""

    direct: tuple[DirectWriter, ...]
    others: tuple[Collector, ...]


class MetricsRegistry(CollectorRegistry):
    """A ``CollectorRegistry`` that knows which of its collectors are direct writers.

    Registry reads (``get_sample_value``) and prometheus_client's encoders
    collect every collector as usual; :func:`render_metrics` and
    :meth:`RenderedSnapshot.refresh` ask :meth:`parts` which collectors to
    write directly.  Target info is not supported (the render functions would
    leave it out): driftgauge's info metrics are in its catalogue.
    """

    def __init__(self) -> None:
        super().__init__()
        self._parts_lock = threading.Lock()
        self._collectors: list[Collector] = []
        self._parts = RegistryParts((), ())
        # Called on the event loop before each scrape (:meth:`refresh`).
        self.before_scrape: list[Callable[[], None]] = []

    def refresh(self) -> None:
        """Bring in what a source counted outside the interpreter (the native proxy core
        reports in batches): a scrape then sees every exchange answered before it began."""
        for hook in self.before_scrape:
            hook()

    def register(self, collector: Collector) -> None:
        super().register(collector)
        with self._parts_lock:
            self._collectors.append(collector)
            self._parts = _split(self._collectors)

    def unregister(self, collector: Collector) -> None:
        super().unregister(collector)
        with self._parts_lock:
            self._collectors.remove(collector)
            self._parts = _split(self._collectors)

    def set_target_info(self, labels: dict[str, str] | None) -> None:
        if labels:
            raise ValueError("MetricsRegistry does not support target info; declare an info metric")
        super().set_target_info(labels)

    def parts(self) -> RegistryParts:
        """The collectors to write directly and the others, each in registration order."""
        with self._parts_lock:
            return self._parts


def _split(collectors: Sequence[Collector]) -> RegistryParts:
    direct = tuple(c for c in collectors if isinstance(c, DirectWriter))
    return RegistryParts(direct, tuple(c for c in collectors if not isinstance(c, DirectWriter)))


class MonitorCollector(Collector):
    """Reads one monitor; register it on an injected (never the global) registry.

    ``collect()`` yields prometheus_client families (registry reads such as
    ``get_sample_value``, prometheus_client's encoders); as a
    :class:`DirectWriter` it writes the same samples as text for the render
    functions.
    """

    def __init__(self, monitor: Monitor, part: Part = "all") -> None:
        self.monitor = monitor
        self.part = part
        self.live = LiveFamilies(monitor) if part in ("all", "live") else None
        self.snapshot = SnapshotFamilies(monitor) if part in ("all", "snapshot") else None

    def collect(self) -> Iterator[Metric]:
        if self.live is not None:
            yield from self.live.metrics()
        if self.snapshot is not None:
            yield from self.snapshot.metrics()

    def write_text(self, openmetrics: bool) -> list[bytes]:
        written = []
        if self.live is not None:
            written.append(self.live.render(openmetrics))
        if self.snapshot is not None:
            written.append(self.snapshot.render(openmetrics))
        return written

    def write_deflated(self) -> tuple[list[Deflated], list[Deflated]]:
        text: list[Deflated] = []
        openmetrics: list[Deflated] = []
        if self.live is not None:
            text.append(Deflated.of(self.live.render(False)))
            openmetrics.append(Deflated.of(self.live.render(True)))
        if self.snapshot is not None:
            # Usually one compression: only the baseline part has format-specific headers.
            deflated, deflated_openmetrics = Deflated.pair(*self.snapshot.recompute_part())
            text.extend((self.snapshot.baseline_part(False), deflated))
            openmetrics.extend((self.snapshot.baseline_part(True), deflated_openmetrics))
        return text, openmetrics


class _Yielding(Collector):
    """Families already collected, for prometheus_client's encoders."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def _collected(collectors: Sequence[Collector]) -> list[Metric]:
    return [metric for collector in collectors for metric in collector.collect()]


class RenderedSnapshot:
    """The snapshot part of /metrics, rendered once per recompute in both formats.

    Most of a big sidecar's exposition (drift gauges, quantiles, baseline
    figures) changes only when the statistics are recomputed, so it is
    rendered (and deflated, for gzip scrapes) then, off the event loop, and a
    scrape renders only the live counters and appends these bytes or blocks.
    The :class:`DirectWriter` collectors in ``registry`` write themselves
    (a :class:`MonitorCollector` its baseline's families only once); the
    others go through prometheus_client.  Scrapes that negotiate a name
    escaping the direct writers do not speak get prometheus_client's
    rendering of ``registry`` instead, made on the first such scrape after a
    recompute.
    """

    def __init__(self, registry: MetricsRegistry) -> None:
        self.registry = registry
        self._lock = threading.Lock()
        self._pieces: tuple[tuple[Deflated, ...], tuple[Deflated, ...]] = ((), ())
        self._generation = 0
        self._escaped: dict[tuple[bool, str], bytes] = {}

    def refresh(self) -> None:
        """Render the registry now (a monitor calls this after each recompute)."""
        direct, others = self.registry.parts()
        text: list[Deflated] = []
        openmetrics: list[Deflated] = []
        # Compressed here, off the event loop, so a gzip scrape compresses only its live part.
        for writer in direct:
            text_pieces, openmetrics_pieces = writer.write_deflated()
            text.extend(text_pieces)
            openmetrics.extend(openmetrics_pieces)
        families = _collected(others)
        if families:
            rest = _Yielding(families)
            rendered: bytes = openmetrics_latest(rest)  # type: ignore[no-untyped-call]
            text.append(Deflated.of(generate_latest(rest)))
            openmetrics.append(Deflated.of(rendered.removesuffix(b"# EOF\n")))
        with self._lock:
            self._pieces = tuple(text), tuple(openmetrics)
            self._generation += 1
            self._escaped = {}

    def pieces(self, openmetrics: bool) -> tuple[Deflated, ...]:
        """The last recompute's bytes (OpenMetrics without its ``# EOF``), also deflated."""
        with self._lock:
            return self._pieces[openmetrics]

    def escaped(
        self, encoder: Callable[[Collector], bytes], openmetrics: bool, escaping: str
    ) -> bytes:
        """The part as ``encoder`` (prometheus_client's, for ``escaping``) renders it, cached.

        Kept per format and escaping until the next recompute; the encoder's
        version could only change native histogram samples, which this part
        has none of.  Empty before the first :meth:`refresh`, like :meth:`pieces`.
        """
        key = (openmetrics, escaping)
        with self._lock:
            generation, cached = self._generation, self._escaped.get(key)
        if generation == 0:
            return b""
        if cached is not None:
            return cached
        encoded = encoder(self.registry)
        if openmetrics:
            encoded = encoded.removesuffix(b"# EOF\n")
        with self._lock:
            if self._generation == generation:
                self._escaped[key] = encoded
        return encoded


def render_metrics(
    registry: MetricsRegistry,
    accept: str,
    rendered: RenderedSnapshot | None = None,
    *,
    gzip: bool = False,
) -> tuple[bytes, str]:
    """The /metrics body for an ``Accept`` header (gzip-compressed when asked) and its content type.

    The :class:`DirectWriter` collectors in ``registry`` (a
    :class:`MonitorCollector`'s counters) write their samples first, then
    prometheus_client renders the others (process and proxy metrics);
    ``rendered`` adds the snapshot part.  An escaping scheme that would
    rewrite legacy names (``dots``, ``values``) leaves everything, the
    snapshot part included, to prometheus_client.
    """
    encoder, content_type = choose_encoder(accept)
    openmetrics = content_type.startswith("application/openmetrics-text")
    _, _, escaping = content_type.partition("escaping=")
    escaping = escaping.split(";")[0].strip()
    direct = escaping in _DIRECT_ESCAPINGS
    parts: list[bytes | Deflated] = []
    if direct:
        writers, others = registry.parts()
        for writer in writers:
            parts.extend(writer.write_text(openmetrics))
        encoded = encoder(_Yielding(_collected(others)))
    else:
        encoded = encoder(registry)
    parts.append(encoded.removesuffix(b"# EOF\n") if openmetrics else encoded)
    if rendered is not None:
        if direct:
            parts.extend(rendered.pieces(openmetrics))
        else:
            parts.append(rendered.escaped(encoder, openmetrics, escaping))
    if openmetrics:
        parts.append(b"# EOF\n")
    if gzip:
        return gzip_join(parts, _SCRAPE_GZIP_LEVEL), content_type
    return b"".join(p.raw if isinstance(p, Deflated) else p for p in parts), content_type


def _accepts_gzip(accept_encoding: str) -> bool:
    """Whether an ``Accept-Encoding`` value names gzip (or x-gzip) without ``q=0`` (RFC 9110)."""
    for item in accept_encoding.split(","):
        coding, *parameters = (part.strip() for part in item.split(";"))
        if coding.lower() not in ("gzip", "x-gzip"):
            continue
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    return float(value) > 0
                except ValueError:
                    return False
        return True
    return False


_LANDING = """<!doctype html>
<html><head><meta charset="utf-8"><title>driftgauge</title></head>
<body><h1>driftgauge {version}</h1><p>{models}</p>
<ul><li><a href="metrics">/metrics</a></li><li><a href="healthz">/healthz</a></li>
<li><a href="readyz">/readyz</a></li></ul></body></html>
"""


def metrics_routes(
    registry: MetricsRegistry,
    models: Sequence[str],
    ready: Callable[[], tuple[bool, str]],
    rendered: RenderedSnapshot | None = None,
) -> list[web.RouteDef]:
    """Routes of the metrics listener; ``ready`` says whether to report ready, and why not;
    the landing page names ``models`` (the model, or each of several).

    ``registry`` is rendered at each scrape; ``rendered``, when given, adds
    the part rendered at the last recompute.
    """

    async def metrics(request: web.Request) -> web.Response:
        accept = ",".join(request.headers.getall("Accept", []))
        gzip = _accepts_gzip(",".join(request.headers.getall("Accept-Encoding", [])))
        registry.refresh()
        # Rendering and compressing take milliseconds: keep them off the event loop.
        body, content_type = await asyncio.to_thread(
            render_metrics, registry, accept, rendered, gzip=gzip
        )
        headers = {"Content-Type": content_type}
        if gzip:
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=body, headers=headers)

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        ok, reason = ready()
        return web.Response(
            text=f"{'ready' if ok else 'not ready'}: {reason}\n", status=200 if ok else 503
        )

    listed = ", ".join(f"<code>{html.escape(name)}</code>" for name in models)
    heading = _LANDING.format(
        version=__version__, models=f"model{'s' if len(models) > 1 else ''} {listed}"
    )

    async def landing(request: web.Request) -> web.Response:
        page = heading
        return web.Response(text=page, content_type="text/html")

    return [
        web.get("/metrics", metrics),
        web.get("/healthz", healthz),
        web.get("/readyz", readyz),
        web.get("/", landing),
    ]


def _feedback_handler(
    outcomes: Outcomes, token: str | None
) -> Callable[[web.Request], Awaitable[web.Response]]:
    expected = token.encode() if token else None

    async def feedback(request: web.Request) -> web.Response:
        if expected is not None:
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            # The scheme name is case-insensitive (RFC 9110, 11.1), the token is not; aiohttp
            # reads other bytes than UTF-8 as surrogates, which go back as the same bytes.
            given_bytes = given.encode("utf-8", "surrogateescape")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given_bytes, expected):
                return web.json_response({"error": "a valid bearer token is required"}, status=401)
        try:
            pairs = parse_labels(json.loads(await read_body(request, BODY_IDLE_SECONDS)))
        except TimeoutError:  # the poster stopped sending mid-body: its handler is freed
            error = f"the feedback body stopped arriving (no byte for {BODY_IDLE_SECONDS:g} s)"
            return web.json_response({"error": error}, status=408)
        except web.HTTPRequestEntityTooLarge as exc:  # aiohttp's text reply: JSON like the rest
            error = f"bad feedback body: {exc.text} Post the labels in smaller batches."
            return web.json_response({"error": error}, status=413)
        except ValueError as exc:  # ProtocolError and bad UTF-8 are ValueErrors too
            return web.json_response({"error": f"bad feedback body: {exc}"}, status=400)
        except ConnectionResetError:  # the poster hung up before its body ended
            return web.json_response({"error": "the feedback body ended early"}, status=400)
        registered = outcomes.registered
        result, missed = outcomes.join(pairs)
        # Predictions are registered off the request path, a fraction of a second after their
        # response: a label sent right after it finds nothing yet, so those are tried again.
        deadline = time.monotonic() + LABEL_WAIT_SECONDS
        while missed and time.monotonic() < deadline:
            await asyncio.sleep(LABEL_RETRY_SECONDS)
            if outcomes.registered != registered:  # only new predictions can match
                registered = outcomes.registered
                joined, missed = outcomes.join(missed)
                result += joined
        return web.json_response(outcomes.settle(result, missed))

    return feedback


def feedback_routes(
    outcomes: Outcomes, token: str | None, path: str = "/feedback"
) -> list[web.RouteDef]:
    """``POST path``: a JSON list of ``{"id", "label"}``; a bearer token when configured."""
    return [web.post(path, _feedback_handler(outcomes, token))]


def model_feedback_routes(
    models: Mapping[str, tuple[Outcomes, str | None]], first: str
) -> list[web.RouteDef]:
    """``POST /feedback/<model>`` for each of ``models`` (name -> outcomes, token), the name
    percent-encoded; ``POST /feedback`` is the ``first`` model's (routed apart when it takes
    labels), answered with a JSON 404 naming the routes here when it takes none (or saying
    that no model does).

    One route reads the name: aiohttp matches a plain path only after decoding all but
    ``%2F`` and ``%25``, and takes braces in it for variables, so a route per model
    missed names with a space, a non-ASCII letter, a quote or a brace.
    """
    handlers = {name: _feedback_handler(*taker) for name, taker in models.items()}

    async def feedback(request: web.Request) -> web.Response:
        name = request.match_info["model"]
        handler = handlers.get(name)
        if handler is None:
            return web.json_response({"error": f"no model {name!r} takes labels"}, status=404)
        return await handler(request)

    routes = [web.post("/feedback/{model:.+}", feedback)]
    if first not in models:
        takers = ", ".join(f"/feedback/{quote(name, safe='')}" for name in models)
        error = (
            f"no model {first!r} takes labels: /feedback is the first model's; use {takers}"
            if models
            else "no model takes labels: the config has no feedback: block"
        )

        async def unrouted(request: web.Request) -> web.Response:
            return web.json_response({"error": error}, status=404)

        routes.append(web.post("/feedback", unrouted))
    return routes
