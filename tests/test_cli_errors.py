"""User errors end every command the same way: one stderr line, the documented exit code."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from driftgauge import cli
from driftgauge.baseline import build_baseline, datafiles, save_baseline
from driftgauge.config import load_config
from tests.helpers import base_config, free_port, training_rows, write_csv

CLI = [sys.executable, "-m", "driftgauge.cli"]
COMMANDS = ("check", "baseline", "serve")


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


def one_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The single stderr line of a failed command (asserting the exit code and no traceback)."""
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def run_command(command: str, config: Path) -> subprocess.CompletedProcess[str]:
    if command == "baseline":
        data = write_csv(config.parent / "train.csv", training_rows(200))
        return run("baseline", "-c", config, "--data", data, "-o", config.parent / "out.dgb")
    return run(command, "-c", config)


def proxy_config(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    return base_config(
        tmp_path,
        source={"proxy": {"listen": "127.0.0.1:0", "upstream": "http://127.0.0.1:9"}},
        **overrides,
    )


def bad_jsonpath(tmp_path: Path) -> dict[str, Any]:
    raw = proxy_config(tmp_path, protocol="jsonpath")
    for spec in raw["features"]:
        spec["path"] = f"$.instances[*].{spec['name']}"
    raw["predictions"][0]["path"] = "$.ys[*"
    return raw


def control_character_name(tmp_path: Path) -> dict[str, Any]:
    raw = proxy_config(tmp_path)
    raw["features"][0]["name"] = "alco\thol"
    return raw


def duplicate_name(tmp_path: Path) -> dict[str, Any]:
    raw = proxy_config(tmp_path)
    raw["predictions"][0]["name"] = "ash"
    return raw


def unreadable_certificate(tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "cert.pem").write_text("not a certificate\n")
    raw = proxy_config(tmp_path)
    raw["metrics"]["tls"] = {"cert_file": "cert.pem", "key_file": "cert.pem"}
    return raw


def nan_interval(tmp_path: Path) -> dict[str, Any]:
    raw = proxy_config(tmp_path)
    raw["metrics"]["recompute_interval"] = float("nan")  # YAML .nan
    return raw


def bad_header_name(tmp_path: Path) -> dict[str, Any]:
    raw = proxy_config(tmp_path)
    raw["source"]["proxy"]["request_id_header"] = "X Req: id"
    return raw


def spaced_upstream(tmp_path: Path) -> dict[str, Any]:
    raw = proxy_config(tmp_path)
    raw["source"]["proxy"]["upstream"] = "http://model server:9000"
    return raw


def shared_port(tmp_path: Path) -> dict[str, Any]:
    raw = proxy_config(tmp_path)  # port 1: refused before anything binds
    raw["source"]["proxy"]["listen"] = "127.0.0.1:1"
    raw["metrics"]["listen"] = "0.0.0.0:1"
    return raw


def empty_token_file(tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "feedback.token").write_text("\n", encoding="utf-8")
    return proxy_config(tmp_path, feedback={"prediction": "class", "token_file": "feedback.token"})


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (bad_jsonpath, "predictions[0].path: invalid JSONPath '$.ys[*'"),
        (empty_token_file, "feedback.token_file: 'feedback.token' holds no token"),
        (
            shared_port,
            "metrics.listen: 0.0.0.0:1 is the port of source.proxy.listen too: "
            "give each listener its own",
        ),
        (
            spaced_upstream,
            "source.proxy.upstream: 'http://model server:9000' is not an http:// or https:// URL",
        ),
        (bad_header_name, "source.proxy.request_id_header: 'X Req: id' is not an HTTP header name"),
        (nan_interval, "metrics.recompute_interval: nan is not a positive number of seconds"),
        (control_character_name, "features[0].name: 'alco\\thol' holds U+0009"),
        (duplicate_name, "predictions[0].name: 'ash' is already the name of features[1]"),
        (unreadable_certificate, "metrics.tls: cannot load cert_file and key_file"),
    ],
    ids=[
        "jsonpath",
        "empty-token-file",
        "shared-port",
        "spaced-upstream",
        "header-name",
        "nan-interval",
        "control-character",
        "duplicate",
        "certificate",
    ],
)
def test_every_command_refuses_a_bad_config_with_the_same_line(
    tmp_path: Path, make: Any, needle: str
) -> None:
    """check, baseline and serve each exit 2 with the same one-line message naming the key."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(make(tmp_path)), encoding="utf-8")
    lines = {command: one_line(run_command(command, config), 2) for command in COMMANDS}
    assert lines["check"] == lines["baseline"] == lines["serve"]
    assert lines["check"].startswith(f"driftgauge: {config}: ")
    assert needle in lines["check"]
    assert not (tmp_path / "out.dgb").exists()


def test_a_key_given_twice_is_refused_naming_it(tmp_path: Path) -> None:
    """A second `features:` used to replace the first without a word (PyYAML keeps the last);
    check, baseline and serve now refuse it with the key and both lines."""
    text = yaml.safe_dump(proxy_config(tmp_path), sort_keys=False)
    assert text.count("\nfeatures:\n") == 1
    config = tmp_path / "config.yaml"
    config.write_text(text + "features:\n- {name: alcohol, type: numeric}\n", encoding="utf-8")
    first = text.splitlines().index("features:") + 1
    second = len(text.splitlines()) + 1
    lines = {command: one_line(run_command(command, config), 2) for command in COMMANDS}
    assert lines["check"] == lines["baseline"] == lines["serve"]
    assert lines["check"] == (
        f"driftgauge: {config}: not valid YAML at line {second}, column 1: "
        f"'features' is given twice (first at line {first})"
    )


def test_rules_into_a_file_names_the_problem(tmp_path: Path) -> None:
    """`rules -o FILE` says the output is not a directory (mkdir's "File exists" read as if the
    rules were already there) and leaves the file alone."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(proxy_config(tmp_path)), encoding="utf-8")
    target = tmp_path / "rules.yml"
    target.write_text("mine\n", encoding="utf-8")
    line = one_line(run("rules", "-c", config, "-o", target), 1)
    assert line == f"driftgauge: {target}: not a directory (-o names the folder to write)"
    assert target.read_text(encoding="utf-8") == "mine\n"


