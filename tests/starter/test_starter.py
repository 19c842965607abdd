"""`driftgauge init`: types inferred from a training file's first rows and from v2 model metadata,
names quoted as YAML, a config that passes `check` once its baseline is built."""

from __future__ import annotations

import csv
import datetime
import http.server
import json
import re
import shlex
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from driftgauge.config import load_config
from driftgauge.config.validation import label_value
from driftgauge.exceptions import DataError
from driftgauge.jsonpath_syntax import JsonPath, compile_path
from driftgauge.starter import (
    CATEGORICAL_MAX_DISTINCT,
    DataSample,
    StarterError,
    parse_metadata,
    plan_starter,
    profile_column,
    render_starter,
    sample_data,
    write_starter,
)
from driftgauge.starter.plan import _scalar, member_path
from tests.helpers import answers_ok, free_port, scrape, series, serving, wait_for

CLI = [sys.executable, "-m", "driftgauge.cli"]

TRICKY_NAMES = [
    "sepal length (cm)",
    "od280/od315_of_diluted_wines",
    'say "hi"',
    "it's",
    "naïve – ünïcode 名前",
    "yes",
    "null",
    "1.5",
    "- dash",
    "key: value",
    "#hash",
    "[bracket]",
    "{brace}",
    "*star",
    "&anchor",
    " padded ",
]


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, timeout=120, check=False, cwd=cwd
    )


def one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert result.returncode != 0, result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def columns(n: int = 300) -> dict[str, list[Any]]:
    """A training set: floats, a 0/1 flag, a small code, a wide integer, text, and a label."""
    return {
        "alcohol": [12.0 + (i % 37) * 0.07 for i in range(n)],
        "flag": [i % 2 for i in range(n)],
        "grade": [i % 4 + 1 for i in range(n)],
        "magnesium": [70 + i % 60 for i in range(n)],
        "region": [["north", "south", "east"][i % 3] for i in range(n)],
        "class": [["a", "b"][i % 2] for i in range(n)],
    }


