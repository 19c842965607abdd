"""Several protocols on one sidecar: ``protocol: kserve`` and ``protocol: [a, b, ...]``.

A KServe model server answers the V1 protocol (``/v1/models/NAME:predict``)
and the Open Inference Protocol (``/v2/models/NAME[/versions/V]/infer``) at
the same time.  :class:`CompositeAdapter` holds one adapter per protocol and
hands each record to the one whose route its path is (:meth:`route`); the
config refuses protocols whose routes overlap, so at most one claims a path.
A path none of them claims is ``unknown_path``, as with a single protocol.

Without a path (a tail log whose lines carry no ``path``) the body's shape
decides: the adapters are tried in the configured order and the first that
reads the pair and finds at least one configured field wins; one that reads
it but finds no configured field is kept as the answer only if no later one
does better (a V2 request read as V1 rows of tensor objects has no field).
When every adapter refuses the pair, the error is that of the first adapter
that recognised the body's format (any reason but ``not_object``,
``missing_inputs`` and ``missing_outputs``), else the first one's.  Record the path in the log to
make the choice certain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from driftgauge.config import FieldSpec
from driftgauge.exceptions import ProtocolError
from driftgauge.protocols._common import BaseAdapter
from driftgauge.protocols.kserve_v1 import KServeV1Adapter
from driftgauge.protocols.kserve_v2 import KServeV2Adapter
from driftgauge.typing import Extracted

__all__ = ["CompositeAdapter", "KServeAdapter"]

# Reasons that say "this body is not in my format", as opposed to "in my format, but bad".
_OTHER_FORMAT = frozenset({"not_object", "missing_inputs", "missing_outputs"})


class CompositeAdapter(BaseAdapter):
    """Reads each record with the member adapter whose route its path is."""

    def __init__(self, members: Sequence[BaseAdapter], name: str = "") -> None:
        if not members:
            raise ValueError("a composite adapter needs at least one protocol")
        super().__init__(members[0].features, members[0].predictions)
        self.members: tuple[BaseAdapter, ...] = tuple(members)
        self.name = name or "[" + ", ".join(member.name for member in self.members) + "]"
        self.metric_names = {}  # the members rename their own columns

    def matches(self, path: str) -> bool:
        """True when any member's route is ``path``; ``""`` (path unknown) always matches."""
        return any(member.matches(path) for member in self.members)

    def route(self, path: str) -> BaseAdapter | None:
        """The member that reads ``path`` (this composite for ``""``), or None for other paths."""
        if not path:
            return self
        for member in self.members:
            found = member.route(path)
            if found is not None:
                return found
        return None

    def read_text(self, body: bytes | str, headers: Mapping[str, str]) -> Any:
        """The first member's reading of a non-JSON body; ValueError when none reads it."""
        return self._first_reading("read_text", body, headers)

    def read_response_text(self, body: bytes | str, headers: Mapping[str, str]) -> Any:
        """The first member's reading of a non-JSON response; ValueError when none reads it."""
        return self._first_reading("read_response_text", body, headers)

    def _first_reading(self, method: str, body: bytes | str, headers: Mapping[str, str]) -> Any:
        for member in self.members:
            try:
                return getattr(member, method)(body, headers)
            except ValueError:
                continue
        raise ValueError(f"no protocol of {self.name} reads this body")

    def extract(self, request: Any, response: Any) -> Extracted:
        """A path-less pair, read by the first member that finds a configured field in it."""
        refused: ProtocolError | None = None
        fallback: Extracted | None = None
        for member in self.members:
            try:
                extracted = member.extract(request, response)
            except ProtocolError as exc:
                if refused is None or (
                    refused.reason in _OTHER_FORMAT and exc.reason not in _OTHER_FORMAT
                ):
                    refused = exc
                continue
            if extracted.columns:
                return extracted
            if fallback is None:
                fallback = extracted
        if fallback is not None:
            return fallback
        assert refused is not None
        raise refused

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(map(repr, self.members))})"


class KServeAdapter(CompositeAdapter):
    """``protocol: kserve``: the V1 and V2 routes of a KServe server, each read by its adapter."""

    def __init__(self, features: Sequence[FieldSpec], predictions: Sequence[FieldSpec]) -> None:
        super().__init__(
            [KServeV1Adapter(features, predictions), KServeV2Adapter(features, predictions)],
            "kserve",
        )
