"""DaskRunner on a real LocalCluster of worker processes: partition states merged equal a local read."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from driftgauge.baseline import build_baseline, load_baseline
from driftgauge.baseline.dask import DaskRunner, is_dask_dataframe, read_data
from driftgauge.cli import main
from driftgauge.config import Config
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
from tests.baseline.test_local import counts
from tests.helpers import training_rows, write_csv


def test_partition_states_merge_to_the_local_tally_run_after_run(
    tmp_path: Path, dask_client: Any
) -> None:
    """Four Parquet files on two worker processes: the tallies match a local read, twice, with progress per partition."""
    import dask.dataframe as dd

    paths = write_parts(tmp_path / "train", 6_000, parts=4)
    frame = dd.read_parquet([str(p) for p in paths])
    assert is_dask_dataframe(frame)
    reports: list[tuple[str, int, int]] = []
    runner = DaskRunner(frame, dask_client, progress=lambda *report: reports.append(report))
    local = local_tally(paths)
    assert local.kll.is_estimation_mode()
    for _ in range(2):
        state = runner.run(TallyState(), "pass 1/2: tally")
        assert runner.parts == 4
        assert_same_tally(state, local)
    assert reports == [("pass 1/2: tally", done, 4) for done in range(5)] * 2
    workers = dask_client.run(lambda: __import__("os").getpid())
    assert len(set(workers.values())) == 2  # two processes did the work


def test_csv_partitions_on_the_default_client(tmp_path: Path, dask_client: Any) -> None:
    """Without a client argument the runner uses the current one; CSV blocks are partitions."""
    import dask.dataframe as dd

    path = write_training_csv(tmp_path / "train.csv", 5_000)
    types = {f.name: "float64" if f.type == "numeric" else "string" for f in FIELDS}
    frame = dd.read_csv(str(path), blocksize=40_000, dtype=types)
    runner = DaskRunner(frame)
    state = runner.run(TallyState(), "tally")
    assert runner.parts > 1
    assert_same_tally(state, local_tally([path]))
    assert dask_client.get_task_stream is not None  # the client fixture was the default one


# dask 2026.8's Parquet reader calls reset_index(inplace=True), which pandas 3.1 deprecates;
# in this process (no workers) the warning would fail the test.
@pytest.mark.filterwarnings("ignore:The inplace keyword in DataFrame.reset_index")
def test_without_a_distributed_client_the_local_scheduler_runs_it(tmp_path: Path) -> None:
    """No client at all: Dask's own scheduler fills the same states."""
    import dask.dataframe as dd

    paths = write_parts(tmp_path / "train", 3_000, parts=3)
    state = DaskRunner(dd.read_parquet([str(p) for p in paths])).run(TallyState(), "tally")
    assert_same_tally(state, local_tally(paths))


def test_a_missing_field_is_a_data_error_naming_it(tmp_path: Path) -> None:
    """A config field the DataFrame lacks: one DataError naming it, before any task runs."""
    import dask.dataframe as dd
    import pandas as pd

    frame = dd.from_pandas(pd.DataFrame({"alcohol": [1.0], "ash": [2.0]}), npartitions=1)
    with pytest.raises(DataError, match=r"Dask DataFrame: no column named 'region', 'class'"):
        DaskRunner(frame).run(TallyState(FIELDS), "tally")