def test_baseline_refuses_a_spark_master_spark_would_refuse(tmp_path: Path) -> None:
    """`--spark bogus://x` is a usage error naming the option, before a JVM starts (the JVM
    exited and pyspark raised PySparkRuntimeError, a traceback)."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(proxy_config(tmp_path)), encoding="utf-8")
    data = write_csv(tmp_path / "train.csv", training_rows(50))
    result = run(
        "baseline", "-c", config, "--data", data, "-o", tmp_path / "b.dgb", "--spark", "bogus://x"
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "argument --spark: expected local[N]" in last and "'bogus://x'" in last
    assert not (tmp_path / "b.dgb").exists()


def test_baseline_names_spark_when_it_cannot_start(tmp_path: Path) -> None:
    """`--spark local[1]` with no Java to start (JAVA_HOME names nothing): exit 4 and a last
    line naming the option and Spark's reason, not pyspark's PySparkRuntimeError traceback."""
    pytest.importorskip("pyspark")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(proxy_config(tmp_path)), encoding="utf-8")
    data = write_csv(tmp_path / "train.csv", training_rows(50))
    output = tmp_path / "b.dgb"
    result = subprocess.run(
        [*CLI, "baseline", "-c", config, "--data", data, "-o", output, "--spark", "local[1]"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=os.environ | {"JAVA_HOME": str(tmp_path / "no-java")},
    )
    assert result.returncode == 4, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("driftgauge: --spark local[1]: Spark did not start: "), last
    assert "JAVA_GATEWAY_EXITED" in last
    assert not (tmp_path / "b.dgb").exists()


def test_help_lists_commands_without_a_suppressed_alias() -> None:
    """--help lists the commands; `baseline merge --help` (after global options too) is its own."""
    listing = run("--help")
    assert listing.returncode == 0
    assert "SUPPRESS" not in listing.stdout
    assert "baseline-merge" not in listing.stdout
    for merge in (
        run("baseline", "merge", "--help"),
        run("--log-level", "DEBUG", "--log-format=json", "baseline", "merge", "--help"),
    ):
        assert merge.returncode == 0
        assert "usage: driftgauge baseline merge" in merge.stdout


# -- numeric fields whose training values are not numbers -----------------------------------


def words_config(tmp_path: Path) -> Path:
    """A config whose numeric ``alcohol`` will get strings such as ``np.float64(0.44)``."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(base_config(tmp_path, baseline="baseline.dgb")))
    return config


def words_rows(n: int, words: int) -> dict[str, list[Any]]:
    """``training_rows`` with the first ``words`` alcohol values written as numpy reprs."""
    columns = training_rows(n)
    columns["alcohol"] = [
        f"np.float64({value})" if index < words else value
        for index, value in enumerate(columns["alcohol"])
    ]
    return columns


