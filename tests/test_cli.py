"""The driftgauge command as a user runs it: real processes, real files, real HTTP."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

import numpy as np
import pytest
import yaml

from driftgauge.baseline import load_baseline
from tests.helpers import (
    answers_ok,
    base_config,
    scrape,
    series,
    training_rows,
    wait_for,
    write_csv,
)

CLI = [sys.executable, "-m", "driftgauge.cli"]


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, timeout=120, check=False, cwd=cwd
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A config, a training CSV and its built baseline in tmp_path."""
    config = base_config(tmp_path, baseline="baseline.dgb")
    config["source"]["tail"]["state_file"] = str(tmp_path / "tail.state")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    write_csv(tmp_path / "train.csv", training_rows(4_000))
    result = run(
        "baseline",
        "-c",
        tmp_path / "config.yaml",
        "--data",
        tmp_path / "train.csv",
        "-o",
        tmp_path / "baseline.dgb",
    )
    assert result.returncode == 0, result.stderr
    assert "4,000 rows" in result.stdout
    return tmp_path


def _one_line_error(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert result.returncode == code, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0]


def test_check_accepts_a_matching_config_and_baseline(project: Path) -> None:
    """check exits 0 and says what it checked."""
    result = run("check", "-c", project / "config.yaml")
    assert result.returncode == 0, result.stderr
    assert "ok:" in result.stdout
    assert "4,000 rows" in result.stdout
    assert "(3 features, 1 prediction, protocol kserve-v1)" in result.stdout  # one: singular


def test_a_baseline_of_one_row_is_counted_in_the_singular(project: Path) -> None:
    """A one-row training file (a smoke test) was 'wrote one.dgb: 1 rows', 'ok: ... 1 rows'
    and 'baseline merge' 'from 1 baselines'; counts now take the singular for one."""
    write_csv(project / "one.csv", training_rows(1))
    config = project / "config.yaml"
    built = run("baseline", "-c", config, "--data", project / "one.csv", "-o", project / "one.dgb")
    assert built.returncode == 0, built.stderr
    assert ": 1 row, 4 fields, id " in built.stdout
    merged = run("baseline", "merge", "-c", config, project / "one.dgb", "-o", project / "m.dgb")
    assert ": 1 row from 1 baseline, id " in merged.stdout, merged.stderr
    raw = yaml.safe_load(config.read_text())
    (project / "one.yaml").write_text(yaml.safe_dump(raw | {"baseline": "one.dgb"}))
    checked = run("check", "-c", project / "one.yaml")
    assert "one.dgb (id " in checked.stdout and ", 1 row)" in checked.stdout, checked.stderr


def test_check_reports_bad_config_keys_in_one_line(project: Path) -> None:
    """A bad config gives exit 2 and one line naming the file and keys."""
    raw = yaml.safe_load((project / "config.yaml").read_text())
    raw["windows"] = ["5 minutes"]
    raw["features"][0]["type"] = "float"
    (project / "bad.yaml").write_text(yaml.safe_dump(raw))
    _one_line_error(
        run("check", "-c", project / "bad.yaml"), 2, "bad.yaml", "windows[0]", "features[0].type"
    )


def test_check_reports_a_mismatched_baseline(project: Path) -> None:
    """A baseline built for other fields gives exit 3 naming the field."""
    raw = yaml.safe_load((project / "config.yaml").read_text())
    raw["features"].append({"name": "hue", "type": "numeric"})
    (project / "more.yaml").write_text(yaml.safe_dump(raw))
    _one_line_error(run("check", "-c", project / "more.yaml"), 3, "baseline.dgb", "'hue'")


def test_missing_baseline_and_unreadable_data(project: Path) -> None:
    """A missing baseline (exit 3) and a missing data file (exit 4) are one-line errors."""
    _one_line_error(run("inspect", project / "nope.dgb"), 3, "nope.dgb")
    result = run(
        "baseline",
        "-c",
        project / "config.yaml",
        "--data",
        project / "nope.csv",
        "-o",
        project / "x.dgb",
    )
    _one_line_error(result, 4, "nope.csv")


def test_baseline_never_writes_over_its_config_or_training_data(project: Path) -> None:
    """-o naming the training file (directly or through a glob) or the config, a slip of
    argument order, replaced it with the gzipped baseline; it is refused, the file kept, and
    rebuilding over an existing baseline still works. A config named model.dgb was told to
    write its baseline to 'such as model.dgb', itself."""
    config, train = project / "config.yaml", project / "train.csv"
    kept = {path: path.read_bytes() for path in (config, train)}
    for data, output in ((train, train), (project / "*.csv", train), (train, config)):
        result = run("baseline", "-c", config, "--data", data, "-o", output)
        _one_line_error(result, 1, f"{output}: -o names ", "a file of its own")
    merged = run("baseline", "merge", "-c", config, project / "baseline.dgb", "-o", config)
    _one_line_error(merged, 1, f"{config}: -o names the config file")
    dgb = project / "model.dgb"  # a config named as a baseline: another name is suggested
    dgb.write_bytes(kept[config])
    result = run("baseline", "-c", dgb, "--data", train, "-o", dgb)
    _one_line_error(result, 1, f"{dgb}: -o names the config file", "such as model-baseline.dgb")
    assert {path: path.read_bytes() for path in kept} == kept
    again = run("baseline", "-c", config, "--data", train, "-o", project / "baseline.dgb")
    assert again.returncode == 0, again.stderr


