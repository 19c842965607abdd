"""Snapshots of live state: round trip, atomic replacement, bad snapshots, real restarts."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from driftgauge.baseline import Baseline, load_baseline
from driftgauge.config import Config, load_config
from driftgauge.monitor import Monitor
from driftgauge.monitor.pending import PendingRows
from driftgauge.runtime.state import StateStore, pack, state_file_name, stray_snapshots, unpack
from driftgauge.sketches import NumericSummary
from driftgauge.typing import Extracted
from tests.feedback_support import (
    Pipeline,
    as_format_2,
    build,
    classifier_columns,
    instances,
    record,
    running,
    wire,
)
from tests.helpers import base_config, scrape, series, training_rows, wait_for, write_csv

NOW = 1_800_000_000.0
# Files an earlier driftgauge wrote, each made once by the tree at the commit its test names.
DATA = Path(__file__).parent / "data"


def _monitor(config: Config, baseline: Baseline) -> Monitor:
    return Monitor(config, baseline, clock=lambda: NOW)


def _feed(monitor: Monitor, n: int, seed: int) -> None:
    columns = training_rows(n, seed)
    monitor.ingest([Extracted(n, columns)], now=NOW - 5)


def test_round_trip_restores_every_window(
    tmp_path: Path, make_config: Callable[..., Config], make_baseline: Callable[..., Baseline]
) -> None:
    """A restored monitor computes the same window counts, bins and quantiles."""
    config = make_config()
    baseline = make_baseline(config, 3_000)
    before = _monitor(config, baseline)
    _feed(before, 2_000, 1)
    StateStore(tmp_path / "state", before).save()
    after = _monitor(config, baseline)
    assert StateStore(tmp_path / "state", after).restore()
    old, new = before.merged_windows(NOW), after.merged_windows(NOW)
    for label in old:
        for name, summary in old[label].items():
            restored = new[label][name]
            assert restored.count == summary.count == 2_000
            assert np.array_equal(restored.bins, summary.bins)
            if isinstance(summary, NumericSummary):
                assert isinstance(restored, NumericSummary)
                assert restored.kll.get_quantile(0.5) == summary.kll.get_quantile(0.5)
    assert before.compute(NOW).fields == after.compute(NOW).fields


def test_what_a_save_killed_midway_left_is_removed_and_the_snapshot_restored(
    tmp_path: Path,
    make_config: Callable[..., Config],
    make_baseline: Callable[..., Baseline],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each save writes a temporary of its own name: those of saves a kill -9 interrupted are
    removed at the next start (one log line), and the snapshot beside them is restored."""
    from driftgauge import atomic

    config = make_config()
    baseline = make_baseline(config, 1_000)
    monitor = _monitor(config, baseline)
    _feed(monitor, 500, 2)
    store = StateStore(tmp_path / "state", monitor)
    store.save()
    for _ in range(2):
        descriptor, _temporary = atomic._create_temporary(store.path, 0o600)
        os.close(descriptor)
    assert len(list(store.directory.iterdir())) == 3
    restarted = StateStore(store.directory, _monitor(config, baseline))
    with caplog.at_level("INFO", logger="driftgauge.runtime.state"):
        restarted.tidy()
        assert restarted.restore()
    assert list(store.directory.iterdir()) == [store.path]
    assert "removed 2 unfinished snapshot file(s)" in caplog.text


