"""Prometheus text (0.0.4) and OpenMetrics (1.0.0) lines written directly.

prometheus_client escapes and validates every label of every sample on every
scrape; driftgauge's own series are fixed by the config, so their label sets
are escaped once (:meth:`FamilyText.prefix`) and a scrape only formats
numbers (:func:`format_numbers`, or :func:`format_floats` for many at once)
and joins strings.  The output matches prometheus_client's byte for byte:
labels sorted by name, values as ``floatToGoString`` writes them, counters
named ``x_total`` (info families ``x_info``, a gauge in the text format) with
their ``# HELP``/``# TYPE`` naming ``x_total`` in the text format and ``x`` in
OpenMetrics, no ``_created`` samples.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "FamilyText",
    "Kind",
    "escape_label_value",
    "format_count",
    "format_floats",
    "format_numbers",
    "format_value",
    "label_text",
]

Kind = Literal["counter", "gauge", "histogram", "info", "summary"]

# Sample names of a family (``x``) by kind, and the text format's name and type
# for its header where they differ from OpenMetrics' (``x`` and the kind).
_SAMPLE_SUFFIX: dict[Kind, str] = {"counter": "_total", "info": "_info"}
_TEXT_TYPE: dict[Kind, str] = {"info": "gauge"}

# Integers in this range print as "<n>.0", as repr(float(n)) does; from 10**6 up
# Go (and floatToGoString) switch to an exponent, e.g. 1.234567e+06.
_PLAIN_INT_LOW = -(10**15)
_PLAIN_INT_HIGH = 10**6


def escape_label_value(value: str) -> str:
    """A label value as both formats quote it: backslash, double quote and newline escaped."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _escape_help(text: str, openmetrics: bool) -> str:
    escaped = text.replace("\\", r"\\").replace("\n", r"\n")
    # The text format leaves double quotes in HELP alone; OpenMetrics escapes them.
    return escaped.replace('"', r"\"") if openmetrics else escaped


def label_text(labels: Mapping[str, str]) -> str:
    """``{a="x",b="y"}`` with names sorted (as prometheus_client orders them), or ``""``."""
    if not labels:
        return ""
    pairs = ",".join(f'{name}="{escape_label_value(labels[name])}"' for name in sorted(labels))
    return "{" + pairs + "}"


def format_value(value: float) -> str:
    """A sample value as Go prints it (and prometheus_client's ``floatToGoString``)."""
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = repr(value)
    if value < 1e6 or value >= 1e16:
        # repr already agrees with Go here: plain below 1e6 (and for negatives),
        # an exponent from 1e16 up.
        return text
    whole, _, fraction = text.partition(".")
    digits = (whole + fraction).rstrip("0")
    mantissa = f"{digits[0]}.{digits[1:]}" if len(digits) > 1 else digits
    return f"{mantissa}e+{len(whole) - 1:02d}"


def format_count(value: int) -> str:
    """An integer sample value, as :func:`format_value` prints ``float(value)``."""
    if _PLAIN_INT_LOW < value < _PLAIN_INT_HIGH:
        return f"{value}.0"
    return format_value(float(value))


def format_numbers(values: Iterable[float]) -> list[str]:
    """Sample values of a family; Python ints (e.g. from ``ndarray.tolist()``) take a fast path."""
    return [
        f"{v}.0" if type(v) is int and _PLAIN_INT_LOW < v < _PLAIN_INT_HIGH else _format_any(v)
        for v in values
    ]


def _format_any(value: float) -> str:
    # type(), not isinstance(): a bool must print as 1.0, not True.0.
    return format_count(value) if type(value) is int else format_value(value)


def format_floats(values: npt.ArrayLike) -> list[str]:
    """Sample values as :func:`format_value` prints each, for many values at once.

    ``repr`` already agrees with Go for all but NaN, the infinities and
    positive values from 10**6 to 10**16 (Go's exponent); numpy finds those
    few, so the rest costs one ``repr`` each.
    """
    array = np.asarray(values, dtype=np.float64).ravel()
    texts = list(map(repr, array.tolist()))
    odd = ~np.isfinite(array) | ((array >= 1e6) & (array < 1e16))
    for i in np.flatnonzero(odd).tolist():
        texts[i] = format_value(array[i])
    return texts


class FamilyText:
    """One metric family of driftgauge's own: its header lines and its series' line prefixes.

    ``name`` is the family name as prometheus_client's metric families take it
    (without ``_total`` or ``_info``); samples of a counter are
    ``name_total``, of an info family ``name_info``, of a summary ``name``
    (quantiles), ``name_sum`` and ``name_count`` (a histogram's, which
    driftgauge leaves to prometheus_client, ``name_bucket`` too).
    """

    __slots__ = ("_headers", "documentation", "kind", "name", "sample_name")

    def __init__(self, name: str, kind: Kind, documentation: str) -> None:
        self.name = name
        self.kind: Kind = kind
        self.documentation = documentation
        self.sample_name = name + _SAMPLE_SUFFIX.get(kind, "")
        text_help = _escape_help(documentation, openmetrics=False)
        om_help = _escape_help(documentation, openmetrics=True)
        text_type = _TEXT_TYPE.get(kind, kind)
        self._headers = (
            f"# HELP {self.sample_name} {text_help}\n# TYPE {self.sample_name} {text_type}\n",
            f"# HELP {name} {om_help}\n# TYPE {name} {kind}\n",
        )

    def header(self, openmetrics: bool) -> str:
        """The ``# HELP`` and ``# TYPE`` lines."""
        return self._headers[openmetrics]

    def prefix(self, labels: Mapping[str, str]) -> str:
        """Everything of one series' sample line before the value (ending in a space)."""
        return f"{self.sample_name}{label_text(labels)} "

    def write(
        self, out: list[str], openmetrics: bool, prefixes: Sequence[str], values: Iterable[float]
    ) -> None:
        """Append the family (header, then one line per series) to ``out``.

        ``values`` are aligned with ``prefixes``; a length mismatch is a bug and raises.
        """
        texts = format_numbers(values)
        if len(texts) != len(prefixes):
            raise ValueError(f"{self.name}: {len(texts)} values for {len(prefixes)} series")
        out.append(self._headers[openmetrics])
        if texts:
            out.append("\n".join(map(str.__add__, prefixes, texts)))
            out.append("\n")
