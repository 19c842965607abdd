"""Training-data readers match columns by exact name, with pyarrow and with the standard library."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import tempfile
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from driftgauge.baseline import csvfiles, datafiles
from driftgauge.baseline.chunks import CSV_NUMERIC_NULLS, Chunk
from driftgauge.cli import main
from driftgauge.config import Config, FieldSpec
from driftgauge.exceptions import DataError
from driftgauge.jsonbody import decode_json
from tests.baseline.cluster_support import RUNNERS, our_lines, write_parts

NFC = unicodedata.normalize("NFC", "naïve")
NFD = unicodedata.normalize("NFD", "naïve")  # looks the same, is another name
FIELDS = (
    FieldSpec("od280/od315_of_diluted_wines", "numeric", "input"),
    FieldSpec("sepal length (cm)", "numeric", "input"),
    FieldSpec(NFC, "numeric", "input"),
    FieldSpec('a"b\\c', "categorical", "input"),
    FieldSpec("x,y", "categorical", "prediction"),
)
# Decoys next to the configured columns: near misses that must not be taken for them.
COLUMNS: dict[str, list[Any]] = {
    NFD: [-1.0, -2.0, -3.0],
    "sepal length (cm)": [4.5, 4.75, 5.0],
    "sepal length(cm)": [-1.0, -2.0, -3.0],
    "od280/od315_of_diluted_wines": [1.0, 2.0, 3.0],
    NFC: [7.0, 8.0, 9.0],
    'a"b\\c': ["p", 'q "r"', "s\\t"],
    "a'b\\c": ["no", "no", "no"],
    "x,y": ["1", "2", "1"],
}


def write(path: Path, bom: bool = False) -> Path:
    if path.suffix == ".csv":
        with path.open("w", encoding="utf-8-sig" if bom else "utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(list(COLUMNS))
            writer.writerows(zip(*COLUMNS.values(), strict=True))
    elif path.suffix == ".jsonl":
        rows = [dict(zip(COLUMNS, row, strict=True)) for row in zip(*COLUMNS.values(), strict=True)]
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    else:
        pa = pytest.importorskip("pyarrow")
        pq = pytest.importorskip("pyarrow.parquet")
        pq.write_table(pa.table(COLUMNS), path)
    return path


def read(path: Path) -> dict[str, list[Any]]:
    (chunk,) = list(datafiles.read_chunks(path, FIELDS))
    return {name: column.values.tolist() for name, column in chunk.columns.items()}


READERS = ["pyarrow", "stdlib"]


@pytest.fixture(params=READERS)
def reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "pyarrow":
        pytest.importorskip("pyarrow")
    else:
        monkeypatch.setattr(datafiles, "pa", None)
    return str(request.param)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_text_formats_take_the_column_of_exactly_the_configured_name(
    tmp_path: Path, reader: str, suffix: str
) -> None:
    """CSV and JSON Lines give each field the column of its exact name, decoys ignored."""
    values = read(write(tmp_path / f"train{suffix}"))
    assert list(values) == [spec.name for spec in FIELDS]
    for spec in FIELDS:
        assert values[spec.name] == COLUMNS[spec.name]


def test_parquet_takes_the_column_of_exactly_the_configured_name(tmp_path: Path) -> None:
    """Parquet columns are selected by exact name (no dotted-path or normalised matching)."""
    values = read(write(tmp_path / "train.parquet"))
    for spec in FIELDS:
        assert values[spec.name] == COLUMNS[spec.name]


def test_a_byte_order_mark_is_not_part_of_the_first_name(tmp_path: Path, reader: str) -> None:
    """A CSV saved with a UTF-8 BOM still matches its first column by name."""
    values = read(write(tmp_path / "train.csv", bom=True))
    assert values[NFC] == COLUMNS[NFC]
    (chunk,) = list(
        datafiles.read_chunks(tmp_path / "train.csv", [FieldSpec(NFD, "numeric", "input")])
    )
    assert np.array_equal(chunk.columns[NFD].values, COLUMNS[NFD])


def test_a_missing_column_is_named_exactly(tmp_path: Path, reader: str) -> None:
    """A configured name the file lacks is a DataError quoting it."""
    path = write(tmp_path / "train.csv")
    wanted = [FieldSpec("sepal length (mm)", "numeric", "input")]
    with pytest.raises(DataError, match=r"no column named 'sepal length \(mm\)'"):
        list(datafiles.read_chunks(path, wanted))


def test_a_cell_pyarrow_cannot_convert_is_reported_by_column_name(tmp_path: Path) -> None:
    """pyarrow's 'In CSV column #2' becomes the column's name in the one-line DataError
    (pyarrow names the row too in some processes: it did in a test process that had run
    other tests before, not alone)."""
    pytest.importorskip("pyarrow")
    path = tmp_path / "train.csv"
    path.write_text('z,"a ""b""",sepal length (cm)\n1,2,3.5\n1,2,np.float64(1)\n', encoding="utf-8")
    wanted = [FieldSpec("sepal length (cm)", "numeric", "input")]
    named = r"column 'sepal length \(cm\)': (Row #3: )?CSV conversion error"
    with pytest.raises(DataError, match=named):
        list(datafiles.read_chunks(path, wanted))


