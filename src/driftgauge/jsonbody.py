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
ValueError, not a RecursionError).  orjson takes nesting up to 1,024 levels,
the standard library somewhat less than 1,000 (its recursion limit).

orjson reads an integer below -2**63 or from 2**64 as the nearest float, the
standard library as the int it is.  Looking for such numbers in every body
would cost a third of orjson's own time, so the few readers whose values
must keep every digit (an id, a categorical value) look at what they read
instead: where :func:`lossy` finds an integral float that large among it,
which orjson may have made of such an integer, they read the body again
with :func:`reread_exactly`, or the tail line it was a member of
(:func:`reread_from`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from typing import Any

__all__ = [
    "DECODE_ERRORS",
    "JSON_TEXT",
    "JsonText",
    "decode_json",
    "lossy",
    "reread_exactly",
    "reread_from",
]

JsonText = bytes | bytearray | memoryview | str
"""A body as its JSON text: what :func:`reread_exactly` reads."""
JSON_TEXT = (bytes, bytearray, memoryview, str)

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


def reread_exactly(body: JsonText, parsed: Any) -> Any:
    """``body``, which :func:`decode_json` read as ``parsed``, read again with every integer
    exact, however long (``parsed`` itself if nested deeper than the standard library reads)."""
    try:
        return _standard(body if isinstance(body, bytes | str) else bytes(body))
    except ValueError:
        return parsed


def reread_from(text: Any, parsed: Any, line: JsonText | None, member: str) -> Any:
    """``parsed`` read again with every integer exact: from ``text`` if it is its JSON text,
    else as member ``member`` of ``line`` (the tail line it was parsed from), else
    ``parsed`` itself."""
    if isinstance(text, JSON_TEXT) and text:
        return reread_exactly(text, parsed)
    if line is None:
        return parsed
    whole = reread_exactly(line, None)
    return whole.get(member, parsed) if isinstance(whole, dict) else parsed


# orjson reads an integer exactly from -2**63 to 2**64 - 1, beyond that as a float.
_EXACT_LIMIT = 2.0**63


try:
    import orjson

    def decode_json(body: bytes | str) -> Any:
        """Parse a JSON body (orjson when installed, the standard library for what it refuses)."""
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            return _standard(body)

    def lossy(values: Collection[Any]) -> bool:
        """True when ``values`` (read by :func:`decode_json`) may hold an integer that lost
        digits: an integral float of magnitude 2**63 or more (read the body again exactly)."""
        return float in map(type, values) and any(
            type(value) is float and abs(value) >= _EXACT_LIMIT and value.is_integer()
            for value in values
        )

    DECODE_ERRORS: tuple[type[Exception], ...] = (orjson.JSONDecodeError, ValueError)
except ImportError:  # pragma: no cover - only without the `fast` extra

    def lossy(values: Collection[Any]) -> bool:
        """True when ``values`` may hold an integer that lost digits: never, without orjson."""
        return False

    def decode_json(body: bytes | str) -> Any:
        """Parse a JSON body (orjson when installed, the standard library for what it refuses)."""
        return _standard(body)

    DECODE_ERRORS = (ValueError,)
