"""Whether a baseline can be served: every field has values to compare the live ones with.

A numeric field's bins are quantiles of its finite training values, so a
field without one has no bins (``[inf, -inf]``) and the sidecar could not
start; a categorical field without a value would call every live value
unseen and never drift.  A numeric field whose values were mostly not
numbers holds something else (strings such as ``np.float64(0.44)``).

``driftgauge baseline`` and ``baseline merge`` refuse to write such a
baseline, and ``check`` and ``serve`` refuse one written before they did
(:func:`check_usable`, :func:`load_served`), each with one line naming the fields.
"""

from __future__ import annotations

from pathlib import Path

from driftgauge.baseline.model import Baseline
from driftgauge.baseline.store import check_against, load_baseline
from driftgauge.config import Config
from driftgauge.exceptions import BaselineError
from driftgauge.sketches.summary import NumericSummary

__all__ = ["check_usable", "mostly_not_numbers", "without_values"]


def mostly_not_numbers(baseline: Baseline) -> list[str]:
    """One phrase per numeric field whose training values were mostly not numbers.

    More values of the wrong type than numbers means the column holds
    something else: its bins and quantiles would describe a handful of
    values, or none.
    """
    found = []
    for name, held in baseline.fields.items():
        summary = held.summary
        if isinstance(summary, NumericSummary) and summary.wrong_type > summary.count:
            present = summary.count + summary.wrong_type + summary.nan + summary.inf
            wrong = summary.wrong_type
            found.append(
                f"numeric field {name!r}: {wrong:,} of its {present:,} training values "
                f"({wrong / present:.0%}) are not numbers"
            )
    return found


def without_values(baseline: Baseline) -> list[str]:
    """One phrase per field with no value to bin: no finite number, or no category.

    A numeric field of non-numbers is left to :func:`mostly_not_numbers`.
    """
    found = []
    for name, held in baseline.fields.items():
        summary = held.summary
        if summary.count:
            continue
        if not isinstance(summary, NumericSummary):
            found.append(f"categorical field {name!r} has no value ({summary.missing:,} missing)")
        elif not summary.wrong_type:
            found.append(
                f"numeric field {name!r} has no finite value ({summary.missing:,} missing, "
                f"{summary.nan:,} NaN, {summary.inf:,} inf)"
            )
    return found


def check_usable(baseline: Baseline, path: Path) -> None:
    """Raise BaselineError (one line naming ``path`` and the fields) unless ``baseline`` can be
    served: it holds rows, and every field values to bin."""
    if not baseline.rows:
        raise BaselineError(f"{path}: the baseline holds no rows: rebuild it from training data")
    problems = []
    if words := mostly_not_numbers(baseline):
        problems.append(
            f"{'; '.join(words)}: rebuild it from numbers, or make the field categorical"
        )
    if empty := without_values(baseline):
        problems.append(
            f"{'; '.join(empty)}: rebuild it from data that has values, or without "
            f"{'the field' if len(empty) == 1 else 'these fields'} (remove "
            f"{'it' if len(empty) == 1 else 'them'} from the config)"
        )
    if problems:
        raise BaselineError(f"{path}: {'; '.join(problems)}")


def load_served(config: Config, named: bool = False) -> Baseline:
    """``config``'s baseline, checked against it (:func:`~.store.check_against`) and for fields
    without values; ``named``, for one model of a ``models:`` list, puts the model's name
    before what is wrong (several models may share a baseline file)."""
    try:
        baseline = load_baseline(config.baseline)
        check_against(baseline, config, config.baseline)
        check_usable(baseline, config.baseline)
    except BaselineError as exc:
        if named:
            raise BaselineError(f"model {config.model!r}: {exc}") from None
        raise
    return baseline
