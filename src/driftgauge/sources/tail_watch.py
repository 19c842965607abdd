"""Wake the tailer as soon as a file is created at, or renamed to, the path it follows.

Linux inotify through ctypes (no dependency), on the path's directory, for that one name.  It is
only a hint that the path may name another file now: where inotify is missing (another system,
no libc symbols, the per-user instance or watch limit reached) or sees nothing (a network file
system changed from another host), and while the directory does not exist, :meth:`PathWatch.wait`
just sleeps its time, so the caller's polling finds the change as it would without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import struct
import sys
from pathlib import Path

__all__ = ["PathWatch"]

_IN_MOVED_TO, _IN_CREATE, _IN_MOVE_SELF = 0x80, 0x100, 0x800
_IN_Q_OVERFLOW, _IN_IGNORED, _IN_ONLYDIR = 0x4000, 0x8000, 0x1000000
_MASK = _IN_CREATE | _IN_MOVED_TO | _IN_MOVE_SELF | _IN_ONLYDIR
_GONE = _IN_IGNORED | _IN_MOVE_SELF  # the watch no longer follows the path's directory
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, length of the NUL-padded name that follows


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()


class PathWatch:
    """Notices the path's name created or renamed to in its directory; see the module docstring.

    Used from one event loop; :meth:`close` it when done.
    """

    def __init__(self, path: Path) -> None:
        self._directory, self._name = os.fsencode(path.parent), os.fsencode(path.name)
        self._fd: int | None = None
        self._changed = asyncio.Event()

    def take(self) -> bool:
        """True when the name changed since the last ``take`` or ``wait``."""
        changed = self._changed.is_set()
        self._changed.clear()
        return changed

    async def wait(self, seconds: float) -> None:
        """Return when the name changes (or changed since the last look), or after ``seconds``."""
        if self._fd is None:
            self._start()
        if not self._changed.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self._changed.wait()
        self._changed.clear()

    def close(self) -> None:
        if (fd := self._fd) is not None:
            self._fd = None
            asyncio.get_running_loop().remove_reader(fd)
            os.close(fd)

    def _start(self) -> None:
        """Watch the directory if it can be watched now; else the next ``wait`` tries again."""
        if _LIBC is None or (fd := _LIBC.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)) < 0:
            return
        if _LIBC.inotify_add_watch(fd, self._directory, _MASK) < 0:
            os.close(fd)  # no such directory yet, or the watch limit: polling alone for now
            return
        asyncio.get_running_loop().add_reader(fd, self._read_events)
        self._fd = fd

    def _read_events(self) -> None:
        if (fd := self._fd) is None:
            return
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            return
        except OSError:  # not expected; polling alone until the next wait watches again
            self.close()
            return
        offset = 0
        while offset + _EVENT.size <= len(data):
            _, mask, _, length = _EVENT.unpack_from(data, offset)
            start, offset = offset + _EVENT.size, offset + _EVENT.size + length
            if mask & _GONE:  # directory removed or renamed: watch it again at the next wait
                self.close()
                self._changed.set()
                return
            if mask & _IN_Q_OVERFLOW or data[start:offset].rstrip(b"\0") == self._name:
                self._changed.set()