CODES = (FieldSpec("x", "numeric", "input"), FieldSpec("code", "categorical", "input"))


def read_all(path: Path, fields: Any = CODES) -> tuple[int, list[str]]:
    """Rows and the categorical ``code`` values over every chunk of ``path``."""
    chunks = list(datafiles.read_chunks(path, fields))
    return sum(c.rows for c in chunks), [v for c in chunks for v in c.columns["code"].values]


def test_jsonl_numbers_and_booleans_in_a_categorical_column_read_as_their_text(
    tmp_path: Path, reader: str
) -> None:
    """A JSON 0/1 code, 2.0 and true in a categorical column are the categories 0, 1, 2, true."""
    path = tmp_path / "t.jsonl"
    values = [0, 1, 2.0, True, "a"]
    path.write_text(
        "".join(json.dumps({"x": i, "code": v}) + "\n" for i, v in enumerate(values)),
        encoding="utf-8",
    )
    assert read_all(path) == (5, ["0", "1", "2", "true", "a"])


def test_jsonl_type_change_after_the_first_block_reads_every_row_once(tmp_path: Path) -> None:
    """Strings for a few MB, then numbers: pyarrow's chunks, then the rest, no row twice."""
    pytest.importorskip("pyarrow")
    path = tmp_path / "t.jsonl"
    strings = 120_000  # over pyarrow's 4 MB block
    with path.open("w", encoding="utf-8") as handle:
        for i in range(strings):
            handle.write(json.dumps({"x": i, "code": "ab"[i % 2], "pad": "-" * 20}) + "\n")
        for i in range(10):
            handle.write(json.dumps({"x": i, "code": i % 3}) + "\n")
    assert path.stat().st_size > 1 << 22  # more than one block
    rows, codes = read_all(path)
    assert rows == strings + 10
    assert codes[:4] == ["a", "b", "a", "b"]
    assert codes[-10:] == [str(i % 3) for i in range(10)]


def test_jsonl_values_that_are_not_numbers_in_a_numeric_column_are_counted(
    tmp_path: Path, reader: str
) -> None:
    """A string, boolean, object or array in a numeric column counts as not a number (as in a
    CSV cell), by pyarrow as by the standard library, wherever it comes: no failed build."""
    path = tmp_path / "t.jsonl"
    values: list[Any] = [0.5, 1.5, "oops", True, {"a": 1}, [1], "0.25", 2.0]
    path.write_text(
        "".join(json.dumps({"x": v, "code": "a"}) + "\n" for v in values), encoding="utf-8"
    )
    chunks = list(datafiles.read_chunks(path, CODES))
    assert sum(c.rows for c in chunks) == len(values)
    x = [c.columns["x"] for c in chunks]
    assert sum(column.wrong_type for column in x) == 5
    finite = np.concatenate([column.values for column in x])
    assert finite[np.isfinite(finite)].tolist() == [0.5, 1.5, 2.0]


