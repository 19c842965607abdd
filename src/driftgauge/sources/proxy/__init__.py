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

Modules: ``server`` (the listener, the timeout sweep, the drain), ``client``
(the client connection: parser callbacks, pipelining, batched writes),
``cycle`` (one exchange: sending, retry, timeout, response relay, capture),
``upstream`` (upstream connections and their pool), ``heads`` (pure functions
building heads), ``flow`` (back-pressure), ``capture`` (the record queue).
"""

from driftgauge.sources.proxy.capture import RecordQueue
from driftgauge.sources.proxy.client import ClientProtocol
from driftgauge.sources.proxy.cycle import Cycle
from driftgauge.sources.proxy.flow import FlowControl
from driftgauge.sources.proxy.server import DROP_REASONS, ERROR_REASONS, ProxyServer
from driftgauge.sources.proxy.upstream import UpstreamPool, UpstreamProtocol

__all__ = [
    "DROP_REASONS",
    "ERROR_REASONS",
    "ClientProtocol",
    "Cycle",
    "FlowControl",
    "ProxyServer",
    "RecordQueue",
    "UpstreamPool",
    "UpstreamProtocol",
]