def test_baseline_refuses_a_numeric_column_of_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A CSV column of 5,000 non-numbers is a data error (exit 4) naming the field; nothing written."""
    monkeypatch.setattr(datafiles, "pa", None)  # the standard library reader counts them
    config = words_config(tmp_path)
    data = write_csv(tmp_path / "train.csv", words_rows(5_000, 5_000))
    output = tmp_path / "baseline.dgb"
    code = cli.main(["baseline", "-c", str(config), "--data", str(data), "-o", str(output)])
    error = capsys.readouterr().err.strip()
    assert code == 4
    assert "\n" not in error
    assert error.startswith(f"driftgauge: {data}: numeric field 'alcohol': 5,000 of its 5,000")
    assert "(100%) are not numbers" in error
    assert not output.exists()


def test_baseline_accepts_a_numeric_column_with_some_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Fewer non-numbers than numbers are counted, not refused."""
    monkeypatch.setattr(datafiles, "pa", None)
    config = words_config(tmp_path)
    data = write_csv(tmp_path / "train.csv", words_rows(1_000, 400))
    code = cli.main(["baseline", "-c", str(config), "--data", str(data), "-o", str(tmp_path / "b")])
    assert code == 0, capsys.readouterr().err


def test_parquet_strings_in_a_numeric_column_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Parquet string column configured numeric is refused the same way."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    config = words_config(tmp_path)
    data = tmp_path / "train.parquet"
    pq.write_table(pa.table(words_rows(2_000, 2_000)), data)
    code = cli.main(["baseline", "-c", str(config), "--data", str(data), "-o", str(tmp_path / "b")])
    assert code == 4
    assert "numeric field 'alcohol': 2,000 of its 2,000" in capsys.readouterr().err


