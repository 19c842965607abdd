"""Which model a record is for, when one sidecar monitors several.

Records are routed by, in order:

1. the InferenceService a record came from, when a model has its name or
   names it in ``inferenceservice`` (``ce-inferenceservicename`` in the
   record's headers: the CloudEvents source's records, which carry no path),
   whatever the model's protocol; among that service's models, the one naming
   the record's Kubernetes namespace (``ce-namespace``: two namespaces'
   services of one name are two deployments) before one naming none, and
   then the one naming the record's KServe component (``ce-component``: a
   transformer's events are not its predictor's) before one naming none.  A
   record of a service a model names goes to no other: when no model takes
   its namespace and component, it is for no configured model;
2. a model's ``path`` regular expression (``models[i].path``), searched in
   the request path: the way to route protocols whose path names no model
   (MLflow's ``/invocations``, Seldon, JSON paths behind a gateway);
3. the model name in the path, for the protocols that carry one: KServe v1
   ``/v1/models/NAME:predict``, KServe v2 ``/v2/models/NAME[/versions/V]/infer``
   and TF Serving ``/v1/models/NAME[/versions/V]:predict``;
4. a single configured model takes every record (a one-model sidecar
   monitors whatever it is put in front of, as before); a ``models:`` list
   of one takes only those naming no other model (no other InferenceService,
   no other model in the path), as a list of several would not take them.

Paths arrive as sent, percent-escapes and all.  The model name is the path
segment with its escapes decoded as UTF-8 (``na%C3%AFve`` is ``naïve``,
``my%20model`` is ``my model``, ``a%2Fb`` is the one segment ``a/b``); a
name written with a bare ``%`` that is no escape of it (``cpu%load``,
``a%41`` for the model ``a%41``) is matched as written when its decoded
form names no model.  A ``path`` pattern is searched in the path as sent,
then in the path decoded, so it may be written either way.

A record for no configured model is counted (``unknown_model``) and left
alone: the proxy forwards it untouched whatever monitoring does.  The router
keeps that count, and the source's own (what it could not read or route,
and what it dropped before routing: a full queue, an oversize body, a
request sampled out; its records are not yet any model's), apart from every
model's: ``driftgauge_source_parse_errors_total`` and
``driftgauge_source_dropped_total`` have no ``model`` label, and a model's
``driftgauge_parse_errors_total`` and ``driftgauge_dropped_total`` count
only the records routed to it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from driftgauge.config.protocols import protocol_names
from driftgauge.monitor.batch import Batcher, Extraction
from driftgauge.monitor.model import Monitor
from driftgauge.monitor.tallies import Tallies
from driftgauge.monitor.versions import percent_decoded
from driftgauge.typing import Record

__all__ = ["COMPONENT_HEADER", "NAMESPACE_HEADER", "SERVICE_HEADER", "Router", "model_in_path"]

# The model's path segment; V1's (and TF Serving's) ends at ":predict", so a colon ends it.
_NAMED = re.compile(r"^/v(?:1/models/([^/:?]+)|2/models/([^/?]+))")
SERVICE_HEADER = "ce-inferenceservicename"
"""The record header naming the KServe InferenceService it came from (the CloudEvents binding's
spelling of the payload logger's ``inferenceservicename`` attribute)."""
COMPONENT_HEADER = "ce-component"
"""... and the one naming its component (predictor, transformer, explainer)."""
NAMESPACE_HEADER = "ce-namespace"
"""... and the one naming its Kubernetes namespace."""
# Protocols whose routes name the model.
NAMING_PROTOCOLS = frozenset({"kserve-v1", "kserve-v2", "kserve", "tfserving"})
# Paths whose :meth:`Router.matches` answer is remembered; clients choose paths, so bounded.
_MATCHES_KEPT = 1024


def _segment(path: str) -> str | None:
    """The model name a KServe or TF Serving route carries, as written, if any."""
    match = _NAMED.match(path)
    return None if match is None else match.group(1) or match.group(2)


def model_in_path(path: str) -> str | None:
    """The model name a KServe or TF Serving route carries, percent-escapes decoded, if any."""
    written = _segment(path)
    return None if written is None else percent_decoded(written)


def _names_in_path(path: str) -> tuple[str, ...]:
    """The model names a route may mean: its segment decoded, then as written if that differs."""
    written = _segment(path)
    if written is None:
        return ()
    decoded = percent_decoded(written)
    return (decoded,) if decoded == written else (decoded, written)


class Router(Tallies):
    """Hands each record to the batcher of the model it is for (the several-models batcher)."""

    def __init__(
        self,
        batchers: Sequence[Batcher],
        *,
        listed: bool = False,
        source_reasons: Sequence[str] = (),
        source_drops: Sequence[str] = (),
    ) -> None:
        """``listed``: the models come from a ``models:`` list (rule 4 above);
        ``source_reasons``: what the source may count (:meth:`count_parse_error`);
        ``source_drops``: what it may drop (:meth:`count_dropped`)."""
        self.batchers = list(batchers)
        self._listed = listed
        self._by_name = {
            batcher.monitor.config.model: batcher
            for batcher in self.batchers
            if set(protocol_names(batcher.monitor.config.protocol)) <= NAMING_PROTOCOLS
        }
        # Each service's models by the namespace and component they name (None: any).
        self._by_service: dict[str, dict[tuple[str | None, str | None], Batcher]] = {}
        for batcher in self.batchers:
            config = batcher.monitor.config
            service, component = config.origin
            self._by_service.setdefault(service, {})[config.namespace, component] = batcher
        self._one = len(self.batchers) == 1 and not listed
        self._routes = [
            (re.compile(batcher.monitor.config.route), batcher)
            for batcher in self.batchers
            if batcher.monitor.config.route is not None
        ]
        self._matches: dict[str, bool] = {}
        # The source counts on the event loop, routing in a worker thread at times.
        super().__init__()
        # Exposed from 0, so rate() sees the first one too.
        routing = () if self._one else ("unknown_model",)
        self.parse_reasons: tuple[str, ...] = (*source_reasons, *routing)
        self.drop_reasons = tuple(source_drops)

    def route(
        self,
        path: str,
        service: str | None = None,
        component: str | None = None,
        namespace: str | None = None,
    ) -> tuple[Batcher | None, bool]:
        """The batcher a record on ``path`` from the InferenceService ``service`` (its
        ``component``, in ``namespace``) belongs to (None: no configured model), and whether a
        ``path`` pattern chose it."""
        if service is not None and service in self._by_service:
            models = self._by_service[service]
            for key in ((namespace, component), (namespace, None), (None, component)):
                if key in models:
                    return models[key], False
            return models.get((None, None)), False
        found = self._pattern_route(path)
        if found is not None:
            return found, True
        for name in _names_in_path(path):
            if name in self._by_name:
                return self._by_name[name], False
        if len(self.batchers) == 1 and not (self._listed and (service or _names_in_path(path))):
            return self.batchers[0], False
        return None, False

    def _pattern_route(self, path: str) -> Batcher | None:
        """The model whose ``path`` pattern is in ``path`` as sent, or else in ``path`` decoded."""
        for pattern, batcher in self._routes:
            if pattern.search(path):
                return batcher
        decoded = percent_decoded(path)
        if decoded != path:
            for pattern, batcher in self._routes:
                if pattern.search(decoded):
                    return batcher
        return None

    def all_monitors(self) -> list[Monitor]:
        """Every model's monitor and its versions' (versions appear as traffic shows them)."""
        return [monitor for batcher in self.batchers for monitor in batcher.monitors]

    def matches(self, path: str) -> bool:
        """Whether ``path`` is a prediction route of any model's protocol (its bodies are kept).

        Asked for every request, and the answer never changes: remembered per path.
        """
        known = self._matches.get(path)
        if known is not None:
            return known
        found = self._pattern_route(path) is not None or any(
            batcher.adapter.matches(path) for batcher in self.batchers
        )
        if len(self._matches) >= _MATCHES_KEPT:
            self._matches.clear()
        self._matches[path] = found
        return found

    def process(self, records: Sequence[Record]) -> None:
        """Route and ingest a batch (the tail source's callback)."""
        self.ingest(records)

    def ingest(self, records: Sequence[Record]) -> int:
        """Route every record and ingest each model's share; returns the rows ingested."""
        pending: dict[Batcher, Extraction] = {}
        self.read(records, pending)
        return self.observe(pending)

    def read(self, records: Sequence[Record], pending: dict[Batcher, Extraction]) -> None:
        """Route and extract every record into ``pending`` (by model), for :meth:`observe`."""
        if self._one:  # one model taking every record: nothing to route
            only = self.batchers[0]
            only.read(records, into=pending.setdefault(only, Extraction()))
            return
        groups: dict[tuple[Batcher, bool], list[Record]] = {}
        unknown = 0
        for record in records:
            headers = record.headers
            found, routed = self.route(
                record.path,
                headers.get(SERVICE_HEADER),
                headers.get(COMPONENT_HEADER),
                headers.get(NAMESPACE_HEADER),
            )
            if found is None:
                unknown += 1
                continue
            groups.setdefault((found, routed), []).append(record)
        if unknown:
            self.count_parse_error("unknown_model", unknown)
        for (batcher, routed), group in groups.items():
            batcher.read(group, routed, into=pending.setdefault(batcher, Extraction()))

    def observe(self, pending: dict[Batcher, Extraction]) -> int:
        """Hand each model what was read for it as one batch; returns the rows ingested."""
        return sum(batcher.observe(read) for batcher, read in pending.items())