@pytest.mark.parametrize(
    "damage",
    [
        "truncate",
        "garbage",
        "flipped_byte",
        "version",
        "other_baseline",
        "blob_outside",
        "sketch_bytes",
        "windows_not_a_table",
    ],
)
def test_bad_snapshots_are_moved_aside(
    tmp_path: Path,
    make_config: Callable[..., Config],
    make_baseline: Callable[..., Baseline],
    damage: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A corrupt, foreign or outdated snapshot is moved aside and the monitor starts empty."""
    config = make_config()
    baseline = make_baseline(config, 1_000)
    monitor = _monitor(config, baseline)
    _feed(monitor, 500, 2)
    store = StateStore(tmp_path / "state", monitor)
    store.save()
    data = store.path.read_bytes()
    if damage == "truncate":
        store.path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        store.path.write_bytes(b"not a snapshot")
    elif damage == "flipped_byte":  # inside the deflate stream: zlib.error, not an OSError
        store.path.write_bytes(data[:10] + bytes([data[10] ^ 0xFF]) + data[11:])
    elif damage == "blob_outside":  # names bytes past the end of the file
        document = unpack(data) | {"windows": {"$blob": [0, 10]}}
        store.path.write_bytes(gzip.compress(json.dumps(document).encode()))
    elif damage == "sketch_bytes":  # a KLL sketch cut short: datasketches raises IndexError
        document = unpack(data)
        for piece in document["windows"]["5m"]:
            piece["entries"]["alcohol"]["kll"] = "AAAA"
        store.path.write_bytes(pack(document))
    elif damage == "windows_not_a_table":
        store.path.write_bytes(pack(unpack(data) | {"windows": []}))
    else:
        document = unpack(data)
        document["format_version" if damage == "version" else "baseline_id"] = 99
        store.path.write_bytes(pack(document))
    fresh = _monitor(config, baseline)
    unusable = StateStore(tmp_path / "state", fresh)
    assert not unusable.restore()
    assert store.path.exists()  # moved aside once the sidecar serves: tidy()
    unusable.tidy()
    assert not store.path.exists()
    assert len(list((tmp_path / "state").glob("*.corrupt-*"))) == 1
    assert fresh.merged_windows(NOW)["5m"]["alcohol"].count == 0
    assert "moved to" in caplog.text


def test_save_replaces_atomically(
    tmp_path: Path, make_config: Callable[..., Config], make_baseline: Callable[..., Baseline]
) -> None:
    """Saving leaves exactly one snapshot file and no temporary files behind."""
    config = make_config()
    monitor = _monitor(config, make_baseline(config, 500))
    store = StateStore(tmp_path / "state", monitor)
    for seed in range(3):
        _feed(monitor, 100, seed)
        store.save()
    assert [p.name for p in (tmp_path / "state").iterdir()] == [store.path.name]


def test_snapshots_are_readable_by_their_owner_only(
    tmp_path: Path,
    make_config: Callable[..., Config],
    make_baseline: Callable[..., Baseline],
    umask: Callable[[int], int],
) -> None:
    """A snapshot holds what live requests carried: 0600 even where a baseline would be 0644."""
    config = make_config()
    monitor = _monitor(config, make_baseline(config, 500))
    store = StateStore(tmp_path / "state", monitor)
    _feed(monitor, 100, 0)
    umask(0o022)
    store.save()
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


def _holding(tmp_path: Path) -> tuple[Pipeline, StateStore]:
    """A classifier pipeline with segments holding 41 predictions (one without P(a)), saved."""
    config, baseline = build(tmp_path, segments={"features": ["region"], "top": 2})
    pipeline = wire(config, baseline, lambda: NOW)
    columns = classifier_columns(41, seed=4)
    pipeline.batcher.ingest([record(instances(columns, 0, 40), "batch")])
    lone = record(instances(columns, 40, 41), "lone")
    lone.response["predictions"][0]["p_a"] = None
    pipeline.batcher.ingest([lone])
    store = StateStore(tmp_path / "state", pipeline.monitor)
    store.save()
    return pipeline, store


def test_held_predictions_survive_a_restart(tmp_path: Path) -> None:
    """Predictions awaiting labels are restored with their segments: labels after a restart join."""
    before, store = _holding(tmp_path)
    after = wire(before.config, before.monitor.baseline, lambda: NOW)
    assert StateStore(store.directory, after.monitor).restore()
    assert after.outcomes.pending == before.outcomes.pending == 41
    pairs = [(f"batch:{i}", "abc"[i % 3]) for i in range(40)] + [("lone:0", "a")]
    expected = {"matched": 41, "unmatched": 0, "invalid": 0}
    assert before.outcomes.label(pairs) == after.outcomes.label(pairs) == expected
    assert after.outcomes.performance(NOW) == before.outcomes.performance(NOW)
    assert any(p.segment for p in after.outcomes.performance(NOW))


def test_damaged_held_predictions_are_moved_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Held predictions that do not decode make the whole snapshot unusable, nothing half-applied."""
    before, store = _holding(tmp_path)
    document = unpack(store.path.read_bytes())
    document["pending"]["ids"] = ["one id for 41 rows"]
    store.path.write_bytes(pack(document))
    after = wire(before.config, before.monitor.baseline, lambda: NOW)
    unusable = StateStore(store.directory, after.monitor)
    assert not unusable.restore()
    unusable.tidy()
    assert after.outcomes.pending == 0
    assert after.monitor.merged_windows(NOW)["5m"]["alcohol"].count == 0
    assert "held predictions" in caplog.text


def _format_1(held: PendingRows) -> list[list[Any]]:
    """Held predictions as format 1 listed them: [id, ts, predicted, probability, segments]."""
    return [
        [key, ts, predicted, str(chance) if chance != chance else chance, codes]  # NaN as text
        for key, ts, predicted, chance, codes in zip(
            held.ids,
            held.ts.tolist(),
            held.predicted.tolist(),
            held.probability.tolist(),
            held.segments.tolist(),
            strict=True,
        )
    ]


@pytest.mark.parametrize("version", [1, 2])
def test_held_predictions_of_earlier_formats_are_read_after_an_upgrade(
    tmp_path: Path, version: int
) -> None:
    """A snapshot of an earlier format (held predictions as rows, or base64 in the JSON text,
    a file with no bytes after it) restores, and labels join."""
    before, store = _holding(tmp_path)
    document = unpack(store.path.read_bytes())
    held = before.outcomes.copy_held()
    document["format_version"] = version
    if version == 1:
        document["pending"] = _format_1(held)
    else:
        document["pending"] = as_format_2(document["pending"])
    store.path.write_bytes(gzip.compress(json.dumps(document).encode()))
    after = wire(before.config, before.monitor.baseline, lambda: NOW)
    assert StateStore(store.directory, after.monitor).restore()
    restored = after.outcomes.copy_held()
    assert restored.ids == held.ids
    for column in ("ts", "predicted", "probability", "segments"):
        assert np.array_equal(getattr(restored, column), getattr(held, column), equal_nan=True)
    pairs = [(f"batch:{i}", "abc"[i % 3]) for i in range(40)] + [("lone:0", "a")]
    assert before.outcomes.label(pairs) == after.outcomes.label(pairs)
    assert after.outcomes.performance(NOW) == before.outcomes.performance(NOW)


WINDOW = series(
    "driftgauge_window_observations", feature="alcohol", model="wine", role="input", window="5m"
)


def _append_log(path: Path, n: int, seed: int) -> None:
    columns = training_rows(n, seed)
    with path.open("a") as handle:
        for i in range(n):
            row = {name: columns[name][i] for name in ("alcohol", "ash", "region")}
            record = {
                "id": f"{seed}-{i}",
                "request": {"instances": [row]},
                "response": {"predictions": [{"class": "a"}]},
            }
            handle.write(json.dumps(record) + "\n")


def _serving_state(tmp_path: Path, raw: dict[str, Any]) -> tuple[list[str], int]:
    """``raw`` written as config.yaml with its baseline built: the serve command and metrics port."""
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(raw))
    write_csv(tmp_path / "train.csv", training_rows(2_000))
    command = [sys.executable, "-m", "driftgauge.cli"]
    subprocess.run(
        [
            *command,
            "baseline",
            "-c",
            str(tmp_path / "config.yaml"),
            "--data",
            str(tmp_path / "train.csv"),
            "-o",
            str(tmp_path / "baseline.dgb"),
        ],
        check=True,
        capture_output=True,
    )
    port = int(raw["metrics"]["listen"].rsplit(":", 1)[1])
    return [*command, "serve", "-c", str(tmp_path / "config.yaml")], port


