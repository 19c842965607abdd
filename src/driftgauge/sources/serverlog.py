"""aiohttp's server log for a listener of ours, malformed HTTP in one line.

A peer's message that is no readable HTTP (a malformed chunk size, a header line too long)
is the peer's fault, which aiohttp answers with 400 and then logs as "Error handling
request" with a traceback.  :class:`ServerLog` logs it as one warning line naming the peer,
and tells ``on_malformed`` (a counter); any other exception keeps its traceback (a fault of
ours).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

__all__ = ["ServerLog"]


class ServerLog(logging.LoggerAdapter[logging.Logger]):
    """aiohttp's ``aiohttp.server`` logger, for ``web.AppRunner(logger=...)``; warnings go to
    ``log``."""

    def __init__(self, log: logging.Logger, on_malformed: Callable[[], None]) -> None:
        super().__init__(logging.getLogger("aiohttp.server"))
        self._warnings = log
        self._on_malformed = on_malformed

    def malformed(self, peer: object, exc: HttpProcessingError) -> None:
        """Count and log, in one line, a message from ``peer`` the HTTP parser refused."""
        self._on_malformed()
        # The C parser's messages quote the bad bytes on the lines after the first, the pure
        # Python parser's are those bytes: the first line, escaped and cut short.
        lines = str(exc.message).strip().splitlines() or [""]
        reason = f"{type(exc).__name__} {lines[0].rstrip(':')[:80]!r}"
        self._warnings.warning(
            "malformed HTTP request from %s: %s", peer or "an unknown peer", reason
        )

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        if isinstance(exc_info, HttpProcessingError):  # aiohttp's parser refused it
            # aiohttp logs "Error handling request from %s" with the peer's address.
            self.malformed(args[0] if args else None, exc_info)
        elif isinstance(exc_info, RequestPayloadError):
            # The rest of a body whose parse error the handler already counted, read by
            # aiohttp after the answer (its lingering close).
            self._warnings.debug("the rest of a malformed request body: %s", exc_info)
        else:
            super().exception(msg, *args, exc_info=exc_info, **kwargs)
