"""JSON bodies parsed with orjson when the `fast` extra installed it, else the standard library."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["DECODE_ERRORS", "decode_json"]

try:
    import orjson

    def decode_json(body: bytes | str) -> Any:
        """Parse a JSON body (orjson when installed)."""
        return orjson.loads(body)

    DECODE_ERRORS: tuple[type[Exception], ...] = (orjson.JSONDecodeError, ValueError)
except ImportError:  # pragma: no cover - only without the `fast` extra

    def decode_json(body: bytes | str) -> Any:
        """Parse a JSON body (orjson when installed)."""
        return json.loads(body)

    DECODE_ERRORS = (ValueError,)