def test_inspect_prints_every_field(project: Path) -> None:
    """inspect shows rows, each field with its type, quantiles and categories."""
    result = run("inspect", project / "baseline.dgb")
    assert result.returncode == 0, result.stderr
    for text in (
        "rows 4,000",
        "alcohol  (numeric input",
        "region  (categorical input",
        "p50",
        "north",
    ):
        assert text in result.stdout


def test_baseline_merge_command(project: Path) -> None:
    """`baseline merge` joins two baselines into one holding all their rows."""
    columns = training_rows(4_000, seed=1)
    write_csv(project / "more.csv", columns)
    config = project / "config.yaml"
    assert (
        run(
            "baseline", "-c", config, "--data", project / "more.csv", "-o", project / "more.dgb"
        ).returncode
        == 0
    )
    result = run(
        "baseline",
        "merge",
        "-c",
        config,
        project / "baseline.dgb",
        project / "more.dgb",
        "-o",
        project / "all.dgb",
    )
    assert result.returncode == 0, result.stderr
    assert "8,000 rows from 2 baselines" in result.stdout
    assert "rows 8,000" in run("inspect", project / "all.dgb").stdout


@contextmanager
def serving(
    project: Path, command: Sequence[str] = CLI
) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """``command`` + ``serve`` on the project's config and its metrics port, always stopped
    afterwards."""
    port = int(
        yaml.safe_load((project / "config.yaml").read_text())["metrics"]["listen"].rsplit(":", 1)[1]
    )
    process = subprocess.Popen(
        [*command, "serve", "-c", str(project / "config.yaml")], stderr=subprocess.PIPE, text=True
    )
    try:
        yield process, port
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        assert process.stderr is not None
        process.stderr.close()


@pytest.fixture
def serve(project: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """`driftgauge serve` on the project's config, always stopped afterwards."""
    with serving(project) as running:
        yield running


def _log_records(path: Path, n: int, start: int, shift: float = 0.0) -> None:
    columns = training_rows(n, seed=start)
    with path.open("a") as handle:
        for i in range(0, n, 10):
            instances = [
                {
                    "alcohol": columns["alcohol"][j] + shift,
                    "ash": columns["ash"][j],
                    "region": columns["region"][j],
                }
                for j in range(i, min(i + 10, n))
            ]
            predictions = [{"class": columns["class"][j]} for j in range(i, min(i + 10, n))]
            record = {
                "ts": time.time(),
                "id": f"r{start}-{i}",
                "request": {"instances": instances},
                "response": {"predictions": predictions},
            }
            handle.write(json.dumps(record) + "\n")
        handle.write("this is not json\n")


def test_serve_tails_a_log_and_exposes_drift(
    project: Path, serve: tuple[subprocess.Popen[str], int]
) -> None:
    """serve follows the request log, exports drift on /metrics, and exits 0 on SIGTERM with one
    line saying what it saved."""
    process, port = serve
    wait_for(lambda: answers_ok(f"http://127.0.0.1:{port}/readyz"))
    _log_records(project / "requests.jsonl", 2_000, start=11, shift=1.0)
    labels = {"model": "wine", "role": "input", "window": "5m"}
    alcohol, ash = {"feature": "alcohol"} | labels, {"feature": "ash"} | labels
    wait_for(lambda: scrape(port).get(series("driftgauge_window_observations", **alcohol)) == 2_000)
    wait_for(lambda: series("driftgauge_psi", **alcohol) in scrape(port))
    samples = scrape(port)
    floor = samples[series("driftgauge_psi_noise_floor", **alcohol)]
    assert samples[series("driftgauge_psi", **alcohol)] > 50 * floor
    assert samples[series("driftgauge_psi", **ash)] < 5 * floor
    assert samples[series("driftgauge_source_parse_errors_total", reason="invalid_json")] == 1
    assert (
        samples[series("driftgauge_parse_errors_total", model="wine", reason="invalid_json")] == 0
    )
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=15) == 0
    assert process.stderr is not None
    stopped = [line for line in process.stderr.read().splitlines() if "stopped: " in line]
    assert len(stopped) == 1
    assert stopped[0].endswith("stopped: no state snapshot (state.directory is not set)")
    state = json.loads((project / "tail.state").read_text())
    assert state["offset"] == (project / "requests.jsonl").stat().st_size


