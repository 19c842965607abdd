"""FieldLines: a head's field lines as the native core copies them, read as a mapping."""

from __future__ import annotations

import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the native engine is Linux's")

native = pytest.importorskip("driftgauge.sources.proxy.native")

# Field names as a strict head may carry them (tokens), in any letter case, and latin-1 text
# beyond (what a looser source might copy); values without line breaks.
NAMES = st.text(st.sampled_from("abcXYZ-_.!#09" + "Àà"), min_size=1, max_size=6).filter(
    lambda name: ":" not in name
)
VALUES = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=8)


def reference(lines: list[tuple[str, str]]) -> dict[str, str]:
    fields: dict[str, str] = {}
    for name, value in lines:
        key, text = name.lower(), value.strip(" \t")
        fields[key] = f"{fields[key]}, {text}" if key in fields else text
    return fields


@given(st.lists(st.tuples(NAMES, VALUES), max_size=6), st.lists(NAMES, max_size=4))
def test_a_lookup_finds_what_splitting_the_lines_finds(
    lines: list[tuple[str, str]], others: list[str]
) -> None:
    raw = b"".join(f"{name}: {value}\r\n".encode("latin-1") for name, value in lines)
    expected = reference(lines)
    for name in [name for name, _ in lines] + others + ["content-encoding", "Ω"]:
        for spelling in (name, name.upper(), name.lower()):
            assert native.FieldLines(raw).get(spelling) == expected.get(spelling.lower())
    fields = native.FieldLines(raw)
    assert bool(fields) == bool(lines)
    assert dict(fields) == expected


def test_no_lines_are_an_empty_mapping() -> None:
    fields = native.FieldLines(b"")
    assert not fields
    assert fields.get("content-encoding", "none") == "none"
    assert len(fields) == 0
