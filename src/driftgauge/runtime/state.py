"""State that survives restarts: live windows and held predictions, snapshotted atomically.

The snapshot holds every window's slices (drift sketches and bin counts, the
per-segment counts, the performance statistics), those of each model
version's monitor, and the predictions waiting for labels.  It is written
on an interval and at shutdown: to a temporary file in the state
directory, fsynced, then renamed over the old one, so a
crash leaves either the old or the new snapshot, never half of one.  A
rolling restart therefore loses at most one interval of observations, a
clean shutdown none.

Cumulative counters (``*_total``) are deliberately not restored.  After a
crash the snapshot is older than Prometheus' last scrape, so a restored
counter would step backwards, which Prometheus reads as a reset followed by
a jump of the whole restored value: a false spike in every ``rate()``.
Starting counters from zero is a reset Prometheus handles exactly.

A snapshot that is corrupt, of a format version this one cannot read, taken
against another baseline, or no regular file (a FIFO) is moved aside
(``.corrupt-<time>``) with one log line, and the sidecar starts empty.  It is
moved once the sidecar serves (:meth:`StateStore.tidy`): a second sidecar of
the same config that cannot bind must not take the serving one's file away.
Formats 1 (held predictions as rows) and 2 (as base64 columns inside the
JSON) are still read, so an upgrade keeps its state.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import math
import time
import urllib.parse
import zlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from driftgauge.atomic import move_aside, open_regular, remove_leftovers, write_atomically
from driftgauge.monitor.model import Monitor
from driftgauge.monitor.segments import SegmentCounts
from driftgauge.monitor.tracker import HoldsState, Tracker
from driftgauge.monitor.versions import ModelVersions
from driftgauge.sketches.codec import decode_summary, encode_summary, int_array
from driftgauge.sketches.requests import single_row_sums
from driftgauge.sketches.summary import CategoricalSummary, NumericSummary
from driftgauge.sketches.window import Mergeable, Slice, SlicedWindow
from driftgauge.stats.performance import ClassificationStats, RegressionStats

__all__ = [
    "STATE_VERSION",
    "StateStore",
    "decode_into",
    "encode",
    "pack",
    "state_file_name",
    "stray_snapshots",
    "unpack",
]

log = logging.getLogger(__name__)

STATE_FORMAT = "driftgauge-state"
# 2: held predictions as columns (driftgauge.monitor.pending); 3: their bytes after the JSON.
STATE_VERSION = 3
# Formats 1 and 2 differ only in how they list held predictions, which pending.decode_rows
# reads: an upgrade keeps the state the previous version saved.
READABLE_VERSIONS = (1, 2, 3)
# {"$blob": [offset, length]}: bytes stored after the JSON (see pack); unpack matches it
_BLOB = "$blob"


def encode(item: Mergeable) -> dict[str, Any]:
    """A JSON-ready dict of one window entry."""
    if isinstance(item, NumericSummary | CategoricalSummary):
        return encode_summary(item)
    if isinstance(item, SegmentCounts):
        return {"counts": item.counts.tolist(), "by_request": item.by_request.tolist()}
    if isinstance(item, ClassificationStats):
        return {
            "confusion": item.confusion.tolist(),
            "mixed": item.mixed.tolist(),
            "log_loss": item.log_loss_sum,
            "brier": item.brier_sum,
            "scored": item.scored,
        }
    if isinstance(item, RegressionStats):
        return {
            "count": item.count,
            "abs": item.abs_sum,
            "sq": item.sq_sum,
            "pct": item.pct_sum,
            "pct_count": item.pct_count,
        }
    raise TypeError(f"cannot snapshot {type(item).__name__}")


def decode_into(template: Mergeable, payload: Mapping[str, Any]) -> None:
    """Load ``payload`` into a fresh ``template`` of the right kind (binning etc. come from it)."""
    # Snapshots older than the sums over requests (by_request) took every row as a request
    # of its own, as the noise floor then did: the restored rows are read so again.
    if isinstance(template, NumericSummary | CategoricalSummary):
        decode_summary(template, payload)
        if "by_request" not in payload:
            template.by_request = single_row_sums(template.bins)
    elif isinstance(template, SegmentCounts):
        template.counts = int_array(payload["counts"], template.counts)
        template.by_request = (
            int_array(payload["by_request"], template.by_request)
            if "by_request" in payload
            else single_row_sums(template.counts)
        )
    elif isinstance(template, ClassificationStats):
        template.confusion = int_array(payload["confusion"], template.confusion)
        if "mixed" in payload:  # older snapshots have none: their pairs were counted correct
            template.mixed = int_array(payload["mixed"], template.mixed)
        template.log_loss_sum, template.brier_sum = (
            float(payload["log_loss"]),
            float(payload["brier"]),
        )
        template.scored = int(payload["scored"])
    elif isinstance(template, RegressionStats):
        template.count, template.pct_count = int(payload["count"]), int(payload["pct_count"])
        template.abs_sum, template.sq_sum = float(payload["abs"]), float(payload["sq"])
        template.pct_sum = float(payload["pct"])
    else:
        raise TypeError(f"cannot restore {type(template).__name__}")


Captured = dict[str, tuple[list[Slice[Any]], dict[str, Any] | None]]


def _capture(windows: Mapping[str, SlicedWindow[Any]]) -> Captured:
    """Under the owner's lock: each window's slices, the newest one already encoded.

    Only the newest slice of a window changes; older ones are read-only
    until they expire, so they can be encoded after the lock is released.
    """
    captured: Captured = {}
    for label, window in windows.items():
        pieces = window.slices()
        newest = None
        if pieces:
            newest = {
                "index": pieces[-1].index,
                "entries": {k: encode(v) for k, v in pieces[-1].summaries.items()},
            }
        captured[label] = (pieces[:-1], newest)
    return captured


def _encode_windows(captured: Captured) -> dict[str, list[dict[str, Any]]]:
    result = {}
    for label, (older, newest) in captured.items():
        encoded = [
            {
                "index": piece.index,
                "entries": {key: encode(value) for key, value in piece.summaries.items()},
            }
            for piece in older
        ]
        result[label] = encoded + ([newest] if newest is not None else [])
    return result


def _rebased(index: int, saved: float, seconds: float) -> int:
    """The slice of ``seconds`` holding the start of slice ``index`` of ``saved`` seconds."""
    return index if saved == seconds else int(index * saved // seconds)


def _decode_windows(
    windows: Mapping[str, SlicedWindow[Any]],
    payload: Mapping[str, Any],
    slice_seconds: Mapping[str, Any],
    now: float,
) -> dict[str, list[Slice[Any]]]:
    """The slices of every window in ``payload``, decoded into fresh entries (nothing applied yet).

    Slices saved with another slice length (``window_slices`` changed) go to the slice of
    today's length that holds their start, merged where several land in one: an index of the
    old length read as one of the new would put them far in the future (kept forever) or
    the past (dropped at once).  Slices after ``now``'s (saved under a clock ahead of this
    one) join ``now``'s: the newest slice takes every update until the clock reaches it.
    """
    restored: dict[str, list[Slice[Any]]] = {}
    for label, window in windows.items():
        seconds = window.window.slice_seconds
        saved = float(slice_seconds.get(label, seconds))
        if not 0 < saved < math.inf:
            raise ValueError(f"window {label}: a slice length of {saved!r} seconds")
        pieces: dict[int, Slice[Any]] = {}
        for item in payload.get(label, []):
            fresh = window.fresh()
            if set(fresh) != set(item["entries"]):
                raise ValueError(f"window {label}: the snapshot holds other fields than the config")
            for key, value in fresh.items():
                decode_into(value, item["entries"][key])
            index = min(_rebased(int(item["index"]), saved, seconds), int(now // seconds))
            if index in pieces:
                for key, value in fresh.items():
                    pieces[index].summaries[key].merge(value)
            else:
                pieces[index] = Slice(index, fresh)
        restored[label] = list(pieces.values())
    return restored


def _dumps(value: Any, default: Callable[[Any], Any], depth: int = 2) -> str:
    """``json.dumps(value, allow_nan=False, default=default)``, dict members ``depth`` levels apart.

    One ``json.dumps`` call holds the GIL throughout, while the proxy's
    event loop waits; a call per member keeps each hold short.
    """
    if depth and isinstance(value, dict):
        members = (
            f"{json.dumps(key)}: {_dumps(item, default, depth - 1)}" for key, item in value.items()
        )
        return "{" + ", ".join(members) + "}"
    return json.dumps(value, allow_nan=False, default=default)


def pack(document: Mapping[str, Any]) -> bytes:
    """``document`` as a state file's bytes: gzip of its JSON, a newline, then its ``bytes`` values.

    Each ``bytes`` value (held predictions' columns and ids) is written as
    is after the JSON, which names it ``{"$blob": [offset, length]}``:
    ``json.dumps`` would walk a base64 text of it character by character
    holding the GIL (48 ms for 100,000 held predictions, a stall of the
    proxy's event loop), where this copies it; zlib releases the GIL.  A
    JSON text holds no raw newline, so the first one ends it.
    """
    blobs: list[bytes] = []
    offset = 0

    def blob(value: Any) -> dict[str, list[int]]:
        nonlocal offset
        if not isinstance(value, bytes):
            raise TypeError(f"cannot snapshot {type(value).__name__}")
        blobs.append(value)
        offset += len(value)
        return {_BLOB: [offset - len(value), len(value)]}

    head = _dumps(document, blob).encode()
    return gzip.compress(
        b"".join([head, b"\n", *blobs]) if blobs else head, compresslevel=1, mtime=0
    )


def unpack(data: bytes) -> Any:
    """The document :func:`pack` wrote, or a format 1 or 2 file's (JSON alone).

    A damaged file raises gzip's errors (OSError, EOFError, zlib.error) or ValueError.
    """
    text = gzip.decompress(data)
    end = text.find(b"\n")
    head, body = (text, b"") if end < 0 else (text[:end], memoryview(text)[end + 1 :])

    def blob(item: dict[str, Any]) -> Any:
        match item:  # a feature named "$blob" keys a dict of entries: not a reference
            case {"$blob": [int(start), int(length)]} if len(item) == 1:
                if not 0 <= start <= start + length <= len(body):
                    raise ValueError(f"a blob reference outside the file: {item!r}")
                return bytes(body[start : start + length])
        return item

    return json.loads(head, object_hook=blob)


# Characters a model name keeps in its state file's name; others are percent-encoded.
_FILE_SAFE = "-_.:"
_MAX_FILE_NAME = 200  # bytes; file systems allow 255 and the temporary name adds some


def state_file_name(model: str) -> str:
    """The snapshot's file name for ``model``: ``<model>.state`` for plain names.

    A model name is any UTF-8 text (a label value), so ``/``, ``%`` and
    non-ASCII characters are percent-encoded: the file stays inside the
    state directory whatever the name, and distinct names get distinct
    files.  A name too long for a file name is replaced by a hash of it.
    """
    name = urllib.parse.quote(model, safe=_FILE_SAFE)
    if name.startswith("."):  # not hidden, and never "." or ".."
        name = "%2E" + name[1:]
    if len(name) > _MAX_FILE_NAME:
        digest = hashlib.sha256(model.encode()).hexdigest()[:32]
        name = f"model-{digest}"
    return f"{name}.state"


def stray_snapshots(directory: Path, kept: Iterable[Path]) -> list[Path]:
    """The snapshots in ``directory`` that no store in ``kept`` writes, by name.

    A renamed or removed model leaves its ``.state`` file behind: nothing
    reads it again, so the sidecar names it once at start.
    """
    owned = {path.name for path in kept}
    try:
        found = sorted(directory.glob("*.state"))
    except OSError:  # an unreadable directory fails the snapshot with its own line
        return []
    return [path for path in found if path.name not in owned]


def _window_key(tracker: Tracker) -> str:
    # The field tracker's windows were saved as "windows" before trackers had names.
    return "windows" if tracker.name == "fields" else tracker.name


def _trackers_document(monitor: Monitor) -> dict[str, Any]:
    """Every tracker's windows (and held state) of ``monitor``, keyed as snapshots name them."""
    document: dict[str, Any] = {}
    # Locks are held only to copy references and encode the newest slices: ingestion
    # (on the proxy's loop) waits on them, so the heavy encoding happens after.
    for tracker in monitor.trackers:
        held: Any = None
        with tracker.locked():
            windows = _capture(tracker.windows)
            if isinstance(tracker, HoldsState):
                held = tracker.copy_held()
        document[_window_key(tracker)] = _encode_windows(windows)
        if isinstance(tracker, HoldsState):
            document[tracker.held_key] = tracker.encode_held(held)
    return document


# A monitor's decoded snapshot: per tracker key, its windows' slices and its held state.
Decoded = dict[str, tuple[dict[str, list[Slice[Any]]], Any]]


def _decode_trackers(
    monitor: Monitor, document: Mapping[str, Any], slice_seconds: Mapping[str, Any], now: float
) -> Decoded:
    """Decode ``document``'s windows (and held state) for ``monitor``'s trackers; apply nothing."""
    decoded: Decoded = {}
    for tracker in monitor.trackers:
        key = _window_key(tracker)
        if key not in document:
            if tracker.name == "fields":
                raise KeyError(key)
            continue  # a tracker configured since the snapshot starts empty
        restored = _decode_windows(tracker.windows, document[key], slice_seconds, now)
        held = None
        if isinstance(tracker, HoldsState) and tracker.held_key in document:
            held = tracker.decode_held(document[tracker.held_key])
        decoded[key] = (restored, held)
    return decoded


def _identity(path: Path) -> tuple[int, int] | None:
    """The device and inode of the file at ``path`` (a link followed), or None."""
    try:
        found = path.stat()
    except OSError:
        return None
    return found.st_dev, found.st_ino


def _restore_trackers(monitor: Monitor, decoded: Decoded) -> None:
    for tracker in monitor.trackers:
        key = _window_key(tracker)
        if key not in decoded:
            continue
        restored, held = decoded[key]
        for label, pieces in restored.items():
            tracker.windows[label].restore(pieces)
        if held is not None and isinstance(tracker, HoldsState):
            tracker.restore_held(held)


class StateStore:
    """Snapshots one monitor (its segments and outcomes, and its ``versions``' monitors)."""

    def __init__(
        self,
        directory: Path,
        monitor: Monitor,
        clock: Callable[[], float] = time.time,
        versions: ModelVersions | None = None,
    ) -> None:
        self.directory = directory
        self.monitor = monitor
        self.clock = clock
        self.versions = versions
        self.path = directory / state_file_name(monitor.config.model)
        self.failures = 0  # periodic saves that failed (driftgauge_state_save_failures_total)
        # The file restore() found unusable (its device and inode) and why: tidy() moves it.
        self._unusable: tuple[tuple[int, int], str] | None = None

    def _document(self) -> dict[str, Any]:
        monitor = self.monitor
        document: dict[str, Any] = {
            "format": STATE_FORMAT,
            "format_version": STATE_VERSION,
            "baseline_id": monitor.baseline.id,
            "schema_hash": monitor.config.schema_hash(),
            "saved": self.clock(),
            # Slice indexes count slices of this length (window_slices may change by the restart).
            "slice_seconds": {w.label: w.slice_seconds for w in monitor.config.windows},
            **_trackers_document(monitor),
        }
        if self.versions is not None:  # in the order they appeared, which gave them their labels
            document["versions"] = {
                each.version: _trackers_document(each) for each in self.versions.monitors[1:]
            }
        return document

    def save(self) -> None:
        """Write the snapshot atomically and durably (temporary file, fsync, rename, fsync)."""
        # Owner only, unlike a baseline: it holds what live requests carried (sketches of their
        # values, held predictions with their ids) and only the sidecar, as this user, reads it.
        write_atomically(self.path, pack(self._document()), mode=0o600)

    def tidy(self) -> None:
        """Remove the temporaries that saves a killed sidecar left beside the snapshot, and
        move aside the snapshot :meth:`restore` found unusable if it is still there (logged).

        Not part of :meth:`restore`: a sidecar of the same config that fails to bind restores
        too, and the save the serving one has in progress writes such a temporary (and the
        serving one's snapshot, taken against another baseline, is unusable to it).
        """
        leftovers = remove_leftovers(self.path)
        if leftovers:
            log.info("removed %d unfinished snapshot file(s) beside %s", leftovers, self.path)
        if self._unusable is None:
            return
        (found, reason), self._unusable = self._unusable, None
        if _identity(self.path) != found:  # replaced meanwhile: not the file found unusable
            return
        try:
            aside = move_aside(self.path, f".corrupt-{int(self.clock())}")
        except OSError as error:  # the next snapshot replaces it, or fails with its own line
            log.warning(
                "state snapshot %s unusable (%s); cannot move it aside (%s), starting empty",
                self.path,
                reason,
                error.strerror or error,
            )
            return
        log.warning(
            "state snapshot %s unusable (%s); moved to %s, starting empty",
            self.path,
            reason,
            aside.name,
        )

    def restore(self) -> bool:
        """Load the snapshot if there is a usable one; True when state was restored."""
        if not self.path.exists():
            return False
        try:
            with open(open_regular(self.path), "rb") as handle:
                document = unpack(handle.read())
            if not isinstance(document, dict) or document.get("format") != STATE_FORMAT:
                raise ValueError("not a driftgauge state snapshot")
            if document.get("format_version") not in READABLE_VERSIONS:
                raise ValueError(
                    f"format version {document.get('format_version')!r}, expected one of "
                    f"{READABLE_VERSIONS}"
                )
            if document.get("baseline_id") != self.monitor.baseline.id:
                raise ValueError("taken against another baseline")
            if document.get("schema_hash") != self.monitor.config.schema_hash():
                raise ValueError("taken with another config")
            self._apply(document)
        # zlib.error: a damaged compressed stream; IndexError: datasketches on a sketch cut
        # short; AttributeError: a table where a list was saved, or the reverse.  Anything
        # unreadable is moved aside, never a reason not to start.
        except (
            OSError,
            EOFError,
            zlib.error,
            ValueError,
            KeyError,
            TypeError,
            RuntimeError,
            IndexError,
            AttributeError,
        ) as exc:
            # Moved aside by tidy(), once serving; not found there, there is nothing to move.
            found = _identity(self.path)
            self._unusable = (found, str(exc)) if found is not None else None
            return False
        log.info("restored state from %s", self.path)
        return True

    def _apply(self, document: Mapping[str, Any]) -> None:
        """Decode everything first, then apply: a bad snapshot changes nothing."""
        now = self.monitor.clock()  # the clock the windows run on
        slice_seconds = document.get("slice_seconds", {})  # not in snapshots before it
        if not isinstance(slice_seconds, dict):
            raise ValueError(f"slice_seconds is {slice_seconds!r}, not a table")
        model = _decode_trackers(self.monitor, document, slice_seconds, now)
        saved = document.get("versions", {})  # not in snapshots before versions were saved
        if not isinstance(saved, dict):
            raise ValueError(f"versions is {type(saved).__name__}, not a table")
        # A version's trackers are the model's but its outcomes: decoded against them.
        versions = [
            (str(label), _decode_trackers(self.monitor, part, slice_seconds, now))
            for label, part in (saved.items() if self.versions is not None else ())
        ]
        _restore_trackers(self.monitor, model)
        restored: set[Monitor] = set()
        for label, decoded in versions:
            assert self.versions is not None  # no versions decoded otherwise
            monitor = self.versions.monitor_for(label)
            # With fewer versions configured since, later ones share __other__: the first kept.
            if monitor not in restored:
                restored.add(monitor)
                _restore_trackers(monitor, decoded)
