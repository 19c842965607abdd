"""A JSON body reads the same with orjson installed and without it (the standard library's way)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import driftgauge.jsonbody

Decode = Callable[[bytes | str], Any]


def load_jsonbody(orjson_blocked: bool) -> ModuleType:
    """A fresh copy of driftgauge.jsonbody, loaded with orjson importable or not."""
    spec = importlib.util.spec_from_file_location(
        f"jsonbody_{orjson_blocked}", driftgauge.jsonbody.__file__
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with mock.patch.dict(sys.modules, {"orjson": None} if orjson_blocked else {}):
        spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module", params=["orjson", "stdlib"])
def decoder(request: pytest.FixtureRequest) -> ModuleType:
    if request.param == "orjson":
        pytest.importorskip("orjson")
    module = load_jsonbody(orjson_blocked=request.param == "stdlib")
    assert (request.param == "orjson") == ("orjson" in vars(module))
    return module


def same(a: Any, b: Any) -> bool:
    """Equal JSON values, NaN equal to NaN, and of the same types (1 is not 1.0, nor True)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


ACCEPTED: dict[str, tuple[bytes, Any]] = {
    "nan": (b"[NaN, 10.0]", [math.nan, 10.0]),
    "infinity": (b'{"a": Infinity}', {"a": math.inf}),
    "minus_infinity": (b"[-Infinity]", [-math.inf]),
    "overflowing_float": (b"[1e400, -1e400, 1E999]", [math.inf, -math.inf, math.inf]),
    "integer_of_400_digits": (b"[" + b"9" * 400 + b"]", [int("9" * 400)]),
    "v2_tensor_with_nan": (
        b'{"inputs":[{"name":"x1","datatype":"FP64","shape":[2],"data":[NaN,10.0]}]}',
        {"inputs": [{"name": "x1", "datatype": "FP64", "shape": [2], "data": [math.nan, 10.0]}]},
    ),
    "surrogate_pair": (b'["\\ud83d\\ude00"]', ["\U0001f600"]),
    "escaped_backslash_then_u": (b'["\\\\ud800"]', ["\\ud800"]),
    "plain": (
        b'{"instances": [[1, 2.5, "a", true, null]]}',
        {"instances": [[1, 2.5, "a", True, None]]},
    ),
}

REFUSED: dict[str, bytes | str] = {
    "truncated": b'{"instances": [[1, 2',
    "lowercase_nan": b"[nan]",
    "trailing_comma": b"[1,]",
    "lone_surrogate": b'["\\ud800"]',
    "lone_low_surrogate_key": b'{"\\udc00": 1}',
    "surrogate_in_a_str_body": '["\ud800"]',
    "utf8_encoded_surrogate": b'["\xed\xa0\x80"]',
    "invalid_utf8": b'["\xff\xfe"]',
    "utf8_bom": b'\xef\xbb\xbf{"a": 1}',
    "utf16": '{"a": 1}'.encode("utf-16"),
    "deep_nesting": b"[" * 100_000 + b"]" * 100_000,
    "empty": b"",
}


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_nan_infinity_and_huge_numbers_read_as_the_standard_library_reads_them(
    decoder: ModuleType, case: str
) -> None:
    """NaN, ±Infinity and out-of-range numbers parse, with orjson or without; bytes or str."""
    body, expected = ACCEPTED[case]
    assert same(decoder.decode_json(body), expected)
    assert same(decoder.decode_json(body.decode()), expected)


@pytest.mark.parametrize("case", list(REFUSED))
def test_what_orjson_refuses_otherwise_is_refused_either_way(
    decoder: ModuleType, case: str
) -> None:
    """Not UTF-8, a lone surrogate, too deep, not JSON: a ValueError, never another error."""
    with pytest.raises(decoder.DECODE_ERRORS):
        decoder.decode_json(REFUSED[case])


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats()  # NaN and ±inf too: json.dumps writes NaN, Infinity, -Infinity
    | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=20,
)


DECODERS: dict[bool, Decode] = {
    blocked: load_jsonbody(blocked).decode_json for blocked in (False, True)
}


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_any_document_reads_alike_with_and_without_orjson(document: Any) -> None:
    """Any document json.dumps writes (NaN and Infinity included) decodes to the same value."""
    body = json.dumps(document).encode()
    expected = json.loads(body)
    for orjson_blocked in (False, True):
        assert same(DECODERS[orjson_blocked](body), expected)


def _nested(value: Any) -> bool:
    return isinstance(value, list | dict)


def _containers(a: Any, b: Any) -> list[tuple[list[Any], list[Any]]]:
    """Each list's (or object's values') items in ``a`` beside the same items in ``b``."""
    pairs, stack = [], [(a, b)]
    while stack:
        x, y = stack.pop()
        if isinstance(x, dict) and isinstance(y, dict):
            x, y = list(x.values()), [y[key] for key in x]
        if isinstance(x, list) and isinstance(y, list):
            pairs.append((x, y))
            stack.extend(zip(x, y, strict=True))
    return pairs


ANY_INTEGERS = st.recursive(
    st.integers() | st.integers(2**63 - 3, 2**64 + 3) | st.floats() | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(ANY_INTEGERS)
def test_integers_of_any_size_read_alike_where_lossy_finds_none(document: Any) -> None:
    """With orjson an integer beyond 64 bits reads as a float, but never unseen: any values
    that differ from the standard library's are ones lossy flags, which reread_exactly reads
    exactly.  Without orjson every integer reads exactly and lossy flags nothing."""
    body = json.dumps([document]).encode()
    expected = json.loads(body)
    for orjson_blocked in (False, True):
        module = load_jsonbody(orjson_blocked) if orjson_blocked else driftgauge.jsonbody
        decoded = module.decode_json(body)
        for values, exact in _containers(decoded, expected):
            if not module.lossy(values):
                scalars = [(x, y) for x, y in zip(values, exact, strict=True) if not _nested(x)]
                assert all(same(x, y) for x, y in scalars)
            assert not (orjson_blocked and module.lossy(values))
        assert same(module.reread_exactly(body, None), expected)


@pytest.mark.parametrize("number", [-(2**63) - 1, 2**64, 123456789012345678901234567890])
def test_lossy_flags_an_integer_orjson_read_as_a_float(decoder: ModuleType, number: int) -> None:
    """orjson's float for an integer beyond 64 bits is flagged, the integer itself never, nor
    any integer orjson reads exactly or a float that cannot stand for an integer that large."""
    values = decoder.decode_json(f"[{number}, {2**63 - 1}, {-(2**63)}, 1e18, 0.5, 1, -0.0]")
    assert decoder.lossy(values) == ("orjson" in vars(decoder))
    assert not decoder.lossy(values[1:])
    # A float written that large is flagged too (read again, it is the same float).
    assert decoder.lossy(decoder.decode_json("[1e300]")) == ("orjson" in vars(decoder))
    assert decoder.reread_exactly(f"[{number}]".encode(), None) == [number]


def test_a_body_only_orjson_reads_is_read_again_as_it_was(decoder: ModuleType) -> None:
    """Nesting orjson takes (1,000 levels) but the standard library does not: the first reading."""
    body = b"[" * 1_000 + b"18446744073709551616" + b"]" * 1_000
    parsed = object()
    assert decoder.reread_exactly(body, parsed) is parsed
    assert decoder.reread_exactly(memoryview(b"[18446744073709551616]"), parsed) == [2**64]
