"""The batcher: records from a source → adapter → one monitor ingest per batch.

It decodes bodies that arrive as bytes, asks the protocol adapter for the
columns, and hands the whole batch to the monitor in one call, so sketch
updates see one array per field per batch.  It never raises: a body it
cannot read is counted in ``driftgauge_parse_errors_total{reason}`` and
skipped (fail-open), and an unexpected exception is counted as
``reason="internal"`` and logged without the body's contents.

A compressed body (``Content-Encoding: gzip``, ``x-gzip`` or ``deflate``,
the request's or the response's) is decompressed here, off the request
path, to at most ``max_body_bytes``: a zip bomb stops there.  A record
without headers (its source keeps none, as the CloudEvents source) whose
body begins with gzip's magic bytes is taken as gzip.  Other codings
(``br``, ``zstd``) are not read.  The reasons (:data:`BODY_REASONS`):
``unknown_encoding``, a coding it does not read; ``bad_encoding``, a body
that does not decompress (corrupt or cut short); ``decoded_too_large``, a
body that decompresses past ``max_body_bytes``.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from driftgauge.exceptions import ProtocolError
from driftgauge.jsonbody import (
    DECODE_ERRORS,
    JSON_TEXT,
    JsonText,
    decode_json,
    lossy,
    reread_from,
)
from driftgauge.monitor.model import Monitor
from driftgauge.monitor.tracker import Observation
from driftgauge.monitor.versions import ModelVersions, record_version
from driftgauge.typing import Adapter, Columns, Extracted, Record

__all__ = [
    "BODY_REASONS",
    "MAX_BODY_BYTES",
    "Batcher",
    "Extraction",
    "decode_content",
    "decode_json",
]

_DECODE_ERRORS = DECODE_ERRORS

BODY_REASONS = ("unknown_encoding", "bad_encoding", "decoded_too_large")
"""The ``parse_errors_total`` reasons of a compressed body the batcher cannot read."""

MAX_BODY_BYTES = 4 * 1024 * 1024
"""The default bound on a decompressed body (the proxy's default ``max_body_bytes``)."""

_GZIP = 16 + zlib.MAX_WBITS  # zlib's window bits for a gzip member
_WINDOW_BITS = {"gzip": _GZIP, "x-gzip": _GZIP, "deflate": zlib.MAX_WBITS}
_GZIP_MAGIC = b"\x1f\x8b"

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
        self,
        adapter: Adapter,
        monitor: Monitor,
        versions: ModelVersions | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self.adapter = adapter
        self.monitor = monitor
        # With versions, each record goes to its model version's monitor (monitor/versions.py).
        self.versions = versions
        self.max_body_bytes = max_body_bytes  # a compressed body decompresses to at most this

    @property
    def monitors(self) -> list[Monitor]:
        """The model's monitor and its versions'."""
        return self.versions.monitors if self.versions is not None else [self.monitor]

    def extract(
        self, record: Record, routed: bool = False
    ) -> tuple[Any, Extracted, str, JsonText | None] | None:
        """The parsed request, the record's columns, its model version ("" if none) and the
        request's JSON text (None when the request is exact already), or None after counting
        why not.

        A ``routed`` record was sent here by its model's ``path`` pattern, which
        then defines the model's prediction routes instead of the protocol's.
        """
        routable = record.path and not routed
        adapter = self.adapter.route(record.path) if routable else self.adapter
        if adapter is None:
            self.monitor.count_parse_error("unknown_path")
            return None
        limit = self.max_body_bytes
        try:
            body = _decompressed(record.request, record.headers, limit)
            try:
                request = _body(body)
            except _DECODE_ERRORS:  # not JSON: maybe another format the protocol takes (CSV)
                request, body = adapter.read_text(body, record.headers), None
            answer = _decompressed(record.response, record.response_headers, limit)
            try:
                response = _body(answer)
            except _DECODE_ERRORS:  # not JSON: maybe another format the protocol takes
                response, answer = adapter.read_response_text(answer, record.response_headers), None
            extracted = adapter.extract(request, response)
            if _lossy(extracted):
                # orjson read an integer beyond 64 bits as a float where the value is kept as
                # JSON spelled it (a categorical one): both bodies again, every integer exact.
                request = reread_from(body, request, record.line, "request")
                response = reread_from(answer, response, record.line, "response")
                extracted, body = adapter.extract(request, response), None
            versions = self.versions is not None
            version = record_version(record.path, response, record.headers) if versions else ""
            text = body if isinstance(body, JSON_TEXT) and body else None
            return request, extracted, version, text
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
                request, columns, version, text = extracted
                observations.append(Observation(record, request, columns, text))
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


def _lossy(extracted: Extracted) -> bool:
    """True when a column kept as a list may hold an integer orjson read as a float."""
    columns = extracted.columns
    single = columns.single if type(columns) is Columns else columns
    for column in single.values():  # a loop, no call for a column without a float: every record
        if type(column) is list and float in map(type, column) and lossy(column):
            return True
    return False


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """Header ``name`` (in lower case) of ``headers``, in any letter case (see Record)."""
    value = headers.get(name)
    if value is None and type(headers) is dict:
        value = next((v for key, v in headers.items() if key.lower() == name), None)
    return value


def _decompressed(body: Any, headers: Mapping[str, str], limit: int) -> Any:
    """A body with its ``Content-Encoding`` undone (bytes), or ``body`` itself when it has none."""
    if not isinstance(body, bytes | bytearray | memoryview) or not body:
        return body
    coding = _header(headers, "content-encoding") if headers else None
    if coding is None and body[:2] == _GZIP_MAGIC and all(k.startswith("ce-") for k in headers):
        # A source that keeps no HTTP headers (CloudEvents: KServe's logger sends the body as
        # the model got or gave it, without its Content-Encoding; a record keeps only the
        # events' attributes): gzip says so in its first bytes.
        coding = "gzip"
    return body if coding is None else decode_content(bytes(body), coding, limit)


def decode_content(body: bytes, coding: str, limit: int) -> bytes:
    """``body`` with the content codings ``coding`` (a ``Content-Encoding`` value) undone.

    Several codings are undone last first; ``identity`` is none.  ``deflate``
    is zlib-wrapped as RFC 9110 says, or raw deflate, as some servers send it.
    Raises ProtocolError ``unknown_encoding``, ``bad_encoding`` or
    ``decoded_too_large`` (more than ``limit`` bytes: never decompressed
    further than that).
    """
    for name in reversed([part.strip() for part in coding.lower().split(",")]):
        if name in ("", "identity"):
            continue
        bits = _WINDOW_BITS.get(name)
        if bits is None:
            raise ProtocolError(
                "unknown_encoding", "the body's Content-Encoding is not gzip or deflate"
            )
        body = _inflate(body, name, bits, limit)
    return body


def _inflate(data: bytes, name: str, bits: int, limit: int) -> bytes:
    if bits == zlib.MAX_WBITS and not _zlib_header(data):
        bits = -zlib.MAX_WBITS  # raw deflate
    pieces: list[bytes] = []
    size = 0
    while True:  # gzip members may follow one another (RFC 1952); a deflate body is one stream
        inflater = zlib.decompressobj(bits)
        try:
            piece = inflater.decompress(data, limit - size + 1)
        except zlib.error:
            raise ProtocolError("bad_encoding", f"the {name} body does not decompress") from None
        size += len(piece)
        if size > limit:
            raise ProtocolError(
                "decoded_too_large", f"the {name} body decompresses to more than {limit} bytes"
            )
        pieces.append(piece)
        if not inflater.eof:  # all of it read, short of the end of the stream
            raise ProtocolError("bad_encoding", f"the {name} body is cut short")
        data = inflater.unused_data
        if not data or bits != _GZIP:
            return b"".join(pieces)


def _zlib_header(data: bytes) -> bool:
    """True when ``data`` begins with a zlib header (deflate, and a check over the two bytes)."""
    return len(data) >= 2 and data[0] & 0x0F == 8 and ((data[0] << 8) | data[1]) % 31 == 0
