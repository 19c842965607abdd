"""The live store: a model's trackers (fields, segments, outcomes), and the batcher feeding them."""

from driftgauge.monitor.fields import (
    CATEGORICAL_INVALID_REASONS,
    NUMERIC_INVALID_REASONS,
    QUANTILES,
    FieldCounters,
    FieldStats,
    FieldTracker,
    Snapshot,
)
from driftgauge.monitor.model import Monitor
from driftgauge.monitor.tracker import HoldsState, Observation, Tracker

__all__ = [
    "CATEGORICAL_INVALID_REASONS",
    "NUMERIC_INVALID_REASONS",
    "QUANTILES",
    "FieldCounters",
    "FieldStats",
    "FieldTracker",
    "HoldsState",
    "Monitor",
    "Observation",
    "Snapshot",
    "Tracker",
]
