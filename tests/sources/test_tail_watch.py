"""PathWatch wakes the tailer when a file appears at its path, and sleeps its time otherwise."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from driftgauge.sources import tail_watch
from driftgauge.sources.tail_watch import PathWatch

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="inotify is Linux's")

LONG = 5.0


async def waited(watch: PathWatch, seconds: float = LONG) -> float:
    """How long ``watch.wait(seconds)`` took."""
    start = time.monotonic()
    await watch.wait(seconds)
    return time.monotonic() - start


async def soon(action: Callable[[], object]) -> None:
    """``action`` 50 ms from now, while the test waits."""
    await asyncio.sleep(0.05)
    action()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
async def watch(tmp_path: Path) -> AsyncIterator[PathWatch]:
    watch = PathWatch(tmp_path / "logs" / "req.jsonl")
    try:
        yield watch
    finally:
        watch.close()


async def test_a_file_created_or_renamed_to_the_path_ends_the_wait(
    tmp_path: Path, watch: PathWatch
) -> None:
    """Creating the path's name, or renaming a file to it, ends a wait at once, each time."""
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "req.jsonl"
    await watch.wait(0.01)  # watching from the first wait
    task = asyncio.create_task(soon(lambda: log.write_bytes(b"{}\n")))
    assert await waited(watch) < LONG / 2
    await task
    (logs / "other").write_bytes(b"")
    task = asyncio.create_task(soon(lambda: (logs / "other").replace(log)))
    assert await waited(watch) < LONG / 2
    await task


async def test_other_names_and_changes_to_the_file_do_not_end_the_wait(
    tmp_path: Path, watch: PathWatch
) -> None:
    """Another file created, the log written to or renamed away: the wait takes its time."""
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "req.jsonl"
    log.write_bytes(b"")
    await watch.wait(0.01)

    def unrelated() -> None:
        (logs / "req.jsonl.tmp").write_bytes(b"x")
        with log.open("ab") as out:
            out.write(b"{}\n")
        log.rename(logs / "req.jsonl.1")

    task = asyncio.create_task(soon(unrelated))
    assert await waited(watch, 0.3) >= 0.3
    await task


async def test_a_change_between_waits_is_not_lost(tmp_path: Path, watch: PathWatch) -> None:
    """A file that appears while the caller is busy ends the next wait at once, and take()
    tells of it once, for a caller that does not wait (reading a backlog)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    await watch.wait(0.01)
    (logs / "req.jsonl").write_bytes(b"")
    await asyncio.sleep(0.05)  # the event is read by the loop meanwhile
    assert await waited(watch) < LONG / 2
    (logs / "req.jsonl").unlink()
    (logs / "req.jsonl").write_bytes(b"")
    await asyncio.sleep(0.05)
    assert watch.take()
    assert not watch.take()


async def test_a_missing_directory_is_waited_for_then_watched(
    tmp_path: Path, watch: PathWatch
) -> None:
    """Without the directory a wait sleeps its time; once it exists, it is watched."""
    assert await waited(watch, 0.1) >= 0.1
    logs = tmp_path / "logs"
    logs.mkdir()
    await watch.wait(0.01)
    task = asyncio.create_task(soon(lambda: (logs / "req.jsonl").write_bytes(b"")))
    assert await waited(watch) < LONG / 2
    await task


async def test_a_directory_removed_and_made_again_is_watched_again(
    tmp_path: Path, watch: PathWatch
) -> None:
    """The directory removed (or renamed) ends the watch on it: the next wait watches the
    directory at the path again, and a file created there ends a wait."""
    logs = tmp_path / "logs"
    logs.mkdir()
    await watch.wait(0.01)
    logs.rename(tmp_path / "logs.old")
    logs.mkdir()
    await watch.wait(0.2)  # ended by the lost watch, or its time
    await watch.wait(0.01)
    task = asyncio.create_task(soon(lambda: (logs / "req.jsonl").write_bytes(b"")))
    assert await waited(watch) < LONG / 2
    await task


async def test_without_inotify_a_wait_sleeps_its_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where inotify cannot be had, a wait is a sleep: the caller's polling does the rest."""
    monkeypatch.setattr(tail_watch, "_LIBC", None)
    logs = tmp_path / "logs"
    logs.mkdir()
    watch = PathWatch(logs / "req.jsonl")
    task = asyncio.create_task(soon(lambda: (logs / "req.jsonl").write_bytes(b"")))
    assert await waited(watch, 0.3) >= 0.3
    await task
    watch.close()


async def test_close_releases_the_watch(tmp_path: Path) -> None:
    """close() closes the inotify descriptor; a watch never started closes quietly."""
    before = open_fds()
    watch = PathWatch(tmp_path / "req.jsonl")
    await watch.wait(0.01)
    assert open_fds() == before + 1
    watch.close()
    watch.close()
    assert open_fds() == before
    PathWatch(tmp_path / "nowhere" / "req.jsonl").close()


async def test_a_file_created_where_a_linked_path_leads_ends_the_wait(tmp_path: Path) -> None:
    """A path that is a link (Kubernetes' /var/log/containers/*.log) is rotated where it leads:
    a file created or renamed to there ends the wait, as one at the path does; the link made
    to lead elsewhere (ln -sf), the next wait watches where it leads now."""
    links, pods = tmp_path / "containers", tmp_path / "pods"
    links.mkdir()
    pods.mkdir()
    (pods / "0.log").write_bytes(b"")
    (links / "req.log").symlink_to(pods / "0.log")
    watch = PathWatch(links / "req.log")
    try:
        await watch.wait(0.01)
        (pods / "0.log").rename(pods / "0.log.1")
        task = asyncio.create_task(soon(lambda: (pods / "0.log").write_bytes(b"")))
        assert await waited(watch) < LONG / 2
        await task
        (pods / "1.log").write_bytes(b"")
        repoint = (links / "req.log.new", links / "req.log")
        repoint[0].symlink_to(pods / "1.log")
        task = asyncio.create_task(soon(lambda: repoint[0].rename(repoint[1])))
        assert await waited(watch) < LONG / 2
        await task
        await watch.wait(0.01)
        (pods / "0.log").rename(pods / "0.log.2")
        task = asyncio.create_task(soon(lambda: (pods / "0.log").write_bytes(b"")))
        assert await waited(watch, 0.3) >= 0.3  # where the link led before: not the path's now
        await task
        (pods / "1.log").rename(pods / "1.log.1")
        task = asyncio.create_task(soon(lambda: (pods / "1.log").write_bytes(b"")))
        assert await waited(watch) < LONG / 2
        await task
    finally:
        watch.close()
