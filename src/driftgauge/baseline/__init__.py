"""The baseline: what the training data looked like, built once, read by the sidecar."""

from driftgauge.baseline.build import build_baseline, segment_binning, terminal_progress
from driftgauge.baseline.describe import describe
from driftgauge.baseline.inputs import DataInput, resolve_inputs
from driftgauge.baseline.merge import merge_baselines
from driftgauge.baseline.model import Baseline, FieldBaseline
from driftgauge.baseline.store import (
    FORMAT,
    FORMAT_VERSION,
    check_against,
    load_baseline,
    save_baseline,
)
from driftgauge.baseline.usable import (
    check_usable,
    load_served,
    mostly_not_numbers,
    without_values,
)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "Baseline",
    "DataInput",
    "FieldBaseline",
    "build_baseline",
    "check_against",
    "check_usable",
    "describe",
    "load_baseline",
    "load_served",
    "merge_baselines",
    "mostly_not_numbers",
    "resolve_inputs",
    "save_baseline",
    "segment_binning",
    "terminal_progress",
    "without_values",
]
