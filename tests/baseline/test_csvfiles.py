"""CSV training files the local build refuses are refused by every runner, in the same line;
the cells it reads are read by every runner as it reads them."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from driftgauge.baseline import load_baseline
from driftgauge.cli import main
from driftgauge.config import Config
from driftgauge.exceptions import DataError
from tests.baseline.cluster_support import RUNNERS, our_lines
from tests.baseline.test_local import counts

HEADER = b"alcohol,ash,region,class\n"
ROWS = b"".join(b"13.%d,2.%d,north,a\n" % (i % 10, i % 7) for i in range(300))
# A column the config does not read, so a cluster reading only the config's would not see
# a row without it.
NOTED_ROWS = ROWS.replace(b"\n", b",n\n")
NOTED = HEADER.replace(b"\n", b",note\n") + NOTED_ROWS
RAGGED = (
    "{path}: line 302 has %d cells, the header %d: a CSV file's rows must have the header's columns"
)
# Each bad file's bytes (None: nothing is written at its name) and the line every runner
# ends with ({path}: where it is); a byte's value is the local reader's alone to name.
BAD_FILES: dict[str, tuple[bytes | None, str]] = {
    "empty.csv": (b"", "{path}: the file is empty (no header row)"),
    "windows-1252.csv": (
        HEADER + ROWS + b"13.2,2.2,caf\xe9,b\n",
        "{path}: cannot read CSV data: not UTF-8 text: save the file as UTF-8",
    ),
    "header-only.csv": (HEADER, "{path}: holds no rows (no baseline written)"),
    "blank-first-line.csv": (
        b"\n" + HEADER + ROWS,
        "{path}: line 1 is blank: a CSV file's first line is its header",
    ),
    "semicolons.csv": (
        HEADER.replace(b",", b";") + ROWS.replace(b",", b";"),
        "{path}: the header is one column, 'alcohol;ash;region;class', with ';' between "
        "names: driftgauge reads ',' (.csv) or tabs (.tsv) between columns; save the file "
        "with ',' (and '.' as the decimal point) or as Parquet",
    ),
    "no-class.csv": (
        b"alcohol,ash,region\n13.1,2.1,north\n",
        "{path}: no column named 'class' (the config's fields)",
    ),
    "short-row.csv": (NOTED + b"13.1,2.1,north,a\n" + NOTED_ROWS, RAGGED % (4, 5)),
    "long-row.csv": (HEADER + ROWS + b"13.1,2.1,north,a,x\n" + ROWS, RAGGED % (5, 4)),
    "missing.csv": (None, "{path}: no such data file"),
    "none-*.csv": (None, "{path}: no file matches"),
}


@pytest.mark.parametrize("name", BAD_FILES)
@pytest.mark.parametrize("runner", RUNNERS)
def test_every_runner_refuses_a_bad_csv_file_in_the_same_line(
    tmp_path: Path,
    runner: str,
    name: str,
    runners: dict[str, list[str]],
    make_config: Callable[..., Config],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An empty file, one not UTF-8 (Spark read its bytes as U+FFFD and built), one of its
    header alone, one whose first line is blank (Spark and Dask took the next as the header
    and built), one of ';', one without a field's column, one with a row of fewer or more
    cells than its header (Spark built from both, Dask from the first; the local build and
    Dask named the row's text or its line in a block, not its line in the file), a missing
    file and a glob matching nothing: exit 4 and the same line on the local, Spark and
    Dask builds."""
    make_config()
    data, said = BAD_FILES[name]
    path = tmp_path / name
    if data is not None:
        path.write_bytes(data)
    output = tmp_path / "out.dgb"
    arguments = ["baseline", "-c", str(tmp_path / "config.yaml"), "--data", str(path)]
    code = main([*arguments, "-o", str(output), *runners[runner]])
    error = capsys.readouterr().err  # the in-process cluster's log lines besides
    ours = [re.sub(r" \(byte 0x..\)", "", line) for line in our_lines(error)]
    # An exception main() lets through fails the test itself; stderr may hold the in-process
    # scheduler's logging errors about a stream an earlier test captured.
    assert (code, ours) == (DataError.exit_code, ["driftgauge: " + said.format(path=path)])
    assert not output.exists()


