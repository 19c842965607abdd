"""Replace a file atomically and durably: the one way driftgauge writes files it must not tear.

A temporary file in the same directory is written and fsynced, renamed over
the target, and the directory is fsynced so the rename itself survives a
power loss.  A reader sees the old file or the new one, never a part.

A path that is a link has the file it leads to replaced, as ``open(path, "w")`` would
write it, the link left as it is (a tail offset or state snapshot linked onto a volume).

The file gets the permissions a new file written with ``open(path, "w")``
gets, 0666 less the umask (0644 under the usual 022), unless the caller
asks for fewer: a baseline built by one user is read by the sidecar running
as another (the image's user 10001).

Such files are read back through :func:`open_regular`, which refuses what is
no file (a FIFO there would hold the reader until something writes to it).
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import stat
from pathlib import Path

__all__ = ["move_aside", "open_regular", "remove_leftovers", "write_atomically"]

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


def _target(path: Path) -> Path:
    """The file a write of ``path`` replaces: where it leads when it is a link."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def _temporary_name(path: Path, tag: str) -> Path:
    """The temporary file of one write of ``path`` (``tag``: its random part, or a glob)."""
    return path.with_name(f".{path.name}.{tag}.tmp")


def _create_temporary(path: Path, mode: int) -> tuple[int, Path]:
    """A new file beside ``path`` (hidden, random name), created with ``mode`` less the umask.

    Not ``tempfile.mkstemp``: it creates every file 0600 whatever the umask.
    """
    for _ in range(100):
        temporary = _temporary_name(path, secrets.token_hex(6))
        try:
            return os.open(temporary, _FLAGS, mode), temporary
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def write_atomically(path: Path, data: bytes, mode: int = 0o666) -> None:
    """Replace ``path`` with ``data``; OSError (and no temporary file left) when that fails.

    The file's permissions are ``mode`` less the umask, as :func:`os.open`
    applies it: pass 0o600 for a file only its owner may read.
    """
    path = _target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = _create_temporary(path, mode)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def open_regular(path: Path) -> int:
    """A descriptor of ``path`` opened for reading; OSError unless it is a regular file,
    where opening a FIFO would wait for a writer for ever (and hold shutdown with it)."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise OSError(f"not a regular file: {str(path)!r}")
    return descriptor


def move_aside(path: Path, suffix: str) -> Path:
    """Rename the file ``path`` names (where it leads, for a link, which stays) to its name
    and ``suffix``, beside it; returns where it went, OSError when that fails."""
    path = _target(path)
    aside = path.with_name(path.name + suffix)
    os.replace(path, aside)
    return aside


def remove_leftovers(path: Path) -> int:
    """Delete the temporary files writes of ``path`` left behind when their process was killed
    mid-write (each has a name of its own, so they would pile up); returns how many.

    Only for a file one process writes: another writer's temporary would go too.
    """
    pattern = str(_temporary_name(Path(glob.escape(str(_target(path)))), "*"))
    removed = 0
    for leftover in glob.glob(pattern):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(leftover)
            removed += 1
    return removed