def test_check_and_serve_report_a_baseline_without_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A baseline already built with a numeric field of words fails check and serve (exit 3)."""
    monkeypatch.setattr(datafiles, "pa", None)
    config_path = words_config(tmp_path)
    config = load_config(config_path)
    data = write_csv(tmp_path / "train.csv", words_rows(500, 500))
    save_baseline(build_baseline(config, [data]), config.baseline)
    for command in ("check", "serve"):
        line = one_line(run(command, "-c", config_path), 3)
        assert f"{config.baseline}: numeric field 'alcohol': 500 of its 500" in line


# -- fields without values, data without rows -----------------------------------------------


def rows_where(n: int, **columns: list[Any]) -> dict[str, list[Any]]:
    """``training_rows(n)`` with the given columns replaced."""
    return training_rows(n) | columns


def write_parquet(path: Path, columns: dict[str, Any]) -> Path:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.table(columns), path)
    return path


def empty_parquet(path: Path) -> Path:
    pa = pytest.importorskip("pyarrow")
    types = {
        "alcohol": pa.float64(),
        "ash": pa.float64(),
        "region": pa.string(),
        "class": pa.string(),
    }
    return write_parquet(path, {name: pa.array([], kind) for name, kind in types.items()})


def null_parquet(path: Path, nulls: Any) -> Path:
    pa = pytest.importorskip("pyarrow")
    return write_parquet(path, rows_where(300, alcohol=pa.array([nulls] * 300, pa.float64())))


EMPTY_DATA = {
    "csv-all-missing": (
        lambda d: write_csv(d / "t.csv", rows_where(300, alcohol=[None] * 300)),
        "numeric field 'alcohol' has no finite value (300 missing, 0 NaN, 0 inf): "
        "remove it from the config or fix the data (no baseline written)",
    ),
    "csv-all-inf": (
        lambda d: write_csv(d / "t.csv", rows_where(300, alcohol=["inf", "-inf", ""] * 100)),
        "numeric field 'alcohol' has no finite value (100 missing, 0 NaN, 200 inf)",
    ),
    "csv-empty-category": (
        lambda d: write_csv(d / "t.csv", rows_where(300, region=[None] * 300)),
        "categorical field 'region' has no value (300 missing): remove it from the config "
        "or fix the data (no baseline written)",
    ),
    "csv-two-fields": (
        lambda d: write_csv(d / "t.csv", rows_where(300, ash=[None] * 300, region=[None] * 300)),
        "numeric field 'ash' has no finite value (300 missing, 0 NaN, 0 inf); categorical field "
        "'region' has no value (300 missing): remove them from the config or fix the data",
    ),
    "csv-header-only": (
        lambda d: write_csv(d / "t.csv", rows_where(0)),
        "holds no rows (no baseline written)",
    ),
    "parquet-all-null": (
        lambda d: null_parquet(d / "t.parquet", None),
        "numeric field 'alcohol' has no finite value (300 missing, 0 NaN, 0 inf)",
    ),
    "parquet-all-nan": (
        lambda d: null_parquet(d / "t.parquet", float("nan")),
        "numeric field 'alcohol' has no finite value (0 missing, 300 NaN, 0 inf)",
    ),
    "parquet-no-rows": (
        lambda d: empty_parquet(d / "t.parquet"),
        "holds no rows (no baseline written)",
    ),
}


@pytest.mark.parametrize(("make", "needle"), EMPTY_DATA.values(), ids=EMPTY_DATA.keys())
def test_baseline_refuses_data_without_values_to_bin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: Any, needle: str
) -> None:
    """No rows, or a field without a value (no finite number, no category), is a data error:
    exit 4, one line naming the file and the fields, nothing written."""
    config = words_config(tmp_path)
    data = make(tmp_path)
    output = tmp_path / "baseline.dgb"
    code = cli.main(["baseline", "-c", str(config), "--data", str(data), "-o", str(output)])
    error = capsys.readouterr().err.strip()
    assert code == 4
    assert "\n" not in error
    assert error.startswith(f"driftgauge: {data}: ")
    assert needle in error
    assert not output.exists()


def library_baseline(tmp_path: Path, columns: dict[str, list[Any]]) -> tuple[Path, Path]:
    """A config and the baseline ``build_baseline`` writes for ``columns`` (it refuses nothing,
    as the command did not before it checked): a baseline file of an older driftgauge."""
    config_path = words_config(tmp_path)
    config = load_config(config_path)
    data = write_csv(tmp_path / "old.csv", columns)
    save_baseline(build_baseline(config, [data]), config.baseline)
    return config_path, config.baseline


@pytest.mark.parametrize(
    ("columns", "needle"),
    [
        (
            rows_where(200, alcohol=[None] * 200),
            "numeric field 'alcohol' has no finite value (200 missing, 0 NaN, 0 inf): rebuild it "
            "from data that has values, or without the field (remove it from the config)",
        ),
        (
            rows_where(200, region=[None] * 200),
            "categorical field 'region' has no value (200 missing): rebuild it",
        ),
        (rows_where(0), "the baseline holds no rows: rebuild it from training data"),
    ],
    ids=["numeric", "categorical", "no-rows"],
)
def test_check_and_serve_refuse_a_baseline_without_values(
    tmp_path: Path, columns: dict[str, list[Any]], needle: str
) -> None:
    """An existing baseline with a field without values fails check and serve (exit 3, one
    line naming the file and the field) instead of serve's IndexError."""
    config, baseline = library_baseline(tmp_path, columns)
    for command in ("check", "serve"):
        line = one_line(run(command, "-c", config), 3)
        assert line.startswith(f"driftgauge: {baseline}: ")
        assert needle in line


