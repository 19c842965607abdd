"""The direct text writer: number formatting, escaping and family text as prometheus_client writes them."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from driftgauge.config.validation import label_value
from driftgauge.exposition.text import (
    FamilyText,
    Kind,
    escape_label_value,
    format_count,
    format_floats,
    format_numbers,
    format_value,
    label_text,
)

AWKWARD = ['a"b', "back\\slash", "new\nline", 'all\\ of "them"\n', "ünïcödé", ""]


class _Families:
    """A collector yielding fixed families (the reference rendered by prometheus_client)."""

    def __init__(self, *families: Metric) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return list(self.families)


def _reference(*families: Metric) -> tuple[str, str]:
    registry = CollectorRegistry()
    registry.register(_Families(*families))
    openmetrics: bytes = openmetrics_latest(registry)
    return generate_latest(registry).decode(), openmetrics.decode().removesuffix("# EOF\n")


@given(st.floats(allow_nan=True, allow_infinity=True))
@example(1e6)
@example(1_234_567.0)
@example(1_000_000.5)
@example(9_999_999_999_999_998.0)
@example(1e16)
@example(-1e16)
@example(5e-324)
@example(-0.0)
def test_format_value_matches_float_to_go_string(value: float) -> None:
    """Every float prints as prometheus_client's floatToGoString prints it."""
    assert format_value(value) == floatToGoString(value)


@given(st.integers(min_value=-(2**70), max_value=2**70))
@example(999_999)
@example(1_000_000)
@example(1_200_000)
@example(10**15)
@example(-(10**15))
@example(2**53 + 1)
def test_format_count_matches_float_to_go_string(value: int) -> None:
    """An integer prints as floatToGoString prints the int (12 as 12.0, 1234567 as 1.234567e+06)."""
    assert format_count(value) == floatToGoString(value)


def test_format_numbers_takes_ints_floats_and_bools() -> None:
    """Python ints, numpy values, floats and bools each print as floatToGoString prints them."""
    values: list[float] = [0, 12, 2_500_000, 0.25, math.nan, -math.inf, True, np.int64(7)]
    values.extend(np.asarray([3, 4_000_000], dtype=np.int64).tolist())
    assert format_numbers(values) == [floatToGoString(v) for v in values]


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(2**60), 2**60)))
@example([1e6, 999_999.9999999999, 1e16, 9_999_999_999_999_998.0, -1e7, -0.0, 5e-324])
@example([math.nan, math.inf, -math.inf, 0, 2_500_000, True])
def test_format_floats_matches_float_to_go_string(values: list[float]) -> None:
    """Many values formatted at once print as floatToGoString prints each one."""
    assert format_floats(values) == [floatToGoString(v) for v in values]


def test_format_floats_takes_arrays() -> None:
    """A numpy array (of any shape or number dtype) formats like the list of its values."""
    array = np.asarray([[0.5, 1e7], [-3.0, np.nan]])
    assert format_floats(array) == ["0.5", "1e+07", "-3.0", "NaN"]
    assert format_floats(np.arange(3, dtype=np.int64)) == ["0.0", "1.0", "2.0"]
    assert format_floats([]) == []


@pytest.mark.parametrize("value", AWKWARD)
def test_label_values_escape_backslash_quote_and_newline(value: str) -> None:
    """A label value is escaped as the exposition formats require (and prometheus_client does)."""
    escaped = escape_label_value(value)
    assert "\n" not in escaped
    assert escaped.replace("\\\\", "").replace('\\"', "").replace("\\n", "").count('"') == 0
    family = GaugeMetricFamily("x", "doc", labels=["a"])
    family.add_metric([value], 1)
    text, openmetrics = _reference(family)
    assert f'x{{a="{escaped}"}} 1.0\n' in text
    assert f'x{{a="{escaped}"}} 1.0\n' in openmetrics


def _valid_name(text: str) -> bool:
    try:
        label_value(text)
    except ValueError:
        return False
    return True


# Any text a config accepts as a name; the explicit examples are the awkward ones.
valid_names = st.text(min_size=1, max_size=40).filter(_valid_name)


