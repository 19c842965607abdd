"""Wake the tailer as soon as a file is created at, or renamed to, the path it follows.

Linux inotify through ctypes (no dependency), on the path's directory, for that one name, and
where the path is a link (Kubernetes' /var/log/containers/*.log), on the directory and name it
leads to as well, since the log is rotated there; the link made to lead elsewhere, the next wait
watches where it leads then.  It is only a hint that the path may name another file now: where
inotify is missing (another system, no libc symbols, the per-user instance or watch limit
reached) or sees nothing (a network file system changed from another host), and while the
directory does not exist, :meth:`PathWatch.wait` just sleeps its time, so the caller's polling
finds the change as it would without it.
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
        self._path = path
        self._fd: int | None = None
        self._names: dict[int, set[bytes]] = {}  # the names watched, by watch descriptor
        self._link: tuple[int, bytes] | None = None  # a linked path's watch and own name
        self._changed = asyncio.Event()

    def take(self) -> bool:
        """True when the name changed since the last ``take`` or ``wait``."""
        changed = self._changed.is_set()
        self._changed.clear()
        return changed

    def start(self) -> None:
        """Watch from now on (else from the first :meth:`wait`), where the path can be watched."""
        if self._fd is None:
            self._start()

    async def wait(self, seconds: float) -> None:
        """Return when the name changes (or changed since the last look), or after ``seconds``."""
        self.start()
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
        watched = _watched(self._path)
        names: dict[int, set[bytes]] = {}
        link = None
        for path in watched:  # the path's own watch first: without it, polling alone for now
            name = os.fsencode(path.name)
            if (wd := _LIBC.inotify_add_watch(fd, os.fsencode(path.parent), _MASK)) < 0:
                if not names:  # no such directory yet, or the watch limit
                    os.close(fd)
                    return
                break  # where the link leads cannot be watched: its own directory alone
            names.setdefault(wd, set()).add(name)
            if link is None and len(watched) > 1:
                link = (wd, name)
        asyncio.get_running_loop().add_reader(fd, self._read_events)
        self._fd, self._names, self._link = fd, names, link

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
            wd, mask, _, length = _EVENT.unpack_from(data, offset)
            start, offset = offset + _EVENT.size, offset + _EVENT.size + length
            name = data[start:offset].rstrip(b"\0")
            # A directory removed or renamed, or the link made anew (it may lead elsewhere now):
            # watched again at the next wait.
            if mask & _GONE or (wd, name) == self._link:
                self.close()
                self._changed.set()
                return
            if mask & _IN_Q_OVERFLOW or name in self._names.get(wd, ()):
                self._changed.set()


def _watched(path: Path) -> list[Path]:
    """``path``, and where it leads when it is a link to a file (where the log is rotated)."""
    try:
        target = path.resolve(strict=True) if path.is_symlink() else path
    except (OSError, RuntimeError):  # a link to nothing yet, or a loop: the path alone
        return [path]
    return [path] if target == path else [path, target]
