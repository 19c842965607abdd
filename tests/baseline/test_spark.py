"""SparkRunner on a real local[2] session: partition states merged equal a local read."""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from driftgauge.baseline import build_baseline, load_baseline
from driftgauge.baseline.spark import SparkRunner, is_spark_dataframe, require_reachable
from driftgauge.cli import main
from driftgauge.config import Config, FieldSpec
from driftgauge.exceptions import DataError
from tests.baseline.cluster_support import (
    FIELDS,
    TallyState,
    assert_float64_fields,
    assert_same_baseline,
    assert_same_tally,
    float64_parts,
    local_tally,
    our_lines,
    write_parts,
    write_training_csv,
)


def test_partition_states_merge_to_the_local_tally_run_after_run(
    tmp_path: Path, spark: Any
) -> None:
    """Four Parquet files as Spark partitions: exact tallies and the merged KLL match a local read, twice."""
    paths = write_parts(tmp_path / "train", 6_000, parts=4)
    frame = spark.read.parquet(*map(str, paths))
    assert is_spark_dataframe(frame)
    reports: list[tuple[str, int, int]] = []
    runner = SparkRunner(frame, progress=lambda *report: reports.append(report))
    local = local_tally(paths)
    assert local.kll.is_estimation_mode()  # the merged sketch is a real merge, not a copy
    for _ in range(2):
        state = runner.run(TallyState(), "pass 1/2: tally")
        assert runner.parts > 1
        assert_same_tally(state, local)
        # Arrow batches of up to 65,536 rows (not Spark's 10,000) while the job runs:
        # one chunk per partition here; the session's own setting is restored after.
        assert state.chunks == runner.parts
        assert spark.conf.get("spark.sql.execution.arrow.maxRecordsPerBatch") == "10000"
    assert reports == [("pass 1/2: tally", 0, 1), ("pass 1/2: tally", 1, 1)] * 2


def test_columns_by_exact_name_decimals_as_numbers_and_a_rows_only_pass(spark: Any) -> None:
    """A dotted name is one column, a decimal numeric column counts as numbers, no fields still counts rows."""
    from pyspark.sql.types import DecimalType, StringType, StructField, StructType

    schema = StructType(
        [
            StructField("price.eur", DecimalType(10, 2)),
            StructField("kind", StringType()),
            StructField("price", StringType()),  # a decoy for a wrong reading of "price.eur"
        ]
    )
    rows = [(Decimal("1.25"), "a", "x"), (None, "b", "x"), (Decimal("3.50"), None, "x")] * 50
    frame = spark.createDataFrame(rows, schema).repartition(3)
    fields = (FieldSpec("price.eur", "numeric", "input"), FieldSpec("kind", "categorical", "input"))
    state = SparkRunner(frame).run(TallyState(fields), "tally")
    assert state.rows == 150
    assert state.values["price.eur"] == {1.25: 50, 3.5: 50}
    assert state.missing == {"price.eur": 50, "kind": 50}
    assert state.values["kind"] == {"a": 50, "b": 50}
    counted = SparkRunner(frame).run(TallyState(()), "rows")
    assert counted.rows == 150


def test_a_missing_field_is_a_data_error_naming_it(spark: Any) -> None:
    """A config field the DataFrame lacks: one DataError naming it, before any job runs."""
    frame = spark.createDataFrame([(1.0,)], ["alcohol"])
    with pytest.raises(
        DataError, match=r"Spark DataFrame: no column named 'ash', 'region', 'class'"
    ):
        SparkRunner(frame).run(TallyState(FIELDS), "tally")


