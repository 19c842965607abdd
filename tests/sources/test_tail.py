"""The tail source follows a JSON Lines log through rotation, truncation and restarts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from driftgauge.config import TailConfig
from driftgauge.sources import tail as tail_module
from driftgauge.sources.tail import TailSource, parse_timestamp
from driftgauge.typing import Record

POLL = 0.01
WAIT = 5.0
LOGGER = "driftgauge.sources.tail"


def line(i: int, **extra: Any) -> bytes:
    obj = {"ts": 1_700_000_000 + i, "id": f"r{i}", "request": {"x": i}, "response": {"y": i}}
    return json.dumps({**obj, **extra}).encode() + b"\n"


def lines(ids: Iterable[int]) -> bytes:
    return b"".join(line(i) for i in ids)


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as out:
        out.write(data)


def ids(*numbers: Iterable[int]) -> list[str]:
    return [f"r{i}" for group in numbers for i in group]


@dataclass
class Tail:
    """A running TailSource and everything it handed over."""

    task: asyncio.Task[None]
    batches: list[list[Record]]
    errors: list[str]

    @property
    def records(self) -> list[Record]:
        return [r for batch in self.batches for r in batch]

    @property
    def ids(self) -> list[str | None]:
        return [r.request_id for r in self.records]

    async def until(self, condition: Callable[[], bool]) -> None:
        """Wait until ``condition`` holds; fail after WAIT seconds or if the source died."""
        deadline = time.monotonic() + WAIT
        while not condition():
            if self.task.done():
                self.task.result()
                raise AssertionError("the tail source stopped")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; got ids {self.ids} errors {self.errors}")
            await asyncio.sleep(0.005)

    async def settle(self, polls: int = 5) -> None:
        """Give the source a few poll intervals to (wrongly) deliver more."""
        await asyncio.sleep(POLL * polls)

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


StartTail = Callable[..., Tail]


@pytest.fixture
async def start_tail() -> AsyncIterator[StartTail]:
    started: list[Tail] = []

    def start(
        path: Path,
        *,
        state_file: Path | None = None,
        start_at: Literal["beginning", "end"] = "beginning",
        poll_interval: float = POLL,
        **kwargs: Any,
    ) -> Tail:
        config = TailConfig(
            path, state_file=state_file, poll_interval=poll_interval, start_at=start_at
        )
        batches: list[list[Record]] = []
        errors: list[str] = []
        source = TailSource(config, batches.append, errors.append, **kwargs)
        tail = Tail(asyncio.create_task(source.run()), batches, errors)
        started.append(tail)
        return tail

    try:
        yield start
    finally:
        for tail in started:
            await tail.stop()


async def test_lines_appended_while_running_arrive_in_order(
    tmp_path: Path, start_tail: StartTail
) -> None:
    """Existing and appended lines arrive once each, in file order, as typed Records."""
    log = tmp_path / "requests.jsonl"
    log.write_bytes(lines(range(3)))
    tail = start_tail(log)
    await tail.until(lambda: len(tail.records) == 3)
    for start in range(3, 30, 9):
        append(log, lines(range(start, start + 9)))
        await asyncio.sleep(POLL / 2)
    await tail.until(lambda: len(tail.records) == 30)
    await tail.settle()
    assert tail.ids == ids(range(30))
    assert tail.records[4] == Record(
        ts=1_700_000_004.0, request={"x": 4}, response={"y": 4}, path="", request_id="r4"
    )
    assert tail.errors == []


async def test_batches_never_exceed_max_batch(tmp_path: Path, start_tail: StartTail) -> None:
    """A backlog is handed over in lists of at most max_batch records."""
    log = tmp_path / "requests.jsonl"
    log.write_bytes(lines(range(95)))
    tail = start_tail(log, max_batch=10)
    await tail.until(lambda: len(tail.records) == 95)
    assert max(len(batch) for batch in tail.batches) == 10
    assert tail.ids == ids(range(95))


async def test_partial_line_arrives_once_when_completed(
    tmp_path: Path, start_tail: StartTail
) -> None:
    """A line without its newline is held back, then delivered exactly once."""
    log = tmp_path / "requests.jsonl"
    log.write_bytes(line(0))
    tail = start_tail(log)
    await tail.until(lambda: len(tail.records) == 1)
    whole = line(1)
    append(log, whole[:10])
    await tail.settle()
    append(log, whole[10:-1])
    await tail.settle()
    assert tail.ids == ["r0"]
    append(log, b"\n" + line(2))
    await tail.until(lambda: len(tail.records) == 3)
    await tail.settle()
    assert tail.ids == ids(range(3))


@pytest.mark.parametrize("chunk", [7, 64, 1 << 20])
async def test_chunk_boundaries_do_not_split_or_merge_lines(
    tmp_path: Path, start_tail: StartTail, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    """Lines spanning read chunks arrive whole, whatever the chunk size."""
    monkeypatch.setattr(tail_module, "CHUNK_BYTES", chunk)
    log = tmp_path / "requests.jsonl"
    log.write_bytes(lines(range(40)))
    tail = start_tail(log)
    await tail.until(lambda: len(tail.records) == 40)
    assert tail.ids == ids(range(40))
    assert tail.errors == []


async def test_rotation_by_rename_loses_and_duplicates_nothing(
    tmp_path: Path, start_tail: StartTail
) -> None:
    """Lines written to the renamed file before the new one appears are read, then the new file."""
    log = tmp_path / "requests.jsonl"
    writer: BinaryIO = log.open("ab", buffering=0)
    try:
        writer.write(lines(range(10)))
        tail = start_tail(log)
        await tail.until(lambda: len(tail.records) == 10)
        log.rename(tmp_path / "requests.jsonl.1")
        writer.write(lines(range(10, 15)))
        await asyncio.sleep(POLL * 3)
        writer.write(lines(range(15, 20)))
    finally:
        writer.close()
    log.write_bytes(lines(range(20, 25)))
    await tail.until(lambda: len(tail.records) == 25)
    append(log, lines(range(25, 30)))
    await tail.until(lambda: len(tail.records) == 30)
    await tail.settle()
    assert tail.ids == ids(range(30))


async def test_the_old_file_is_read_while_the_writer_goes_on_with_it_after_the_rotation(
    tmp_path: Path, start_tail: StartTail
) -> None:
    """logrotate renames the log and creates the new one before its postrotate script tells
    the writer to reopen: lines the writer adds to the old file meanwhile (0.4 s here, twice
    the poll) are read, then the new file's."""
    log = tmp_path / "requests.jsonl"
    with log.open("ab", buffering=0) as writer:
        writer.write(lines(range(10)))
        tail = start_tail(log, poll_interval=0.2)
        await tail.until(lambda: len(tail.records) == 10)
        log.rename(tmp_path / "requests.jsonl.1")
        log.write_bytes(b"")
        for i in range(10, 30):
            await asyncio.sleep(0.02)
            writer.write(line(i))
    append(log, lines(range(100, 105)))
    await tail.until(lambda: "r104" in tail.ids)
    await tail.settle()
    assert tail.ids == ids(range(30), range(100, 105))


