"""A delayed-label log's lines (``feedback.tail``): ``{"id", "label", "ts"?}`` per line.

The tail source follows the file; :func:`label_line` reads each line into a
:class:`~driftgauge.typing.Record` whose ``request_id`` is the row id and whose
``request`` is the label, for the model's outcomes to join with its predictions.
"""

from __future__ import annotations

from driftgauge.canonical import row_id
from driftgauge.jsonbody import decode_json, lossy, reread_exactly
from driftgauge.typing import Record

__all__ = ["LABEL_REASONS", "label_line"]

# What a label file's line may count (prefixed feedback_): label_line's reasons, the tail's own.
LABEL_REASONS = ("invalid_json", "invalid_record", "line_too_long")


def label_line(line: bytes, now: float) -> Record | str:
    """A feedback log line ``{"id", "label", "ts"?}`` as a Record (id, and the label as request)."""
    try:
        item = decode_json(line)
    except ValueError:
        return "invalid_json"
    if not isinstance(item, dict) or "id" not in item or "label" not in item:
        return "invalid_record"
    if lossy((item["id"], item["label"])):  # an integer beyond 64 bits: its digits, exactly
        item = reread_exactly(line, item)
    return Record(ts=now, request=item["label"], response=None, request_id=row_id(item["id"]))
