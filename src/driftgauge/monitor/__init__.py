"""The live store: windows and counters per field, segment and outcome trackers, and the batcher feeding them."""

from driftgauge.monitor.fields import (
    CATEGORICAL_INVALID_REASONS,
    NUMERIC_INVALID_REASONS,
    QUANTILES,
    FieldCounters,
    FieldStats,
    Monitor,
    Snapshot,
)

__all__ = [
    "CATEGORICAL_INVALID_REASONS",
    "NUMERIC_INVALID_REASONS",
    "QUANTILES",
    "FieldCounters",
    "FieldStats",
    "Monitor",
    "Snapshot",
]
