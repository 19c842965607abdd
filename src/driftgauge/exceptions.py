"""The one exception tree of driftgauge.

Every error a user can cause derives from :class:`DriftgaugeError` and also
from the matching stdlib type, so callers may catch either.  The CLI turns
each into a one-line message and a distinct exit code (``exit_code``).
"""

from __future__ import annotations

__all__ = [
    "BaselineError",
    "ConfigError",
    "DataError",
    "DriftgaugeError",
    "ProtocolError",
    "first_line",
]


class DriftgaugeError(Exception):
    """Base class of all driftgauge errors."""

    exit_code = 1


class ConfigError(DriftgaugeError, ValueError):
    """The config file is unreadable or a key holds a bad value; names the key path."""

    exit_code = 2


class BaselineError(DriftgaugeError, ValueError):
    """A baseline file is missing, corrupt, of another format version, or does not match the config."""

    exit_code = 3


class DataError(DriftgaugeError, ValueError):
    """A training-data file cannot be read or a value in it has the wrong type."""

    exit_code = 4


class ProtocolError(DriftgaugeError, ValueError):
    """A request or response body does not fit the configured protocol.

    ``reason`` is a short, bounded token used as the ``reason`` label of
    ``driftgauge_parse_errors_total``.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (a library's, for a one-line error), else
    its type's name."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