def test_jsonl_numbers_beyond_float64_are_infinite(tmp_path: Path, reader: str) -> None:
    """1e400 is inf, as the standard library and a CSV cell read it (pyarrow refused the file:
    "Number too big to be stored in double")."""
    path = tmp_path / "t.jsonl"
    path.write_text('{"x": 1.5}\n{"x": 1e400}\n{"x": -1e400}\n', encoding="utf-8")
    chunks = list(datafiles.read_chunks(path, CODES))
    values = np.concatenate([c.columns["x"].values for c in chunks])
    assert values.tolist() == [1.5, np.inf, -np.inf]


def test_a_jsonl_key_given_twice_in_a_line_counts_its_last_value(
    tmp_path: Path, reader: str
) -> None:
    """{"x": 1, "x": 3}: the last value, as the sidecar's JSON parser and init read it
    (pyarrow refused the file: "Column(/x) was specified twice in row 0")."""
    path = tmp_path / "t.jsonl"
    path.write_text('{"x": 1.5, "code": "a", "x": 3.5}\n{"x": 2.5, "code": "b"}\n')
    chunks = list(datafiles.read_chunks(path, CODES))
    values = np.concatenate([c.columns["x"].values for c in chunks])
    assert values.tolist() == [3.5, 2.5]
    assert decode_json(b'{"x": 1.5, "x": 3.5}') == {"x": 3.5}  # the sidecar's reading


def test_a_line_that_is_not_json_is_named_by_its_number_in_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The standard library's reader (also pyarrow's successor after a type change) names
    the file's line, not the line within the one it parsed ("line 2 column 1")."""
    monkeypatch.setattr(datafiles, "pa", None)
    path = tmp_path / "t.jsonl"
    path.write_text('{"x": 1, "code": "a"}\n\n{"x": 2, "code": "b"}\n{"x": 3, "code": \n')
    with pytest.raises(DataError, match=r"t\.jsonl: line 4 is not JSON \(") as caught:
        list(datafiles.read_chunks(path, CODES))
    assert "line 2" not in str(caught.value)


def test_a_decimal_parquet_column_is_read_as_numbers(tmp_path: Path) -> None:
    """A numeric field stored as Parquet decimal(10, 2) counts as numbers, nulls as missing."""
    from decimal import Decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "prices.parquet"
    prices = pa.array([Decimal("1.25"), None, Decimal("3.50")], pa.decimal128(10, 2))
    pq.write_table(pa.table({"price": prices}), path)
    (chunk,) = datafiles.read_chunks(path, [FieldSpec("price", "numeric", "input")])
    column = chunk.columns["price"]
    assert np.array_equal(column.values, [1.25, np.nan, 3.5], equal_nan=True)
    assert (column.missing, column.wrong_type) == (1, 0)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)), max_size=80),
    st.integers(0, 40),
    st.integers(0, 80),
)
def test_arrow_columns_read_through_buffers_match_to_numpy(
    values: list[float | None], start: int, length: int
) -> None:
    """Values, nulls and slice offsets read from the buffers as pyarrow's own to_numpy reads them."""
    import pyarrow as pa

    from driftgauge.baseline import chunks

    array = pa.array(values, pa.float64()).slice(start, length)
    read = chunks._float_values(array)
    assert np.array_equal(read, array.to_numpy(zero_copy_only=False), equal_nan=True)
    assert np.array_equal(chunks._valid(array), array.is_valid().to_numpy(zero_copy_only=False))
    texts = pa.array([None if v is None else repr(v) for v in values], pa.string()).slice(start)
    assert np.array_equal(chunks._valid(texts), texts.is_valid().to_numpy(zero_copy_only=False))


