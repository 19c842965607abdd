"""What a baseline holds: one summary per field, the segment crosstab and the PCA.

Built by :mod:`~driftgauge.baseline.build`, written and read by
:mod:`~driftgauge.baseline.store`, joined by :mod:`~driftgauge.baseline.merge`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from driftgauge.baseline.multivariate import PcaModel
from driftgauge.config import FieldSpec
from driftgauge.sketches.summary import (
    ItemType,
    Summary,
)

__all__ = ["KNOWN_CATEGORY_LIMIT", "Baseline", "FieldBaseline"]


# Up to this many distinct categories the baseline keeps them all, exactly,
# which is what lets the sidecar tell a rare known category from an unseen one.
KNOWN_CATEGORY_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class FieldBaseline:
    """One field's baseline summary.

    ``exact`` says whether the bin counts are exact (always, for a baseline
    built from data; a merge of baselines with different edges re-estimates
    them from the merged sketch).  ``category_counts`` holds every category's
    exact count when there were at most ``KNOWN_CATEGORY_LIMIT`` of them.
    ``edge_rank_error`` bounds how far (in normalized rank) a numeric field's
    edges may sit from the exact quantiles of its rule (0 when the sketch
    held every value; ``None`` in baselines written before it was recorded).
    ``live_items`` is what a numeric field's live sketches keep: float32, or float64 for a
    field whose training data float32 would merge (:mod:`driftgauge.baseline.build`), whose
    baseline sketch and edges are then of its float64 values too.
    """

    spec: FieldSpec
    summary: Summary
    exact: bool = True
    category_counts: dict[str, int] | None = None
    edge_rank_error: float | None = None
    live_items: ItemType = "float32"

    @property
    def ratios(self) -> list[float]:
        total = float(self.summary.bins.sum())
        return [float(c) / total if total else 0.0 for c in self.summary.bins]

    @property
    def bin_labels(self) -> list[str]:
        return self.summary.binning.labels()


@dataclass(frozen=True, slots=True)
class Baseline:
    id: str
    created: float
    rows: int
    schema_hash: str
    driftgauge_version: str
    kll_k: int
    fields: dict[str, FieldBaseline] = field(default_factory=dict)
    # segment feature -> prediction -> counts[segment, prediction bin]
    segments: dict[str, dict[str, npt.NDArray[np.int64]]] = field(default_factory=dict)
    multivariate: PcaModel | None = None
