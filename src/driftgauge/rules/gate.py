"""The χ² significance gate of the drift alerts: its recording rules and its PSI condition.

With no drift, PSI / noise floor follows χ²(df)/df (df = the field's baseline
bins holding data − 1), so the gate multiplies the noise floor by that law's
quantile at the configured significance, and a window counts only once each
baseline bin expects ``MIN_EXPECTED`` observations (docs/statistics.md).
"""

from __future__ import annotations

import math
from typing import Any

from driftgauge.rules.promql import matchers, num

__all__ = [
    "BINS",
    "GATE",
    "MIN_EXPECTED",
    "READY",
    "gate_record",
    "gate_selector",
    "gate_text",
    "psi_condition",
    "readiness_records",
]


GATE = "driftgauge:psi_chi2_gate"
# The baseline bins holding data, per field and sidecar: recorded once an evaluation for
# every gate to read, instead of each counting the field's bin ratios twice itself.
BINS = "driftgauge:baseline_bin_ratio:count_nonzero"


def _z_text(z: float) -> str:
    """A gate's z as its recording rule's ``z`` label and its PromQL number: 3.09, 3.72."""
    return f"{z:.2f}"


def gate_selector(model: str, z: float) -> str:
    return f"{GATE}{{{matchers(('model', '=', model), ('z', '=', _z_text(z)))}}}"


def gate_record(model: str, z: float) -> dict[str, Any]:
    """The recording rule of the χ² gate's multiplier at ``z`` for each field of ``model``.

    With no drift PSI / noise floor follows χ²(df)/df, df = baseline bins holding data
    (:data:`BINS`) − 1 (at least 1, as the sidecar counts them); Wilson–Hilferty gives its
    quantile at z with ``sqrt`` and ``^``. A field whose bin ratios are not scraped gets the df = 1 multiplier,
    the largest, so it is never gated more loosely than its real df would gate it.
    """
    m = matchers(("model", "=", model))
    df = f"clamp_min({BINS}{{{m}}} - 1, 1)"
    a = 2.0 / 9.0
    fallback = (1.0 - a + round(z, 2) * math.sqrt(a)) ** 3
    return {
        "record": GATE,
        "expr": (
            "(\n"
            f"  1 - 2 / (9 * {df})\n"
            f"  + {_z_text(z)} * sqrt(2 / (9 * {df}))\n"
            ") ^ 3\n"
            f"or {fallback:.2f} * group without (window) (driftgauge_psi_noise_floor{{{m}}})\n"
        ),
        "labels": {"model": model, "z": _z_text(z)},
    }


READY = "driftgauge:psi_ready"
# A window counts for the PSI alerts once each baseline bin of its field expects this
# many independent draws (observations over the design effect): below it PSI / noise
# floor is far from its χ² law (an empty small bin alone adds ~0.2 to PSI), and the
# gate's false alarms grow past 1%.
MIN_EXPECTED = 8


def readiness_records(model: str) -> list[dict[str, Any]]:
    """The occupied bins (:data:`BINS`, which the gates read) and ``driftgauge:psi_min_observations``
    per field, and ``driftgauge:psi_ready``: the PSI of ready windows.

    A window's observations count as its independent draws, n / its design effect (rows of
    one request are alike; every row where the sidecar exports no design effect).  A field
    whose bin ratios are not scraped has every exported window ready (and the gate's df = 1
    fallback).
    """
    m = matchers(("model", "=", model))
    return [
        {
            "record": BINS,
            "expr": f"count without (bin) (driftgauge_baseline_bin_ratio{{{m}}} > 0)",
            "labels": {"model": model},
        },
        {
            "record": "driftgauge:psi_min_observations",
            "expr": f"{MIN_EXPECTED} / min without (bin) (driftgauge_baseline_bin_ratio{{{m}}} > 0)",
            "labels": {"model": model},
        },
        {
            "record": READY,
            "expr": (
                "(\n"
                f"  driftgauge_psi{{{m}}}\n"
                "  and (\n"
                f"    driftgauge_window_observations{{{m}}} / driftgauge_design_effect{{{m}}}\n"
                f"    or driftgauge_window_observations{{{m}}}\n"
                f"  ) >= ignoring (window) group_left driftgauge:psi_min_observations{{{m}}}\n"
                ")\n"
                f"or (driftgauge_psi{{{m}}} unless ignoring (window)"
                f" driftgauge:psi_min_observations{{{m}}})\n"
            ),
            "labels": {"model": model},
        },
    ]


def psi_condition(selector: str, model: str, threshold: float, z: float, multiple: float) -> str:
    condition = (
        f"{READY}{{{selector}}} > {num(threshold)}\n"
        f"      and {READY}{{{selector}}}\n"
        f"        > driftgauge_psi_noise_floor{{{selector}}}"
        f" * ignoring (window, z) group_left {gate_selector(model, z)}"
    )
    if multiple > 0:
        condition += (
            f"\n      and {READY}{{{selector}}}"
            f" > {num(multiple)} * driftgauge_psi_noise_floor{{{selector}}}"
        )
    return condition


def gate_text(significance: float, multiple: float) -> str:
    text = f" and its noise floor times the {100 * (1 - significance):.10g}% χ² gate"
    return text + (f" and {num(multiple)}x its noise floor" if multiple > 0 else "")