def test_a_worker_reading_parquet_and_csv_does_not_import_pandas(tmp_path: Path) -> None:
    """pyarrow's to_numpy imports pandas when installed: half a second in every worker process."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pytest.importorskip("pandas")
    table = pa.table({"x": pa.array([1.5, None, 3.0]), "c": pa.array(["a", None, "b"])})
    pq.write_table(table, tmp_path / "t.parquet")
    (tmp_path / "t.csv").write_text("x,c\n1.5,a\n,\n3,b\n", encoding="utf-8")
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from driftgauge.baseline import datafiles\n"
        "from driftgauge.config import FieldSpec\n"
        "fields = [FieldSpec('x', 'numeric', 'input'), FieldSpec('c', 'categorical', 'input')]\n"
        "for name in ('t.parquet', 't.csv'):\n"
        "    (chunk,) = datafiles.read_chunks(Path(sys.argv[1]) / name, fields)\n"
        "    assert chunk.columns['c'].missing == 1, name\n"
        "print('pandas' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


CELL = st.one_of(
    st.sampled_from([*CSV_NUMERIC_NULLS, "NaN", "nan", "-inf", "Infinity", "1e400"]),
    st.sampled_from(["abc", "TRUE", "0x1F", "1,5", " ", "-", "--1"]),
    st.floats(allow_nan=False).map(repr),
    st.integers(-(10**20), 10**20).map(str),
    st.text(alphabet="0123456789.eE+-naifNAIF/#", max_size=6),
)


def columns_of(chunks: list[Chunk]) -> dict[str, Any]:
    """Each column's values and counts over ``chunks``, comparable between readers."""
    result: dict[str, Any] = {}
    for name in chunks[0].columns:
        parts = [c.columns[name] for c in chunks]
        values = np.concatenate([p.values for p in parts])
        result[name] = (
            values.tolist() if values.dtype.kind != "f" else values.view(np.int64).tolist(),
            sum(p.missing for p in parts),
            sum(p.wrong_type for p in parts),
        )
    return result


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(CELL, CELL), min_size=1, max_size=40))
def test_csv_cells_read_the_same_by_pyarrow_and_the_standard_library(
    rows: list[tuple[str, str]],
) -> None:
    """Any cell, numeric or categorical: the same values, missing and not-number counts from
    pyarrow (reading a numeric column as text once a cell is not a number) and from the csv
    module. An empty cell is missing in both columns, "NA" only in the numeric one."""
    pytest.importorskip("pyarrow")
    fields = [FieldSpec("x", "numeric", "input"), FieldSpec("c", "categorical", "input")]
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "cells.csv"
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["x", "c"])
            writer.writerows(rows)
        try:
            arrow = list(datafiles.read_chunks(path, fields))
        except csvfiles.NotNumbers as exc:
            column = exc.column
            arrow = list(datafiles.read_chunks(path, fields, text={column}))
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(datafiles, "pa", None)
            stdlib = list(datafiles.read_chunks(path, fields))
    assert columns_of(arrow) == columns_of(stdlib)


