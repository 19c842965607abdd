"""Back-pressure for one proxied connection, held in one object.

Each side of the proxy (the client connection, an upstream connection) has a
:class:`FlowControl` for its transport.  When a transport's write buffer
fills, the side that feeds it stops being read until the buffer drains; every
pause and resume goes through these objects, so each is done once and the
state can be asked.
"""

from __future__ import annotations

import asyncio
import time

__all__ = ["FlowControl"]


class FlowControl:
    """Whether one transport is read from and whether its writes are held up, each idempotent."""

    __slots__ = ("_transport", "read_paused", "write_paused", "write_paused_at")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self.read_paused = False
        self.write_paused = False
        self.write_paused_at = 0.0  # time.monotonic() when the writes last got held up

    def pause_reading(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused:
            self.read_paused = False
            self._transport.resume_reading()

    def pause_writing(self, feeder: FlowControl | None) -> None:
        """The transport's write buffer is full: stop reading ``feeder``, the side filling it."""
        if not self.write_paused:
            self.write_paused = True
            self.write_paused_at = time.monotonic()
            if feeder is not None:
                feeder.pause_reading()

    def resume_writing(self, feeder: FlowControl | None) -> None:
        """The transport's write buffer drained: read ``feeder`` again."""
        if self.write_paused:
            self.write_paused = False
            if feeder is not None:
                feeder.resume_reading()
