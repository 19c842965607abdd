"""SIGTERM as an exception in a batch command: ``driftgauge baseline`` stops as on Ctrl-C.

Python turns SIGINT into KeyboardInterrupt, which unwinds through every
``with`` block: the baseline build's runner stops its worker processes and
removes its spill directory.  SIGTERM (``docker stop``, a Kubernetes job
deleted) kills the process outright instead, leaving both behind.  Within
:func:`sigterm_raises` it raises :class:`Terminated` the same way.

A signal handler's exception surfaces wherever the main thread happens to
be, and some places cannot take it: Python drops one raised in an at-fork
hook (the build then ran to the end), and one raised while the process pool
starts its manager thread leaves a pool that cannot shut down (a traceback,
the spill directory left).  While the main thread is inside the process
pool's or multiprocessing's own code, or removing or replacing files, the
handler only records the signal; the block's check raises it at the next
point the command passes (every progress report of the build).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

__all__ = ["Terminated", "sigterm_raises"]

# Modules whose own steps a raise must not cut short: the pool and its processes, and the
# file system helpers that create and remove the spill directory and replace the output.
_UNINTERRUPTIBLE = (
    "concurrent.futures.process",
    "multiprocessing",
    "shutil",
    "tempfile",
    "driftgauge.atomic",
)


class Terminated(BaseException):
    """SIGTERM arrived within :func:`sigterm_raises`.

    A BaseException, as KeyboardInterrupt is, so no ``except Exception`` on
    the way stops it before the ``with`` blocks that clean up.
    """


def _inside_uninterruptible(frame: FrameType | None) -> bool:
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if any(module == m or module.startswith(m + ".") for m in _UNINTERRUPTIBLE):
            return True
        frame = frame.f_back
    return False


@contextlib.contextmanager
def sigterm_raises() -> Iterator[Callable[[], None]]:
    """Within the block SIGTERM raises :class:`Terminated`; yields a check that raises it too.

    Call the check where the command passes often: it raises once SIGTERM
    has come, should the handler have had to hold the exception back.  Any
    other exception out of the block after SIGTERM becomes :class:`Terminated`.
    A second SIGTERM is ignored: it would interrupt the cleanup the first began.

    Processes forked within the block inherit the handler; in them it
    restores the default and signals again, so a worker sent SIGTERM (its
    process group stopped) dies, where an exception would only fail the
    task it runs and leave it serving the pool.  Only the main thread may set
    handlers: elsewhere the block changes nothing and the check never raises.
    """
    received = False

    def check() -> None:
        if received:
            raise Terminated

    if threading.current_thread() is not threading.main_thread():
        yield check
        return
    parent = os.getpid()

    def terminate(signum: int, frame: FrameType | None) -> None:
        nonlocal received
        if os.getpid() != parent:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        elif not received:
            received = True
            if not _inside_uninterruptible(frame):
                raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield check
    except Exception:
        # After SIGTERM, a failure is its doing: a process group stopped kills the workers
        # too, and the pool reports them dead (BrokenProcessPool) if the raise was held back.
        if received:
            raise Terminated from None
        raise
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
