"""Baseline build, file format, merge and the errors a user can meet."""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import datasketches as ds
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from driftgauge.baseline import (
    FORMAT_VERSION,
    Baseline,
    build_baseline,
    check_against,
    datafiles,
    describe,
    load_baseline,
    merge_baselines,
    save_baseline,
)
from driftgauge.canonical import canonical_category
from driftgauge.config import Config
from driftgauge.exceptions import BaselineError, DataError
from driftgauge.sketches import CategoricalSummary, NumericSummary
from driftgauge.sketches.summary import frequent_lg
from tests._stats_helpers import make_config as config_of
from tests.helpers import training_rows, write_csv


def _write_jsonl(path: Path, columns: dict[str, list[object]]) -> Path:
    with path.open("w") as handle:
        for row in zip(*columns.values(), strict=True):
            handle.write(json.dumps(dict(zip(columns, row, strict=True))) + "\n")
    return path


def _write_parquet(path: Path, columns: dict[str, list[object]]) -> Path:
    pq.write_table(pa.table(columns), path, row_group_size=1_000)
    return path


def _same_statistics(a: Baseline, b: Baseline) -> None:
    """Equal counts and moments; numeric edges agree within the KLL rank error.

    KLL compaction is randomised, so two builds of the same rows pick slightly
    different quantile edges; each build's bin counts are exact on its own
    edges (checked in test_bins_are_exact_counts_on_the_baseline_edges).
    """
    assert a.rows == b.rows
    for name, held in a.fields.items():
        other = b.fields[name]
        assert held.summary.count == other.summary.count
        assert held.summary.missing == other.summary.missing
        assert held.summary.bins.sum() == other.summary.bins.sum()
        if isinstance(held.summary, NumericSummary):
            assert isinstance(other.summary, NumericSummary)
            error = held.summary.kll.normalized_rank_error(
                False
            ) + other.summary.kll.normalized_rank_error(False)
            ranks_a = held.summary.kll.get_cdf(other.summary.binning.edges.tolist(), True)[:-1]
            ranks_b = other.summary.kll.get_cdf(other.summary.binning.edges.tolist(), True)[:-1]
            assert np.abs(np.asarray(ranks_a) - np.asarray(ranks_b)).max() <= error
            assert held.summary.minimum == other.summary.minimum
            assert held.summary.maximum == other.summary.maximum
            assert held.summary.total == pytest.approx(other.summary.total)
        else:
            assert np.array_equal(held.summary.bins, other.summary.bins)