@pytest.mark.parametrize("runner", RUNNERS)
def test_every_runner_refuses_a_glob_matching_nothing_beside_files(
    tmp_path: Path,
    runner: str,
    runners: dict[str, list[str]],
    make_config: Callable[..., Config],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A glob matching nothing given with a file that exists is refused by name, as alone
    (Dask read the file and built; Spark said PATH_NOT_FOUND in a traceback)."""
    make_config()
    data = tmp_path / "train.csv"
    data.write_bytes(HEADER + ROWS)
    glob = tmp_path / "more-*.csv"
    output = tmp_path / "out.dgb"
    arguments = ["baseline", "-c", str(tmp_path / "config.yaml"), "--data", str(data), str(glob)]
    code = main([*arguments, "-o", str(output), *runners[runner]])
    error = capsys.readouterr().err
    ours = our_lines(error)
    assert (code, ours) == (DataError.exit_code, [f"driftgauge: {glob}: no file matches"])
    assert not output.exists()


# pandas' default na_values (its CSV reader's missing spellings) and others a CSV may hold:
# in a categorical column every one but an empty cell is a category.
NA_SPELLINGS = [
    *("", '""', "NA", '"NA"', "N/A", "n/a", "NULL", "null", "NaN", "nan", "-NaN", "-nan"),
    *("None", "<NA>", "#N/A", "#N/A N/A", "#NA", "1.#IND", "-1.#IND", "1.#QNAN", "-1.#QNAN"),
    *("True", "true", "TRUE", "1.0", " north", "north ", '" north "', "north"),
]
# In a numeric column: empty and the null spellings missing, NaN spellings NaN, numbers with
# spaces around them numbers.
NUMERIC_CELLS = ["", '""', "NA", "null", "N/A", "#N/A", "NaN", "nan", "-NaN", " 2.5", "3.5 ", "inf"]


def cells_csv(path: Path, rows: int, line_end: str = "\n", bom: bool = False) -> Path:
    """A CSV file whose ``region`` holds each of NA_SPELLINGS and ``alcohol`` each of
    NUMERIC_CELLS, each a different number of times (a count read as another's differs)."""
    lines = ["alcohol,ash,region,class"]
    for i in range(rows):
        region = NA_SPELLINGS[i % len(NA_SPELLINGS)] if i % 3 else "south"
        alcohol = NUMERIC_CELLS[i % len(NUMERIC_CELLS)] if i % 5 == 0 else f"{12 + i % 7 / 3:.4f}"
        lines.append(f"{alcohol},{1 + i % 11 / 5:.3f},{region},{'ab'[i % 2]}")
    text = line_end.join(lines) + line_end
    path.write_bytes(b"\xef\xbb\xbf" * bom + text.encode())
    return path


@pytest.mark.parametrize("runner", ["spark", "dask"])
def test_every_runner_reads_missing_and_nan_spellings_as_the_local_build(
    tmp_path: Path,
    runner: str,
    runners: dict[str, list[str]],
    make_config: Callable[..., Config],
) -> None:
    """In a categorical column pandas' missing spellings (NA, null, N/A, None, <NA>, #N/A,
    NaN...) quoted or not, values with spaces around them and True/true are categories and an
    empty cell is missing; in a numeric column NA, null... are missing and NaN is NaN (Dask
    read all of them as missing); the same baseline as the local build's, to the counts,
    also from a file with a byte order mark and CRLF line ends."""
    make_config()
    data = [
        cells_csv(tmp_path / "lf.csv", 2_000),
        cells_csv(tmp_path / "crlf.csv", 500, "\r\n", True),
    ]
    arguments = ["baseline", "-c", str(tmp_path / "config.yaml"), "--data", *map(str, data)]
    assert main([*arguments, "-o", str(tmp_path / "local.dgb"), *RUNNERS["local"]]) == 0
    assert main([*arguments, "-o", str(tmp_path / "out.dgb"), *runners[runner]]) == 0
    local = counts(load_baseline(tmp_path / "local.dgb"))
    assert local["alcohol invalid"][:2] == (99 + 24, 33 + 8)  # NaN, inf
    assert "NA" in local["region"][2] and "None" in local["region"][2]
    assert counts(load_baseline(tmp_path / "out.dgb")) == local
