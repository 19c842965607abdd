"""Which event loop ``serve`` runs on: uvloop when it is installed (the ``fast`` extra), else
asyncio's own.  ``--loop asyncio`` turns uvloop off; ``--loop uvloop`` insists on it.

Nothing else in driftgauge sets an event loop policy: the choice is made
here, once, by passing a loop factory to :class:`asyncio.Runner` (Python
3.11 has no ``asyncio.run(loop_factory=...)``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar, get_args

from driftgauge.exceptions import DriftgaugeError

__all__ = ["LOOP_CHOICES", "LoopChoice", "loop_factory", "run"]

log = logging.getLogger("driftgauge")

LoopChoice = Literal["auto", "asyncio", "uvloop"]
LOOP_CHOICES: tuple[str, ...] = get_args(LoopChoice)
LoopFactory = Callable[[], asyncio.AbstractEventLoop]
T = TypeVar("T")


def loop_factory(choice: LoopChoice) -> tuple[str, LoopFactory | None]:
    """The loop's name and factory (None: asyncio's default) for ``choice``."""
    if choice == "asyncio":
        return "asyncio", None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise DriftgaugeError(
                "--loop uvloop: uvloop is not installed (pip install 'driftgauge[fast]')"
            ) from None
        return "asyncio", None
    factory: LoopFactory = uvloop.new_event_loop
    return "uvloop", factory


def run(main: Callable[[], Coroutine[Any, Any, T]], choice: LoopChoice = "auto") -> T:
    """Run ``main()`` to completion on the chosen loop, logging which one it is."""
    name, factory = loop_factory(choice)
    log.info("event loop: %s", name)
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main())