def test_check_names_every_model_s_baseline_problem_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With several models, check reports each unusable baseline (one line, exit 3), not the first."""
    raw = base_config(tmp_path)
    block = {key: raw.pop(key) for key in ("model", "protocol", "features", "predictions")}
    del raw["baseline"]
    built = tmp_path / "wine.dgb"
    raw["models"] = [
        {**block, "baseline": str(tmp_path / "red.dgb")},
        {**block, "model": "white", "baseline": str(built)},
        {**block, "model": "rose", "baseline": str(tmp_path / "rose.dgb")},
    ]
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    one = load_config(config).models[1]
    save_baseline(build_baseline(one, [write_csv(tmp_path / "t.csv", training_rows(100))]), built)
    assert cli.main(["check", "-c", str(config)]) == 3
    out, err = capsys.readouterr()
    assert out.startswith(f"ok: {config} model 'white': ") and out.count("\n") == 1
    missing = "no baseline file here; build one with `driftgauge baseline`"
    assert err == (
        f"driftgauge: model 'wine': {tmp_path / 'red.dgb'}: {missing}; "
        f"model 'rose': {tmp_path / 'rose.dgb'}: {missing}\n"
    )


def test_an_output_that_is_a_folder_is_refused_before_the_build(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`-o baselines/` (as `rules -o rules/`) is one line at once, exit 3, not after a long build."""
    config = words_config(tmp_path)
    data = write_csv(tmp_path / "t.csv", training_rows(100))
    folder = tmp_path / "baselines"
    folder.mkdir()

    def build(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the build ran")

    monkeypatch.setattr("driftgauge.baseline.build_baseline", build)
    code = cli.main(["baseline", "-c", str(config), "--data", str(data), "-o", str(folder)])
    assert code == 3
    assert capsys.readouterr().err.strip() == (
        f"driftgauge: {folder}: cannot write the baseline: it is a folder; name a file in it,"
        f" such as {folder / 'config.dgb'}"
    )


def test_merge_refuses_one_build_named_twice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A part named twice (or by a link) would count its rows twice: exit 3; a copy is merged."""
    config = words_config(tmp_path)
    part = tmp_path / "part.dgb"
    save_baseline(
        build_baseline(load_config(config), [write_csv(tmp_path / "t.csv", training_rows(100))]),
        part,
    )
    link = tmp_path / "link.dgb"
    link.symlink_to(part)
    output = tmp_path / "merged.dgb"
    for second in (part, link, tmp_path / "." / "part.dgb"):
        code = cli.main(
            ["baseline", "merge", "-c", str(config), str(part), str(second), "-o", str(output)]
        )
        error = capsys.readouterr().err.strip()
        assert code == 3 and "\n" not in error
        assert error == (
            f"driftgauge: {second}: the same file as {part}: its rows would count twice"
            " (no baseline written)"
        )
        assert not output.exists()
    copy = tmp_path / "copy.dgb"
    copy.write_bytes(part.read_bytes())
    assert (
        cli.main(["baseline", "merge", "-c", str(config), str(part), str(copy), "-o", str(output)])
        == 0
    )


def test_merge_refuses_a_result_without_values_but_not_parts_without(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Parts may lack a field's values; a merged baseline without any is refused (exit 3)."""
    config = words_config(tmp_path)
    loaded = load_config(config)
    parts = {}
    for name, columns in {
        "empty": rows_where(100, alcohol=[None] * 100),
        "also-empty": rows_where(50, alcohol=["inf"] * 50),
        "full": training_rows(100),
        "no-rows": rows_where(0),
    }.items():
        parts[name] = tmp_path / f"{name}.dgb"
        data = write_csv(tmp_path / f"{name}.csv", columns)
        save_baseline(build_baseline(loaded, [data]), parts[name])

    def merge(*names: str) -> tuple[int, str]:
        inputs = [str(parts[name]) for name in names]
        output = str(tmp_path / "merged.dgb")
        code = cli.main(["baseline", "merge", "-c", str(config), *inputs, "-o", output])
        return code, capsys.readouterr().err.strip()

    assert merge("empty", "full") == (0, "")
    (tmp_path / "merged.dgb").unlink()
    code, error = merge("empty", "also-empty")
    assert code == 3 and "\n" not in error
    assert error == (
        f"driftgauge: {parts['empty']}, {parts['also-empty']}: numeric field 'alcohol' has no "
        "finite value (100 missing, 0 NaN, 50 inf): remove it from the config or rebuild the "
        "parts from data that has values (no baseline written)"
    )
    assert not (tmp_path / "merged.dgb").exists()
    assert merge("no-rows", "no-rows")[1].endswith(
        ": the baselines hold no rows (no baseline written)"
    )


# -- listeners -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["source.proxy.listen", "source.cloudevents.listen", "metrics.listen"]
)
def test_serve_on_a_port_in_use_ends_at_once_naming_the_listener(tmp_path: Path, key: str) -> None:
    """A listener's port held by another process: serve exits 1 within seconds with one
    driftgauge line naming the key and the address (a busy proxy port used to hang it)."""
    ports = {name: free_port() for name in ("source", "metrics")}
    kind = key.split(".")[1] if key.startswith("source.") else "proxy"
    source: dict[str, Any] = {"listen": f"127.0.0.1:{ports['source']}"}
    if kind == "proxy":
        source["upstream"] = "http://127.0.0.1:9"
    raw = base_config(
        tmp_path,
        source={kind: source},
        metrics={"listen": f"127.0.0.1:{ports['metrics']}"},
    )
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    config = load_config(config_path)
    save_baseline(
        build_baseline(config, [write_csv(tmp_path / "t.csv", training_rows(200))]),
        config.baseline,
    )
    busy = ports["metrics" if key == "metrics.listen" else "source"]
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", busy))
        holder.listen()
        result = subprocess.run(
            [*CLI, "serve", "-c", str(config_path)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    ours = [line for line in result.stderr.splitlines() if line.startswith("driftgauge:")]
    assert ours == [f"driftgauge: {key} 127.0.0.1:{busy}: Address already in use"]