def test_a_csv_of_another_separator_is_refused_as_locally(tmp_path: Path) -> None:
    """A ';' export read by Dask was one column named 'alcohol;ash;region;class', so the
    config's fields were missing; it is refused with the local build's line."""
    from driftgauge.baseline.dask import read_data

    path = tmp_path / "eu.csv"
    path.write_text("alcohol;ash;region;class\n13,2;2,1;north;a\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"eu\.csv: the header is one column, .* ';' between"):
        read_data([str(path)], FIELDS)


def test_build_baseline_on_dask_equals_the_local_build_twice(
    tmp_path: Path, dask_client: Any, make_config: Callable[..., Config]
) -> None:
    """build_baseline(config, dask_df) on two worker processes: the local build's edges and counts, twice."""
    import dask.dataframe as dd

    config = make_config(
        segments={"features": ["region"]}, multivariate={"features": ["alcohol", "ash"]}
    )
    paths = write_parts(tmp_path / "train", 20_000, parts=4)
    local = build_baseline(config, paths, workers=1)
    frame = dd.read_parquet([str(p) for p in paths])
    for _ in range(2):
        assert_same_baseline(build_baseline(config, frame), local)


def test_pass_2_counts_from_pass_1s_keys_on_the_workers_and_releases_them(
    tmp_path: Path,
    dask_client: Any,
    make_config: Callable[..., Config],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without multivariate features, pass 2 and the passes 2b it leads to count their buckets
    from pass 1's sorted class keys, kept on the workers, instead of reading the partitions
    again: the local build's edges and counts, and the workers hold nothing after the build."""
    import dask.dataframe as dd
    from distributed import get_task_stream

    from driftgauge.baseline import build

    config = make_config(segments={"features": ["region"]})
    paths = write_parts(tmp_path / "train", 20_000, parts=4)
    local = build_baseline(config, paths, workers=1)
    frame = dd.read_parquet([str(p) for p in paths])
    # No first guess of the buckets: the rule's buckets are counted in passes 2b, from keys too.
    monkeypatch.setattr(build, "_guess_buckets", lambda *_: np.empty(0, dtype=np.int64))
    with get_task_stream(dask_client) as tasks:
        assert_same_baseline(build_baseline(config, frame), local)
    from_keys = [t for t in tasks.data if str(t["key"]).startswith("fill_from_keys")]
    assert len(from_keys) >= 2 * frame.npartitions
    for _ in range(50):  # releases reach the scheduler asynchronously
        held = dask_client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))
        if not held:
            break
        time.sleep(0.1)
    assert held == 0


def test_cli_dask_writes_the_local_build(
    tmp_path: Path, dask_cluster: Any, make_config: Callable[..., Config]
) -> None:
    """`driftgauge baseline --dask tcp://127.0.0.1:PORT` on Parquet and CSV writes what a local build writes."""
    make_config(segments={"features": ["region"]})
    data = [
        *write_parts(tmp_path / "train", 6_000, parts=2),
        write_training_csv(tmp_path / "more.csv", 3_000, seed=1),
    ]
    arguments = ["baseline", "-c", str(tmp_path / "config.yaml"), "--data", *map(str, data)]
    assert main([*arguments, "-o", str(tmp_path / "local.dgb"), "--workers", "1"]) == 0
    address = dask_cluster.scheduler_address
    assert address.startswith("tcp://127.0.0.1:")
    assert main([*arguments, "-o", str(tmp_path / "dask.dgb"), "--dask", address]) == 0
    assert_same_baseline(
        load_baseline(tmp_path / "dask.dgb"), load_baseline(tmp_path / "local.dgb")
    )


