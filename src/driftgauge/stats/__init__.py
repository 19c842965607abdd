"""Statistics: pure functions over bin counts, sketches and outcomes, no I/O."""

from driftgauge.stats.drift import (
    PSI_FLOOR,
    CdfTable,
    cdf_table,
    chi2_pvalue,
    js_distance,
    ks_pvalue,
    ks_rank_error,
    ks_statistic,
    psi,
    psi_noise_floor,
    shares,
)

__all__ = [
    "PSI_FLOOR",
    "CdfTable",
    "cdf_table",
    "chi2_pvalue",
    "js_distance",
    "ks_pvalue",
    "ks_rank_error",
    "ks_statistic",
    "psi",
    "psi_noise_floor",
    "shares",
]
