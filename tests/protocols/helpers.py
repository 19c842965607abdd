"""Shared builders and checks for the protocol adapter tests."""

from __future__ import annotations

from typing import Any

import numpy as np

from driftgauge.config import FieldSpec, FieldType
from driftgauge.typing import Extracted


def inputs(*names: str, kind: FieldType = "numeric") -> list[FieldSpec]:
    """Feature specs in the given (config) order."""
    return [FieldSpec(name=name, type=kind, role="input") for name in names]


def outputs(*names: str, kind: FieldType = "categorical") -> list[FieldSpec]:
    """Prediction specs in the given (config) order."""
    return [FieldSpec(name=name, type=kind, role="prediction") for name in names]


def plain(extracted: Extracted) -> dict[str, list[Any]]:
    """The columns as plain Python lists, whatever container the adapter chose."""
    return {
        name: column.tolist() if isinstance(column, np.ndarray) else list(column)
        for name, column in extracted.columns.items()
    }


def assert_well_formed(extracted: Extracted, allowed: set[str]) -> None:
    """Every column is one JSON scalar per row, under a configured name."""
    assert isinstance(extracted, Extracted)
    assert extracted.rows >= 0
    assert extracted.extra_columns >= 0
    assert set(extracted.columns) <= allowed
    for column in extracted.columns.values():
        assert len(column) == extracted.rows
        if isinstance(column, np.ndarray):
            assert column.ndim == 1
            assert column.dtype.kind in "biuf"
        else:
            assert isinstance(column, list)
            for value in column:
                assert value is None or isinstance(value, str | int | float)
