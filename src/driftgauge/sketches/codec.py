"""Summaries as JSON-ready dicts (sketches as DataSketches' own bytes, base64) and back.

Used by baseline files and by state snapshots; a decode fills a fresh
summary whose binning the caller already knows.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import datasketches as ds
import numpy as np
import numpy.typing as npt

from driftgauge.sketches.summary import CategoricalSummary, NumericSummary, Summary

__all__ = ["decode_summary", "encode_summary", "int_array"]


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
    if isinstance(summary, NumericSummary):
        return common | {
            "wrong_type": summary.wrong_type,
            "nan": summary.nan,
            "inf": summary.inf,
            # JSON has no inf/nan; a sum that overflowed is kept as text ("inf"), read by float().
            "sum": summary.total if np.isfinite(summary.total) else str(summary.total),
            "min": summary.minimum if np.isfinite(summary.minimum) else None,
            "max": summary.maximum if np.isfinite(summary.maximum) else None,
            "kll": _b64(summary.kll.serialize()),
        }
    return common | {
        "frequent": _b64(summary.frequent.serialize()),
        "hll": _b64(summary.hll.serialize_compact()),
        "hll_lg_k": summary.hll_lg_k,
    }


def decode_summary(template: Summary, payload: Mapping[str, Any]) -> None:
    """Fill ``template`` (fresh, with the right binning) from ``payload``."""
    template.bins = int_array(payload["bin_counts"], template.bins)
    template.count, template.missing = int(payload["count"]), int(payload["missing"])
    if isinstance(template, NumericSummary):
        template.kll = ds.kll_doubles_sketch.deserialize(base64.b64decode(payload["kll"]))
        template.wrong_type = int(payload["wrong_type"])
        template.nan, template.inf = int(payload["nan"]), int(payload["inf"])
        template.total = float(payload["sum"])
        template.minimum = float("inf") if payload["min"] is None else float(payload["min"])
        template.maximum = float("-inf") if payload["max"] is None else float(payload["max"])
    elif isinstance(template, CategoricalSummary):
        template.frequent = ds.frequent_strings_sketch.deserialize(
            base64.b64decode(payload["frequent"])
        )
        template.hll = ds.hll_sketch.deserialize(base64.b64decode(payload["hll"]))