def test_a_column_named_twice_is_refused(tmp_path: Path, reader: str) -> None:
    """With two columns of one configured name, which one is meant is not known."""
    path = tmp_path / "twice.csv"
    path.write_text("a,b,a\n1,2,3\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"twice.csv: more than one column named 'a'"):
        list(datafiles.read_chunks(path, [FieldSpec("a", "numeric", "input")]))


def test_parquet_columns_pyarrow_cannot_convert_are_one_line_errors(tmp_path: Path) -> None:
    """An integer past 2**53 is its nearest float (as in JSON); a list column taken as
    categories is a DataError naming the file and column, not a traceback."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "odd.parquet"
    table = pa.table({"big": pa.array([2**53 + 1, 5], pa.int64()), "tags": [[1, 2], [3]]})
    pq.write_table(table, path)
    (chunk,) = datafiles.read_chunks(path, [FieldSpec("big", "numeric", "input")])
    assert chunk.columns["big"].values.tolist() == [float(2**53 + 1), 5.0]
    with pytest.raises(DataError, match=r"odd.parquet: column 'tags': .*list") as caught:
        list(datafiles.read_chunks(path, [FieldSpec("tags", "categorical", "input")]))
    assert "\n" not in str(caught.value)


def test_a_json_array_file_is_named_as_such(tmp_path: Path, reader: str) -> None:
    """A .json file of one array (not JSON Lines) gets a line saying so and how to convert it,
    instead of pyarrow's "Column() changed from object to array"."""
    path = tmp_path / "records.json"
    path.write_text('\ufeff  [{"x": 1, "code": "a"}, {"x": 2, "code": "b"}]\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"records.json: holds a JSON array; .*jq -c"):
        list(datafiles.read_chunks(path, CODES))


@given(
    st.binary(max_size=40),
    st.binary(max_size=400),
    st.integers(0, 50),
    st.integers(0, 450),
    st.lists(st.integers(1, 64), min_size=1, max_size=8),
)
def test_a_csv_range_streams_as_the_header_and_its_bytes_with_their_quotes_counted(
    header: bytes, data: bytes, start: int, size: int, reads: list[int]
) -> None:
    """What pyarrow's CSV reader reads of a part, in blocks of any size: the header, then
    the part's bytes and no more (the file may end sooner); its quote characters counted."""
    handle = io.BufferedReader(io.BytesIO(data))  # type: ignore[arg-type]
    handle.seek(start)
    stream = csvfiles._Range(header, handle, size)
    got = b""
    for i in range(10_000):
        block = stream.read(reads[i % len(reads)])
        if not block:
            break
        got += block
    body = data[start : start + size]
    assert got == header + body
    assert stream.quotes == body.count(b'"')


def test_csv_batches_are_joined_to_the_chunk_rows_without_changing_a_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pyarrow's CSV reader gives a batch per block; a part's batches come joined into
    chunk-sized ones (the last may be shorter), in order, every value as read."""
    import pyarrow.csv as pa_csv

    rng = np.random.default_rng(4)
    values = rng.normal(size=20_000).round(6)
    path = tmp_path / "train.csv"
    path.write_text("x,code\n" + "".join(f"{v},c{i % 7}\n" for i, v in enumerate(values)))
    block = 8_192
    original = pa_csv.ReadOptions

    def small_blocks(**options: Any) -> Any:
        return original(**{**options, "block_size": block})

    monkeypatch.setattr(pa_csv, "ReadOptions", small_blocks)
    source = datafiles.as_input(path)
    header = len(path.read_bytes().split(b"\n")[0]) + 1
    batches = list(datafiles.part_batches(source, CODES, 3_000, header, source.size))
    sizes = [b.num_rows for b in batches]
    assert all(size >= 3_000 for size in sizes[:-1]) and sizes[-1] > 0 and len(sizes) > 2
    assert max(sizes) < 2 * 3_000  # a block (600 rows here) more than asked, at most
    joined = np.concatenate([np.asarray(b.column("x").to_pylist()) for b in batches])
    assert np.array_equal(joined, values)


@pytest.mark.parametrize("row", ["3,4", "3,4,c,5"])
def test_every_csv_reader_skips_blank_lines_and_refuses_a_row_without_the_header_s_cells(
    tmp_path: Path, reader: str, row: str
) -> None:
    """pyarrow skips a blank line and refuses a ragged row; the standard library's reader
    counted a blank line as a row of missing values and a short row's absent cells as
    missing: the same file gave two baselines, or one and an error."""
    fields = [FieldSpec("x", "numeric", "input"), FieldSpec("z", "categorical", "input")]
    path = tmp_path / "train.csv"
    path.write_text("x,y,z\n1,2,a\n\n5,6,b\n", encoding="utf-8")
    (chunk,) = list(datafiles.read_chunks(path, fields))
    assert chunk.rows == 2 and chunk.columns["x"].values.tolist() == [1.0, 5.0]
    path.write_text(f"x,y,z\n1,2,a\n{row}\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.csv: line 3 has "):
        list(datafiles.read_chunks(path, fields))


EUROPEAN = "alcohol;region;class\n13,2;north;1\n12,9;south;0\n"


@pytest.mark.parametrize(
    ("name", "text", "fields", "said"),
    [
        ("eu.csv", EUROPEAN, ["alcohol"], "with ';' between names: .* or as Parquet"),
        ("eu.csv", EUROPEAN, ["alcohol;region;class"], "with ';' between"),
        ("t.csv", "x|c\n1.5|a\n", ["x"], "with '|' between"),
        ("t.csv", "x\tc\n1.5\ta\n", ["x"], "with tabs between .*name a tab-separated file .tsv"),
        ("t.tsv", "x,c\n1.5,a\n", ["x"], "with ',' between .*name a comma-separated file .csv"),
        ("eu.csv", "name;price, EUR;qty\nx;1,5;2\n", ["name;price"], "every name of the .* ';'"),
    ],
)
def test_a_csv_of_another_separator_is_refused_naming_it(
    tmp_path: Path, reader: str, name: str, text: str, fields: list[str], said: str
) -> None:
    """A spreadsheet's ';' export was read as one column named 'alcohol;region;class' (or,
    with a comma in a name, two: 'name;price' and ' EUR;qty'): a config naming its columns
    was told they were missing, and one naming that column (as init wrote it) built a
    baseline of one text field; every reader now says which separator the header holds
    and what to do."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    specs = [FieldSpec(f, "categorical", "input") for f in fields]
    with pytest.raises(DataError, match=rf"{name}: (the header is one column, )?.*{said}"):
        list(datafiles.read_chunks(path, specs))


def test_a_one_column_csv_is_read(tmp_path: Path, reader: str) -> None:
    """A header of one name, holding no separator, is one column as before; so are names
    holding ';' beside one that does not."""
    path = tmp_path / "u.csv"
    path.write_text("a;b,c\n1.5,x\n", encoding="utf-8")
    (chunk,) = list(datafiles.read_chunks(path, [FieldSpec("a;b", "numeric", "input")]))
    assert chunk.columns["a;b"].values.tolist() == [1.5]
    path = tmp_path / "t.csv"
    path.write_text("sepal length (cm)\n1.5\n2.5\n", encoding="utf-8")
    (chunk,) = list(
        datafiles.read_chunks(path, [FieldSpec("sepal length (cm)", "numeric", "input")])
    )
    assert chunk.columns["sepal length (cm)"].values.tolist() == [1.5, 2.5]


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("", "the file is empty \\(no header row\\)"),
        ("\ufeff", "the file is empty \\(no header row\\)"),
        ("\nx,c\n1.5,a\n", "line 1 is blank: a CSV file's first line is its header"),
    ],
)
def test_a_csv_without_a_header_line_says_so(
    tmp_path: Path, reader: str, text: str, said: str
) -> None:
    """An empty CSV file was "no column named 'x' (the config's fields)" to baseline and "the
    file is empty" to init; a blank first line was that too to the build, which reads the
    first line as the header, where pyarrow's reader takes the next. Every reader now
    names the problem."""
    path = tmp_path / "t.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=rf"t\.csv: {said}$"):
        list(datafiles.read_chunks(path, [FieldSpec("x", "numeric", "input")]))