def _edges_and_bins(path: Path) -> dict[str, tuple[list[float], list[int]]]:
    fields = load_baseline(path).fields
    return {
        name: (list(getattr(f.summary.binning, "edges", [])), list(f.summary.bins))
        for name, f in fields.items()
    }


# `driftgauge baseline` and `serve` with pyarrow unimportable, as in an image that removed it (Dockerfile).
WITHOUT_PYARROW = """
import sys


class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "pyarrow":
            raise ImportError(f"{name} is blocked")


sys.meta_path.insert(0, Blocked())
from driftgauge.cli import main

sys.exit(main(sys.argv[1:]))
"""


def test_baseline_and_serve_run_without_pyarrow(project: Path) -> None:
    """The sidecar never imports pyarrow (a baseline dependency an image may leave out), and
    `baseline` then reads CSV with the standard library: the same edges and counts."""
    config, data = project / "config.yaml", project / "train.csv"
    out = project / "stdlib.dgb"
    built = subprocess.run(
        [
            sys.executable,
            "-c",
            WITHOUT_PYARROW,
            "baseline",
            "-c",
            config,
            "--data",
            data,
            "-o",
            out,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    assert "4,000 rows" in built.stdout
    reference = _edges_and_bins(project / "baseline.dgb")
    assert any(edges for edges, _ in reference.values())  # numeric fields have edges
    assert _edges_and_bins(out) == reference
    with serving(project, [sys.executable, "-c", WITHOUT_PYARROW]) as (process, port):
        wait_for(lambda: answers_ok(f"http://127.0.0.1:{port}/readyz"))
        _log_records(project / "requests.jsonl", 200, start=3)
        labels = {"model": "wine", "role": "input", "window": "5m", "feature": "alcohol"}
        wait_for(
            lambda: scrape(port).get(series("driftgauge_window_observations", **labels)) == 200
        )
        wait_for(lambda: series("driftgauge_psi", **labels) in scrape(port))
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        assert process.stderr is not None
        errors = process.stderr.read()
    assert "blocked" not in errors, errors


def test_serve_fails_fast_on_a_bad_baseline(project: Path) -> None:
    """serve with a corrupt baseline exits 3 with one line, before listening."""
    (project / "baseline.dgb").write_bytes(b"\x1f\x8b garbage")
    _one_line_error(run("serve", "-c", project / "config.yaml"), 3, "baseline.dgb", "corrupt")


def test_no_traceback_on_a_busy_port(project: Path) -> None:
    """A metrics port already in use is a one-line error."""
    import socket

    port = int(
        yaml.safe_load((project / "config.yaml").read_text())["metrics"]["listen"].rsplit(":", 1)[1]
    )
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        result = run("serve", "-c", project / "config.yaml")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "address" in result.stderr.lower()


def test_demo_detects_exactly_the_drifted_features() -> None:
    """The demo, shortened, names exactly the features it drifted and exits 0."""
    env = dict(os.environ)
    result = subprocess.run(
        [*CLI, "demo", "--duration", "40"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "detected exactly the drifted features" in result.stdout
    assert "drifted inputs found:    alcohol, color_intensity, region" in result.stdout


@pytest.mark.parametrize(
    ("option", "value"),
    [("--metrics-port", "99999"), ("--duration", "nan"), ("--duration", "-5")],
)
def test_demo_refuses_a_bad_port_or_duration_before_starting(option: str, value: str) -> None:
    """A port beyond 65535 (a bind() traceback), a NaN duration (an instant run reporting a
    mismatch) or a negative one (a run without end) is a usage error naming the option."""
    result = subprocess.run(
        [*CLI, "demo", option, value], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2, result.stdout[-500:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    last = result.stderr.strip().splitlines()[-1]
    assert f"argument {option}" in last and repr(value) in last


def test_baseline_workers_give_the_same_file_content(project: Path) -> None:
    """`--workers 1` and `--workers 2` write the same edges and counts; a bad count is one line."""
    write_csv(project / "big.csv", training_rows(60_000, seed=3))
    written = {}
    for workers in ("1", "2"):
        out = project / f"w{workers}.dgb"
        result = run(
            "baseline", "-c", project / "config.yaml", "--data", project / "big.csv",
            "-o", out, "--workers", workers,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        built = load_baseline(out)
        written[workers] = {
            name: (getattr(held.summary.binning, "edges", np.empty(0)).tolist(),
                   held.summary.bins.tolist())
            for name, held in built.fields.items()
        }  # fmt: skip
    assert written["1"] == written["2"]
    bad = run(
        "baseline", "-c", project / "config.yaml", "--data", project / "big.csv",
        "-o", project / "x.dgb", "--workers", "0",
    )  # fmt: skip
    assert bad.returncode == 2 and "--workers" in bad.stderr and "Traceback" not in bad.stderr


def _wide_training_csv(path: Path, columns: int, megabytes: int) -> Path:
    """A CSV of ``columns`` numeric columns, about ``megabytes`` large (one block repeated)."""
    rows = np.random.default_rng(5).normal(13.0, 0.8, (20_000, columns)).round(3)
    block = "".join(",".join(map(str, row)) + "\n" for row in rows.tolist())
    with path.open("w", encoding="utf-8") as handle:
        handle.write(",".join(f"x{i}" for i in range(columns)) + "\n")
        for _ in range(megabytes * 1_000_000 // len(block) + 1):
            handle.write(block)
    return path


@pytest.mark.serial  # catches the build while it runs: a loaded machine may miss it
@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_stops_a_baseline_build_like_ctrl_c(tmp_path: Path, workers: int) -> None:
    """SIGTERM mid-build: exit 143 with one line, no worker left running, no spill directory."""
    psutil = pytest.importorskip("psutil")
    columns = 12
    raw = base_config(tmp_path, baseline="baseline.dgb")
    raw["features"] = [{"name": f"x{i}", "type": "numeric"} for i in range(columns - 1)]
    raw["predictions"] = [{"name": f"x{columns - 1}", "type": "numeric"}]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw))
    data = _wide_training_csv(tmp_path / "train.csv", columns, megabytes=40)
    spill = tmp_path / "tmp"
    spill.mkdir()
    process = subprocess.Popen(
        [*CLI, "baseline", "-c", str(tmp_path / "config.yaml"), "--data", str(data),
         "-o", str(tmp_path / "out.dgb"), "--workers", str(workers)],
        stderr=subprocess.PIPE, text=True, env=os.environ | {"TMPDIR": str(spill)},
    )  # fmt: skip
    children = []
    try:
        parent = psutil.Process(process.pid)
        # Building: its spill directory exists and, with a pool, its workers are running.
        wait_for(lambda: any(spill.iterdir()), timeout=60, interval=0.02, what="spill directory")
        if workers > 1:
            wait_for(
                lambda: len(parent.children()) == workers, timeout=60, interval=0.02, what="workers"
            )
        children = parent.children(recursive=True)
        assert process.poll() is None, "the build ended before the signal"
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
        assert len(children) == (workers if workers > 1 else 0)
        # Before reading stderr: a worker left running would hold the pipe open.
        wait_for(lambda: not any(c.is_running() for c in children), timeout=10, what="workers gone")
        assert process.stderr is not None
        lines = [line for line in process.stderr.read().splitlines() if line.strip()]
        assert (code, lines) == (143, ["driftgauge: baseline: stopped by SIGTERM"])
        assert list(spill.iterdir()) == []
        assert not (tmp_path / "out.dgb").exists()
    finally:
        for running in [process, *children]:
            with suppress(psutil.NoSuchProcess):
                running.kill()
        process.wait(timeout=10)
        assert process.stderr is not None
        process.stderr.close()


@pytest.mark.parametrize(
    ("mask", "expected"), [(0o022, 0o644), (0o077, 0o600)], ids=["umask-022", "umask-077"]
)
def test_a_baseline_file_is_readable_as_the_umask_allows(
    project: Path, mask: int, expected: int
) -> None:
    """The baseline gets 0666 less the umask, as other files do: a baseline built by one user can
    be read by a sidecar running as another (it was 0600 whatever the umask)."""
    out = project / "shared.dgb"
    result = subprocess.run(
        [*CLI, "baseline", "-c", str(project / "config.yaml"), "--data", str(project / "train.csv"),
         "-o", str(out)],
        capture_output=True, text=True, timeout=120, check=False, umask=mask,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(out.stat().st_mode) == expected


def test_python_dash_m_driftgauge_is_the_command() -> None:
    """`python -m driftgauge` runs the CLI, as `python -m driftgauge.cli` and `driftgauge` do."""
    done = subprocess.run(
        [sys.executable, "-m", "driftgauge", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: driftgauge")


def test_a_reader_that_leaves_ends_the_command_quietly(project: Path) -> None:
    """driftgauge inspect ... | head -1: once the reader is gone the command stops with 141, as
    a program the SIGPIPE ends, and says nothing (it printed "driftgauge: Broken pipe", exit 1)."""
    command = [*CLI, "inspect", str(project / "baseline.dgb")]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        assert process.stdout is not None and process.stderr is not None
        process.stdout.close()  # the reader left before the first line
        error = process.stderr.read()
        assert process.wait(timeout=120) == 141
    assert error == b""