def test_a_csv_of_another_separator_is_refused_as_locally(spark: Any, tmp_path: Path) -> None:
    """A ';' export read by Spark was one column named 'alcohol;ash;region;class', so the
    config's fields were missing; it is refused with the local build's line."""
    from driftgauge.baseline.spark import read_data

    path = tmp_path / "eu.csv"
    path.write_text("alcohol;ash;region;class\n13,2;2,1;north;a\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"eu\.csv: the header is one column, .* ';' between"):
        read_data(spark, [str(path)], FIELDS)


def test_build_baseline_on_spark_equals_the_local_build_twice(
    tmp_path: Path, spark: Any, make_config: Callable[..., Config]
) -> None:
    """build_baseline(config, spark_df): the local build's edges, counts and segments, run after run."""
    config = make_config(
        segments={"features": ["region"]}, multivariate={"features": ["alcohol", "ash"]}
    )
    paths = write_parts(tmp_path / "train", 20_000, parts=4)
    local = build_baseline(config, paths, workers=1)
    frame = spark.read.parquet(*map(str, paths))
    for _ in range(2):
        assert_same_baseline(build_baseline(config, frame), local)


def test_cli_spark_writes_the_local_build_from_csv(
    tmp_path: Path, spark: Any, make_config: Callable[..., Config]
) -> None:
    """`driftgauge baseline --spark local[2]` on CSV files writes the edges and counts a local build writes."""
    make_config(segments={"features": ["region"]})
    data = [write_training_csv(tmp_path / f"train-{i}.csv", 4_000, seed=i) for i in range(2)]
    arguments = ["baseline", "-c", str(tmp_path / "config.yaml"), "--data", *map(str, data)]
    assert main([*arguments, "-o", str(tmp_path / "local.dgb"), "--workers", "1"]) == 0
    assert main([*arguments, "-o", str(tmp_path / "spark.dgb"), "--spark", "local[2]"]) == 0
    assert_same_baseline(
        load_baseline(tmp_path / "spark.dgb"), load_baseline(tmp_path / "local.dgb")
    )
    assert not spark.sparkContext._jsc.sc().isStopped()  # the running session was left running


@pytest.mark.parametrize("legacy", ["false", "true"])
def test_utf8_text_reads_as_locally_and_other_bytes_are_refused(
    tmp_path: Path,
    spark: Any,
    make_config: Callable[..., Config],
    capsys: pytest.CaptureFixture[str],
    legacy: str,
) -> None:
    """A UTF-8 CSV with a byte order mark and names and values past ASCII builds what a local
    build writes; the same file with a Windows-1252 value is refused in one line (Spark read
    it as U+FFFD and built), whether Spark's decode fails on it or, as Spark 3.5 and
    spark.sql.legacy.codingErrorAction do, decodes it as U+FFFD."""
    make_config(
        features=[
            {"name": "alcohol", "type": "numeric"},
            {"name": "région", "type": "categorical"},
        ],
        predictions=[{"name": "class", "type": "categorical"}],
    )
    rows = "".join(
        f"{13 + i % 9 / 10},{['nörd', 'süd', 'east'][i % 3]},{'ab'[i % 2]}\n" for i in range(900)
    )
    text = tmp_path / "train.csv"
    text.write_bytes(("alcohol,région,class\n" + rows).encode("utf-8-sig"))
    latin = tmp_path / "latin.csv"
    latin.write_bytes(text.read_bytes() + "13.1,café,a\n".encode("cp1252"))
    config = str(tmp_path / "config.yaml")
    spark.conf.set("spark.sql.legacy.codingErrorAction", legacy)
    try:
        assert main(["baseline", "-c", config, "--data", str(text), "-o",
                     str(tmp_path / "local.dgb"), "--workers", "1"]) == 0  # fmt: skip
        assert main(["baseline", "-c", config, "--data", str(text), "-o",
                     str(tmp_path / "spark.dgb"), "--spark", "local[2]"]) == 0  # fmt: skip
        code = main(["baseline", "-c", config, "--data", str(latin), "-o",
                     str(tmp_path / "latin.dgb"), "--spark", "local[2]"])  # fmt: skip
    finally:
        spark.conf.unset("spark.sql.legacy.codingErrorAction")
    assert_same_baseline(
        load_baseline(tmp_path / "spark.dgb"), load_baseline(tmp_path / "local.dgb")
    )
    error = capsys.readouterr().err
    assert code == DataError.exit_code and not (tmp_path / "latin.dgb").exists()
    assert error.endswith(
        f"driftgauge: {latin}: cannot read CSV data: not UTF-8 text: save the file as UTF-8\n"
    ), error
    assert "Traceback" not in error


@pytest.mark.parametrize(
    "line",
    [b'{"alcohol": 13.2, "ash": 2.2, "region": "caf\xe9", "class": "b"}', b"{not json"],
    ids=["windows-1252", "not-json"],
)
def test_a_json_lines_file_with_a_bad_line_is_refused_in_one_line(
    tmp_path: Path,
    spark: Any,
    make_config: Callable[..., Config],
    capsys: pytest.CaptureFixture[str],
    line: bytes,
) -> None:
    """A JSON Lines file with a line that is not UTF-8 or not JSON, which a local build
    refuses: Spark read that line's fields up to the fault (ash 2.2, region missing) when it
    read every column but not when a later pass read a few, and the build died in an
    IndexError traceback (class_edges: the counts of pass 2 missed a value of pass 1), or
    built with a row of nothing but missing values; now one line, exit 4."""
    make_config()
    rows = [json.dumps({"alcohol": 13 + i % 5 / 10, "ash": 2.1, "region": "north", "class": "a"})
            for i in range(200)]  # fmt: skip
    data = tmp_path / "train.jsonl"
    data.write_bytes("".join(row + "\n" for row in rows).encode() + line + b"\n")
    output = tmp_path / "out.dgb"
    code = main(["baseline", "-c", str(tmp_path / "config.yaml"), "--data", str(data), "-o",
                 str(output), "--spark", "local[2]"])  # fmt: skip
    error = capsys.readouterr().err
    assert code == DataError.exit_code and not output.exists(), error
    assert error.startswith(f"driftgauge: {data}: cannot read JSONL data: "), error
    assert len(error.splitlines()) == 1 and "Traceback" not in error


def test_a_line_break_within_quotes_is_refused_naming_its_line_where_a_local_build_reads_it(
    tmp_path: Path,
    spark: Any,
    make_config: Callable[..., Config],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Spark's CSV reader, line by line, took a quoted value holding a line break for two
    rows and built from 301 rows of 300, the halves' cells missing: the build is now refused
    in one line naming the row's line (Spark reads CSV FAILFAST), where a local build reads
    the value."""
    make_config()
    rows = [b"13.%d,2.1,north,a\n" % (i % 10) for i in range(300)]
    rows[150] = b'13.1,2.1,"no\nrth",a\n'
    data = tmp_path / "train.csv"
    data.write_bytes(b"alcohol,ash,region,class\n" + b"".join(rows))
    arguments = ["baseline", "-c", str(tmp_path / "config.yaml"), "--data", str(data), "-o"]
    assert main([*arguments, str(tmp_path / "local.dgb"), "--workers", "1"]) == 0
    assert load_baseline(tmp_path / "local.dgb").rows == 300
    capsys.readouterr()
    output = tmp_path / "spark.dgb"
    code = main([*arguments, str(output), "--spark", "local[2]"])
    ours = our_lines(capsys.readouterr().err)
    assert (code, ours) == (
        DataError.exit_code,
        [
            f"driftgauge: {data}: line 152 holds a line break within quotes, which Spark's CSV "
            "reader takes for the end of a row: build from it locally or with --dask, or save "
            "it as Parquet"
        ],
    )
    assert not output.exists()


def test_cli_without_pyspark_says_what_to_install(
    tmp_path: Path,
    make_config: Callable[..., Config],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--spark without pyspark installed: one line naming the extra, the data errors' exit code."""
    make_config()
    data = write_training_csv(tmp_path / "train.csv", 10)
    monkeypatch.setitem(sys.modules, "pyspark.sql", None)
    code = main(
        ["baseline", "-c", str(tmp_path / "config.yaml"), "--data", str(data), "-o",
         str(tmp_path / "out.dgb"), "--spark", "local[2]"]
    )  # fmt: skip
    assert code == DataError.exit_code
    assert capsys.readouterr().err == (
        "driftgauge: --spark needs pyspark: pip install 'driftgauge[spark]'\n"
    )


def test_an_unreachable_standalone_master_is_one_line_at_once(
    tmp_path: Path,
    make_config: Callable[..., Config],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--spark spark://host:port with nothing listening there: the data errors' exit code and a
    line naming the address, before any session is built (Spark itself retries for a minute)."""
    from pyspark.sql import SparkSession

    make_config()
    data = write_training_csv(tmp_path / "train.csv", 10)
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    master = f"spark://127.0.0.1:{port}"
    monkeypatch.setattr(SparkSession, "getActiveSession", staticmethod(lambda: None))
    monkeypatch.setattr(SparkSession, "builder", None)  # building a session would fail the test
    code = main(
        ["baseline", "-c", str(tmp_path / "config.yaml"), "--data", str(data), "-o",
         str(tmp_path / "out.dgb"), "--spark", master]
    )  # fmt: skip
    assert code == DataError.exit_code
    assert capsys.readouterr().err == (
        f"driftgauge: --spark {master}: no master answers (127.0.0.1:{port}: Connection refused)\n"
    )
    assert not (tmp_path / "out.dgb").exists()


def test_a_listening_master_or_another_kind_of_master_passes_the_check() -> None:
    """One listening address of several passes; 'local[2]', 'yarn' and 'k8s://' are not checked;
    an address that is not host:port is named."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        require_reachable(f"spark://127.0.0.1:1,127.0.0.1:{port}")
    for master in ("local[2]", "yarn", "k8s://https://127.0.0.1:1"):
        require_reachable(master)
    with pytest.raises(DataError, match=r"nonsense: not host:port"):
        require_reachable("spark://nonsense")


def test_fields_float32_merges_build_as_locally(tmp_path: Path, spark: Any) -> None:
    """Fields whose values float32 merges get the local build's float64 edges and counts
    (pass 1c and pass 2 read their values, not pass 1's float32 keys)."""
    config, paths = float64_parts(tmp_path / "train", 20_000, parts=4)
    local = build_baseline(config, paths, workers=1)
    assert_float64_fields(local)
    built = build_baseline(config, spark.read.parquet(*map(str, paths)))
    assert_float64_fields(built)
    assert_same_baseline(built, local)


def test_a_parquet_column_of_another_type_in_another_file_is_one_line(
    tmp_path: Path,
    spark: Any,
    make_config: Callable[..., Config],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A numeric column written as integers in one Parquet file and floats in another (pandas
    writes int64 for a column without gaps), which the local build reads, ended the command
    with Spark's traceback (FAILED_READ_FILE.PARQUET_COLUMN_DATA_TYPE_MISMATCH: Spark reads a
    column as one type); it is one line naming the file and the column, exit 4."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    make_config()
    columns: dict[str, Any] = {"ash": [2.0] * 60, "region": ["north"] * 60, "class": ["a"] * 60}
    pq.write_table(pa.table({"alcohol": list(range(60)), **columns}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"alcohol": [13.5] * 60, **columns}), tmp_path / "b.parquet")
    data = [str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")]
    arguments = ["baseline", "-c", str(tmp_path / "config.yaml"), "--data", *data]
    assert main([*arguments, "-o", str(tmp_path / "local.dgb"), "--workers", "1"]) == 0
    capsys.readouterr()
    code = main([*arguments, "-o", str(tmp_path / "spark.dgb"), "--spark", "local[2]"])
    ours = our_lines(capsys.readouterr().err)
    assert code == DataError.exit_code and len(ours) == 1, ours
    assert ours[0].startswith("driftgauge: ") and "b.parquet: column 'alcohol'" in ours[0]
    assert not (tmp_path / "spark.dgb").exists()