@pytest.mark.parametrize("third", [True, False])
async def test_a_new_file_rotated_away_before_the_old_one_is_drained_is_read(
    tmp_path: Path, start_tail: StartTail, monkeypatch: pytest.MonkeyPatch, third: bool
) -> None:
    """A new file that is rotated away in turn (renamed within its directory, as logrotate's
    .1) after the tailer first saw it, while the old one was still being drained, is read:
    every line of the files arrives, each file's in order, whether a third file was created
    yet or not.  The path check is wrapped so that the second rotation lands right after the
    tailer's first sight of the new file."""
    log, first, second = (tmp_path / name for name in ("req.jsonl", "req.jsonl.2", "req.jsonl.1"))
    identity = tail_module._identity
    seen: list[tuple[int, int] | None] = []

    def rotate_after_first_sight(path: Path) -> tuple[int, int] | None:
        if seen and seen[-1] == identity(log) and not second.exists():
            log.rename(second)
            if third:
                log.write_bytes(lines(range(200, 205)))
        seen.append(identity(path))
        return seen[-1]

    log.write_bytes(lines(range(10)))
    tail = start_tail(log)
    await tail.until(lambda: len(tail.records) == 10)
    log.rename(first)
    append(first, lines(range(10, 15)))
    monkeypatch.setattr(tail_module, "_identity", rotate_after_first_sight)
    log.write_bytes(lines(range(100, 105)))
    await tail.until(lambda: len(tail.records) == (25 if third else 20))
    await tail.settle()
    assert second.exists()
    assert tail.ids == ids(range(15), range(100, 105), range(200, 205) if third else ())


