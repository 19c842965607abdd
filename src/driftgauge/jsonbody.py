"""JSON bodies parsed with orjson when the `fast` extra installed it, else the standard library.

Either way a body reads the same: orjson is only the fast path.  A body it
refuses is read again by the standard library, which also takes ``NaN``,
``Infinity`` and ``-Infinity`` (Python's and many servers' JSON writers
emit them) and numbers beyond float range (``1e400`` is inf, a 400-digit
integer an int), so they reach the monitor, which counts them ``nan`` and
``inf``, instead of losing the whole body as ``invalid_json``.  What orjson
refuses otherwise, the standard library is made to refuse too: bytes that
are not UTF-8 (UTF-16, a byte order mark), a string with a lone surrogate
(``"\\ud800"``, which no sketch can store) and nesting too deep for it (a
ValueError, not a RecursionError).  Two differences remain, both far from
real bodies: orjson takes nesting up to 1,024 levels, the standard library
somewhat less than 1,000 (its recursion limit), and orjson reads an integer
between 2**64 and float range as a float, the standard library as an int.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["DECODE_ERRORS", "decode_json"]

# A surrogate escape (paired or lone), or a surrogate in a str body: what may hold a lone one.
_SURROGATE = re.compile(r"\\u[dD][89abcdefABCDEF]|[\ud800-\udfff]")


def _has_lone_surrogate(value: Any) -> bool:
    """True when a string in ``value`` (a key or a value, at any depth) is not valid Unicode."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
    return False


def _standard(body: bytes | str) -> Any:
    """``body`` read by the standard library, refusing what orjson refuses but for numbers."""
    # Strict UTF-8 only (json.loads would guess UTF-16 and drop a byte order mark); a BOM kept
    # as U+FEFF is refused by json.loads.
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if _SURROGATE.search(text) is not None and _has_lone_surrogate(value):
        raise ValueError("a JSON string holds a lone surrogate")
    return value


try:
    import orjson

    def decode_json(body: bytes | str) -> Any:
        """Parse a JSON body (orjson when installed, the standard library for what it refuses)."""
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            return _standard(body)

    DECODE_ERRORS: tuple[type[Exception], ...] = (orjson.JSONDecodeError, ValueError)
except ImportError:  # pragma: no cover - only without the `fast` extra

    def decode_json(body: bytes | str) -> Any:
        """Parse a JSON body (orjson when installed, the standard library for what it refuses)."""
        return _standard(body)

    DECODE_ERRORS = (ValueError,)