@pytest.mark.parametrize("text", ["", "\n\n"])
def test_a_json_lines_file_without_a_record_has_no_rows(
    tmp_path: Path, reader: str, text: str
) -> None:
    """pyarrow's reader refused it ('cannot read JSONL data: Empty JSON stream'), failing a
    build of several files, where the standard library's read no rows, as for a CSV file
    of its header alone."""
    path = tmp_path / "t.jsonl"
    path.write_text(text, encoding="utf-8")
    assert list(datafiles.read_chunks(path, [FieldSpec("x", "numeric", "input")])) == []


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("t.csv", b"x,c\n1.5,caf\xe9\n"),
        ("t.csv", b"x,c\n" + b"1.5,a\n" * 100_000 + b"2.5,caf\xe9\n"),  # past the header's read
        ("t.jsonl", b'{"x": 1.5, "c": "caf\xe9"}\n'),
    ],
)
def test_a_file_not_in_utf_8_says_so_and_what_to_do(
    tmp_path: Path, reader: str, name: str, data: bytes
) -> None:
    """A spreadsheet's Windows-1252 export was "'utf-8' codec can't decode byte 0xe9 in
    position 11: invalid continuation byte" (a position within a buffer, not the file) or
    pyarrow's 'CSV conversion error to string: invalid UTF8 data'; every reader now says
    the file is not UTF-8 and to save it so."""
    path = tmp_path / name
    path.write_bytes(data)
    fields = [FieldSpec("x", "numeric", "input"), FieldSpec("c", "categorical", "input")]
    with pytest.raises(
        DataError, match=r"not UTF-8 text( \(byte 0xe9\))?: save the file as UTF-8$"
    ):
        list(datafiles.read_chunks(path, fields))


