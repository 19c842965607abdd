"""A monitored column: its name, type and role (and where its values sit in a body)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["FieldSpec", "FieldType", "Role"]

FieldType = Literal["numeric", "categorical"]
Role = Literal["input", "prediction", "multivariate"]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One monitored column: a model input (feature) or a model output (prediction).

    ``path`` is where the value is in the body when it is not under ``name``:
    a JSONPath for the jsonpath protocol, else the request's (or response's)
    own column, tensor or key name, for a metric named differently.
    """

    name: str
    type: FieldType
    role: Role
    path: str | None = None
