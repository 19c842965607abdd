"""A request body read with an idle limit, for the listeners that take POSTs (CloudEvents, labels).

aiohttp waits for a body as long as its sender stays connected: a sender
that stops sending mid-body (a Content-Length body cut short; with aiohttp's
compiled parser, a bad chunk after the body began, which that parser never
reports to the read) would hold its handler and connection until it hangs up.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

__all__ = ["BODY_IDLE_SECONDS", "read_body"]

# A body is given up after this long (to twice it) without a byte of it.
BODY_IDLE_SECONDS = 30.0


async def read_body(request: web.Request, idle: float) -> bytes:
    """``request.read()``, but TimeoutError once a look every ``idle`` seconds finds that no
    byte of the body arrived since the last look; a slow body that keeps arriving is read whole.

    Callers pass their module's ``BODY_IDLE_SECONDS`` (imported from here), so a test can
    shorten one listener's limit."""
    loop, content = asyncio.get_running_loop(), request.content
    async with asyncio.timeout(None) as deadline:
        watch: list[asyncio.TimerHandle] = []

        def look(seen: int) -> None:
            if content.total_bytes == seen:
                deadline.reschedule(loop.time())
            else:
                watch[0] = loop.call_later(idle, look, content.total_bytes)

        watch.append(loop.call_later(idle, look, content.total_bytes))
        try:
            return await request.read()
        finally:
            watch[0].cancel()
