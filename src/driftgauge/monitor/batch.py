"""The batcher: records from a source → adapter → one monitor ingest per batch.

It decodes bodies that arrive as bytes, asks the protocol adapter for the
columns, and hands the whole batch to the monitor in one call, so sketch
updates see one array per field per batch.  It never raises: a body it
cannot read is counted in ``driftgauge_parse_errors_total{reason}`` and
skipped (fail-open), and an unexpected exception is counted as
``reason="internal"`` and logged without the body's contents.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from driftgauge.exceptions import ProtocolError
from driftgauge.jsonbody import DECODE_ERRORS, decode_json
from driftgauge.monitor.model import Monitor
from driftgauge.monitor.tracker import Observation
from driftgauge.monitor.versions import ModelVersions, record_version
from driftgauge.typing import Adapter, Extracted, Record

__all__ = ["Batcher", "Extraction", "decode_json"]

_DECODE_ERRORS = DECODE_ERRORS

log = logging.getLogger(__name__)


class Extraction:
    """Records a batcher has read (:meth:`Batcher.read`), waiting to reach the monitors together.

    Reading costs the same per record however the records are grouped, but a
    monitor's ingest has a fixed cost per batch (for a wide model, sorting,
    binning and sketching every field): records read a few at a time are
    handed over as one batch.
    """

    __slots__ = ("observations", "versions")

    def __init__(self) -> None:
        self.observations: list[Observation] = []
        self.versions: list[str] = []

    def __len__(self) -> int:
        return len(self.observations)


class Batcher:
    """Feeds a monitor from records through one protocol adapter."""

    def __init__(
        self, adapter: Adapter, monitor: Monitor, versions: ModelVersions | None = None
    ) -> None:
        self.adapter = adapter
        self.monitor = monitor
        # With versions, each record goes to its model version's monitor (monitor/versions.py).
        self.versions = versions

    @property
    def monitors(self) -> list[Monitor]:
        """The model's monitor and its versions'."""
        return self.versions.monitors if self.versions is not None else [self.monitor]

    def extract(self, record: Record, routed: bool = False) -> tuple[Any, Extracted, str] | None:
        """The parsed request, the record's columns and its model version ("" if none), or None
        after counting why not.

        A ``routed`` record was sent here by its model's ``path`` pattern, which
        then defines the model's prediction routes instead of the protocol's.
        """
        routable = record.path and not routed
        adapter = self.adapter.route(record.path) if routable else self.adapter
        if adapter is None:
            self.monitor.count_parse_error("unknown_path")
            return None
        try:
            try:
                request = _body(record.request)
            except _DECODE_ERRORS:  # not JSON: maybe another format the protocol takes (CSV)
                request = adapter.read_text(record.request, record.headers)
            response = _body(record.response)
            extracted = adapter.extract(request, response)
            version = record_version(record.path, response) if self.versions is not None else ""
            return request, extracted, version
        except ProtocolError as exc:
            self.monitor.count_parse_error(exc.reason)
        except _DECODE_ERRORS:
            self.monitor.count_parse_error("invalid_json")
        except Exception as exc:  # fail-open: monitoring must never take traffic down
            log.warning("monitoring failed on a record: %s", type(exc).__name__)
            self.monitor.count_parse_error("internal")
        return None

    def process(self, records: Sequence[Record]) -> None:
        """Extract every record and ingest the batch (the tail source's callback)."""
        self.ingest(records)

    def ingest(self, records: Sequence[Record], routed: bool = False) -> int:
        """Extract every record and hand the batch to the monitor; returns the rows ingested."""
        return self.observe(self.read(records, routed))

    def read(
        self, records: Sequence[Record], routed: bool = False, into: Extraction | None = None
    ) -> Extraction:
        """Extract every record (counting those that fail) into ``into`` (or a new one)."""
        read = Extraction() if into is None else into
        observations, versions = read.observations, read.versions
        for record in records:
            extracted = self.extract(record, routed)
            if extracted is not None:
                request, columns, version = extracted
                observations.append(Observation(record, request, columns))
                versions.append(version)
        return read

    def observe(self, read: Extraction) -> int:
        """Hand what :meth:`read` extracted to the monitors as one batch; returns its rows."""
        batch, versions = read.observations, read.versions
        if not batch:
            return 0
        try:
            if self.versions is not None and any(versions):
                self.versions.observe(batch, versions)
            else:
                self.monitor.observe(batch)
        except Exception as exc:
            log.warning("sketch update failed: %s", type(exc).__name__)
            self.monitor.count_parse_error("internal")
            return 0
        return sum(observation.columns.rows for observation in batch)


def _body(body: Any) -> Any:
    if isinstance(body, str):
        return decode_json(body) if body else None
    if isinstance(body, bytes | bytearray | memoryview):
        return decode_json(bytes(body)) if body else None
    return body