async def test_a_file_rotated_in_and_out_while_a_backlog_is_read_is_read(
    tmp_path: Path, start_tail: StartTail, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The path is checked every poll even while a long backlog is being read: a new file
    that appears and is rotated away again before the backlog ends is read after it."""
    monkeypatch.setattr(tail_module, "CHUNK_BYTES", 64)  # one read per line: a long backlog
    log, first, second = (tmp_path / name for name in ("req.jsonl", "req.jsonl.2", "req.jsonl.1"))
    log.write_bytes(lines(range(5000)))
    tail = start_tail(log)
    await tail.until(lambda: len(tail.records) >= 10)
    log.rename(first)
    log.write_bytes(lines(range(7000, 7005)))
    await asyncio.sleep(POLL * 5)
    log.rename(second)
    log.write_bytes(lines(range(8000, 8005)))
    assert len(tail.records) < 4000, "the backlog ended before the second rotation"
    await tail.until(lambda: len(tail.records) == 5010)
    await tail.settle()
    assert tail.ids == ids(range(5000), range(7000, 7005), range(8000, 8005))


async def held_open(path: Path, seconds: float) -> None:
    """Wait until this process holds ``path`` open (Linux); fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while str(path) not in map(_opened_as, os.listdir("/proc/self/fd")):
        assert time.monotonic() < deadline, f"{path} not held open within {seconds} s"
        await asyncio.sleep(0.002)


def _opened_as(fd: str) -> str:
    """What descriptor ``fd`` of this process names ("" once closed: the listing's own is
    listed, then closed, and one skipped check left every descriptor after it unread)."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


@pytest.mark.skipif(sys.platform != "linux", reason="held_open reads /proc/self/fd")
async def test_held_open_sees_a_file_held_above_a_free_descriptor(tmp_path: Path) -> None:
    """The helper above: listing /proc/self/fd takes the lowest free descriptor, closed again
    before its entry is read, and a failed read skipped the whole check, so with a free
    descriptor below the file's it never saw the file (the rotation test below failed under
    CPU load with the tailer holding the new file since its 4th ms)."""
    log = tmp_path / "0.log"
    log.write_bytes(b"")
    below = os.open(log, os.O_RDONLY)
    held = os.open(log, os.O_RDONLY)
    os.close(below)
    try:
        await held_open(log, 0.5)
    finally:
        os.close(held)


@pytest.mark.skipif(sys.platform != "linux", reason="inotify tells of a new file at once")
@pytest.mark.parametrize("checked_late", [False, True], ids=["promptly", "checked late"])
@pytest.mark.parametrize("linked", [False, True], ids=["the path", "a link to it"])
async def test_a_file_created_and_rotated_away_before_the_next_poll_is_read_on_linux(
    tmp_path: Path,
    start_tail: StartTail,
    monkeypatch: pytest.MonkeyPatch,
    linked: bool,
    checked_late: bool,
) -> None:
    """A file created at the path wakes the tailer, which holds it open at once, long before
    its next poll: rotated away in turn, it is still read, after the old file and before the
    next one, each line once.  A followed path that is a link (Kubernetes'
    /var/log/containers/*.log) is rotated where it leads, and is woken from there (r100-r104
    were lost).  Also when the file is created before the tailer's first wait, as on a busy
    machine (its path check, in a worker thread, made slow here): the tailer watches from its
    start, not from that wait, which left the file to the next poll."""
    if checked_late:
        identity = tail_module._identity

        def late(path: Path) -> tuple[int, int] | None:
            named = identity(path)
            time.sleep(0.1)
            return named

        monkeypatch.setattr(tail_module, "_identity", late)
    (tmp_path / "pods").mkdir()
    log = tmp_path / "pods" / "0.log"
    first, second = log.with_name("0.log.2"), log.with_name("0.log.1")
    followed = tmp_path / "req.log" if linked else log
    if linked:
        followed.symlink_to(log)
    log.write_bytes(lines(range(10)))
    tail = start_tail(followed, poll_interval=2.0)
    await tail.until(lambda: len(tail.records) == 10)  # the next poll is 2 s away
    log.rename(first)
    log.write_bytes(lines(range(100, 105)))
    await held_open(log, 1.0)
    log.rename(second)
    log.write_bytes(lines(range(200, 205)))
    await tail.until(lambda: len(tail.records) == 20)
    await tail.settle()
    assert tail.ids == ids(range(10), range(100, 105), range(200, 205))


async def test_a_file_the_path_names_for_a_moment_while_the_log_grows_is_not_read(
    tmp_path: Path, start_tail: StartTail, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The log moved aside and back (mv log log.tmp; mv other log, then mv log other; mv
    log.tmp log) while still being written to: the path names the other file at one check and
    the followed one again at the next.  The tailer stays on the log, and the other file is
    read neither then nor at the next real rotation, where the new file follows the log's
    lines.  The path check is wrapped so that each pair of moves lands right before a check."""
    log, aside, other = (tmp_path / name for name in ("req.jsonl", "req.jsonl.tmp", "other"))
    identity = tail_module._identity

    def swap_in() -> None:
        log.rename(aside)
        other.rename(log)
        append(aside, lines(range(10, 12)))  # the log grows while the path names the other

    def swap_back() -> None:
        log.rename(other)
        aside.rename(log)

    moves: list[Callable[[], None]] = []

    def move_before_a_check(path: Path) -> tuple[int, int] | None:
        if moves:
            moves.pop(0)()
        return identity(path)

    log.write_bytes(lines(range(10)))
    other.write_bytes(lines(range(500, 505)))
    tail = start_tail(log)
    await tail.until(lambda: len(tail.records) == 10)
    monkeypatch.setattr(tail_module, "_identity", move_before_a_check)
    moves += [swap_in, swap_back]
    await tail.until(lambda: not moves and len(tail.records) == 12)
    append(log, lines(range(12, 15)))
    await tail.until(lambda: len(tail.records) == 15)
    log.rename(tmp_path / "req.jsonl.1")
    log.write_bytes(lines(range(900, 905)))
    await tail.until(lambda: "r904" in tail.ids)
    await tail.settle()
    assert tail.ids == ids(range(15), range(900, 905))


@pytest.mark.skipif(sys.platform != "linux", reason="held_open reads /proc/self/fd")
async def test_a_log_moved_aside_and_back_within_a_poll_stays_followed(
    tmp_path: Path, start_tail: StartTail
) -> None:
    """An idle log moved aside and back within a poll: the tailer saw the other file at its
    path (and holds it) but waits a poll for the log to go quiet before taking it, so the log
    stays followed and the other file is never read."""
    log, aside, other = (tmp_path / name for name in ("req.jsonl", "req.jsonl.tmp", "other"))
    log.write_bytes(lines(range(10)))
    other.write_bytes(lines(range(500, 505)))
    tail = start_tail(log, poll_interval=1.0)
    await tail.until(lambda: len(tail.records) == 10)
    log.rename(aside)
    other.rename(log)
    await held_open(log, 0.5)
    log.rename(other)
    aside.rename(log)
    append(log, lines(range(10, 13)))
    await asyncio.sleep(1.5)  # past the poll: the log's new lines are read
    assert tail.ids == ids(range(13))


async def test_a_log_moved_back_after_the_tailer_followed_another_file_goes_on_where_it_was(
    tmp_path: Path, start_tail: StartTail
) -> None:
    """The log moved aside long enough for the tailer to take the file moved to its path as
    the new log, then moved back: the other file's lines are read (nothing told it from a
    rotated-in file), and the log goes on after its last line read, its lines not read twice."""
    log, aside, other = (tmp_path / name for name in ("req.jsonl", "req.jsonl.tmp", "other"))
    log.write_bytes(lines(range(10)))
    other.write_bytes(lines(range(500, 505)))
    tail = start_tail(log)
    await tail.until(lambda: len(tail.records) == 10)
    log.rename(aside)
    other.rename(log)
    await tail.until(lambda: len(tail.records) == 15)
    append(aside, lines(range(10, 15)))
    log.rename(other)
    aside.rename(log)
    await tail.until(lambda: len(tail.records) >= 20)
    append(log, lines(range(15, 18)))
    await tail.until(lambda: len(tail.records) >= 23)
    await tail.settle()
    assert tail.ids == ids(range(10), range(500, 505), range(10, 18))


async def test_copytruncate_reads_the_file_again_from_the_start(
    tmp_path: Path, start_tail: StartTail
) -> None:
    """A truncated file is read from byte 0, whether it refilled before the next poll or not."""
    log = tmp_path / "requests.jsonl"
    log.write_bytes(lines(range(10)))
    tail = start_tail(log)
    await tail.until(lambda: len(tail.records) == 10)
    shutil.copy(log, tmp_path / "requests.jsonl.1")
    os.truncate(log, 0)
    append(log, lines(range(10, 13)))
    await tail.until(lambda: len(tail.records) == 13)
    with log.open("r+b") as out:  # truncate and at once write more than was there before
        out.truncate(0)
        out.write(lines(range(100, 120)))
    await tail.until(lambda: len(tail.records) == 33)
    await tail.settle()
    assert tail.ids == ids(range(13), range(100, 120))


async def test_restart_with_state_file_neither_skips_nor_rereads(
    tmp_path: Path, start_tail: StartTail
) -> None:
    """Lines written while stopped are read after the restart, none read twice."""
    log, state = tmp_path / "requests.jsonl", tmp_path / "state" / "tail.json"
    log.write_bytes(lines(range(10)))
    first = start_tail(log, state_file=state)
    await first.until(lambda: len(first.records) == 10)
    await first.stop()
    saved = json.loads(state.read_text())
    assert saved["offset"] == log.stat().st_size
    assert saved["inode"] == log.stat().st_ino
    assert set(saved) == {"path", "inode", "device", "offset", "head"}
    append(log, lines(range(10, 20)) + line(20)[:-5])  # a partial line too
    second = start_tail(log, state_file=state)
    await second.until(lambda: len(second.records) == 10)
    append(log, line(20)[-5:])
    await second.until(lambda: len(second.records) == 11)
    await second.settle()
    assert first.ids == ids(range(10))
    assert second.ids == ids(range(10, 21))


async def test_cancelling_mid_backlog_then_restarting_delivers_each_line_once(
    tmp_path: Path, start_tail: StartTail
) -> None:
    """Cancellation at any point of a large backlog keeps the exactly-once restart promise."""
    log, state = tmp_path / "requests.jsonl", tmp_path / "tail.json"
    total = 1500
    log.write_bytes(lines(range(total)))
    delivered: list[str | None] = []
    for round_ in range(20):
        tail = start_tail(log, state_file=state, max_batch=7)
        await tail.until(lambda: len(tail.records) > 0 or len(delivered) == total)  # noqa: B023
        await asyncio.sleep(0.001 * (round_ % 4))
        await tail.stop()
        delivered += tail.ids
        if len(delivered) >= total:
            break
    tail = start_tail(log, state_file=state, max_batch=7)
    await tail.until(lambda: len(delivered) + len(tail.records) >= total)
    await tail.settle()
    assert delivered + tail.ids == ids(range(total))


async def test_restart_after_rotation_while_stopped_finishes_the_old_file(
    tmp_path: Path, start_tail: StartTail
) -> None:
    """The rotated-away file is found by inode and finished before the new one."""
    log, state = tmp_path / "requests.jsonl", tmp_path / "tail.json"
    log.write_bytes(lines(range(5)))
    first = start_tail(log, state_file=state)
    await first.until(lambda: len(first.records) == 5)
    await first.stop()
    append(log, lines(range(5, 8)))
    log.rename(tmp_path / "requests.jsonl.1")
    log.write_bytes(lines(range(8, 12)))
    second = start_tail(log, state_file=state)
    await second.until(lambda: len(second.records) == 7)
    await second.settle()
    assert second.ids == ids(range(5, 12))


async def test_restart_after_rotation_while_stopped_finds_a_linked_log_where_it_leads(
    tmp_path: Path, start_tail: StartTail
) -> None:
    """A log path that is a link is rotated where it leads: the rotated-away file is looked up
    there (it was looked up beside the link, not found, and the new file read from byte 0:
    r5-r7, written while stopped, lost)."""
    (tmp_path / "pods").mkdir()
    log, state = tmp_path / "pods" / "0.log", tmp_path / "tail.json"
    link = tmp_path / "req.log"
    link.symlink_to(log)
    log.write_bytes(lines(range(5)))
    first = start_tail(link, state_file=state)
    await first.until(lambda: len(first.records) == 5)
    await first.stop()
    append(log, lines(range(5, 8)))
    log.rename(log.with_name("0.log.1"))
    log.write_bytes(lines(range(8, 12)))
    second = start_tail(link, state_file=state)
    await second.until(lambda: len(second.records) >= 4)
    await second.settle()
    assert second.ids == ids(range(5, 12))


async def test_restart_after_rotation_with_old_file_gone_reads_new_file_from_start(
    tmp_path: Path, start_tail: StartTail, caplog: pytest.LogCaptureFixture
) -> None:
    """When the rotated file is gone, the new file is read from byte 0 and that is logged."""
    log, state = tmp_path / "requests.jsonl", tmp_path / "tail.json"
    log.write_bytes(lines(range(5)))
    first = start_tail(log, state_file=state)
    await first.until(lambda: len(first.records) == 5)
    await first.stop()
    fresh = tmp_path / "fresh.jsonl"  # created before the old file goes, so no inode reuse
    fresh.write_bytes(lines(range(5, 9)))
    fresh.replace(log)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        second = start_tail(log, state_file=state, start_at="end")
        await second.until(lambda: len(second.records) == 4)
    assert second.ids == ids(range(5, 9))
    assert any("old file gone" in r.getMessage() for r in caplog.records)


async def test_restart_after_the_file_was_rewritten_in_place_reads_it_from_start(
    tmp_path: Path, start_tail: StartTail
) -> None:
    """A log rewritten while stopped under the inode the state names (a server reopening it
    with truncation, or a new file given the freed inode) holds only lines written since: read
    from byte 0, as when the rotated file is gone, even with start_at=end."""
    log, state = tmp_path / "requests.jsonl", tmp_path / "tail.json"
    log.write_bytes(lines(range(5)))
    first = start_tail(log, state_file=state)
    await first.until(lambda: len(first.records) == 5)
    await first.stop()
    inode = log.stat().st_ino
    log.write_bytes(lines(range(5, 9)))  # truncated and rewritten: the same inode
    assert log.stat().st_ino == inode
    second = start_tail(log, state_file=state, start_at="end")
    await second.until(lambda: len(second.records) == 4)
    await second.settle()
    assert second.ids == ids(range(5, 9))


async def test_corrupt_state_file_is_moved_aside(
    tmp_path: Path, start_tail: StartTail, caplog: pytest.LogCaptureFixture
) -> None:
    """A state file that is not valid is renamed to .corrupt, logged, and start_at applies."""
    log, state = tmp_path / "requests.jsonl", tmp_path / "tail.json"
    log.write_bytes(lines(range(4)))
    state.write_text('{"path": "oops", "offset": ')
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        tail = start_tail(log, state_file=state)
        await tail.until(lambda: len(tail.records) == 4)
    await tail.stop()
    assert (tmp_path / "tail.json.corrupt").read_text() == '{"path": "oops", "offset": '
    assert json.loads(state.read_text())["offset"] == log.stat().st_size
    assert tail.ids == ids(range(4))
    assert [r.levelname for r in caplog.records if "corrupt" in r.getMessage()] == ["WARNING"]


async def test_a_linked_corrupt_state_file_is_moved_aside_where_it_leads(
    tmp_path: Path, start_tail: StartTail
) -> None:
    """A state file that is a link (onto a volume) and corrupt: the file it leads to is moved
    aside, so the link stays and later offsets are written through it (the link was moved
    aside, and the offsets then kept in a file of their own beside it)."""
    (tmp_path / "volume").mkdir()
    log, state = tmp_path / "requests.jsonl", tmp_path / "volume" / "tail.json"
    link = tmp_path / "tail.json"
    link.symlink_to(state)
    log.write_bytes(lines(range(4)))
    state.write_text('{"path": "oops", "offset": ')
    tail = start_tail(log, state_file=link)
    await tail.until(lambda: len(tail.records) == 4)
    await tail.stop()
    assert (state.parent / "tail.json.corrupt").read_text() == '{"path": "oops", "offset": '
    assert link.is_symlink()
    assert json.loads(state.read_text())["offset"] == log.stat().st_size


def _unblock(fifo: Path) -> None:
    """Let an open of ``fifo`` for reading that waits for a writer go on (a tailer that read it
    as a file waited for ever); nothing when no one waits."""
    with contextlib.suppress(OSError):
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


@pytest.mark.parametrize("fifo_at", ["log", "state_file"])
async def test_a_fifo_is_not_read_and_does_not_hold_the_tailer(
    tmp_path: Path, start_tail: StartTail, caplog: pytest.LogCaptureFixture, fifo_at: str
) -> None:
    """A FIFO at the log's path or the state file's is no file to follow or offset to trust:
    the tailer logs so and waits, where its open waited for a writer for ever in a worker
    thread (driftgauge serve then never exited after SIGTERM); a file put in its place is read."""
    log, state = tmp_path / "requests.jsonl", tmp_path / "tail.json"
    fifo = log if fifo_at == "log" else state
    os.mkfifo(fifo)
    if fifo_at == "state_file":  # read once the log is there
        log.write_bytes(lines(range(3)))
    try:
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            tail = start_tail(log, state_file=state)
            await tail.until(lambda: "not a regular file" in caplog.text)
    finally:
        _unblock(fifo)
    assert f"cannot read {log}: not a regular file: '{fifo}'" in caplog.text
    fifo.unlink()
    if fifo_at == "log":
        log.write_bytes(lines(range(3)))
    await tail.until(lambda: len(tail.records) == 3)
    assert tail.ids == ids(range(3))


async def test_an_offset_file_that_cannot_be_read_is_waited_for_and_reported(
    tmp_path: Path, start_tail: StartTail
) -> None:
    """An offset file that cannot be read (a link to itself: ELOOP, for root too) is told to
    on_stall with the reason, once, and nothing is read meanwhile (not from a guessed
    offset); once it can be read the tailer goes on from its offset and tells on_stall None."""
    log, state = tmp_path / "requests.jsonl", tmp_path / "tail.json"
    log.write_bytes(lines(range(5)))
    first = start_tail(log, state_file=state)
    await first.until(lambda: len(first.records) == 5)
    await first.stop()
    saved = state.read_bytes()
    state.unlink()
    state.symlink_to(state.name)
    append(log, lines(range(5, 8)))
    stalls: list[str | None] = []
    second = start_tail(log, state_file=state, on_stall=stalls.append)
    await second.until(lambda: bool(stalls))
    await second.settle()
    assert stalls == [f"cannot read {log}: [Errno 40] Too many levels of symbolic links: '{state}'"]
    assert second.records == []
    state.unlink()
    state.write_bytes(saved)
    await second.until(lambda: len(second.records) == 3)
    assert second.ids == ids(range(5, 8))
    assert stalls[1:] == [None]


async def test_an_offset_that_cannot_be_written_is_logged_once_per_problem(
    tmp_path: Path, start_tail: StartTail, caplog: pytest.LogCaptureFixture
) -> None:
    """A state file that cannot be written (a folder in its way) is a WARNING once, not one
    per batch read (a busy log flooded the log with them), the lines still delivered; written
    again it says so, and failing again warns again."""
    log, state = tmp_path / "requests.jsonl", tmp_path / "tail.json"
    log.write_bytes(lines(range(2)))
    with caplog.at_level(logging.INFO, logger=LOGGER):
        tail = start_tail(log, state_file=state)
        size = log.stat().st_size
        await tail.until(
            lambda: state.is_file() and json.loads(state.read_text())["offset"] == size
        )
        state.unlink()
        (state / "in the way").mkdir(parents=True)
        for batch in range(1, 6):
            append(log, lines(range(2 * batch, 2 * batch + 2)))
            await tail.until(lambda: len(tail.records) == 2 * batch + 2)  # noqa: B023
        (state / "in the way").rmdir()
        state.rmdir()
        append(log, lines(range(12, 14)))
        await tail.until(lambda: state.is_file())
        state.unlink()
        state.mkdir()
        append(log, lines(range(14, 16)))
        await tail.until(lambda: len(tail.records) == 16)
        await tail.settle()
    said = [r.getMessage() for r in caplog.records if "tail state file" in r.getMessage()]
    failed = f"cannot write the tail state file {state}: Is a directory"
    assert said == [failed, f"tail state file {state} written again", failed], said
    assert tail.ids == ids(range(16))


async def test_bad_lines_are_reported_and_good_lines_still_delivered(
    tmp_path: Path, start_tail: StartTail
) -> None:
    """Each bad line yields one on_error reason; blank lines are ignored."""
    log = tmp_path / "requests.jsonl"
    log.write_bytes(
        line(0)
        + b"{not json\n"
        + b"[1, 2]\n"
        + b'{"response": 1}\n'
        + b"\n   \n"
        + line(1)
        + line(2, ts="yesterday")
        + line(3, ts=True)
        + line(4, id=["x"])
        + b'{"request": "'
        + b"a" * 500
        + b'"}\n'
        + b"\xff\xfe\n"
        + line(5)
    )
    tail = start_tail(log, max_line_bytes=300)
    await tail.until(lambda: len(tail.records) == 3)
    await tail.settle()
    assert tail.ids == ["r0", "r1", "r5"]
    assert Counter(tail.errors) == {
        "invalid_json": 2,
        "invalid_record": 3,
        "invalid_ts": 2,
        "line_too_long": 1,
    }


async def test_a_numeric_id_is_the_request_id_as_labels_spell_it(
    tmp_path: Path, start_tail: StartTail
) -> None:
    """An id written as a JSON number is read, not refused: 7 and 7.0 (a float column of ids,
    as pandas writes one with a gap) are "7", as a label's id 7.0 is."""
    log = tmp_path / "requests.jsonl"
    log.write_bytes(line(0, id=7) + line(1, id=7.0) + line(2, id=0.5) + line(3, id=None))
    tail = start_tail(log)
    await tail.until(lambda: len(tail.records) == 4)
    assert [r.request_id for r in tail.records] == ["7", "7", "0.5", None]
    assert tail.errors == []


async def test_an_integer_id_beyond_64_bits_keeps_its_digits(
    tmp_path: Path, start_tail: StartTail
) -> None:
    """An id of 30 digits (which orjson, the fast extra, reads as the nearest float) is the
    request id its labels spell, every digit kept; one within 64 bits is read as before."""
    big, negative = 123456789012345678901234567890, -(2**63) - 1
    log = tmp_path / "requests.jsonl"
    log.write_bytes(line(0, id=big) + line(1, id=negative) + line(2, id=2**64 - 1))
    tail = start_tail(log)
    await tail.until(lambda: len(tail.records) == 3)
    assert [r.request_id for r in tail.records] == [str(big), str(negative), str(2**64 - 1)]
    assert tail.errors == []


async def test_over_long_line_is_skipped_without_buffering_it(
    tmp_path: Path, start_tail: StartTail, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A line over the cap, read over many chunks, is dropped as one line_too_long."""
    monkeypatch.setattr(tail_module, "CHUNK_BYTES", 64)
    log = tmp_path / "requests.jsonl"
    log.write_bytes(line(0) + b'{"request": "' + b"a" * 5000)
    tail = start_tail(log, max_line_bytes=200)
    await tail.until(lambda: len(tail.records) == 1)
    append(log, b"a" * 5000 + b'"}\n' + line(1))
    await tail.until(lambda: len(tail.records) == 2)
    assert tail.ids == ["r0", "r1"]
    assert tail.errors == ["line_too_long"]


async def test_timestamps_unix_and_rfc3339_and_missing(
    tmp_path: Path, start_tail: StartTail
) -> None:
    """ts may be unix seconds or RFC 3339; a missing ts is the read time."""
    log = tmp_path / "requests.jsonl"
    log.write_bytes(
        line(0, ts=1_700_000_000)
        + line(1, ts=1_700_000_000.25)
        + line(2, ts="2023-11-14T22:13:20Z")
        + line(3, ts="2023-11-14T23:43:20.5+01:30")
        + b'{"request": {}, "path": "/v2/models/m/infer"}\n'
    )
    before = time.time()
    tail = start_tail(log)
    await tail.until(lambda: len(tail.records) == 5)
    stamps = [r.ts for r in tail.records]
    assert stamps[:4] == [1_700_000_000.0, 1_700_000_000.25, 1_700_000_000.0, 1_700_000_000.5]
    assert before <= stamps[4] <= time.time()
    assert (tail.records[4].path, tail.records[4].request_id) == ("/v2/models/m/infer", None)


async def test_a_leap_second_is_read_as_the_next_second(
    tmp_path: Path, start_tail: StartTail
) -> None:
    """A line stamped in a leap second (23:59:60 UTC) is delivered, at the next second."""
    log = tmp_path / "requests.jsonl"
    log.write_bytes(
        line(0, ts="2016-12-31T23:59:59.5Z")
        + line(1, ts="2016-12-31T23:59:60Z")
        + line(2, ts="2016-12-31T23:59:60.75Z")
        + line(3, ts="2017-01-01T00:00:00.5Z")
    )
    tail = start_tail(log)
    await tail.until(lambda: len(tail.records) == 4)
    assert [r.ts for r in tail.records] == [
        1_483_228_799.5,
        1_483_228_800.0,
        1_483_228_800.75,
        1_483_228_800.5,
    ]
    assert tail.errors == []


async def test_a_byte_order_mark_before_a_line_is_ignored(
    tmp_path: Path, start_tail: StartTail
) -> None:
    """A log written with a UTF-8 byte order mark (PowerShell's utf8, Notepad) keeps its first
    line, and a file appended to another with its mark keeps that line too."""
    log = tmp_path / "requests.jsonl"
    bom = "\ufeff".encode()
    log.write_bytes(bom + line(0) + line(1) + bom + line(2))
    tail = start_tail(log)
    await tail.until(lambda: len(tail.records) == 3)
    await tail.settle()
    assert tail.ids == ids(range(3))
    assert tail.errors == []


async def test_start_at_end_skips_existing_content(tmp_path: Path, start_tail: StartTail) -> None:
    """With start_at=end only lines completed after the start arrive."""
    log, state = tmp_path / "requests.jsonl", tmp_path / "tail.json"
    log.write_bytes(lines(range(5)) + line(5)[:-10])
    tail = start_tail(log, state_file=state, start_at="end")
    await tail.until(state.exists)  # the state is written once the start position is chosen
    append(log, line(5)[-10:] + lines(range(6, 8)))
    await tail.until(lambda: len(tail.records) == 3)
    await tail.settle()
    assert tail.ids == ids(range(5, 8))  # the line completed after the start counts as new
    assert tail.errors == []


async def test_missing_file_is_awaited_with_one_log_line(
    tmp_path: Path, start_tail: StartTail, caplog: pytest.LogCaptureFixture
) -> None:
    """A missing file is waited for quietly and read from its start once it appears."""
    log = tmp_path / "requests.jsonl"
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        tail = start_tail(log, start_at="end")
        await tail.until(lambda: "waiting for" in caplog.text)
        await tail.settle(polls=10)  # many polls of a missing file, still one log line
        log.write_bytes(lines(range(3)))
        await tail.until(lambda: len(tail.records) == 3)
    assert tail.ids == ids(range(3))
    assert len([r for r in caplog.records if r.name == LOGGER]) == 1
    assert tail.errors == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0.0),
        (1_700_000_000, 1_700_000_000.0),
        (1.5, 1.5),
        ("1970-01-01T00:00:00Z", 0.0),
        ("2023-11-14T22:13:20z", 1_700_000_000.0),
        ("2023-11-14 22:13:20.123+00:00", 1_700_000_000.123),
        ("2023-11-15T03:43:20+05:30", 1_700_000_000.0),
        ("2023-11-14T12:13:20.000001-10:00", 1_700_000_000.000001),
        ("2016-12-31T23:59:60Z", 1_483_228_800.0),  # a leap second: the next second (POSIX)
        ("2016-12-31T23:59:60.25Z", 1_483_228_800.25),
        ("2017-01-01T00:59:60+01:00", 1_483_228_800.0),
        ("2015-06-30T23:59:60Z", 1_435_708_800.0),
    ],
)
def test_parse_timestamp_accepts_unix_seconds_and_rfc3339(value: object, expected: float) -> None:
    """Numbers are seconds; RFC 3339 strings honour their offset and fraction."""
    assert parse_timestamp(value) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    "value",
    [
        True,
        None,
        [1],
        float("nan"),
        float("inf"),
        10**400,
        "",
        "1700000000",
        "2023-11-14",
        "2023-11-14T22:13:20",
        "2023-11-14T22:13:20+24:00",
        "2023-13-14T22:13:20Z",
        "2023-02-30T22:13:20Z",
        "2023-11-14T22:13:20.Z",
        "2023-11-14T22:13:20Z ",
        "2023-11-14T22:13:20+05:60",
        "2023-11-14T25:13:20Z",
        "2023-11-14T22:13:60Z",  # second 60 only where a leap second can be
        "2016-12-30T23:59:60Z",
        "2016-12-31T23:59:60+01:00",
        "2016-12-31T23:59:61Z",
        "２０２３-11-14T22:13:20Z",
    ],
)
def test_parse_timestamp_rejects_everything_else(value: object) -> None:
    """Anything that is not finite seconds or a full RFC 3339 date-time raises ValueError."""
    with pytest.raises(ValueError, match=r"."):
        parse_timestamp(value)


@given(
    moment=st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1)),
    offset_minutes=st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1),
    digits=st.integers(min_value=0, max_value=9),
    separator=st.sampled_from(["T", "t", " "]),
    zulu=st.sampled_from(["Z", "z", "+00:00", "-00:00"]),
)
def test_parse_timestamp_round_trips_rfc3339(
    moment: datetime, offset_minutes: int, digits: int, separator: str, zulu: str
) -> None:
    """Any local time with any offset and fraction parses to the exact instant (to 1 µs)."""
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    suffix = zulu if offset_minutes == 0 else f"{sign}{hours:02d}:{minutes:02d}"
    micros = f"{moment.microsecond:06d}"
    fraction = (micros + "000")[:digits]
    text = moment.strftime(f"%Y-%m-%d{separator}%H:%M:%S")
    text += f".{fraction}" if digits else ""
    text += suffix
    whole = moment.replace(microsecond=0, tzinfo=timezone(timedelta(minutes=offset_minutes)))
    exact = Fraction(int(whole.timestamp())) + (
        Fraction(int(fraction), 10**digits) if digits else 0
    )
    assert abs(Fraction(parse_timestamp(text)) - exact) <= Fraction(1, 10**6)
