"""Interfaces shared across the layers (source → protocol adapter → batcher → store)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["Adapter", "Extracted", "Record"]


@dataclass(frozen=True, slots=True)
class Record:
    """One request/response pair as a source saw it, bodies already parsed from JSON.

    ``path`` is the HTTP path (``""`` when the source does not know it, as in
    a tail log without a path).  ``request_id`` is the id used to join
    delayed ground truth later.
    """

    ts: float
    request: Any
    response: Any
    path: str = ""
    request_id: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Extracted:
    """Columns taken out of one record by an adapter.

    ``columns`` maps a configured feature or prediction name to one value per
    row (a JSON scalar: number, string, bool or ``None``).  A configured name
    absent from ``columns`` was absent from the body: every row counts it as
    missing.  ``extra_columns`` counts values for names the config does not
    know (a schema violation, counted but never labelled by name).
    """

    rows: int
    columns: Mapping[str, Sequence[Any]]
    extra_columns: int = 0


class Adapter(Protocol):
    """A request-format adapter (one per ``protocol:`` value)."""

    name: str

    def matches(self, path: str) -> bool:
        """True when ``path`` is a prediction route of this protocol ("" always matches)."""
        ...

    def extract(self, request: Any, response: Any) -> Extracted:
        """Pair each request row's features with its predictions.

        Raises :class:`driftgauge.exceptions.ProtocolError` when a body does
        not have this protocol's shape.
        """
        ...
