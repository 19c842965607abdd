"""A float64 sum that does not overflow: past float64's range it is kept scaled by 2**-64.

A numeric field's mean is its values' sum over their count; values near ±1e308 sum past
float64's largest, so the sum is also kept scaled (only while the plain one is not finite),
and the mean comes from the scaled one.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = ["SUM_SCALE", "add_sums", "scaled_sum"]

# The scale of a sum kept once it overflows float64: 2**-64 times 2**63 values of at most
# float64's largest cannot overflow again.
SUM_SCALE = -64


def add_sums(total: float, scaled: float, other: float, other_scaled: float) -> tuple[float, float]:
    """``total + other`` and, where that is not finite, the sum scaled by 2**-64.

    ``scaled`` and ``other_scaled`` are those of ``total`` and ``other``, read only where
    they are not finite (finite values beyond float64 summed to ±inf, or to NaN).
    """
    combined = total + other
    if math.isfinite(combined):
        return combined, 0.0
    return combined, _scaled(total, scaled) + _scaled(other, other_scaled)


def _scaled(total: float, scaled: float) -> float:
    return math.ldexp(total, SUM_SCALE) if math.isfinite(total) else scaled


def scaled_sum(finite: npt.NDArray[np.float64]) -> float:
    """The sum of ``finite`` times 2**-64, which cannot overflow."""
    return float(np.ldexp(finite, SUM_SCALE).sum())
