"""Mergeable field summaries and the sliding windows built from them."""

from driftgauge.sketches.summary import (
    OTHER,
    UNSEEN,
    CategoricalBinning,
    CategoricalSummary,
    NumericBinning,
    NumericSummary,
    Summary,
    split_finite,
    to_categories,
    to_floats,
)
from driftgauge.sketches.window import Slice, SlicedWindow

__all__ = [
    "OTHER",
    "UNSEEN",
    "CategoricalBinning",
    "CategoricalSummary",
    "NumericBinning",
    "NumericSummary",
    "Slice",
    "SlicedWindow",
    "Summary",
    "split_finite",
    "to_categories",
    "to_floats",
]