@pytest.mark.parametrize(
    ("stop", "offset_file"), [("sigterm", True), ("sigkill", True), ("sigterm", False)]
)
def test_restart_keeps_the_windows(tmp_path: Path, stop: str, offset_file: bool) -> None:
    """After SIGTERM nothing is lost; after kill -9 at most one snapshot interval is; no line
    is counted twice, with or without ``source.tail.state_file``."""
    raw = base_config(
        tmp_path, baseline="baseline.dgb", state={"directory": "state", "interval": "1s"}
    )
    if offset_file:
        raw["source"]["tail"]["state_file"] = str(tmp_path / "tail.offset")
    serve, port = _serving_state(tmp_path, raw)
    log = tmp_path / "requests.jsonl"
    _append_log(log, 600, 1)
    first = subprocess.Popen(serve, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: scrape(port).get(WINDOW) == 600)
        time.sleep(1.5)  # at least one periodic snapshot after the data arrived
        if stop == "sigterm":
            first.send_signal(signal.SIGTERM)
            assert first.wait(timeout=20) == 0
        else:
            first.kill()
            first.wait(timeout=20)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert (tmp_path / "state" / "wine.state").exists()
    if not offset_file:  # the offset went beside the snapshot, named after the log
        assert (tmp_path / "state" / "requests.jsonl.offset").exists()
    second = subprocess.Popen(serve, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: WINDOW in scrape(port))
        assert scrape(port)[WINDOW] == 600  # restored, and the tail offset means nothing is re-read
        _append_log(log, 100, 2)
        wait_for(lambda: scrape(port).get(WINDOW) == 700)
        time.sleep(0.5)  # a line read twice would show by now
        assert scrape(port)[WINDOW] == 700
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=20) == 0


@pytest.mark.parametrize(
    ("model", "file_name"),
    [
        ("wine", "wine.state"),
        ("wine-v2.1:prod", "wine-v2.1:prod.state"),
        ("od280/od315", "od280%2Fod315.state"),
        ("../../etc/passwd", "%2E.%2F..%2Fetc%2Fpasswd.state"),
        ("..", "%2E..state"),
        ("naïve 100%", "na%C3%AFve%20100%25.state"),
    ],
)
def test_any_model_name_gets_a_state_file_inside_the_directory(model: str, file_name: str) -> None:
    """A model name is percent-encoded into one file name: no separators, no dot files."""
    assert state_file_name(model) == file_name


def test_a_model_name_too_long_for_a_file_name_is_hashed() -> None:
    """Names beyond 200 bytes once encoded become a fixed-length hash, distinct per name."""
    first, second = state_file_name("ü" * 100), state_file_name("ü" * 101)
    assert first != second
    assert first.startswith("model-") and len(first) == len("model-") + 32 + len(".state")


