"""The ``tail`` source: follow a JSON Lines request log and hand its records over in batches.

Lines are ``{"ts", "id", "request", "response", "path"}`` (see SPEC); a bad one is skipped and
reported to ``on_error`` as ``invalid_json``, ``invalid_record``, ``invalid_ts`` or
``line_too_long``.  Disk access runs in worker threads, the callbacks on the event loop.

* Order: records arrive in file order, each line once it is complete (ends with a newline).
* Rotation (rename + create): once the new file is seen, the old one is drained to its end
  again until a whole poll passes without it growing (the writer may still use it: logrotate
  creates the new file before it tells the writer), for up to 5 s, or at once when the new
  file is rotated away in turn; then the new one is read from byte 0.  The new file
  is held open from when it is first seen, so one rotated away in turn before the old one is
  drained is still read, and in order (the path is checked once a poll while a backlog is
  read too).  On Linux the path is also checked as soon as a file is created at or renamed
  to it, or where it leads for a link (inotify, see tail_watch), so only a file rotated away
  again within moments of its creation (before the tailer opened it: about a millisecond,
  more under load) is never seen, so never read; elsewhere, or where inotify sees no change
  (a network file system written from another host), a file created and rotated away between
  two checks.  A path
  that names another file and then the followed one again (the log moved aside and back while
  still growing, or within a poll) leaves the tailer on the followed file, and the other file
  is not read.  Once the tailer has followed the other file (named a whole poll while the log
  did not grow, nothing tells it from a rotated-in one), it is read, and the log named again
  within 5 s of being left goes on where it was left, none of its lines read twice (later, it
  is a new file to the tailer, read from byte 0).  A truncated file (copytruncate) is read
  again from byte 0; what was written between the last poll and the truncation is lost.
* Restart: with a ``state_file``, the offset of the first line not yet handed over is replaced
  atomically (temp file, fsync, rename) right after every ``on_records`` call and at shutdown,
  so a clean stop (task cancelled) and restart neither skips nor re-reads a line.  A hard crash
  after ``on_records`` returned but before that write finished re-delivers at most that one
  batch; nothing is ever skipped.  The state applies when path, inode and device match, the
  file holds ``offset`` bytes and its first ``min(256, offset)`` bytes hash the same; a file of
  that inode that does not (rewritten in place while stopped, or a new file given the freed
  inode) is read from byte 0 (logged).  A file rotated while stopped is looked up by inode in
  the same directory (where the path leads, for a link) and finished first; if it is gone
  the new file is read from byte 0 (logged).  Without a state file for this path (or with a
  corrupt one) ``start_at`` applies ("end": after the last complete line), except that a file
  appearing after the start is read whole.
* A log or state file that is there but cannot be read is waited out, never guessed around:
  logged once and told to ``on_stall`` (None once it reads again).  Only regular files are
  read: a FIFO at either (whose open would wait for a writer for ever) is such a file.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from driftgauge.atomic import move_aside, open_regular, write_atomically
from driftgauge.canonical import row_id
from driftgauge.config import TailConfig
from driftgauge.jsonbody import decode_json, lossy, reread_exactly
from driftgauge.sources.tail_watch import PathWatch
from driftgauge.typing import Record

__all__ = ["CHUNK_BYTES", "ERROR_REASONS", "MAX_LINE_BYTES", "TailSource", "parse_timestamp"]

# What on_error may be told (driftgauge_source_parse_errors_total{reason}).
ERROR_REASONS = ("invalid_json", "invalid_record", "invalid_ts", "line_too_long")

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
MAX_LINE_BYTES = 16 << 20
_HEAD = 256  # bytes of the file start that identify its content
_ROTATE_GRACE = 5.0  # longest wait for a rotated-away file that keeps growing
_MOVE_BACK = 5.0  # how long a file left for a new one stays open, should the path name it again
_RFC3339 = re.compile(
    r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)", re.A
)
_BOM = "\ufeff".encode()  # a UTF-8 byte order mark, which some Windows tools write first
_STATE_TYPES = {"path": str, "inode": int, "device": int, "offset": int, "head": str}


def parse_timestamp(value: object) -> float:
    """Unix seconds from a log line's ``ts``: a number of seconds or an RFC 3339 string.

    Raises ValueError for anything else: booleans, NaN or infinity, dates without a time or an
    offset, impossible dates.  Fractions beyond microseconds are truncated.  A leap second
    (``23:59:60`` UTC on a month's last day, as RFC 3339 allows) is the next second, as POSIX
    time counts it: ``2016-12-31T23:59:60.5Z`` is ``2017-01-01T00:00:00.5Z``.
    """
    if isinstance(value, str) and _RFC3339.fullmatch(value):
        # fromisoformat alone would also take forms RFC 3339 forbids, such as a missing offset
        text = value.upper().replace(" ", "T").replace("Z", "+00:00")
        leap = text[17:19] == "60"  # datetime has no second 60: read as :59, then one more
        if leap:
            text = f"{text[:17]}59{text[19:]}"
        try:
            moment = datetime.fromisoformat(text)
            if leap and not _leap_second(moment):
                raise ValueError("second 60 is a leap second, only at 23:59 UTC on a month's end")
            return moment.timestamp() + (1.0 if leap else 0.0)
        except OverflowError:
            raise ValueError("date-time out of range") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not abs(value) < 1e18:
        raise ValueError("expected finite unix seconds or an RFC 3339 date-time with an offset")
    return float(value)


def _leap_second(moment: datetime) -> bool:
    """True when ``moment``, read at second 59, is where a leap second may follow (RFC 3339)."""
    utc = moment.astimezone(UTC)
    return (utc.hour, utc.minute) == (23, 59) and (utc + timedelta(days=1)).day == 1


def _parse_line(line: bytes, now: float) -> Record | str:
    """One log line as a Record, or the reason it is not one."""
    try:
        obj = decode_json(line)
    except (ValueError, RecursionError):
        return "invalid_json"
    if not isinstance(obj, dict) or "request" not in obj:
        return "invalid_record"
    request_id, path = obj.get("id"), obj.get("path")
    if lossy((request_id,)):  # an integer beyond 64 bits that orjson read as a float
        request_id = reread_exactly(line, obj).get("id")
    if isinstance(request_id, int | float) and not isinstance(request_id, bool):
        request_id = row_id(request_id)  # spelled as label ids are: 7.0 is "7"
    if not (request_id is None or isinstance(request_id, str)):
        return "invalid_record"
    try:
        ts = now if obj.get("ts") is None else parse_timestamp(obj["ts"])
    except ValueError:
        return "invalid_ts"
    path = path if isinstance(path, str) else ""
    return Record(ts, obj["request"], obj.get("response"), path, request_id, line=line)


@dataclass(frozen=True, slots=True)
class _Cursor:
    """Where reading goes on: ``pos`` is just past the buffered partial line ``pending``."""

    pos: int
    pending: bytes = b""
    skipping: bool = False  # inside an over-long line: drop bytes up to its newline


@dataclass(slots=True)
class _File:
    """An open log file, how far it has been read, and how far handed over."""

    fd: int
    dev: int
    ino: int
    offset: int = 0  # start of the first line not yet handed over: what the state file stores
    cursor: _Cursor = _Cursor(0)
    head: bytes = b""  # the file's first bytes (up to _HEAD), to notice a rewrite

    @classmethod
    def open(cls, path: Path) -> _File:
        fd = open_regular(path)
        st = os.fstat(fd)  # identity of what was opened, not of what the path names later
        return cls(fd, st.st_dev, st.st_ino)

    def at(self, offset: int) -> _File:
        """Position at ``offset`` (a line start) with nothing buffered; blocking."""
        self.offset, self.cursor, self.head = offset, _Cursor(offset), os.pread(self.fd, _HEAD, 0)
        return self

    def matches(self, state: dict[str, Any]) -> bool:
        """True when this file holds the ``offset`` bytes ``state`` saw (same start); blocking."""
        offset: int = state["offset"]
        size, head = os.fstat(self.fd).st_size, os.pread(self.fd, min(_HEAD, offset), 0)
        return size >= offset and bool(hashlib.sha256(head).hexdigest() == state["head"])


@dataclass(frozen=True, slots=True)
class _Batch:
    records: list[Record]
    errors: list[str]
    end: int  # file offset just past the batch's last line


_Chunk = tuple[list[_Batch], _Cursor, bytes]  # parsed batches, cursor after them, file head


LineParser = Callable[[bytes, float], Record | str]


def _read_chunk(f: _File, max_line: int, max_batch: int, parse: LineParser) -> _Chunk | None:
    """Read one chunk at the cursor and parse its complete lines (runs in a worker thread).

    None when the file was truncated or rewritten (copytruncate) under the cursor.
    """
    read_pos, pending, skipping = f.cursor.pos, f.cursor.pending, f.cursor.skipping
    data = os.pread(f.fd, CHUNK_BYTES, read_pos)
    # Checked after the read: an unchanged start means ``data`` is not from a refilled file.
    head = os.pread(f.fd, _HEAD, 0)
    if not head.startswith(f.head) or os.fstat(f.fd).st_size < read_pos:
        return None
    now, start, end = time.time(), 0, 0
    batches: list[_Batch] = []
    records: list[Record] = []
    errors: list[str] = []
    while (newline := data.find(b"\n", start)) >= 0:
        end = read_pos + newline + 1
        line, pending, start = pending + data[start:newline], b"", newline + 1
        if line.startswith(_BOM):  # JSON readers may ignore one (RFC 8259 8.1); orjson refuses it
            line = line[len(_BOM) :]
        if skipping or len(line) > max_line:
            errors.append("line_too_long")
            skipping = False
        elif line.strip():
            parsed = parse(line, now)
            if isinstance(parsed, str):
                errors.append(parsed)
                continue
            records.append(parsed)
            if len(records) == max_batch:
                batches.append(_Batch(records, errors, end))
                records, errors = [], []
    if end and (not batches or batches[-1].end != end):
        batches.append(_Batch(records, errors, end))
    if not skipping:
        pending += data[start:]
        if len(pending) > max_line:  # never buffer more than one line's cap
            pending, skipping = b"", True
    return batches, _Cursor(read_pos + len(data), pending, skipping), head


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of what ``path`` names now, None when nothing does."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _last_line_start(f: _File) -> int:
    """Offset just past the file's last newline (searched in its last chunk); blocking."""
    size = os.fstat(f.fd).st_size
    start = max(0, size - CHUNK_BYTES)
    newline = os.pread(f.fd, size - start, start).rfind(b"\n")
    return start + newline + 1 if newline >= 0 or start == 0 else size


def _find_by_inode(directory: Path, state: dict[str, Any]) -> _File | None:
    """The rotated-away file ``state`` describes, if it still sits in ``directory``."""
    with contextlib.suppress(OSError), os.scandir(directory) as entries:
        for entry in (e for e in entries if e.inode() == state["inode"]):
            f = _File.open(Path(entry.path))
            try:
                if f.dev == state["device"] and f.matches(state):
                    return f.at(state["offset"])
            except OSError:
                pass
            os.close(f.fd)
    return None


def _write_state(path: Path, state: dict[str, Any]) -> str:
    """Replace the state file atomically and durably; why that failed ("" when it did not)."""
    try:
        write_atomically(path, json.dumps(state).encode())
    except OSError as exc:
        return str(exc.strerror or exc)
    return ""


def _close_abandoned(future: asyncio.Future[_File | None]) -> None:
    if not future.cancelled() and future.exception() is None and (f := future.result()):
        os.close(f.fd)


async def _opened(call: Callable[[], _File | None]) -> _File | None:
    """``call`` in a worker thread.  run_in_executor, not to_thread: when cancelled, the thread
    still finishes and a callback closes the file it opened instead of leaking it."""
    future = asyncio.get_running_loop().run_in_executor(None, call)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        future.add_done_callback(_close_abandoned)
        raise


def _open_replacement(path: Path, f: _File) -> _File | None:
    """What ``path`` names, opened, when that is another file than ``f``; blocking."""
    with contextlib.suppress(FileNotFoundError):
        new = _File.open(path)
        if (new.dev, new.ino) != (f.dev, f.ino):
            return new
        os.close(new.fd)
    return None


class TailSource:
    """Follows ``config.path`` until cancelled; see the module docstring for the guarantees."""

    def __init__(
        self,
        config: TailConfig,
        on_records: Callable[[list[Record]], None],
        on_error: Callable[[str], None],
        *,
        max_batch: int = 1000,
        max_line_bytes: int = MAX_LINE_BYTES,
        parse_line: LineParser | None = None,
        on_stall: Callable[[str | None], None] | None = None,
    ) -> None:
        self._config = config
        # Told why the tailer cannot read (its log, or its offset, so it waits), None once it can.
        self._on_stall = on_stall or (lambda reason: None)
        self._parse = parse_line or _parse_line  # another JSON Lines record shape (feedback)
        self._on_records, self._on_error = on_records, on_error
        self._max_batch, self._max_line = max_batch, max_line_bytes
        self._watch = PathWatch(config.path)  # checks the path at once when a file appears there
        self._file: _File | None = None
        self._next: _File | None = None  # the file that replaced self._file, since first seen
        self._left: _File | None = None  # the file followed before self._file, for a while
        self._left_until = 0.0
        self._backlog_check = 0.0  # when to look for self._next again while a backlog is read
        self._first_open = True  # the state file and start_at apply to the first open only
        self._seen_missing = self._waiting_logged = False
        self._grew = False  # the current file yielded bytes since the path was last checked
        self._rotation_seen: float | None = None
        self._saved: dict[str, Any] | None = None
        self._save_error = ""  # why the last write of the state file failed ("" when it did not)
        self._last_error = ""

    async def run(self) -> None:
        """Follow the file until cancelled; the offset is saved before cancellation propagates."""
        try:
            # Watched from the start: a file created at the path while the first chunks are
            # read and checked (in worker threads, slow on a busy machine) waited for a poll.
            self._watch.start()
            while True:
                try:
                    more = await self._step()
                except OSError as exc:
                    if str(exc) != self._last_error:  # one log line per distinct problem
                        self._last_error = str(exc)
                        logger.warning("cannot read %s: %s", self._config.path, exc)
                        self._on_stall(f"cannot read {self._config.path}: {exc}")
                    more = False
                else:
                    if self._last_error:
                        self._last_error = ""
                        logger.info("%s can be read again", self._config.path)
                        self._on_stall(None)
                if not more:
                    await self._watch.wait(self._config.poll_interval)
        finally:
            self._watch.close()
            if (f := self._file) is not None:
                state, state_file, self._file = self._state(f), self._config.state_file, None
                if state is not None and state != self._saved and state_file is not None:
                    # blocking, but only once, at shutdown
                    self._wrote(state, _write_state(state_file, state))
                os.close(f.fd)
            if (held := self._next) is not None:
                self._next = None
                os.close(held.fd)
            self._close_left()

    async def _step(self) -> bool:
        """Read one chunk or check the path; True when more data may be waiting right now."""
        if self._left is not None and time.monotonic() >= self._left_until:
            self._close_left()
        if (f := self._file) is None:
            return await self._open_path()
        path = self._config.path
        if await self._read(f):
            # A backlog: read on, but look for a new file meanwhile, once a poll or as it appears.
            now = time.monotonic()
            if self._next is None and (self._watch.take() or now >= self._backlog_check):
                self._backlog_check = now + self._config.poll_interval
                self._next = await _opened(partial(_open_replacement, path, f))
            return True
        named = await asyncio.to_thread(_identity, path)
        grew, self._grew = self._grew, False
        if named == (f.dev, f.ino) and (held := self._next) is not None:
            # Moved aside and back: what the path named meanwhile did not replace this file.
            logger.info("%s names the followed file again; not reading the other one", path)
            self._next = None
            os.close(held.fd)
        if named == (f.dev, f.ino) or (named is None and self._next is None):
            self._rotation_seen = None
            return False  # unchanged, or renamed away: read on until a new file appears
        now, first_seen = time.monotonic(), self._rotation_seen is None
        self._rotation_seen = self._rotation_seen or now
        if (held := self._next) is None:
            # Held from now: rotated away in turn before the old file is drained, it is still
            # read after it.
            self._next = await _opened(partial(_open_replacement, path, f))
        # The held file rotated away in turn: rotation went on, so the writer is done with f.
        moved_on = held is not None and named != (held.dev, held.ino)
        waited = now - self._rotation_seen
        if (
            not moved_on
            and (grew or waited < self._config.poll_interval)
            and waited < _ROTATE_GRACE
        ):
            # Drain the old file again now that the new one exists: lines written to it before
            # the new file appeared are visible now.  Go on while the writer still uses it
            # (logrotate creates the new file before it tells the writer): until a whole poll
            # has passed without the old file growing.
            return first_seen
        if f.cursor.pending or f.cursor.skipping:
            logger.warning("%s was rotated with an incomplete last line; dropped it", path)
        logger.info("%s was rotated; following the new file", path)
        self._file = None
        try:
            return await self._open_path()
        finally:
            self._leave(f)

    def _leave(self, f: _File) -> None:
        """Keep ``f`` open for _MOVE_BACK seconds after leaving it, should the path name it again
        (the log moved aside and back): it then goes on where it was left, nothing read twice."""
        self._close_left()
        self._left, self._left_until = f, time.monotonic() + _MOVE_BACK

    def _close_left(self) -> None:
        """Close the file left for a new one (see :meth:`_leave`), if one is still open."""
        if (left := self._left) is not None:
            self._left = None
            os.close(left.fd)

    async def _read(self, f: _File) -> bool:
        """Read and hand over one chunk; True when it was full (more may be waiting)."""
        chunk = await asyncio.to_thread(
            _read_chunk, f, self._max_line, self._max_batch, self._parse
        )
        if chunk is None:
            logger.warning("%s was truncated; reading it again from the start", self._config.path)
            await asyncio.to_thread(f.at, 0)
            await self._save(f)
            return True
        batches, cursor, f.head = chunk
        size, f.cursor = cursor.pos - f.cursor.pos, cursor
        self._grew = self._grew or size > 0
        try:
            for batch in batches:
                for reason in batch.errors:
                    self._on_error(reason)
                if batch.records:
                    self._on_records(batch.records)
                f.offset = batch.end
                await self._save(f)
        except BaseException:
            f.cursor = _Cursor(f.offset)  # the lines after f.offset were not all handed over
            raise
        return size == CHUNK_BYTES

    async def _open_path(self) -> bool:
        held, self._next = self._next, None
        f = await _opened(partial(self._open_blocking, held))
        if (
            f is not None
            and (left := self._left) is not None
            and (left.dev, left.ino) == (f.dev, f.ino)
        ):
            logger.info(
                "%s names the file followed before again; going on where it was left",
                self._config.path,
            )
            os.close(f.fd)
            f, self._left = left, None
        if f is not None:
            self._file, self._rotation_seen, self._grew = f, None, False
            await self._save(f)
        return f is not None

    def _open_blocking(self, held: _File | None = None) -> _File | None:
        if held is not None:  # what replaced the last file, opened when it was first seen
            try:
                return held.at(0)
            except BaseException:
                os.close(held.fd)
                raise
        try:
            f = _File.open(self._config.path)
        except FileNotFoundError:
            if not self._waiting_logged:
                logger.info("waiting for %s to appear", self._config.path)
            self._seen_missing = self._waiting_logged = True
            return None
        self._waiting_logged = False
        try:
            f = self._start_position(f) if self._first_open else f.at(0)
        except BaseException:
            os.close(f.fd)
            raise
        self._first_open = False
        return f

    def _start_position(self, f: _File) -> _File:
        """Where to begin on the first open: the saved offset if it still applies, else start_at."""
        path, state = self._config.path, self._load_state()
        if state is not None and (state["device"], state["inode"]) == (f.dev, f.ino):
            if f.matches(state):
                return f.at(state["offset"])
            # Rewritten since (truncated, or a new file given the freed inode): all it holds is new.
            logger.warning("%s changed while stopped; reading it from byte 0", path)
            return f.at(0)
        if state is not None:
            # Where the path leads, for a link: a log is rotated beside the file it writes.
            if (old := _find_by_inode(Path(os.path.realpath(path)).parent, state)) is not None:
                logger.info("%s was rotated while stopped; finishing the old file first", path)
                os.close(f.fd)
                return old
            logger.warning("%s was rotated while stopped, old file gone; from byte 0", path)
            return f.at(0)
        if self._seen_missing or self._config.start_at == "beginning":
            return f.at(0)
        return f.at(_last_line_start(f))

    def _load_state(self) -> dict[str, Any] | None:
        if (path := self._config.state_file) is None:
            return None
        try:
            with open(open_regular(path), "rb") as handle:
                state = json.loads(handle.read())
            if not isinstance(state, dict) or any(
                type(state.get(k)) is not t for k, t in _STATE_TYPES.items()
            ):
                raise ValueError("missing keys or wrong types")
            if state["offset"] < 0:
                raise ValueError("negative offset")
        except FileNotFoundError:
            return None
        except ValueError as exc:  # other OSErrors propagate: run() logs them and tries again
            logger.warning("tail state file %s is corrupt (%s); moved it aside", path, exc)
            with contextlib.suppress(OSError):
                move_aside(path, ".corrupt")
            return None
        if state["path"] != str(self._config.path):
            logger.info("tail state file %s is for another path; ignoring it", path)
            return None
        return state

    def _state(self, f: _File) -> dict[str, Any] | None:
        if self._config.state_file is None:
            return None
        head = hashlib.sha256(f.head[: min(_HEAD, f.offset)]).hexdigest()
        path = str(self._config.path)
        return {"path": path, "inode": f.ino, "device": f.dev, "offset": f.offset, "head": head}

    async def _save(self, f: _File) -> None:
        state, state_file = self._state(f), self._config.state_file
        if state is None or state == self._saved or state_file is None:
            return
        self._wrote(state, await asyncio.to_thread(_write_state, state_file, state))

    def _wrote(self, state: dict[str, Any], error: str) -> None:
        """Note a write of ``state``: a failure is logged once per reason, as each batch read
        tries again, and the first write after one says so."""
        if not error:
            self._saved = state
            if self._save_error:
                logger.info("tail state file %s written again", self._config.state_file)
        elif error != self._save_error:
            logger.warning(
                "cannot write the tail state file %s: %s", self._config.state_file, error
            )
        self._save_error = error
