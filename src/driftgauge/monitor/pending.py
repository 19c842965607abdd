"""Predictions awaiting their labels, held column by column in numpy arrays.

A full store holds ``feedback.max_pending`` rows (100,000 by default) and is
snapshotted every few seconds, so its layout matters: Python objects per
row cost about 300 bytes and a snapshot had to walk every row in Python,
holding the GIL (and stalling the proxy's event loop) for 100 ms and more.
Here each row is one slot in a few flat arrays (time, prediction, class key,
probability, segment codes, id, insertion number); slot order is insertion
order, so the oldest rows sit at the head.  Rows are appended at the tail
and evicted from the head; a label frees its slot wherever it is.  When the
tail reaches the end of the arrays, the live rows move to the front of new
arrays twice their number (amortised O(1) per row).  A dict maps each id to
its row's insertion number, which never changes: moving rows leaves the
dict alone, and a binary search in the (ascending) insertion numbers finds
a row's slot.

A snapshot copies the live rows with a few array operations
(:meth:`PendingStore.snapshot`, under the owner's lock) and encodes them
without per-row Python work (:func:`encode_rows`): the ids as the UTF-8
bytes of one string joined by newlines, and each numeric column as its
little-endian bytes with its dtype and shape.  Bytes are what the state
file stores outside its JSON (:mod:`driftgauge.runtime.state`), so no
encoder walks them holding the GIL.  Ids are not restricted: should one
hold a newline (possible through ``feedback.id_path`` or a tailed record),
that snapshot stores them as a JSON list of strings instead.
:func:`decode_rows` reads these, and the base64 text of state format 2,
and checks everything, raising ``ValueError`` on any mismatch.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["PendingRows", "PendingStore", "decode_rows", "encode_rows"]

FloatArray = npt.NDArray[np.float64]
CodeArray = npt.NDArray[np.int16]
KeyArray = npt.NDArray[np.int64]

MIN_CAPACITY = 1_024
_SCAN = 256  # first chunk of slots an expiry looks at; later chunks double

# Wire dtypes of the encoded columns (little-endian whatever the host).
_FLOAT = "<f8"
_CODE = "<i2"
_KEY = "<i8"
_UNPAIRED = "surrogatepass"  # an id may hold a lone surrogate (valid JSON, not valid UTF-8)


@dataclass(frozen=True, slots=True)
class PendingRows:
    """Held rows, oldest first: ids and aligned columns.

    ``segments`` has one column per segment feature (possibly none): each
    row's segment index, -1 where the feature was missing.  ``probability``
    is NaN where the model gave none.  ``classes`` is each predicted class's
    own key (:func:`~driftgauge.sketches.summary.category_keys`), which tells
    apart the classes ``predicted`` lumps into a bucket; 0 where not known (a
    regressor, or a row restored from an older snapshot).
    """

    ids: list[str]
    ts: FloatArray
    predicted: FloatArray
    probability: FloatArray
    segments: CodeArray
    classes: KeyArray

    def __len__(self) -> int:
        return len(self.ids)


class PendingStore:
    """Rows awaiting labels under their ids, oldest first; ``width`` segment codes per row.

    Not thread-safe: the owner (:class:`~driftgauge.monitor.outcomes.Outcomes`)
    holds its lock around every call.
    """

    def __init__(self, width: int, capacity: int = MIN_CAPACITY) -> None:
        self.width = width
        self._min_capacity = max(1, capacity)
        self._numbers: dict[str, int] = {}  # id -> insertion number of its row
        self._next = 0  # the insertion number of the next row
        self._head = self._tail = 0
        self._allocate(self._min_capacity)

    def _allocate(self, capacity: int) -> None:
        self._ts: FloatArray = np.empty(capacity)
        self._predicted: FloatArray = np.empty(capacity)
        self._classes: KeyArray = np.empty(capacity, dtype=np.int64)
        self._probability: FloatArray = np.empty(capacity)
        self._segments: CodeArray = np.empty((capacity, self.width), dtype=np.int16)
        self._keys: npt.NDArray[np.object_] = np.full(capacity, None, dtype=object)
        self._number: npt.NDArray[np.int64] = np.empty(capacity, dtype=np.int64)
        self._live: npt.NDArray[np.bool_] = np.zeros(capacity, dtype=np.bool_)

    def _columns(self) -> tuple[npt.NDArray[Any], ...]:
        """Every per-slot array but ``_live`` (in the order :meth:`restore` fills them)."""
        return (
            self._ts,
            self._predicted,
            self._probability,
            self._segments,
            self._classes,
            self._keys,
            self._number,
        )

    def __len__(self) -> int:
        return len(self._numbers)

    @property
    def capacity(self) -> int:
        """Slots allocated (live rows, freed slots not yet reclaimed, and free room)."""
        return len(self._ts)

    def add(
        self,
        ids: Sequence[str | None],
        ts: float,
        predicted: FloatArray,
        probability: FloatArray,
        segments: npt.NDArray[np.integer[Any]],
        classes: KeyArray | None = None,
    ) -> None:
        """Hold row ``i`` under ``ids[i]`` at time ``ts``, newest last (``classes``: 0 if None).

        Rows without an id (``None``) or with a NaN prediction wait for
        nothing and are skipped.  An id already held is replaced: its old
        row goes and the new one is the newest (so is the last of repeats
        within ``ids``).  Segment codes must fit int16 (``segments.top`` is
        at most 50).
        """
        rows = len(ids)
        if classes is None:
            classes = np.zeros(rows, dtype=np.int64)
        if (
            predicted.shape != (rows,)
            or probability.shape != (rows,)
            or classes.shape != (rows,)
            or segments.shape != (rows, self.width)
        ):
            raise ValueError(
                f"{rows} ids, but columns of shapes {predicted.shape}, {probability.shape}, "
                f"{segments.shape} (segments {self.width} wide)"
            )
        keep = ~np.isnan(predicted)
        if None in ids:
            keep &= np.fromiter((key is not None for key in ids), dtype=np.bool_, count=rows)
        kept = [key for key, ok in zip(ids, keep.tolist(), strict=True) if ok and key is not None]
        count = len(kept)
        if not count:
            return
        if self._tail + count > self.capacity:
            self._compact(max(self._min_capacity, 2 * (len(self._numbers) + count)))
        start, stop, first = self._tail, self._tail + count, self._next
        self._ts[start:stop] = ts
        self._predicted[start:stop] = predicted[keep]
        self._probability[start:stop] = probability[keep]
        self._segments[start:stop] = segments[keep]
        self._classes[start:stop] = classes[keep]
        self._keys[start:stop] = kept
        self._number[start:stop] = np.arange(first, first + count)
        self._live[start:stop] = True
        self._tail, self._next = stop, first + count
        numbers, replaced = self._numbers, []
        for number, key in enumerate(kept, first):
            old = numbers.get(key)
            if old is not None:
                replaced.append(old)
            numbers[key] = number
        if replaced:
            self._free(self._slots(replaced))

    def _slots(self, numbers: Sequence[int]) -> npt.NDArray[np.intp]:
        """The slots of the rows inserted as ``numbers`` (each one held, or freed just now)."""
        head = self._head
        found = np.searchsorted(self._number[head : self._tail], np.asarray(numbers, np.int64))
        return found + head

    def _free(self, slots: npt.NDArray[np.intp]) -> None:
        self._live[slots] = False
        self._keys[slots] = None  # the id string is no longer kept alive by this slot

    def _compact(self, capacity: int) -> None:
        """New arrays of ``capacity`` slots with the live rows at the front, in order."""
        head, tail = self._head, self._tail
        alive = np.flatnonzero(self._live[head:tail]) + head
        moved = [column[alive] for column in self._columns()]
        self._allocate(capacity)
        for column, values in zip(self._columns(), moved, strict=True):
            column[: len(alive)] = values
        self._live[: len(alive)] = True
        self._head, self._tail = 0, len(alive)

    def pop(
        self, keys: Sequence[str], alternates: Sequence[str | None] | None = None
    ) -> tuple[npt.NDArray[np.bool_], PendingRows]:
        """Take out the rows held under ``keys``: which keys matched, and the matched rows.

        ``alternates[i]``, when given and not None, is tried where
        ``keys[i]`` is not held.  Keys are taken in order, so a key that
        occurs twice matches once.  The rows come in the order of ``keys``.
        """
        numbers, taken = self._numbers, []
        matched = np.zeros(len(keys), dtype=np.bool_)
        for index, key in enumerate(keys):
            number = numbers.pop(key, None)
            if number is None and alternates is not None:
                alternate = alternates[index]
                if alternate is not None:
                    number = numbers.pop(alternate, None)
            if number is not None:
                taken.append(number)
                matched[index] = True
        chosen = self._slots(taken)
        rows = self._rows(chosen)
        self._free(chosen)
        return matched, rows

    def expire(self, now: float, ttl: float, max_pending: int) -> int:
        """Evict the oldest rows beyond ``max_pending``, then those older than ``ttl``; how many went.

        As a queue would: eviction stops at the first (oldest) row kept,
        even if a later row is older still.
        """
        horizon, excess = now - ttl, len(self._numbers) - max_pending
        live, ts = self._live, self._ts
        position, tail, size = self._head, self._tail, _SCAN
        # Chunks grow from the head, so the work follows the rows (and freed slots) passed.
        while position < tail:
            stop = min(position + size, tail)
            alive = live[position:stop]
            if excess > 0:
                seen = np.cumsum(alive)
                if seen[-1] < excess:
                    excess -= int(seen[-1])
                else:
                    position += int(np.searchsorted(seen, excess)) + 1
                    excess = 0
                    continue
            else:
                kept = alive & ~(ts[position:stop] < horizon)  # as a queue compares: NaN stays
                if kept.any():
                    position += int(kept.argmax())
                    break
            position, size = stop, 2 * size
        return self._drop_head(position)

    def _drop_head(self, stop: int) -> int:
        """Evict every live row before slot ``stop``."""
        head = self._head
        if stop == head:
            return 0
        alive = self._live[head:stop]
        gone = self._keys[head:stop][alive].tolist()
        numbers = self._numbers
        for key in gone:
            del numbers[key]
        self._live[head:stop] = False
        self._keys[head:stop] = None
        self._head = stop
        if not numbers:  # every slot is free again: start over at the front
            self._head = self._tail = 0
        return len(gone)

    def _rows(self, slots: npt.NDArray[np.intp]) -> PendingRows:
        return PendingRows(
            self._keys[slots].tolist(),
            self._ts[slots],
            self._predicted[slots],
            self._probability[slots],
            self._segments[slots],
            self._classes[slots],
        )

    def snapshot(self) -> PendingRows:
        """A copy of the held rows, oldest first (a few array operations, for the owner's lock)."""
        head, tail = self._head, self._tail
        alive = np.flatnonzero(self._live[head:tail]) + head
        return self._rows(alive)

    def restore(self, rows: PendingRows) -> None:
        """Hold exactly ``rows`` (from :func:`decode_rows`, ids unique), replacing everything."""
        held = len(rows)
        if len(set(rows.ids)) != held:
            raise ValueError("held predictions repeat an id")
        if rows.segments.shape != (held, self.width):
            raise ValueError(
                f"segment codes of shape {rows.segments.shape}, expected {(held, self.width)}"
            )
        self._allocate(max(self._min_capacity, 2 * held))
        columns = (
            rows.ts,
            rows.predicted,
            rows.probability,
            rows.segments,
            rows.classes,
            rows.ids,
            range(held),
        )
        for column, values in zip(self._columns(), columns, strict=True):
            column[:held] = values
        self._live[:held] = True
        self._head, self._tail, self._next = 0, held, held
        self._numbers = dict(zip(rows.ids, range(held), strict=True))


def _column(array: npt.NDArray[Any], dtype: str) -> dict[str, Any]:
    return {
        "dtype": dtype,
        "shape": list(array.shape),
        "data": array.astype(dtype, copy=False).tobytes(),
    }


def _encode_ids(ids: list[str]) -> bytes | list[str]:
    text = "\n".join(ids)
    # No rows, or an id with a newline in it, would not split back: those go as a list.
    if text.count("\n") != len(ids) - 1:
        return ids
    return text.encode("utf-8", _UNPAIRED)


def encode_rows(rows: PendingRows) -> dict[str, Any]:
    """A dict of ``rows`` for a state snapshot: ids as newline-joined UTF-8, columns as bytes.

    Any id string survives (lone surrogates pass through UTF-8; ids with
    newlines fall back to a list), and so does a NaN (absent) probability.
    """
    return {
        "ids": _encode_ids(rows.ids),
        "ts": _column(rows.ts, _FLOAT),
        "predicted": _column(rows.predicted, _FLOAT),
        "probability": _column(rows.probability, _FLOAT),
        "segments": _column(rows.segments, _CODE),
        "classes": _column(rows.classes, _KEY),
    }


def _decode_column(
    payload: Mapping[str, Any], name: str, dtype: str, shape: tuple[int, ...]
) -> npt.NDArray[Any]:
    item = payload.get(name)
    if not isinstance(item, dict):
        raise ValueError(f"held predictions: {name!r} is not an object")
    if item.get("dtype") != dtype:
        raise ValueError(f"held predictions: {name} of dtype {item.get('dtype')!r}, not {dtype!r}")
    if item.get("shape") != list(shape):
        raise ValueError(
            f"held predictions: {name} of shape {item.get('shape')!r}, expected {list(shape)}"
        )
    raw = item.get("data")
    if isinstance(raw, str):  # state format 2
        try:
            raw = base64.b64decode(raw, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"held predictions: {name} data is not base64 ({exc})") from exc
    if not isinstance(raw, bytes):
        raise ValueError(f"held predictions: {name} data is neither bytes nor base64")
    expected = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if len(raw) != expected:
        raise ValueError(f"held predictions: {name} holds {len(raw)} bytes, expected {expected}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def _decode_listed(payload: list[Any], width: int) -> PendingRows:
    """Rows as state format 1 held them: ``[id, ts, predicted, probability, [segment codes]]``.

    Read so that an upgrade keeps what the previous version saved; numbers
    may be text (``"nan"``), a row without segment codes gets -1 for each.
    """
    ids, ts, predicted, probability, segments = [], [], [], [], []
    try:
        for key, at, value, chance, codes in payload:
            if not isinstance(key, str) or not isinstance(codes, list):
                raise ValueError("malformed row")
            if len(codes) not in (0, width):
                raise ValueError("other segments than the config")
            ids.append(key)
            ts.append(float(at))
            predicted.append(float(value))
            probability.append(math.nan if chance is None else float(chance))
            segments.append([int(code) for code in codes] if codes else [-1] * width)
    except (TypeError, ValueError) as exc:  # not 5-item rows, or values that are not numbers
        raise ValueError(f"held predictions (format 1): {exc}") from exc
    return _checked(
        ids,
        np.asarray(ts, dtype=np.float64),
        np.asarray(predicted, dtype=np.float64),
        np.asarray(probability, dtype=np.float64),
        np.asarray(segments, dtype=np.int64).reshape(len(ids), width),
        np.zeros(len(ids), dtype=np.int64),
    )


def decode_rows(payload: Any, width: int) -> PendingRows:
    """The rows of :func:`encode_rows`' ``payload``, each with ``width`` segment codes; or ValueError.

    A list is read as state format 1 held them (:func:`_decode_listed`).
    """
    if isinstance(payload, list):
        return _decode_listed(payload, width)
    if not isinstance(payload, dict):
        raise ValueError(f"held predictions: expected an object, got {type(payload).__name__}")
    ids = payload.get("ids")
    if isinstance(ids, bytes):
        try:
            ids = ids.decode("utf-8", _UNPAIRED)
        except UnicodeDecodeError as exc:
            raise ValueError(f"held predictions: 'ids' is not UTF-8 ({exc})") from exc
    if isinstance(ids, str):  # state format 2 held them as text
        ids = ids.split("\n")
    if not isinstance(ids, list) or not all(isinstance(key, str) for key in ids):
        raise ValueError("held predictions: 'ids' is neither a string nor a list of strings")
    held = len(ids)
    return _checked(
        ids,
        _decode_column(payload, "ts", _FLOAT, (held,)).astype(np.float64),
        _decode_column(payload, "predicted", _FLOAT, (held,)).astype(np.float64),
        _decode_column(payload, "probability", _FLOAT, (held,)).astype(np.float64),
        _decode_column(payload, "segments", _CODE, (held, width)),
        # Snapshots before class keys hold none: 0, as for a regressor.
        _decode_column(payload, "classes", _KEY, (held,)).astype(np.int64)
        if "classes" in payload
        else np.zeros(held, dtype=np.int64),
    )


def _checked(
    ids: list[str],
    ts: FloatArray,
    predicted: FloatArray,
    probability: FloatArray,
    segments: npt.NDArray[np.integer[Any]],
    classes: KeyArray,
) -> PendingRows:
    if len(set(ids)) != len(ids):
        raise ValueError("held predictions repeat an id")
    if not np.isfinite(ts).all():
        raise ValueError("held predictions: a time is not finite")
    if np.isnan(predicted).any():
        raise ValueError("held predictions: a prediction is NaN")
    if segments.size and (segments.min() < -1 or segments.max() > np.iinfo(np.int16).max):
        raise ValueError(f"held predictions: segment codes outside -1..{np.iinfo(np.int16).max}")
    return PendingRows(ids, ts, predicted, probability, segments.astype(np.int16), classes)