def test_a_snapshot_of_float64_live_sketches_is_read_after_the_upgrade(
    tmp_path: Path,
    make_config: Callable[..., Config],
    make_baseline: Callable[..., Baseline],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A snapshot written while live windows held float64 sketches (no ``kll_items`` mark)
    restores into float32 windows: same counts and bins, quantiles rounded to float32."""
    config = make_config()
    baseline = make_baseline(config, 3_000)
    with monkeypatch.context() as patched:
        patched.setattr("driftgauge.monitor.fields.LIVE_ITEMS", "float64")
        before = _monitor(config, baseline)
        for i in range(3):  # three slices of the shortest window: sealed ones too
            before.ingest([Extracted(700, training_rows(700, 10 + i))], now=NOW - 60 + 25 * i)
        store = StateStore(tmp_path / "state", before)
        store.save()
        old = before.merged_windows(NOW)
    document = unpack(store.path.read_bytes())
    entries = [
        entry
        for window in document["windows"].values()
        for piece in window
        for entry in piece["entries"].values()
    ]
    numeric = [entry for entry in entries if "kll" in entry]
    assert numeric
    assert not any("kll_items" in entry for entry in numeric)  # the format written before
    after = _monitor(config, baseline)
    assert StateStore(tmp_path / "state", after).restore()
    new = after.merged_windows(NOW)
    ranks = [0.05, 0.5, 0.95]
    for label in old:
        for name, summary in old[label].items():
            restored = new[label][name]
            assert restored.count == summary.count > 0
            assert np.array_equal(restored.bins, summary.bins)
            if isinstance(summary, NumericSummary):
                assert isinstance(restored, NumericSummary)
                assert restored.items == "float32"
                assert restored.kll.n == summary.kll.n
                error = summary.kll.normalized_rank_error(False)
                points = summary.kll.get_quantiles(ranks)
                got = np.asarray([restored.kll.get_rank(p, True) for p in points])
                assert np.all(np.abs(got - ranks) <= 2 * error + 1e-6)
    after.ingest([Extracted(100, training_rows(100, 99))], now=NOW)
    assert after.compute(NOW).fields


documents = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(), documents, max_size=5))
@example({"entries": {"$blob": {"kll": "AAAA"}}, "blob": b"x"})  # a feature named "$blob"
@example({"$blob": [0, 1], "blob": b"x"})
def test_pack_round_trips_any_document_with_bytes_anywhere(document: dict[str, Any]) -> None:
    """Every ``bytes`` value, at any depth, comes back as it was; the rest is the same JSON,
    "$blob" keys included."""
    assert unpack(pack(document)) == document


def test_held_predictions_stay_out_of_the_json_text(tmp_path: Path) -> None:
    """Held predictions add a few references to a snapshot's JSON text; their bytes follow it."""
    pipeline, store = _holding(tmp_path)
    columns = classifier_columns(5_000, seed=5)
    pipeline.batcher.ingest([record(instances(columns, 0, 5_000), "many")])
    assert pipeline.outcomes.pending == 5_041
    store.save()
    text = gzip.decompress(store.path.read_bytes())
    end = text.index(b"\n")
    assert len(json.dumps(json.loads(text[:end])["pending"])) < 500
    assert len(text) - end > 5_041 * (8 * 3 + 2)  # three float64 and one int16 column


def test_a_field_named_like_a_blob_reference_restores(tmp_path: Path) -> None:
    """A feature named "$blob" keys a dict of window entries: restored, not read as bytes."""
    columns = classifier_columns(3_000, seed=6)
    columns["$blob"] = columns.pop("alcohol")
    features = [
        {"name": "$blob", "type": "numeric"},
        {"name": "ash", "type": "numeric"},
        {"name": "region", "type": "categorical"},
    ]
    config, baseline = build(tmp_path, columns=columns, features=features)
    before = wire(config, baseline, lambda: NOW)
    rows = [{"$blob": value, "ash": 2.2, "region": "north"} for value in columns["$blob"][:50]]
    before.batcher.ingest([record(rows, "blob")])
    store = StateStore(tmp_path / "state", before.monitor)
    store.save()
    after = wire(config, baseline, lambda: NOW)
    assert StateStore(store.directory, after.monitor).restore()
    assert after.outcomes.pending == before.outcomes.pending == 50
    assert after.monitor.merged_windows(NOW)["5m"]["$blob"].count == 50
    assert after.monitor.compute(NOW).fields == before.monitor.compute(NOW).fields


# Times of eight batches 3 s apart, in a 30 s window kept in 3 s (10 slices) or 15 s (2) slices.
_FED = [NOW + 0.5 + 3 * k for k in range(8)]


def _window_count(monitor: Monitor, now: float) -> int:
    return monitor.merged_windows(now)["30s"]["alcohol"].count


def _in_window(now: float, seconds: float, slices: int) -> int:
    """Rows of ``_FED`` (100 each) the window holds at ``now``: those from slices not expired."""
    step = seconds / slices
    times = np.asarray(_FED)
    kept = np.floor(times / step) >= np.floor(now / step) - slices + 1
    return int(100 * np.count_nonzero(kept & (times <= now)))


@pytest.mark.parametrize(("before", "after"), [(10, 2), (2, 10)])
def test_a_restart_with_other_window_slices_keeps_the_rows_and_expires_them(
    tmp_path: Path,
    make_config: Callable[..., Config],
    make_baseline: Callable[..., Baseline],
    before: int,
    after: int,
) -> None:
    """Changing ``window_slices`` between runs keeps the restored rows in the window and lets
    them expire once the window has passed them (they were kept forever, or lost at once)."""
    first = make_config(windows=["30s"], window_slices=before)
    baseline = make_baseline(first, 1_000)
    monitor = _monitor(first, baseline)
    for k, at in enumerate(_FED):
        monitor.ingest([Extracted(100, training_rows(100, k))], now=at)
    StateStore(tmp_path / "state", monitor).save()
    second = make_config(windows=["30s"], window_slices=after)
    last = _FED[-1]
    restored = Monitor(second, baseline, clock=lambda: last)  # restarted after the last batch
    assert StateStore(tmp_path / "state", restored).restore()
    assert _window_count(restored, last) == 800  # every row fell in the last 30 s
    if after < before:  # coarser slices hold the finer ones exactly: as if run with them
        for now in (last + 5, last + 15, last + 20, last + 25):
            assert _window_count(restored, now) == _in_window(now, 30, after)
    assert _window_count(restored, last + 31) == 0
    restored.ingest([Extracted(50, training_rows(50, 99))], now=last + 31)
    assert _window_count(restored, last + 31) == 50


def test_a_bad_snapshot_that_cannot_be_moved_aside_is_logged_and_the_monitor_starts_empty(
    tmp_path: Path,
    make_config: Callable[..., Config],
    make_baseline: Callable[..., Baseline],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """When the rename aside fails (here: a non-empty directory holds its name) the start goes
    on, with one line naming the snapshot and both problems, instead of ending the sidecar."""
    config = make_config()
    monitor = _monitor(config, make_baseline(config, 500))
    store = StateStore(tmp_path / "state", monitor, clock=lambda: NOW)
    store.path.parent.mkdir()
    store.path.write_bytes(b"not a snapshot")
    taken = store.path.with_name(f"{store.path.name}.corrupt-{int(NOW)}")
    (taken / "inside").mkdir(parents=True)
    assert not store.restore()
    store.tidy()
    assert store.path.read_bytes() == b"not a snapshot"
    assert monitor.merged_windows(NOW)["5m"]["alcohol"].count == 0
    [line] = [r.getMessage() for r in caplog.records if str(store.path) in r.getMessage()]
    assert "Not a gzipped file" in line and "cannot move it aside" in line


def test_a_linked_snapshot_is_moved_aside_where_it_leads_and_saved_through_the_link(
    tmp_path: Path, make_config: Callable[..., Config], make_baseline: Callable[..., Baseline]
) -> None:
    """A snapshot linked onto a volume that is unusable: the file it leads to is moved aside
    and the next save written there, the link kept (the link itself was moved aside, and every
    later snapshot kept in a file of its own beside it)."""
    config = make_config()
    monitor = _monitor(config, make_baseline(config, 500))
    store = StateStore(tmp_path / "state", monitor, clock=lambda: NOW)
    volume = tmp_path / "volume" / store.path.name
    volume.parent.mkdir()
    volume.write_bytes(b"not a snapshot")
    store.path.parent.mkdir()
    store.path.symlink_to(volume)
    assert not store.restore()
    store.tidy()
    assert volume.with_name(f"{volume.name}.corrupt-{int(NOW)}").read_bytes() == b"not a snapshot"
    store.save()
    assert store.path.is_symlink()
    assert StateStore(tmp_path / "state", _monitor(config, monitor.baseline)).restore()


def test_slices_saved_under_a_clock_ahead_expire_with_the_window(
    tmp_path: Path, make_config: Callable[..., Config], make_baseline: Callable[..., Baseline]
) -> None:
    """A snapshot taken on a node whose clock ran 10 minutes ahead keeps its rows after the
    restart and lets them expire with the window, instead of holding them (and every row
    added meanwhile) until the clock reaches the saved slices."""
    config = make_config(windows=["5m"])
    baseline = make_baseline(config, 1_000)
    ahead = Monitor(config, baseline, clock=lambda: NOW + 600)
    ahead.ingest([Extracted(200, training_rows(200, 1))], now=NOW + 600)
    StateStore(tmp_path / "state", ahead, clock=lambda: NOW + 600).save()
    restored = _monitor(config, baseline)
    assert StateStore(tmp_path / "state", restored, clock=lambda: NOW).restore()
    assert restored.merged_windows(NOW)["5m"]["alcohol"].count == 200
    restored.ingest([Extracted(50, training_rows(50, 2))], now=NOW + 200)
    assert restored.merged_windows(NOW + 200)["5m"]["alcohol"].count == 250
    # 5m in 30 s slices: the rows of NOW's slice are gone 5m later, those of NOW + 200 stay
    assert restored.merged_windows(NOW + 300)["5m"]["alcohol"].count == 50
    assert restored.merged_windows(NOW + 500)["5m"]["alcohol"].count == 0


def test_snapshots_no_store_writes_are_named(tmp_path: Path) -> None:
    """A renamed model's snapshot is stray; the stores' own, other files and folders are not."""
    directory = tmp_path / "state"
    directory.mkdir()
    for name in ("wine.state", "old%20name.state", "wine.state.corrupt-1", "tail.offset"):
        (directory / name).write_bytes(b"x")
    kept = [directory / state_file_name("wine"), directory / state_file_name("new")]
    assert stray_snapshots(directory, kept) == [directory / "old%20name.state"]
    assert stray_snapshots(tmp_path / "missing", kept) == []


def _files(directory: Path) -> dict[str, tuple[int, int]]:
    """Each file in ``directory`` by name: its inode and modification time (ns)."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in directory.iterdir()}


def test_a_second_sidecar_that_cannot_bind_writes_no_state(tmp_path: Path) -> None:
    """The same config started twice: the second cannot bind the metrics port, says so in one
    line and exits 1, and writes neither a snapshot nor the tail's offset over the running
    one's files (it wrote the snapshot it had restored, older than the running one's), nor
    removes the temporary of a save the running one has in progress."""
    raw = base_config(
        tmp_path, baseline="baseline.dgb", state={"directory": "state", "interval": "1h"}
    )
    serve, port = _serving_state(tmp_path, raw)
    _append_log(tmp_path / "requests.jsonl", 300, 1)
    first = subprocess.Popen(serve, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: scrape(port).get(WINDOW) == 300)
        before = _files(tmp_path / "state")
        assert list(before) == ["requests.jsonl.offset"]  # no snapshot for an hour yet
        second = subprocess.run(serve, capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        assert second.stderr.splitlines()[-1] == (
            f"driftgauge: metrics.listen 127.0.0.1:{port}: Address already in use"
        )
        assert "Traceback" not in second.stderr
        assert _files(tmp_path / "state") == before
        assert scrape(port)[WINDOW] == 300  # the first serves on
        # The first one's save in progress: the second's restore took its temporary for one
        # a killed sidecar left, and removed it, so that save failed.
        (tmp_path / "state" / ".wine.state.0123456789ab.tmp").write_bytes(b"half a snapsh")
        before = _files(tmp_path / "state")
        assert subprocess.run(serve, capture_output=True, timeout=60).returncode == 1
        assert _files(tmp_path / "state") == before
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=20) == 0
    assert (tmp_path / "state" / "wine.state").exists()


def test_a_second_sidecar_that_cannot_bind_leaves_a_snapshot_it_cannot_use_in_place(
    tmp_path: Path,
) -> None:
    """The second sidecar runs on another baseline: to it the serving one's snapshot is
    unusable, and its restore moved that file aside (wine.state.corrupt-<time>) before it
    failed to bind, so until the next save a crash of the serving one restored nothing; the
    move waits until a sidecar serves, so the file stays."""
    raw = base_config(
        tmp_path, baseline="baseline.dgb", state={"directory": "state", "interval": "1s"}
    )
    serve, _ = _serving_state(tmp_path, raw)
    write_csv(tmp_path / "other.csv", training_rows(2_000, seed=7))
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({**raw, "baseline": "other.dgb"}))
    command = [sys.executable, "-m", "driftgauge.cli"]
    built = [*command, "baseline", "-c", str(other), "--data", str(tmp_path / "other.csv")]
    subprocess.run([*built, "-o", str(tmp_path / "other.dgb")], check=True, capture_output=True)
    snapshot = tmp_path / "state" / "wine.state"
    _append_log(tmp_path / "requests.jsonl", 100, 1)
    first = subprocess.Popen(serve, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: snapshot.exists())
        second = subprocess.run(
            [*command, "serve", "-c", str(other)], capture_output=True, text=True, timeout=60
        )
        assert second.returncode == 1
        assert "Address already in use" in second.stderr.splitlines()[-1]
        assert not list(snapshot.parent.glob("wine.state.corrupt-*"))
        assert snapshot.exists()
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=20) == 0


SAVE_FAILURES = series("driftgauge_state_save_failures_total", model="wine")


def test_snapshots_that_cannot_be_written_are_counted(tmp_path: Path) -> None:
    """A snapshot the sidecar cannot write (a folder in the way of state/wine.state) counts
    in driftgauge_state_save_failures_total, exposed at 0 from the start, not only in a log
    line; once the way is clear the snapshot is written again and the count stays."""
    raw = base_config(
        tmp_path, baseline="baseline.dgb", state={"directory": "state", "interval": "1s"}
    )
    serve, port = _serving_state(tmp_path, raw)
    snapshot = tmp_path / "state" / "wine.state"
    process = subprocess.Popen(serve, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: snapshot.exists())
        assert scrape(port)[SAVE_FAILURES] == 0
        snapshot.unlink()
        (snapshot / "in the way").mkdir(parents=True)
        wait_for(lambda: scrape(port)[SAVE_FAILURES] >= 2)
        (snapshot / "in the way").rmdir()
        snapshot.rmdir()
        wait_for(lambda: snapshot.is_file())
        failed = scrape(port)[SAVE_FAILURES]
        time.sleep(2.5)  # two more intervals, both saved
        assert scrape(port)[SAVE_FAILURES] == failed >= 2
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0


def test_a_tail_offset_that_cannot_be_read_makes_the_sidecar_unready(tmp_path: Path) -> None:
    """A source.tail.state_file that cannot be read (a link to itself, which fails for root
    too) keeps the tailer waiting rather than guessing where to start, and /readyz answers
    503 naming the file, where it answered 'ok' with nothing read; once the file can be read,
    /readyz is ok again and the lines after the saved offset, and only those, are monitored."""
    offset = tmp_path / "tail.offset"
    raw = base_config(tmp_path, baseline="baseline.dgb")
    raw["source"]["tail"]["state_file"] = str(offset)
    serve, port = _serving_state(tmp_path, raw)
    log = tmp_path / "requests.jsonl"
    _append_log(log, 100, 1)
    ready = f"http://127.0.0.1:{port}/readyz"
    first = subprocess.Popen(serve, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: scrape(port).get(WINDOW) == 100)
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=20) == 0
    saved = offset.read_bytes()
    offset.unlink()
    offset.symlink_to(offset.name)
    _append_log(log, 50, 2)
    second = subprocess.Popen(serve, stderr=subprocess.DEVNULL)
    try:
        reason = (
            f"not ready: tail: cannot read {log}: [Errno 40] Too many levels of symbolic "
            f"links: '{offset}'\n"
        )
        wait_for(lambda: _answer(ready) == (503, reason))
        assert scrape(port)[series("driftgauge_rows_total", model="wine")] == 0
        offset.unlink()
        offset.write_bytes(saved)
        wait_for(lambda: _answer(ready) == (200, "ready: ok\n"))
        wait_for(lambda: scrape(port).get(WINDOW) == 50)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=20) == 0


def _answer(url: str) -> tuple[int, str]:
    """The status and text of a GET of ``url``, an error status too."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


def test_a_fifo_where_the_snapshot_goes_is_moved_aside_and_the_sidecar_starts(
    tmp_path: Path,
) -> None:
    """A FIFO at state/wine.state is no snapshot: it is moved aside like a corrupt one, the
    sidecar starts empty and writes its snapshots, where reading it waited for a writer for
    ever (serve never listened, and SIGTERM did not end it)."""
    raw = base_config(
        tmp_path, baseline="baseline.dgb", state={"directory": "state", "interval": "1s"}
    )
    serve, port = _serving_state(tmp_path, raw)
    snapshot = tmp_path / "state" / "wine.state"
    snapshot.parent.mkdir()
    os.mkfifo(snapshot)
    _append_log(tmp_path / "requests.jsonl", 100, 1)
    process = subprocess.Popen(serve, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: scrape(port).get(WINDOW) == 100, timeout=15)
        wait_for(lambda: snapshot.is_file())
        (aside,) = snapshot.parent.glob("wine.state.corrupt-*")
        assert stat.S_ISFIFO(aside.lstat().st_mode)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_save_failures_counter_has_no_created_sample(tmp_path: Path) -> None:
    """driftgauge_state_save_failures_total is a plain count, as every counter of driftgauge's:
    no driftgauge_state_save_failures_created family beside it (a prometheus_client Counter's,
    a gauge of the start time in the text format that no catalogue entry declares)."""
    raw = base_config(tmp_path, baseline="baseline.dgb", state={"directory": "state"})
    serve, port = _serving_state(tmp_path, raw)
    process = subprocess.Popen(serve, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: SAVE_FAILURES in scrape(port))
        assert scrape(port)[SAVE_FAILURES] == 0
        assert not [name for name, _ in scrape(port) if name.endswith("_created")]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0


async def test_the_last_save_waits_for_the_tidying_in_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stop just after the start (SIGTERM during start-up) cancels the snapshot loop while
    StateStore.tidy runs in its worker thread: the last save starts once tidy has returned,
    not beside it, where tidy would remove the hidden temporary that save is writing."""
    calls: list[str] = []
    save, begun = StateStore.save, threading.Event()

    def slow_tidy(store: StateStore) -> None:
        calls.append("tidy")
        begun.set()
        time.sleep(0.3)  # a slow glob: a network file system, a crowded state directory
        calls.append("tidied")

    def recorded_save(store: StateStore) -> None:
        calls.append("save")
        save(store)

    monkeypatch.setattr(StateStore, "tidy", slow_tidy)
    monkeypatch.setattr(StateStore, "save", recorded_save)
    config, baseline = build(tmp_path, state={"directory": "state", "interval": "1h"})
    async with running(config, baseline):
        assert await asyncio.to_thread(begun.wait, 10)
    assert calls == ["tidy", "tidied", "save"]
    assert (tmp_path / "state" / "wine.state").is_file()


def test_a_snapshot_the_first_release_wrote_restores_its_windows_and_held_predictions(
    tmp_path: Path,
) -> None:
    """An upgrade from the first release keeps its state: every window's counts, the segment
    counts and the held predictions of its snapshot (format 2, no slice lengths) come back,
    and labels join them.

    Made at 85551bc: ``driftgauge baseline -c wine-85551bc.yaml --data train.csv -o
    wine-85551bc.dgb`` (200 rows), then ``driftgauge serve`` with ``state: {directory: state}``
    over a request log of 8 lines of 5 rows (ids r0 to r7, no labels), stopped by SIGTERM,
    which wrote wine-85551bc.state.
    """
    config = load_config(DATA / "wine-85551bc.yaml")
    shutil.copy(DATA / "wine-85551bc.state", tmp_path / "wine.state")
    now = unpack((tmp_path / "wine.state").read_bytes())["saved"] + 1
    monitor = Monitor(config, load_baseline(config.baseline), clock=lambda: now)
    assert StateStore(tmp_path, monitor).restore()
    counts = {w: {k: s.count for k, s in f.items()} for w, f in monitor.merged_windows().items()}
    assert counts == {w: {"alcohol": 40, "region": 40, "class": 40} for w in ("5m", "1h")}
    segments = next(t for t in monitor.trackers if t.name == "segments")
    for window in segments.windows.values():
        assert sum(int(c.counts.sum()) for c in window.merged(now).values()) == 40
    assert monitor.outcomes is not None
    assert len(monitor.outcomes.copy_held().ids) == 40
    joined = monitor.outcomes.label([(f"r{i}:{j}", "a") for i in range(8) for j in range(5)])
    assert joined["matched"] == 40


def _alike_requests(requests: int, rows: int, seed: int) -> list[Extracted]:
    """``requests`` requests of ``rows`` training rows each."""
    columns = training_rows(requests * rows, seed)
    return [
        Extracted(
            rows, {name: column[r * rows : (r + 1) * rows] for name, column in columns.items()}
        )
        for r in range(requests)
    ]


def test_the_sums_over_requests_survive_a_restart(
    tmp_path: Path, make_config: Callable[..., Config], make_baseline: Callable[..., Baseline]
) -> None:
    """Each window's sums over requests (sealed slices and the newest) are saved and restored,
    so the design effect and the noise floor read the same after a restart, and the restored
    newest slice goes on adding requests."""
    config = make_config()
    baseline = make_baseline(config, 3_000)
    before = _monitor(config, baseline)
    for i in range(3):  # three slices of the shortest window: sealed ones too
        before.ingest(_alike_requests(10, 30, 20 + i), now=NOW - 60 + 25 * i)
    StateStore(tmp_path / "state", before).save()
    after = _monitor(config, baseline)
    assert StateStore(tmp_path / "state", after).restore()
    old, new = before.merged_windows(NOW), after.merged_windows(NOW)
    for label in old:
        for name, summary in old[label].items():
            assert summary.by_request[0] > 0  # requests were counted
            assert np.array_equal(new[label][name].by_request, summary.by_request)
    # (Not the whole FieldStats: KLL merges compact at random, so KS and quantiles move a bit.)
    exact = ("observations", "psi", "psi_noise_floor", "design_effect", "js_distance")
    figures = [
        [tuple(getattr(f, a) for a in exact) for f in m.compute(NOW).fields]
        for m in (before, after)
    ]
    assert figures[0] == figures[1]
    assert any(f[3] is not None and f[3] > 1 for f in figures[1])
    after.ingest(_alike_requests(5, 30, 30), now=NOW)
    for label, summaries in after.merged_windows(NOW).items():
        for name, summary in summaries.items():
            assert summary.by_request[0] == new[label][name].by_request[0] + 5


def test_a_snapshot_without_sums_over_requests_reads_a_request_a_row(
    tmp_path: Path, make_config: Callable[..., Config], make_baseline: Callable[..., Baseline]
) -> None:
    """A snapshot written before the sums over requests restores: its rows count as requests
    of one row each, as every row counted before (design effect 1, the old noise floor)."""
    config = make_config()
    baseline = make_baseline(config, 3_000)
    before = _monitor(config, baseline)
    before.ingest(_alike_requests(10, 100, 40), now=NOW - 5)
    store = StateStore(tmp_path / "state", before)
    store.save()
    document = unpack(store.path.read_bytes())
    entries = [
        entry
        for window in document["windows"].values()
        for piece in window
        for entry in piece["entries"].values()
    ]
    assert entries
    assert all(entry.pop("by_request", None) is not None for entry in entries)
    store.path.write_bytes(pack(document))
    after = _monitor(config, baseline)
    assert StateStore(tmp_path / "state", after).restore()
    for summaries in after.merged_windows(NOW).values():
        for summary in summaries.values():
            assert summary.by_request[0] == summary.by_request[1] == summary.count == 1000
            assert np.array_equal(summary.by_request[4::2], summary.bins)
    for figures in after.compute(NOW).fields:
        held = baseline.fields[figures.spec.name].summary
        occupied = max(2, int(np.count_nonzero(held.bins)))
        assert figures.design_effect == 1.0
        assert figures.psi_noise_floor == pytest.approx(
            (occupied - 1) * (1 / figures.observations + 1 / held.count)
        )
