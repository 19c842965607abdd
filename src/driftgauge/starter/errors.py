"""The one error of ``driftgauge init``."""

from __future__ import annotations

from driftgauge.exceptions import DriftgaugeError

__all__ = ["StarterError"]


class StarterError(DriftgaugeError):
    """``driftgauge init`` cannot write a config from what it was given (exit code 1)."""