def test_files_dask_cannot_read_and_an_address_without_a_port_are_one_line(
    tmp_path: Path,
    dask_cluster: Any,
    make_config: Callable[..., Config],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An empty CSV file, a Windows-1252 one (its bad byte past the rows Dask reads ahead,
    so read on a worker) and a scheduler address without a port ended the command with
    tracebacks (pandas' EmptyDataError, UnicodeDecodeError, distributed's 'missing port
    number'); each is now one line naming it, exit 4."""
    make_config()
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    latin = tmp_path / "latin.csv"
    rows = b"13.1,2.1,north,a\n" * 100_000
    latin.write_bytes(b"alcohol,ash,region,class\n" + rows + b"13.2,2.2,caf\xe9,b\n")
    address = dask_cluster.scheduler_address
    for data, where, said in [
        (empty, address, f"{empty}: the file is empty (no header row)"),
        (latin, address, f"{latin}: cannot read CSV data: not UTF-8 text: save the file as UTF-8"),
        (latin, "local", "--dask local: cannot reach the scheduler: missing port number"),
    ]:
        arguments = ["baseline", "-c", str(tmp_path / "config.yaml"), "--data", str(data)]
        code = main([*arguments, "-o", str(tmp_path / "out.dgb"), "--dask", where])
        error = capsys.readouterr().err  # the in-process cluster's log lines besides
        ours = our_lines(error)
        assert code == 4 and len(ours) == 1 and ours[0].startswith(f"driftgauge: {said}"), error
        assert "Traceback" not in error
    assert not (tmp_path / "out.dgb").exists()


def test_cli_without_dask_or_with_two_places_says_so_in_one_line(
    tmp_path: Path,
    make_config: Callable[..., Config],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--dask without dask installed, or a directory as --data: one line, exit 4; with --spark: a usage error."""
    make_config()
    data = write_training_csv(tmp_path / "train.csv", 10)
    arguments = ["baseline", "-c", str(tmp_path / "config.yaml"), "--data", str(data)]
    arguments += ["-o", str(tmp_path / "out.dgb")]
    monkeypatch.setitem(sys.modules, "distributed", None)
    assert main([*arguments, "--dask", "tcp://127.0.0.1:1"]) == DataError.exit_code
    assert capsys.readouterr().err == (
        "driftgauge: --dask needs dask and distributed: pip install 'driftgauge[dask]'\n"
    )
    monkeypatch.delitem(sys.modules, "distributed")
    assert main([*arguments[:4], str(tmp_path), *arguments[5:], "--dask", "tcp://127.0.0.1:1"]) == 4
    assert capsys.readouterr().err == (
        f"driftgauge: {tmp_path}: Dask reads --data by its extension: name the files "
        f"(such as {tmp_path}/*.parquet)\n"
    )
    with pytest.raises(SystemExit) as stopped:
        main([*arguments, "--dask", "tcp://127.0.0.1:1", "--spark", "local[2]"])
    assert stopped.value.code == 2
    assert "argument --spark: not allowed with argument --dask" in capsys.readouterr().err
    assert not (tmp_path / "out.dgb").exists()


def test_fields_float32_merges_build_as_locally(tmp_path: Path, dask_client: Any) -> None:
    """Fields whose values float32 merges get the local build's float64 edges and counts
    (pass 1c and pass 2 read their values, not pass 1's float32 keys)."""
    import dask.dataframe as dd

    config, paths = float64_parts(tmp_path / "train", 20_000, parts=4)
    local = build_baseline(config, paths, workers=1)
    assert_float64_fields(local)
    built = build_baseline(config, dd.read_parquet([str(p) for p in paths]))
    assert_float64_fields(built)
    assert_same_baseline(built, local)


def test_csv_cells_that_are_not_numbers_count_as_locally(
    tmp_path: Path, dask_client: Any, make_config: Callable[..., Config]
) -> None:
    """A numeric CSV column holding "abc" stopped the build ('could not convert string to
    float'), and "None", "<NA>", "1.#IND" were missing; they are not numbers, "-NaN" is NaN,
    as in the local build, in one partition and not in the others."""
    config = make_config()
    columns = training_rows(3_000)
    cells = ["None", "<NA>", "1.#IND", "abc", "-NaN"]
    for i, index in enumerate(range(2_500, 3_000, 7)):
        columns["alcohol"][index] = cells[i % len(cells)]
    path = write_csv(tmp_path / "train.csv", columns)
    local = counts(build_baseline(config, [path], workers=1))
    assert local["alcohol invalid"] == (14, 0, 58)
    frame = read_data([str(path)], config.columns)
    assert counts(build_baseline(config, frame.repartition(npartitions=3))) == local


def test_parquet_nulls_are_missing_and_nans_are_nan_as_locally(
    tmp_path: Path, dask_client: Any, make_config: Callable[..., Config]
) -> None:
    """A Parquet file's null and NaN numbers were both missing on Dask (pandas held them as
    NaN); read with Arrow types, they count as the local build counts them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    config = make_config()
    columns: dict[str, list[Any]] = training_rows(2_000)
    for index in range(0, 2_000, 9):
        columns["alcohol"][index] = None if index % 2 else float("nan")
        columns["region"][index] = None
    path = tmp_path / "train.parquet"
    pq.write_table(pa.table(columns), path)
    local = counts(build_baseline(config, [path], workers=1))
    assert local["alcohol invalid"][0] == 112 and local["alcohol"][4] == 111
    assert counts(build_baseline(config, read_data([str(path)], config.columns))) == local


def test_json_lines_numbers_beside_text_count_as_locally(
    tmp_path: Path, dask_client: Any, make_config: Callable[..., Config]
) -> None:
    """A JSON Lines numeric field holding a few strings ("abc", "2.5") or booleans was read
    as text, so every number of the partition counted as not a number; the numbers count,
    the strings and booleans are not numbers and a line without the field is missing, as
    in the local build."""
    import json

    config = make_config()
    columns: dict[str, list[Any]] = training_rows(2_000)
    odd: list[Any] = ["abc", "2.5", True, None]
    rows = [
        dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)
    ]
    for i, index in enumerate(range(1_500, 2_000, 11)):
        rows[index]["alcohol"] = odd[i % len(odd)]
    for index in range(1_000, 2_000, 13):
        del rows[index]["alcohol"]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    local = counts(build_baseline(config, [path], workers=1))
    assert local["alcohol invalid"] == (0, 0, 32) and local["alcohol"][4] == 87
    assert counts(build_baseline(config, read_data([str(path)], config.columns))) == local


def test_a_csv_column_the_config_does_not_read_may_change_type(
    tmp_path: Path,
    dask_client: Any,
    make_config: Callable[..., Config],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A column no field reads, of integers in the first partition and text in a later one,
    stopped the build ('Mismatched dtypes found in pd.read_csv'): pandas guessed its type
    from the first rows; every column is read as text, as the local build reads it."""
    from driftgauge.baseline import dask

    config = make_config()
    columns: dict[str, list[Any]] = training_rows(20_000)
    columns["note"] = [i if i < 10_000 else "n/a" for i in range(20_000)]
    path = write_csv(tmp_path / "train.csv", columns)
    monkeypatch.setattr(dask, "PARTITION_BYTES", 100_000)
    frame = read_data([str(path)], config.columns)
    assert frame.npartitions > 2
    local = counts(build_baseline(config, [path], workers=1))
    assert counts(build_baseline(config, frame)) == local


def test_json_lines_blocks_of_other_fields_or_types_read_as_locally(
    tmp_path: Path,
    dask_client: Any,
    make_config: Callable[..., Config],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A JSON Lines file read in blocks whose columns' types differ (a numeric field's first
    string in a later block, a column no field reads of integers then text) or one of whose
    blocks lacks a field stopped the build ('Metadata mismatch found in from_delayed'), and
    a file without a field was refused; each block is read as the config's columns, of
    the same types, as the local build reads them (a field never given: missing)."""
    import json

    from driftgauge.baseline import dask

    config = make_config()
    columns: dict[str, list[Any]] = training_rows(20_000)
    rows = [
        dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)
    ]
    for index, row in enumerate(rows):
        row["note"] = index if index < 10_000 else "n/a"
        if 12_000 <= index < 16_000:
            del row["region"]
    rows[19_000]["alcohol"] = "abc"
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    lacking = tmp_path / "no-region.jsonl"
    lacking.write_text("".join(json.dumps(row) + "\n" for row in rows[12_000:16_000]))
    monkeypatch.setattr(dask, "JSONL_BLOCK_BYTES", 100_000)
    for data in (path, lacking):
        frame = read_data([str(data)], config.columns)
        assert frame.npartitions > 1
        local = counts(build_baseline(config, [data], workers=1))
        assert counts(build_baseline(config, frame)) == local


def test_an_empty_json_lines_file_before_others_holds_no_rows_and_hides_none(
    tmp_path: Path, dask_client: Any, make_config: Callable[..., Config]
) -> None:
    """An empty JSON Lines file named first made Dask read every file as none (its sample
    of the first file had no columns), so the others' rows were left out; they are read
    as locally, and files all empty still hold no rows."""
    config = make_config()
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    path = tmp_path / "train.jsonl"
    path.write_text(
        "".join(
            f'{{"alcohol": {12 + i % 9 / 4}, "ash": 2.1, "region": "north", "class": "a"}}\n'
            for i in range(500)
        ),
        encoding="utf-8",
    )
    local = counts(build_baseline(config, [empty, path], workers=1))
    assert local["rows"] == 500
    assert (
        counts(build_baseline(config, read_data([str(empty), str(path)], config.columns))) == local
    )
    assert not len(read_data([str(empty), str(empty)], config.columns).compute())


def test_json_lines_nan_and_big_integers_read_as_locally(
    tmp_path: Path, dask_client: Any, make_config: Callable[..., Config]
) -> None:
    """Python's json writes a float NaN as NaN: it is NaN in the local build, where Dask
    counted it missing (pandas holds a gap as NaN); an integer beyond int64 stopped the Dask
    build ('Value is too big!'); both read as locally, JSON's own reader's values."""
    import json

    config = make_config()
    columns: dict[str, list[Any]] = training_rows(1_000)
    for index in range(0, 1_000, 10):
        columns["alcohol"][index] = float("nan") if index % 20 else None
    columns["ash"][7] = 10**30
    rows = [
        dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)
    ]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    local = counts(build_baseline(config, [path], workers=1))
    assert local["alcohol invalid"][0] == 50 and local["alcohol"][4] == 50
    assert counts(build_baseline(config, read_data([str(path)], config.columns))) == local
