"""The baseline: what the training data looked like, built once, read by the sidecar."""

from driftgauge.baseline.build import (
    FORMAT,
    FORMAT_VERSION,
    Baseline,
    FieldBaseline,
    build_baseline,
    check_against,
    describe,
    load_baseline,
    merge_baselines,
    save_baseline,
)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "Baseline",
    "FieldBaseline",
    "build_baseline",
    "check_against",
    "describe",
    "load_baseline",
    "merge_baselines",
    "save_baseline",
]
