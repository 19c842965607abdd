"""Summaries as JSON-ready dicts (sketches as DataSketches' own bytes, base64) and back.

Used by baseline files and by state snapshots; a decode fills a fresh
summary whose binning the caller already knows.  A float32 KLL sketch is
marked ``"kll_items": "float32"``; a payload without the mark holds a
float64 sketch (baselines, and snapshots written before live windows kept
float32), which a float32 summary reads through :func:`kll_doubles_to_floats`.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import datasketches as ds
import numpy as np
import numpy.typing as npt

from driftgauge.sketches.summary import (
    CategoricalSummary,
    ItemType,
    NumericSummary,
    Summary,
    kll_items,
)

__all__ = ["KLL_FAMILY", "decode_summary", "encode_summary", "int_array", "kll_doubles_to_floats"]

# DataSketches' KLL serial format: an 8-byte preamble (flags in byte 3, bit 0 empty, bit 2
# a single item); a full sketch adds n (8), min_k (2), num_levels (1), one unused byte and
# num_levels uint32 level offsets; the items follow (min, max, then the retained items).
_PREAMBLE = 8
KLL_FAMILY = 15  # byte 2: DataSketches' family id of KLL sketches
_EMPTY, _SINGLE_ITEM = 1, 4
_FULL_HEADER = 12


def kll_doubles_to_floats(data: bytes) -> bytes:
    """A serialized ``kll_doubles_sketch`` as the ``kll_floats_sketch`` of its items rounded.

    Everything but the items (n, k, min_k, the levels and so each item's
    weight) is kept as it is; each item, the min and max included, is
    rounded to float32 as :func:`~driftgauge.sketches.summary.kll_items`
    does.  Rounding is monotone, so every level stays in order and the
    result is the sketch the rounded values would have given with the same
    compactions.  ValueError when ``data`` is not a float64 KLL sketch.
    """
    if len(data) < _PREAMBLE or data[2] != KLL_FAMILY:
        raise ValueError("not a serialized KLL sketch")
    flags = data[3]
    if flags & _EMPTY:
        return bytes(data[:_PREAMBLE])
    header = _PREAMBLE
    if not flags & _SINGLE_ITEM:
        if len(data) < _PREAMBLE + _FULL_HEADER:
            raise ValueError("a truncated KLL sketch")
        header += _FULL_HEADER + 4 * data[_PREAMBLE + 10]
    body = memoryview(data)[header:]
    if len(body) == 0 or len(body) % 8:
        raise ValueError(f"{len(body)} bytes of items: not a float64 KLL sketch")
    doubles = np.frombuffer(body, dtype="<f8")
    if not np.isfinite(doubles).all():
        raise ValueError("a KLL sketch with non-finite items")
    singles = kll_items(doubles, "float32", float(doubles.min()), float(doubles.max()))
    return bytes(data[:header]) + singles.astype("<f4").tobytes()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def int_array(values: Any, like: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """``values`` as an int64 array of ``like``'s shape, or ValueError."""
    array = np.asarray(values, dtype=np.int64)
    if array.shape != like.shape:
        raise ValueError(f"shape {array.shape} where {like.shape} was expected")
    return array


def encode_summary(summary: Summary) -> dict[str, Any]:
    common = {
        "count": summary.count,
        "missing": summary.missing,
        "bin_counts": summary.bins.tolist(),
    }
    if summary.by_request.any():  # a live window's (a baseline's are zeros, left out)
        common["by_request"] = summary.by_request.tolist()
    if isinstance(summary, NumericSummary):
        return (
            common
            | {
                "wrong_type": summary.wrong_type,
                "nan": summary.nan,
                "inf": summary.inf,
                # JSON has no inf/nan; a sum that overflowed is kept as text ("inf"), read by
                # float(), with "scaled_sum" (see NumericSummary), absent from older files.
                "sum": summary.total if np.isfinite(summary.total) else str(summary.total),
                "min": summary.minimum if np.isfinite(summary.minimum) else None,
                "max": summary.maximum if np.isfinite(summary.maximum) else None,
                "kll": _b64(summary.kll.serialize()),
            }
            | ({"kll_items": "float32"} if summary.items == "float32" else {})
            | ({"scaled_sum": summary.scaled} if _overflowed(summary) else {})
        )
    return common | {
        "frequent": _b64(summary.frequent.serialize()),
        "hll": _b64(summary.hll.serialize_compact()),
        "hll_lg_k": summary.hll_lg_k,
    }


def _overflowed(summary: NumericSummary) -> bool:
    """Whether the sum overflowed and its scaled sum is known (not NaN, from an older file)."""
    return not np.isfinite(summary.total) and np.isfinite(summary.scaled)


def decode_summary(template: Summary, payload: Mapping[str, Any]) -> None:
    """Fill ``template`` (fresh, with the right binning) from ``payload``."""
    template.bins = int_array(payload["bin_counts"], template.bins)
    template.count, template.missing = int(payload["count"]), int(payload["missing"])
    if "by_request" in payload:
        template.by_request = int_array(payload["by_request"], template.by_request)
    if isinstance(template, NumericSummary):
        template.kll = _decode_kll(
            base64.b64decode(payload["kll"]), payload.get("kll_items", "float64"), template.items
        )
        template.wrong_type = int(payload["wrong_type"])
        template.nan, template.inf = int(payload["nan"]), int(payload["inf"])
        template.total = float(payload["sum"])
        # An older file's overflowed sum has no scaled sum to give the mean by: NaN, no mean.
        template.scaled = float(payload.get("scaled_sum", "nan"))
        template.minimum = float("inf") if payload["min"] is None else float(payload["min"])
        template.maximum = float("-inf") if payload["max"] is None else float(payload["max"])
    elif isinstance(template, CategoricalSummary):
        template.frequent = ds.frequent_strings_sketch.deserialize(
            base64.b64decode(payload["frequent"])
        )
        template.hll = ds.hll_sketch.deserialize(base64.b64decode(payload["hll"]))


def _decode_kll(data: bytes, stored: ItemType, wanted: ItemType) -> Any:
    """A KLL sketch of ``wanted`` items from one serialized with ``stored`` items."""
    if stored == wanted == "float64":
        return ds.kll_doubles_sketch.deserialize(data)
    if wanted == "float32" and stored in ("float32", "float64"):
        floats = data if stored == "float32" else kll_doubles_to_floats(data)
        return ds.kll_floats_sketch.deserialize(floats)
    raise ValueError(f"a KLL sketch of {stored!r} items where {wanted} items were expected")