def test_csv_jsonl_and_parquet_give_the_same_baseline(
    tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    """The three formats hold the same rows, so they build identical statistics."""
    config = make_config()
    columns = training_rows(3_000)
    columns["alcohol"][5] = None
    built = [
        build_baseline(config, [write_csv(tmp_path / "t.csv", columns)], chunk_rows=700),
        build_baseline(config, [_write_jsonl(tmp_path / "t.jsonl", columns)], chunk_rows=700),
        build_baseline(config, [_write_parquet(tmp_path / "t.parquet", columns)], chunk_rows=700),
    ]
    for other in built[1:]:
        _same_statistics(built[0], other)
    assert built[0].fields["alcohol"].summary.missing == 1


def test_stdlib_readers_match_pyarrow(
    tmp_path: Path, make_config: Callable[..., Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without pyarrow the CSV and JSON Lines readers give the same statistics."""
    config = make_config()
    columns = training_rows(2_000)
    csv_path = write_csv(tmp_path / "t.csv", columns)
    jsonl_path = _write_jsonl(tmp_path / "t.jsonl", columns)
    with_arrow = build_baseline(config, [csv_path])
    monkeypatch.setattr(datafiles, "pa", None)
    _same_statistics(with_arrow, build_baseline(config, [csv_path], chunk_rows=300))
    _same_statistics(with_arrow, build_baseline(config, [jsonl_path], chunk_rows=300))


def test_bins_are_exact_counts_on_the_baseline_edges(
    tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    """The stored bin counts equal numpy's counts of the raw values on the stored edges."""
    config = make_config()
    columns = training_rows(10_000)
    baseline = build_baseline(config, [write_csv(tmp_path / "t.csv", columns)])
    held = baseline.fields["alcohol"].summary
    assert isinstance(held, NumericSummary)
    raw = np.asarray(columns["alcohol"], dtype=np.float64)
    expected = np.bincount(
        np.searchsorted(held.binning.edges, raw, side="right"), minlength=held.binning.size
    )
    assert np.array_equal(held.bins, expected)
    assert held.binning.size == 10
    shares = held.bins / held.bins.sum()
    assert np.all(np.abs(shares - 0.1) < 0.03)  # equal mass within the KLL quantile error


def test_ties_collapse_edges(tmp_path: Path, make_config: Callable[..., Config]) -> None:
    """Three levels get a bin each, split halfway between them; a constant column three: below
    its value, its value and above, the end bins empty."""
    config = make_config()
    columns = training_rows(2_000)
    columns["alcohol"] = [float(i % 3) for i in range(2_000)]
    columns["ash"] = [7.0] * 2_000
    baseline = build_baseline(config, [write_csv(tmp_path / "t.csv", columns)])
    alcohol, ash = baseline.fields["alcohol"].summary, baseline.fields["ash"].summary
    assert isinstance(alcohol, NumericSummary) and isinstance(ash, NumericSummary)
    assert alcohol.binning.edges.tolist() == pytest.approx([0.5, 1.5], abs=1e-7)
    assert list(alcohol.bins) == [667, 667, 666]
    assert ash.binning.size == 3 and list(ash.bins) == [0, 2_000, 0]
    low, high = ash.binning.edges.tolist()
    assert low < 7.0 < high and np.float32(low) == np.float32(7.0) < np.float32(high)


def test_categories_are_exact_and_frozen(
    tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    """Top categories are kept by exact count; other and unseen buckets follow."""
    config = make_config(sketch={"top_categories": 2})
    columns = training_rows(4_000)
    baseline = build_baseline(config, [write_csv(tmp_path / "t.csv", columns)])
    region = baseline.fields["region"]
    assert isinstance(region.summary, CategoricalSummary)
    counts = {c: columns["region"].count(c) for c in ("north", "south", "east")}
    assert region.bin_labels == ["north", "south", "__other__", "__unseen__"]
    assert list(region.summary.bins) == [counts["north"], counts["south"], counts["east"], 0]
    assert region.category_counts == counts


@pytest.mark.parametrize("arrow_type", [pa.float64(), pa.float32()])
def test_float_codes_in_parquet_are_spelled_as_live_traffic_spells_them(
    tmp_path: Path, make_config: Callable[..., Config], arrow_type: pa.DataType
) -> None:
    """A float column of codes gives the categories the sidecar reads from the same numbers.

    pyarrow's own formatting wrote ``1.2345678901e+10``, ``-0`` and ``0.00001``,
    so an 11-digit id stored as a double (a column with gaps) was unseen in every request.
    """
    codes = [12345678901.0, 4006381333931.0, -0.0, 1e-05, 1.5e-07, 0.1, 2.5, 7.0]
    stored = pa.array(codes, arrow_type).to_pylist()  # float32 rounds 0.1 and 1e-05
    columns = training_rows(len(codes))
    table = pa.table({**columns, "region": pa.array(codes, arrow_type)})
    pq.write_table(table, tmp_path / "t.parquet")
    baseline = build_baseline(make_config(), [tmp_path / "t.parquet"])
    live = {canonical_category(v) for v in stored}
    if arrow_type == pa.float32():  # the live side of a float32 is its FP32 tensor value
        live = {canonical_category(np.float32(v)) for v in stored}
    assert set(baseline.fields["region"].category_counts) == live


@pytest.mark.parametrize("arrow_type", [pa.float64(), pa.float32()], ids=["float64", "float32"])
def test_nan_in_a_float_column_of_codes_is_missing(
    tmp_path: Path, make_config: Callable[..., Config], arrow_type: pa.DataType
) -> None:
    """pandas writes a code column with gaps as floats with NaN: a gap is missing, as live."""
    codes = [1.0, float("nan"), 2.0, 1.0, float("nan"), 3.0, None, 2.0]
    columns = training_rows(len(codes))
    table = pa.table({**columns, "region": pa.array(codes, arrow_type)})
    pq.write_table(table, tmp_path / "t.parquet")
    held = build_baseline(make_config(), [tmp_path / "t.parquet"]).fields["region"]
    assert held.category_counts == {"1": 2, "2": 2, "3": 1}
    assert held.summary.missing == 3


def _many_categories(seed: int) -> list[str]:
    """``c1``…``c60`` seen 400 - 6·r times (``c50`` 100, ``c51`` 94) among 20,000 one-off ids."""
    values = [f"c{r}" for r in range(1, 61) for _ in range(400 - 6 * r)]
    values += [f"id{i}" for i in range(20_000)]
    np.random.default_rng(seed).shuffle(values)
    return values


def test_top_categories_of_a_field_beyond_the_exact_tally_are_its_most_frequent(
    tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    """Over 10,000 distinct values the top 50 come from the frequent-items sketch: they are the
    exact top 50 (built whole, and merged from halves), each count within its a-priori error."""
    config = make_config()
    columns = training_rows(len(_many_categories(0)), seed=5)
    columns["region"] = _many_categories(0)
    half = len(columns["region"]) // 2
    whole = build_baseline(config, [write_csv(tmp_path / "all.csv", columns)])
    halves = [
        build_baseline(
            config, [write_csv(tmp_path / f"{i}.csv", {k: v[s] for k, v in columns.items()})]
        )
        for i, s in enumerate([slice(None, half), slice(half, None)])
    ]
    truth = Counter(columns["region"])
    top = [c for c, _ in sorted(truth.items(), key=lambda t: (-t[1], t[0]))[:50]]
    for baseline in (whole, merge_baselines(config, halves)):
        region = baseline.fields["region"]
        assert isinstance(region.summary, CategoricalSummary)
        assert region.category_counts is None  # the sketch path, not the exact tally
        assert region.bin_labels[:-2] == top
        error = ds.frequent_strings_sketch.get_apriori_error(frequent_lg(50), baseline.rows)
        got = region.summary.bins[:-2]
        assert np.all(np.abs(got - np.array([truth[c] for c in top])) <= error)


def test_quantiles_are_of_the_float32_rounding_unless_float32_cannot_round_within_its_precision(
    tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    """A sketch holds the values' float32 roundings (as live sketches do), within its rank
    error of numpy's; a field beyond float32's range keeps its float64 values."""
    columns = training_rows(20_000)
    columns["ash"] = [v * 1e300 for v in columns["ash"]]
    baseline = build_baseline(make_config(), [write_csv(tmp_path / "t.csv", columns)])
    for name in ("alcohol", "ash"):
        summary = baseline.fields[name].summary
        assert isinstance(summary, NumericSummary)
        raw = np.sort(np.asarray(columns[name], dtype=np.float64))
        ranks = np.linspace(0.01, 0.99, 99)
        got = np.asarray(summary.kll.get_quantiles(ranks.tolist()))
        error = summary.kll.normalized_rank_error(False)
        rounded = np.sort(raw.astype(np.float32)).astype(np.float64) if name == "alcohol" else raw
        found = np.searchsorted(rounded, got, side="right") / len(raw)
        assert np.all(np.abs(found - ranks) <= error + 1 / len(raw))
    alcohol = baseline.fields["alcohol"].summary.kll.get_quantiles([0.25, 0.5, 0.75])  # type: ignore[union-attr]
    assert all(float(np.float32(q)) == q for q in alcohol)
    assert baseline.fields["ash"].summary.kll.get_quantile(0.5) > 1e300  # type: ignore[union-attr]


def test_save_and_load_round_trip(tmp_path: Path, make_config: Callable[..., Config]) -> None:
    """A saved baseline loads back with the same statistics, id and sketches."""
    config = make_config()
    baseline = build_baseline(config, [write_csv(tmp_path / "t.csv", training_rows(2_000))])
    save_baseline(baseline, tmp_path / "b.dgb")
    loaded = load_baseline(tmp_path / "b.dgb")
    _same_statistics(baseline, loaded)
    assert loaded.id == baseline.id and loaded.schema_hash == config.schema_hash()
    a, b = baseline.fields["ash"].summary, loaded.fields["ash"].summary
    assert isinstance(a, NumericSummary) and isinstance(b, NumericSummary)
    assert a.kll.get_quantile(0.5) == b.kll.get_quantile(0.5)
    document = json.loads(gzip.decompress((tmp_path / "b.dgb").read_bytes()))
    assert document["format"] == "driftgauge-baseline"
    assert document["format_version"] == FORMAT_VERSION
    assert {"driftgauge_version", "schema_hash", "created", "rows", "id"} <= set(document)


def test_merge_of_halves_matches_the_whole(
    tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    """Two halves merge to the whole's counts exactly and its quantiles within rank error."""
    config = make_config()
    columns = training_rows(20_000, seed=3)
    half = {k: v[:10_000] for k, v in columns.items()}
    rest = {k: v[10_000:] for k, v in columns.items()}
    whole = build_baseline(config, [write_csv(tmp_path / "all.csv", columns)])
    first = build_baseline(config, [write_csv(tmp_path / "a.csv", half)])
    second = build_baseline(config, [write_csv(tmp_path / "b.csv", rest)])
    merged = merge_baselines(config, [first, second])
    assert merged.rows == whole.rows
    for name in ("alcohol", "ash"):
        m, w = merged.fields[name].summary, whole.fields[name].summary
        assert isinstance(m, NumericSummary) and isinstance(w, NumericSummary)
        assert (m.count, m.missing, m.minimum, m.maximum) == (
            w.count,
            w.missing,
            w.minimum,
            w.maximum,
        )
        assert m.total == pytest.approx(w.total)
        error = m.kll.normalized_rank_error(False) + w.kll.normalized_rank_error(False)
        raw = np.sort(np.asarray(columns[name]))
        for rank in (0.1, 0.5, 0.9):
            # the merged quantile's true rank in the raw data is within the sketch error
            true_rank = np.searchsorted(raw, m.kll.get_quantile(rank), side="right") / len(raw)
            assert abs(true_rank - rank) <= error
        # bins re-estimated on the merged edges: shares within the rank error per edge
        exact = np.bincount(
            np.searchsorted(m.binning.edges, raw, side="right"), minlength=m.binning.size
        )
        assert np.abs(m.bins / m.count - exact / len(raw)).max() <= 2 * error
    for name in ("region", "class"):
        assert np.array_equal(merged.fields[name].summary.bins, whole.fields[name].summary.bins)
        assert merged.fields[name].exact


def test_merge_with_shared_edges_is_exact(
    tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    """Merging a baseline with itself doubles every count exactly."""
    config = make_config()
    one = build_baseline(config, [write_csv(tmp_path / "t.csv", training_rows(3_000))])
    twice = merge_baselines(config, [one, one])
    for name, held in twice.fields.items():
        assert held.exact
        assert np.array_equal(held.summary.bins, 2 * one.fields[name].summary.bins)


def test_corrupt_truncated_and_foreign_files(
    tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    """Every broken baseline file gives a one-line BaselineError naming the file."""
    config = make_config()
    baseline = build_baseline(config, [write_csv(tmp_path / "t.csv", training_rows(500))])
    good = tmp_path / "good.dgb"
    save_baseline(baseline, good)
    data = good.read_bytes()
    cases = {
        "truncated.dgb": data[: len(data) // 2],
        "text.dgb": b"hello",
        "json.dgb": gzip.compress(b'{"format": "something-else"}'),
        "version.dgb": gzip.compress(
            json.dumps(json.loads(gzip.decompress(data)) | {"format_version": 99}).encode()
        ),
        "fields.dgb": gzip.compress(
            json.dumps(
                json.loads(gzip.decompress(data)) | {"fields": [{"type": "numeric"}]}
            ).encode()
        ),
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(BaselineError) as caught:
            load_baseline(tmp_path / name)
        assert name in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(BaselineError, match="format version 99"):
        load_baseline(tmp_path / "version.dgb")
    with pytest.raises(BaselineError, match="no baseline file"):
        load_baseline(tmp_path / "absent.dgb")


def test_a_sketch_cut_short_is_a_malformed_baseline(
    tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    """A KLL, frequent-items or HLL sketch whose bytes were cut is one line naming the file."""
    config = make_config()
    baseline = build_baseline(config, [write_csv(tmp_path / "t.csv", training_rows(500))])
    good = tmp_path / "good.dgb"
    save_baseline(baseline, good)
    document = json.loads(gzip.decompress(good.read_bytes()))
    numeric = next(i for i, f in enumerate(document["fields"]) if f["type"] == "numeric")
    categorical = next(i for i, f in enumerate(document["fields"]) if f["type"] != "numeric")
    for index, key in ((numeric, "kll"), (categorical, "frequent"), (categorical, "hll")):
        cut = json.loads(json.dumps(document))
        cut["fields"][index][key] = cut["fields"][index][key][:8]  # 6 bytes of the sketch
        path = tmp_path / f"{key}.dgb"
        path.write_bytes(gzip.compress(json.dumps(cut).encode()))
        with pytest.raises(BaselineError, match=rf"^{re.escape(str(path))}: .*malformed"):
            load_baseline(path)


def test_check_against_names_mismatched_fields(
    tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    """A baseline built for other fields or types is refused, naming each field."""
    config = make_config()
    baseline = build_baseline(config, [write_csv(tmp_path / "t.csv", training_rows(500))])
    other = make_config(
        features=[{"name": "alcohol", "type": "categorical"}, {"name": "hue", "type": "numeric"}]
    )
    with pytest.raises(BaselineError) as caught:
        check_against(baseline, other, Path("b.dgb"))
    message = str(caught.value)
    assert "'alcohol' is categorical in the config but numeric" in message
    assert "'hue' is in the config but not in the baseline" in message
    assert "ash" in message and "region" in message


def test_bad_data_files(tmp_path: Path, make_config: Callable[..., Config]) -> None:
    """A missing column or an unknown type gives a one-line DataError; a cell that is not a
    number in a CSV's numeric column is counted as one, as the other readers do."""
    config = make_config()
    columns = training_rows(100)
    del columns["ash"]
    with pytest.raises(DataError, match="no column named 'ash'"):
        build_baseline(config, [write_csv(tmp_path / "t.csv", columns)])
    with pytest.raises(DataError, match="unknown data file type '.xlsx'"):
        build_baseline(config, [tmp_path / "t.xlsx"])
    with pytest.raises(DataError, match="no such data file"):
        build_baseline(config, [tmp_path / "absent.csv"])
    columns = training_rows(100)
    columns["ash"][3] = "abc"  # type: ignore[call-overload]
    ash = build_baseline(config, [write_csv(tmp_path / "t2.csv", columns)]).fields["ash"].summary
    assert isinstance(ash, NumericSummary)
    assert (ash.count, ash.wrong_type, ash.missing) == (99, 1, 0)


def test_describe_lists_every_field(tmp_path: Path, make_config: Callable[..., Config]) -> None:
    """inspect's text names each field, its type, counts and bins."""
    config = make_config()
    baseline = build_baseline(config, [write_csv(tmp_path / "t.csv", training_rows(500))])
    text = describe(baseline, Path("b.dgb"))
    for name in ("alcohol", "ash", "region", "class"):
        assert f"\n{name}  (" in text
    assert "rows 500" in text and "north" in text
    assert "10 bins (edges " in text and "bin 9 " in text and "share 0.1" in text


def test_describe_counts_the_training_rows_of_each_segment(
    tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    """inspect names the segments a baseline was built for, with numpy's count of each."""
    columns = training_rows(500)
    config = make_config(segments={"features": ["region"], "top": 2})
    baseline = build_baseline(config, [write_csv(tmp_path / "t.csv", columns)])
    line = next(x for x in describe(baseline, Path("b.dgb")).splitlines() if "segments by" in x)
    regions, counts = np.unique(np.asarray(columns["region"]), return_counts=True)
    top = sorted(zip(counts, regions, strict=True), reverse=True)[:2]
    expected = [f"{region} {count:,}" for count, region in top]
    expected.append(f"__other__ {len(columns['region']) - sum(c for c, _ in top):,}")
    assert line == "  segments by region (training rows with a prediction): " + "  ".join(expected)


@pytest.mark.parametrize("rows", [150, 20_000])
def test_describe_states_how_far_its_quantiles_may_be(
    tmp_path: Path, make_config: Callable[..., Config], rows: int
) -> None:
    """Each numeric field's quantiles come with their bound: exact while the sketch holds every
    value, else its rank error; the printed p1..p99 are within it of numpy's ranks."""
    columns = training_rows(rows, seed=3)
    baseline = build_baseline(make_config(), [write_csv(tmp_path / "t.csv", columns)])
    text = describe(baseline, Path("b.dgb"))
    block = text.split("\nalcohol  (", 1)[1].split("\n\n", 1)[0]
    stated = re.search(r"quantiles (exact|within ±([0-9.]+)% rank)", block)
    assert stated is not None, block
    error = 0.0 if stated.group(1) == "exact" else float(stated.group(2)) / 100
    assert (error == 0.0) == (rows == 150)
    values = np.sort(np.asarray(columns["alcohol"]))
    printed = re.search(r"p1 (\S+)  p25 (\S+)  p50 (\S+)  p75 (\S+)  p99 (\S+)", block)
    assert printed is not None, block
    for q, shown in zip((0.01, 0.25, 0.5, 0.75, 0.99), printed.groups(), strict=True):
        # The rank of the printed value (6 significant digits) among the training values.
        low = np.searchsorted(values, float(shown) * (1 - 1e-5), "left") / len(values)
        high = np.searchsorted(values, float(shown) * (1 + 1e-5), "right") / len(values)
        assert low - error - 1 / len(values) <= q <= high + error + 1 / len(values), (q, shown)


def test_describe_escapes_categories_that_do_not_print(
    tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    """A category holding a newline or a tab is shown quoted and escaped as repr does, on its
    field's line; one that prints is shown as it is."""
    config = make_config()
    columns = training_rows(300)
    columns["region"] = ["line\nbreak", "tab\there", "plain"] * 100
    baseline = build_baseline(config, [_write_jsonl(tmp_path / "t.jsonl", columns)])
    text = describe(baseline, Path("b.dgb"))
    region = text.split("\nregion  (", 1)[1].split("\n\n", 1)[0].splitlines()
    assert region[-1] == (
        "  'line\\nbreak' 0.333  plain 0.333  'tab\\there' 0.333  __other__ 0.000  __unseen__ 0.000"
    )


def test_describe_says_a_numeric_field_has_no_finite_value(
    tmp_path: Path, make_config: Callable[..., Config]
) -> None:
    """A numeric field without a finite value says so instead of showing a bin [inf, -inf]."""
    config = make_config()
    columns = training_rows(300)
    columns["ash"] = [None] * 300
    baseline = build_baseline(config, [_write_jsonl(tmp_path / "t.jsonl", columns)])
    text = describe(baseline, Path("b.dgb"))
    ash = text.split("\nash  (", 1)[1].split("\n\n", 1)[0]
    assert "inf" not in ash
    assert "no finite value, no bins: check and serve refuse this baseline" in ash


def test_a_merge_of_halves_float32_merges_keeps_float64_and_equal_mass_edges(
    tmp_path: Path,
) -> None:
    """Halves of a nanosecond timestamp field built apart have different edges; their merge
    keeps float64 live sketches and re-derives ten equal-mass bins from the merged float64
    sketch (the sketch rule's float32 edges would be one value's three bins)."""
    values = np.random.default_rng(4).normal(1.7e18, 1e6, 20_000)
    config = config_of(tmp_path, [("ts", "numeric")])
    halves = [
        build_baseline(config, [write_csv(tmp_path / f"{i}.csv", {"ts": part.tolist()})])
        for i, part in enumerate(np.array_split(values, 2))
    ]
    assert all(h.fields["ts"].live_items == "float64" for h in halves)
    merged = merge_baselines(config, halves).fields["ts"]
    assert merged.live_items == "float64" and not merged.exact
    summary = merged.summary
    assert isinstance(summary, NumericSummary)
    assert summary.binning.size == 10
    exact = np.bincount(np.searchsorted(summary.binning.edges, values, side="right"), minlength=10)
    error = 2 * summary.kll.normalized_rank_error(False) * len(values)
    assert np.all(np.abs(exact - len(values) / 10) <= error)
    assert np.all(np.abs(summary.bins - exact) <= error)