@given(model=valid_names, feature=valid_names)
@example(model="wine", feature="od280/od315_of_diluted_wines")
@example(model="a\\", feature='sepal length (cm) "x" \\n naïve')
@example(model='"', feature="} 1.0\\")
@example(model="# EOF", feature=' # {a="b"} 2 ')
@example(model="\u00a0\ufeff", feature="\U0001f600\u200d")
def test_any_valid_name_round_trips_through_both_parsers(model: str, feature: str) -> None:
    """A name written as a label value by FamilyText parses back exactly, text and OpenMetrics."""
    family = FamilyText("driftgauge_psi", "gauge", "Population stability index.")
    prefix = family.prefix({"model": model, "feature": feature, "role": "input", "window": "5m"})
    expected = {"model": model, "feature": feature, "role": "input", "window": "5m"}
    for openmetrics in (False, True):
        out: list[str] = []
        family.write(out, openmetrics, [prefix], [0.25])
        body = "".join(out) + ("# EOF\n" if openmetrics else "")
        parse = parse_openmetrics if openmetrics else text_string_to_metric_families
        (parsed,) = list(parse(body))
        (sample,) = parsed.samples
        assert sample.labels == expected
        assert sample.value == 0.25


def test_label_text_sorts_names_and_is_empty_without_labels() -> None:
    """Labels come sorted by name, as prometheus_client orders them; none gives no braces."""
    assert label_text({"role": "input", "feature": "a", "model": "m"}) == (
        '{feature="a",model="m",role="input"}'
    )
    assert label_text({}) == ""


@pytest.mark.parametrize("kind", ["counter", "gauge"])
@pytest.mark.parametrize("doc", ["Plain help.", 'Help with "quotes", a \\ and a\nnewline.'])
def test_family_text_is_byte_identical_to_prometheus_client(kind: Kind, doc: str) -> None:
    """Header lines, sample names, labels and values equal prometheus_client's in both formats."""
    label_sets = [{"model": "m", "feature": "f", "bin": str(i)} for i in range(3)] + [
        {"model": awkward, "feature": "g", "bin": "__unseen__"} for awkward in AWKWARD
    ]
    values: list[float] = [0, 1, 1_234_567, 2**40, 0.5, math.inf, 3, 4, 5][: len(label_sets)]
    names = ["model", "feature", "bin"]
    reference: Metric = (
        CounterMetricFamily("x_things", doc, labels=names)
        if kind == "counter"
        else GaugeMetricFamily("x_things", doc, labels=names)
    )
    for labels, value in zip(label_sets, values, strict=True):
        reference.add_metric([labels[n] for n in names], value)
    family = FamilyText("x_things", kind, doc)
    prefixes = [family.prefix(labels) for labels in label_sets]
    expected_text, expected_openmetrics = _reference(reference)
    for openmetrics, expected in ((False, expected_text), (True, expected_openmetrics)):
        out: list[str] = []
        family.write(out, openmetrics, prefixes, values)
        assert "".join(out) == expected


def test_family_without_series_writes_its_header_only() -> None:
    """An empty family still has HELP and TYPE lines, as prometheus_client writes them."""
    expected_text, expected_openmetrics = _reference(CounterMetricFamily("x", "doc", labels=["a"]))
    family = FamilyText("x", "counter", "doc")
    for openmetrics, expected in ((False, expected_text), (True, expected_openmetrics)):
        out: list[str] = []
        family.write(out, openmetrics, [], [])
        assert "".join(out) == expected


def test_values_not_matching_the_series_raise() -> None:
    """A family given more or fewer values than series is a bug, not a silently shifted exposition."""
    family = FamilyText("x", "counter", "doc")
    with pytest.raises(ValueError, match="2 values for 1 series"):
        family.write([], False, [family.prefix({"a": "1"})], [1, 2])


@pytest.mark.parametrize("doc", ["Plain help.", 'Help with "quotes", a \\ and a\nnewline.'])
def test_info_and_summary_headers_are_prometheus_clients(doc: str) -> None:
    """An info family is a gauge named x_info in the text format and an info named x in
    OpenMetrics; a summary keeps its name; both as prometheus_client writes them."""
    info = InfoMetricFamily("x_build", doc, labels=["model"])
    info.add_metric(["m"], {"version": "1"})
    summary = Metric("x_value", doc, "summary")
    summary.add_sample("x_value", {"quantile": "0.5"}, 2.0)
    summary.add_sample("x_value_sum", {}, 3.0)
    summary.add_sample("x_value_count", {}, 2)
    expected_text, expected_openmetrics = _reference(info, summary)
    info_text, summary_text = (
        FamilyText("x_build", "info", doc),
        FamilyText("x_value", "summary", doc),
    )
    assert info_text.sample_name == "x_build_info"
    assert summary_text.sample_name == "x_value"
    for openmetrics, expected in ((False, expected_text), (True, expected_openmetrics)):
        written = "".join(
            (
                info_text.header(openmetrics),
                info_text.prefix({"version": "1", "model": "m"}) + "1.0\n",
                summary_text.header(openmetrics),
                summary_text.prefix({"quantile": "0.5"}) + "2.0\n",
                "x_value_sum 3.0\nx_value_count 2.0\n",
            )
        )
        assert written == expected
