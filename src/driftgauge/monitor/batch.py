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
from driftgauge.typing import Adapter, Extracted, Record

__all__ = ["Batcher", "decode_json"]

_DECODE_ERRORS = DECODE_ERRORS

log = logging.getLogger(__name__)


class Batcher:
    """Feeds a monitor from records through one protocol adapter."""

    def __init__(self, adapter: Adapter, monitor: Monitor) -> None:
        self.adapter = adapter
        self.monitor = monitor

    def extract(self, record: Record, routed: bool = False) -> tuple[Any, Extracted] | None:
        """The parsed request and the record's columns, or None after counting why not.

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
            return request, adapter.extract(request, response)
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
        batch = []
        for record in records:
            extracted = self.extract(record, routed)
            if extracted is not None:
                batch.append(Observation(record, *extracted))
        if not batch:
            return 0
        try:
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