JSON_LINE = b'{"alcohol": 13.1, "ash": 2.1, "region": "north", "class": "a"}'
BAD_JSON_FILES = {
    "empty.jsonl": (b"", "{path}: holds no rows (no baseline written)"),
    "array.json": (
        b"[" + b", ".join([JSON_LINE] * 50) + b"]\n",
        "{path}: holds a JSON array; baselines read JSON Lines, one object per line "
        "(for example: jq -c '.[]' FILE > FILE.jsonl)",
    ),
}


@pytest.mark.parametrize("name", BAD_JSON_FILES)
@pytest.mark.parametrize("runner", RUNNERS)
def test_every_runner_refuses_an_empty_or_array_json_file_in_the_same_line(
    tmp_path: Path,
    runner: str,
    name: str,
    runners: dict[str, list[str]],
    make_config: Callable[..., Config],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An empty JSON Lines file holds no rows and a file of one JSON array is refused with
    the way to convert it, on every runner (Spark and Dask said no column was there, and
    Spark built from the array's objects)."""
    make_config()
    data, said = BAD_JSON_FILES[name]
    path = tmp_path / name
    path.write_bytes(data)
    output = tmp_path / "out.dgb"
    arguments = ["baseline", "-c", str(tmp_path / "config.yaml"), "--data", str(path)]
    code = main([*arguments, "-o", str(output), *runners[runner]])
    ours = our_lines(capsys.readouterr().err)
    assert (code, ours) == (DataError.exit_code, ["driftgauge: " + said.format(path=path)])
    assert not output.exists()


@pytest.mark.parametrize("runner", RUNNERS)
def test_every_runner_refuses_a_parquet_file_without_a_field_after_others(
    tmp_path: Path,
    runner: str,
    runners: dict[str, list[str]],
    make_config: Callable[..., Config],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A Parquet file lacking a field's column, named after one that has it, is refused in
    the local build's line naming it, exit 4 (Spark built, the field missing in its rows;
    Dask ended with a traceback, KeyError: "['region'] not in index")."""
    import pyarrow.parquet as pq

    make_config()
    first, second = write_parts(tmp_path / "train", 2_000, parts=2)
    pq.write_table(pq.read_table(second).drop_columns(["region"]), second)
    output = tmp_path / "out.dgb"
    arguments = ["baseline", "-c", str(tmp_path / "config.yaml"), "--data", str(first), str(second)]
    code = main([*arguments, "-o", str(output), *runners[runner]])
    ours = our_lines(capsys.readouterr().err)
    said = f"driftgauge: {second}: no column named 'region' (the config's fields)"
    assert (code, ours) == (DataError.exit_code, [said])
    assert not output.exists()
