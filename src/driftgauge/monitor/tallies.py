"""Parse errors and drops counted by reason, from the event loop and worker threads alike."""

from __future__ import annotations

import threading
from collections import Counter

__all__ = ["Tallies"]


class Tallies:
    """``parse_errors`` and ``dropped`` by reason: each model's (:class:`~driftgauge.monitor.Monitor`)
    and the source's before routing (:class:`~driftgauge.monitor.route.Router`)."""

    def __init__(self) -> None:
        self._tally_lock = threading.Lock()  # held for an increment only
        self.parse_errors: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()

    def count_parse_error(self, reason: str, n: int = 1) -> None:
        with self._tally_lock:
            self.parse_errors[reason] += n

    def count_dropped(self, reason: str, n: int = 1) -> None:
        with self._tally_lock:
            self.dropped[reason] += n