def write_csv(path: Path, data: dict[str, list[Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(list(data))
        writer.writerows(zip(*data.values(), strict=True))
    return path


def types_of(config_path: Path) -> dict[str, str]:
    config = load_config(config_path)
    return {f.name: f.type for f in config.features + config.predictions}


# -- type inference ----------------------------------------------------------------


def test_numbers_are_numeric_and_few_whole_numbers_categorical() -> None:
    """Floats and many-valued integers are numeric; integers with few values are categorical."""
    assert profile_column("x", [0.5, 1.25, None, 2.0]).type == "numeric"
    assert profile_column("x", list(range(CATEGORICAL_MAX_DISTINCT + 1))).type == "numeric"
    assert profile_column("x", list(range(CATEGORICAL_MAX_DISTINCT))).type == "categorical"
    assert profile_column("x", [0.0, 1.0, None, 1.0]).type == "categorical"  # 0/1 via floats
    assert profile_column("x", [0.0, 0.5, 1.0]).type == "numeric"


def test_text_and_booleans_are_categorical_and_other_values_skipped() -> None:
    """Text (also mixed with numbers) and booleans are categorical; dates are not monitored."""
    assert profile_column("x", ["a", "b", None]).type == "categorical"
    assert profile_column("x", [1.5, "n/a?", 2.5]).type == "categorical"
    assert profile_column("x", [True, False]).type == "categorical"
    skipped = profile_column("x", [datetime.date(2024, 1, 1)])
    assert skipped.type is None
    assert "dates" in skipped.note


def test_numbers_with_a_few_stray_text_cells_stay_numeric() -> None:
    """A numeric column with a stray '?' or 'abc' in a few cells (under 5%) is numeric, with a
    REVIEW note naming the text, which the baseline counts as not numbers; not a categorical
    of thousands of values flagged as an identifier. Mostly text, or few whole numbers
    beside the text (codes and 'unknown'), stays categorical."""
    numbers = [0.25 * i for i in range(200)]
    profile = profile_column("x", [*numbers[:100], "?", *numbers[100:], "abc", None])
    assert profile.type == "numeric"
    assert "REVIEW: 2 of 202 values are text, such as '?'" in profile.note
    assert "identifier" not in profile.note
    assert (profile.present, profile.distinct) == (202, 200)
    assert profile_column("x", [*numbers[:20], "abc", "?"]).type == "categorical"  # 9% text
    assert profile_column("x", [*[i % 4 for i in range(200)], "unknown"]).type == "categorical"


def test_many_distinct_text_values_are_flagged_for_review() -> None:
    """A text column with hundreds of values (an id?) gets a REVIEW note."""
    profile = profile_column("user", [f"u{i}" for i in range(500)])
    assert profile.type == "categorical"
    assert "REVIEW" in profile.note
    assert "identifier" in profile.note


def test_a_one_value_column_is_counted_in_the_singular() -> None:
    """A one-row sample's notes said '1 distinct in 1 values'."""
    assert profile_column("x", [1.5]).note == "numbers, 1 distinct in 1 value"
    assert profile_column("x", [1.5, 2.5]).note == "numbers, 2 distinct in 2 values"


def test_numbers_with_a_decimal_comma_are_flagged_to_be_saved_with_a_point() -> None:
    """A quoted "11,82" column (a European export saved with ',' between columns) was
    categorical with 'more than 50 categories ... an identifier?'; its note now says the
    values look like decimal-comma numbers, which the baseline and the sidecar do not read."""
    values: list[Any] = [f"{i // 10},{i % 10}5" for i in range(100)] + [13.0]
    profile = profile_column("alcohol", values)
    assert profile.type == "categorical"
    assert "REVIEW: numbers with a decimal comma, such as '0,05'?" in profile.note
    assert "identifier" not in profile.note
    codes = profile_column("pair", [f"{i},x" for i in range(100)])
    assert "decimal comma" not in codes.note and "identifier" in codes.note


def test_empty_column_is_numeric_with_a_review_note() -> None:
    """A column without a value in the sample is guessed numeric and flagged."""
    profile = profile_column("x", [None, None])
    assert profile.type == "numeric"
    assert "REVIEW" in profile.note


def test_csv_jsonl_and_parquet_samples_agree(tmp_path: Path) -> None:
    """The three formats of one table give the same columns, in file order, with the same types."""
    data = columns()
    write_csv(tmp_path / "t.csv", data)
    with (tmp_path / "t.jsonl").open("w", encoding="utf-8") as handle:
        for row in zip(*data.values(), strict=True):
            handle.write(json.dumps(dict(zip(data, row, strict=True))) + "\n")
    pq.write_table(pa.table(data), tmp_path / "t.parquet")
    expected = {
        "alcohol": "numeric",
        "flag": "categorical",
        "grade": "categorical",
        "magnesium": "numeric",
        "region": "categorical",
        "class": "categorical",
    }
    for name in ("t.csv", "t.jsonl", "t.parquet"):
        sample = sample_data(tmp_path / name)
        assert sample.rows == 300
        assert {c.name: c.type for c in sample.columns} == expected, name
        assert sample.names == list(expected), name


def test_sample_reads_only_the_first_rows(tmp_path: Path) -> None:
    """Only the first `rows` rows are read."""
    write_csv(tmp_path / "t.csv", columns(500))
    assert sample_data(tmp_path / "t.csv", rows=120).rows == 120


def test_parquet_sample_spans_small_row_groups(tmp_path: Path) -> None:
    """A Parquet file of 100-row groups is sampled up to the limit, not its first group only."""
    n = 5_000
    table = pa.table(
        {
            "amount": [i % 5 if i < 100 else i for i in range(n)],
            "city": pa.array(
                [None if i < 100 else f"c{i % 7}" for i in range(n)]
            ).dictionary_encode(),
            "label": [i % 2 for i in range(n)],
        }
    )
    pq.write_table(table, tmp_path / "rg.parquet", row_group_size=100)
    assert pq.ParquetFile(tmp_path / "rg.parquet").num_row_groups == 50
    sample = sample_data(tmp_path / "rg.parquet")
    assert sample.rows == n
    assert {c.name: c.type for c in sample.columns} == {
        "amount": "numeric",
        "city": "categorical",
        "label": "categorical",
    }
    city = sample.column("city")
    assert city is not None and city.present == n - 100
    limited = sample_data(tmp_path / "rg.parquet", rows=250)
    assert limited.rows == 250
    amount = limited.column("amount")
    assert amount is not None and amount.present == 250 and amount.distinct == 155


def test_csv_missing_cells_and_unnamed_index_column(tmp_path: Path) -> None:
    """Empty and NA cells are missing, not text; an unnamed first column (a saved index) is skipped."""
    path = tmp_path / "t.csv"
    path.write_text(",x,y\n0,1.5,a\n1,NA,\n2,,b\n", encoding="utf-8")
    sample = sample_data(path)
    assert [(c.name, c.type) for c in sample.columns] == [("x", "numeric"), ("y", "categorical")]
    assert sample.skipped and "column 1" in sample.skipped[0]


@pytest.mark.parametrize("row", ["3,4", "3,4,c,5"])
def test_a_csv_row_without_the_header_s_cells_is_refused_as_baseline_refuses_it(
    tmp_path: Path, row: str
) -> None:
    """init wrote a config from a ragged CSV file that `driftgauge baseline` then refused
    (pyarrow: "Expected 3 columns, got 2"); it says so itself, naming the line.  Blank lines
    are skipped, as pyarrow skips them."""
    path = tmp_path / "t.csv"
    path.write_text(f"x,y,z\n1,2,a\n\n{row}\n", encoding="utf-8")
    cells = len(row.split(","))
    with pytest.raises(DataError, match=rf"t\.csv: line 4 has {cells} cells, the header 3"):
        sample_data(path)
    path.write_text("x,y,z\n1,2,a\n\n3,4,b\n", encoding="utf-8")
    assert sample_data(path).rows == 2


def test_a_column_whose_name_holds_a_control_character_is_skipped_saying_why(
    tmp_path: Path,
) -> None:
    """A tab in a column name is not a saved index: the skip names the character, as check would."""
    path = tmp_path / "t.csv"
    path.write_text(",x,tab\there\n0,1.5,2.5\n1,2.5,3.5\n", encoding="utf-8")
    sample = sample_data(path)
    assert sample.names == ["x"]
    assert sample.skipped == (
        "column 1 (''): no name (a saved index?)",
        "column 3 ('tab\\there'): not a usable name: 'tab\\there' holds U+0009, a control"
        " character, at position 3 (names may hold any other UTF-8 character)",
    )


def test_the_index_pandas_saved_in_parquet_is_skipped(tmp_path: Path) -> None:
    """A filtered DataFrame's to_parquet() stores its index as column __index_level_0__ (named
    in the file's pandas metadata): a saved index, skipped like a CSV's unnamed first column;
    an index the user named stays a column."""
    table = pa.table({"x": [0.5, 1.5, 2.5], "__index_level_0__": [3, 7, 9], "id": [1, 2, 3]})
    pandas = {"index_columns": ["__index_level_0__", "id"], "columns": []}
    path = tmp_path / "t.parquet"
    pq.write_table(table.replace_schema_metadata({"pandas": json.dumps(pandas)}), path)
    sample = sample_data(path)
    assert sample.names == ["x", "id"]
    assert sample.skipped == ("column 2 ('__index_level_0__'): the index pandas saved",)


# -- YAML ---------------------------------------------------------------------------------


@given(st.text(min_size=1, max_size=40).filter(lambda s: _label_ok(s)))
def test_any_valid_name_round_trips_through_the_written_yaml(name: str) -> None:
    """Every name a config accepts is written so that YAML reads back exactly that name."""
    line = f"features:\n  - {{name: {_scalar(name)}, type: numeric}}  # note\n"
    assert yaml.safe_load(line)["features"][0]["name"] == name


def _label_ok(text: str) -> bool:
    try:
        label_value(text)
    except ValueError:
        return False
    return True


def test_tricky_names_reach_the_config_unchanged(tmp_path: Path) -> None:
    """Spaces, slashes, quotes, YAML keywords and non-ASCII names load back as written."""
    data = {name: [float(i % 17) + 0.5 for i in range(50)] for name in TRICKY_NAMES}
    data["label"] = [i % 2 for i in range(50)]
    sample = sample_data(write_csv(tmp_path / "t.csv", data))
    plan = plan_starter(sample, None, predictions=["label"], model="m: x")
    write_starter(render_starter(plan, "b.dgb"), tmp_path / "c.yaml")
    config = load_config(tmp_path / "c.yaml")
    assert [f.name for f in config.features] == TRICKY_NAMES
    assert config.model == "m: x"


def test_written_config_says_what_to_review(tmp_path: Path) -> None:
    """The file's comments name the inferred types, upstream, windows and thresholds to review."""
    sample = sample_data(write_csv(tmp_path / "t.csv", columns()))
    text = render_starter(plan_starter(sample, None, predictions=["class"]), "t.dgb")
    for needle in (
        "REVIEW",
        "inferred",
        "upstream",
        "windows",
        "min_observations",
        "alerting",
        "# data: whole numbers, only 2 distinct",
    ):
        assert needle in text
    config = yaml.safe_load(text)
    assert config["model"] == "t"
    assert config["protocol"] == "kserve-v2"
    assert config["source"]["proxy"]["upstream"] == "http://127.0.0.1:9000"


def test_names_with_spaces_from_a_comma_space_file_are_flagged(tmp_path: Path) -> None:
    """A CSV written with ', ' between columns gave fields ' y' and ' label', and the
    baseline the categories ' a' and ' b', which the sidecar's 'a' never matches (all
    unseen), without a word; the file now says so at the top, to review."""
    train = tmp_path / "t.csv"
    train.write_text(
        "x, y, label\n" + "".join(f"{i % 17}.5, {i % 13}.25, {'ab'[i % 2]}\n" for i in range(60)),
        encoding="utf-8",
    )
    plan = plan_starter(sample_data(train), None, predictions=[" label"])
    assert [f.name for f in plan.features] == ["x", " y"]
    text = render_starter(plan, "t.dgb")
    assert "# REVIEW: 2 column names start or end with a space, such as ' y'" in text
    assert "save it without them" in text
    plain = plan_starter(sample_data(write_csv(tmp_path / "u.csv", columns())), None)
    assert "start or end with a space" not in render_starter(plain, "u.dgb")


def test_written_alerting_section_is_the_defaults(tmp_path: Path) -> None:
    """The `alerting:` values init writes as "the defaults" are: `driftgauge rules` renders the
    same bytes for the written config as for it without that section."""
    train = write_csv(tmp_path / "t.csv", columns())
    written = tmp_path / "written.yaml"
    assert run("init", "--data", train, "--predictions", "class", "-o", written).returncode == 0
    raw = yaml.safe_load(written.read_text(encoding="utf-8"))
    assert "alerting" in raw
    del raw["alerting"]
    bare = tmp_path / "bare.yaml"
    bare.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    rendered = {}
    for config in (written, bare):
        out = tmp_path / f"rules-{config.stem}"
        result = run("rules", "-c", config, "-o", out)
        assert result.returncode == 0, result.stderr
        rendered[config.stem] = {
            p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()
        }
    assert rendered["written"] == rendered["bare"]


def test_a_line_break_in_the_data_file_name_stays_in_a_comment(tmp_path: Path) -> None:
    """The training file's name is quoted in comments; a line break in it no longer ends the
    comment (the written YAML did not parse, and init died with a traceback)."""
    train = write_csv(tmp_path / "new\nline: x.csv", columns())
    config = tmp_path / "c.yaml"
    result = run("init", "--data", train, "--predictions", "class", "-o", config)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert types_of(config)["class"] == "categorical"


def test_refuses_to_overwrite_unless_forced(tmp_path: Path) -> None:
    """An existing file is kept unless force is set."""
    sample = sample_data(write_csv(tmp_path / "t.csv", columns()))
    text = render_starter(plan_starter(sample, None, predictions=["class"]), "t.dgb")
    target = tmp_path / "c.yaml"
    target.write_text("mine\n", encoding="utf-8")
    with pytest.raises(StarterError, match="exists"):
        write_starter(text, target)
    assert target.read_text(encoding="utf-8") == "mine\n"
    write_starter(text, target, force=True)
    assert load_config(target).model == "t"


def test_a_config_named_as_a_baseline_is_refused(tmp_path: Path) -> None:
    """init -o model.dgb wrote the config there and printed 'driftgauge baseline ... -o
    model.dgb', the config itself, which baseline then refused, suggesting model.dgb."""
    train = write_csv(tmp_path / "t.csv", columns())
    result = run("init", "--data", train, "-o", tmp_path / "model.dgb")
    one_line_error(result, "model.dgb: .dgb names a baseline", "model.yaml")
    assert result.returncode == 1 and not (tmp_path / "model.dgb").exists()


def test_the_training_file_is_never_written_over_even_with_force(tmp_path: Path) -> None:
    """init --data t.csv -o t.csv --force (a slip) replaced the training data by the config
    and printed 'driftgauge baseline -c t.csv --data t.csv'; -o naming the file read is
    refused, --force or not."""
    train = write_csv(tmp_path / "t.csv", columns())
    kept = train.read_bytes()
    for data in (train, tmp_path / "*.csv"):
        result = run("init", "--data", data, "-o", train, "--force")
        one_line_error(result, "t.csv: -o names the training file (--data)", "such as t.yaml")
        assert result.returncode == 1 and train.read_bytes() == kept


def test_a_config_in_a_new_folder_is_written_as_baseline_and_rules_write_theirs(
    tmp_path: Path,
) -> None:
    """`init -o deploy/wine/config.yaml` makes the folders, as `baseline -o` and `rules -o`
    do; it said 'deploy/wine/config.yaml: No such file or directory'."""
    train = write_csv(tmp_path / "t.csv", columns())
    out = tmp_path / "deploy" / "wine" / "config.yaml"
    result = run("init", "--data", train, "--predictions", "class", "-o", out)
    assert result.returncode == 0, result.stderr
    assert load_config(out).model == "t"


# -- model metadata -------------------------------------------------------------------


def metadata(inputs: list[Any], outputs: list[Any]) -> Any:
    return parse_metadata(
        {
            "name": "iris",
            "versions": ["1"],
            "platform": "sklearn",
            "inputs": inputs,
            "outputs": outputs,
        },
        "http://127.0.0.1:1/v2/models/iris",
    )


WIDE = [{"name": "input-0", "datatype": "FP32", "shape": [-1, 4]}]
PREDICT = [{"name": "predict", "datatype": "INT64", "shape": [-1, 1]}]


def test_one_tensor_per_feature_is_named_and_typed_by_datatype() -> None:
    """Tensors of one value per row are features by name; FP/INT numeric, BYTES/BOOL categorical."""
    meta = metadata(
        [
            {"name": "age", "datatype": "INT32", "shape": [-1, 1]},
            {"name": "city", "datatype": "BYTES", "shape": [-1]},
            {"name": "member", "datatype": "BOOL", "shape": [-1, 1]},
            {"name": "income", "datatype": "FP64", "shape": [-1, 1]},
        ],
        PREDICT,
    )
    plan = plan_starter(None, meta)
    assert [(f.name, f.type) for f in plan.features] == [
        ("age", "numeric"),
        ("city", "categorical"),
        ("member", "categorical"),
        ("income", "numeric"),
    ]
    assert [(p.name, p.type) for p in plan.predictions] == [("predict", "numeric")]
    assert "class labels" in plan.predictions[0].note  # an INT output: review
    assert plan.protocol == "kserve-v2"
    assert plan.model == "iris"


def test_a_bf16_tensor_is_numeric() -> None:
    """Triton's BF16 (bfloat16) tensors, which the sidecar reads, type numeric fields (init
    refused them as an unknown datatype)."""
    meta = metadata(
        [{"name": "x", "datatype": "BF16", "shape": [-1, 1]}],
        [{"name": "score", "datatype": "BF16", "shape": [-1]}],
    )
    plan = plan_starter(None, meta)
    assert [(f.name, f.type) for f in (*plan.features, *plan.predictions)] == [
        ("x", "numeric"),
        ("score", "numeric"),
    ]


def test_a_wide_tensor_becomes_numbered_features_matched_by_position() -> None:
    """A [-1, 4] tensor gives input-0_0..input-0_3 and a note that they map by position."""
    plan = plan_starter(None, metadata(WIDE, PREDICT))
    assert [f.name for f in plan.features] == [f"input-0_{i}" for i in range(4)]
    assert any("BY POSITION" in note for note in plan.notes)


def test_a_wide_tensor_takes_the_training_files_column_names_by_position(tmp_path: Path) -> None:
    """With --data, the wide tensor's values are named after the file's columns, in file order."""
    data = {
        "sepal length (cm)": [5.1, 4.9, 6.3] * 20,
        "sepal width (cm)": [3.5, 3.0, 2.9] * 20,
        "petal length (cm)": [1.4, 1.3, 5.6] * 20,
        "petal width (cm)": [0.2, 0.25, 1.8] * 20,
        "target": [0, 1, 2] * 20,
    }
    sample = sample_data(write_csv(tmp_path / "iris.csv", data))
    plan = plan_starter(sample, metadata(WIDE, PREDICT), predictions=["target"])
    assert [f.name for f in plan.features] == list(data)[:4]
    assert [(p.name, p.type) for p in plan.predictions] == [("target", "categorical")]
    assert plan.features[0].note.startswith("input-0[0] FP32; data: numbers")


def test_column_count_must_match_the_tensor_width(tmp_path: Path) -> None:
    """Matching by position needs as many feature columns as values per row."""
    sample = sample_data(write_csv(tmp_path / "t.csv", columns()))
    with pytest.raises(StarterError, match="hold 4 values per row"):
        plan_starter(sample, metadata(WIDE, PREDICT), predictions=["class"])


def test_outputs_missing_from_the_training_file_ask_for_predictions(tmp_path: Path) -> None:
    """An output tensor the training file has no column for points at --predictions."""
    data = {f"c{i}": [float(j) for j in range(30)] for i in range(4)}
    sample = sample_data(write_csv(tmp_path / "t.csv", data))
    with pytest.raises(StarterError, match="--predictions"):
        plan_starter(sample, metadata(WIDE, PREDICT))


def test_variable_width_tensor_and_other_protocols_are_refused() -> None:
    """A [-1, -1] tensor cannot be mapped; a metadata server speaks kserve-v2 only."""
    with pytest.raises(StarterError, match="variable number"):
        metadata([{"name": "x", "datatype": "FP32", "shape": [-1, -1]}], [])
    with pytest.raises(StarterError, match="kserve-v2"):
        plan_starter(None, metadata(WIDE, PREDICT), protocol="kserve-v1")


def test_jsonpath_protocol_gives_each_field_a_path_by_its_name(tmp_path: Path) -> None:
    """`init --protocol jsonpath`, listed in --help, was refused ('init cannot guess each
    field's JSON path'); each field now reads its name in the rows of the bodies, and the
    file says to review those paths."""
    sample = sample_data(write_csv(tmp_path / "t.csv", columns()))
    plan = plan_starter(sample, None, predictions=["class"], protocol="jsonpath")
    write_starter(render_starter(plan, "t.dgb"), tmp_path / "c.yaml")
    config = load_config(tmp_path / "c.yaml")
    assert config.protocol == "jsonpath"
    assert {f.name: f.path for f in config.features + config.predictions} == {
        "alcohol": "$.rows[*].alcohol",
        "flag": "$.rows[*].flag",
        "grade": "$.rows[*].grade",
        "magnesium": "$.rows[*].magnesium",
        "region": "$.rows[*].region",
        "class": "$.predictions[*].class",
    }
    assert "REVIEW: write where your server's bodies hold each field" in (
        tmp_path / "c.yaml"
    ).read_text(encoding="utf-8")


@given(st.text(min_size=1, max_size=40).filter(lambda s: _label_ok(s)))
def test_a_member_path_reads_back_as_the_name(name: str) -> None:
    """Any name a field may have (spaces, dots, quotes, brackets, backslashes, non-ASCII)
    makes a path that compiles to that one member, and survives the YAML it is written in."""
    path = member_path("$.rows[*]", name)
    assert compile_path(path) == JsonPath(path, ("rows",), (name,))
    line = f"  - {{name: x, type: numeric, path: {json.dumps(path, ensure_ascii=False)}}}\n"
    assert yaml.safe_load(line)[0]["path"] == path


class _RowsHandler(http.server.BaseHTTPRequestHandler):
    """A home-made model server: {"rows": [...]} -> {"predictions": [{"class": "a"}, ...]}."""

    def do_POST(self) -> None:
        rows = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["rows"]
        body = json.dumps({"predictions": [{"class": "a"} for _ in rows]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


def test_a_jsonpath_config_of_tricky_names_is_served_as_init_wrote_it(tmp_path: Path) -> None:
    """init --protocol jsonpath on names with spaces, slashes, quotes, dots, brackets and
    non-ASCII: baseline and check pass, and a real serve in front of a server reads every
    field of a real request with those names."""
    names = [*TRICKY_NAMES, "a.b", "back\\slash", "x-y", "plain"]
    data = {name: [float(i % 17) + 0.5 for i in range(200)] for name in names}
    data["class"] = [["a", "b"][i % 2] for i in range(200)]
    train = write_csv(tmp_path / "t.csv", data)
    config = tmp_path / "c.yaml"
    result = run(
        "init", "--data", train, "--predictions", "class", "--protocol", "jsonpath", "-o", config
    )
    assert result.returncode == 0, result.stderr
    assert run("baseline", "-c", config, "--data", train, "-o", tmp_path / "c.dgb").returncode == 0
    assert run("check", "-c", config).returncode == 0
    with serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RowsHandler)) as upstream:
        proxy, metrics = free_port(), free_port()
        raw = yaml.safe_load(config.read_text(encoding="utf-8"))
        raw["source"]["proxy"] |= {
            "listen": f"127.0.0.1:{proxy}",
            "upstream": f"http://127.0.0.1:{upstream.server_address[1]}",
        }
        raw["metrics"]["listen"] = f"127.0.0.1:{metrics}"
        config.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
        process = subprocess.Popen([*CLI, "serve", "-c", str(config)], stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: answers_ok(f"http://127.0.0.1:{metrics}/readyz"))
            rows = [dict.fromkeys(names, 1.5) for _ in range(3)]
            request = urllib.request.Request(
                f"http://127.0.0.1:{proxy}/score", data=json.dumps({"rows": rows}).encode()
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                assert json.load(response) == {"predictions": [{"class": "a"}] * 3}
            seen = {
                (role, name): series(
                    "driftgauge_observations_total", feature=name, model="t", role=role
                )
                for role, name in [("input", n) for n in names] + [("prediction", "class")]
            }
            samples = wait_for(
                lambda: (
                    (got := scrape(metrics)) and all(got.get(s) == 3 for s in seen.values()) and got
                ),
                what="every field observed 3 times",
            )
            missing = series("driftgauge_missing_total", feature="plain", model="t", role="input")
            assert samples[missing] == 0
        finally:
            process.terminate()
            process.wait(timeout=20)


def test_predictions_must_be_columns_of_the_file(tmp_path: Path) -> None:
    """--predictions naming no column of the training file says so and lists the columns."""
    sample: DataSample = sample_data(write_csv(tmp_path / "t.csv", columns()))
    with pytest.raises(StarterError, match=r"no column named 'label'.*must hold"):
        plan_starter(sample, None, predictions=["label"])


# -- the command, end to end -----------------------------------------------------------


@pytest.mark.parametrize("suffix", ["csv", "parquet", "jsonl"])
def test_init_baseline_check_end_to_end(tmp_path: Path, suffix: str) -> None:
    """init writes a config; `baseline` builds from the same file; `check` passes."""
    data = columns()
    train = tmp_path / f"train.{suffix}"
    if suffix == "csv":
        write_csv(train, data)
    elif suffix == "parquet":
        pq.write_table(pa.table(data), train)
    else:
        train.write_text(
            "".join(
                json.dumps(dict(zip(data, row, strict=True))) + "\n"
                for row in zip(*data.values(), strict=True)
            ),
            encoding="utf-8",
        )
    config = tmp_path / "conf" / "wine.yaml"
    config.parent.mkdir()
    result = run("init", "--data", train, "--predictions", "class", "-o", config)
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout
    assert types_of(config)["class"] == "categorical"
    result = run("baseline", "-c", config, "--data", train, "-o", config.parent / "wine.dgb")
    assert result.returncode == 0, result.stderr
    result = run("check", "-c", config)
    assert result.returncode == 0, result.stderr
    assert "ok:" in result.stdout


def test_the_printed_baseline_command_runs_as_printed(tmp_path: Path) -> None:
    """The `driftgauge baseline` command init prints is shell-quoted: pasted into a shell, it
    builds the baseline even when the paths hold spaces, a colon and a #."""
    train = write_csv(tmp_path / "my data: #1.csv", columns())
    config = tmp_path / "my conf" / "wine model.yaml"
    config.parent.mkdir()
    result = run("init", "--data", train, "--predictions", "class", "-o", config)
    assert result.returncode == 0, result.stderr
    command = shlex.split(result.stdout.split("build the baseline: ", 1)[1])
    assert command[:2] == ["driftgauge", "baseline"]
    built = run(*command[1:])
    assert built.returncode == 0, built.stderr
    assert run("check", "-c", config).returncode == 0
    comment = next(
        line for line in config.read_text(encoding="utf-8").splitlines() if "--data" in line
    )
    assert shlex.quote(str(train)) in comment


def test_jsonl_numeric_codes_in_a_categorical_column_build_a_baseline(tmp_path: Path) -> None:
    """A JSON Lines 0/1 flag, categorical by init's rule, builds a baseline."""
    train = tmp_path / "t.jsonl"
    train.write_text(
        "".join(json.dumps({"x": i * 0.5, "flag": i % 2}) + "\n" for i in range(40)),
        encoding="utf-8",
    )
    assert run("init", "--data", train, "-o", tmp_path / "c.yaml").returncode == 0
    result = run("baseline", "-c", tmp_path / "c.yaml", "--data", train, "-o", tmp_path / "c.dgb")
    assert result.returncode == 0, result.stderr


def test_a_folder_as_output_is_named_as_one_with_or_without_force(tmp_path: Path) -> None:
    """`init -o DIR` said "the file exists; use --force", and --force then "is a directory":
    it says at once that it is a folder, and what to name instead."""
    train = write_csv(tmp_path / "t.csv", columns())
    folder = tmp_path / "configs"
    folder.mkdir()
    expected = (
        f"driftgauge: {folder}: is a folder; name the config file to write in it,"
        f" such as {folder / 'config.yaml'}"
    )
    for force in ((), ("--force",)):
        assert one_line_error(run("init", "--data", train, "-o", folder, *force)) == expected
    text = render_starter(plan_starter(sample_data(train), None, predictions=["class"]), "t.dgb")
    with pytest.raises(StarterError, match="is a folder"):
        write_starter(text, folder)


def test_init_errors_are_one_line(tmp_path: Path) -> None:
    """No source, a missing prediction column, an existing file, an unreachable server:
    one line each, non-zero exit."""
    train = write_csv(tmp_path / "t.csv", columns())
    out = tmp_path / "c.yaml"
    one_line_error(run("init", "-o", out), "--data")
    one_line_error(run("init", "--data", train, "--predictions", "nope", "-o", out), "'nope'")
    out.write_text("mine\n", encoding="utf-8")
    one_line_error(run("init", "--data", train, "-o", out), "--force")
    assert out.read_text(encoding="utf-8") == "mine\n"
    assert run("init", "--data", train, "-o", out, "--force").returncode == 0
    one_line_error(
        run("init", "--server", "http://127.0.0.1:9", "--model", "m", "-o", tmp_path / "d.yaml"),
        "cannot reach",
    )
    one_line_error(run("init", "--data", tmp_path / "nope.csv", "-o", tmp_path / "e.yaml"), "nope")


def test_a_semicolon_csv_is_refused_by_init_and_baseline_alike(tmp_path: Path) -> None:
    """A spreadsheet's ';' export with decimal commas was one column to init, which wrote a
    config of one categorical feature 'alcohol;color;region;class' (exit 0); both commands
    now refuse it with the same line, naming the file and the separator."""
    train = tmp_path / "eu.csv"
    train.write_text(
        "alcohol;color;region;class\n"
        + "".join(f"13,{i % 10};5,{i % 7};north;{i % 3}\n" for i in range(200)),
        encoding="utf-8",
    )
    result = run("init", "--data", train, "-o", tmp_path / "eu.yaml")
    line = one_line_error(result, "eu.csv: the header is one column", "';' between", "Parquet")
    assert result.returncode == 4
    assert not (tmp_path / "eu.yaml").exists()
    other = write_csv(tmp_path / "t.csv", {"alcohol": [1.5, 2.5], "class": ["a", "b"]})
    config = tmp_path / "c.yaml"
    assert run("init", "--data", other, "--predictions", "class", "-o", config).returncode == 0
    built = run("baseline", "-c", config, "--data", train, "-o", tmp_path / "c.dgb")
    assert one_line_error(built) == line and built.returncode == 4


def test_a_file_not_in_utf_8_is_refused_by_init_and_baseline_alike(tmp_path: Path) -> None:
    """A Windows-1252 export: both commands say it is not UTF-8, not the codec's words."""
    train = tmp_path / "t.csv"
    train.write_bytes(b"alcohol,region\n" + b"".join(b"1.5,caf\xe9\n" for _ in range(50)))
    said = "t.csv: cannot read CSV data: not UTF-8 text (byte 0xe9): save the file as UTF-8"
    line = one_line_error(run("init", "--data", train, "-o", tmp_path / "c.yaml"), said)
    write_csv(tmp_path / "ok.csv", {"alcohol": [1.5, 2.5], "region": ["a", "b"]})
    config = tmp_path / "c.yaml"
    assert run("init", "--data", tmp_path / "ok.csv", "-o", config).returncode == 0
    built = run("baseline", "-c", config, "--data", train, "-o", tmp_path / "c.dgb")
    assert one_line_error(built) == line and built.returncode == 4


@pytest.mark.parametrize(
    ("name", "text"),
    [("t.csv", "a,b,c\n"), ("t.csv", "a,b,c\n\n"), ("t.jsonl", ""), ("t.jsonl", "\n")],
)
def test_a_training_file_without_rows_writes_no_config(
    tmp_path: Path, name: str, text: str
) -> None:
    """A CSV header alone made a config of fields all 'guessed numeric' (exit 0) that no
    baseline could be built for; a JSON Lines file without a record was 'no feature
    columns besides the predictions' (exit 1); both now say the file holds no rows."""
    train = tmp_path / name
    train.write_text(text, encoding="utf-8")
    result = run("init", "--data", train, "-o", tmp_path / "c.yaml")
    one_line_error(result, f"{name}: holds no rows (no config written)")
    assert result.returncode == 4 and not (tmp_path / "c.yaml").exists()


def test_a_parquet_file_without_rows_writes_no_config(tmp_path: Path) -> None:
    """A Parquet file of a schema alone, as a CSV header alone."""
    pq.write_table(pa.table({"x": pa.array([], pa.float64())}), tmp_path / "t.parquet")
    with pytest.raises(DataError, match=r"t\.parquet: holds no rows"):
        plan_starter(sample_data(tmp_path / "t.parquet"), None)


@pytest.mark.parametrize("text", ['[{"x": 1}, {"x": 2}]\n', '[\n  {"x": 1},\n  {"x": 2}\n]\n'])
def test_a_json_array_file_is_refused_saying_how_to_convert(tmp_path: Path, text: str) -> None:
    """A .json file holding one array (pandas' to_json(orient="records")) gets the line
    `driftgauge baseline` gives it, with the jq command, not a JSON decoding error."""
    train = tmp_path / "t.json"
    train.write_text(text, encoding="utf-8")
    result = run("init", "--data", train, "-o", tmp_path / "c.yaml")
    one_line_error(result, "t.json: holds a JSON array", "jq -c '.[]'")
    assert result.returncode == 4


@pytest.mark.parametrize(
    "server", ["http://[::1", "http://127.0.0.1:99999", "http://a b:9/", "http://127.0.0.1:9/x y"]
)
def test_a_malformed_server_url_is_one_line(tmp_path: Path, server: str) -> None:
    """An open IPv6 bracket, a port beyond 65535 or a space in --server is one line naming
    the option (urlsplit's ValueError and http.client's InvalidURL were tracebacks)."""
    result = run("init", "--server", server, "--model", "m", "-o", tmp_path / "c.yaml")
    one_line_error(result, f"--server {server!r}: not a URL")
    assert not (tmp_path / "c.yaml").exists()


def test_metadata_without_inputs_falls_back_to_the_training_file(tmp_path: Path) -> None:
    """No inputs listed: an error naming --data alone, the file's columns with it."""
    meta = metadata([], [])
    with pytest.raises(StarterError, match="--data"):
        plan_starter(None, meta)
    sample = sample_data(write_csv(tmp_path / "t.csv", columns()))
    plan = plan_starter(sample, meta, predictions=["class"], server="http://m:8080")
    assert [f.name for f in plan.features][:2] == ["alcohol", "flag"]
    assert (plan.model, plan.protocol, plan.upstream) == ("iris", "kserve-v2", "http://m:8080")


def test_a_server_behind_a_path_prefix_gives_its_origin_as_the_upstream(tmp_path: Path) -> None:
    """--server with a path (a gateway's prefix) writes only its scheme, host and port as the
    upstream (the proxy forwards each request's own path), and the config loads."""
    meta = metadata([{"name": "x", "datatype": "FP32", "shape": [-1, 1]}], PREDICT)
    plan = plan_starter(None, meta, server="https://gw:8443/seldon/ns/iris/")
    write_starter(render_starter(plan, "b.dgb"), tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml").source.upstream == "https://gw:8443"


def test_predictions_named_like_the_output_tensors_match_by_name(tmp_path: Path) -> None:
    """--predictions naming the output tensors themselves needs no positional matching."""
    meta = metadata([{"name": "x", "datatype": "FP32", "shape": [-1, 1]}], PREDICT)
    plan = plan_starter(None, meta, predictions=["predict"])
    assert [p.name for p in plan.predictions] == ["predict"]
    assert not any("BY POSITION" in note for note in plan.notes)
    renamed = plan_starter(None, meta, predictions=["label"])
    assert [p.name for p in renamed.predictions] == ["label"]
    assert any("BY POSITION" in note for note in renamed.notes)


@pytest.mark.parametrize(
    ("shape", "field"), [([-1, 1], "x\nname"), ([-1, 2], "x\nname_0")], ids=["one", "wide"]
)
def test_a_tensor_name_that_cannot_name_a_field_is_refused_naming_it(
    shape: list[int], field: str
) -> None:
    """A tensor name holding a line break (a label value may not) is one StarterError naming
    the tensor, not a YAML parser's traceback from the written config."""
    meta = metadata([{"name": "x\nname", "datatype": "FP32", "shape": shape}], PREDICT)
    with pytest.raises(StarterError, match=rf"^tensor 'x\\nname': {re.escape(repr(field))}"):
        plan_starter(None, meta)


@pytest.mark.parametrize(
    ("inputs", "outputs", "key"),
    [
        (
            [{"name": "x", "datatype": "FP32", "shape": [-1, 1]}] * 2,
            PREDICT,
            "features[1].name: 'x' is already the name of features[0]",
        ),
        (
            [{"name": "x", "datatype": "FP32", "shape": [-1, 1]}],
            [{"name": "x", "datatype": "FP64", "shape": [-1, 1]}],
            "predictions[0].name: 'x' is already the name of features[0]",
        ),
    ],
    ids=["input-twice", "input-and-output"],
)
def test_metadata_that_makes_no_valid_config_is_an_init_error(
    tmp_path: Path, inputs: list[Any], outputs: list[Any], key: str
) -> None:
    """Metadata naming a tensor twice, or an input and an output alike, is init's error (exit
    1, as README says of metadata it cannot use), naming the key; no file is written."""
    text = render_starter(plan_starter(None, metadata(inputs, outputs)), "c.dgb")
    target = tmp_path / "c.yaml"
    with pytest.raises(StarterError) as caught:
        write_starter(text, target)
    assert caught.value.exit_code == 1
    assert str(caught.value) == f"{target}: not written, init's fields make no valid config: {key}"
    assert not target.exists()


def test_init_takes_a_glob_or_folder_as_baseline_does(tmp_path: Path) -> None:
    """A glob or folder is sampled from its first file, and the config's baseline command
    names the glob, as the command init prints does."""
    folder = tmp_path / "train"
    folder.mkdir()
    write_csv(folder / "part-0.csv", columns())
    write_csv(folder / "part-1.csv", columns())
    for spec in (f"{folder}/*.csv", str(folder)):
        out = tmp_path / "c.yaml"
        result = run("init", "--data", spec, "-o", out, "--force")
        assert result.returncode == 0, result.stderr
        text = out.read_text(encoding="utf-8")
        read = f"{folder}/part-0.csv (first 300 rows read; --data {spec}, the first of its 2 files)"
        assert f"training data: {read}" in text
        assert f"--data {shlex.quote(spec)} -o BASELINE" in text
        assert f"--data {shlex.quote(spec)} -o " in result.stdout
        assert set(types_of(out)) == set(columns())


class _ErrorPageHandler(http.server.BaseHTTPRequestHandler):
    """Answers 404 with an HTML page (send_error's), or 503 with two lines of text."""

    def do_GET(self) -> None:
        if self.path.endswith("/text"):
            body = b"upstream connect error\nreset reason: connection failure\n"
            self.send_response(503)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_error(404)

    def log_message(self, format: str, *args: Any) -> None:
        return None


def test_an_error_page_from_the_server_stays_one_line(tmp_path: Path) -> None:
    """A 404 HTML page (a gateway, a server without the v2 API) put its 20 lines into the
    error; an HTML body is left out and a text one joined into the line."""
    with serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ErrorPageHandler)) as server:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        out = tmp_path / "c.yaml"
        page = run("init", "--server", base, "--model", "iris", "-o", out)
        assert one_line_error(page).endswith("/v2/models/iris: the server answered 404")
        text = run("init", "--server", base, "--model", "text", "-o", out)
        assert one_line_error(text).endswith(
            ": the server answered 503: upstream connect error reset reason: connection failure"
        )


class _MetadataHandler(http.server.BaseHTTPRequestHandler):
    """Answers GET /v2/models/iris with metadata, to HTTP Basic ml:s3cret only."""

    def do_GET(self) -> None:
        if self.headers.get("Authorization") != "Basic bWw6czNjcmV0":
            self.send_error(401)
            return
        body = json.dumps({"name": "iris", "inputs": WIDE, "outputs": PREDICT}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


def test_a_server_url_with_a_user_and_password_authenticates_and_is_never_written(
    tmp_path: Path,
) -> None:
    """--server http://ml:s3cret@host (a gateway asking for Basic auth) was 'cannot reach the
    model server: Name or service not known', the password in the line; the credentials are
    now sent as HTTP Basic, and neither the messages nor the config hold the password."""
    with serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), _MetadataHandler)) as server:
        host = f"127.0.0.1:{server.server_address[1]}"
        out = tmp_path / "c.yaml"
        result = run("init", "--server", f"http://ml:s3cret@{host}", "--model", "iris", "-o", out)
        assert result.returncode == 0, result.stderr
        text = out.read_text(encoding="utf-8")
        assert "s3cret" not in text
        assert f"GET http://ml:***@{host}/v2/models/iris" in text
        assert load_config(out).source.upstream == f"http://{host}"
        wrong = run(
            "init", "--server", f"http://ml:nope@{host}", "--model", "iris", "-o", out, "--force"
        )
        one_line_error(wrong, f"http://ml:***@{host}/v2/models/iris: the server answered 401")
        assert "nope" not in wrong.stderr
