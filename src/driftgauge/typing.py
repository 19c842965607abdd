"""Interfaces shared across the layers (source → protocol adapter → batcher → store)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

__all__ = [
    "Adapter",
    "Block",
    "Columns",
    "ConsumerMetrics",
    "Extracted",
    "Gauge",
    "ProxyObserver",
    "Record",
]

Block = tuple[tuple[str, ...], npt.NDArray[np.float64]]
"""Numeric fields that arrived as one 2-D array: their names and the rows × names matrix."""


class Columns(Mapping[str, Any]):
    """A record's columns: single ones plus numeric blocks, read as one mapping.

    Adapters that decode a whole numeric tensor or row matrix hand it over as
    a block; the monitor stacks the blocks of a batch with one call instead
    of touching each field of each record.  Everyone else reads it as a plain
    mapping of name → column.
    """

    __slots__ = ("_built", "blocks", "single")

    def __init__(self, single: Mapping[str, Any], blocks: Sequence[Block]) -> None:
        self.single = single
        self.blocks = tuple(blocks)
        self._built: dict[str, tuple[int, int]] | None = None

    @property
    def _index(self) -> dict[str, tuple[int, int]]:
        # Built on first use: the monitor reads ``single`` and ``blocks`` directly, so most
        # records never need it.
        if self._built is None:
            self._built = {
                name: (b, j)
                for b, (names, _) in enumerate(self.blocks)
                for j, name in enumerate(names)
            }
        return self._built

    def __getitem__(self, name: str) -> Any:
        if name in self.single:
            return self.single[name]
        b, j = self._index[name]
        return self.blocks[b][1][:, j]

    def __iter__(self) -> Iterator[str]:
        yield from self.single
        yield from self._index

    def __len__(self) -> int:
        return len(self.single) + len(self._index)

    def __contains__(self, name: object) -> bool:
        return name in self.single or name in self._index


@dataclass(frozen=True, slots=True)
class Record:
    """One request/response pair as a source saw it, bodies already parsed from JSON.

    ``path`` is the HTTP path (``""`` when the source does not know it, as in
    a tail log without a path).  ``request_id`` is the id used to join
    delayed ground truth later.  ``headers`` and ``response_headers`` are
    the request's and the response's HTTP headers (empty when the source does
    not keep them); a dict is looked up in any letter case, another mapping
    must do that itself (the proxy's, aiohttp's ``CIMultiDictProxy``).
    ``line`` is the JSON object the source parsed ``request`` and ``response``
    from as its members of those names (a tail log line; None otherwise): a
    reader that needs an integer beyond 64 bits exactly reads it again
    (:func:`~driftgauge.jsonbody.reread_from`).
    """

    ts: float
    request: Any
    response: Any
    path: str = ""
    request_id: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    response_headers: Mapping[str, str] = field(default_factory=dict)
    line: bytes | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Extracted:
    """Columns taken out of one record by an adapter.

    ``columns`` maps a configured feature or prediction name to one value per
    row (a JSON scalar: number, string, bool or ``None``).  A configured name
    absent from ``columns`` was absent from the body: every row counts it as
    missing and as a missing field.  ``absent`` counts, for a name in
    ``columns``, the rows that lacked it (an object row without the key, a
    list row too short to reach it): their ``None`` is a missing field too,
    where a JSON ``null`` is only missing.  ``extra_columns`` counts values
    for names the config does not know (a schema violation, counted but never
    labelled by name).
    """

    rows: int
    columns: Mapping[str, Sequence[Any]]
    extra_columns: int = 0
    absent: Mapping[str, int] = field(default_factory=dict)


class Adapter(Protocol):
    """A request-format adapter (one per ``protocol:`` value)."""

    name: str

    def matches(self, path: str) -> bool:
        """True when ``path`` is a prediction route of this protocol ("" always matches)."""
        ...

    def route(self, path: str) -> Adapter | None:
        """The adapter that reads bodies sent to ``path`` ("": this one), None for other paths.

        One protocol answers itself; several on one sidecar answer the one
        whose route ``path`` is.
        """
        ...

    def read_text(self, body: bytes | str, headers: Mapping[str, str]) -> Any:
        """A request body that is not JSON, in another format the protocol takes (MLflow CSV).

        Raises ValueError when the body is in none of them.
        """
        ...

    def read_response_text(self, body: bytes | str, headers: Mapping[str, str]) -> Any:
        """A response body that is not JSON, in another format the protocol takes (KServe V2
        binary tensor data).

        Raises ValueError when the body is in none of them.
        """
        ...

    def extract(self, request: Any, response: Any) -> Extracted:
        """Pair each request row's features with its predictions.

        Raises :class:`driftgauge.exceptions.ProtocolError` when a body does
        not have this protocol's shape.
        """
        ...


class ProxyObserver(Protocol):
    """What the proxy reports about its traffic (the exposition layer turns it into metrics).

    Times are ``time.perf_counter()`` readings; ``sent`` is 0 when the
    request never reached the upstream.
    """

    def request_done(
        self,
        status: int,
        started: float,
        sent: float,
        finished: float,
        request_bytes: int,
        response_bytes: int,
    ) -> None:
        """One exchange ended with ``status`` returned to the client (0: connection closed)."""
        ...

    def upstream_error(self, reason: str) -> None:
        """The upstream failed (connect_refused, connect_timeout, timeout, upstream_reset, bad_response)."""
        ...

    def client_error(self, reason: str) -> None:
        """A client request was refused by the proxy."""
        ...


class Gauge(Protocol):
    """A gauge to set (a labelled ``prometheus_client`` gauge)."""

    def set(self, value: float) -> None: ...


class ConsumerMetrics(Protocol):
    """The gauges the monitoring consumer keeps (the exposition layer's ``ProxyMetrics`` has them)."""

    @property
    def queue_depth(self) -> Gauge:
        """The records waiting in the proxy's queue."""
        ...

    @property
    def sampling_rate(self) -> Gauge:
        """The share of prediction requests monitored."""
        ...
